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

pub fn init_logging(log_file: Option<&Path>, level: Option<&str>) -> Result<(), String> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &from_env {
        Some(v) => crate::config::log_filter(v).map_err(|e| format!("RUST_LOG: {e}"))?,
        None => crate::config::log_filter(level.unwrap_or("info"))
            .map_err(|e| format!("log level: {e}"))?,
    }
    // fuser warns about its own second unmount attempt after a clean unmount: noise.
    .add_directive("fuser::session=error".parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match log_file {
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
