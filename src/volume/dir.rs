//! Directories and the name operations inside them. A `Dir` is an open backing directory
//! and its directory id; entries are addressed by plaintext name, encrypted here.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, RenameFlags, openat, readlinkat};
use nix::sys::stat::{
    FileStat, Mode, SFlag, UtimensatFlags, fstat, fstatat, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use crate::crypto::random_id;
use crate::format::{DIRID_FILE_NAME, DirIdFile};
use crate::names::{self, BackingName, EntryKind};

use super::atime::{list_dir, openat_noatime};
use super::{
    Attr, FileKind, Inherited, OpenFile, Result, Volume, VolumeError, XattrTarget, errno, symlink,
};

/// An open backing directory.
pub struct Dir {
    fd: OwnedFd,
    id: DirIdFile,
}

impl Dir {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The data key of the directory's entries.
    pub fn key(&self) -> crate::format::DataKeyRef {
        self.id.key
    }

    /// The key scope of the directory's entries (0: the volume's own).
    pub fn scope(&self) -> u32 {
        self.id.key.scope
    }

    /// The directory id as the key store's scope records write it (32 hex digits).
    pub fn dir_id_hex(&self) -> String {
        hex(&self.id.dir_id)
    }

    /// The same directory, open again, with the id `id` (after its id changed).
    pub(super) fn reopened_with(&self, id: DirIdFile) -> Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            id,
        })
    }
}

/// Renames and hard links stay inside one key scope: across a boundary they give `EXDEV`
/// (so `mv` copies, re-encrypting under the target scope's key).
fn same_scope(a: &Dir, b: &Dir) -> Result<()> {
    if a.scope() == b.scope() {
        Ok(())
    } else {
        Err(errno(libc::EXDEV))
    }
}

/// One listed entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub backing_ino: u64,
    pub kind: Option<FileKind>,
    /// The backing entry name (for `entry_attr` without re-encrypting the name).
    pub entry: String,
}

/// Who owns a new entry (set when the daemon runs as root on behalf of another user).
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A new time for setattr.
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

