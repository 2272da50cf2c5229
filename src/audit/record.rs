//! The audit record: what a key event says, its canonical one-line JSON encoding and the
//! hashes that chain the lines together.
//!
//! Canonical encoding: compact JSON (no whitespace), members in the fixed order `time, seq,
//! op, result, key_id, scope, duration_ms, correlation_id, uid, pid, detail, prev, hash`,
//! absent optional members left out. `hash` is the hex SHA-256 of the line without its
//! `,"hash":"…"` member (that is, the canonical JSON of the record without `hash`); `prev` is
//! the hex SHA-256 of the previous line's exact bytes (without its newline), 64 zeros for the
//! first line of a file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// `prev` of the first record of a log file.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest `detail` written (bytes); longer ones are cut at a character boundary.
pub const MAX_DETAIL_BYTES: usize = 4096;

/// Length of the `,"hash":"<64 hex>"}` tail of every line.
const HASH_TAIL_LEN: usize = 9 + 64 + 2;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditOp {
    KeyWrap,
    KeyUnwrap,
    KeyRotate,
    DataKeyRotate,
    CacheFlush,
    RevocationDetected,
    AccessRestored,
    AccessDenied,
    KeyCheck,
    KeyServiceUnreachable,
    MountStarted,
    MountStopped,
    /// A damaged, missing or stale copy of volume metadata was rewritten from a valid one.
    MetadataRepair,
    /// The key store and volume config were put back from a backup (`cmkfs key restore`).
    MetadataRestore,
    /// A directory became the root of a new key scope (`cmkfs scope create`).
    ScopeCreate,
    /// A key scope was locked on demand: its keys flushed, access refused (`cmkfs scope lock`).
    ScopeLock,
    /// A locked key scope was unlocked through its keys again (`cmkfs scope unlock`).
    ScopeUnlock,
}

impl AuditOp {
    pub const ALL: [AuditOp; 17] = [
        AuditOp::KeyWrap,
        AuditOp::KeyUnwrap,
        AuditOp::KeyRotate,
        AuditOp::DataKeyRotate,
        AuditOp::CacheFlush,
        AuditOp::RevocationDetected,
        AuditOp::AccessRestored,
        AuditOp::AccessDenied,
        AuditOp::KeyCheck,
        AuditOp::KeyServiceUnreachable,
        AuditOp::MountStarted,
        AuditOp::MountStopped,
        AuditOp::MetadataRepair,
        AuditOp::MetadataRestore,
        AuditOp::ScopeCreate,
        AuditOp::ScopeLock,
        AuditOp::ScopeUnlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOp::KeyWrap => "KeyWrap",
            AuditOp::KeyUnwrap => "KeyUnwrap",
            AuditOp::KeyRotate => "KeyRotate",
            AuditOp::DataKeyRotate => "DataKeyRotate",
            AuditOp::CacheFlush => "CacheFlush",
            AuditOp::RevocationDetected => "RevocationDetected",
            AuditOp::AccessRestored => "AccessRestored",
            AuditOp::AccessDenied => "AccessDenied",
            AuditOp::KeyCheck => "KeyCheck",
            AuditOp::KeyServiceUnreachable => "KeyServiceUnreachable",
            AuditOp::MountStarted => "MountStarted",
            AuditOp::MountStopped => "MountStopped",
            AuditOp::MetadataRepair => "MetadataRepair",
            AuditOp::MetadataRestore => "MetadataRestore",
            AuditOp::ScopeCreate => "ScopeCreate",
            AuditOp::ScopeLock => "ScopeLock",
            AuditOp::ScopeUnlock => "ScopeUnlock",
        }
    }
}

impl fmt::Display for AuditOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditOp {
    type Err = String;

    /// Case-insensitive (`keyunwrap` works too).
    fn from_str(s: &str) -> Result<AuditOp, String> {
        AuditOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown audit op {s:?} (one of {})",
                    AuditOp::ALL.map(AuditOp::as_str).join(", ")
                )
            })
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Ok,
    Denied,
    Revoked,
    Unreachable,
    Error,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Revoked => "revoked",
            AuditResult::Unreachable => "unreachable",
            AuditResult::Error => "error",
        }
    }
}

