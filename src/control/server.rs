//! The control socket server: a thread accepting connections, checking SO_PEERCRED (root or
//! the daemon's own user), answering one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::{ControlHandler, MAX_REQUEST, Response, handle};

pub struct ControlServer {
    path: PathBuf,
    aliases: Vec<PathBuf>,
}

impl ControlServer {
    /// Binds `path` (mode 0600; a stale socket is replaced) and serves on a thread.
    /// `aliases` are symlinks to it (e.g. /run/cmkfs/NAME.sock).
    pub fn start(
        path: &Path,
        aliases: Vec<PathBuf>,
        handler: Arc<dyn ControlHandler>,
    ) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
        let _ = std::fs::remove_file(path);
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        for a in &aliases {
            let _ = std::fs::remove_file(a);
            if let Err(e) = std::os::unix::fs::symlink(path, a) {
                tracing::warn!("cannot create control socket alias {}: {e}", a.display());
            }
        }
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(stream) => serve(stream, handler.as_ref()),
                        Err(e) => tracing::warn!("control socket accept: {e}"),
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            aliases,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        for a in &self.aliases {
            let _ = std::fs::remove_file(a);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, handler: &dyn ControlHandler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let allowed = match getsockopt(&stream, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    };
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let response = if !allowed {
        tracing::warn!(
            "control socket: refused a client that is neither root nor the daemon's user"
        );
        Response {
            ok: false,
            error: Some(
                "permission denied: only root or the daemon's user may use the control socket"
                    .into(),
            ),
            data: serde_json::Value::Null,
        }
    } else {
        let mut line = String::new();
        match BufReader::new(stream.take(MAX_REQUEST as u64)).read_line(&mut line) {
            Ok(_) => {
                let mut progress_out = writer.try_clone().ok();
                let mut progress = |done: u64, total: u64| {
                    if let Some(w) = progress_out.as_mut() {
                        let _ =
                            w.write_all(format!("{{\"progress\":[{done},{total}]}}\n").as_bytes());
                    }
                };
                handle(handler, line.trim(), &mut progress)
            }
            Err(e) => Response {
                ok: false,
                error: Some(format!("cannot read request: {e}")),
                data: serde_json::Value::Null,
            },
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    let _ = writer.write_all(&out);
}
