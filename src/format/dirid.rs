//! The `.cmkfs.dirid` file in every backing directory: the directory id used as associated
//! data for the names inside it, and the data key whose name key encrypts them.
//!
//! ```text
//! 0  4  magic "CMKD"
//! 4  1  format version (1)
//! 5  3  reserved, zero
//! 8  4  data-key scope, u32 LE
//! 12 4  data-key epoch, u32 LE
//! 16 16 directory id (random)
//! ```

use super::{DataKeyRef, FORMAT_VERSION, FormatError};

pub const DIRID_FILE_NAME: &str = ".cmkfs.dirid";
pub const DIRID_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirIdFile {
    pub key: DataKeyRef,
    pub dir_id: [u8; 16],
}

impl DirIdFile {
    pub fn encode(&self) -> [u8; DIRID_LEN] {
        let mut b = [0u8; DIRID_LEN];
        b[..4].copy_from_slice(b"CMKD");
        b[4] = FORMAT_VERSION;
        b[8..12].copy_from_slice(&self.key.scope.to_le_bytes());
        b[12..16].copy_from_slice(&self.key.epoch.to_le_bytes());
        b[16..].copy_from_slice(&self.dir_id);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() != DIRID_LEN {
            return Err(FormatError::Truncated(b.len()));
        }
        if &b[..4] != b"CMKD" {
            return Err(FormatError::Magic);
        }
        if b[4] != FORMAT_VERSION {
            return Err(FormatError::Version(b[4]));
        }
        if b[5..8] != [0, 0, 0] {
            return Err(FormatError::Field("reserved"));
        }
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[8..12]);
        let mut e = [0u8; 4];
        e.copy_from_slice(&b[12..16]);
        let mut dir_id = [0u8; 16];
        dir_id.copy_from_slice(&b[16..]);
        Ok(DirIdFile {
            key: DataKeyRef {
                scope: u32::from_le_bytes(s),
                epoch: u32::from_le_bytes(e),
            },
            dir_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = DirIdFile {
            key: DataKeyRef { scope: 0, epoch: 2 },
            dir_id: [5; 16],
        };
        assert_eq!(DirIdFile::decode(&d.encode()).unwrap(), d);
        assert!(DirIdFile::decode(&d.encode()[..20]).is_err());
    }
}
