//! Renames with `renameat2` flags on backing filesystems that lack them.
//!
//! cmkfs moves new directories into place with `RENAME_NOREPLACE` and passes applications'
//! `RENAME_NOREPLACE`, `RENAME_EXCHANGE` and `RENAME_WHITEOUT` on to the backing directory.
//! Some filesystems refuse every `renameat2` with flags (`EINVAL`; the GlusterFS FUSE client,
//! gluster#3907) while a plain `rename` works. [`Renamer`] notices that on the first such
//! refusal (confirmed with a probe, since `EINVAL` also means "a directory into itself"),
//! says so once in the log, and from then on does each flag with plain renames under its own
//! lock:
//!
//! - `RENAME_NOREPLACE`: `EEXIST` if the target exists, else a plain rename.
//! - `RENAME_EXCHANGE`: three renames through a temporary name in the source directory.
//! - `RENAME_WHITEOUT`: a plain rename, then a 0/0 character device at the old name.
//!
//! Each is atomic against every other rename of this daemon (the kernel also serializes the
//! entry operations of one directory), not against another host working in the same
//! directory at the same moment, and a crash in the middle of an exchange can leave the
//! source under its temporary name (`.tmp.xchg.*`, reported by fsck). docs/shared.md says so.

use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, SFlag, fstatat, mknodat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::crypto::random_id;

use super::dir::hex;

/// Renames for one volume's backing directory (see the module documentation).
#[derive(Default)]
pub(super) struct Renamer {
    /// The backing filesystem refused `renameat2` flags: emulate them.
    no_flags: AtomicBool,
    /// Held while a flag is emulated.
    lock: Mutex<()>,
}

impl Renamer {
    /// Whether `renameat2` flags are emulated (the backing filesystem lacks them).
    pub(super) fn emulating(&self) -> bool {
        self.no_flags.load(Ordering::Relaxed)
    }

    /// `renameat2(from_dir, from, to_dir, to, flags)`, emulated where the backing lacks flags.
    pub(super) fn rename<F: AsFd, T: AsFd>(
        &self,
        from_dir: F,
        from: &str,
        to_dir: T,
        to: &str,
        flags: RenameFlags,
    ) -> nix::Result<()> {
        if flags.is_empty() {
            return renameat2(from_dir, from, to_dir, to, flags);
        }
        if !self.emulating() {
            match renameat2(&from_dir, from, &to_dir, to, flags) {
                Err(Errno::EINVAL) if lacks_rename_flags(&from_dir) => {
                    if !self.no_flags.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the backing filesystem refuses renameat2 flags (EINVAL); RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT are emulated with plain renames from now on"
                        );
                    }
                }
                r => return r,
            }
        }
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        emulate(from_dir, from, to_dir, to, flags)
    }
}

/// Whether the filesystem of `dir` refuses `RENAME_NOREPLACE` where it cannot fail otherwise:
/// a fresh file renamed to a fresh name in the same directory.
fn lacks_rename_flags<D: AsFd>(dir: &D) -> bool {
    let Ok(id) = random_id() else {
        return false;
    };
    let a = format!(".tmp.rnprobe.{}", hex(&id[..8]));
    let b = format!("{a}.2");
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    if openat(dir, a.as_str(), flags, Mode::from_bits_truncate(0o600)).is_err() {
        return false;
    }
    let r = renameat2(
        dir,
        a.as_str(),
        dir,
        b.as_str(),
        RenameFlags::RENAME_NOREPLACE,
    );
    let _ = unlinkat(dir, a.as_str(), UnlinkatFlags::NoRemoveDir);
    let _ = unlinkat(dir, b.as_str(), UnlinkatFlags::NoRemoveDir);
    r == Err(Errno::EINVAL)
}

fn exists<D: AsFd>(dir: &D, name: &str) -> nix::Result<bool> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The flags of `renameat2` done with plain renames (the caller holds the lock).
fn emulate<F: AsFd, T: AsFd>(
    from_dir: F,
    from: &str,
    to_dir: T,
    to: &str,
    flags: RenameFlags,
) -> nix::Result<()> {
    let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
    let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
    let whiteout = flags.contains(RenameFlags::RENAME_WHITEOUT);
    if exchange && (noreplace || whiteout) {
        return Err(Errno::EINVAL);
    }
    if !exists(&from_dir, from)? {
        return Err(Errno::ENOENT);
    }
    if exchange {
        if !exists(&to_dir, to)? {
            return Err(Errno::ENOENT);
        }
        let id = random_id().map_err(|_| Errno::EIO)?;
        let tmp = format!(".tmp.xchg.{}", hex(&id[..8]));
        let none = RenameFlags::empty();
        renameat2(&from_dir, from, &from_dir, tmp.as_str(), none)?;
        if let Err(e) = renameat2(&to_dir, to, &from_dir, from, none) {
            let _ = renameat2(&from_dir, tmp.as_str(), &from_dir, from, none);
            return Err(e);
        }
        if let Err(e) = renameat2(&from_dir, tmp.as_str(), &to_dir, to, none) {
            // Put both back where they were.
            let _ = renameat2(&from_dir, from, &to_dir, to, none);
            let _ = renameat2(&from_dir, tmp.as_str(), &from_dir, from, none);
            return Err(e);
        }
        return Ok(());
    }
    if noreplace && exists(&to_dir, to)? {
        return Err(Errno::EEXIST);
    }
    renameat2(&from_dir, from, &to_dir, to, RenameFlags::empty())?;
    if whiteout {
        mknodat(&from_dir, from, SFlag::S_IFCHR, Mode::empty(), 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir(p: &std::path::Path) -> std::os::fd::OwnedFd {
        fs::File::open(p).unwrap().into()
    }

    #[test]
    fn emulated_flags_match_renameat2() {
        let t = tempfile::tempdir().unwrap();
        let d = dir(t.path());
        fs::write(t.path().join("a"), b"A").unwrap();
        fs::write(t.path().join("b"), b"B").unwrap();
        let noreplace = RenameFlags::RENAME_NOREPLACE;
        assert_eq!(emulate(&d, "a", &d, "b", noreplace), Err(Errno::EEXIST));
        assert_eq!(emulate(&d, "x", &d, "y", noreplace), Err(Errno::ENOENT));
        emulate(&d, "a", &d, "c", noreplace).unwrap();
        assert_eq!(fs::read(t.path().join("c")).unwrap(), b"A");
        emulate(&d, "c", &d, "b", RenameFlags::RENAME_EXCHANGE).unwrap();
        assert_eq!(fs::read(t.path().join("c")).unwrap(), b"B");
        assert_eq!(fs::read(t.path().join("b")).unwrap(), b"A");
        assert_eq!(
            emulate(&d, "c", &d, "nope", RenameFlags::RENAME_EXCHANGE),
            Err(Errno::ENOENT)
        );
        emulate(&d, "c", &d, "moved", RenameFlags::RENAME_WHITEOUT).unwrap();
        let st = fstatat(&d, "c", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!((st.st_mode & libc::S_IFMT, st.st_rdev), (libc::S_IFCHR, 0));
        let mut names: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["b", "c", "moved"], "no temporary name left");
    }

    #[test]
    fn a_filesystem_with_flags_is_not_taken_for_one_without() {
        let t = tempfile::tempdir().unwrap();
        assert!(!lacks_rename_flags(&dir(t.path())));
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            0,
            "probe cleaned up"
        );
    }
}
