//! `SecretKey`: 256 bits of key material that zeroizes on drop and never prints itself.

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// A 256-bit symmetric key. Zeroized on drop; `Debug` shows only a redacted marker.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Copies key material from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Length)?;
        Ok(SecretKey(arr))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = SecretKey([0u8; 32]);
        super::fill_random(&mut k.0)?;
        Ok(k)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}
