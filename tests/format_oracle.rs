//! Format and crypto checks without FUSE: the volume core writes files, and the independent
//! pure-Rust `aes-gcm` crate decrypts the bytes on disk exactly as docs/format.md describes.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};

use cmkfs::crypto::{BlockCipher, SecretKey, derive_key};
use cmkfs::format::{BlockLayout, FileHeader, HEADER_LEN, KeyStore, block_aad};
use cmkfs::keys::ServiceKey;
use cmkfs::volume::{InitOptions, OpenOptions, Volume, init_volume};

fn oracle_open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let c = Aes256Gcm::new_from_slice(key).ok()?;
    let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&sealed[..12]).ok()?;
    c.decrypt(
        &nonce,
        Payload {
            msg: &sealed[12..],
            aad,
        },
    )
    .ok()
}

#[test]
fn block_cipher_matches_aes_gcm_oracle() {
    let key = SecretKey::from_bytes([0x42; 32]);
    let ours = BlockCipher::new(&key).unwrap();
    let oracle = Aes256Gcm::new_from_slice(key.expose()).unwrap();
    for len in [0usize, 1, 15, 16, 17, 4096] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut sealed = vec![0u8; 12 + len + 16];
        sealed[12..12 + len].copy_from_slice(&plain);
        // The IV is drawn by cmkfs (inside the module in the fips build); the oracle gets the
        // one stored in front of the ciphertext.
        ours.seal(b"assoc", &mut sealed).unwrap();
        let n = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(&sealed[..12]).unwrap();
        let expect = oracle
            .encrypt(
                &n,
                Payload {
                    msg: &plain,
                    aad: b"assoc",
                },
            )
            .unwrap();
        assert_eq!(
            &sealed[12..],
            &expect[..],
            "length {len}: same key and nonce must give the same bytes"
        );
        assert_eq!(oracle_open(key.expose(), &sealed, b"assoc").unwrap(), plain);
    }
}

#[test]
fn file_written_by_volume_core_decrypts_with_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let key_path = dir.path().join("sk");
    init_volume(
        &backing,
        &InitOptions {
            service_key: Some(key_path.clone()),
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let vol = Volume::open(
        &backing,
        ServiceKey::load(&key_path).unwrap(),
        &OpenOptions::default(),
    )
    .unwrap();
    let root = vol.root().unwrap();
    let plain: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (f, _) = vol
        .create_file(&root, OsStr::new("data.bin"), 0o644, None, true)
        .unwrap();
    vol.write(&f, 0, &plain).unwrap();
    assert_eq!(vol.read(&f, 0, 20_000).unwrap(), plain);
    drop(f);

    // Find the ciphertext file: the only non-reserved entry in the backing root.
    let entry = fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .unwrap();
    assert!(!entry.file_name().to_string_lossy().contains("data"));
    let ct = fs::read(entry.path()).unwrap();
    let layout = BlockLayout::new(4096);
    assert_eq!(ct.len() as u64, layout.ciphertext_len(plain.len() as u64));
    let header = FileHeader::decode(&ct).unwrap();

    // Unwrap the data key through the public key-store API and derive the content key.
    let meta = backing.join(".cmkfs");
    let store_bytes =
        cmkfs::meta_copies::load(&meta, cmkfs::meta_copies::Record::KeyStore, None, false)
            .unwrap()
            .content;
    let store = KeyStore::parse(&store_bytes).unwrap();
    let record = store.find(header.key).unwrap();
    let dk = vol.keys().unwrap_record(record).unwrap();
    let content = derive_key(&dk, &header.file_id, b"cmkfs content v1").unwrap();

    let mut out = Vec::new();
    let blocks = layout.block_count(plain.len() as u64);
    for b in 0..blocks {
        let start = layout.block_offset(b) as usize;
        let end = if b + 1 == blocks {
            ct.len()
        } else {
            layout.block_offset(b + 1) as usize
        };
        let last = b + 1 == blocks;
        let p = oracle_open(
            content.expose(),
            &ct[start..end],
            &block_aad(&header.file_id, b, last),
        )
        .unwrap_or_else(|| panic!("block {b} does not decrypt with the oracle"));
        // The final-block flag is bound: the same block with the other flag must fail.
        assert!(
            oracle_open(
                content.expose(),
                &ct[start..end],
                &block_aad(&header.file_id, b, !last)
            )
            .is_none()
        );
        out.extend_from_slice(&p);
    }
    assert_eq!(out, plain);
    assert_eq!(HEADER_LEN, 32);
}

#[test]
fn wrong_service_key_is_refused_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("b");
    init_volume(
        &backing,
        &InitOptions {
            service_key: Some(dir.path().join("k1")),
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let other = dir.path().join("k2");
    ServiceKey::create(&other).unwrap();
    let err = Volume::open(
        &backing,
        ServiceKey::load(&other).unwrap(),
        &OpenOptions::default(),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("k2") && msg.contains("not the key of this volume"),
        "{msg}"
    );
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(ServiceKey::load(&other).is_err());
}

#[test]
fn truncate_and_holes_through_volume_core() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("b");
    let key = dir.path().join("k");
    init_volume(
        &backing,
        &InitOptions {
            service_key: Some(key.clone()),
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let vol = Volume::open(
        &backing,
        ServiceKey::load(&key).unwrap(),
        &OpenOptions::default(),
    )
    .unwrap();
    let root = vol.root().unwrap();
    let (f, _) = vol
        .create_file(&root, OsStr::new("f"), 0o600, None, true)
        .unwrap();
    vol.write(&f, 10_000, b"tail").unwrap();
    let all = vol.read(&f, 0, 20_000).unwrap();
    assert_eq!(all.len(), 10_004);
    assert!(all[..10_000].iter().all(|b| *b == 0));
    assert_eq!(&all[10_000..], b"tail");
    vol.truncate(&f, 4096).unwrap();
    assert_eq!(vol.read(&f, 0, 20_000).unwrap().len(), 4096);
    vol.truncate(&f, 5000).unwrap();
    let all = vol.read(&f, 0, 20_000).unwrap();
    assert_eq!(all.len(), 5000);
    assert!(all.iter().all(|b| *b == 0));
    vol.truncate(&f, 0).unwrap();
    assert!(vol.read(&f, 0, 10).unwrap().is_empty());
    vol.write(&f, 0, b"again").unwrap();
    assert_eq!(vol.read(&f, 0, 10).unwrap(), b"again");
}
