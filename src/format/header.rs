//! The 32-byte header at the start of every non-empty regular file.
//!
//! ```text
//! 0  4  magic "CMKF"
//! 4  1  format version (1)
//! 5  1  log2(block size)
//! 6  2  reserved, zero
//! 8  4  data-key scope, u32 little endian
//! 12 4  data-key epoch, u32 little endian
//! 16 16 file id (random)
//! ```

use super::{DataKeyRef, FORMAT_VERSION, FormatError};

pub const MAGIC: &[u8; 4] = b"CMKF";
pub const HEADER_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub block_shift: u8,
    pub key: DataKeyRef,
    pub file_id: [u8; 16],
}

impl FileHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4] = FORMAT_VERSION;
        b[5] = self.block_shift;
        b[8..12].copy_from_slice(&self.key.scope.to_le_bytes());
        b[12..16].copy_from_slice(&self.key.epoch.to_le_bytes());
        b[16..32].copy_from_slice(&self.file_id);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::Truncated(b.len()));
        }
        if &b[..4] != MAGIC {
            return Err(FormatError::Magic);
        }
        if b[4] != FORMAT_VERSION {
            return Err(FormatError::Version(b[4]));
        }
        let block_shift = b[5];
        if !(9..=20).contains(&block_shift) {
            return Err(FormatError::Field("block size"));
        }
        if b[6] != 0 || b[7] != 0 {
            return Err(FormatError::Field("reserved"));
        }
        let le = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[r]);
            u32::from_le_bytes(a)
        };
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&b[16..32]);
        Ok(FileHeader {
            block_shift,
            key: DataKeyRef {
                scope: le(8..12),
                epoch: le(12..16),
            },
            file_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let h = FileHeader {
            block_shift: 12,
            key: DataKeyRef { scope: 3, epoch: 7 },
            file_id: [0xab; 16],
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b).unwrap(), h);
        assert_eq!(
            FileHeader::decode(&b[..31]).unwrap_err(),
            FormatError::Truncated(31)
        );
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(FileHeader::decode(&bad).unwrap_err(), FormatError::Magic);
        let mut bad = b;
        bad[4] = 9;
        assert_eq!(
            FileHeader::decode(&bad).unwrap_err(),
            FormatError::Version(9)
        );
        let mut bad = b;
        bad[5] = 40;
        assert!(FileHeader::decode(&bad).is_err());
    }
}
