//! Crypto primitives: AES-256-GCM blocks, deterministic name encryption, HKDF, AES key wrap,
//! randomness and zeroizing key types, and which module (AWS-LC or AWS-LC-FIPS) provides them.
//! Owns no I/O and imports no other cmkfs module.

mod aead;
mod kdf;
mod module;
mod names;
mod secret;
mod wrap;

pub use aead::{BlockCipher, NONCE_LEN, TAG_LEN};
pub use kdf::{derive_key, key_fingerprint};
pub use module::{FIPS_BUILD, FipsError, ModuleInfo, enter_fips_mode, module_info};
pub use names::{NAME_OVERHEAD, NameCipher, NameScheme};
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

/// Fills `out` from the module's DRBG (AWS-LC's CTR-DRBG, seeded from the OS; in the fips build
/// the SP 800-90A DRBG inside the validated module).
pub fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::Random)
}

/// A fresh random 128-bit identifier (file id, directory id, volume id).
pub fn random_id() -> Result<[u8; 16], CryptoError> {
    let mut id = [0u8; 16];
    fill_random(&mut id)?;
    Ok(id)
}
