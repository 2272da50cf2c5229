//! The FUSE frontend: maps every kernel request onto the volume core. Owns the inode table,
//! file handles and the errno mapping; all fuser types stay inside this module.

mod errno;
mod inodes;
mod locks;
mod privileges;
mod table_guard;

pub use errno::raw_errno;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use crate::audit::{AuditEvent, AuditOp, AuditResult};
use crate::volume::{
    AclKind, Attr, Dir, FileKind, Inherited, LastRef, LockRange, OpenFile, Owner, TimeSet, Volume,
    VolumeError, XattrTarget, errno as verr,
};

use errno::to_errno;
use inodes::{InodeTable, ROOT_INO};

type Result<T> = std::result::Result<T, VolumeError>;

enum Handle {
    File { file: Arc<OpenFile>, append: bool },
    Dir { entries: Arc<Vec<Listed>> },
}

/// One entry of an open directory's listing (taken at opendir).
struct Listed {
    ino: u64,
    kind: FileType,
    name: OsString,
    /// The backing entry name; None for "." and "..".
    entry: Option<String>,
}

/// Where an inode lives, resolved from the inode table.
enum Location {
    Dir(Arc<Dir>),
    Entry {
        parent: Arc<Dir>,
        name: OsString,
        kind: FileKind,
        backing_ino: u64,
    },
    /// A non-directory whose last name was removed while the kernel still knew it: reached
    /// through the reference kept for it, if it still is.
    Removed {
        pin: Option<Arc<LastRef>>,
        kind: FileKind,
    },
}

/// Counters the control socket reports.
#[derive(Debug, Default)]
pub struct FsStats {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub open_files: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_denied: AtomicU64,
}

pub struct CmkFs {
    vol: Arc<Volume>,
    stats: Arc<FsStats>,
    inodes: Arc<RwLock<InodeTable>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    ttl: Duration,
    as_root: bool,
    /// Ask the kernel for its write-back cache (set before `init`).
    want_writeback: bool,
    /// The kernel accepted the write-back cache: it then handles O_APPEND offsets itself.
    writeback: bool,
    /// FUSE_HANDLE_KILLPRIV_V2 is on: truncate and fallocate clear set-ID bits here (writes
    /// say so in their flags).
    killpriv: bool,
    /// Ask the kernel for POSIX ACLs (set before `init`; needs `default_permissions`).
    want_acl: bool,
    /// FUSE_POSIX_ACL and FUSE_DONT_MASK are on: the kernel enforces ACLs and sends modes
    /// unmasked; the umask or the parent's default ACL is applied here.
    acl: bool,
    /// The kernel's notifier, once the session is made (`KernelCaches::new` sets it): shared
    /// mode drops an inode's cached pages when an application takes a lock (`locks`).
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

fn caller(req: &Request) -> privileges::Caller {
    privileges::Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn fuse_attr(ino: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// `system.posix_acl_access` or `system.posix_acl_default`.
fn is_acl_name(name: &OsStr) -> bool {
    AclKind::from_xattr_name(name.as_bytes()).is_some()
}

fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(s),
    })
}

