//! Backing entry names: `names::classify` on arbitrary entry names, then
//! `names::decrypt_name` with a fixed `NameCipher` key (as readdir does with untrusted
//! directory listings and side files). Input: dir id (16 bytes) || mode (1) || rest.
//! Mode bit 0: treat the rest as a plaintext name, encrypt it and check that it decrypts back
//! (reaches the success paths); otherwise the rest is an untrusted encoded name. Mode bit 1:
//! the FIPS name scheme (HMAC-SHA-256 SIV + AES-256-CTR) instead of AES-256-GCM-SIV.
#![no_main]
use cmkfs::crypto::{NameCipher, SecretKey};
use cmkfs::names::{self, BackingName, EntryKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let dir_id: [u8; 16] = data[..16].try_into().unwrap();
    let mode = data[16];
    let cipher = if mode & 2 == 0 {
        NameCipher::gcm_siv(&SecretKey::from_bytes([0x42; 32])).unwrap()
    } else {
        NameCipher::hmac_siv_ctr(&SecretKey::from_bytes([0x42; 32]), &SecretKey::from_bytes([0x43; 32])).unwrap()
    };
    let rest = &data[17..];
    if mode & 1 == 1 {
        if let Ok(b) = names::encrypt_name(&cipher, &dir_id, rest) {
            let (encoded, long) = match &b {
                BackingName::Short(s) => (s.clone(), None),
                BackingName::Long { entry, encoded, .. } => (encoded.clone(), Some(entry.clone())),
            };
            match names::classify(b.entry()) {
                EntryKind::Short(_) => assert!(long.is_none()),
                EntryKind::Long { .. } => assert!(long.is_some()),
                EntryKind::Reserved => panic!("an encrypted name classified as reserved: {}", b.entry()),
            }
            let plain = names::decrypt_name(&cipher, &dir_id, &encoded, long.as_deref()).expect("round trip");
            assert_eq!(plain, rest);
        }
        return;
    }
    let Ok(entry) = std::str::from_utf8(rest) else { return };
    match names::classify(entry) {
        EntryKind::Short(enc) => {
            let _ = names::decrypt_name(&cipher, &dir_id, enc, None);
        }
        EntryKind::Long { side_file } => {
            assert!(side_file.starts_with(".N"));
            // the side file's content is untrusted too: use the entry itself as content
            let _ = names::decrypt_name(&cipher, &dir_id, entry, Some(entry));
            let _ = names::decrypt_name(&cipher, &dir_id, &side_file, Some(entry));
        }
        EntryKind::Reserved => {
            let _ = names::decrypt_name(&cipher, &dir_id, entry, Some(entry));
        }
    }
});
