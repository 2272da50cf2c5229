//! Key material and the wrap/unwrap primitives (aws-lc-rs).
//!
//! One [`KeyMaterial`] is one Key Vault key *version*: either an [`RsaKey`] (JWK public parts
//! `n`, `e`; RSA-OAEP-256 = SHA-256 + MGF1-SHA-256, or RSA-OAEP = SHA-1) or an [`OctKey`]
//! (Managed HSM `oct-HSM` AES-256 key; A256KW = AES key wrap, RFC 3394, no key material exposed).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
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
    /// `A256KW` (AES-256 key wrap, RFC 3394; oct-HSM keys only).
    A256Kw,
}

impl WrapAlg {
    /// Parses a Key Vault `alg` string; anything else is a 400 `BadParameter`.
    pub fn parse(alg: Option<&str>) -> Result<Self, KvError> {
        match alg {
            Some("RSA-OAEP-256") => Ok(WrapAlg::RsaOaep256),
            Some("RSA-OAEP") => Ok(WrapAlg::RsaOaep),
            Some("A256KW") => Ok(WrapAlg::A256Kw),
            Some(other) => Err(KvError::bad_parameter(format!(
                "Invalid algorithm '{other}': the emulator supports RSA-OAEP-256 and RSA-OAEP for RSA keys and A256KW for oct-HSM keys."
            ))),
            None => Err(KvError::bad_parameter("Missing required parameter 'alg'.")),
        }
    }

    /// The Key Vault `alg` string.
    pub fn name(self) -> &'static str {
        match self {
            WrapAlg::RsaOaep256 => "RSA-OAEP-256",
            WrapAlg::RsaOaep => "RSA-OAEP",
            WrapAlg::A256Kw => "A256KW",
        }
    }

    /// The OAEP parameters of an RSA algorithm; `A256KW` is a 400 `BadParameter`.
    fn oaep(self) -> Result<&'static OaepAlgorithm, KvError> {
        match self {
            WrapAlg::RsaOaep256 => Ok(&OAEP_SHA256_MGF1SHA256),
            WrapAlg::RsaOaep => Ok(&OAEP_SHA1_MGF1SHA1),
            WrapAlg::A256Kw => Err(KvError::bad_parameter(
                "Algorithm 'A256KW' is not valid for an RSA key (use RSA-OAEP-256 or RSA-OAEP).",
            )),
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
        f.debug_struct("RsaKey")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
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
        let internal =
            |what: &str| KvError::new(500, "InternalError", format!("RSA {what} failed"));
        let pair = KeyPair::generate(size).map_err(|_| internal("key generation"))?;
        let n = pair
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let e = pair
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec();
        let pkcs8 = pair.as_der().map_err(|_| internal("PKCS#8 encoding"))?;
        let private =
            PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).map_err(|_| internal("key import"))?;
        let public = OaepPublicEncryptingKey::new(private.public_key())
            .map_err(|_| internal("OAEP setup"))?;
        let private = OaepPrivateDecryptingKey::new(private).map_err(|_| internal("OAEP setup"))?;
        Ok(RsaKey {
            bits: bits as usize,
            n,
            e,
            private,
            public,
        })
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
        let oaep = alg.oaep()?;
        let max = self.public.max_plaintext_size(oaep);
        if plaintext.len() > max {
            return Err(KvError::bad_parameter(format!(
                "The value to wrap is {} bytes; at most {max} bytes fit this key with {alg:?}.",
                plaintext.len()
            )));
        }
        let mut out = vec![0u8; self.public.ciphertext_size()];
        let len = self
            .public
            .encrypt(oaep, plaintext, &mut out, None)
            .map_err(|_| KvError::bad_parameter("RSA-OAEP encryption failed."))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Decrypts (unwraps) `ciphertext`. Any failure is a 400 `BadParameter`.
    pub fn unwrap(&self, alg: WrapAlg, ciphertext: &[u8]) -> Result<Vec<u8>, KvError> {
        let oaep = alg.oaep()?;
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
            .decrypt(oaep, ciphertext, &mut out, None)
            .map_err(|_| {
                KvError::bad_parameter(
                    "Decryption failed: the ciphertext is invalid for this key and algorithm.",
                )
            })?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

/// Default `kty` spelling of a symmetric (AES) key.
pub const OCT_KTY: &str = "oct-HSM";

/// An AES-256 key (one `oct-HSM` key version). The key bytes never leave the emulator.
pub struct OctKey {
    key: [u8; 32],
}

impl std::fmt::Debug for OctKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OctKey")
            .field("bits", &256)
            .finish_non_exhaustive()
    }
}

