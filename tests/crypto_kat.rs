//! Known-answer tests of every approved operation cmkfs uses, in both builds
//! (`cargo test --test crypto_kat` and `cargo test --features fips --test crypto_kat`):
//!
//! - AES-256-GCM: NIST GCM specification (McGrew-Viega, the vectors of SP 800-38D's
//!   validation) test cases 13-16, through cmkfs' `BlockCipher::open` and the module's seal;
//!   `BlockCipher::seal` (module-generated IVs in the fips build) against the `aes-gcm` oracle.
//! - AES-KW (SP 800-38F KW, RFC 3394 section 4): wrap and unwrap, cmkfs' `wrap_key`/`unwrap_key`.
//! - HKDF-SHA256 (SP 800-56C, RFC 5869 appendix A test cases 1-3), and cmkfs' `derive_key`
//!   equal to HKDF computed from its HMAC definition.
//! - HMAC-SHA-256 (RFC 4231 test cases 1 and 2), the PRF of the FIPS name scheme.
//! - The module: FIPS mode on exactly in the fips build.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};

use cmkfs::crypto::{
    BlockCipher, CryptoError, FIPS_BUILD, NONCE_LEN, SecretKey, TAG_LEN, derive_key, module_info,
    unwrap_key, wrap_key,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}

struct GcmVector {
    name: &'static str,
    key: &'static str,
    iv: &'static str,
    aad: &'static str,
    pt: &'static str,
    ct: &'static str,
    tag: &'static str,
}

/// The GCM specification's AES-256 test cases (13-16), as used by NIST's GCM validation.
const GCM: &[GcmVector] = &[
    GcmVector {
        name: "test case 13",
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "",
        ct: "",
        tag: "530f8afbc74536b9a963b4f1c4cb738b",
    },
    GcmVector {
        name: "test case 14",
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "00000000000000000000000000000000",
        ct: "cea7403d4d606b6e074ec5d3baf39d18",
        tag: "d0d1c8a799996bf0265b98b5d48ab919",
    },
    GcmVector {
        name: "test case 15",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        iv: "cafebabefacedbaddecaf888",
        aad: "",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        tag: "b094dac5d93471bdec1a502270e3cc6c",
    },
    GcmVector {
        name: "test case 16",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        iv: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
];

/// Decryption through cmkfs' own block layout (`nonce || ciphertext || tag`).
#[test]
fn aes_256_gcm_open_known_answers() {
    for v in GCM {
        let key = SecretKey::from_slice(&hex(v.key)).unwrap();
        let c = BlockCipher::new(&key).unwrap();
        let mut sealed = hex(v.iv);
        sealed.extend(hex(v.ct));
        sealed.extend(hex(v.tag));
        let mut buf = sealed.clone();
        assert_eq!(
            c.open(&hex(v.aad), &mut buf).unwrap(),
            &hex(v.pt)[..],
            "{}",
            v.name
        );
        // Any change of tag, ciphertext, IV or associated data is refused.
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                c.open(&hex(v.aad), &mut bad).unwrap_err(),
                CryptoError::Authentication,
                "{}: flip at {i}",
                v.name
            );
        }
        let mut buf = sealed.clone();
        assert!(c.open(b"other aad", &mut buf).is_err(), "{}", v.name);
    }
}

/// Encryption by the module with the vector's IV (the module's GCM itself; cmkfs never passes
/// its own IV in the fips build, see `block_seal_matches_oracle`).
#[test]
fn aes_256_gcm_seal_known_answers() {
    for v in GCM {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &hex(v.key)).unwrap());
        let mut buf = hex(v.pt);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::try_assume_unique_for_key(&hex(v.iv)).unwrap(),
                Aad::from(hex(v.aad)),
                &mut buf,
            )
            .unwrap();
        assert_eq!(buf, hex(v.ct), "{}", v.name);
        assert_eq!(tag.as_ref(), &hex(v.tag)[..], "{}", v.name);
        // The independent pure-Rust implementation agrees on the same vector.
        let oracle = Aes256Gcm::new_from_slice(&hex(v.key)).unwrap();
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&hex(v.iv)[..]).unwrap();
        let out = oracle
            .encrypt(
                &nonce,
                Payload {
                    msg: &hex(v.pt),
                    aad: &hex(v.aad),
                },
            )
            .unwrap();
        assert_eq!(out[..out.len() - TAG_LEN], hex(v.ct)[..], "{}", v.name);
        assert_eq!(out[out.len() - TAG_LEN..], hex(v.tag)[..], "{}", v.name);
    }
}

