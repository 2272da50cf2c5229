//! AES-256 key wrap (NIST SP 800-38F KW, RFC 3394) of 256-bit keys.

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};

use super::{CryptoError, SecretKey};

/// Length of a wrapped 256-bit key: 32 bytes plus the 8-byte integrity block.
pub const WRAPPED_KEY_LEN: usize = 40;

/// Wraps `key` under `kek`.
pub fn wrap_key(kek: &SecretKey, key: &SecretKey) -> Result<[u8; WRAPPED_KEY_LEN], CryptoError> {
    let kek = AesKek::new(&AES_256, kek.expose()).map_err(|_| CryptoError::Length)?;
    let mut out = [0u8; WRAPPED_KEY_LEN];
    kek.wrap(key.expose(), &mut out)
        .map_err(|_| CryptoError::Length)?;
    Ok(out)
}

/// Unwraps a key wrapped by [`wrap_key`]; a wrong `kek` or altered bytes fail authentication.
pub fn unwrap_key(kek: &SecretKey, wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(CryptoError::Length);
    }
    let kek = AesKek::new(&AES_256, kek.expose()).map_err(|_| CryptoError::Length)?;
    let mut out = zeroize::Zeroizing::new([0u8; 48]);
    let plain = kek
        .unwrap(wrapped, &mut out[..])
        .map_err(|_| CryptoError::Authentication)?;
    SecretKey::from_slice(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_and_wrong_kek() {
        let kek = SecretKey::generate().unwrap();
        let dk = SecretKey::generate().unwrap();
        let w = wrap_key(&kek, &dk).unwrap();
        assert_eq!(unwrap_key(&kek, &w).unwrap().expose(), dk.expose());
        let other = SecretKey::generate().unwrap();
        assert_eq!(
            unwrap_key(&other, &w).unwrap_err(),
            CryptoError::Authentication
        );
        let mut bad = w;
        bad[3] ^= 1;
        assert_eq!(
            unwrap_key(&kek, &bad).unwrap_err(),
            CryptoError::Authentication
        );
        assert_eq!(unwrap_key(&kek, &w[..39]).unwrap_err(), CryptoError::Length);
    }

    #[test]
    fn rfc3394_vector_256_bit_kek_256_bit_key() {
        // RFC 3394 section 4.6
        let kek = SecretKey::from_slice(&hex(
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        ))
        .unwrap();
        let key = SecretKey::from_slice(&hex(
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        ))
        .unwrap();
        let expect =
            hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
        assert_eq!(wrap_key(&kek, &key).unwrap().to_vec(), expect);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
