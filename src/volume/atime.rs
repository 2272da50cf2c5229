//! Access times. The kernel's FUSE module never updates atime itself (its inodes are
//! `S_NOATIME`; after a read it only forgets the cached atime), so the plaintext atime is the
//! backing object's atime, and the daemon decides when it moves:
//!
//! - every backing descriptor the daemon opens for its own I/O (header read at open, read-
//!   modify-write, prefetch, listings, re-encryption, fsck) has `O_NOATIME` (without it when
//!   the backing fs refuses, `EPERM` for a file the daemon does not own);
//! - a read a program asks for goes through a second descriptor without `O_NOATIME`, so the
//!   backing filesystem applies its own atime rules to it, just as it would to that program;
//!   where the cmkfs mount's policy is stricter than the backing mount's, the daemon sets the
//!   atime explicitly after the read (which, as with `touch -a`, also sets the ctime).
//!
//! The policy comes from the mount options `noatime`, `relatime` (default) and `strictatime`,
//! as on ext4. Never decides anything about mtime or ctime.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, futimens};
use nix::sys::statvfs::{FsFlags, fstatvfs};
use nix::sys::time::TimeSpec;

use super::{OpenFile, Volume};

/// When a read updates the access time (the mount options of the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimePolicy {
    /// `noatime`: never.
    Never,
    /// `relatime` (the kernel's default): when the atime is not newer than the mtime or the
    /// ctime, or is at least a day old.
    #[default]
    Relative,
    /// `strictatime`: on every read.
    Strict,
}

impl AtimePolicy {
    /// The policy a mount of the filesystem holding `fd` applies.
    pub fn of_mount(fd: BorrowedFd<'_>) -> AtimePolicy {
        match fstatvfs(fd) {
            Ok(s) if s.flags().contains(FsFlags::ST_NOATIME) => AtimePolicy::Never,
            Ok(s) if s.flags().contains(FsFlags::ST_RELATIME) => AtimePolicy::Relative,
            Ok(_) => AtimePolicy::Strict,
            Err(_) => AtimePolicy::Relative,
        }
    }

    /// Whether a read now would update an object with these times (`atime_needs_update`).
    pub fn read_updates(self, st: &FileStat, now: i64) -> bool {
        let t = |s: i64, ns: i64| (s, ns);
        let atime = t(st.st_atime, st.st_atime_nsec);
        match self {
            AtimePolicy::Never => false,
            AtimePolicy::Strict => true,
            AtimePolicy::Relative => {
                atime <= t(st.st_mtime, st.st_mtime_nsec)
                    || atime <= t(st.st_ctime, st.st_ctime_nsec)
                    || now - st.st_atime >= 24 * 60 * 60
            }
        }
    }
}

/// The cmkfs mount's atime policy, whether it covers directories (not `nodiratime`), and the
/// policy of the mount holding the backing directory.
#[derive(Clone, Copy, Debug)]
pub(super) struct AtimeSettings {
    pub policy: AtimePolicy,
    pub directories: bool,
    pub backing: AtimePolicy,
}

impl Default for AtimeSettings {
    fn default() -> Self {
        AtimeSettings {
            policy: AtimePolicy::Relative,
            directories: true,
            backing: AtimePolicy::Relative,
        }
    }
}

/// `openat` with `O_NOATIME`, retried without it where the backing fs refuses (`EPERM`: the
/// daemon neither owns the file nor has CAP_FOWNER).
pub fn openat_noatime<P: ?Sized + nix::NixPath>(
    dirfd: impl AsFd + Copy,
    path: &P,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    match openat(dirfd, path, flags | OFlag::O_NOATIME, mode) {
        Err(Errno::EPERM) => openat(dirfd, path, flags, mode),
        r => r,
    }
}

