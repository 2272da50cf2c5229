//! Block layout: where plaintext offsets land in the ciphertext file, and the associated
//! data that binds a block to its file, index and "last block" flag.
//!
//! A block on disk is `nonce (12) || ciphertext (n) || tag (16)`, n = block size except for
//! the last block, which may be shorter (but never empty). The AAD is
//! `"CMKB" || file id (16) || block index (u64 LE) || last (1 byte: 1 for the final block)`;
//! the final flag makes truncation or extension of the ciphertext file detectable even at a
//! block boundary.

use crate::crypto::{NONCE_LEN, TAG_LEN};

use super::HEADER_LEN;

/// Per-block overhead on disk: nonce and tag.
pub const BLOCK_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;

pub const BLOCK_AAD_LEN: usize = 4 + 16 + 8 + 1;

/// Associated data of block `index` of file `file_id`.
pub fn block_aad(file_id: &[u8; 16], index: u64, last: bool) -> [u8; BLOCK_AAD_LEN] {
    let mut a = [0u8; BLOCK_AAD_LEN];
    a[..4].copy_from_slice(b"CMKB");
    a[4..20].copy_from_slice(file_id);
    a[20..28].copy_from_slice(&index.to_le_bytes());
    a[28] = last as u8;
    a
}

/// Offset arithmetic for one block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub block_size: u64,
}

impl BlockLayout {
    pub fn new(block_size: u64) -> Self {
        BlockLayout { block_size }
    }

    pub fn sealed_block_size(&self) -> u64 {
        self.block_size + BLOCK_OVERHEAD
    }

    /// Offset in the ciphertext file where block `index` starts.
    pub fn block_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * self.sealed_block_size()
    }

    /// Number of blocks holding `size` plaintext bytes.
    pub fn block_count(&self, size: u64) -> u64 {
        size.div_ceil(self.block_size)
    }

    /// Ciphertext file length for `size` plaintext bytes (0 stays 0 only without a header).
    pub fn ciphertext_len(&self, size: u64) -> u64 {
        let full = size / self.block_size;
        let rest = size % self.block_size;
        let mut len = HEADER_LEN as u64 + full * self.sealed_block_size();
        if rest > 0 {
            len += rest + BLOCK_OVERHEAD;
        }
        len
    }

    /// Plaintext size of a ciphertext file of `len` bytes. `Err` carries the best-effort size
    /// when the length cannot be a valid file (a tail of 1..=28 bytes): reads of the tail fail.
    pub fn plaintext_size(&self, len: u64) -> Result<u64, u64> {
        if len <= HEADER_LEN as u64 {
            return if len == 0 || len == HEADER_LEN as u64 {
                Ok(0)
            } else {
                Err(0)
            };
        }
        let body = len - HEADER_LEN as u64;
        let full = body / self.sealed_block_size();
        let rest = body % self.sealed_block_size();
        let base = full * self.block_size;
        match rest {
            0 => Ok(base),
            r if r > BLOCK_OVERHEAD => Ok(base + r - BLOCK_OVERHEAD),
            _ => Err(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        let l = BlockLayout::new(4096);
        for size in [0u64, 1, 4095, 4096, 4097, 8192, 1 << 20, 12345678] {
            let ct = l.ciphertext_len(size);
            if size == 0 {
                assert_eq!(ct, 32);
            }
            assert_eq!(l.plaintext_size(ct), Ok(size), "size {size}");
        }
        assert_eq!(l.plaintext_size(0), Ok(0));
        assert_eq!(l.plaintext_size(10), Err(0));
        assert_eq!(l.plaintext_size(32 + 4124 + 20), Err(4096));
        assert_eq!(l.block_offset(2), 32 + 2 * 4124);
        assert_eq!(l.block_count(4097), 2);
    }

    #[test]
    fn aad_binds_everything() {
        let a = block_aad(&[1; 16], 5, false);
        assert_ne!(a, block_aad(&[2; 16], 5, false));
        assert_ne!(a, block_aad(&[1; 16], 6, false));
        assert_ne!(a, block_aad(&[1; 16], 5, true));
    }
}
