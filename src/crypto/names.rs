//! Deterministic name encryption, one scheme per volume (`volume.json` `"name_cipher"`):
//!
//! - [`NameScheme::AesGcmSiv`] (format 1): AES-256-GCM-SIV, nonce `dir_id[0..12]`, aad `dir_id`.
//!   Output `ciphertext || tag (16)`. GCM-SIV is not a NIST-approved mode.
//! - [`NameScheme::HmacSivCtr`] (format 2, the FIPS scheme): SIV (RFC 5297's construction)
//!   from approved primitives only: `V = HMAC-SHA-256(K_mac, dir_id || name)[0..16]`,
//!   `C = AES-256-CTR(K_enc, counter = V with bits 31 and 63 cleared, name)`. Output `V || C`.
//!   Opening recomputes `V` from the decrypted name and compares in constant time.
//!
//! Both schemes are deterministic per directory (the same name in the same directory encrypts
//! the same way, different directories differ) and add 16 bytes. No I/O.

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::{CryptoError, NONCE_LEN, SecretKey, TAG_LEN};

/// Bytes a name grows by when encrypted (the GCM-SIV tag, or the synthetic IV).
pub const NAME_OVERHEAD: usize = 16;

/// The name encryption scheme a volume was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameScheme {
    /// `"AES-256-GCM-SIV"`: format 1, the default build's default.
    AesGcmSiv,
    /// `"HMAC-SHA256-SIV-AES-256-CTR"`: approved primitives only; `init --fips` and the fips build.
    HmacSivCtr,
}

impl NameScheme {
    /// The `"name_cipher"` value in `volume.json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NameScheme::AesGcmSiv => "AES-256-GCM-SIV",
            NameScheme::HmacSivCtr => "HMAC-SHA256-SIV-AES-256-CTR",
        }
    }

    pub fn parse(s: &str) -> Option<NameScheme> {
        [NameScheme::AesGcmSiv, NameScheme::HmacSivCtr]
            .into_iter()
            .find(|n| n.as_str() == s)
    }

    /// Built only from NIST-approved algorithms (HMAC-SHA-256, AES-CTR).
    pub const fn fips_approved(self) -> bool {
        matches!(self, NameScheme::HmacSivCtr)
    }

    /// What a new volume gets unless asked otherwise: the FIPS scheme in the fips build.
    pub const fn build_default() -> NameScheme {
        if cfg!(feature = "fips") {
            NameScheme::HmacSivCtr
        } else {
            NameScheme::AesGcmSiv
        }
    }
}

/// Encrypts and decrypts names in one scheme, keyed by one data key.
pub struct NameCipher {
    inner: Inner,
}

enum Inner {
    GcmSiv(LessSafeKey),
    /// Boxed: the three keys are several times the size of the GCM-SIV key.
    HmacSivCtr(Box<SivCtrKeys>),
}

struct SivCtrKeys {
    mac: hmac::Key,
    enc: EncryptingKey,
    dec: DecryptingKey,
}