/// A listing of the directory `dirfd` (`.`), through a descriptor with `O_NOATIME` unless
/// `touch` (a listing a program asked for).
pub fn list_dir(dirfd: impl AsFd + Copy, touch: bool) -> nix::Result<nix::dir::Dir> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = if touch {
        openat(dirfd, ".", flags, Mode::empty())?
    } else {
        openat_noatime(dirfd, ".", flags, Mode::empty())?
    };
    nix::dir::Dir::from_fd(fd)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Volume {
    /// The cmkfs mount's atime policy and the `nodiratime` flag (set before serving).
    pub fn set_atime_policy(&self, policy: AtimePolicy, directories: bool) {
        let backing = AtimePolicy::of_mount(self.root_fd.as_fd());
        if let Ok(mut p) = self.atime.write() {
            *p = AtimeSettings {
                policy,
                directories,
                backing,
            };
        }
        if policy != AtimePolicy::Never && backing != policy {
            tracing::info!(
                ?policy,
                ?backing,
                "the backing mount's atime policy differs: cmkfs sets atimes itself where needed (which also sets the ctime)"
            );
        }
    }

    fn atime_settings(&self) -> AtimeSettings {
        self.atime.read().map(|p| *p).unwrap_or_default()
    }

    /// At an open for reading: whether the next read of `f` by a program must update its
    /// atime (remembered for that read). The FUSE layer then drops the kernel's cached pages,
    /// so that the read reaches the daemon.
    pub fn read_would_update_atime(&self, f: &OpenFile) -> bool {
        let policy = self.atime_settings().policy;
        if policy == AtimePolicy::Never {
            return false;
        }
        let due = match fstat(f.raw_file().as_fd()) {
            Ok(st) => policy.read_updates(&st, now_secs()),
            Err(_) => false,
        };
        if due {
            f.atime_due.store(true, Ordering::Relaxed);
        }
        due
    }

    /// The descriptor a program's read of `f` goes through when that read is to update the
    /// atime (the first read after an open that found it due; every read under
    /// `strictatime`); `None`: the file's own `O_NOATIME` descriptor will do.
    pub(super) fn atime_reader(&self, f: &OpenFile) -> Option<Arc<File>> {
        match self.atime_settings().policy {
            AtimePolicy::Never => return None,
            AtimePolicy::Strict => {}
            AtimePolicy::Relative => {
                if !f.atime_due.swap(false, Ordering::Relaxed) {
                    return None;
                }
            }
        }
        Some(self.reader_of(f))
    }

    /// `f`'s backing file opened without `O_NOATIME` (once per open file).
    fn reader_of(&self, f: &OpenFile) -> Arc<File> {
        if let Some(r) = f.reader.read().ok().and_then(|r| r.clone()) {
            return r;
        }
        let file = f.raw_file();
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let reopened = nix::fcntl::open(
            Path::new(&proc_path),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        match reopened {
            Ok(fd) => {
                let r = Arc::new(File::from(fd));
                if let Ok(mut slot) = f.reader.write() {
                    *slot = Some(r.clone());
                }
                r
            }
            Err(e) => {
                tracing::debug!("cannot reopen a backing file for reads: {e}");
                file
            }
        }
    }

    /// After a program read `fd` (a file's reader, or a directory listed for it): sets the
    /// atime where the cmkfs policy wants an update the backing mount's policy did not make.
    pub(super) fn after_user_read(&self, fd: BorrowedFd<'_>, is_dir: bool) {
        let AtimeSettings {
            policy,
            directories,
            backing,
        } = self.atime_settings();
        if policy == AtimePolicy::Never || (is_dir && !directories) {
            return;
        }
        let stricter = matches!(
            (policy, backing),
            (
                AtimePolicy::Strict,
                AtimePolicy::Relative | AtimePolicy::Never
            ) | (AtimePolicy::Relative, AtimePolicy::Never)
        );
        if !stricter {
            return;
        }
        // The backing read has happened: a relatime update it made already shows here.
        let due = match fstat(fd) {
            Ok(st) => policy.read_updates(&st, now_secs()),
            Err(_) => false,
        };
        if due || policy == AtimePolicy::Strict {
            let _ = futimens(fd, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_OMIT);
        }
    }

    /// Whether listing a directory for a program goes through a descriptor without
    /// `O_NOATIME`.
    pub(super) fn list_updates_atime(&self) -> bool {
        let s = self.atime_settings();
        s.policy != AtimePolicy::Never && s.directories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(atime: i64, mtime: i64, ctime: i64) -> FileStat {
        // SAFETY: FileStat is plain old data; all-zero is a valid value.
        let mut s: FileStat = unsafe { std::mem::zeroed() };
        s.st_atime = atime;
        s.st_mtime = mtime;
        s.st_ctime = ctime;
        s
    }

    #[test]
    fn relatime_rules() {
        let now = 1_000_000;
        let p = AtimePolicy::Relative;
        assert!(
            p.read_updates(&st(10, 20, 5), now),
            "atime older than mtime"
        );
        assert!(p.read_updates(&st(10, 5, 10), now), "atime equal to ctime");
        assert!(p.read_updates(&st(now - 86_400, 5, 5), now), "a day old");
        assert!(!p.read_updates(&st(now - 3600, 5, 5), now));
        assert!(AtimePolicy::Strict.read_updates(&st(now, 5, 5), now));
        assert!(!AtimePolicy::Never.read_updates(&st(1, 5, 5), now));
    }
}