impl CmkFs {
    pub fn new(vol: Arc<Volume>, ttl: Duration, stats: Arc<FsStats>) -> Result<Self> {
        let root = Arc::new(vol.root()?);
        let root_attr = vol.dir_attr(&root)?;
        let inodes = Arc::new(RwLock::new(InodeTable::new(root, root_attr.backing_ino)));
        let for_listener = inodes.clone();
        vol.set_replacement_listener(Box::new(move |old, new| {
            for_listener
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .rebind(old, new);
        }));
        // A full disk: free the removed files that inodes keep but no handle has open.
        let (for_space, weak_vol) = (inodes.clone(), Arc::downgrade(&vol));
        vol.set_space_listener(Box::new(move || {
            let Some(vol) = weak_vol.upgrade() else {
                return;
            };
            // Skipped when this thread holds the table (an unlink or rename holds it across
            // the volume call that found the disk full).
            let pins = match table_guard::write_unless_held_here(&for_space) {
                Some(mut t) => t.release_pins(|b| vol.live_open_file(b).is_some()),
                None => return,
            };
            for last in pins.into_iter().filter_map(|p| Arc::try_unwrap(p).ok()) {
                vol.release_later(last);
            }
        }));
        Ok(CmkFs {
            inodes,
            vol,
            stats,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            ttl,
            as_root: nix::unistd::geteuid().is_root(),
            want_writeback: false,
            writeback: false,
            killpriv: false,
            want_acl: false,
            acl: false,
            notifier: Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// Whether to use the kernel's write-back page cache (default off: with it a write on a
    /// full disk is acknowledged and fails only at flush or fsync).
    pub fn with_writeback_cache(mut self, on: bool) -> Self {
        self.want_writeback = on;
        self
    }

    /// Whether to offer POSIX ACLs (FUSE_POSIX_ACL makes the kernel check permissions itself,
    /// so this is only asked for with `default_permissions`).
    pub fn with_posix_acl(mut self, on: bool) -> Self {
        self.want_acl = on;
        self
    }

    /// The mode and ACLs of a new entry of `parent` (see `volume::acl`). Without ACLs the
    /// kernel has already applied the umask.
    fn inherit(&self, parent: &Dir, mode: u32, umask: u32, is_dir: bool) -> Result<Inherited> {
        if !self.acl {
            return Ok(Inherited {
                mode,
                access: None,
                default: None,
            });
        }
        self.vol.inherit_acl(parent, mode, umask, is_dir)
    }

    /// Open flags: the page cache is kept across opens (this daemon is the only writer of the
    /// backing files; revocation invalidates it explicitly).
    fn open_flags(&self) -> FopenFlags {
        // No FLUSH on close: writes are never buffered here (each write reaches the backing
        // file before it is answered) and POSIX locks are left to the kernel.
        if self.vol.shared() {
            // Close-to-open: each open drops the pages cached before another host's change.
            // FLUSH on close: it releases the closing process's forwarded POSIX locks.
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
        }
    }

    /// A handle on the inode table for `KernelCaches` (taken before the session owns `self`).
    pub fn inode_handle(&self) -> InodeHandle {
        InodeHandle(self.inodes.clone(), self.notifier.clone())
    }

    fn table(&self) -> table_guard::Held<std::sync::RwLockReadGuard<'_, InodeTable>> {
        table_guard::Held::new(self.inodes.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn table_mut(&self) -> table_guard::Held<std::sync::RwLockWriteGuard<'_, InodeTable>> {
        table_guard::Held::new(self.inodes.write().unwrap_or_else(|p| p.into_inner()))
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn locate(&self, ino: u64) -> Result<Location> {
        let t = self.table();
        let n = t.get(ino).ok_or(verr(libc::ENOENT))?;
        if let Some(d) = &n.dir {
            return Ok(Location::Dir(d.clone()));
        }
        if n.kind == FileKind::Dir {
            return Err(verr(libc::ENOENT));
        }
        if !n.linked {
            return Ok(Location::Removed {
                pin: n.pin.clone(),
                kind: n.kind,
            });
        }
        let parent = t
            .get(n.parent)
            .and_then(|p| p.dir.clone())
            .ok_or(verr(libc::ENOENT))?;
        Ok(Location::Entry {
            parent,
            name: n.name.clone(),
            kind: n.kind,
            backing_ino: n.backing_ino,
        })
    }

    fn dir_of(&self, ino: u64) -> Result<Arc<Dir>> {
        match self.locate(ino)? {
            Location::Dir(d) => Ok(d),
            Location::Entry { .. } | Location::Removed { .. } => Err(verr(libc::ENOTDIR)),
        }
    }

    fn owner(&self, req: &Request, parent: &Dir) -> Option<Owner> {
        if !self.as_root {
            return None;
        }
        let mut gid = req.gid();
        if let Ok(pa) = self.vol.dir_attr(parent)
            && pa.perm & 0o2000 != 0
        {
            gid = pa.gid;
        }
        Some(Owner {
            uid: req.uid(),
            gid,
        })
    }

    /// Registers a found or created entry with the kernel; returns its FUSE attributes. A new
    /// directory node gets its `Dir` opened first, so a damaged directory fails the lookup
    /// (EIO, logged) instead of producing a node that cannot be used.
    fn enter(&self, parent_ino: u64, parent: &Dir, name: &OsStr, attr: &Attr) -> Result<FileAttr> {
        let dir = if attr.kind == FileKind::Dir && !self.table().knows_backing(attr.backing_ino) {
            Some(Arc::new(self.vol.open_subdir(parent, name)?))
        } else {
            None
        };
        let vol = &self.vol;
        let ino = self
            .table_mut()
            .intern(parent_ino, name, attr.kind, attr.backing_ino, || {
                dir.or_else(|| vol.open_subdir(parent, name).ok().map(Arc::new))
            });
        Ok(fuse_attr(ino, attr))
    }

    fn new_handle(&self, h: Handle) -> u64 {
        if matches!(h, Handle::File { .. }) {
            self.stats.open_files.fetch_add(1, Ordering::Relaxed);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    fn file_handle(&self, fh: u64) -> Result<(Arc<OpenFile>, bool)> {
        match self.handles().get(&fh) {
            Some(Handle::File { file, append }) => Ok((file.clone(), *append)),
            _ => Err(verr(libc::EBADF)),
        }
    }

    /// The `OpenFile` of a regular-file inode (through a handle when given).
    fn open_file_of(&self, ino: u64, fh: Option<FileHandle>) -> Result<Arc<OpenFile>> {
        if let Some(fh) = fh
            && let Ok((f, _)) = self.file_handle(fh.0)
        {
            return Ok(f);
        }
        match self.locate(ino)? {
            Location::Entry {
                parent,
                name,
                kind: FileKind::File,
                backing_ino,
            } => {
                match self.vol.open_file(&parent, &name) {
                    Ok(f) if f.backing_ino() == backing_ino => Ok(f),
                    // The name was renamed over since the kernel looked it up: this inode is
                    // the file that was there. Still open here: that file; otherwise ESTALE,
                    // on which the kernel looks the name up again and opens what it finds
                    // (never the other file under this inode, which would mix two files).
                    Ok(_) => self
                        .vol
                        .live_open_file(backing_ino)
                        .ok_or(verr(libc::ESTALE)),
                    // The last name is gone but the file is still open: reuse it. Removed by
                    // another host (shared): ESTALE, so that the kernel looks the name up
                    // again rather than fail an open(O_CREAT) with ENOENT.
                    Err(e) if raw_errno(&e) == libc::ENOENT => {
                        let gone = if self.vol.shared() {
                            verr(libc::ESTALE)
                        } else {
                            e
                        };
                        self.vol.live_open_file(backing_ino).ok_or(gone)
                    }
                    Err(e) => Err(e),
                }
            }
            Location::Removed {
                pin: Some(pin),
                kind: FileKind::File,
            } => self.vol.open_pinned(&pin),
            Location::Removed { pin: None, .. } => Err(verr(libc::ENOENT)),
            Location::Dir(_) => Err(verr(libc::EISDIR)),
            Location::Entry { .. } | Location::Removed { .. } => Err(verr(libc::EINVAL)),
        }
    }

    fn attr_of(&self, ino: u64, fh: Option<FileHandle>) -> Result<Attr> {
        if let Some(fh) = fh
            && let Ok((f, _)) = self.file_handle(fh.0)
        {
            return self.vol.file_attr(&f);
        }
        match self.locate(ino)? {
            Location::Dir(d) => self.vol.dir_attr(&d),
            Location::Entry {
                parent,
                name,
                backing_ino,
                ..
            } => match self.vol.lookup(&parent, &name) {
                Ok(a) if a.backing_ino == backing_ino => Ok(a),
                other => match self.vol.live_open_file(backing_ino) {
                    Some(f) => self.vol.file_attr(&f),
                    // Renamed over: ESTALE makes the kernel look the name up again.
                    None if other.is_ok() => Err(verr(libc::ESTALE)),
                    None => other.and(Err(verr(libc::ENOENT))),
                },
            },
            Location::Removed { pin: Some(pin), .. } => self.vol.pinned_attr(&pin),
            Location::Removed { pin: None, .. } => Err(verr(libc::ENOENT)),
        }
    }

    /// Frees a removed file that an inode kept, unless a request still holds it (then the
    /// last holder's drop closes it).
    fn release_pin(&self, pin: Option<Arc<LastRef>>) {
        if let Some(last) = pin.and_then(|p| Arc::try_unwrap(p).ok()) {
            self.vol.release_later(last);
        }
    }

    fn drop_handle(&self, fh: u64) {
        let removed = self.handles().remove(&fh);
        if let Some(Handle::File { file, .. }) = removed {
            self.stats.open_files.fetch_sub(1, Ordering::Relaxed);
            // A close has no error to report to: a hole map that cannot be written stays
            // stale (it then lists holes that were filled, which read as their data).
            if let Err(e) = self.vol.file_closed(&file) {
                tracing::warn!(
                    ino = file.backing_ino(),
                    "hole map not written on close: {e}"
                );
            }
        }
    }

    fn log_failure(&self, op: &str, ino: u64, e: &VolumeError, req: &Request) {
        crate::metrics::fuse_error(op);
        match raw_errno(e) {
            libc::EIO => {
                self.stats.requests_failed.fetch_add(1, Ordering::Relaxed);
                let path = self.table().path(ino);
                tracing::error!(path = %path.display(), errno = libc::EIO, "{op} failed: {e}");
            }
            libc::EKEYREVOKED => {
                // Every access is denied while revoked: counted, logged at debug level only.
                self.stats.requests_denied.fetch_add(1, Ordering::Relaxed);
                let path = self.table().path(ino);
                tracing::debug!(path = %path.display(), errno = libc::EKEYREVOKED, "{op} denied: {e}");
                let key = self
                    .vol
                    .keys()
                    .cmk()
                    .map(|c| c.key_url().to_string())
                    .unwrap_or_default();
                self.vol.keys().audit().record_denial(
                    &path.display().to_string(),
                    AuditEvent::new(AuditOp::AccessDenied, key, AuditResult::Revoked)
                        .caller(req.uid(), req.pid())
                        .detail(format!("{op} {}", path.display())),
                );
            }
            errno => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let t = self.table();
                    let loc = t.get(ino).map(|n| {
                        format!(
                            "parent {} name {:?} backing {} linked {}",
                            n.parent, n.name, n.backing_ino, n.linked
                        )
                    });
                    tracing::debug!(ino, errno, ?loc, "{op} failed: {e}");
                }
            }
        }
    }

    fn xattr_target<T>(
        &self,
        ino: u64,
        write: bool,
        f: impl FnOnce(XattrTarget<'_>) -> Result<T>,
    ) -> Result<T> {
        match self.locate(ino)? {
            Location::Dir(d) => f(XattrTarget::Dir(&d)),
            Location::Entry {
                kind: FileKind::File,
                ..
            }
            | Location::Removed {
                kind: FileKind::File,
                ..
            } => {
                let of = self.open_file_of(ino, None)?;
                f(XattrTarget::File(&of))
            }
            // The backing FIFO, socket or device node cannot hold xattrs. The VFS refuses user
            // xattrs there itself (EPERM); what reaches us are ACLs, which are not supported
            // on these (`cp -a` then falls back to chmod).
            Location::Entry { .. } | Location::Removed { .. } => Err(verr(if write {
                libc::EOPNOTSUPP
            } else {
                libc::ENODATA
            })),
        }
    }

    /// After an access ACL was set: the set-group-ID bit goes unless the caller is in the
    /// file's group or holds CAP_FSETID (the kernel would say so only through
    /// FUSE_SETXATTR_EXT, which fuser does not speak).
    fn drop_sgid_after_acl(&self, req: &Request, ino: u64) -> Result<()> {
        let a = self.attr_of(ino, None)?;
        let sgid = libc::S_ISGID as u16;
        if a.perm & sgid == 0 || privileges::keeps_sgid_on_acl(a.gid, caller(req)) {
            return Ok(());
        }
        let mode = Some((a.perm & !sgid) as u32);
        match self.locate(ino)? {
            Location::Dir(d) => self.vol.set_meta(&d, None, mode, None, None, None, None),
            Location::Entry { parent, name, .. } => {
                self.vol
                    .set_meta(&parent, Some(&name), mode, None, None, None, None)
            }
            Location::Removed { .. } => {
                let f = self.open_file_of(ino, None)?;
                self.vol.set_meta_file(&f, mode, None, None, None, None)
            }
        }
    }

    /// False only when a regular file certainly has no xattrs (checked without opening it).
    fn may_have_xattrs(&self, ino: u64) -> bool {
        match self.locate(ino) {
            Ok(Location::Entry {
                parent,
                name,
                kind: FileKind::File,
                ..
            }) => self.vol.file_has_xattrs(&parent, &name).unwrap_or(true),
            _ => true,
        }
    }

    /// Clears the set-ID bits of `f` that a modification by `req`'s caller takes away (see
    /// `privileges`). A flagged write has already told us the caller lacks CAP_FSETID;
    /// with `check_caller` (truncate, fallocate) that is looked up, once bits are at stake.
    fn drop_privileges(&self, req: &Request, f: &OpenFile, check_caller: bool) -> Result<()> {
        let a = self.vol.file_attr(f)?;
        let Some(perm) = privileges::without_privileges(a.perm, a.gid, caller(req)) else {
            return Ok(());
        };
        if check_caller && privileges::caller_has_fsetid(caller(req)) {
            return Ok(());
        }
        let set_perm = |p: u16| {
            self.vol
                .set_meta_file(f, Some(p.into()), None, None, None, None)
        };
        let set_gid = libc::S_ISGID as u16;
        match set_perm(perm) {
            // systemd's RestrictSUIDSGID refuses any mode that keeps a set-ID bit: clear both.
            Err(e) if errno::raw_errno(&e) == libc::EPERM && perm & set_gid != 0 => {
                set_perm(perm & !set_gid)
            }
            other => other,
        }
    }

    /// After a truncate or fallocate under FUSE_HANDLE_KILLPRIV_V2 (which then carries no
    /// flag we can see): clears set-ID bits unless the caller holds CAP_FSETID.
    fn drop_privileges_of_caller(&self, req: &Request, f: &OpenFile) -> Result<()> {
        if self.killpriv {
            self.drop_privileges(req, f, true)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        req: &Request,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<Attr> {
        if let Some(size) = size {
            let f = self.open_file_of(ino, fh)?;
            self.vol.truncate(&f, size)?;
            self.drop_privileges_of_caller(req, &f)?;
        }
        let (at, mt) = (time_set(atime), time_set(mtime));
        if mode.is_some() || uid.is_some() || gid.is_some() || at.is_some() || mt.is_some() {
            let via_handle = fh.and_then(|fh| self.file_handle(fh.0).ok());
            match (via_handle, self.locate(ino)?) {
                (Some((f, _)), _) => self.vol.set_meta_file(&f, mode, uid, gid, at, mt)?,
                (None, Location::Dir(d)) => self.vol.set_meta(&d, None, mode, uid, gid, at, mt)?,
                (None, Location::Entry { parent, name, .. }) => {
                    self.vol
                        .set_meta(&parent, Some(&name), mode, uid, gid, at, mt)?
                }
                (None, Location::Removed { .. }) => {
                    let f = self.open_file_of(ino, None)?;
                    self.vol.set_meta_file(&f, mode, uid, gid, at, mt)?
                }
            }
            if let Some(m) = mode
                && self.acl
                && self.may_have_xattrs(ino)
            {
                // The access ACL follows the mode, as `posix_acl_chmod` does on ext4.
                match self.xattr_target(ino, true, |t| self.vol.acl_chmod(t, m)) {
                    Err(e) if raw_errno(&e) == libc::EOPNOTSUPP => {}
                    other => other?,
                }
            }
        }
        self.attr_of(ino, fh)
    }

    fn list_dir(&self, ino: u64) -> Result<Vec<Listed>> {
        let dir = self.dir_of(ino)?;
        let entries = self.vol.read_dir_for_user(&dir)?;
        let t = self.table();
        let parent = t.get(ino).map(|n| n.parent).unwrap_or(ROOT_INO);
        let mut out = Vec::with_capacity(entries.len() + 2);
        out.push(Listed {
            ino,
            kind: FileType::Directory,
            name: OsString::from("."),
            entry: None,
        });
        out.push(Listed {
            ino: parent,
            kind: FileType::Directory,
            name: OsString::from(".."),
            entry: None,
        });
        for e in entries {
            let kind = e.kind.map(file_type).unwrap_or(FileType::RegularFile);
            out.push(Listed {
                ino: t.ino_for_backing(e.backing_ino),
                kind,
                name: OsString::from(OsStr::from_bytes(&e.name)),
                entry: Some(e.entry),
            });
        }
        Ok(out)
    }
}

/// The inode table, shared with `KernelCaches`.
#[derive(Clone)]
pub struct InodeHandle(
    Arc<RwLock<InodeTable>>,
    Arc<std::sync::OnceLock<fuser::Notifier>>,
);

/// Drops what the kernel caches for the mount: pages (also of mmaps) and attributes of every
/// inode the kernel knows. Used when a key is revoked, so nothing read before can be read
/// again from the page cache.
pub struct KernelCaches {
    notifier: fuser::Notifier,
    inodes: InodeHandle,
}

impl KernelCaches {
    pub fn new(notifier: fuser::Notifier, inodes: InodeHandle) -> Self {
        let _ = inodes.1.set(notifier.clone());
        KernelCaches { notifier, inodes }
    }

    /// Drops what the kernel caches of the inodes in the key scopes `scopes` (a directory is
    /// in the scope of its entries, anything else in its parent's); returns how many.
    pub fn invalidate_scopes(&self, scopes: &[u32]) -> usize {
        let inos = self
            .inodes
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .inos_in_scopes(scopes);
        inos.into_iter()
            .filter(|ino| self.notifier.inval_inode(INodeNo(*ino), 0, 0).is_ok())
            .count()
    }

    /// The directory inode whose backing inode is `backing_ino` now has `dir` (a new key
    /// scope was made at it): later requests use it.
    pub fn replace_dir(&self, backing_ino: u64, dir: Arc<crate::volume::Dir>) {
        self.inodes
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace_dir(backing_ino, dir);
    }

    /// Loads again the directories `stale` selects (their id changed on disk: another host
    /// made one the root of a key scope), with `reload`; returns how many.
    pub fn reload_dirs(
        &self,
        stale: impl Fn(&crate::volume::Dir) -> bool,
        reload: impl Fn(&crate::volume::Dir) -> Option<crate::volume::Dir>,
    ) -> usize {
        let dirs = self
            .inodes
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .dirs();
        let mut n = 0;
        for (backing_ino, d) in dirs.into_iter().filter(|(_, d)| stale(d)) {
            if let Some(fresh) = reload(&d) {
                self.replace_dir(backing_ino, Arc::new(fresh));
                n += 1;
            }
        }
        n
    }
}

macro_rules! reply_result {
    ($self:ident, $req:ident, $op:literal, $ino:expr, $reply:ident, $res:expr, |$v:ident| $ok:expr) => {{
        crate::metrics::fuse_request($op);
        match $res {
            Ok($v) => $ok,
            Err(e) => {
                $self.log_failure($op, $ino, &e, $req);
                $reply.error(to_errno(&e))
            }
        }
    }};
}

impl Filesystem for CmkFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        // Without it the kernel asks for `security.capability` before every write.
        self.killpriv = config
            .add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_ok();
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        if self.want_acl {
            self.acl = config
                .add_capabilities(
                    fuser::InitFlags::FUSE_POSIX_ACL | fuser::InitFlags::FUSE_DONT_MASK,
                )
                .is_ok();
        }
        if self.vol.shared() {
            // Applications' locks go to the daemon, which takes them on the backing file
            // (`locks`): they then hold across hosts.
            if let Err(e) = config.add_capabilities(
                fuser::InitFlags::FUSE_POSIX_LOCKS | fuser::InitFlags::FUSE_FLOCK_LOCKS,
            ) {
                tracing::warn!(
                    "the kernel does not forward file locks ({e:?}): they stay local to this host"
                );
            }
        }
        if self.want_writeback {
            self.writeback = config
                .add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok();
        }
        tracing::info!(
            writeback_cache = self.writeback,
            killpriv_v2 = self.killpriv,
            posix_acl = self.acl,
            "FUSE session initialized"
        );
        Ok(())
    }

    fn destroy(&mut self) {
        self.handles().clear();
        // Deleted files still being freed are freed before the unmount completes.
        self.vol.release_deleted();
        self.vol.keys().cache().flush();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let attr = self.vol.lookup(&dir, name)?;
            self.enter(parent.0, &dir, name, &attr)
        })();
        reply_result!(self, req, "lookup", parent.0, reply, res, |a| reply.entry(
            &self.ttl,
            &a,
            Generation(0)
        ))
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        crate::metrics::fuse_request("forget");
        // Held from the table to the release thread: a statfs or a full disk in between waits
        // for it rather than finding it in neither.
        let (pin, _hold) = {
            let mut t = self.table_mut();
            let pin = t.forget(ino.0, nlookup);
            let hold = pin.is_some().then(|| self.vol.hold_release());
            (pin, hold)
        };
        self.release_pin(pin);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.attr_of(ino.0, fh);
        reply_result!(self, req, "getattr", ino.0, reply, res, |a| reply
            .attr(&self.ttl, &fuse_attr(ino.0, &a)))
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let res = self.do_setattr(req, ino.0, mode, uid, gid, size, atime, mtime, fh);
        reply_result!(self, req, "setattr", ino.0, reply, res, |a| reply
            .attr(&self.ttl, &fuse_attr(ino.0, &a)))
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = match self.locate(ino.0) {
            Ok(Location::Entry {
                parent,
                name,
                kind: FileKind::Symlink,
                ..
            }) => self.vol.readlink(&parent, &name),
            Ok(Location::Removed { .. }) => Err(verr(libc::ENOENT)),
            Ok(_) => Err(verr(libc::EINVAL)),
            Err(e) => Err(e),
        };
        reply_result!(self, req, "readlink", ino.0, reply, res, |t| reply.data(&t))
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let inh = self.inherit(&dir, mode & 0o7777, umask, false)?;
            let mode = (mode & libc::S_IFMT) | inh.mode;
            let attr = self
                .vol
                .mknod(&dir, name, mode, rdev, self.owner(req, &dir))?;
            // Special files cannot hold an ACL (see `xattr_target`): they keep the masked mode.
            if attr.kind == FileKind::File && !inh.is_empty() {
                let f = self.vol.open_file(&dir, name)?;
                self.vol.store_inherited(XattrTarget::File(&f), &inh)?;
            }
            self.enter(parent.0, &dir, name, &attr)
        })();
        reply_result!(self, req, "mknod", parent.0, reply, res, |a| reply.entry(
            &self.ttl,
            &a,
            Generation(0)
        ))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let inh = self.inherit(&dir, mode & 0o7777, umask, true)?;
            let attr = self
                .vol
                .mkdir(&dir, name, inh.mode, self.owner(req, &dir), Some(&inh))?;
            self.enter(parent.0, &dir, name, &attr)
        })();
        reply_result!(self, req, "mkdir", parent.0, reply, res, |a| reply.entry(
            &self.ttl,
            &a,
            Generation(0)
        ))
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            // The table stays locked from the backing unlink to the update: otherwise a create
            // on another thread could get the freed backing inode number and be bound to the
            // node being removed.
            let mut t = self.table_mut();
            let (attr, last) = self.vol.unlink(&dir, name)?;
            if let Some(last) = last.and_then(|l| t.pin(l)) {
                self.vol.release_later(last);
            }
            t.removed(attr.backing_ino, parent.0, name, attr.nlink <= 1);
            Ok(())
        })();
        reply_result!(self, req, "unlink", parent.0, reply, res, |_v| reply.ok())
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let mut t = self.table_mut();
            let attr = self.vol.rmdir(&dir, name)?;
            t.removed(attr.backing_ino, parent.0, name, true);
            Ok(())
        })();
        reply_result!(self, req, "rmdir", parent.0, reply, res, |_v| reply.ok())
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let attr = self.vol.symlink(
                &dir,
                link_name,
                target.as_os_str().as_bytes(),
                self.owner(req, &dir),
            )?;
            self.enter(parent.0, &dir, link_name, &attr)
        })();
        reply_result!(self, req, "symlink", parent.0, reply, res, |a| reply.entry(
            &self.ttl,
            &a,
            Generation(0)
        ))
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = (|| {
            let src = self.dir_of(parent.0)?;
            let dst = self.dir_of(newparent.0)?;
            let moved = self.vol.lookup(&src, name)?.backing_ino;
            let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
            let other = if exchange {
                Some(self.vol.lookup(&dst, newname)?.backing_ino)
            } else {
                None
            };
            let mut t = self.table_mut();
            let replaced = self.vol.rename(&src, name, &dst, newname, flags.bits())?;
            tracing::debug!(moved, ?replaced, ?name, ?newname, "rename");
            if let Some(r) = replaced {
                if let Some(last) = r.last_ref.and_then(|l| t.pin(l)) {
                    self.vol.release_later(last);
                }
                t.removed(r.backing_ino, newparent.0, newname, r.nlink <= 1);
            }
            t.moved(moved, (parent.0, name), newparent.0, newname);
            if let Some(o) = other {
                t.moved(o, (newparent.0, newname), parent.0, name);
            }
            Ok(())
        })();
        reply_result!(self, req, "rename", parent.0, reply, res, |_v| reply.ok())
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let (parent, name) = match self.locate(ino.0)? {
                Location::Entry { parent, name, .. } => (parent, name),
                // An unnamed file (O_TMPFILE) getting its name; the kernel has refused
                // this already for a removed file that was not created unnamed.
                Location::Removed { pin: Some(pin), .. } => {
                    let dst = self.dir_of(newparent.0)?;
                    let attr = self.vol.link_unnamed(&pin, &dst, newname)?;
                    drop(self.table_mut().named(ino.0, newparent.0, newname));
                    return Ok(fuse_attr(ino.0, &attr));
                }
                Location::Removed { pin: None, .. } => return Err(verr(libc::ENOENT)),
                Location::Dir(_) => return Err(verr(libc::EPERM)),
            };
            let dst = self.dir_of(newparent.0)?;
            let attr = self.vol.link(&parent, &name, &dst, newname)?;
            self.enter(newparent.0, &dst, newname, &attr)
        })();
        reply_result!(self, req, "link", ino.0, reply, res, |a| reply.entry(
            &self.ttl,
            &a,
            Generation(0)
        ))
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let res = (|| {
            let f = self.open_file_of(ino.0, None)?;
            if self.vol.read_only() && flags.acc_mode() != OpenAccMode::O_RDONLY {
                return Err(verr(libc::EROFS));
            }
            // A read that must update the atime has to reach the daemon: the kernel never
            // updates a FUSE atime itself, and serves cached pages without asking.
            let open_flags = if flags.acc_mode() != OpenAccMode::O_WRONLY
                && self.vol.read_would_update_atime(&f)
            {
                self.open_flags() - FopenFlags::FOPEN_KEEP_CACHE
            } else {
                self.open_flags()
            };
            let fh = self.new_handle(Handle::File {
                file: f,
                append: flags.0 & libc::O_APPEND != 0,
            });
            Ok((fh, open_flags))
        })();
        reply_result!(self, req, "open", ino.0, reply, res, |v| reply
            .opened(FileHandle(v.0), v.1))
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let res = self
            .file_handle(fh.0)
            .and_then(|(f, _)| self.vol.read_for_user(&f, offset, size as usize));
        reply_result!(self, req, "read", ino.0, reply, res, |d| {
            self.stats
                .bytes_read
                .fetch_add(d.len() as u64, Ordering::Relaxed);
            reply.data(&d)
        })
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let res = self.file_handle(fh.0).and_then(|(f, append)| {
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                self.drop_privileges(req, &f, false)?;
            }
            // With the write-back cache the kernel already placed O_APPEND writes at the end.
            if append && !self.writeback {
                self.vol.append(&f, data).map(|_| data.len())
            } else {
                self.vol.write(&f, offset, data)
            }
        });
        reply_result!(self, req, "write", ino.0, reply, res, |n| {
            self.stats
                .bytes_written
                .fetch_add(n as u64, Ordering::Relaxed);
            reply.written(n as u32)
        })
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let (true, Some(owner), Ok(f)) = (self.vol.shared(), lock_owner, self.lock_file(fh)) {
            self.vol.release_flock(&f, owner.0);
        }
        crate::metrics::fuse_request("release");
        self.drop_handle(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        crate::metrics::fuse_request("flush");
        // Writes are never buffered here. On a shared volume (the only one that asks for
        // FLUSH), a process closing a descriptor of the file loses its POSIX locks on it.
        if let (true, Ok(f)) = (self.vol.shared(), self.lock_file(fh)) {
            self.vol.release_posix_locks(&f, lock_owner.0);
        }
        reply.ok();
    }

    fn getlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        crate::metrics::fuse_request("getlk");
        match self.lock_file(fh) {
            Ok(f) => self.test_posix_lock(&f, lock_owner, LockRange { start, end, typ }, reply),
            Err(e) => reply_result!(self, req, "getlk", ino.0, reply, Err::<(), _>(e), |_v| ()),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        crate::metrics::fuse_request("setlk");
        match self.lock_file(fh) {
            Ok(f) => {
                let r = LockRange { start, end, typ };
                self.set_posix_lock(ino, f, lock_owner, r, sleep, reply)
            }
            Err(e) => reply_result!(self, req, "setlk", ino.0, reply, Err::<(), _>(e), |_v| ()),
        }
    }

    fn flock(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        crate::metrics::fuse_request("flock");
        match self.lock_file(fh) {
            Ok(f) => self.set_flock(ino, f, lock_owner, typ, sleep, reply),
            Err(e) => reply_result!(self, req, "flock", ino.0, reply, Err::<(), _>(e), |_v| ()),
        }
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let res = self
            .file_handle(fh.0)
            .and_then(|(f, _)| self.vol.sync_file(&f, datasync));
        reply_result!(self, req, "fsync", ino.0, reply, res, |_v| reply.ok())
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = self.list_dir(ino.0).map(|e| {
            self.new_handle(Handle::Dir {
                entries: Arc::new(e),
            })
        });
        reply_result!(self, req, "opendir", ino.0, reply, res, |fh| reply
            .opened(FileHandle(fh), FopenFlags::empty()))
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        crate::metrics::fuse_request("readdir");
        let entries = match self.handles().get(&fh.0) {
            Some(Handle::Dir { entries }) => entries.clone(),
            _ => return reply.error(Errno::from_i32(libc::EBADF)),
        };
        let _ = ino;
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    /// Entries with their attributes: saves the kernel one LOOKUP per entry (`ls -l`, `find`
    /// followed by opens). Every entry returned (but "." and "..") counts as a lookup.
    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        crate::metrics::fuse_request("readdirplus");
        let entries = match self.handles().get(&fh.0) {
            Some(Handle::Dir { entries }) => entries.clone(),
            _ => return reply.error(Errno::from_i32(libc::EBADF)),
        };
        let dir = match self.dir_of(ino.0) {
            Ok(d) => d,
            Err(e) => {
                self.log_failure("readdirplus", ino.0, &e, req);
                return reply.error(to_errno(&e));
            }
        };
        let dir_attr = match self.vol.dir_attr(&dir) {
            Ok(a) => a,
            Err(e) => return reply.error(to_errno(&e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            let Some(entry) = &e.entry else {
                // "." and "..": the kernel does not link them; their attributes are not used.
                if reply.add(
                    INodeNo(e.ino),
                    next,
                    &e.name,
                    &Duration::ZERO,
                    &fuse_attr(e.ino, &dir_attr),
                    Generation(0),
                ) {
                    break;
                }
                continue;
            };
            let Ok(attr) = self.vol.entry_attr(&dir, entry) else {
                continue;
            };
            let Ok(fa) = self.enter(ino.0, &dir, &e.name, &attr) else {
                continue;
            };
            if reply.add(fa.ino, next, &e.name, &self.ttl, &fa, Generation(0)) {
                // Not sent: undo the lookup count taken by `enter`.
                self.table_mut().forget(fa.ino.0, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        crate::metrics::fuse_request("releasedir");
        self.handles().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let res = self.dir_of(ino.0).and_then(|d| self.vol.sync_dir(&d));
        reply_result!(self, req, "fsyncdir", ino.0, reply, res, |_v| reply.ok())
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let res = self.vol.statfs();
        reply_result!(self, req, "statfs", ino.0, reply, res, |s| reply.statfs(
            s.blocks(),
            s.blocks_free(),
            s.blocks_available(),
            s.files(),
            s.files_free(),
            s.block_size() as u32,
            255,
            s.fragment_size() as u32
        ))
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let res = if !self.acl && is_acl_name(name) {
            // Without FUSE_POSIX_ACL nothing would enforce them: not supported, and tools fall
            // back to chmod (cp -a, tar, rsync).
            Err(verr(libc::EOPNOTSUPP))
        } else {
            self.xattr_target(ino.0, true, |t| self.vol.set_xattr(t, name, value, flags))
                .and_then(|()| {
                    if AclKind::from_xattr_name(name.as_bytes()) == Some(AclKind::Access) {
                        self.drop_sgid_after_acl(req, ino.0)
                    } else {
                        Ok(())
                    }
                })
        };
        reply_result!(self, req, "setxattr", ino.0, reply, res, |_v| reply.ok())
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let res = if (!self.acl && is_acl_name(name)) || !self.may_have_xattrs(ino.0) {
            Err(verr(libc::ENODATA))
        } else {
            self.xattr_target(ino.0, false, |t| self.vol.get_xattr(t, name))
        };
        reply_result!(self, req, "getxattr", ino.0, reply, res, |v| {
            if size == 0 {
                reply.size(v.len() as u32)
            } else if v.len() > size as usize {
                reply.error(Errno::from_i32(libc::ERANGE))
            } else {
                reply.data(&v)
            }
        })
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let res = match self.locate(ino.0) {
            Ok(Location::Entry { kind, .. }) if kind != FileKind::File => Ok(Vec::new()),
            Ok(Location::Entry { .. }) if !self.may_have_xattrs(ino.0) => Ok(Vec::new()),
            _ => self.xattr_target(ino.0, false, |t| self.vol.list_xattr(t)),
        };
        reply_result!(self, req, "listxattr", ino.0, reply, res, |names| {
            let mut buf = Vec::new();
            for n in names {
                buf.extend_from_slice(&n);
                buf.push(0);
            }
            if size == 0 {
                reply.size(buf.len() as u32)
            } else if buf.len() > size as usize {
                reply.error(Errno::from_i32(libc::ERANGE))
            } else {
                reply.data(&buf)
            }
        })
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self.xattr_target(ino.0, true, |t| self.vol.remove_xattr(t, name));
        reply_result!(self, req, "removexattr", ino.0, reply, res, |_v| reply.ok())
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let res = self.attr_of(ino.0, None).and_then(|a| {
            let mask = mask.bits() as u16 & 0o7;
            if mask == 0 {
                return Ok(());
            }
            let allowed = if req.uid() == 0 {
                if mask & 1 != 0 && a.kind != FileKind::Dir && a.perm & 0o111 == 0 {
                    0
                } else {
                    0o7
                }
            } else if req.uid() == a.uid {
                (a.perm >> 6) & 7
            } else if req.gid() == a.gid {
                (a.perm >> 3) & 7
            } else {
                a.perm & 7
            };
            if mask & !allowed != 0 {
                Err(verr(libc::EACCES))
            } else {
                Ok(())
            }
        });
        reply_result!(self, req, "access", ino.0, reply, res, |_v| reply.ok())
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let inh = self.inherit(&dir, mode & 0o7777, umask, false)?;
            let owner = self.owner(req, &dir);
            let exclusive = flags & libc::O_EXCL != 0;
            let (f, attr) = if inh.is_empty() {
                self.vol
                    .create_file(&dir, name, inh.mode, owner, exclusive)?
            } else {
                // Only a file this call creates gets the inherited ACL: an existing one keeps its.
                match self.vol.create_file(&dir, name, inh.mode, owner, true) {
                    Ok((f, attr)) => {
                        self.vol.store_inherited(XattrTarget::File(&f), &inh)?;
                        (f, attr)
                    }
                    Err(e) if !exclusive && raw_errno(&e) == libc::EEXIST => {
                        self.vol.create_file(&dir, name, inh.mode, owner, false)?
                    }
                    Err(e) => return Err(e),
                }
            };
            let attr = if flags & libc::O_TRUNC != 0 && attr.size > 0 {
                self.vol.truncate(&f, 0)?;
                self.vol.file_attr(&f)?
            } else {
                attr
            };
            let fa = self.enter(parent.0, &dir, name, &attr)?;
            let fh = self.new_handle(Handle::File {
                file: f,
                append: flags & libc::O_APPEND != 0,
            });
            Ok((fa, fh))
        })();
        reply_result!(self, req, "create", parent.0, reply, res, |v| reply
            .created(
                &self.ttl,
                &v.0,
                Generation(0),
                FileHandle(v.1),
                self.open_flags()
            ))
    }

    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let res = (|| {
            let dir = self.dir_of(parent.0)?;
            let inh = self.inherit(&dir, mode & 0o7777, umask, false)?;
            let owner = self.owner(req, &dir);
            let (f, attr, last) = self.vol.create_unnamed(&dir, inh.mode, owner)?;
            if !inh.is_empty() {
                self.vol.store_inherited(XattrTarget::File(&f), &inh)?;
            }
            let ino = self.table_mut().add_unnamed(parent.0, last);
            let fh = self.new_handle(Handle::File {
                file: f,
                append: flags & libc::O_APPEND != 0,
            });
            Ok((fuse_attr(ino, &attr), fh))
        })();
        reply_result!(self, req, "tmpfile", parent.0, reply, res, |v| reply
            .created(
                &self.ttl,
                &v.0,
                Generation(0),
                FileHandle(v.1),
                self.open_flags()
            ))
    }

    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let res = match (whence, u64::try_from(offset)) {
            (libc::SEEK_DATA | libc::SEEK_HOLE, Ok(off)) => {
                self.file_handle(fh.0).and_then(|(f, _)| {
                    self.vol
                        .seek_data_or_hole(&f, off, whence == libc::SEEK_DATA)
                })
            }
            (libc::SEEK_DATA | libc::SEEK_HOLE, Err(_)) => Err(verr(libc::ENXIO)),
            _ => Err(verr(libc::EINVAL)),
        };
        reply_result!(self, req, "lseek", ino.0, reply, res, |v| reply
            .offset(v as i64))
    }

    /// No ioctls: ENOTTY, as ext4 answers one it does not know (`isatty`, terminal queries),
    /// without fuser's "not implemented" warning for each.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let res = self.file_handle(fh.0).and_then(|(f, _)| {
            self.vol.fallocate(&f, offset, length, mode)?;
            self.drop_privileges_of_caller(req, &f)
        });
        reply_result!(self, req, "fallocate", ino.0, reply, res, |_v| reply.ok())
    }
}
