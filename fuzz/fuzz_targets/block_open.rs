//! Block decryption (`BlockCipher::open`, fixed key) on untrusted sealed blocks.
//! Input: mode (1) || aad (29) || block. Mode 0: open the bytes as they are (never panics,
//! never authenticates by chance). Mode 1: seal the block's payload first, then flip the bit
//! chosen by the next two bytes (if any), then open: success iff nothing was flipped, and then
//! the plaintext is the payload.
#![no_main]
use cmkfs::crypto::{BlockCipher, NONCE_LEN, SecretKey, TAG_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 30 {
        return;
    }
    let cipher = BlockCipher::new(&SecretKey::from_bytes([0x17; 32])).unwrap();
    let aad = &data[1..30];
    let rest = &data[30..];
    if data[0] & 1 == 0 {
        let mut sealed = rest.to_vec();
        if let Ok(plain) = cipher.open(aad, &mut sealed) {
            panic!("random bytes authenticated ({} bytes)", plain.len());
        }
        return;
    }
    let (flip, payload) = if rest.len() >= 2 {
        (Some(u16::from_le_bytes([rest[0], rest[1]]) as usize), &rest[2..])
    } else {
        (None, rest)
    };
    let mut sealed = vec![0u8; NONCE_LEN + payload.len() + TAG_LEN];
    sealed[NONCE_LEN..NONCE_LEN + payload.len()].copy_from_slice(payload);
    cipher.seal_with_nonce([7; NONCE_LEN], aad, &mut sealed).unwrap();
    let flipped = match flip {
        Some(bit) if bit / 8 < sealed.len() && bit % 3 != 0 => {
            sealed[bit / 8] ^= 1 << (bit % 8);
            true
        }
        _ => false,
    };
    match cipher.open(aad, &mut sealed) {
        Ok(plain) => {
            assert!(!flipped, "a flipped bit authenticated");
            assert_eq!(plain, payload);
        }
        Err(_) => assert!(flipped, "an untouched sealed block failed to open"),
    }
});
