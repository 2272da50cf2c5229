//! Process plumbing: daemonizing with a readiness pipe, stdio redirection, logging setup and
//! hardening (no core dumps, not dumpable, umask 0, a high fd limit).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Where the daemon reports readiness to the process that started it.
pub struct ReadyPipe(Option<OwnedFd>);

impl ReadyPipe {
    pub fn none() -> Self {
        ReadyPipe(None)
    }

    pub fn ready(&mut self) {
        if let Some(fd) = self.0.take() {
            let _ = std::fs::File::from(fd).write_all(b"OK\n");
        }
    }

    pub fn failed(&mut self, msg: &str) {
        if let Some(fd) = self.0.take() {
            let _ = std::fs::File::from(fd).write_all(format!("ERR {msg}\n").as_bytes());
        }
    }
}

/// Forks. In the parent, waits for the child's one-line report and returns `Err` with its
/// message or `Ok(None)`; in the child, returns `Ok(Some(pipe))`.
pub fn daemonize(log_file: Option<&Path>) -> Result<Option<ReadyPipe>, String> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called before this process starts any thread other than a Key Vault runtime
    // worker, which holds no lock the child takes (the child rebuilds that runtime).
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(wr);
            // The caller waiting for the daemon stays interruptible (Ctrl-C).
            let _ = super::stop_signals().thread_unblock();
            let mut msg = Vec::new();
            let mut byte = [0u8; 1];
            let mut pipe = std::fs::File::from(rd);
            while let Ok(1) = pipe.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                msg.push(byte[0]);
            }
            let msg = String::from_utf8_lossy(&msg).into_owned();
            match msg.strip_prefix("OK") {
                Some(_) => Ok(None),
                None if msg.is_empty() => {
                    Err("the daemon exited before the mount was ready (see its log)".into())
                }
                None => Err(msg.trim_start_matches("ERR ").to_string()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
            redirect_stdio(log_file);
            Ok(Some(ReadyPipe(Some(wr))))
        }
    }
}

fn redirect_stdio(log_file: Option<&Path>) {
    let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return;
    };
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    match log_file.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok()) {
        Some(f) => {
            let _ = nix::unistd::dup2_stderr(&f);
        }
        None => {
            let _ = nix::unistd::dup2_stderr(&null);
        }
    }
}

/// Where the daemon's log lines go (`--log-target`, config `log_target`, `-o log_target=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// The journal when stderr is the journal stream systemd set up (`JOURNAL_STREAM`) and no
    /// `--log-file` is given; otherwise `--log-file` or stderr.
    #[default]
    Auto,
    /// The journal, with structured fields (fails if journald cannot be reached).
    Journald,
    /// `--log-file` or stderr, as text lines.
    Stderr,
}

impl LogTarget {
    pub fn parse(s: &str) -> Result<LogTarget, String> {
        match s {
            "auto" => Ok(LogTarget::Auto),
            "journald" => Ok(LogTarget::Journald),
            "stderr" => Ok(LogTarget::Stderr),
            other => Err(format!(
                "log target {other:?} is not one of auto, journald, stderr"
            )),
        }
    }
}

/// How the daemon logs, and the mount it logs for (sent as journal fields on every record).
pub struct LogSetup<'a> {
    pub target: LogTarget,
    pub log_file: Option<&'a Path>,
    pub level: Option<&'a str>,
    pub volume_id: &'a str,
    pub mountpoint: &'a Path,
    pub backing: &'a Path,
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` names its
/// device and inode (systemd.exec(5)); a daemon that redirected stderr elsewhere no longer is.
fn stderr_is_journal_stream() -> bool {
    use std::os::fd::AsFd;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino),
        Err(_) => false,
    }
}

pub fn init_logging(setup: &LogSetup) -> Result<(), String> {
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &from_env {
        Some(v) => crate::config::log_filter(v).map_err(|e| format!("RUST_LOG: {e}"))?,
        None => crate::config::log_filter(setup.level.unwrap_or("info"))
            .map_err(|e| format!("log level: {e}"))?,
    }
    // fuser warns about its own second unmount attempt after a clean unmount: noise.
    .add_directive("fuser::session=error".parse().unwrap_or_default());
    let journal = match setup.target {
        LogTarget::Journald => true,
        LogTarget::Auto => setup.log_file.is_none() && stderr_is_journal_stream(),
        LogTarget::Stderr => false,
    };
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                // Every record names the mount; event fields get the CMKFS_ prefix
                // (CMKFS_KEY, CMKFS_ERRNO, CMKFS_PATH, CMKFS_FILE for a backing file).
                let layer = layer
                    .with_syslog_identifier("cmkfs".into())
                    .with_field_prefix(Some("CMKFS".into()))
                    .with_custom_fields([
                        ("CMKFS_VOLUME", setup.volume_id.as_bytes()),
                        (
                            "CMKFS_MOUNTPOINT",
                            setup.mountpoint.as_os_str().as_encoded_bytes(),
                        ),
                        (
                            "CMKFS_BACKING",
                            setup.backing.as_os_str().as_encoded_bytes(),
                        ),
                    ]);
                return tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .map_err(|e| format!("logging: {e}"));
            }
            Err(e) if setup.target == LogTarget::Journald => {
                return Err(format!(
                    "cannot log to the journal (/run/systemd/journal/socket): {e}"
                ));
            }
            Err(e) => {
                eprintln!("cmkfs: the journal cannot be reached ({e}); logging to stderr");
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match setup.log_file {
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    result.map_err(|e| format!("logging: {e}"))
}

/// No core dumps, no ptrace attach by others, permissive umask (modes come from requests),
/// and room for many open backing files.
pub fn harden_process() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
