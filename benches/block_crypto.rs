//! Block-layer AES-256-GCM as the volume's write and read paths run it: a file's content
//! cipher (`DataKey::content_cipher`), blocks laid out `nonce || ciphertext || tag` with the
//! `block_aad` (file id, block index, last flag) as associated data.
//!
//! - `seal_blocks` (`volume::seal_blocks`, what `Volume::write` calls per batch: one RNG call
//!   for all nonces, two threads from 64 blocks up) for one 4 KiB block and for a 1 MiB
//!   request (256 blocks);
//! - `nonces`: the one `fill_random` call of `seal_blocks` alone (12 bytes per block);
//! - `seal_with_nonce`: the bare AES-GCM seal of one block, no RNG (256 in a row for 1 MiB,
//!   a single-threaded baseline);
//! - `open`: `BlockCipher::open` of one block, and 256 in a row as `Volume::read` does.
//!
//! Throughput is plaintext bytes. Run: `cargo bench --bench block_crypto`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use cmkfs::crypto::{BlockCipher, NONCE_LEN, SecretKey, TAG_LEN, fill_random};
use cmkfs::format::block_aad;
use cmkfs::keys::DataKey;
use cmkfs::volume::seal_blocks;

const BS: usize = 4096;
const FILE_ID: [u8; 16] = [0x5a; 16];

/// `n` blocks of plaintext laid out as the write path lays them out, with their spans.
fn layout(n: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
    let slen = NONCE_LEN + BS + TAG_LEN;
    let mut buf = vec![0u8; n * slen];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    (buf, (0..n).map(|i| (i * slen, slen)).collect())
}

fn bench(c: &mut Criterion) {
    let dk = DataKey::new(SecretKey::from_bytes([7; 32])).unwrap();
    let cipher: BlockCipher = dk.content_cipher(&FILE_ID).unwrap();

    for (label, n) in [("4KiB", 1usize), ("1MiB", 256)] {
        let mut g = c.benchmark_group(format!("block/{label}"));
        g.throughput(Throughput::Bytes((n * BS) as u64));
        let (mut buf, spans) = layout(n);
        let last = n as u64 - 1;
        g.bench_function("seal_blocks", |b| {
            b.iter(|| seal_blocks(&cipher, &FILE_ID, 0, last, black_box(&mut buf), &spans).unwrap())
        });
        let mut nonces = vec![0u8; n * NONCE_LEN];
        g.bench_function("nonces", |b| {
            b.iter(|| fill_random(black_box(&mut nonces)).unwrap())
        });
        // Caller-chosen nonces do not exist in the fips build (the module draws every IV).
        #[cfg(not(feature = "fips"))]
        g.bench_function("seal_with_nonce", |b| {
            b.iter(|| {
                for (i, &(pos, len)) in spans.iter().enumerate() {
                    let aad = block_aad(&FILE_ID, i as u64, i as u64 == last);
                    let nonce = [i as u8; NONCE_LEN]; // fixed nonces: timing only
                    cipher
                        .seal_with_nonce(nonce, &aad, black_box(&mut buf[pos..pos + len]))
                        .unwrap();
                }
            })
        });
        // `open` decrypts in place: each iteration gets a fresh (untimed) copy of valid blocks.
        seal_blocks(&cipher, &FILE_ID, 0, last, &mut buf, &spans).unwrap();
        let batch = if n == 1 {
            BatchSize::SmallInput
        } else {
            BatchSize::LargeInput
        };
        g.bench_function("open", |b| {
            b.iter_batched_ref(
                || buf.clone(),
                |sealed| {
                    for (i, &(pos, len)) in spans.iter().enumerate() {
                        let aad = block_aad(&FILE_ID, i as u64, i as u64 == last);
                        black_box(cipher.open(&aad, &mut sealed[pos..pos + len]).unwrap());
                    }
                },
                batch,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
