//! HKDF-SHA256 key derivation and key fingerprints.

use aws_lc_rs::{hkdf, hmac};

use super::{CryptoError, SecretKey};

struct KeyLen32;
impl hkdf::KeyType for KeyLen32 {
    fn len(&self) -> usize {
        32
    }
}

/// Derives a 256-bit subkey: HKDF-SHA256 with `salt`, input key `ikm` and `info`.
pub fn derive_key(ikm: &SecretKey, salt: &[u8], info: &[u8]) -> Result<SecretKey, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm.expose());
    let info = [info];
    let okm = prk
        .expand(&info, KeyLen32)
        .map_err(|_| CryptoError::Length)?;
    let mut out = [0u8; 32];
    okm.fill(&mut out).map_err(|_| CryptoError::Length)?;
    let key = SecretKey::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}

/// A public, non-secret identifier of a key: the first 8 bytes of
/// HMAC-SHA256(key, "cmkfs key fingerprint v1"), as 16 hex digits.
pub fn key_fingerprint(key: &SecretKey) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let tag = hmac::sign(&k, b"cmkfs key fingerprint v1");
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_separated() {
        let k = SecretKey::from_bytes([7u8; 32]);
        let a = derive_key(&k, b"salt", b"a").unwrap();
        let a2 = derive_key(&k, b"salt", b"a").unwrap();
        let b = derive_key(&k, b"salt", b"b").unwrap();
        let c = derive_key(&k, b"tlas", b"a").unwrap();
        assert_eq!(a.expose(), a2.expose());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
    }

    #[test]
    fn fingerprint_is_stable_and_not_the_key() {
        let k = SecretKey::from_bytes([1u8; 32]);
        let f = key_fingerprint(&k);
        assert_eq!(f.len(), 16);
        assert_eq!(f, key_fingerprint(&k));
        assert_ne!(f, key_fingerprint(&SecretKey::from_bytes([2u8; 32])));
    }
}
