//! Atomic replacement of small files: write a temp file, rename it over the target. Readers
//! see the old or the new contents, never a partial file. `write_atomic` also makes the new
//! file durable (fsync of the file, then of the directory), so a crash leaves either version;
//! `write_volatile` skips the fsyncs, for runtime files that mean nothing after a crash.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `contents`, durably: for volume metadata and keys.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, true)
}

/// Replaces `path` with `contents` without waiting for the disk: for files such as a pid file
/// under /run, which a crash makes stale anyway (two fsyncs cost milliseconds at mount).
pub fn write_volatile(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, false)
}

fn replace(path: &Path, contents: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut tmp_name = std::ffi::OsString::from(".tmp.");
    tmp_name.push(name);
    tmp_name.push(format!(".{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
