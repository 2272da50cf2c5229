//! Crypto primitives: AES-256-GCM blocks, deterministic name encryption, HKDF, AES key wrap,
//! randomness and zeroizing key types. Owns no I/O and imports no other cmkfs module.

mod aead;
mod kdf;
mod secret;
mod wrap;

pub use aead::{BlockCipher, NONCE_LEN, NameCipher, TAG_LEN};
pub use kdf::{derive_key, key_fingerprint};
pub use secret::SecretKey;
pub use wrap::{WRAPPED_KEY_LEN, unwrap_key, wrap_key};

/// A cryptographic operation failed: authentication, a bad length, or the system RNG.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("authentication failed")]
    Authentication,
    #[error("invalid length")]
    Length,
    #[error("random number generator failed")]
    Random,
}

/// Fills `out` with bytes from the OS-seeded CSPRNG.
pub fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::Random)
}

/// A fresh random 128-bit identifier (file id, directory id, volume id).
pub fn random_id() -> Result<[u8; 16], CryptoError> {
    let mut id = [0u8; 16];
    fill_random(&mut id)?;
    Ok(id)
}
