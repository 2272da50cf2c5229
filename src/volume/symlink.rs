//! Encrypted symlink targets.
//!
//! Short targets (up to [`MAX_INLINE_TARGET`] bytes) live in the backing symlink's target:
//! unpadded base64url of
//! `version (1) || scope (4 LE) || epoch (4 LE) || link id (16) || nonce (12) || ct || tag (16)`,
//! sealed with a key derived from the data key and the link id, AAD `"CMKL" || link id`.
//!
//! Longer targets (up to PATH_MAX − 1 = 4095 bytes, format 2) do not fit: the backing symlink
//! then holds a fixed-length marker `.cmkfs/links/<32 hex link id>.<4 digit length>` naming a
//! side record in the volume's reserved directory:
//! `version (2) || scope || epoch || link id || nonce || ct || tag`, AAD `"CMKS" || link id`.
//! Markers are shorter than any inline record, so `lstat` alone tells them apart. The record
//! is written (and synced) before the symlink exists and removed after the last link is gone;
//! a crash in between leaves an unreferenced record, which fsck reports as an orphan.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::crypto::{NONCE_LEN, TAG_LEN, random_id};
use crate::format::{DataKeyRef, FORMAT_VERSION};
use crate::keys::KeyHierarchy;

use super::{Result, Volume, VolumeError, dir::hex, errno};

/// Version byte of the side record of a long target.
pub const LONG_LINK_VERSION: u8 = 2;
/// Directory of the side records, inside the backing root.
pub const LINKS_DIR: &str = ".cmkfs/links";
/// Longest target accepted (PATH_MAX − 1, as on ext4).
pub const MAX_TARGET: usize = 4095;

const PREFIX_LEN: usize = 1 + 4 + 4 + 16;
const OVERHEAD: usize = PREFIX_LEN + NONCE_LEN + TAG_LEN;
/// Longest plaintext target that still fits a backing target of 4095 bytes.
pub const MAX_INLINE_TARGET: usize = 4095 / 4 * 3 - OVERHEAD;
/// `".cmkfs/links/"` + 32 hex + `"."` + 4 digits.
pub const MARKER_LEN: usize = LINKS_DIR.len() + 1 + 32 + 1 + 4;

/// Plaintext length of an inline target whose backing target is `len` bytes.
pub fn plaintext_len(len: u64) -> u64 {
    (len * 3 / 4).saturating_sub(OVERHEAD as u64)
}

fn aad(tag: &[u8; 4], link_id: &[u8; 16]) -> [u8; 20] {
    let mut a = [0u8; 20];
    a[..4].copy_from_slice(tag);
    a[4..].copy_from_slice(link_id);
    a
}

/// `version || scope || epoch || link id || nonce || ct || tag`, sealed.
fn seal(
    keys: &KeyHierarchy,
    key: DataKeyRef,
    version: u8,
    aad_tag: &[u8; 4],
    link_id: &[u8; 16],
    target: &[u8],
) -> Result<Vec<u8>> {
    let dk = keys.data_key(key)?;
    let mut buf = vec![0u8; PREFIX_LEN + NONCE_LEN + target.len() + TAG_LEN];
    buf[0] = version;
    buf[1..5].copy_from_slice(&key.scope.to_le_bytes());
    buf[5..9].copy_from_slice(&key.epoch.to_le_bytes());
    buf[9..25].copy_from_slice(link_id);
    buf[PREFIX_LEN + NONCE_LEN..PREFIX_LEN + NONCE_LEN + target.len()].copy_from_slice(target);
    dk.symlink_cipher(link_id)?
        .seal(&aad(aad_tag, link_id), &mut buf[PREFIX_LEN..])?;
    Ok(buf)
}

fn record_key(buf: &[u8]) -> Option<(DataKeyRef, [u8; 16])> {
    if buf.len() < OVERHEAD {
        return None;
    }
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut link_id = [0u8; 16];
    link_id.copy_from_slice(&buf[9..25]);
    Some((
        DataKeyRef {
            scope: le(&buf[1..5]),
            epoch: le(&buf[5..9]),
        },
        link_id,
    ))
}

fn open_record(
    keys: &KeyHierarchy,
    mut buf: Vec<u8>,
    version: u8,
    aad_tag: &[u8; 4],
) -> Result<Vec<u8>> {
    let bad = |why: &str| VolumeError::Integrity(format!("symlink target {why}"));
    if buf.first() != Some(&version) {
        return Err(bad("has an unknown version"));
    }
    let (key, link_id) = record_key(&buf).ok_or_else(|| bad("is too short"))?;
    let dk = keys.data_key(key)?;
    let plain = dk
        .symlink_cipher(&link_id)?
        .open(&aad(aad_tag, &link_id), &mut buf[PREFIX_LEN..])
        .map_err(|_| bad("failed authentication"))?;
    Ok(plain.to_vec())
}

/// An inline target (format 1): the backing symlink's target for `target`.
pub fn encrypt_target(keys: &KeyHierarchy, key: DataKeyRef, target: &[u8]) -> Result<String> {
    if target.len() > MAX_INLINE_TARGET {
        return Err(errno(libc::ENAMETOOLONG));
    }
    let link_id = random_id()?;
    let buf = seal(keys, key, FORMAT_VERSION, b"CMKL", &link_id, target)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Decrypts an inline target.
pub fn decrypt_target(keys: &KeyHierarchy, stored: &[u8]) -> Result<Vec<u8>> {
    let buf = URL_SAFE_NO_PAD
        .decode(stored)
        .map_err(|_| VolumeError::Integrity("symlink target is not base64".into()))?;
    open_record(keys, buf, FORMAT_VERSION, b"CMKL")
}

/// A parsed marker of a long target: the side record's file name and the target's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub record: String,
    pub len: u64,
}

