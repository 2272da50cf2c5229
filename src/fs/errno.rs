//! The one place where errors become errnos at the FUSE boundary.

use fuser::Errno;

use crate::keys::KeyError;
use crate::names::NameError;
use crate::volume::VolumeError;

pub fn to_errno(e: &VolumeError) -> Errno {
    Errno::from_i32(raw_errno(e))
}

pub fn raw_errno(e: &VolumeError) -> i32 {
    match e {
        VolumeError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
        VolumeError::Errno(n) => *n,
        VolumeError::Integrity(_) => libc::EIO,
        VolumeError::Keys(KeyError::Revoked(_)) => libc::EKEYREVOKED,
        VolumeError::Keys(_) => libc::EIO,
        VolumeError::Name(NameError::TooLong) => libc::ENAMETOOLONG,
        VolumeError::Name(NameError::Invalid) | VolumeError::Name(NameError::Reserved) => {
            libc::EINVAL
        }
        VolumeError::Name(NameError::Undecryptable) => libc::EIO,
        VolumeError::Setup(_) => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let io = VolumeError::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(raw_errno(&io), libc::ENOSPC);
        assert_eq!(raw_errno(&VolumeError::Integrity("x".into())), libc::EIO);
        assert_eq!(
            raw_errno(&VolumeError::Keys(KeyError::Revoked("k".into()))),
            libc::EKEYREVOKED
        );
        assert_eq!(
            raw_errno(&VolumeError::Name(NameError::TooLong)),
            libc::ENAMETOOLONG
        );
        assert_eq!(
            raw_errno(&VolumeError::Errno(libc::ENOTEMPTY)),
            libc::ENOTEMPTY
        );
    }
}
