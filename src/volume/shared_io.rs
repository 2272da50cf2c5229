//! File content in shared mode, where daemons on other hosts change the same backing files.
//!
//! - Every change of a file (write, append, truncate, fallocate, punch) holds an OFD write
//!   lock on the whole backing file (`F_OFD_SETLKW`, carried between clients by NFSv4, CephFS
//!   and GlusterFS), so block read-modify-write, the final block's re-seal, header creation,
//!   growth and hole-map changes of two hosts never interleave: concurrent writers to one
//!   file are serialized, both survive.
//! - Before a change or a read, the file's state is refreshed from the backing file when it
//!   changed since this daemon last saw it (size, mtime, ctime): the plaintext size, a header
//!   another host created, the hole map (read again), and the kernel page cache of the
//!   backing file (dropped, since a descriptor open on a network filesystem may keep serving
//!   pages the other host has since rewritten).
//! - A read that fails authentication is retried after a refresh, a few times: the other host
//!   may have grown the file (its old final block re-sealed as a full one) between this
//!   daemon's refresh and its read. Only a failure that persists is reported.
//! - Re-encryption replaces a backing file by a new one (copy, rename) under the change lock
//!   and first marks the old one (its sticky bit). A host that still has the old file
//!   open finds, on its next change, the file gone (no link) and marked: the change fails
//!   with `ESTALE` (reopen to write), never lands in a file nobody will read again. A file
//!   deleted by another host carries no mark: writes to it go on, as POSIX says.
//! - Hole maps: holes added (punch, sparse growth) are stored at once under the lock, after
//!   the map is read again; holes filled are not stored (a map that lists a block holding
//!   data is read correctly: only all-zero blocks consult it), so no host's store can drop
//!   another host's new hole.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::file::{FileState, OpenFile};
use super::{Result, Volume};

/// What a change of a backing file changes: its length and times; and whether it was
/// replaced by re-encryption on some host (no name left, and marked: see `mark_replaced`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    replaced: bool,
}

impl Stamp {
    fn of(file: &File) -> std::io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            replaced: m.nlink() == 0 && m.mode() & REPLACED_MARK != 0,
        })
    }
}

/// An OFD lock on a backing file's change lock byte (a writer's write lock, or `fsck
/// --shared`'s read lock that holds writers off while a file is checked), released on drop.
pub struct FileLock(Arc<File>);

/// The bytes of a backing file that locks are taken on (all advisory; no data is implied):
/// byte 0 is cmkfs's own change lock (writers take it for writing, `fsck --shared` for
/// reading), byte 1 carries applications' `flock` locks, and applications' POSIX locks on
/// plaintext bytes `[s, e]` are taken on `[s + 2, e + 2]` (`app_locks`). So an application
/// that holds a lock and then writes never waits for itself (a whole-file change lock would
/// conflict with its own lock on another descriptor), and `flock` does not depend on how the
/// backing filesystem implements it (NFS and GlusterFS turn it into a whole-file POSIX lock).
pub(super) const CHANGE_LOCK_BYTE: i64 = 0;
pub(super) const FLOCK_BYTE: i64 = 1;
pub(super) const POSIX_LOCK_BASE: i64 = 2;

fn ofd_lock(file: &File, kind: libc::c_short, wait: bool) -> std::io::Result<()> {
    let fl = libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: CHANGE_LOCK_BYTE,
        l_len: 1,
        l_pid: 0,
    };
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: fcntl with a valid fd and a pointer to a flock that lives across the call.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Err(e) = ofd_lock(&self.0, libc::F_UNLCK as libc::c_short, false) {
            tracing::warn!("cannot release the lock on a backing file: {e}");
        }
    }
}

/// The mark of a backing file that re-encryption replaced: the sticky bit, set on the old
/// file just before the rename. It is meaningless on a regular file otherwise, and unlike an
/// xattr it can still be read from a file another client removed (GlusterFS answers ESTALE
/// to xattr calls on such a file, but `fstat` works).
const REPLACED_MARK: u32 = libc::S_ISVTX;

fn set_mode_bits(file: &File, set: bool) {
    let Ok(m) = file.metadata() else { return };
    let mode = if set {
        m.mode() | REPLACED_MARK
    } else {
        m.mode() & !REPLACED_MARK
    };
    // SAFETY: fchmod on a valid fd; no pointers.
    unsafe { libc::fchmod(file.as_raw_fd(), mode & 0o7777) };
}

/// Marks `file` as replaced by re-encryption (see the module doc).
pub(super) fn mark_replaced(file: &File) {
    set_mode_bits(file, true);
}

/// Removes the mark again (re-encryption failed before its rename).
pub(super) fn unmark_replaced(file: &File) {
    set_mode_bits(file, false);
}

/// Reads that fail authentication are tried this many times more in shared mode.
const READ_RETRIES: u32 = 3;