impl fmt::Display for AuditResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `key_id` of the service key: `service:<fingerprint>`. (A customer-managed key is
/// named by its full Key Vault key id, with version.)
pub fn service_key_id(fingerprint: &str) -> String {
    format!("service:{fingerprint}")
}

/// One key event as the caller describes it; the writer adds `time`, `seq`, `prev`, `hash`.
///
/// ```
/// use cmkfs::audit::{AuditEvent, AuditOp, AuditResult};
/// let e = AuditEvent::new(AuditOp::KeyUnwrap, "https://v.vault.azure.net/keys/k/0123", AuditResult::Ok)
///     .scope(1)
///     .duration(std::time::Duration::from_micros(12_345))
///     .correlation_id("6f1c…");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub op: AuditOp,
    /// Full Key Vault key id with version, or `service:<fingerprint>` (see [`service_key_id`]).
    pub key_id: String,
    pub scope: Option<u32>,
    pub result: AuditResult,
    pub duration_ms: Option<f64>,
    /// The Key Vault client request id.
    pub correlation_id: Option<String>,
    /// The caller, for denials.
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    /// A human sentence. Never key material or other secrets.
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(op: AuditOp, key_id: impl Into<String>, result: AuditResult) -> AuditEvent {
        AuditEvent {
            op,
            key_id: key_id.into(),
            scope: None,
            result,
            duration_ms: None,
            correlation_id: None,
            uid: None,
            pid: None,
            detail: None,
        }
    }

    pub fn scope(mut self, scope: u32) -> AuditEvent {
        self.scope = Some(scope);
        self
    }

    pub fn duration(self, d: Duration) -> AuditEvent {
        self.duration_ms(d.as_secs_f64() * 1000.0)
    }

    pub fn duration_ms(mut self, ms: f64) -> AuditEvent {
        self.duration_ms = Some(ms);
        self
    }

    pub fn correlation_id(mut self, id: impl Into<String>) -> AuditEvent {
        self.correlation_id = Some(id.into());
        self
    }

    /// The uid and pid of the process whose request was denied.
    pub fn caller(mut self, uid: u32, pid: u32) -> AuditEvent {
        self.uid = Some(uid);
        self.pid = Some(pid);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> AuditEvent {
        self.detail = Some(detail.into());
        self
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub seq: u64,
    pub op: AuditOp,
    pub result: AuditResult,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub prev: String,
    pub hash: String,
}

/// The record without `hash`, borrowed: its serialization is the canonical JSON the hash
/// covers. Member order is the declaration order (serde derive does not sort).
#[derive(Serialize)]
struct Unhashed<'a> {
    time: &'a str,
    seq: u64,
    op: AuditOp,
    result: AuditResult,
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    prev: &'a str,
}

impl AuditRecord {
    /// Builds the record for `event` at position `seq` after the line whose hash is `prev`,
    /// and computes its `hash`. Normalizes what would not survive a JSON round trip exactly:
    /// a non-finite or negative duration is dropped or clamped, durations keep microsecond
    /// precision, `detail` is cut to [`MAX_DETAIL_BYTES`].
    pub fn seal(event: AuditEvent, seq: u64, prev: &str, time: Timestamp) -> AuditRecord {
        let duration_ms = event
            .duration_ms
            .filter(|d| d.is_finite())
            .map(|d| (d.max(0.0) * 1000.0).round() / 1000.0);
        let detail = event.detail.map(|mut d| {
            if d.len() > MAX_DETAIL_BYTES {
                let mut cut = MAX_DETAIL_BYTES;
                while !d.is_char_boundary(cut) {
                    cut -= 1;
                }
                d.truncate(cut);
                d.push('…');
            }
            d
        });
        let mut r = AuditRecord {
            time: time.to_rfc3339(),
            seq,
            op: event.op,
            result: event.result,
            key_id: event.key_id,
            scope: event.scope,
            duration_ms,
            correlation_id: event.correlation_id,
            uid: event.uid,
            pid: event.pid,
            detail,
            prev: prev.to_string(),
            hash: String::new(),
        };
        r.hash = sha256_hex(&r.canonical_unhashed());
        r
    }

    /// The canonical JSON of the record without `hash`: the bytes `hash` covers.
    pub fn canonical_unhashed(&self) -> Vec<u8> {
        let u = Unhashed {
            time: &self.time,
            seq: self.seq,
            op: self.op,
            result: self.result,
            key_id: &self.key_id,
            scope: self.scope,
            duration_ms: self.duration_ms,
            correlation_id: self.correlation_id.as_deref(),
            uid: self.uid,
            pid: self.pid,
            detail: self.detail.as_deref(),
            prev: &self.prev,
        };
        serde_json::to_vec(&u).expect("serializing an audit record cannot fail")
    }

    /// The line as written (without the newline): the canonical JSON with `hash` appended as
    /// the last member.
    pub fn to_line(&self) -> String {
        let mut line =
            String::from_utf8(self.canonical_unhashed()).expect("serde_json writes UTF-8");
        line.pop(); // the closing brace
        line.push_str(",\"hash\":\"");
        line.push_str(&self.hash);
        line.push_str("\"}");
        line
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// What can be wrong with one line on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFault {
    BadJson,
    HashMismatch,
}

/// What the chain needs from a line that checked out on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedLine {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    /// SHA-256 of the line's bytes: the next line's `prev`.
    pub line_hash: String,
}

/// The members every record needs for the chain; others are not interpreted here (the hash
/// covers them all, and a newer writer may add some).
#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev: String,
    hash: String,
    #[allow(dead_code)]
    time: String,
    #[allow(dead_code)]
    op: String,
    #[allow(dead_code)]
    result: String,
}

