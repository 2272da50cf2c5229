//! `BlockLayout::plaintext_size` on an arbitrary ciphertext length (the length of a backing
//! file is attacker-controlled): never panics or overflows; a valid length maps back to itself
//! through `ciphertext_len`.
#![no_main]
use cmkfs::format::BlockLayout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let block_size = 512u64 << (data[0] % 12); // 512 B .. 1 MiB, as volume.json allows
    let len = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let l = BlockLayout::new(block_size);
    match l.plaintext_size(len) {
        Ok(size) => {
            if len != 0 {
                // (0 bytes is the header-less empty file; ciphertext_len(0) counts a header)
                assert_eq!(l.ciphertext_len(size), len, "block size {block_size}, len {len} -> size {size}");
            }
            let _ = l.block_count(size);
        }
        Err(_approx) => {}
    }
});
