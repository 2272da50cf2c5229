//! Applications' locks on a shared volume: `fcntl` POSIX locks and `flock` locks are passed on
//! to the volume, which takes them on the backing file (`volume::app_locks`), so that they
//! hold across hosts. A non-shared volume leaves locks to the kernel (the FUSE capabilities
//! are not asked for), which is exact for one daemon and costs nothing.
//!
//! A lock that must wait is waited for on a thread of its own, so that waiting applications
//! never hold the FUSE threads that the holder needs to release it.
//!
//! Taking a lock drops the pages the kernel caches for the file (as an NFS client does), so
//! that an application that keeps a file open and coordinates with locks (SQLite) reads what
//! another host wrote before it released the lock. Close-to-open alone would serve it pages
//! cached before.

use std::sync::Arc;

use fuser::{FileHandle, INodeNo, LockOwner, ReplyEmpty, ReplyLock};

use crate::volume::{LockRange, OpenFile, Volume, VolumeError};

use super::CmkFs;
use super::errno::to_errno;

impl CmkFs {
    pub(super) fn lock_file(&self, fh: FileHandle) -> Result<Arc<OpenFile>, VolumeError> {
        self.file_handle(fh.0).map(|(f, _)| f)
    }

    /// SETLK / SETLKW: done now, or (waiting) on a thread of its own that replies.
    pub(super) fn set_posix_lock(
        &self,
        ino: INodeNo,
        f: Arc<OpenFile>,
        owner: LockOwner,
        r: LockRange,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let wait = sleep && r.typ != libc::F_UNLCK;
        let taken = (r.typ != libc::F_UNLCK).then_some(ino);
        self.lock_now_or_later(wait, taken, reply, move |vol, wait| {
            vol.posix_lock(&f, owner.0, r, wait)
        });
    }

    /// flock: done now, or (waiting) on a thread of its own that replies.
    pub(super) fn set_flock(
        &self,
        ino: INodeNo,
        f: Arc<OpenFile>,
        owner: LockOwner,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let wait = sleep && typ != libc::F_UNLCK;
        let taken = (typ != libc::F_UNLCK).then_some(ino);
        self.lock_now_or_later(wait, taken, reply, move |vol, wait| {
            vol.flock(&f, owner.0, typ, wait)
        });
    }

    /// Runs `lock` (told whether to wait) and replies: here, or on a thread of its own when it
    /// may wait. Once a lock on inode `taken` is had, the kernel's pages of it are dropped
    /// (before the reply, so the application reads afresh as soon as it holds the lock).
    fn lock_now_or_later(
        &self,
        wait: bool,
        taken: Option<INodeNo>,
        reply: ReplyEmpty,
        lock: impl FnOnce(&Volume, bool) -> Result<(), VolumeError> + Send + 'static,
    ) {
        let notifier = self.notifier.clone();
        let answer = move |r: Result<(), VolumeError>, reply: ReplyEmpty| match r {
            Ok(()) => {
                if let (Some(ino), Some(n)) = (taken, notifier.get())
                    && let Err(e) = n.inval_inode(ino, 0, 0)
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    tracing::warn!(
                        ino = ino.0,
                        "cannot drop the cached pages of a locked file: {e}"
                    );
                }
                reply.ok()
            }
            Err(e) => reply.error(to_errno(&e)),
        };
        if !wait {
            answer(lock(&self.vol, false), reply);
            return;
        }
        let vol: Arc<Volume> = self.vol.clone();
        let spawned = std::thread::Builder::new()
            .name("lock-wait".into())
            .spawn(move || answer(lock(&vol, true), reply));
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread to wait for a lock: {e}");
        }
    }

    /// GETLK: the conflicting lock of another owner (any host), or `F_UNLCK`.
    pub(super) fn test_posix_lock(
        &self,
        f: &OpenFile,
        owner: LockOwner,
        r: LockRange,
        reply: ReplyLock,
    ) {
        match self.vol.posix_test_lock(f, owner.0, r) {
            // The holder may be on another host: no pid to name.
            Ok(c) => reply.locked(c.start, c.end, c.typ, 0),
            Err(e) => reply.error(to_errno(&e)),
        }
    }
}
