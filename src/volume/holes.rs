//! Hole maps of sparse files (format 2): where a file's authenticated list of holes lives
//! (`.cmkfs/holes/<file id hex>-<scope>-<epoch>`), loading it when a file first needs it, and
//! writing it crash-atomically (temp file, fdatasync, rename, and for new holes an fsync of
//! the directory before the backing file gets them).
//!
//! A block reads as zeros only if its ciphertext is all zeros *and* the map says it is a
//! hole; a zeroed or punched data block fails authentication as before. The map on disk may
//! list more holes than there are (blocks written since the last sync): such a block has
//! real ciphertext and reads as its data, so a stale map never hides data.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::crypto::{BlockCipher, NONCE_LEN, TAG_LEN, random_id};
use crate::format::{
    FileHeader, HOLES_PREFIX_LEN, HoleList, META_DIR, check_holes_prefix, holes_aad, holes_prefix,
};

use super::{Result, Volume, VolumeError};

/// Directory of the hole maps inside the reserved metadata directory.
pub const HOLES_DIR: &str = "holes";

/// A file's hole map as the open file holds it.
#[derive(Default)]
pub(super) struct HoleSlot {
    /// False until the map was read (or is known not to exist).
    pub loaded: bool,
    pub list: HoleList,
    /// Holes were filled since the map was last written.
    pub dirty: bool,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// File name of the hole map of the file with header `h`.
pub fn hole_map_name(h: &FileHeader) -> String {
    format!("{}-{}-{}", hex(&h.file_id), h.key.scope, h.key.epoch)
}

impl Volume {
    fn holes_dir(&self, create: bool) -> Result<OwnedFd> {
        let path = format!("{META_DIR}/{HOLES_DIR}");
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match openat(self.root_fd.as_fd(), path.as_str(), flags, Mode::empty()) {
            Err(nix::errno::Errno::ENOENT) if create => {
                match nix::sys::stat::mkdirat(
                    self.root_fd.as_fd(),
                    path.as_str(),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(openat(
                    self.root_fd.as_fd(),
                    path.as_str(),
                    flags,
                    Mode::empty(),
                )?)
            }
            r => Ok(r?),
        }
    }

    /// Reads the hole map of the file with header `h`; no map means no holes.
    pub(super) fn load_holes(&self, h: &FileHeader, cipher: &BlockCipher) -> Result<HoleList> {
        let name = hole_map_name(h);
        let dir = match self.holes_dir(false) {
            Ok(d) => d,
            Err(VolumeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(HoleList::new());
            }
            Err(e) => return Err(e),
        };
        let fd = match openat(
            dir.as_fd(),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(HoleList::new()),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut File::from(fd), &mut bytes)?;
        let bad = |why: String| {
            tracing::error!(map = %name, "hole map failed its check: {why}");
            VolumeError::Integrity(format!("hole map {META_DIR}/{HOLES_DIR}/{name}: {why}"))
        };
        check_holes_prefix(&bytes).map_err(|e| bad(e.to_string()))?;
        if bytes.len() < HOLES_PREFIX_LEN + NONCE_LEN + TAG_LEN {
            return Err(bad("truncated".into()));
        }
        let plain = cipher
            .open(
                &holes_aad(&h.file_id, h.key),
                &mut bytes[HOLES_PREFIX_LEN..],
            )
            .map_err(|_| bad("failed authentication".into()))?;
        HoleList::decode_plain(plain).map_err(|e| bad(e.to_string()))
    }

    /// Writes the hole map of the file with header `h` atomically. `durable`: the rename is
    /// on disk before this returns (new holes must be, before the backing file gets them).
    pub(super) fn store_holes(
        &self,
        h: &FileHeader,
        cipher: &BlockCipher,
        list: &HoleList,
        durable: bool,
    ) -> Result<()> {
        let plain = list.encode_plain();
        let mut rec = holes_prefix().to_vec();
        let at = rec.len();
        rec.resize(at + NONCE_LEN + plain.len() + TAG_LEN, 0);
        rec[at + NONCE_LEN..at + NONCE_LEN + plain.len()].copy_from_slice(&plain);
        cipher.seal(&holes_aad(&h.file_id, h.key), &mut rec[at..])?;
        let dir = self.holes_dir(true)?;
        let name = hole_map_name(h);
        let tmp = format!(".tmp.{}", hex(&random_id()?[..8]));
        let fd = openat(
            dir.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut out = File::from(fd);
        let written = out
            .write_all(&rec)
            .and_then(|()| out.sync_data())
            .map_err(VolumeError::from)
            .and_then(|()| {
                renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name.as_str())
                    .map_err(VolumeError::from)
            });
        if let Err(e) = written {
            let _ = unlinkat(dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        if durable {
            nix::unistd::fsync(dir.as_fd())?;
        }
        Ok(())
    }

    /// A removed file is being freed: removes its hole map. A file open here still reads its
    /// holes: its map goes with its last close instead.
    pub(super) fn forget_hole_map(&self, last: &super::dir::LastRef) {
        if let Some(f) = self.open_files.get(last.backing_ino) {
            f.forget_holes_on_close
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let path = format!("/proc/self/fd/{}", last.fd.as_raw_fd());
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOATIME;
        let fd = match nix::fcntl::open(path.as_str(), flags, Mode::empty()) {
            // O_NOATIME needs the file's owner or CAP_FOWNER.
            Err(nix::errno::Errno::EPERM) => {
                nix::fcntl::open(path.as_str(), flags - OFlag::O_NOATIME, Mode::empty())
            }
            r => r,
        };
        let Ok(fd) = fd else {
            return;
        };
        let mut buf = [0u8; crate::format::HEADER_LEN];
        if std::os::unix::fs::FileExt::read_exact_at(&File::from(fd), &mut buf, 0).is_ok()
            && let Ok(h) = FileHeader::decode(&buf)
        {
            self.remove_holes(&h);
        }
    }

    /// Removes the hole map of the file with header `h`, if any.
    pub(super) fn remove_holes(&self, h: &FileHeader) {
        if let Ok(dir) = self.holes_dir(false) {
            let _ = unlinkat(
                dir.as_fd(),
                hole_map_name(h).as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

impl Volume {
    /// The names in `.cmkfs/holes/` (hole maps, and temp files of interrupted writes), sorted.
    pub fn hole_map_names(&self) -> Result<Vec<String>> {
        let dir = match self.holes_dir(false) {
            Ok(d) => d,
            Err(VolumeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        super::sorted_names(dir)
    }
}

/// Whether a regular file may have holes (fewer bytes allocated than its length).
pub(super) fn maybe_sparse(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_size > crate::format::HEADER_LEN as i64
        && st.st_blocks * 512 < st.st_size
}

/// Whether every byte of `b` is zero (16 bytes at a time).
pub(super) fn all_zero(b: &[u8]) -> bool {
    let (chunks, rest) = b.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_ne_bytes(*c) == 0) && rest.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_sees_any_set_byte() {
        let mut b = vec![0u8; 4124];
        assert!(all_zero(&b));
        for i in [0, 7, 8, 4000, 4123] {
            b[i] = 1;
            assert!(!all_zero(&b), "byte {i}");
            b[i] = 0;
        }
        assert!(all_zero(&[]));
        assert!(!all_zero(&[0, 0, 3]));
    }
}
