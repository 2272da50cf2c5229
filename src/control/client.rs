//! The control socket client used by `cmkfs status`, `cmkfs cache flush`, `cmkfs key ...`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Request, Response};
use crate::runtime::{control_socket, runtime_dir};

pub struct ControlClient {
    path: PathBuf,
}

/// The control socket of the mount at `mountpoint`, or of every running mount.
pub fn find_socket(mountpoint: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    match mountpoint {
        Some(m) => {
            let p = control_socket(m);
            if p.exists() {
                Ok(vec![p])
            } else {
                Err(format!(
                    "{} is not a cmkfs mount served by this host (no control socket {})",
                    m.display(),
                    p.display()
                ))
            }
        }
        None => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(runtime_dir())
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "sock") && !p.is_symlink())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            Ok(v)
        }
    }
}

/// The control socket of the mount that holds `path` (a mountpoint or a directory inside
/// one), and `path` relative to that mount ("" for the mountpoint itself).
pub fn find_mount_of(path: &Path) -> Result<(PathBuf, String), String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for a in abs.ancestors() {
        let sock = control_socket(a);
        if sock.exists() {
            let rel = abs.strip_prefix(a).unwrap_or(Path::new(""));
            return Ok((sock, rel.to_string_lossy().into_owned()));
        }
    }
    Err(format!(
        "{} is not inside a cmkfs mount served by this host",
        path.display()
    ))
}

impl ControlClient {
    pub fn new(path: PathBuf) -> Self {
        ControlClient { path }
    }

    pub fn call(&self, req: &Request) -> Result<serde_json::Value, String> {
        self.call_with_progress(req, &mut |_, _| {})
    }

    /// Like `call`, reporting `{"progress":[done,total]}` lines as they arrive.
    pub fn call_with_progress(
        &self,
        req: &Request,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<serde_json::Value, String> {
        let mut s = UnixStream::connect(&self.path)
            .map_err(|e| format!("cannot reach the daemon at {}: {e}", self.path.display()))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        s.write_all(&line)
            .map_err(|e| format!("cannot send to the daemon: {e}"))?;
        let _ = s.set_read_timeout(None);
        let mut reader = BufReader::new(s);
        let mut answer = String::new();
        loop {
            answer.clear();
            let n = reader
                .read_line(&mut answer)
                .map_err(|e| format!("no answer from the daemon: {e}"))?;
            if n == 0 {
                return Err("the daemon closed the connection without answering".into());
            }
            let v: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|e| format!("bad answer from the daemon: {e}"))?;
            match v.get("progress").and_then(|p| p.as_array()) {
                Some(p) if p.len() == 2 => {
                    on_progress(p[0].as_u64().unwrap_or(0), p[1].as_u64().unwrap_or(0))
                }
                _ => break,
            }
        }
        let r: Response = serde_json::from_str(&answer)
            .map_err(|e| format!("bad answer from the daemon: {e}"))?;
        if r.ok {
            Ok(r.data)
        } else {
            Err(r.error.unwrap_or_else(|| "the daemon refused".into()))
        }
    }
}