impl OctKey {
    /// Generates a random key; only 256 bits are supported (anything else is a 400 `BadParameter`).
    pub fn generate(bits: u32) -> Result<Self, KvError> {
        if bits != 256 {
            return Err(KvError::bad_parameter(format!(
                "Invalid key size {bits}: the emulator supports only 256-bit oct-HSM keys."
            )));
        }
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| KvError::new(500, "InternalError", "AES key generation failed"))?;
        Ok(OctKey { key })
    }

    fn check_alg(alg: WrapAlg) -> Result<(), KvError> {
        match alg {
            WrapAlg::A256Kw => Ok(()),
            other => Err(KvError::bad_parameter(format!(
                "Algorithm '{}' is not valid for an oct-HSM key (use A256KW).",
                other.name()
            ))),
        }
    }

    fn kek(&self) -> Result<AesKek, KvError> {
        AesKek::new(&AES_256, &self.key)
            .map_err(|_| KvError::new(500, "InternalError", "AES key setup failed"))
    }

    /// AES key wrap (RFC 3394). The input must be a multiple of 8 bytes, at least 16; the output
    /// is 8 bytes longer. Other input is a 400 `BadParameter`.
    pub fn wrap(&self, alg: WrapAlg, plaintext: &[u8]) -> Result<Vec<u8>, KvError> {
        Self::check_alg(alg)?;
        if plaintext.len() < 16 || !plaintext.len().is_multiple_of(8) {
            return Err(KvError::bad_parameter(format!(
                "The value to wrap is {} bytes; A256KW needs a multiple of 8 bytes, at least 16.",
                plaintext.len()
            )));
        }
        let mut out = vec![0u8; plaintext.len() + 8];
        let len = self
            .kek()?
            .wrap(plaintext, &mut out)
            .map_err(|_| KvError::bad_parameter("A256KW key wrap failed."))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// AES key unwrap (RFC 3394). Wrong key, corrupt or badly sized input → 400 `BadParameter`.
    pub fn unwrap(&self, alg: WrapAlg, ciphertext: &[u8]) -> Result<Vec<u8>, KvError> {
        Self::check_alg(alg)?;
        if ciphertext.len() < 24 || !ciphertext.len().is_multiple_of(8) {
            return Err(KvError::bad_parameter(format!(
                "The ciphertext is {} bytes; A256KW ciphertexts are a multiple of 8 bytes, at least 24.",
                ciphertext.len()
            )));
        }
        let mut out = vec![0u8; ciphertext.len() - 8];
        let len = self
            .kek()?
            .unwrap(ciphertext, &mut out)
            .map_err(|_| {
                KvError::bad_parameter(
                    "Unwrap failed: the ciphertext is invalid for this key and algorithm.",
                )
            })?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

/// The material of one key version.
#[derive(Debug)]
pub enum KeyMaterial {
    /// `RSA` / `RSA-HSM`.
    Rsa(RsaKey),
    /// `oct-HSM` (AES-256).
    Oct(OctKey),
}

impl From<RsaKey> for KeyMaterial {
    fn from(k: RsaKey) -> Self {
        KeyMaterial::Rsa(k)
    }
}

impl From<OctKey> for KeyMaterial {
    fn from(k: OctKey) -> Self {
        KeyMaterial::Oct(k)
    }
}

/// Whether a Key Vault `kty` names a symmetric key (`oct`, `oct-HSM`).
pub fn is_oct_kty(kty: &str) -> bool {
    kty == "oct" || kty == OCT_KTY
}

impl KeyMaterial {
    /// Generates material for `kty` (`RSA`, `RSA-HSM`, `oct`, `oct-HSM`); `bits` `None` = the
    /// default size (2048 for RSA, 256 for oct). Unknown kty or size → 400 `BadParameter`.
    pub fn generate(kty: &str, bits: Option<u32>) -> Result<Self, KvError> {
        match kty {
            "RSA" | "RSA-HSM" => Ok(KeyMaterial::Rsa(RsaKey::generate(bits.unwrap_or(2048))?)),
            k if is_oct_kty(k) => Ok(KeyMaterial::Oct(OctKey::generate(bits.unwrap_or(256))?)),
            other => Err(KvError::bad_parameter(format!(
                "Key type '{other}' is not supported by the emulator (RSA, RSA-HSM, oct-HSM only)."
            ))),
        }
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        match self {
            KeyMaterial::Rsa(k) => k.bits(),
            KeyMaterial::Oct(_) => 256,
        }
    }

    /// Whether this is a symmetric key.
    pub fn is_oct(&self) -> bool {
        matches!(self, KeyMaterial::Oct(_))
    }

    /// The RSA public key (`n`, `e`), if this is an RSA key.
    pub fn rsa(&self) -> Option<&RsaKey> {
        match self {
            KeyMaterial::Rsa(k) => Some(k),
            KeyMaterial::Oct(_) => None,
        }
    }

    /// Wraps with `alg`; an algorithm of the other key family is a 400 `BadParameter`.
    pub fn wrap(&self, alg: WrapAlg, plaintext: &[u8]) -> Result<Vec<u8>, KvError> {
        match self {
            KeyMaterial::Rsa(k) => k.wrap(alg, plaintext),
            KeyMaterial::Oct(k) => k.wrap(alg, plaintext),
        }
    }

    /// Unwraps with `alg`; any failure is a 400 `BadParameter`.
    pub fn unwrap(&self, alg: WrapAlg, ciphertext: &[u8]) -> Result<Vec<u8>, KvError> {
        match self {
            KeyMaterial::Rsa(k) => k.unwrap(alg, ciphertext),
            KeyMaterial::Oct(k) => k.unwrap(alg, ciphertext),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_ciphertext() {
        let k = RsaKey::generate(2048).expect("keygen");
        assert_eq!(k.n().len(), 256);
        let c = k
            .wrap(WrapAlg::RsaOaep256, b"0123456789abcdef0123456789abcdef")
            .expect("wrap");
        assert_eq!(
            k.unwrap(WrapAlg::RsaOaep256, &c).expect("unwrap"),
            b"0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            k.unwrap(WrapAlg::RsaOaep, &c)
                .expect_err("wrong alg")
                .status,
            400
        );
        assert_eq!(
            k.unwrap(WrapAlg::RsaOaep256, &c[1..])
                .expect_err("short")
                .status,
            400
        );
        assert_eq!(
            RsaKey::generate(1024).expect_err("size").code,
            "BadParameter"
        );
    }

    #[test]
    fn oct_a256kw() {
        let k = KeyMaterial::generate("oct-HSM", None).expect("gen");
        assert!(k.is_oct());
        assert_eq!(k.bits(), 256);
        let input = [9u8; 40];
        let c = k.wrap(WrapAlg::A256Kw, &input).expect("wrap");
        assert_eq!(c.len(), 48);
        assert_eq!(k.unwrap(WrapAlg::A256Kw, &c).expect("unwrap"), input);
        let mut bad = c.clone();
        bad[10] ^= 1;
        assert_eq!(
            k.unwrap(WrapAlg::A256Kw, &bad).expect_err("corrupt").code,
            "BadParameter"
        );
        let other = KeyMaterial::generate("oct", Some(256)).expect("gen");
        assert_eq!(
            other
                .unwrap(WrapAlg::A256Kw, &c)
                .expect_err("other key")
                .status,
            400
        );
        assert_eq!(
            k.wrap(WrapAlg::RsaOaep256, &input)
                .expect_err("rsa alg")
                .status,
            400
        );
        assert_eq!(
            k.wrap(WrapAlg::A256Kw, &[1u8; 12])
                .expect_err("size")
                .status,
            400
        );
        assert_eq!(
            KeyMaterial::generate("oct-HSM", Some(128))
                .expect_err("size")
                .status,
            400
        );
        let rsa = KeyMaterial::generate("RSA", None).expect("rsa");
        assert_eq!(
            rsa.wrap(WrapAlg::A256Kw, &input)
                .expect_err("kw on rsa")
                .code,
            "BadParameter"
        );
        assert_eq!(
            WrapAlg::parse(Some("A256KW")).expect("parse"),
            WrapAlg::A256Kw
        );
    }
}
