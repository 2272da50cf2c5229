//! AES-256-GCM for file blocks and xattr values (random nonces), and deterministic
//! AES-256-GCM-SIV for names (the same name in the same directory encrypts the same way).

use aws_lc_rs::aead::{AES_256_GCM, AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::{CryptoError, SecretKey, fill_random};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Seals and opens sealed buffers laid out as `nonce (12) || ciphertext || tag (16)`.
pub struct BlockCipher {
    key: LessSafeKey,
}

impl BlockCipher {
    pub fn new(key: &SecretKey) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| CryptoError::Length)?;
        Ok(BlockCipher {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts in place. `sealed` holds the plaintext at `[NONCE_LEN .. len - TAG_LEN]`;
    /// a fresh random nonce and the tag are written around it.
    pub fn seal(&self, aad: &[u8], sealed: &mut [u8]) -> Result<(), CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Length);
        }
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        self.seal_with_nonce(nonce, aad, sealed)
    }

    /// Like [`seal`](Self::seal) with a caller-chosen nonce. The caller must never reuse a
    /// nonce with the same key: the volume draws them from the RNG in batches.
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
        let tag: Tag = self
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

/// Deterministic name encryption: AES-256-GCM-SIV with a nonce and associated data that
/// are functions of the directory id, so a name encrypts the same way within a directory and
/// differently across directories. Output is `ciphertext || tag`.
pub struct NameCipher {
    key: LessSafeKey,
}

impl NameCipher {
    pub fn new(key: &SecretKey) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM_SIV, key.expose()).map_err(|_| CryptoError::Length)?;
        Ok(NameCipher {
            key: LessSafeKey::new(unbound),
        })
    }

    fn nonce(dir_id: &[u8; 16]) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&dir_id[..NONCE_LEN]);
        Nonce::assume_unique_for_key(n)
    }

    pub fn encrypt(&self, dir_id: &[u8; 16], name: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::with_capacity(name.len() + TAG_LEN);
        buf.extend_from_slice(name);
        self.key
            .seal_in_place_append_tag(Self::nonce(dir_id), Aad::from(&dir_id[..]), &mut buf)
            .map_err(|_| CryptoError::Length)?;
        Ok(buf)
    }

    pub fn decrypt(&self, dir_id: &[u8; 16], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < TAG_LEN {
            return Err(CryptoError::Length);
        }
        let mut buf = sealed.to_vec();
        let len = self
            .key
            .open_in_place(Self::nonce(dir_id), Aad::from(&dir_id[..]), &mut buf)
            .map_err(|_| CryptoError::Authentication)?
            .len();
        buf.truncate(len);
        Ok(buf)
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

    #[test]
    fn names_are_deterministic_per_directory() {
        let c = NameCipher::new(&SecretKey::from_bytes([3u8; 32])).unwrap();
        let d1 = [1u8; 16];
        let d2 = [2u8; 16];
        let a = c.encrypt(&d1, b"report.txt").unwrap();
        assert_eq!(a, c.encrypt(&d1, b"report.txt").unwrap());
        assert_ne!(a, c.encrypt(&d2, b"report.txt").unwrap());
        assert_eq!(c.decrypt(&d1, &a).unwrap(), b"report.txt");
        assert!(c.decrypt(&d2, &a).is_err());
    }
}
