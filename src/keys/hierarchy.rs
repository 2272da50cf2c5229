//! `KeyHierarchy`: resolves a data-key reference to an unwrapped data key, through the cache
//! or by unwrapping the key-store record with the providers, outermost layer first.

use std::sync::{Arc, RwLock};

use crate::crypto::SecretKey;
use crate::format::{DataKeyRef, KeyStore, WrappedDataKey};

use super::{DataKey, DataKeyCache, KeyError, KeyProvider};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub struct KeyHierarchy {
    store: RwLock<KeyStore>,
    /// Where the key store is persisted (None: in memory only).
    store_path: Option<std::path::PathBuf>,
    /// Innermost (service key) first.
    providers: Vec<Box<dyn KeyProvider>>,
    cache: DataKeyCache,
}

impl KeyHierarchy {
    pub fn new(store: KeyStore, providers: Vec<Box<dyn KeyProvider>>, cache: DataKeyCache) -> Self {
        KeyHierarchy { store: RwLock::new(store), store_path: None, providers, cache }
    }

    /// Persist key-store changes (rotation) to `path`.
    pub fn with_store_path(mut self, path: std::path::PathBuf) -> Self {
        self.store_path = Some(path);
        self
    }

    /// Starts a new data-key epoch of `scope` for new files; existing files keep theirs.
    /// The key store on disk is replaced atomically before memory changes.
    pub fn rotate_data_key(&self, scope: u32, now: u64) -> Result<DataKeyRef, KeyError> {
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        let next = match store.current(scope) {
            Some(cur) => DataKeyRef { scope, epoch: cur.epoch + 1 },
            None => DataKeyRef { scope, epoch: 0 },
        };
        let record = Self::new_data_key_record(&self.providers, next, now)?;
        let mut updated = store.clone();
        updated.data_keys.push(record);
        if let Some(path) = &self.store_path {
            super::save_key_store(path, &updated)?;
        }
        *store = updated;
        Ok(next)
    }

    pub fn cache(&self) -> &DataKeyCache {
        &self.cache
    }

    pub fn store_snapshot(&self) -> KeyStore {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The epoch of `scope` that new files use.
    pub fn current(&self, scope: u32) -> Result<DataKeyRef, KeyError> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current(scope)
            .ok_or(KeyError::UnknownDataKey(DataKeyRef { scope, epoch: 0 }))
    }

    /// The unwrapped data key `key`: one unwrap per key, then served from the cache.
    pub fn data_key(&self, key: DataKeyRef) -> Result<Arc<DataKey>, KeyError> {
        if let Some(k) = self.cache.get(key) {
            return Ok(k);
        }
        let record = self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .find(key)
            .cloned()
            .ok_or(KeyError::UnknownDataKey(key))?;
        let dk = Arc::new(DataKey::new(self.unwrap_record(&record)?)?);
        self.cache.insert(key, dk.clone());
        Ok(dk)
    }

    /// Peels every wrapping layer of `record`, outermost first.
    pub fn unwrap_record(&self, record: &WrappedDataKey) -> Result<SecretKey, KeyError> {
        let key = record.key_ref();
        let mut bytes = zeroize::Zeroizing::new(
            STANDARD
                .decode(&record.wrapped)
                .map_err(|_| KeyError::Unwrap { key, reason: "wrapped key is not base64".into() })?,
        );
        for layer in record.wrapped_by.iter().rev() {
            let provider = self
                .providers
                .iter()
                .find(|p| p.handles(layer))
                .ok_or_else(|| KeyError::NoProvider(format!("{layer:?}")))?;
            bytes = provider.unwrap(layer, &bytes)?;
        }
        Ok(SecretKey::from_slice(&bytes)?)
    }

    /// Generates a data key for (`scope`, `epoch`) and wraps it with every provider, innermost
    /// first. The caller adds the record to the store and persists it.
    pub fn new_data_key_record(
        providers: &[Box<dyn KeyProvider>],
        key: DataKeyRef,
        created: u64,
    ) -> Result<WrappedDataKey, KeyError> {
        let dk = SecretKey::generate()?;
        let mut bytes = zeroize::Zeroizing::new(dk.expose().to_vec());
        let mut wrapped_by = Vec::new();
        for p in providers {
            let (w, id) = p.wrap(&bytes)?;
            bytes = zeroize::Zeroizing::new(w);
            wrapped_by.push(id);
        }
        Ok(WrappedDataKey {
            scope: key.scope,
            epoch: key.epoch,
            created,
            wrapped_by,
            wrapped: STANDARD.encode(&bytes[..]),
        })
    }
}
