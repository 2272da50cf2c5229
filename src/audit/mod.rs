//! The tamper-evident audit log of key events (see docs/audit.md).
//!
//! Every key event (wrap, unwrap, rotation, revocation, denial, ...) is one JSON line; each
//! line carries the SHA-256 of the line before it (`prev`) and of itself (`hash`), so editing,
//! deleting, inserting or reordering lines breaks the chain, which `cmkfs audit verify` checks.
//!
//! - `record`: the record, its canonical encoding, the hashes;
//! - `writer`: [`AuditLog`], the append-only writer with the denial rate limiter;
//! - `verify`: [`verify`] and [`verify_with_anchor`];
//! - `time`: RFC 3339 timestamps.

mod record;
mod time;
mod verify;
mod writer;

use std::path::PathBuf;

pub use record::{
    AuditEvent, AuditOp, AuditRecord, AuditResult, MAX_DETAIL_BYTES, ZERO_HASH, service_key_id,
    sha256_hex,
};
pub use time::Timestamp;
pub use verify::{Anchor, ProblemKind, VerifyProblem, VerifyReport, verify, verify_with_anchor};
pub use writer::{AuditLog, DENIAL_WINDOW, MAX_DENIAL_KEYS};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The last line of an existing log is not a sound record: not appending to it.
    #[error("audit log {} line {line}: {reason}; not appending to a damaged chain (check it with `cmkfs audit verify`, then move it aside)", path.display())]
    Damaged {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// `/var/log/cmkfs/audit.log` for root; otherwise `$XDG_STATE_HOME/cmkfs/audit.log`, or
/// `~/.local/state/cmkfs/audit.log` when that is unset (or not absolute).
pub fn default_audit_log_path() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/log/cmkfs/audit.log");
    }
    user_audit_log_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn user_audit_log_path(
    state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let state = match state_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(s) => s,
        None => match home.filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/state"),
            None => PathBuf::from(format!("/tmp/cmkfs-{}", nix::unistd::geteuid())),
        },
    };
    state.join("cmkfs/audit.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_path_follows_xdg() {
        let s = |x: &str| Some(std::ffi::OsString::from(x));
        assert_eq!(
            user_audit_log_path(s("/st"), s("/home/u")),
            PathBuf::from("/st/cmkfs/audit.log")
        );
        assert_eq!(
            user_audit_log_path(None, s("/home/u")),
            PathBuf::from("/home/u/.local/state/cmkfs/audit.log")
        );
        assert_eq!(
            user_audit_log_path(s("relative"), s("/home/u")),
            PathBuf::from("/home/u/.local/state/cmkfs/audit.log")
        );
    }
}
