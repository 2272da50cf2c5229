//! Name encryption: plaintext names <-> backing entry names. Names are encrypted
//! deterministically with the directory id bound in (in the volume's scheme, see
//! `crypto::NameScheme`: AES-256-GCM-SIV, or the FIPS scheme) and encoded as unpadded
//! base64url; encodings longer than [`MAX_SHORT_NAME`] become a `.L<hash>` entry whose full
//! encoding lives in a `.N<hash>` side file. Owns no I/O: callers read and write side files.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{CryptoError, NameCipher};

/// Longest encoded name stored directly as a backing entry name.
pub const MAX_SHORT_NAME: usize = 255;
/// Longest plaintext name accepted (as on Linux filesystems).
pub const MAX_PLAIN_NAME: usize = 255;
pub const LONG_NAME_PREFIX: &str = ".L";
pub const SIDE_FILE_PREFIX: &str = ".N";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name too long")]
    TooLong,
    #[error("invalid name")]
    Invalid,
    #[error("name does not decrypt")]
    Undecryptable,
    #[error("not an encrypted name")]
    Reserved,
}

/// How a plaintext name is stored in its backing directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackingName {
    /// The entry name is the encoded ciphertext.
    Short(String),
    /// The entry is `.L<hash>`; the side file `.N<hash>` holds `encoded`.
    Long {
        entry: String,
        side_file: String,
        encoded: String,
    },
}

impl BackingName {
    pub fn entry(&self) -> &str {
        match self {
            BackingName::Short(s) => s,
            BackingName::Long { entry, .. } => entry,
        }
    }
}

/// What a backing entry name is, before decryption.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryKind<'a> {
    /// An encoded ciphertext name.
    Short(&'a str),
    /// A long-name entry; the side file of this name holds the encoding.
    Long { side_file: String },
    /// Metadata, side files or foreign files: not listed.
    Reserved,
}

pub fn classify(entry: &str) -> EntryKind<'_> {
    if let Some(hash) = entry.strip_prefix(LONG_NAME_PREFIX) {
        if hash.len() == 43 && is_base64url(hash) {
            return EntryKind::Long {
                side_file: format!("{SIDE_FILE_PREFIX}{hash}"),
            };
        }
        return EntryKind::Reserved;
    }
    if entry.starts_with('.') || !is_base64url(entry) {
        return EntryKind::Reserved;
    }
    EntryKind::Short(entry)
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn name_hash(encoded: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, encoded.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Encrypts `plain` for the directory `dir_id`.
pub fn encrypt_name(
    cipher: &NameCipher,
    dir_id: &[u8; 16],
    plain: &[u8],
) -> Result<BackingName, NameError> {
    if plain.is_empty()
        || plain == b"."
        || plain == b".."
        || plain.contains(&b'/')
        || plain.contains(&0)
    {
        return Err(NameError::Invalid);
    }
    if plain.len() > MAX_PLAIN_NAME {
        return Err(NameError::TooLong);
    }
    let sealed = cipher
        .encrypt(dir_id, plain)
        .map_err(|_| NameError::Invalid)?;
    let encoded = URL_SAFE_NO_PAD.encode(sealed);
    if encoded.len() <= MAX_SHORT_NAME {
        return Ok(BackingName::Short(encoded));
    }
    let hash = name_hash(&encoded);
    Ok(BackingName::Long {
        entry: format!("{LONG_NAME_PREFIX}{hash}"),
        side_file: format!("{SIDE_FILE_PREFIX}{hash}"),
        encoded,
    })
}

/// Decrypts an encoded name (a short entry name, or a long name's side-file content, which
/// must hash to `long_entry`'s hash when given).
pub fn decrypt_name(
    cipher: &NameCipher,
    dir_id: &[u8; 16],
    encoded: &str,
    long_entry: Option<&str>,
) -> Result<Vec<u8>, NameError> {
    if let Some(entry) = long_entry {
        let expect = entry
            .strip_prefix(LONG_NAME_PREFIX)
            .ok_or(NameError::Reserved)?;
        if name_hash(encoded) != expect {
            return Err(NameError::Undecryptable);
        }
    }
    let sealed = URL_SAFE_NO_PAD
        .decode(encoded.trim_end())
        .map_err(|_| NameError::Undecryptable)?;
    let plain = cipher
        .decrypt(dir_id, &sealed)
        .map_err(|_: CryptoError| NameError::Undecryptable)?;
    if plain.is_empty()
        || plain.len() > MAX_PLAIN_NAME
        || plain.contains(&b'/')
        || plain.contains(&0)
    {
        return Err(NameError::Undecryptable);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    /// Both schemes: AES-256-GCM-SIV (format 1) and the FIPS scheme.
    fn ciphers() -> [NameCipher; 2] {
        [
            NameCipher::gcm_siv(&SecretKey::from_bytes([4; 32])).unwrap(),
            NameCipher::hmac_siv_ctr(
                &SecretKey::from_bytes([5; 32]),
                &SecretKey::from_bytes([6; 32]),
            )
            .unwrap(),
        ]
    }

    #[test]
    fn short_names_round_trip() {
        for c in ciphers() {
            short_round_trip(&c);
        }
    }

    fn short_round_trip(c: &NameCipher) {
        let d = [1u8; 16];
        let n = encrypt_name(c, &d, b"hello.txt").unwrap();
        let BackingName::Short(e) = &n else {
            panic!("short expected")
        };
        assert_eq!(classify(e), EntryKind::Short(e));
        assert_eq!(decrypt_name(c, &d, e, None).unwrap(), b"hello.txt");
        assert!(!e.contains("hello"));
    }

    #[test]
    fn long_names_use_side_files() {
        for c in ciphers() {
            long_side_files(&c);
        }
    }

    fn long_side_files(c: &NameCipher) {
        let d = [1u8; 16];
        let plain = vec![b'x'; 255];
        let n = encrypt_name(c, &d, &plain).unwrap();
        let BackingName::Long {
            entry,
            side_file,
            encoded,
        } = &n
        else {
            panic!("long expected")
        };
        assert!(entry.len() < 64);
        assert_eq!(
            classify(entry),
            EntryKind::Long {
                side_file: side_file.clone()
            }
        );
        assert_eq!(classify(side_file), EntryKind::Reserved);
        assert_eq!(decrypt_name(c, &d, encoded, Some(entry)).unwrap(), plain);
        assert!(
            decrypt_name(
                c,
                &d,
                encoded,
                Some(".Lxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
            )
            .is_err()
        );
        assert_eq!(
            encrypt_name(c, &d, &[b'x'; 256]).unwrap_err(),
            NameError::TooLong
        );
    }

    #[test]
    fn bad_names() {
        for c in ciphers() {
            bad(&c);
        }
    }

    fn bad(c: &NameCipher) {
        let d = [1u8; 16];
        assert_eq!(encrypt_name(c, &d, b"..").unwrap_err(), NameError::Invalid);
        assert_eq!(encrypt_name(c, &d, b"a/b").unwrap_err(), NameError::Invalid);
        assert_eq!(classify(".cmkfs"), EntryKind::Reserved);
        assert_eq!(classify("plain name"), EntryKind::Reserved);
        assert!(decrypt_name(c, &d, "AAAA", None).is_err());
        assert!(decrypt_name(c, &d, "!!", None).is_err());
    }
}
