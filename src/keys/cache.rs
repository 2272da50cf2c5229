//! `DataKeyCache`: the bounded LRU of unwrapped data keys, with a maximum age. It is the only
//! long-lived holder of data-key bytes; entries are zeroized when evicted, expired, flushed
//! or dropped (`SecretKey` zeroizes itself once the last reference goes).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::crypto::{BlockCipher, CryptoError, NameCipher, NameScheme, SecretKey, derive_key};
use crate::format::DataKeyRef;

/// An unwrapped data key and the name cipher derived from it.
pub struct DataKey {
    key: SecretKey,
    names: NameCipher,
}

impl DataKey {
    /// A data key of a volume whose names use AES-256-GCM-SIV (format 1).
    pub fn new(key: SecretKey) -> Result<Self, CryptoError> {
        Self::with_name_scheme(key, NameScheme::AesGcmSiv)
    }

    /// A data key of a volume whose names use `scheme` (the volume's `"name_cipher"`).
    pub fn with_name_scheme(key: SecretKey, scheme: NameScheme) -> Result<Self, CryptoError> {
        let names = match scheme {
            NameScheme::AesGcmSiv => {
                NameCipher::gcm_siv(&derive_key(&key, b"cmkfs names v1", b"")?)?
            }
            NameScheme::HmacSivCtr => NameCipher::hmac_siv_ctr(
                &derive_key(&key, b"cmkfs names v2", b"siv mac")?,
                &derive_key(&key, b"cmkfs names v2", b"siv ctr")?,
            )?,
        };
        Ok(DataKey { names, key })
    }

    /// The cipher for names in directories whose id file references this key.
    pub fn names(&self) -> &NameCipher {
        &self.names
    }

    /// The content cipher of one file: HKDF-SHA256(DK, salt = file id).
    pub fn content_cipher(&self, file_id: &[u8; 16]) -> Result<BlockCipher, CryptoError> {
        let k = derive_key(&self.key, file_id, b"cmkfs content v1")?;
        BlockCipher::new(&k)
    }

    /// The key that seals xattr values of one object (file or directory).
    pub fn xattr_cipher(&self, object_id: &[u8; 16]) -> Result<BlockCipher, CryptoError> {
        let k = derive_key(&self.key, object_id, b"cmkfs xattr v1")?;
        BlockCipher::new(&k)
    }

    /// The key that names xattrs (HMAC) — shared by all objects of the key.
    pub fn xattr_name_key(&self) -> Result<SecretKey, CryptoError> {
        derive_key(&self.key, b"", b"cmkfs xattr names v1")
    }

    /// The key that seals symlink targets of one link.
    pub fn symlink_cipher(&self, link_id: &[u8; 16]) -> Result<BlockCipher, CryptoError> {
        let k = derive_key(&self.key, link_id, b"cmkfs symlink v1")?;
        BlockCipher::new(&k)
    }
}

struct Entry {
    key: Arc<DataKey>,
    inserted: Instant,
}

/// Hit, miss and eviction counters, for `cmkfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct DataKeyCache {
    entries: Mutex<LruCache<DataKeyRef, Entry>>,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl DataKeyCache {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        DataKeyCache {
            entries: Mutex::new(LruCache::new(cap)),
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<DataKeyRef, Entry>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached key, if present and younger than the maximum age.
    pub fn get(&self, key: DataKeyRef) -> Option<Arc<DataKey>> {
        let mut map = self.lock();
        let found = match map.get(&key) {
            Some(e) if e.inserted.elapsed() <= self.max_age => Some(e.key.clone()),
            Some(_) => {
                map.pop(&key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        drop(map);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: DataKeyRef, value: Arc<DataKey>) {
        let mut map = self.lock();
        if let Some((old, _)) = map.push(
            key,
            Entry {
                key: value,
                inserted: Instant::now(),
            },
        ) && old != key
        {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops every entry (and so zeroizes every key no request is using right now).
    pub fn flush(&self) -> usize {
        let mut map = self.lock();
        let n = map.len();
        map.clear();
        n
    }

    /// Drops the entries `pred` selects; returns how many.
    pub fn flush_where(&self, pred: impl Fn(DataKeyRef) -> bool) -> usize {
        let mut map = self.lock();
        let doomed: Vec<DataKeyRef> = map.iter().map(|(k, _)| *k).filter(|k| pred(*k)).collect();
        for k in &doomed {
            map.pop(k);
        }
        doomed.len()
    }

    /// The keys cached now (for per-scope counts).
    pub fn cached_keys(&self) -> Vec<DataKeyRef> {
        self.lock().iter().map(|(k, _)| *k).collect()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.lock().len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dk(b: u8) -> Arc<DataKey> {
        Arc::new(DataKey::new(SecretKey::from_bytes([b; 32])).unwrap())
    }
    fn r(e: u32) -> DataKeyRef {
        DataKeyRef { scope: 0, epoch: e }
    }

    #[test]
    fn lru_capacity_age_and_flush() {
        let c = DataKeyCache::new(2, Duration::from_secs(60));
        c.insert(r(0), dk(0));
        c.insert(r(1), dk(1));
        assert!(c.get(r(0)).is_some());
        c.insert(r(2), dk(2)); // evicts r(1), the least recently used
        assert!(c.get(r(1)).is_none());
        assert!(c.get(r(0)).is_some());
        let s = c.stats();
        assert_eq!((s.entries, s.hits, s.misses, s.evictions), (2, 2, 1, 1));
        assert_eq!(c.flush(), 2);
        assert!(c.get(r(0)).is_none());

        let young = DataKeyCache::new(4, Duration::from_millis(0));
        young.insert(r(0), dk(0));
        std::thread::sleep(Duration::from_millis(2));
        assert!(young.get(r(0)).is_none(), "expired entries are not served");
    }

    #[test]
    fn derived_keys_differ_per_file() {
        let k = dk(1);
        let mut a = vec![0u8; 40];
        k.content_cipher(&[1; 16])
            .unwrap()
            .seal(b"", &mut a)
            .unwrap();
        let mut a2 = a.clone();
        assert!(
            k.content_cipher(&[2; 16])
                .unwrap()
                .open(b"", &mut a2)
                .is_err()
        );
        assert!(
            k.content_cipher(&[1; 16])
                .unwrap()
                .open(b"", &mut a)
                .is_ok()
        );
    }
}
