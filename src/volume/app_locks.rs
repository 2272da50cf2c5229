//! Applications' file locks, forwarded to the backing file so that they hold across hosts
//! (shared mode): POSIX `fcntl` locks and BSD `flock` locks taken through the mount become
//! locks on the backing file, which NFSv4, CephFS and GlusterFS carry between their clients.
//!
//! Each lock owner the kernel names (a process's POSIX locks on a file, or one open file for
//! `flock`) gets a backing descriptor of its own, so owners conflict with each other as on a
//! local filesystem and an owner never conflicts with itself: POSIX locks become OFD locks
//! (`F_OFD_SETLK`, per descriptor) over the same byte range of the backing file, two bytes
//! higher (so byte ranges of the plaintext map to ranges of the ciphertext only in that they
//! are the same numbers: locks are advisory and only compared with each other), `flock` locks
//! become OFD locks on byte 1 of the descriptor. Byte 0 is cmkfs's own change lock
//! (`shared_io`): an application holding any lock can still write. A POSIX owner's locks go when it closes the file (FLUSH), an
//! `flock` owner's when its open file is released.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::shared_io::{FLOCK_BYTE, POSIX_LOCK_BASE};
use super::{OpenFile, Result, Volume, errno};

/// Whose lock: a POSIX lock owner or an `flock` owner (an open file), on one backing file.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Owner {
    Posix(u64, u64),
    Flock(u64, u64),
}

/// The backing descriptors of lock owners.
#[derive(Default)]
pub(super) struct AppLocks {
    fds: Mutex<HashMap<Owner, Arc<File>>>,
}

/// A lock as FUSE describes it: `[start, end]` inclusive (`end` at `i64::MAX` or above: to the
/// end of the file), `typ` `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRange {
    pub start: u64,
    pub end: u64,
    pub typ: i32,
}

/// The lock on the backing file for POSIX lock `r`: the same range, `POSIX_LOCK_BASE` bytes
/// higher (the bytes below are cmkfs's change lock and `flock`'s, see `shared_io`).
pub(super) fn to_flock(r: LockRange) -> libc::flock {
    let max = (i64::MAX - POSIX_LOCK_BASE) as u64;
    let len = if r.end >= max {
        0
    } else {
        (r.end - r.start.min(r.end) + 1) as i64
    };
    libc::flock {
        l_type: r.typ as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: r.start.min(max) as i64 + POSIX_LOCK_BASE,
        l_len: len,
        l_pid: 0,
    }
}

/// The lock on the backing file that carries an `flock` lock of type `typ` (`F_RDLCK`,
/// `F_WRLCK`, `F_UNLCK`): byte `FLOCK_BYTE`.
pub(super) fn flock_range(typ: i32) -> libc::flock {
    libc::flock {
        l_type: typ as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: FLOCK_BYTE,
        l_len: 1,
        l_pid: 0,
    }
}

fn fcntl_lock(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> std::io::Result<()> {
    loop {
        // SAFETY: fcntl with a valid fd and a pointer to a flock that lives across the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl Volume {
    /// The backing descriptor of `owner` on `f`'s backing file (opened on first use).
    fn lock_fd(&self, f: &OpenFile, owner: Owner) -> Result<Arc<File>> {
        let mut fds = self.app_locks.fds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = fds.get(&owner) {
            return Ok(fd.clone());
        }
        let path = format!("/proc/self/fd/{}", f.raw_file().as_raw_fd());
        let open = |acc| nix::fcntl::open(path.as_str(), acc | OFlag::O_CLOEXEC, Mode::empty());
        // A write lock needs a descriptor open for writing (EBADF otherwise).
        let fd = match open(OFlag::O_RDWR) {
            Err(nix::errno::Errno::EACCES | nix::errno::Errno::EROFS) => open(OFlag::O_RDONLY)?,
            r => r?,
        };
        let fd = Arc::new(File::from(fd));
        fds.insert(owner, fd.clone());
        Ok(fd)
    }

    /// Sets (or with `F_UNLCK` clears) POSIX lock `r` of `owner` on `f`; waits for a
    /// conflicting lock to go when `wait` (call it off the FUSE threads then).
    pub fn posix_lock(&self, f: &OpenFile, owner: u64, r: LockRange, wait: bool) -> Result<()> {
        let fd = self.lock_fd(f, Owner::Posix(f.backing_ino(), owner))?;
        let cmd = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        fcntl_lock(&fd, cmd, &mut to_flock(r)).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) => errno(libc::EAGAIN),
            _ => e.into(),
        })
    }

    /// The first lock of another owner that conflicts with `r` (F_GETLK), if any.
    pub fn posix_test_lock(&self, f: &OpenFile, owner: u64, r: LockRange) -> Result<LockRange> {
        let fd = self.lock_fd(f, Owner::Posix(f.backing_ino(), owner))?;
        let mut fl = to_flock(r);
        fcntl_lock(&fd, libc::F_OFD_GETLK, &mut fl)?;
        let start = (fl.l_start - POSIX_LOCK_BASE).max(0) as u64;
        let end = if fl.l_len == 0 {
            i64::MAX as u64
        } else {
            start + fl.l_len as u64 - 1
        };
        Ok(LockRange {
            start,
            end,
            typ: fl.l_type as i32,
        })
    }

    /// `flock` of `owner` (an open file) on `f`: `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub fn flock(&self, f: &OpenFile, owner: u64, typ: i32, wait: bool) -> Result<()> {
        let fd = self.lock_fd(f, Owner::Flock(f.backing_ino(), owner))?;
        let cmd = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        fcntl_lock(&fd, cmd, &mut flock_range(typ)).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES | libc::EAGAIN) => errno(libc::EWOULDBLOCK),
            _ => e.into(),
        })
    }

    /// The POSIX locks of `owner` on `f` go (it closed a descriptor of the file).
    pub fn release_posix_locks(&self, f: &OpenFile, owner: u64) {
        self.drop_lock_fd(Owner::Posix(f.backing_ino(), owner));
    }

    /// The `flock` lock of `owner` on `f` goes (its open file was released).
    pub fn release_flock(&self, f: &OpenFile, owner: u64) {
        self.drop_lock_fd(Owner::Flock(f.backing_ino(), owner));
    }

    /// Closing the owner's descriptor releases its OFD and `flock` locks.
    fn drop_lock_fd(&self, owner: Owner) {
        let fd = self
            .app_locks
            .fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&owner);
        drop(fd);
    }
}