/// Checks one line (without its newline) on its own: valid JSON with the chain members, and
/// a `hash` that matches the line's bytes.
pub(crate) fn check_line(line: &[u8]) -> Result<CheckedLine, (LineFault, String)> {
    let text = std::str::from_utf8(line)
        .map_err(|_| (LineFault::BadJson, "not UTF-8 text".to_string()))?;
    if text.trim().is_empty() {
        return Err((LineFault::BadJson, "empty line".into()));
    }
    let f: ChainFields = serde_json::from_str(text)
        .map_err(|e| (LineFault::BadJson, format!("not a valid audit record: {e}")))?;
    if !is_hash(&f.prev) {
        return Err((
            LineFault::BadJson,
            "prev is not 64 lowercase hex digits".into(),
        ));
    }
    if !is_hash(&f.hash) {
        return Err((
            LineFault::BadJson,
            "hash is not 64 lowercase hex digits".into(),
        ));
    }
    let tail = format!(",\"hash\":\"{}\"}}", f.hash);
    if line.len() <= HASH_TAIL_LEN || !text.ends_with(&tail) {
        return Err((
            LineFault::HashMismatch,
            "the line is not as written: hash is not its last member (edited)".into(),
        ));
    }
    let mut covered = line[..line.len() - HASH_TAIL_LEN].to_vec();
    covered.push(b'}');
    let computed = sha256_hex(&covered);
    if computed != f.hash {
        return Err((
            LineFault::HashMismatch,
            format!(
                "record hash mismatch: the record was edited (stored {}, computed {})",
                f.hash, computed
            ),
        ));
    }
    Ok(CheckedLine {
        seq: f.seq,
        prev: f.prev,
        hash: f.hash,
        line_hash: sha256_hex(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        let e = AuditEvent::new(
            AuditOp::KeyUnwrap,
            "https://v.vault.azure.net/keys/cmk/0123abcd",
            AuditResult::Ok,
        )
        .scope(2)
        .duration(Duration::from_micros(12_345))
        .correlation_id("req-1")
        .detail("unwrapped data key epoch 3");
        AuditRecord::seal(e, 7, ZERO_HASH, Timestamp(1_740_832_496_123_456))
    }

    #[test]
    fn canonical_encoding_is_stable() {
        let r = sample();
        let expected = concat!(
            r#"{"time":"2025-03-01T12:34:56.123456Z","seq":7,"op":"KeyUnwrap","result":"ok","#,
            r#""key_id":"https://v.vault.azure.net/keys/cmk/0123abcd","scope":2,"duration_ms":12.345,"#,
            r#""correlation_id":"req-1","detail":"unwrapped data key epoch 3","#,
            r#""prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        );
        assert_eq!(String::from_utf8(r.canonical_unhashed()).unwrap(), expected);
        assert_eq!(r.hash, sha256_hex(expected.as_bytes()));
        assert_eq!(
            r.to_line(),
            format!(
                "{},\"hash\":\"{}\"}}",
                &expected[..expected.len() - 1],
                r.hash
            )
        );
        // Same input, same bytes; and a parsed line encodes back to itself.
        assert_eq!(sample().to_line(), r.to_line());
        let back: AuditRecord = serde_json::from_str(&r.to_line()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_line(), r.to_line());
    }

    #[test]
    fn optional_members_are_left_out() {
        let r = AuditRecord::seal(
            AuditEvent::new(
                AuditOp::MountStarted,
                service_key_id("ab12"),
                AuditResult::Ok,
            )
            .duration_ms(f64::NAN),
            1,
            ZERO_HASH,
            Timestamp(0),
        );
        assert_eq!(
            r.to_line(),
            format!(
                r#"{{"time":"1970-01-01T00:00:00.000000Z","seq":1,"op":"MountStarted","result":"ok","key_id":"service:ab12","prev":"{ZERO_HASH}","hash":"{}"}}"#,
                r.hash
            )
        );
    }

    #[test]
    fn check_line_accepts_written_lines_and_catches_edits() {
        let r = sample();
        let line = r.to_line();
        let c = check_line(line.as_bytes()).unwrap();
        assert_eq!(
            (c.seq, c.prev.as_str(), c.hash.as_str()),
            (7, ZERO_HASH, r.hash.as_str())
        );
        assert_eq!(c.line_hash, sha256_hex(line.as_bytes()));

        let edited = line.replace(r#""result":"ok""#, r#""result":"denied""#);
        assert_eq!(
            check_line(edited.as_bytes()).unwrap_err().0,
            LineFault::HashMismatch
        );
        let spaced = line.replacen(',', ", ", 1);
        assert_eq!(
            check_line(spaced.as_bytes()).unwrap_err().0,
            LineFault::HashMismatch
        );
        let rehashed = line.replace(&r.hash, &sha256_hex(b"x"));
        assert_eq!(
            check_line(rehashed.as_bytes()).unwrap_err().0,
            LineFault::HashMismatch
        );
        assert_eq!(
            check_line(&line.as_bytes()[..line.len() - 1])
                .unwrap_err()
                .0,
            LineFault::BadJson
        );
        assert_eq!(check_line(b"").unwrap_err().0, LineFault::BadJson);
        assert_eq!(check_line(b"[1,2]").unwrap_err().0, LineFault::BadJson);
    }

    #[test]
    fn chained_records_link_by_line_hash() {
        let first = sample();
        let prev = sha256_hex(first.to_line().as_bytes());
        let second = AuditRecord::seal(
            AuditEvent::new(AuditOp::KeyCheck, "service:ab12", AuditResult::Ok),
            8,
            &prev,
            Timestamp(1),
        );
        assert_eq!(
            check_line(second.to_line().as_bytes()).unwrap().prev,
            check_line(first.to_line().as_bytes()).unwrap().line_hash
        );
        assert_ne!(first.hash, second.hash);
    }

    #[test]
    fn ops_parse_case_insensitively() {
        for op in AuditOp::ALL {
            assert_eq!(op.as_str().to_lowercase().parse::<AuditOp>().unwrap(), op);
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{op}\""));
        }
        assert!("Nope".parse::<AuditOp>().is_err());
        assert_eq!(
            serde_json::to_string(&AuditResult::Unreachable).unwrap(),
            "\"unreachable\""
        );
    }

    #[test]
    fn long_detail_is_cut_at_a_char_boundary() {
        let e = AuditEvent::new(AuditOp::KeyCheck, "k", AuditResult::Error)
            .detail("é".repeat(MAX_DETAIL_BYTES));
        let r = AuditRecord::seal(e, 1, ZERO_HASH, Timestamp(0));
        let d = r.detail.unwrap();
        assert!(d.len() <= MAX_DETAIL_BYTES + '…'.len_utf8() && d.ends_with('…'));
    }
}