fn timespec(t: Option<TimeSet>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeSet::Now) => TimeSpec::UTIME_NOW,
        Some(TimeSet::At(t)) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => TimeSpec::from_duration(d),
            Err(e) => TimeSpec::from_duration(e.duration()) * -1,
        },
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Volume {
    fn load_dir(&self, fd: OwnedFd) -> Result<Dir> {
        let id = self.dir_id_of(fd.as_fd())?;
        Ok(Dir { fd, id })
    }

    /// `dir` with its id read again (another host made it the root of a key scope).
    pub fn reload_dir(&self, dir: &Dir) -> Result<Dir> {
        self.load_dir(dir.fd.try_clone()?)
    }

    /// The root directory.
    pub fn root(&self) -> Result<Dir> {
        let fd = openat(&self.root_fd, ".", DIR_FLAGS, Mode::empty())?;
        self.load_dir(fd)
    }

    /// The backing name of `name` in `dir`.
    pub fn backing_name(&self, dir: &Dir, name: &OsStr) -> Result<BackingName> {
        let dk = self.keys().data_key(dir.id.key)?;
        Ok(names::encrypt_name(
            dk.names(),
            &dir.id.dir_id,
            name.as_bytes(),
        )?)
    }

    pub(super) fn stat_entry(&self, dir: &Dir, entry: &str) -> Result<FileStat> {
        Ok(fstatat(&dir.fd, entry, AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }

    pub(super) fn attr_of(&self, st: &FileStat) -> Result<Attr> {
        let mut a = Attr::from_stat(st, self.layout()).ok_or(errno(libc::EIO))?;
        if a.kind == FileKind::File
            && let Some(size) = self.open_file_size(a.backing_ino)
        {
            a.size = size;
            a.blocks = super::attr::plain_blocks(size, st.st_blocks as u64);
        }
        Ok(a)
    }

    /// Attributes of the backing entry `entry` of `dir` as stat'ed in `st`: a symlink with a
    /// long target has its length read from its marker.
    pub(super) fn attr_at(&self, dir: &Dir, entry: &str, st: &FileStat) -> Result<Attr> {
        let mut a = self.attr_of(st)?;
        if a.kind == FileKind::Symlink && st.st_size as usize == symlink::MARKER_LEN {
            let stored = readlinkat(&dir.fd, entry)?;
            if let Some(m) = symlink::parse_marker(stored.as_bytes()) {
                a.size = m.len;
            }
        }
        Ok(a)
    }

    /// Attributes of `name` in `dir`.
    pub fn lookup(&self, dir: &Dir, name: &OsStr) -> Result<Attr> {
        let b = self.backing_name(dir, name)?;
        self.attr_at(dir, b.entry(), &self.stat_entry(dir, b.entry())?)
    }

    /// Attributes of a listed entry, by its backing entry name.
    pub fn entry_attr(&self, dir: &Dir, entry: &str) -> Result<Attr> {
        self.attr_at(dir, entry, &self.stat_entry(dir, entry)?)
    }

    /// Attributes of an open directory.
    pub fn dir_attr(&self, dir: &Dir) -> Result<Attr> {
        self.attr_of(&fstat(&dir.fd)?)
    }

    /// Attributes of an open file.
    pub fn file_attr(&self, f: &OpenFile) -> Result<Attr> {
        let st = fstat(f.raw_file())?;
        let mut a = self.attr_of(&st)?;
        a.size = f.size();
        a.blocks = super::attr::plain_blocks(a.size, st.st_blocks as u64);
        Ok(a)
    }

    pub fn open_subdir(&self, dir: &Dir, name: &OsStr) -> Result<Dir> {
        let b = self.backing_name(dir, name)?;
        let fd = openat(&dir.fd, b.entry(), DIR_FLAGS, Mode::empty())?;
        self.load_dir(fd)
    }

    /// Opens a regular file for content access.
    pub fn open_file(&self, dir: &Dir, name: &OsStr) -> Result<Arc<OpenFile>> {
        let b = self.backing_name(dir, name)?;
        let fd = self.open_backing_file(dir, b.entry(), OFlag::empty(), Mode::empty())?;
        self.share_open_file(File::from(fd), dir.scope())
    }

    /// Opens the removed file that `last` keeps (an inode whose name went while the kernel
    /// still knew it): the same file, never what now has its name.
    pub fn open_pinned(&self, last: &LastRef) -> Result<Arc<OpenFile>> {
        if let Some(f) = self.live_open_file(last.backing_ino) {
            return Ok(f);
        }
        let path = format!("/proc/self/fd/{}", last.fd.as_raw_fd());
        let acc = if self.read_only() {
            OFlag::O_RDONLY
        } else {
            OFlag::O_RDWR
        };
        let flags = acc | OFlag::O_CLOEXEC;
        let fd = match openat_noatime(AT_FDCWD, path.as_str(), flags, Mode::empty()) {
            Err(Errno::EACCES) if !self.read_only() => openat_noatime(
                AT_FDCWD,
                path.as_str(),
                (flags - OFlag::O_RDWR) | OFlag::O_RDONLY,
                Mode::empty(),
            )?,
            r => r?,
        };
        self.share_open_file(File::from(fd), last.scope)
    }

    /// Attributes of the removed file that `last` keeps.
    pub fn pinned_attr(&self, last: &LastRef) -> Result<Attr> {
        self.attr_of(&fstat(&last.fd)?)
    }

    pub(super) fn open_backing_file(
        &self,
        dir: &Dir,
        entry: &str,
        extra: OFlag,
        mode: Mode,
    ) -> Result<OwnedFd> {
        let acc = if self.read_only() {
            OFlag::O_RDONLY
        } else {
            OFlag::O_RDWR
        };
        let flags = acc | extra | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat_noatime(&dir.fd, entry, flags, mode) {
            Err(Errno::EACCES) if !self.read_only() => Ok(openat_noatime(
                &dir.fd,
                entry,
                (flags - OFlag::O_RDWR) | OFlag::O_RDONLY,
                mode,
            )?),
            Err(Errno::ELOOP) => Err(errno(libc::ELOOP)),
            r => Ok(r?),
        }
    }

    pub(super) fn check_writable(&self) -> Result<()> {
        if self.read_only() {
            Err(errno(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// Writes the side file of a long name (no-op for short names).
    pub(super) fn write_side_file(&self, dir: &Dir, b: &BackingName) -> Result<()> {
        if let BackingName::Long {
            side_file, encoded, ..
        } = b
        {
            let fd = openat(
                &dir.fd,
                side_file.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_TRUNC
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o400),
            )?;
            File::from(fd).write_all(encoded.as_bytes())?;
        }
        Ok(())
    }

    pub(super) fn remove_side_file(&self, dir: &Dir, b: &BackingName) {
        if let BackingName::Long { side_file, .. } = b
            && let Err(e) = unlinkat(&dir.fd, side_file.as_str(), UnlinkatFlags::NoRemoveDir)
        {
            tracing::warn!("cannot remove long-name side file {side_file}: {e}");
        }
    }

    fn chown_entry(&self, dir: &Dir, entry: &str, owner: Option<Owner>) -> Result<()> {
        if let Some(o) = owner {
            fchownat(
                &dir.fd,
                entry,
                Some(Uid::from_raw(o.uid)),
                Some(Gid::from_raw(o.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    /// Creates (or with `exclusive` false, opens an existing) regular file.
    pub fn create_file(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        owner: Option<Owner>,
        exclusive: bool,
    ) -> Result<(Arc<OpenFile>, Attr)> {
        self.retry_when_full(|| self.create_file_once(dir, name, mode, owner, exclusive))
    }

    /// One attempt of [`Self::create_file`].
    fn create_file_once(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        owner: Option<Owner>,
        exclusive: bool,
    ) -> Result<(Arc<OpenFile>, Attr)> {
        self.check_writable()?;
        let b = self.backing_name(dir, name)?;
        self.write_side_file(dir, &b)?;
        let excl = if exclusive {
            OFlag::O_EXCL
        } else {
            OFlag::empty()
        };
        let fd = match self.open_backing_file(
            dir,
            b.entry(),
            OFlag::O_CREAT | excl,
            Mode::from_bits_truncate(mode & 0o7777),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                if exclusive {
                    // The side file belongs to an existing entry when the name exists.
                    if !matches!(&e, VolumeError::Io(io) if io.raw_os_error() == Some(libc::EEXIST))
                    {
                        self.remove_side_file(dir, &b);
                    }
                }
                return Err(e);
            }
        };
        let mut st = fstat(&fd)?;
        if st.st_size == 0
            && st.st_nlink == 1
            && let Some(o) = owner
            && (o.uid, o.gid) != (st.st_uid, st.st_gid)
        {
            nix::unistd::fchown(&fd, Some(Uid::from_raw(o.uid)), Some(Gid::from_raw(o.gid)))?;
            st.st_uid = o.uid;
            st.st_gid = o.gid;
        }
        let f =
            self.share_open_file_with(File::from(fd), st.st_ino, st.st_size as u64, dir.scope())?;
        let mut attr = self.attr_of(&st)?;
        attr.size = f.size();
        attr.blocks = super::attr::plain_blocks(attr.size, st.st_blocks as u64);
        Ok((f, attr))
    }

    /// Creates a directory: built under a temporary name with its id file (and the ACLs it
    /// inherits, if any), then renamed into place, so a crash never leaves a directory
    /// without an id and no entry is ever created in it before its default ACL is there.
    pub fn mkdir(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        owner: Option<Owner>,
        acls: Option<&Inherited>,
    ) -> Result<Attr> {
        self.retry_when_full(|| self.mkdir_once(dir, name, mode, owner, acls))
    }

    /// One attempt of [`Self::mkdir`].
    fn mkdir_once(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        owner: Option<Owner>,
        acls: Option<&Inherited>,
    ) -> Result<Attr> {
        self.check_writable()?;
        let b = self.backing_name(dir, name)?;
        let tmp = format!(".tmp.mkdir.{}", hex(&random_id()?[..8]));
        mkdirat(&dir.fd, tmp.as_str(), Mode::from_bits_truncate(0o700))?;
        let result = (|| -> Result<()> {
            let sub = openat(&dir.fd, tmp.as_str(), DIR_FLAGS, Mode::empty())?;
            let id = DirIdFile {
                key: self.current_key(dir.scope())?,
                dir_id: random_id()?,
            };
            self.write_new_dir_id(sub.as_fd(), &id)?;
            nix::sys::stat::fchmod(&sub, Mode::from_bits_truncate(mode & 0o7777))?;
            if let Some(o) = owner {
                nix::unistd::fchown(&sub, Some(Uid::from_raw(o.uid)), Some(Gid::from_raw(o.gid)))?;
            }
            let sub = Dir { fd: sub, id };
            if let Some(a) = acls.filter(|a| !a.is_empty()) {
                self.store_inherited(XattrTarget::Dir(&sub), a)?;
            }
            self.write_side_file(dir, &b)?;
            if let Err(e) = self.renamer.rename(
                &dir.fd,
                tmp.as_str(),
                &dir.fd,
                b.entry(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                if e != Errno::EEXIST {
                    self.remove_side_file(dir, &b);
                }
                return Err(e.into());
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = unlinkat(
                &dir.fd,
                format!("{tmp}/{DIRID_FILE_NAME}").as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            let _ = unlinkat(&dir.fd, tmp.as_str(), UnlinkatFlags::RemoveDir);
            return Err(e);
        }
        self.attr_of(&self.stat_entry(dir, b.entry())?)
    }

    /// Creates a FIFO, socket or device node (or an empty regular file).
    pub fn mknod(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        owner: Option<Owner>,
    ) -> Result<Attr> {
        self.retry_when_full(|| self.mknod_once(dir, name, mode, rdev, owner))
    }

    /// One attempt of [`Self::mknod`].
    fn mknod_once(
        &self,
        dir: &Dir,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        owner: Option<Owner>,
    ) -> Result<Attr> {
        self.check_writable()?;
        let kind = FileKind::from_mode(mode).ok_or(errno(libc::EINVAL))?;
        if kind == FileKind::File {
            let (f, a) = self.create_file(dir, name, mode, owner, true)?;
            drop(f);
            return Ok(a);
        }
        if kind == FileKind::Dir || kind == FileKind::Symlink {
            return Err(errno(libc::EINVAL));
        }
        let b = self.backing_name(dir, name)?;
        self.write_side_file(dir, &b)?;
        let sflag = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        if let Err(e) = mknodat(
            &dir.fd,
            b.entry(),
            sflag,
            Mode::from_bits_truncate(mode & 0o7777),
            rdev as libc::dev_t,
        ) {
            if e != Errno::EEXIST {
                self.remove_side_file(dir, &b);
            }
            return Err(e.into());
        }
        self.chown_entry(dir, b.entry(), owner)?;
        self.attr_of(&self.stat_entry(dir, b.entry())?)
    }

    pub fn symlink(
        &self,
        dir: &Dir,
        name: &OsStr,
        target: &[u8],
        owner: Option<Owner>,
    ) -> Result<Attr> {
        self.retry_when_full(|| self.symlink_once(dir, name, target, owner))
    }

    /// One attempt of [`Self::symlink`].
    fn symlink_once(
        &self,
        dir: &Dir,
        name: &OsStr,
        target: &[u8],
        owner: Option<Owner>,
    ) -> Result<Attr> {
        self.check_writable()?;
        let b = self.backing_name(dir, name)?;
        let stored = self.seal_link(self.current_key(dir.scope())?, target)?;
        let made = self.write_side_file(dir, &b).and_then(|()| {
            match symlinkat(stored.as_str(), &dir.fd, b.entry()) {
                Ok(()) => Ok(()),
                Err(e) => {
                    if e != Errno::EEXIST {
                        self.remove_side_file(dir, &b);
                    }
                    Err(e.into())
                }
            }
        });
        if let Err(e) = made {
            self.forget_link(stored.as_bytes());
            return Err(e);
        }
        self.chown_entry(dir, b.entry(), owner)?;
        self.attr_at(dir, b.entry(), &self.stat_entry(dir, b.entry())?)
    }

    pub fn readlink(&self, dir: &Dir, name: &OsStr) -> Result<Vec<u8>> {
        let b = self.backing_name(dir, name)?;
        let stored = readlinkat(&dir.fd, b.entry())?;
        self.open_link(stored.as_bytes()).inspect_err(|e| {
            tracing::error!(entry = b.entry(), "symlink target: {e}");
        })
    }

    pub fn link(&self, src_dir: &Dir, src: &OsStr, dst_dir: &Dir, dst: &OsStr) -> Result<Attr> {
        self.retry_when_full(|| self.link_once(src_dir, src, dst_dir, dst))
    }

    /// One attempt of [`Self::link`].
    fn link_once(&self, src_dir: &Dir, src: &OsStr, dst_dir: &Dir, dst: &OsStr) -> Result<Attr> {
        self.check_writable()?;
        same_scope(src_dir, dst_dir)?;
        let sb = self.backing_name(src_dir, src)?;
        let db = self.backing_name(dst_dir, dst)?;
        self.write_side_file(dst_dir, &db)?;
        if let Err(e) = linkat(
            &src_dir.fd,
            sb.entry(),
            &dst_dir.fd,
            db.entry(),
            AtFlags::empty(),
        ) {
            if e != Errno::EEXIST {
                self.remove_side_file(dst_dir, &db);
            }
            return Err(e.into());
        }
        self.attr_at(dst_dir, db.entry(), &self.stat_entry(dst_dir, db.entry())?)
    }

    /// Removes a non-directory.
    /// Returns the attributes the entry had and, when this was its last name, a reference
    /// that keeps it allocated: the caller pins it to the inode the kernel may still open, or
    /// hands it to [`Volume::release_later`].
    pub fn unlink(&self, dir: &Dir, name: &OsStr) -> Result<(Attr, Option<LastRef>)> {
        self.check_writable()?;
        let b = self.backing_name(dir, name)?;
        let st = self.stat_entry(dir, b.entry())?;
        if FileKind::from_mode(st.st_mode) == Some(FileKind::Dir) {
            return Err(errno(libc::EISDIR));
        }
        let last_ref = self.last_reference(dir, b.entry(), &st);
        let long_link = self.last_long_link(dir, b.entry(), &st);
        unlinkat(&dir.fd, b.entry(), UnlinkatFlags::NoRemoveDir)?;
        self.remove_side_file(dir, &b);
        if let Some(stored) = long_link {
            self.forget_link(&stored);
        }
        Ok((self.attr_of(&st)?, last_ref))
    }

    /// For a file with data about to lose its last name: a reference to it, which, held across
    /// the unlink (or the rename over it), moves the freeing of its blocks out of the request
    /// and onto the release thread (`release_later`).
    fn last_reference(&self, dir: &Dir, entry: &str, st: &FileStat) -> Option<LastRef> {
        if st.st_nlink != 1 {
            return None;
        }
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir.fd, entry, flags, Mode::empty()).ok()?;
        Some(LastRef {
            fd,
            backing_ino: st.st_ino,
            bytes: st.st_blocks as u64 * 512,
            maybe_sparse: super::holes::maybe_sparse(st),
            scope: dir.scope(),
        })
    }

    /// For a symlink with a long target about to lose its last name: its stored target, so
    /// its side record can be removed after it.
    fn last_long_link(&self, dir: &Dir, entry: &str, st: &FileStat) -> Option<Vec<u8>> {
        if st.st_nlink != 1
            || FileKind::from_mode(st.st_mode) != Some(FileKind::Symlink)
            || st.st_size as usize != symlink::MARKER_LEN
        {
            return None;
        }
        let stored = readlinkat(&dir.fd, entry).ok()?;
        let stored = stored.as_bytes().to_vec();
        symlink::parse_marker(&stored).map(|_| stored)
    }

    /// Keeps [`Volume::release_deleted`] (statfs, a full disk) waiting until the returned hold
    /// is dropped: for a removed file on its way to `release_later`.
    pub fn hold_release(&self) -> super::reaper::ReleaseHold {
        self.reaper.hold()
    }

    /// Frees a removed file (or directory) on the release thread, once nothing needs it: its
    /// hole map goes now (or with its last close, if it is open).
    pub fn release_later(&self, last: LastRef) {
        if last.maybe_sparse {
            self.forget_hole_map(&last);
        }
        self.reaper.release(last.fd, last.bytes);
    }

    /// Whether a backing directory holds nothing but its id file.
    pub(super) fn is_empty_dir(&self, fd: &OwnedFd) -> Result<bool> {
        let mut d = list_dir(fd, false)?;
        for e in d.iter() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." && n != DIRID_FILE_NAME.as_bytes() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes an empty directory; returns its attributes.
    pub fn rmdir(&self, dir: &Dir, name: &OsStr) -> Result<Attr> {
        self.check_writable()?;
        let b = self.backing_name(dir, name)?;
        let sub = openat(&dir.fd, b.entry(), DIR_FLAGS, Mode::empty())?;
        let st = fstat(&sub)?;
        let attr = self.attr_of(&st)?;
        let key = self.remove_dir_id(&sub)?;
        if let Err(e) = unlinkat(&dir.fd, b.entry(), UnlinkatFlags::RemoveDir) {
            self.restore_dir_id(&sub, key);
            return Err(e.into());
        }
        self.remove_side_file(dir, &b);
        self.release_later(LastRef {
            fd: sub,
            backing_ino: st.st_ino,
            bytes: st.st_blocks as u64 * 512,
            maybe_sparse: false,
            scope: key.scope,
        });
        Ok(attr)
    }

    /// Checks a directory is empty and removes its id file; returns the data key it named
    /// (its scope), for a restore.
    fn remove_dir_id(&self, sub: &OwnedFd) -> Result<crate::format::DataKeyRef> {
        if !self.is_empty_dir(sub)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        let key = self.dir_id_of(sub.as_fd())?.key;
        // Both copies go, so a concurrent open does not rewrite one from the other.
        if let Err(e) = super::dirid_copies::remove_xattr(sub.as_fd())
            && !matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP))
        {
            return Err(e.into());
        }
        match unlinkat(sub, DIRID_FILE_NAME, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(key),
            Err(e) => Err(e.into()),
        }
    }

    fn restore_dir_id(&self, sub: &OwnedFd, key: crate::format::DataKeyRef) {
        // The directory id only matters while the directory has entries; a new one is fine
        // (in the same key scope: a scope root stays one).
        let restore = || -> Result<()> {
            let id = DirIdFile {
                key,
                dir_id: random_id()?,
            };
            self.write_new_dir_id(sub.as_fd(), &id)
        };
        if let Err(e) = restore() {
            tracing::error!("cannot restore a directory id file after a failed rmdir: {e}");
        }
    }

    /// Renames with `renameat2` flags (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT).
    /// Returns the entry it replaced, if any (a replaced directory is freed here; a replaced
    /// file's last reference goes to the caller, as for [`Volume::unlink`]).
    pub fn rename(
        &self,
        src_dir: &Dir,
        src: &OsStr,
        dst_dir: &Dir,
        dst: &OsStr,
        flags: u32,
    ) -> Result<Option<Replaced>> {
        self.check_writable()?;
        same_scope(src_dir, dst_dir)?;
        let sb = self.backing_name(src_dir, src)?;
        let db = self.backing_name(dst_dir, dst)?;
        let rflags = RenameFlags::from_bits(flags).ok_or(errno(libc::EINVAL))?;
        let exchange = rflags.contains(RenameFlags::RENAME_EXCHANGE);
        let src_st = self.stat_entry(src_dir, sb.entry())?;
        let dst_st = match self.stat_entry(dst_dir, db.entry()) {
            Ok(st) => Some(st),
            Err(VolumeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst_st
            && d.st_ino == src_st.st_ino
            && d.st_dev == src_st.st_dev
        {
            return Ok(None); // same inode: POSIX says do nothing
        }
        // A replaced directory must be empty; its id file goes first (restored on failure).
        let mut victim_dir: Option<(OwnedFd, crate::format::DataKeyRef)> = None;
        if let Some(d) = &dst_st
            && !exchange
            && !rflags.contains(RenameFlags::RENAME_NOREPLACE)
            && FileKind::from_mode(d.st_mode) == Some(FileKind::Dir)
        {
            if FileKind::from_mode(src_st.st_mode) != Some(FileKind::Dir) {
                return Err(errno(libc::EISDIR));
            }
            let sub = openat(&dst_dir.fd, db.entry(), DIR_FLAGS, Mode::empty())?;
            let key = self.remove_dir_id(&sub)?;
            victim_dir = Some((sub, key));
        }
        // A replaced file is freed on the release thread, like an unlinked one.
        let victim_ref = match &dst_st {
            Some(d) if !exchange && victim_dir.is_none() => {
                self.last_reference(dst_dir, db.entry(), d)
            }
            _ => None,
        };
        let victim_link = match &dst_st {
            Some(d) if !exchange => self.last_long_link(dst_dir, db.entry(), d),
            _ => None,
        };
        self.write_side_file(dst_dir, &db)?;
        if let Err(e) =
            self.renamer
                .rename(&src_dir.fd, sb.entry(), &dst_dir.fd, db.entry(), rflags)
        {
            if let Some((sub, key)) = &victim_dir {
                self.restore_dir_id(sub, *key);
            }
            if dst_st.is_none() {
                self.remove_side_file(dst_dir, &db);
            }
            return Err(e.into());
        }
        // After an exchange both names still exist; after RENAME_WHITEOUT the old name holds
        // the whiteout, which keeps the old name's side file (a long name).
        if !exchange && !rflags.contains(RenameFlags::RENAME_WHITEOUT) {
            self.remove_side_file(src_dir, &sb);
        }
        let victim_ref = match (victim_ref, victim_dir, &dst_st) {
            (Some(r), _, _) => Some(r),
            (None, Some((fd, key)), Some(d)) => {
                self.release_later(LastRef {
                    fd,
                    backing_ino: d.st_ino,
                    bytes: d.st_blocks as u64 * 512,
                    maybe_sparse: false,
                    scope: key.scope,
                });
                None
            }
            _ => None,
        };
        if let Some(stored) = victim_link {
            self.forget_link(&stored);
        }
        Ok(if exchange {
            None
        } else {
            dst_st.map(|d| Replaced {
                backing_ino: d.st_ino,
                nlink: d.st_nlink,
                last_ref: victim_ref,
            })
        })
    }

    /// Lists `dir` for the daemon itself (the atime does not move).
    pub fn read_dir(&self, dir: &Dir) -> Result<Vec<DirEntry>> {
        self.read_dir_with(dir, false)
    }

    /// Lists `dir` for a program: the atime moves as the mount's policy says.
    pub fn read_dir_for_user(&self, dir: &Dir) -> Result<Vec<DirEntry>> {
        let touch = self.list_updates_atime();
        let out = self.read_dir_with(dir, touch)?;
        if touch {
            self.after_user_read(dir.fd(), true);
        }
        Ok(out)
    }

    /// Lists `dir`: decrypted names with their backing inodes. Undecryptable entries are
    /// logged and skipped.
    fn read_dir_with(&self, dir: &Dir, touch: bool) -> Result<Vec<DirEntry>> {
        let dk = self.keys().data_key(dir.id.key)?;
        let mut d = list_dir(&dir.fd, touch)?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e?;
            let Ok(entry) = e.file_name().to_str() else {
                continue;
            };
            let name = match names::classify(entry) {
                EntryKind::Reserved => continue,
                EntryKind::Short(enc) => names::decrypt_name(dk.names(), &dir.id.dir_id, enc, None),
                EntryKind::Long { side_file } => match self.read_side_file(dir, &side_file) {
                    Ok(enc) => names::decrypt_name(dk.names(), &dir.id.dir_id, &enc, Some(entry)),
                    Err(_) => Err(names::NameError::Undecryptable),
                },
            };
            let name = match name {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(
                        entry,
                        "skipping a backing entry whose name does not decrypt: {err}"
                    );
                    continue;
                }
            };
            let kind = match e.file_type() {
                Some(nix::dir::Type::Directory) => Some(FileKind::Dir),
                Some(nix::dir::Type::File) => Some(FileKind::File),
                Some(nix::dir::Type::Symlink) => Some(FileKind::Symlink),
                Some(nix::dir::Type::Fifo) => Some(FileKind::Fifo),
                Some(nix::dir::Type::Socket) => Some(FileKind::Socket),
                Some(nix::dir::Type::CharacterDevice) => Some(FileKind::CharDevice),
                Some(nix::dir::Type::BlockDevice) => Some(FileKind::BlockDevice),
                None => None,
            };
            out.push(DirEntry {
                name,
                backing_ino: e.ino(),
                kind,
                entry: entry.to_string(),
            });
        }
        Ok(out)
    }

    fn read_side_file(&self, dir: &Dir, side_file: &str) -> Result<String> {
        let fd = openat_noatime(
            &dir.fd,
            side_file,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(File::from(fd), 4096), &mut s)?;
        Ok(s)
    }

    /// chmod/chown/utimens of `name` in `dir`, or of `dir` itself when `name` is None.
    #[allow(clippy::too_many_arguments)]
    pub fn set_meta(
        &self,
        dir: &Dir,
        name: Option<&OsStr>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<TimeSet>,
        mtime: Option<TimeSet>,
    ) -> Result<()> {
        self.check_writable()?;
        let b = name.map(|n| self.backing_name(dir, n)).transpose()?;
        let entry: &str = b.as_ref().map(|b| b.entry()).unwrap_or(".");
        let flag = if b.is_some() {
            AtFlags::AT_SYMLINK_NOFOLLOW
        } else {
            AtFlags::empty()
        };
        if uid.is_some() || gid.is_some() {
            fchownat(
                &dir.fd,
                entry,
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                flag,
            )?;
        }
        if let Some(m) = mode {
            let st = fstatat(&dir.fd, entry, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if FileKind::from_mode(st.st_mode) != Some(FileKind::Symlink) {
                nix::sys::stat::fchmodat(
                    &dir.fd,
                    entry,
                    Mode::from_bits_truncate(m & 0o7777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
            }
        }
        if atime.is_some() || mtime.is_some() {
            let uflag = if b.is_some() {
                UtimensatFlags::NoFollowSymlink
            } else {
                UtimensatFlags::FollowSymlink
            };
            utimensat(&dir.fd, entry, &timespec(atime), &timespec(mtime), uflag)?;
        }
        Ok(())
    }

    /// chmod/chown/utimens through an open file (works after the last name is gone).
    pub fn set_meta_file(
        &self,
        f: &OpenFile,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<TimeSet>,
        mtime: Option<TimeSet>,
    ) -> Result<()> {
        self.check_writable()?;
        let file = f.raw_file();
        let fd = file.as_fd();
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw))?;
        }
        if let Some(m) = mode {
            nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(m & 0o7777))?;
        }
        if atime.is_some() || mtime.is_some() {
            nix::sys::stat::futimens(fd, &timespec(atime), &timespec(mtime))?;
        }
        Ok(())
    }

    /// fsync of a directory.
    pub fn sync_dir(&self, dir: &Dir) -> Result<()> {
        nix::unistd::fsync(&dir.fd)?;
        Ok(())
    }

    pub(super) fn dir_identity(&self, dir: &Dir) -> DirIdFile {
        dir.id
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A reference that keeps a removed file allocated: an `O_PATH` descriptor taken before its
/// last name went. Pinned to a FUSE inode the kernel may still open, or freed on the release
/// thread ([`Volume::release_later`]).
#[derive(Debug)]
pub struct LastRef {
    pub fd: OwnedFd,
    pub backing_ino: u64,
    /// Allocated bytes (what freeing it gives back).
    pub bytes: u64,
    /// It may have a hole map to remove.
    pub(super) maybe_sparse: bool,
    /// The key scope of the directory it was in (a new header uses its current key).
    pub scope: u32,
}

/// The entry a rename replaced.
#[derive(Debug)]
pub struct Replaced {
    pub backing_ino: u64,
    /// Its link count before the rename.
    pub nlink: u64,
    /// Its last reference, when the rename took its last name.
    pub last_ref: Option<LastRef>,
}