/// Parses a backing target as a long-target marker.
pub fn parse_marker(stored: &[u8]) -> Option<Marker> {
    if stored.len() != MARKER_LEN {
        return None;
    }
    let s = std::str::from_utf8(stored).ok()?;
    let rest = s.strip_prefix(LINKS_DIR)?.strip_prefix('/')?;
    let (id, len) = rest.split_once('.')?;
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    if len.len() != 4 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Marker {
        record: id.to_string(),
        len: len.parse().ok()?,
    })
}

/// The data key a stored inline target was sealed with, if it parses.
pub fn target_key(stored: &[u8]) -> Option<DataKeyRef> {
    let buf = URL_SAFE_NO_PAD.decode(stored).ok()?;
    if buf.first() != Some(&FORMAT_VERSION) {
        return None;
    }
    record_key(&buf).map(|(k, _)| k)
}

impl Volume {
    fn links_dir(&self, create: bool) -> Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.root_fd, LINKS_DIR, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(&self.root_fd, LINKS_DIR, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(openat(&self.root_fd, LINKS_DIR, flags, Mode::empty())?)
            }
            r => Ok(r?),
        }
    }

    /// The backing symlink target for `target`: inline when it fits, else a marker naming a
    /// side record written (and synced) here. `ENAMETOOLONG` beyond 4095 bytes.
    pub(super) fn seal_link(&self, key: DataKeyRef, target: &[u8]) -> Result<String> {
        if target.len() <= MAX_INLINE_TARGET {
            return encrypt_target(self.keys(), key, target);
        }
        if target.len() > MAX_TARGET {
            return Err(errno(libc::ENAMETOOLONG));
        }
        let link_id = random_id()?;
        let buf = seal(
            self.keys(),
            key,
            LONG_LINK_VERSION,
            b"CMKS",
            &link_id,
            target,
        )?;
        let name = hex(&link_id);
        let dir = self.links_dir(true)?;
        let fd = openat(
            &dir,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o400),
        )?;
        let mut f = File::from(fd);
        let written = f.write_all(&buf).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = unlinkat(&dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e.into());
        }
        let marker = format!("{LINKS_DIR}/{name}.{:04}", target.len());
        debug_assert_eq!(marker.len(), MARKER_LEN);
        Ok(marker)
    }

    /// Decrypts a stored backing target, inline or long.
    pub(super) fn open_link(&self, stored: &[u8]) -> Result<Vec<u8>> {
        let Some(m) = parse_marker(stored) else {
            return decrypt_target(self.keys(), stored);
        };
        let buf = self.read_link_record(&m.record).map_err(|e| {
            VolumeError::Integrity(format!("long symlink target record {}: {e}", m.record))
        })?;
        let plain = open_record(self.keys(), buf, LONG_LINK_VERSION, b"CMKS")?;
        if plain.len() as u64 != m.len {
            return Err(VolumeError::Integrity(
                "long symlink target length differs from its marker".into(),
            ));
        }
        Ok(plain)
    }

    fn read_link_record(&self, name: &str) -> Result<Vec<u8>> {
        let dir = self.links_dir(false)?;
        let fd = super::atime::openat_noatime(
            &dir,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        let mut buf = Vec::new();
        File::from(fd)
            .take((OVERHEAD + MAX_TARGET + 1) as u64)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The data key a stored target (inline or long) is sealed with, if it can be read.
    pub fn link_key(&self, stored: &[u8]) -> Option<DataKeyRef> {
        match parse_marker(stored) {
            None => target_key(stored),
            Some(m) => {
                let buf = self.read_link_record(&m.record).ok()?;
                if buf.first() != Some(&LONG_LINK_VERSION) {
                    return None;
                }
                record_key(&buf).map(|(k, _)| k)
            }
        }
    }

    /// After the last link to a backing symlink with target `stored` is gone: removes its
    /// side record, if it has one.
    pub(super) fn forget_link(&self, stored: &[u8]) {
        let Some(m) = parse_marker(stored) else {
            return;
        };
        let res = self
            .links_dir(false)
            .and_then(|d| Ok(unlinkat(&d, m.record.as_str(), UnlinkatFlags::NoRemoveDir)?));
        if let Err(e) = res {
            tracing::warn!(
                record = m.record,
                "cannot remove a long symlink target record: {e}"
            );
        }
    }

    /// Names of every side record present (for fsck's orphan check).
    pub fn long_link_records(&self) -> Result<Vec<String>> {
        let dir = match self.links_dir(false) {
            Ok(d) => d,
            Err(VolumeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        super::sorted_names(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_shorter_than_any_inline_target() {
        // The shortest inline target (empty plaintext) is base64 of OVERHEAD bytes.
        const { assert!(MARKER_LEN < OVERHEAD * 4 / 3) };
        let m = format!("{LINKS_DIR}/{}.4095", "0123456789abcdef0123456789abcdef");
        assert_eq!(m.len(), MARKER_LEN);
        assert_eq!(
            parse_marker(m.as_bytes()),
            Some(Marker {
                record: "0123456789abcdef0123456789abcdef".into(),
                len: 4095
            })
        );
        assert_eq!(parse_marker(m.to_uppercase().as_bytes()), None);
        assert_eq!(parse_marker(&m.as_bytes()[1..]), None);
        assert_eq!(MAX_INLINE_TARGET, 3016);
        assert!(LINKS_DIR.starts_with(&format!("{}/", crate::format::META_DIR)));
    }
}
