//! The data-key cache hit path and per-open content-key derivation.
//!
//! - `cache_get_hit`: `DataKeyCache::get` of a cached key (mutex, LRU lookup and promotion,
//!   age check, `Arc` clone, hit counter), in a cache of the default capacity holding 16 keys;
//! - `data_key_hit`: `KeyHierarchy::data_key` of a cached key — what the read path's first
//!   access to a file, every name operation and every xattr operation call (the revocation
//!   check plus the cache lookup);
//! - `derive_key`: one HKDF-SHA256 derivation;
//! - `content_cipher`: `DataKey::content_cipher` (HKDF plus AES-256-GCM key setup), done once
//!   per opened file and then kept in its `OpenFile`.
//!
//! Before the timings it counts heap allocations (a counting global allocator; aws-lc's own
//! C allocations are not seen) over many cache hits and prints them.
//! Run: `cargo bench --bench key_cache`. Uncontended, single thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group};

use cmkfs::crypto::{SecretKey, derive_key};
use cmkfs::format::{DataKeyRef, FORMAT_VERSION, KeyStore};
use cmkfs::keys::{DataKey, DataKeyCache, KeyHierarchy};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

const FILE_ID: [u8; 16] = [0x5a; 16];

/// A hierarchy (no providers: every key is put in its cache) as `Volume::open` builds it, with
/// the default cache size and age, holding the keys of 16 epochs.
fn hierarchy() -> KeyHierarchy {
    let store = KeyStore {
        format: FORMAT_VERSION,
        cmk: None,
        data_keys: Vec::new(),
        scopes: Vec::new(),
    };
    let h = KeyHierarchy::new(
        store,
        Vec::new(),
        DataKeyCache::new(1024, Duration::from_secs(3600)),
    );
    for epoch in 0..16 {
        let dk = DataKey::new(SecretKey::from_bytes([epoch as u8; 32])).unwrap();
        h.cache()
            .insert(DataKeyRef { scope: 0, epoch }, Arc::new(dk));
    }
    h
}

fn allocs_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn alloc_check() {
    let h = hierarchy();
    let r = DataKeyRef { scope: 0, epoch: 3 };
    let n = 100_000;
    let get = allocs_per_call(n, || drop(black_box(h.cache().get(r)).unwrap()));
    let dk = allocs_per_call(n, || drop(black_box(h.data_key(r)).unwrap()));
    let key = h.data_key(r).unwrap();
    let cc = allocs_per_call(1000, || {
        drop(black_box(key.content_cipher(&FILE_ID)).unwrap())
    });
    println!(
        "heap allocations per call (Rust allocator): cache_get_hit {get}, data_key_hit {dk}, \
         content_cipher {cc}"
    );
}

fn bench(c: &mut Criterion) {
    let h = hierarchy();
    let r = DataKeyRef { scope: 0, epoch: 3 };
    let mut g = c.benchmark_group("keys");
    g.bench_function("cache_get_hit", |b| {
        b.iter(|| h.cache().get(black_box(r)).unwrap())
    });
    g.bench_function("data_key_hit", |b| {
        b.iter(|| h.data_key(black_box(r)).unwrap())
    });
    let key = h.data_key(r).unwrap();
    let secret = SecretKey::from_bytes([9; 32]);
    g.bench_function("derive_key", |b| {
        b.iter(|| derive_key(&secret, black_box(&FILE_ID), b"cmkfs content v1").unwrap())
    });
    g.bench_function("content_cipher", |b| {
        b.iter(|| key.content_cipher(black_box(&FILE_ID)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    alloc_check();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
