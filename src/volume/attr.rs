//! `Attr`: the plaintext view of a backing file's stat (sizes and block counts of the
//! plaintext, everything else passed through).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::FileStat;

use crate::format::BlockLayout;

use super::symlink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number in the backing filesystem.
    pub backing_ino: u64,
    pub kind: FileKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// `st_blocks` (512-byte units) of a regular file of `size` plaintext bytes whose backing
/// file has `backing_blocks` allocated: what the plaintext would take, or less for a sparse
/// file (holes are unallocated in the backing file too).
pub fn plain_blocks(size: u64, backing_blocks: u64) -> u64 {
    (size.div_ceil(4096) * 8).min(backing_blocks)
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

impl Attr {
    pub fn from_stat(st: &FileStat, layout: BlockLayout) -> Option<Attr> {
        let kind = FileKind::from_mode(st.st_mode)?;
        let size = match kind {
            FileKind::File => layout
                .plaintext_size(st.st_size as u64)
                .unwrap_or_else(|s| s),
            FileKind::Symlink => symlink::plaintext_len(st.st_size as u64),
            _ => st.st_size as u64,
        };
        let blocks = match kind {
            // What the plaintext would take, or less for a sparse file (its backing
            // allocation, holes being unallocated there).
            FileKind::File => plain_blocks(size, st.st_blocks as u64),
            _ => st.st_blocks as u64,
        };
        Some(Attr {
            backing_ino: st.st_ino,
            kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            size,
            blocks,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
        })
    }
}
