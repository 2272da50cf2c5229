//! `VolumeError`: everything the volume core can fail with. The FUSE layer turns it into an
//! errno in one place (`fs::errno`).

use std::io;

use crate::keys::KeyError;
use crate::names::NameError;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The backing filesystem refused (ENOSPC, EROFS, EACCES, ...): passed through.
    #[error("backing filesystem: {0}")]
    Io(#[from] io::Error),
    /// An operation that must fail with this errno (EEXIST, ENOTEMPTY, ...).
    #[error("errno {0}")]
    Errno(i32),
    /// Ciphertext or metadata failed authentication or does not parse.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("name: {0}")]
    Name(#[from] NameError),
    /// The volume itself cannot be used (bad config, wrong key, not a volume).
    #[error("{0}")]
    Setup(String),
}

impl From<nix::errno::Errno> for VolumeError {
    fn from(e: nix::errno::Errno) -> Self {
        VolumeError::Io(io::Error::from_raw_os_error(e as i32))
    }
}

impl From<crate::crypto::CryptoError> for VolumeError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        VolumeError::Keys(KeyError::Crypto(e))
    }
}

impl VolumeError {
    /// The backing filesystem is out of space or quota.
    pub fn is_no_space(&self) -> bool {
        matches!(self, VolumeError::Io(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
    }

    /// Ciphertext or metadata failed authentication.
    pub fn is_integrity(&self) -> bool {
        matches!(self, VolumeError::Integrity(_))
    }
}

pub type Result<T> = std::result::Result<T, VolumeError>;

pub fn errno(e: i32) -> VolumeError {
    VolumeError::Errno(e)
}
