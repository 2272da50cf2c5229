//! The directory id of every backing directory: the id used as associated data for the
//! names inside it, and the data key whose name key encrypts them. Format 2 keeps it twice,
//! in the `.cmkfs.dirid` file and in the `user.cmkfs.dirid` xattr of the same directory,
//! each copy self-checking; version 1 (a file without checksum) is still read.
//!
//! ```text
//! 0  4  magic "CMKD"
//! 4  1  version (1 or 2)
//! 5  3  reserved, zero
//! 8  4  data-key scope, u32 LE
//! 12 4  data-key epoch, u32 LE
//! 16 16 directory id (random)
//! 32 16 version 2 only: first 16 bytes of SHA-256("cmkfs-dirid" || bytes 0..32)
//! ```

use super::{DataKeyRef, FORMAT_VERSION, FormatError};

pub const DIRID_FILE_NAME: &str = ".cmkfs.dirid";
/// The xattr of the backing directory holding the second copy (same bytes as the file).
pub const DIRID_XATTR_NAME: &str = "user.cmkfs.dirid";
/// Length of a copy as written now (version 2).
pub const DIRID_LEN: usize = 48;
/// Length of a version-1 file.
pub const DIRID_V1_LEN: usize = 32;
/// Version byte of the self-checking layout.
pub const DIRID_VERSION: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirIdFile {
    pub key: DataKeyRef,
    pub dir_id: [u8; 16],
}

fn dirid_checksum(b: &[u8]) -> [u8; 16] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"cmkfs-dirid");
    ctx.update(b);
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}

impl DirIdFile {
    /// The version-2 encoding (with checksum).
    pub fn encode(&self) -> [u8; DIRID_LEN] {
        let mut b = [0u8; DIRID_LEN];
        b[..DIRID_V1_LEN].copy_from_slice(&self.encode_body(DIRID_VERSION));
        let sum = dirid_checksum(&b[..DIRID_V1_LEN]);
        b[DIRID_V1_LEN..].copy_from_slice(&sum);
        b
    }

    /// The version-1 encoding (no checksum), for tests and fixtures of old volumes.
    pub fn encode_v1(&self) -> [u8; DIRID_V1_LEN] {
        self.encode_body(FORMAT_VERSION)
    }

    fn encode_body(&self, version: u8) -> [u8; DIRID_V1_LEN] {
        let mut b = [0u8; DIRID_V1_LEN];
        b[..4].copy_from_slice(b"CMKD");
        b[4] = version;
        b[8..12].copy_from_slice(&self.key.scope.to_le_bytes());
        b[12..16].copy_from_slice(&self.key.epoch.to_le_bytes());
        b[16..32].copy_from_slice(&self.dir_id);
        b
    }

    /// Decodes either version; `is_v1` tells the caller the copy carried no checksum.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        Self::decode_versioned(b).map(|(d, _)| d)
    }

    /// Decodes either version and says whether it was version 1 (unverifiable).
    pub fn decode_versioned(b: &[u8]) -> Result<(Self, bool), FormatError> {
        if b.len() != DIRID_LEN && b.len() != DIRID_V1_LEN {
            return Err(FormatError::Truncated(b.len()));
        }
        if &b[..4] != b"CMKD" {
            return Err(FormatError::Magic);
        }
        let v1 = match (b[4], b.len()) {
            (FORMAT_VERSION, DIRID_V1_LEN) => true,
            (DIRID_VERSION, DIRID_LEN) => false,
            (v, _) => return Err(FormatError::Version(v)),
        };
        if !v1 && dirid_checksum(&b[..DIRID_V1_LEN]) != b[DIRID_V1_LEN..] {
            return Err(FormatError::Field("checksum"));
        }
        if b[5..8] != [0, 0, 0] {
            return Err(FormatError::Field("reserved"));
        }
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[8..12]);
        let mut e = [0u8; 4];
        e.copy_from_slice(&b[12..16]);
        let mut dir_id = [0u8; 16];
        dir_id.copy_from_slice(&b[16..32]);
        Ok((
            DirIdFile {
                key: DataKeyRef {
                    scope: u32::from_le_bytes(s),
                    epoch: u32::from_le_bytes(e),
                },
                dir_id,
            },
            v1,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> DirIdFile {
        DirIdFile {
            key: DataKeyRef { scope: 0, epoch: 2 },
            dir_id: [5; 16],
        }
    }

    #[test]
    fn round_trip() {
        let d = id();
        assert_eq!(
            DirIdFile::decode_versioned(&d.encode()).unwrap(),
            (d, false)
        );
        assert_eq!(
            DirIdFile::decode_versioned(&d.encode_v1()).unwrap(),
            (d, true)
        );
        assert!(DirIdFile::decode(&d.encode()[..20]).is_err());
    }

    #[test]
    fn every_byte_flip_of_a_version_2_copy_is_detected() {
        let b = id().encode();
        for i in 0..b.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut c = b;
                c[i] ^= mask;
                assert!(DirIdFile::decode(&c).is_err(), "flip {mask:#x} at {i}");
            }
        }
    }
}