thread_local! {
    /// Set while a read that may be retried runs: its authentication failures are logged
    /// only if they persist.
    static RETRYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread runs a read that will be retried if it fails authentication.
pub(super) fn retrying() -> bool {
    RETRYING.with(|r| r.get())
}

impl Volume {
    /// Shared mode (`cmkfs fsck --shared`): holds other hosts' writers of `f` off while it is
    /// checked, with an OFD read lock on the whole backing file (every change takes the write
    /// lock), and takes in the file as it is then. Waits up to `wait` for a writer's change to
    /// end; `None` when the volume is not shared or the lock was not had in time (the check
    /// then relies on its retries). Readers are not held off.
    pub fn hold_writers_off(&self, f: &OpenFile, wait: std::time::Duration) -> Option<FileLock> {
        if !self.shared() {
            return None;
        }
        let file = f.raw_file();
        let deadline = std::time::Instant::now() + wait;
        loop {
            match ofd_lock(&file, libc::F_RDLCK as libc::c_short, false) {
                Ok(()) => break,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::debug!("no read lock on a backing file for the check: {e}");
                    return None;
                }
            }
        }
        let lock = FileLock(file);
        let mut st = f.write_state();
        st.seen = None;
        if let Err(e) = self.refresh_state(f, &mut st) {
            tracing::debug!("cannot refresh a file held for the check: {e}");
        }
        Some(lock)
    }

    /// Shared mode: locks `f`'s backing file for a change and refreshes `st` from it. `None`
    /// (and nothing done) for a volume that is not shared.
    pub(super) fn lock_for_change(
        &self,
        f: &OpenFile,
        st: &mut FileState,
    ) -> Result<Option<FileLock>> {
        if !self.shared() {
            return Ok(None);
        }
        let file = f.raw_file();
        ofd_lock(&file, libc::F_WRLCK as libc::c_short, true)?;
        let lock = FileLock(file);
        self.refresh_state(f, st)?;
        if st.seen.is_some_and(|s| s.replaced) {
            return Err(super::errno(libc::ESTALE));
        }
        Ok(Some(lock))
    }

    /// Shared mode: after a change under `lock`, remembers the backing file as this daemon
    /// left it (so its own change is not taken for another host's).
    pub(super) fn changed_under(&self, lock: Option<FileLock>, st: &mut FileState) {
        if let Some(l) = lock
            && let Ok(s) = Stamp::of(&l.0)
        {
            st.seen = Some(s);
        }
    }

    /// Shared mode: takes in what another host changed in `f` since this daemon last looked.
    pub(super) fn refresh_state(&self, f: &OpenFile, st: &mut FileState) -> Result<()> {
        let file = f.raw_file();
        let now = Stamp::of(&file)?;
        if st.seen == Some(now) {
            return Ok(());
        }
        if st.seen.is_some() {
            // Pages of the backing file cached before the other host's change.
            // SAFETY: posix_fadvise on a valid fd; no pointers.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
        f.reload_state(st, &file, now.len, self.layout());
        st.seen = Some(now);
        Ok(())
    }

    /// Shared mode: before a read, the state as the backing file is now.
    pub(super) fn refresh_for_read(&self, f: &OpenFile) -> Result<()> {
        if !self.shared() {
            return Ok(());
        }
        let mut st = f.write_state();
        self.refresh_state(f, &mut st)
    }

    /// Runs a read, retried in shared mode after an authentication failure that another
    /// host's change in flight may explain.
    pub(super) fn read_retrying<T>(
        &self,
        f: &OpenFile,
        mut read: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        self.refresh_for_read(f)?;
        let mut tries = 0;
        loop {
            RETRYING.with(|r| r.set(self.shared() && tries < READ_RETRIES));
            let result = read();
            RETRYING.with(|r| r.set(false));
            match result {
                Err(e) if self.shared() && e.is_integrity() && tries < READ_RETRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10 << (2 * tries)));
                    let mut st = f.write_state();
                    st.seen = None;
                    self.refresh_state(f, &mut st)?;
                }
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ofd_locks_exclude_each_other_and_are_released() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let a = Arc::new(t.reopen().unwrap());
        let b = t.reopen().unwrap();
        ofd_lock(&a, libc::F_WRLCK as libc::c_short, true).unwrap();
        let held = FileLock(a);
        let e = ofd_lock(&b, libc::F_WRLCK as libc::c_short, false).unwrap_err();
        assert!(matches!(
            e.raw_os_error(),
            Some(libc::EAGAIN | libc::EACCES)
        ));
        drop(held);
        ofd_lock(&b, libc::F_WRLCK as libc::c_short, false).unwrap();
    }

    #[test]
    fn applications_locks_never_conflict_with_the_change_lock() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let app = t.reopen().unwrap();
        // An application's whole-file POSIX lock and its flock, on descriptors of their own.
        let whole = super::super::app_locks::to_flock(super::super::LockRange {
            start: 0,
            end: u64::MAX,
            typ: libc::F_WRLCK,
        });
        // SAFETY: fcntl with a valid fd and a flock that lives across the call.
        assert_eq!(
            unsafe { libc::fcntl(app.as_raw_fd(), libc::F_OFD_SETLK, &whole) },
            0
        );
        let flock = super::super::app_locks::flock_range(libc::F_WRLCK);
        let app2 = t.reopen().unwrap();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::fcntl(app2.as_raw_fd(), libc::F_OFD_SETLK, &flock) },
            0
        );
        let writer = t.reopen().unwrap();
        ofd_lock(&writer, libc::F_WRLCK as libc::c_short, false).unwrap();
    }
}
