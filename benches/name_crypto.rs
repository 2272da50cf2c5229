//! Name encryption and decryption for one directory, for a typical 20-byte name and a
//! 255-byte name (the longest allowed; its encoding is a `.L<hash>` long name).
//!
//! - `encrypt_name` / `decrypt_name` (`cmkfs::names`): what lookup, create and readdir call —
//!   validation, AES-256-GCM-SIV with the directory id, base64url, and for long names the
//!   SHA-256 entry hash;
//! - `cipher_encrypt` / `cipher_decrypt`: the bare `NameCipher` (AES-256-GCM-SIV) alone.
//!
//! Both schemes: `name/...` AES-256-GCM-SIV (format 1), `name-fips/...` the FIPS scheme
//! (HMAC-SHA-256 synthetic IV + AES-256-CTR). The name cipher is the one a data key derives (`DataKey::names`). Throughput is plaintext
//! name bytes. Run: `cargo bench --bench name_crypto`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use cmkfs::crypto::{NameScheme, SecretKey};
use cmkfs::keys::DataKey;
use cmkfs::names::{BackingName, decrypt_name, encrypt_name};

const DIR_ID: [u8; 16] = [0x3c; 16];

fn bench(c: &mut Criterion) {
    for scheme in [NameScheme::AesGcmSiv, NameScheme::HmacSivCtr] {
        bench_scheme(c, scheme);
    }
}

fn bench_scheme(c: &mut Criterion, scheme: NameScheme) {
    let dk = DataKey::with_name_scheme(SecretKey::from_bytes([7; 32]), scheme).unwrap();
    let cipher = dk.names();
    let short = b"quarterly-report.pdf".to_vec(); // 20 bytes
    let long = vec![b'n'; 255];
    let tag = match scheme {
        NameScheme::AesGcmSiv => "",
        NameScheme::HmacSivCtr => "-fips",
    };
    for (label, plain) in [("20B", &short), ("255B", &long)] {
        let mut g = c.benchmark_group(format!("name{tag}/{label}"));
        g.throughput(Throughput::Bytes(plain.len() as u64));
        g.bench_function("encrypt_name", |b| {
            b.iter(|| encrypt_name(cipher, &DIR_ID, black_box(plain)).unwrap())
        });
        let (encoded, long_entry) = match encrypt_name(cipher, &DIR_ID, plain).unwrap() {
            BackingName::Short(e) => (e, None),
            BackingName::Long { entry, encoded, .. } => (encoded, Some(entry)),
        };
        assert_eq!(long_entry.is_some(), plain.len() == 255);
        g.bench_function("decrypt_name", |b| {
            b.iter(|| {
                decrypt_name(cipher, &DIR_ID, black_box(&encoded), long_entry.as_deref()).unwrap()
            })
        });
        g.bench_function("cipher_encrypt", |b| {
            b.iter(|| cipher.encrypt(&DIR_ID, black_box(plain)).unwrap())
        });
        let sealed = cipher.encrypt(&DIR_ID, plain).unwrap();
        g.bench_function("cipher_decrypt", |b| {
            b.iter(|| cipher.decrypt(&DIR_ID, black_box(&sealed)).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
