//! Extended attributes, stored encrypted in the backing object's own xattrs.
//!
//! Backing name: `user.cmkfs.` + base64url(HMAC-SHA256(xattr-name key, name)). Value:
//! `version (1) || nonce (12) || ciphertext(name length u16 LE || name || value) || tag (16)`,
//! sealed with a key derived from the data key and the object id (file id or directory id),
//! AAD `"CMKX" || object id || HMAC`. So values cannot be moved between files or names.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{NONCE_LEN, TAG_LEN};
use crate::format::{DataKeyRef, FORMAT_VERSION};

use super::acl::AclKind;
use super::{Dir, OpenFile, Result, Volume, VolumeError, errno};

const BACKING_PREFIX: &str = "user.cmkfs.";
const MAX_VALUE: usize = 65536;

/// The object whose xattrs are meant.
#[derive(Clone, Copy)]
pub enum XattrTarget<'a> {
    File(&'a OpenFile),
    Dir(&'a Dir),
}

struct Identity {
    key: DataKeyRef,
    object_id: [u8; 16],
}

fn os_err() -> VolumeError {
    VolumeError::Io(std::io::Error::last_os_error())
}

impl Volume {
    fn xattr_identity(&self, t: &XattrTarget<'_>, create: bool) -> Result<Option<Identity>> {
        Ok(match t {
            XattrTarget::Dir(d) => {
                let id = self.dir_identity(d);
                Some(Identity {
                    key: id.key,
                    object_id: id.dir_id,
                })
            }
            XattrTarget::File(f) => {
                if !create && f.file_id().is_none() {
                    return Ok(None);
                }
                let h = self.file_identity(f)?;
                Some(Identity {
                    key: h.key,
                    object_id: h.file_id,
                })
            }
        })
    }

    /// The fd to use, and the file that keeps it open for the caller's lifetime.
    fn xattr_fd(t: &XattrTarget<'_>) -> (i32, Option<std::sync::Arc<std::fs::File>>) {
        match t {
            XattrTarget::Dir(d) => (d.fd().as_raw_fd(), None),
            XattrTarget::File(f) => {
                let file = f.raw_file();
                (file.as_fd().as_raw_fd(), Some(file))
            }
        }
    }

    fn xattr_backing_name(&self, id: &Identity, name: &[u8]) -> Result<(CString, [u8; 32])> {
        let k = self.keys().data_key(id.key)?.xattr_name_key()?;
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k.expose()), name);
        let mut h = [0u8; 32];
        h.copy_from_slice(tag.as_ref());
        let n = CString::new(format!("{BACKING_PREFIX}{}", URL_SAFE_NO_PAD.encode(h)))
            .map_err(|_| errno(libc::EINVAL))?;
        Ok((n, h))
    }

    fn xattr_aad(id: &Identity, h: &[u8; 32]) -> [u8; 52] {
        let mut a = [0u8; 52];
        a[..4].copy_from_slice(b"CMKX");
        a[4..20].copy_from_slice(&id.object_id);
        a[20..].copy_from_slice(h);
        a
    }

    /// `setxattr` by a user. POSIX ACL names go through `acl` (which keeps the mode
    /// consistent); every other name is stored as it is.
    pub fn set_xattr(
        &self,
        t: XattrTarget<'_>,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        if self.read_only() {
            return Err(errno(libc::EROFS));
        }
        match AclKind::from_xattr_name(name.as_bytes()) {
            Some(kind) => self.set_acl(t, kind, value, flags),
            None => self.store_xattr(t, name, value, flags),
        }
    }

    /// Stores an encrypted xattr value under `name`.
    pub(super) fn store_xattr(
        &self,
        t: XattrTarget<'_>,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.retry_when_full(|| self.store_xattr_once(t, name, value, flags))
    }

    /// One attempt of [`Self::store_xattr`].
    fn store_xattr_once(
        &self,
        t: XattrTarget<'_>,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        if self.read_only() {
            return Err(errno(libc::EROFS));
        }
        let name = name.as_bytes();
        if name.is_empty() || name.len() > 255 {
            return Err(errno(libc::ERANGE));
        }
        if value.len() > MAX_VALUE {
            return Err(errno(libc::E2BIG));
        }
        let id = self.xattr_identity(&t, true)?.ok_or(errno(libc::EIO))?;
        let (bname, h) = self.xattr_backing_name(&id, name)?;
        let plain_len = 2 + name.len() + value.len();
        let mut buf = vec![0u8; 1 + NONCE_LEN + plain_len + TAG_LEN];
        buf[0] = FORMAT_VERSION;
        let p = 1 + NONCE_LEN;
        buf[p..p + 2].copy_from_slice(&(name.len() as u16).to_le_bytes());
        buf[p + 2..p + 2 + name.len()].copy_from_slice(name);
        buf[p + 2 + name.len()..p + plain_len].copy_from_slice(value);
        let cipher = self.keys().data_key(id.key)?.xattr_cipher(&id.object_id)?;
        cipher.seal(&Self::xattr_aad(&id, &h), &mut buf[1..])?;
        let (fd, _keep) = Self::xattr_fd(&t);
        // SAFETY: fd is open for the call; name is NUL-terminated; buf is valid for its length.
        let r =
            unsafe { libc::fsetxattr(fd, bname.as_ptr(), buf.as_ptr().cast(), buf.len(), flags) };
        if r != 0 {
            return Err(os_err());
        }
        Ok(())
    }

    fn read_backing_xattr(fd: i32, bname: &CString) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 1 + NONCE_LEN + 2 + 255 + MAX_VALUE + TAG_LEN];
        // SAFETY: buf is valid for its length; name is NUL-terminated.
        let n = unsafe { libc::fgetxattr(fd, bname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(os_err());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Decrypts a stored value; returns (name, value).
    fn open_xattr(
        &self,
        id: &Identity,
        h: &[u8; 32],
        mut stored: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let bad = || VolumeError::Integrity("xattr value failed authentication".into());
        if stored.len() < 1 + NONCE_LEN + 2 + TAG_LEN || stored[0] != FORMAT_VERSION {
            return Err(bad());
        }
        let cipher = self.keys().data_key(id.key)?.xattr_cipher(&id.object_id)?;
        let plain = cipher
            .open(&Self::xattr_aad(id, h), &mut stored[1..])
            .map_err(|_| bad())?;
        let nlen = u16::from_le_bytes([plain[0], plain[1]]) as usize;
        if plain.len() < 2 + nlen {
            return Err(bad());
        }
        Ok((plain[2..2 + nlen].to_vec(), plain[2 + nlen..].to_vec()))
    }

    pub fn get_xattr(&self, t: XattrTarget<'_>, name: &OsStr) -> Result<Vec<u8>> {
        let Some(id) = self.xattr_identity(&t, false)? else {
            return Err(errno(libc::ENODATA));
        };
        let (bname, h) = self.xattr_backing_name(&id, name.as_bytes())?;
        let (fd, _keep) = Self::xattr_fd(&t);
        let stored = Self::read_backing_xattr(fd, &bname)?;
        let (stored_name, value) = self.open_xattr(&id, &h, stored).inspect_err(|e| {
            tracing::error!("xattr {:?}: {e}", name);
        })?;
        if stored_name != name.as_bytes() {
            tracing::error!("xattr {:?}: stored under another name", name);
            return Err(VolumeError::Integrity(
                "xattr stored under another name".into(),
            ));
        }
        Ok(value)
    }

    pub fn list_xattr(&self, t: XattrTarget<'_>) -> Result<Vec<Vec<u8>>> {
        let Some(id) = self.xattr_identity(&t, false)? else {
            return Ok(Vec::new());
        };
        let (fd, _keep) = Self::xattr_fd(&t);
        let mut buf = vec![0u8; 65536];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(os_err());
        }
        let mut names = Vec::new();
        for raw in buf[..n as usize]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
        {
            let Some(enc) = raw.strip_prefix(BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            let Ok(hv) = URL_SAFE_NO_PAD.decode(enc) else {
                continue;
            };
            let Ok(h) = <[u8; 32]>::try_from(hv.as_slice()) else {
                continue;
            };
            let Ok(bname) = CString::new(raw.to_vec()) else {
                continue;
            };
            let decoded =
                Self::read_backing_xattr(fd, &bname).and_then(|s| self.open_xattr(&id, &h, s));
            match decoded {
                Ok((name, _)) => names.push(name),
                Err(e) => tracing::warn!("skipping an xattr that does not decrypt: {e}"),
            }
        }
        Ok(names)
    }

    /// Copies every xattr of the object from `from_fd` to `to_fd`, re-sealed under `new_key`
    /// (same object id). Used when a file moves to a newer data key.
    pub(super) fn rekey_xattrs(
        &self,
        from_fd: i32,
        to_fd: i32,
        object_id: [u8; 16],
        old_key: DataKeyRef,
        new_key: DataKeyRef,
    ) -> Result<usize> {
        let old = Identity {
            key: old_key,
            object_id,
        };
        let new = Identity {
            key: new_key,
            object_id,
        };
        let mut list = vec![0u8; 65536];
        // SAFETY: list is valid for its length.
        let n = unsafe { libc::flistxattr(from_fd, list.as_mut_ptr().cast(), list.len()) };
        if n < 0 {
            return Err(os_err());
        }
        let mut copied = 0;
        for raw in list[..n as usize]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
        {
            let Some(enc) = raw.strip_prefix(BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            let Ok(hv) = URL_SAFE_NO_PAD.decode(enc) else {
                continue;
            };
            let Ok(h) = <[u8; 32]>::try_from(hv.as_slice()) else {
                continue;
            };
            let Ok(bname) = CString::new(raw.to_vec()) else {
                continue;
            };
            let stored = Self::read_backing_xattr(from_fd, &bname)?;
            let (name, value) = self.open_xattr(&old, &h, stored)?;
            let (new_bname, new_h) = self.xattr_backing_name(&new, &name)?;
            let plain_len = 2 + name.len() + value.len();
            let mut buf = vec![0u8; 1 + NONCE_LEN + plain_len + TAG_LEN];
            buf[0] = FORMAT_VERSION;
            let p = 1 + NONCE_LEN;
            buf[p..p + 2].copy_from_slice(&(name.len() as u16).to_le_bytes());
            buf[p + 2..p + 2 + name.len()].copy_from_slice(&name);
            buf[p + 2 + name.len()..p + plain_len].copy_from_slice(&value);
            let cipher = self
                .keys()
                .data_key(new.key)?
                .xattr_cipher(&new.object_id)?;
            cipher.seal(&Self::xattr_aad(&new, &new_h), &mut buf[1..])?;
            // SAFETY: valid name and buffer.
            let r = unsafe {
                libc::fsetxattr(to_fd, new_bname.as_ptr(), buf.as_ptr().cast(), buf.len(), 0)
            };
            if r != 0 {
                return Err(os_err());
            }
            copied += 1;
        }
        Ok(copied)
    }

    /// Whether the regular file `name` in `dir` carries any cmkfs xattr, checked without
    /// opening it (`ls -l` asks every file for ACL and SELinux xattrs it does not have).
    pub fn file_has_xattrs(&self, dir: &Dir, name: &OsStr) -> Result<bool> {
        let b = self.backing_name(dir, name)?;
        let path = CString::new(format!(
            "/proc/self/fd/{}/{}",
            dir.fd().as_raw_fd(),
            b.entry()
        ))
        .map_err(|_| errno(libc::EINVAL))?;
        let mut buf = vec![0u8; 65536];
        // SAFETY: path is NUL-terminated; buf is valid for its length.
        let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(os_err());
        }
        Ok(buf[..n as usize]
            .split(|b| *b == 0)
            .any(|x| x.starts_with(BACKING_PREFIX.as_bytes())))
    }

    pub fn remove_xattr(&self, t: XattrTarget<'_>, name: &OsStr) -> Result<()> {
        if self.read_only() {
            return Err(errno(libc::EROFS));
        }
        let Some(id) = self.xattr_identity(&t, false)? else {
            return Err(errno(libc::ENODATA));
        };
        let (bname, _) = self.xattr_backing_name(&id, name.as_bytes())?;
        // SAFETY: name is NUL-terminated.
        let (fd, _keep) = Self::xattr_fd(&t);
        // SAFETY: name is NUL-terminated; fd stays open through `_keep`.
        let r = unsafe { libc::fremovexattr(fd, bname.as_ptr()) };
        if r != 0 {
            return Err(os_err());
        }
        Ok(())
    }
}
