//! Unnamed files (`open(dir, O_TMPFILE)`): an encrypted file that exists only while open, and
//! that `linkat` can give a name later.
//!
//! The backing file is itself an `O_TMPFILE` of the backing directory, so it has no backing
//! name either: closed without a link, the backing filesystem frees it, and a crash leaves
//! nothing behind (at most a hole map of it, which fsck reports as orphaned and removes with
//! `--repair`). Until it is linked it is kept like a removed file that is still open: through
//! a [`LastRef`] pinned to its inode.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Gid, Uid, fchown, linkat};

use super::dir::{LastRef, Owner};
use super::{Attr, Dir, OpenFile, Result, Volume, errno};

impl Volume {
    /// Creates an unnamed regular file in `dir` with permission bits `mode`: the open file,
    /// its attributes, and the reference that keeps it (pin it to the inode).
    pub fn create_unnamed(
        &self,
        dir: &Dir,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<(Arc<OpenFile>, Attr, LastRef)> {
        self.retry_when_full(|| self.create_unnamed_once(dir, mode, owner))
    }

    fn create_unnamed_once(
        &self,
        dir: &Dir,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<(Arc<OpenFile>, Attr, LastRef)> {
        self.check_writable()?;
        let fd = self
            .open_backing_file(
                dir,
                ".",
                OFlag::O_TMPFILE,
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(|e| match &e {
                // The backing filesystem has no O_TMPFILE (EISDIR: a kernel without it).
                super::VolumeError::Io(io)
                    if matches!(io.raw_os_error(), Some(libc::EISDIR | libc::EINVAL)) =>
                {
                    errno(libc::EOPNOTSUPP)
                }
                _ => e,
            })?;
        let mut st = fstat(&fd)?;
        if let Some(o) = owner
            && (o.uid, o.gid) != (st.st_uid, st.st_gid)
        {
            fchown(&fd, Some(Uid::from_raw(o.uid)), Some(Gid::from_raw(o.gid)))?;
            st.st_uid = o.uid;
            st.st_gid = o.gid;
        }
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let keep = openat(
            AT_FDCWD,
            path.as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let last = LastRef {
            fd: keep,
            backing_ino: st.st_ino,
            bytes: 0,
            // It may become sparse while open: its hole map goes with it.
            maybe_sparse: true,
            scope: dir.scope(),
        };
        let f = self.share_open_file_with(File::from(fd), st.st_ino, 0, dir.scope())?;
        let attr = self.attr_of(&st)?;
        Ok((f, attr, last))
    }

    /// Gives the file that `last` keeps the name `name` in `dir` (`linkat` of an unnamed
    /// file). A removed file that was not created unnamed cannot get a name again: the backing
    /// filesystem refuses it (ENOENT), as the kernel does above.
    pub fn link_unnamed(&self, last: &LastRef, dir: &Dir, name: &OsStr) -> Result<Attr> {
        self.retry_when_full(|| self.link_unnamed_once(last, dir, name))
    }

    fn link_unnamed_once(&self, last: &LastRef, dir: &Dir, name: &OsStr) -> Result<Attr> {
        self.check_writable()?;
        if last.scope != dir.scope() {
            return Err(super::errno(libc::EXDEV));
        }
        let b = self.backing_name(dir, name)?;
        self.write_side_file(dir, &b)?;
        let path = format!("/proc/self/fd/{}", last.fd.as_raw_fd());
        if let Err(e) = linkat(
            AT_FDCWD,
            path.as_str(),
            dir.fd(),
            b.entry(),
            AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            if e != Errno::EEXIST {
                self.remove_side_file(dir, &b);
            }
            return Err(e.into());
        }
        self.attr_at(dir, b.entry(), &self.stat_entry(dir, b.entry())?)
    }
}
