//! One daemon per backing directory: an exclusive `flock` on `.cmkfs/mount.lock`, whose
//! content names the holder (pid, host, mountpoint) for the refusal message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::format::META_DIR;

use super::{Result, VolumeError};

/// Held for as long as the volume is mounted (inherited by the daemon across fork).
pub struct MountLock {
    _file: Option<File>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Takes the backing directory's mount lock, or says who holds it. A read-only mount of a
/// backing directory on a read-only filesystem needs no lock (nothing can be written).
pub fn lock_backing(backing: &Path, mountpoint: &Path, read_only: bool) -> Result<MountLock> {
    let path = backing.join(META_DIR).join("mount.lock");
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if read_only && e.raw_os_error() == Some(libc::EROFS) => {
            return Ok(MountLock { _file: None });
        }
        Err(e) => {
            return Err(VolumeError::Setup(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    };
    // SAFETY: flock on an fd we own; no pointers.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder: serde_json::Value = serde_json::from_str(&holder).unwrap_or_default();
        return Err(VolumeError::Setup(format!(
            "{} is already mounted (by pid {} on host {} at {}); one daemon per backing directory",
            backing.display(),
            holder
                .get("pid")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            holder.get("host").and_then(|v| v.as_str()).unwrap_or("?"),
            holder
                .get("mountpoint")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
        )));
    }
    let me = serde_json::json!({
        "pid": std::process::id(),
        "host": hostname(),
        "mountpoint": mountpoint,
    });
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(me.to_string().as_bytes()));
    Ok(MountLock { _file: Some(file) })
}

impl MountLock {
    /// Rewrites the holder record (the pid changes when the daemon forks).
    pub fn record_pid(&mut self, mountpoint: &Path) {
        let me = serde_json::json!({ "pid": std::process::id(), "host": hostname(), "mountpoint": mountpoint });
        if let Some(f) = self._file.as_mut() {
            let _ = f
                .set_len(0)
                .and_then(|_| f.rewind())
                .and_then(|_| f.write_all(me.to_string().as_bytes()));
        }
    }
}