impl NameCipher {
    /// AES-256-GCM-SIV under `key` (format 1).
    pub fn gcm_siv(key: &SecretKey) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM_SIV, key.expose()).map_err(|_| CryptoError::Length)?;
        Ok(NameCipher {
            inner: Inner::GcmSiv(LessSafeKey::new(unbound)),
        })
    }

    /// The FIPS scheme with independent MAC and encryption keys.
    pub fn hmac_siv_ctr(mac_key: &SecretKey, enc_key: &SecretKey) -> Result<Self, CryptoError> {
        let unbound =
            || UnboundCipherKey::new(&AES_256, enc_key.expose()).map_err(|_| CryptoError::Length);
        Ok(NameCipher {
            inner: Inner::HmacSivCtr(Box::new(SivCtrKeys {
                mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key.expose()),
                enc: EncryptingKey::ctr(unbound()?).map_err(|_| CryptoError::Length)?,
                dec: DecryptingKey::ctr(unbound()?).map_err(|_| CryptoError::Length)?,
            })),
        })
    }

    pub fn scheme(&self) -> NameScheme {
        match self.inner {
            Inner::GcmSiv(_) => NameScheme::AesGcmSiv,
            Inner::HmacSivCtr(_) => NameScheme::HmacSivCtr,
        }
    }

    fn siv_nonce(dir_id: &[u8; 16]) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&dir_id[..NONCE_LEN]);
        Nonce::assume_unique_for_key(n)
    }

    /// The synthetic IV of the FIPS scheme: HMAC-SHA-256(dir_id || name), first 16 bytes.
    fn synthetic_iv(mac: &hmac::Key, dir_id: &[u8; 16], name: &[u8]) -> [u8; 16] {
        let mut ctx = hmac::Context::with_key(mac);
        ctx.update(dir_id);
        ctx.update(name);
        let tag = ctx.sign();
        let mut v = [0u8; 16];
        v.copy_from_slice(&tag.as_ref()[..16]);
        v
    }

    /// The CTR initial counter block: `V` with bits 31 and 63 (of the last two 32-bit words)
    /// cleared, as RFC 5297 section 2.6 does, so any 32- or 64-bit counter never carries.
    fn counter_block(v: &[u8; 16]) -> [u8; 16] {
        let mut q = *v;
        q[8] &= 0x7f;
        q[12] &= 0x7f;
        q
    }

    pub fn encrypt(&self, dir_id: &[u8; 16], name: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            Inner::GcmSiv(key) => {
                let mut buf = Vec::with_capacity(name.len() + TAG_LEN);
                buf.extend_from_slice(name);
                key.seal_in_place_append_tag(
                    Self::siv_nonce(dir_id),
                    Aad::from(&dir_id[..]),
                    &mut buf,
                )
                .map_err(|_| CryptoError::Length)?;
                Ok(buf)
            }
            Inner::HmacSivCtr(k) => {
                let (mac, enc) = (&k.mac, &k.enc);
                if name.is_empty() {
                    return Err(CryptoError::Length);
                }
                let v = Self::synthetic_iv(mac, dir_id, name);
                let mut buf = Vec::with_capacity(NAME_OVERHEAD + name.len());
                buf.extend_from_slice(&v);
                buf.extend_from_slice(name);
                enc.less_safe_encrypt(
                    &mut buf[NAME_OVERHEAD..],
                    EncryptionContext::Iv128(FixedLength::from(Self::counter_block(&v))),
                )
                .map_err(|_| CryptoError::Length)?;
                Ok(buf)
            }
        }
    }

    pub fn decrypt(&self, dir_id: &[u8; 16], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            Inner::GcmSiv(key) => {
                if sealed.len() < TAG_LEN {
                    return Err(CryptoError::Length);
                }
                let mut buf = sealed.to_vec();
                let len = key
                    .open_in_place(Self::siv_nonce(dir_id), Aad::from(&dir_id[..]), &mut buf)
                    .map_err(|_| CryptoError::Authentication)?
                    .len();
                buf.truncate(len);
                Ok(buf)
            }
            Inner::HmacSivCtr(k) => {
                let (mac, dec) = (&k.mac, &k.dec);
                if sealed.len() <= NAME_OVERHEAD {
                    return Err(CryptoError::Length);
                }
                let mut v = [0u8; 16];
                v.copy_from_slice(&sealed[..NAME_OVERHEAD]);
                let mut buf = sealed[NAME_OVERHEAD..].to_vec();
                dec.decrypt(
                    &mut buf,
                    DecryptionContext::Iv128(FixedLength::from(Self::counter_block(&v))),
                )
                .map_err(|_| CryptoError::Length)?;
                let expect = Self::synthetic_iv(mac, dir_id, &buf);
                #[allow(deprecated)]
                let same = aws_lc_rs::constant_time::verify_slices_are_equal(&expect, &v);
                if same.is_err() {
                    zeroize::Zeroize::zeroize(&mut buf);
                    return Err(CryptoError::Authentication);
                }
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ciphers() -> [NameCipher; 2] {
        [
            NameCipher::gcm_siv(&SecretKey::from_bytes([3u8; 32])).unwrap(),
            NameCipher::hmac_siv_ctr(
                &SecretKey::from_bytes([4u8; 32]),
                &SecretKey::from_bytes([5u8; 32]),
            )
            .unwrap(),
        ]
    }

    #[test]
    fn names_are_deterministic_per_directory() {
        for c in ciphers() {
            let d1 = [1u8; 16];
            let d2 = [2u8; 16];
            let a = c.encrypt(&d1, b"report.txt").unwrap();
            assert_eq!(a.len(), b"report.txt".len() + NAME_OVERHEAD);
            assert_eq!(a, c.encrypt(&d1, b"report.txt").unwrap());
            assert_ne!(a, c.encrypt(&d2, b"report.txt").unwrap());
            assert_ne!(a, c.encrypt(&d1, b"report.txu").unwrap());
            assert_eq!(c.decrypt(&d1, &a).unwrap(), b"report.txt");
            assert!(c.decrypt(&d2, &a).is_err(), "{:?}", c.scheme());
            for i in 0..a.len() {
                let mut bad = a.clone();
                bad[i] ^= 0x01;
                assert!(
                    c.decrypt(&d1, &bad).is_err(),
                    "{:?} flip at {i}",
                    c.scheme()
                );
            }
            assert!(c.decrypt(&d1, &a[..a.len() - 1]).is_err());
            assert!(c.decrypt(&d1, &a[..NAME_OVERHEAD]).is_err());
        }
    }

    #[test]
    fn the_schemes_do_not_read_each_other() {
        let [siv, fips] = ciphers();
        let d = [9u8; 16];
        assert!(
            fips.decrypt(&d, &siv.encrypt(&d, b"a name").unwrap())
                .is_err()
        );
        assert!(
            siv.decrypt(&d, &fips.encrypt(&d, b"a name").unwrap())
                .is_err()
        );
    }

    #[test]
    fn scheme_names_round_trip() {
        for s in [NameScheme::AesGcmSiv, NameScheme::HmacSivCtr] {
            assert_eq!(NameScheme::parse(s.as_str()), Some(s));
        }
        assert_eq!(NameScheme::parse("AES-256-SIV"), None);
        assert!(NameScheme::HmacSivCtr.fips_approved());
        assert!(!NameScheme::AesGcmSiv.fips_approved());
    }

    /// The FIPS scheme by hand from its definition (HMAC-SHA-256, then AES-256-CTR computed as
    /// AES-256-ECB of the counter blocks XOR the name), so the construction is what format.md says.
    #[test]
    fn fips_scheme_matches_its_definition() {
        let [_, c] = ciphers();
        let dir = [0x11u8; 16];
        let name = b"a name of more than one AES block: 16+ bytes";
        let out = c.encrypt(&dir, name).unwrap();
        let mut m = dir.to_vec();
        m.extend_from_slice(name);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[4u8; 32]), &m);
        assert_eq!(&out[..16], &tag.as_ref()[..16]);
        let mut q = u128::from_be_bytes(out[..16].try_into().unwrap());
        q &= !(1u128 << 63) & !(1u128 << 31);
        let ecb = EncryptingKey::ecb(UnboundCipherKey::new(&AES_256, &[5u8; 32]).unwrap()).unwrap();
        let mut expect = Vec::new();
        for chunk in name.chunks(16) {
            let mut block = q.to_be_bytes();
            ecb.less_safe_encrypt(&mut block, EncryptionContext::None)
                .unwrap();
            expect.extend(chunk.iter().zip(block).map(|(p, k)| p ^ k));
            q = q.wrapping_add(1);
        }
        assert_eq!(&out[16..], &expect[..]);
    }
}
