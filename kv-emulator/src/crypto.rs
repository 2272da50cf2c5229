//! RSA key material and the RSA-OAEP wrap/unwrap primitives (aws-lc-rs).
//!
//! One [`RsaKey`] is one Key Vault key *version*. It exposes the JWK public parts (`n`, `e`) and
//! wraps/unwraps with RSA-OAEP-256 (SHA-256 + MGF1-SHA-256) or RSA-OAEP (SHA-1).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm,
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::KeyPair as _;

use crate::error::KvError;

/// Supported key-wrapping algorithms (Key Vault `alg` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlg {
    /// `RSA-OAEP-256`.
    RsaOaep256,
    /// `RSA-OAEP` (SHA-1).
    RsaOaep,
}

impl WrapAlg {
    /// Parses a Key Vault `alg` string; anything else is a 400 `BadParameter`.
    pub fn parse(alg: Option<&str>) -> Result<Self, KvError> {
        match alg {
            Some("RSA-OAEP-256") => Ok(WrapAlg::RsaOaep256),
            Some("RSA-OAEP") => Ok(WrapAlg::RsaOaep),
            Some(other) => Err(KvError::bad_parameter(format!(
                "Invalid algorithm '{other}': the emulator supports RSA-OAEP-256 and RSA-OAEP for RSA keys."
            ))),
            None => Err(KvError::bad_parameter("Missing required parameter 'alg'.")),
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            WrapAlg::RsaOaep256 => &OAEP_SHA256_MGF1SHA256,
            WrapAlg::RsaOaep => &OAEP_SHA1_MGF1SHA1,
        }
    }
}

/// An RSA key pair (one key version).
pub struct RsaKey {
    bits: usize,
    n: Vec<u8>,
    e: Vec<u8>,
    private: OaepPrivateDecryptingKey,
    public: OaepPublicEncryptingKey,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("bits", &self.bits).finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Generates a key of 2048, 3072 or 4096 bits.
    pub fn generate(bits: u32) -> Result<Self, KvError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => {
                return Err(KvError::bad_parameter(format!(
                    "Invalid key size {other}: RSA keys must be 2048, 3072 or 4096 bits."
                )));
            }
        };
        let internal = |what: &str| KvError::new(500, "InternalError", format!("RSA {what} failed"));
        let pair = KeyPair::generate(size).map_err(|_| internal("key generation"))?;
        let n = pair.public_key().modulus().big_endian_without_leading_zero().to_vec();
        let e = pair.public_key().exponent().big_endian_without_leading_zero().to_vec();
        let pkcs8 = pair.as_der().map_err(|_| internal("PKCS#8 encoding"))?;
        let private = PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).map_err(|_| internal("key import"))?;
        let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(|_| internal("OAEP setup"))?;
        let private = OaepPrivateDecryptingKey::new(private).map_err(|_| internal("OAEP setup"))?;
        Ok(RsaKey { bits: bits as usize, n, e, private, public })
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Big-endian modulus (JWK `n`).
    pub fn n(&self) -> &[u8] {
        &self.n
    }

    /// Big-endian public exponent (JWK `e`).
    pub fn e(&self) -> &[u8] {
        &self.e
    }

    /// Encrypts (wraps) `plaintext`. Too-long input is a 400 `BadParameter`.
    pub fn wrap(&self, alg: WrapAlg, plaintext: &[u8]) -> Result<Vec<u8>, KvError> {
        let max = self.public.max_plaintext_size(alg.oaep());
        if plaintext.len() > max {
            return Err(KvError::bad_parameter(format!(
                "The value to wrap is {} bytes; at most {max} bytes fit this key with {alg:?}.",
                plaintext.len()
            )));
        }
        let mut out = vec![0u8; self.public.ciphertext_size()];
        let len = self
            .public
            .encrypt(alg.oaep(), plaintext, &mut out, None)
            .map_err(|_| KvError::bad_parameter("RSA-OAEP encryption failed."))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Decrypts (unwraps) `ciphertext`. Any failure is a 400 `BadParameter`.
    pub fn unwrap(&self, alg: WrapAlg, ciphertext: &[u8]) -> Result<Vec<u8>, KvError> {
        if ciphertext.len() != self.private.key_size_bytes() {
            return Err(KvError::bad_parameter(format!(
                "The ciphertext is {} bytes; this key expects {} bytes.",
                ciphertext.len(),
                self.private.key_size_bytes()
            )));
        }
        let mut out = vec![0u8; self.private.min_output_size()];
        let len = self
            .private
            .decrypt(alg.oaep(), ciphertext, &mut out, None)
            .map_err(|_| KvError::bad_parameter("Decryption failed: the ciphertext is invalid for this key and algorithm."))?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_ciphertext() {
        let k = RsaKey::generate(2048).expect("keygen");
        assert_eq!(k.n().len(), 256);
        let c = k.wrap(WrapAlg::RsaOaep256, b"0123456789abcdef0123456789abcdef").expect("wrap");
        assert_eq!(k.unwrap(WrapAlg::RsaOaep256, &c).expect("unwrap"), b"0123456789abcdef0123456789abcdef");
        assert_eq!(k.unwrap(WrapAlg::RsaOaep, &c).expect_err("wrong alg").status, 400);
        assert_eq!(k.unwrap(WrapAlg::RsaOaep256, &c[1..]).expect_err("short").status, 400);
        assert_eq!(RsaKey::generate(1024).expect_err("size").code, "BadParameter");
    }
}
