//! AES-256-GCM for file blocks, xattr values, symlink targets and hole maps (random nonces).
//! In the fips build every nonce is generated inside the module (aws-lc-rs
//! `RandomizedNonceKey`), as FIPS 140-3 implementation guidance C.H asks for GCM; the default
//! build draws them from the same DRBG in batches.

#[cfg(feature = "fips")]
use aws_lc_rs::aead::RandomizedNonceKey;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

#[cfg(not(feature = "fips"))]
use super::fill_random;
use super::{CryptoError, SecretKey};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Seals and opens sealed buffers laid out as `nonce (12) || ciphertext || tag (16)`.
pub struct BlockCipher {
    key: LessSafeKey,
    /// The fips build seals only through this key: the module draws the IV itself.
    #[cfg(feature = "fips")]
    sealer: RandomizedNonceKey,
}

impl BlockCipher {
    pub fn new(key: &SecretKey) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| CryptoError::Length)?;
        Ok(BlockCipher {
            key: LessSafeKey::new(unbound),
            #[cfg(feature = "fips")]
            sealer: RandomizedNonceKey::new(&AES_256_GCM, key.expose())
                .map_err(|_| CryptoError::Length)?,
        })
    }

    /// Encrypts in place. `sealed` holds the plaintext at `[NONCE_LEN .. len - TAG_LEN]`;
    /// a fresh random nonce and the tag are written around it.
    pub fn seal(&self, aad: &[u8], sealed: &mut [u8]) -> Result<(), CryptoError> {
        let len = sealed.len();
        if len < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Length);
        }
        #[cfg(feature = "fips")]
        {
            let (nonce, tag) = self
                .sealer
                .seal_in_place_separate_tag(Aad::from(aad), &mut sealed[NONCE_LEN..len - TAG_LEN])
                .map_err(|_| CryptoError::Length)?;
            sealed[..NONCE_LEN].copy_from_slice(nonce.as_ref());
            sealed[len - TAG_LEN..].copy_from_slice(tag.as_ref());
            Ok(())
        }
        #[cfg(not(feature = "fips"))]
        {
            let mut nonce = [0u8; NONCE_LEN];
            fill_random(&mut nonce)?;
            self.seal_with_nonce(nonce, aad, sealed)
        }
    }

    /// Like [`seal`](Self::seal) with a caller-chosen nonce. The caller must never reuse a
    /// nonce with the same key: the volume draws them from the RNG in batches. Not in the fips
    /// build, where every nonce comes from inside the module.
    #[cfg(not(feature = "fips"))]
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &mut [u8],
    ) -> Result<(), CryptoError> {
        let len = sealed.len();
        if len < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Length);
        }
        sealed[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[NONCE_LEN..len - TAG_LEN],
            )
            .map_err(|_| CryptoError::Length)?;
        sealed[len - TAG_LEN..].copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticates and decrypts in place; returns the plaintext part of `sealed`.
    pub fn open<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        let len = sealed.len();
        if len < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Length);
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Length)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), rest)
            .map_err(|_| CryptoError::Authentication)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = BlockCipher::new(&SecretKey::from_bytes([9u8; 32])).unwrap();
        let mut buf = vec![0u8; NONCE_LEN + 5 + TAG_LEN];
        buf[NONCE_LEN..NONCE_LEN + 5].copy_from_slice(b"hello");
        c.seal(b"aad", &mut buf).unwrap();
        assert!(!buf.windows(5).any(|w| w == b"hello"));
        let mut copy = buf.clone();
        assert_eq!(c.open(b"aad", &mut copy).unwrap(), b"hello");
        let mut copy = buf.clone();
        assert_eq!(
            c.open(b"aae", &mut copy).unwrap_err(),
            CryptoError::Authentication
        );
        for i in 0..buf.len() {
            let mut copy = buf.clone();
            copy[i] ^= 0x40;
            assert!(
                c.open(b"aad", &mut copy).is_err(),
                "flip at {i} not detected"
            );
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let c = BlockCipher::new(&SecretKey::from_bytes([9u8; 32])).unwrap();
        let mut a = vec![0u8; 40];
        let mut b = vec![0u8; 40];
        c.seal(b"", &mut a).unwrap();
        c.seal(b"", &mut b).unwrap();
        assert_ne!(a, b);
    }
}