/// cmkfs' block seal (IV from the module's DRBG; in the fips build generated inside the
/// module by `RandomizedNonceKey`) gives exactly the bytes the `aes-gcm` oracle gives for the
/// IV it stored, and the IVs differ from seal to seal.
#[test]
fn block_seal_matches_oracle() {
    let key = SecretKey::from_bytes([0x42; 32]);
    let ours = BlockCipher::new(&key).unwrap();
    let oracle = Aes256Gcm::new_from_slice(key.expose()).unwrap();
    let mut ivs = std::collections::HashSet::new();
    for len in [0usize, 1, 15, 16, 17, 4096] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut sealed = vec![0u8; NONCE_LEN + len + TAG_LEN];
        sealed[NONCE_LEN..NONCE_LEN + len].copy_from_slice(&plain);
        ours.seal(b"assoc", &mut sealed).unwrap();
        assert!(ivs.insert(sealed[..NONCE_LEN].to_vec()), "IV repeated");
        let n = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&sealed[..NONCE_LEN]).unwrap();
        let expect = oracle
            .encrypt(
                &n,
                Payload {
                    msg: &plain,
                    aad: b"assoc",
                },
            )
            .unwrap();
        assert_eq!(&sealed[NONCE_LEN..], &expect[..], "length {len}");
    }
}

/// RFC 3394 section 4.6 (256-bit KEK, 256-bit key) through cmkfs' wrap, both directions.
#[test]
fn aes_kw_known_answers_cmkfs_api() {
    let kek = SecretKey::from_slice(&hex(
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
    ))
    .unwrap();
    let key = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
    let wrapped =
        hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
    let ours = wrap_key(&kek, &SecretKey::from_slice(&key).unwrap()).unwrap();
    assert_eq!(ours.to_vec(), wrapped);
    assert_eq!(unwrap_key(&kek, &wrapped).unwrap().expose().to_vec(), key);
    let mut bad = wrapped.clone();
    bad[0] ^= 1;
    assert_eq!(
        unwrap_key(&kek, &bad).unwrap_err(),
        CryptoError::Authentication
    );
}

/// RFC 3394 sections 4.3 and 4.5 (256-bit KEK, 128- and 192-bit keys) through the module.
#[test]
fn aes_kw_known_answers_module() {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
    let kek_bytes = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    for (key, expect) in [
        (
            "00112233445566778899AABBCCDDEEFF",
            "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7",
        ),
        (
            "00112233445566778899AABBCCDDEEFF0001020304050607",
            "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1",
        ),
    ] {
        let kek = AesKek::new(&AES_256, &kek_bytes).unwrap();
        let mut out = [0u8; 64];
        let w = kek.wrap(&hex(key), &mut out).unwrap();
        assert_eq!(w, &hex(expect)[..]);
        let kek = AesKek::new(&AES_256, &kek_bytes).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(kek.unwrap(&hex(expect), &mut out).unwrap(), &hex(key)[..]);
    }
}

struct OkmLen(usize);
impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 5869 appendix A.1-A.3 (HKDF-SHA256).
#[test]
fn hkdf_sha256_known_answers() {
    let cases = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
             202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f
             404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f
             808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f
             a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf
             d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef
             f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c
             59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71
             cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (i, (ikm, salt, info, okm)) in cases.iter().enumerate() {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &hex(salt)).extract(&hex(ikm));
        let expect = hex(okm);
        let info = hex(info);
        let info = [&info[..]];
        let mut out = vec![0u8; expect.len()];
        prk.expand(&info, OkmLen(expect.len()))
            .unwrap()
            .fill(&mut out)
            .unwrap();
        assert_eq!(out, expect, "RFC 5869 A.{}", i + 1);
    }
}

/// HKDF from its definition (RFC 5869 section 2, with HMAC-SHA-256), for a 32-byte output.
fn hkdf_by_definition(ikm: &[u8], salt: &[u8], info: &[u8]) -> Vec<u8> {
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut m = info.to_vec();
    m.push(1);
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()), &m)
        .as_ref()
        .to_vec()
}

/// cmkfs' `derive_key` (content, xattr, symlink and name keys) is exactly HKDF-SHA256.
#[test]
fn derive_key_is_hkdf_sha256() {
    let dk = SecretKey::from_bytes([0x5a; 32]);
    for (salt, info) in [
        (&[0x11u8; 16][..], &b"cmkfs content v1"[..]),
        (&b"cmkfs names v1"[..], &b""[..]),
        (&b"cmkfs names v2"[..], &b"siv mac"[..]),
        (&b""[..], &b"cmkfs xattr names v1"[..]),
    ] {
        let ours = derive_key(&dk, salt, info).unwrap();
        assert_eq!(
            ours.expose().to_vec(),
            hkdf_by_definition(dk.expose(), salt, info)
        );
    }
}

/// RFC 4231 test cases 1 and 2 (HMAC-SHA-256).
#[test]
fn hmac_sha256_known_answers() {
    for (key, data, tag) in [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "4869205468657265",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            "4a656665",
            "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
    ] {
        let t = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &hex(key)), &hex(data));
        assert_eq!(t.as_ref(), &hex(tag)[..]);
    }
}

/// The fips build runs on AWS-LC-FIPS in FIPS mode; the default build on AWS-LC without it.
#[test]
fn module_and_fips_mode() {
    let m = module_info();
    assert_eq!(m.fips_mode, FIPS_BUILD, "{m:?}");
    assert_eq!(aws_lc_rs::try_fips_mode().is_ok(), FIPS_BUILD);
    if FIPS_BUILD {
        assert_eq!(m.module, "AWS-LC FIPS");
        assert!(aws_lc_rs::try_fips_self_test().is_ok());
    }
}
