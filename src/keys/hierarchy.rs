//! `KeyHierarchy`: resolves a data-key reference to an unwrapped data key, through the cache
//! or by unwrapping the key-store record with the providers, outermost layer first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::crypto::{NameScheme, SecretKey};
use crate::format::{DataKeyRef, KeyStore, WrappedDataKey};

use crate::audit::{AuditEvent, AuditLog, AuditOp, AuditResult};
use crate::format::WrapperId;

use super::{CustomerKey, DataKey, DataKeyCache, KeyError, KeyProvider};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub struct KeyHierarchy {
    store: RwLock<KeyStore>,
    /// Where the key store is persisted (None: in memory only).
    store_file: Option<super::KeyStoreFile>,
    /// Innermost (service key) first; the customer-managed key, if any, last.
    providers: Vec<Arc<dyn KeyProvider>>,
    cmk: Option<Arc<dyn CustomerKey>>,
    /// Why the customer-managed key is revoked, while it is.
    revoked: RwLock<Option<String>>,
    revoked_flag: AtomicBool,
    cache: DataKeyCache,
    audit: Arc<AuditLog>,
    /// The volume's name scheme, given to every data key unwrapped.
    name_scheme: NameScheme,
    /// Held by each key-store change from its snapshot to its replacement, so that two changes
    /// in this daemon (the watcher re-wrapping to a new key version while `key rotate` does the
    /// same) run one after the other instead of one failing as concurrent.
    change_lock: std::sync::Mutex<()>,
    /// Shared mode: other hosts' daemons change the key store too.
    shared: bool,
}

fn result_of(e: &KeyError) -> AuditResult {
    match e {
        KeyError::Revoked(_) => AuditResult::Revoked,
        KeyError::Unavailable(_) => AuditResult::Unreachable,
        KeyError::WrongServiceKey { .. } => AuditResult::Denied,
        _ => AuditResult::Error,
    }
}

impl KeyHierarchy {
    pub fn new(store: KeyStore, providers: Vec<Arc<dyn KeyProvider>>, cache: DataKeyCache) -> Self {
        KeyHierarchy {
            store: RwLock::new(store),
            change_lock: std::sync::Mutex::new(()),
            store_file: None,
            providers,
            cmk: None,
            revoked: RwLock::new(None),
            revoked_flag: AtomicBool::new(false),
            cache,
            audit: Arc::new(AuditLog::disabled()),
            name_scheme: NameScheme::AesGcmSiv,
            shared: false,
        }
    }

    /// Names of this volume use `scheme` (its `volume.json` `"name_cipher"`).
    pub fn with_name_scheme(mut self, scheme: NameScheme) -> Self {
        self.name_scheme = scheme;
        self
    }

    /// Shared mode: each change of the key store starts from the store on disk, under a lock
    /// that every host's daemon takes (see `KeyStoreFile::lock_changes`).
    pub fn with_shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Shared mode: locks the key store against other hosts' changes and takes in theirs.
    fn lock_shared_store(&self) -> Result<Option<std::fs::File>, KeyError> {
        let (true, Some(file)) = (self.shared, &self.store_file) else {
            return Ok(None);
        };
        let guard = file.lock_changes()?;
        self.reload_store()?;
        Ok(Some(guard))
    }

    /// The key store's newest generation on disk (0 without a store file).
    pub fn store_generation(&self) -> u64 {
        self.store_file
            .as_ref()
            .map(|f| f.generation())
            .unwrap_or(0)
    }

    /// Takes in the key store as it is on disk, when another host changed it (a data-key
    /// rotation, a re-wrap to a new customer-managed key version, `set-cmk`): the cached data
    /// keys are flushed, so that every key is unwrapped again through its new wraps. Returns
    /// whether it changed.
    pub fn reload_store(&self) -> Result<bool, KeyError> {
        let Some(file) = &self.store_file else {
            return Ok(false);
        };
        let (fresh, _) = file.load(false)?;
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        if *store == fresh {
            return Ok(false);
        }
        *store = fresh;
        drop(store);
        self.flush_cache("the key store was changed by another host");
        Ok(true)
    }

    /// Writes every key event to `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Drops (zeroizes) every cached data key; audited.
    pub fn flush_cache(&self, why: &str) -> usize {
        let n = self.cache.flush();
        self.audit.record(
            AuditEvent::new(AuditOp::CacheFlush, "data-key cache", AuditResult::Ok)
                .detail(format!("{n} keys flushed: {why}")),
        );
        n
    }

    /// Adds a customer-managed key as the outermost wrapping layer.
    pub fn with_cmk(mut self, cmk: Arc<dyn CustomerKey>) -> Self {
        self.providers.push(cmk.clone());
        self.cmk = Some(cmk);
        self
    }

    pub fn cmk(&self) -> Option<&Arc<dyn CustomerKey>> {
        self.cmk.as_ref()
    }

    /// Full key ids (with version) of the customer-managed key that wrap stored data keys.
    pub fn cmk_versions_in_use(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .data_keys
            .iter()
            .flat_map(|k| k.wrapped_by.iter())
            .filter_map(|w| match w {
                WrapperId::Cmk { key_id, .. } => Some(key_id.clone()),
                WrapperId::Service { .. } => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Marks the customer-managed key revoked and flushes (zeroizes) every data key it
    /// protects. Returns how many cached keys were dropped.
    pub fn revoke(&self, reason: &str) -> usize {
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        self.revoked_flag.store(true, Ordering::SeqCst);
        let protected = self.cmk_protected();
        let flushed = self.cache.flush_where(|r| protected.contains(&r));
        let key = self
            .cmk
            .as_ref()
            .map(|c| c.key_url().to_string())
            .unwrap_or_default();
        self.audit.record(
            AuditEvent::new(AuditOp::RevocationDetected, key, AuditResult::Revoked)
                .detail(format!("{reason}; {flushed} cached data keys flushed")),
        );
        flushed
    }

    /// Re-wraps every data key whose customer-managed layer is not under the newest version
    /// of the key (no data is re-encrypted). The key store is replaced atomically. Returns
    /// how many records changed.
    pub fn rewrap_cmk(&self) -> Result<usize, KeyError> {
        let cmk = self
            .cmk
            .clone()
            .ok_or_else(|| KeyError::NoProvider("no customer-managed key".into()))?;
        let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _hosts = self.lock_shared_store()?;
        let latest = cmk.latest_key_id()?;
        let snapshot = self.store_snapshot();
        let mut updated = snapshot.clone();
        let mut changed = 0;
        for rec in updated.data_keys.iter_mut() {
            let Some(last) = rec.wrapped_by.last().cloned() else {
                continue;
            };
            let WrapperId::Cmk { key_id, .. } = &last else {
                continue;
            };
            if *key_id == latest {
                continue;
            }
            let outer = STANDARD
                .decode(&rec.wrapped)
                .map_err(|_| KeyError::Unwrap {
                    key: rec.key_ref(),
                    reason: "wrapped key is not base64".into(),
                })?;
            let inner = cmk.unwrap(&last, &outer)?;
            let (wrapped, id) = cmk.wrap(&inner)?;
            rec.wrapped = STANDARD.encode(wrapped);
            if let Some(l) = rec.wrapped_by.last_mut() {
                *l = id;
            }
            changed += 1;
        }
        if changed > 0 {
            self.replace_store(&snapshot, updated)?;
            self.audit.record(
                AuditEvent::new(AuditOp::KeyRotate, latest.clone(), AuditResult::Ok).detail(
                    format!(
                        "{changed} data keys re-wrapped to the newest version; no data re-encrypted"
                    ),
                ),
            );
        }
        Ok(changed)
    }

    /// Adds (`Some`) or removes (`None`) the customer-managed layer of every data key.
    pub fn set_cmk_layer(&self, cmk: Option<&Arc<dyn CustomerKey>>) -> Result<usize, KeyError> {
        let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _hosts = self.lock_shared_store()?;
        let snapshot = self.store_snapshot();
        let mut updated = snapshot.clone();
        let mut changed = 0;
        for rec in updated.data_keys.iter_mut() {
            let has_cmk = matches!(rec.wrapped_by.last(), Some(WrapperId::Cmk { .. }));
            let bytes = STANDARD
                .decode(&rec.wrapped)
                .map_err(|_| KeyError::Unwrap {
                    key: rec.key_ref(),
                    reason: "wrapped key is not base64".into(),
                })?;
            let inner = if has_cmk {
                let last = rec
                    .wrapped_by
                    .last()
                    .cloned()
                    .ok_or_else(|| KeyError::NoProvider("empty wrap chain".into()))?;
                let provider = self
                    .providers
                    .iter()
                    .find(|p| p.handles(&last))
                    .ok_or_else(|| KeyError::NoProvider(format!("{last:?}")))?;
                rec.wrapped_by.pop();
                provider.unwrap(&last, &bytes)?
            } else {
                zeroize::Zeroizing::new(bytes)
            };
            match cmk {
                Some(c) => {
                    let (w, id) = c.wrap(&inner)?;
                    rec.wrapped = STANDARD.encode(w);
                    rec.wrapped_by.push(id);
                }
                None => rec.wrapped = STANDARD.encode(&inner[..]),
            }
            changed += 1;
        }
        updated.cmk = cmk.map(|c| c.key_url().to_string());
        self.replace_store(&snapshot, updated)?;
        self.audit.record(
            AuditEvent::new(
                AuditOp::KeyRotate,
                cmk.map(|c| c.key_url().to_string())
                    .unwrap_or_else(|| "service key only".into()),
                AuditResult::Ok,
            )
            .detail(format!(
                "{changed} data keys re-wrapped ({})",
                if cmk.is_some() {
                    "customer-managed key set"
                } else {
                    "customer-managed key removed"
                }
            )),
        );
        Ok(changed)
    }

    /// Persists `updated` and swaps it in, unless the store changed since `snapshot`.
    fn replace_store(&self, snapshot: &KeyStore, updated: KeyStore) -> Result<(), KeyError> {
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        if *store != *snapshot {
            return Err(KeyError::Store {
                path: self
                    .store_file
                    .as_ref()
                    .map(|f| f.path())
                    .unwrap_or_default(),
                reason: "changed concurrently; try again".into(),
            });
        }
        if let Some(file) = &self.store_file {
            file.save(&updated)?;
        }
        *store = updated;
        Ok(())
    }

    /// Lifts a revocation (the key is usable again).
    pub fn restore(&self) {
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.revoked_flag.store(false, Ordering::SeqCst);
        let key = self
            .cmk
            .as_ref()
            .map(|c| c.key_url().to_string())
            .unwrap_or_default();
        self.audit.record(AuditEvent::new(
            AuditOp::AccessRestored,
            key,
            AuditResult::Ok,
        ));
    }

    pub fn revoked_reason(&self) -> Option<String> {
        if !self.revoked_flag.load(Ordering::Relaxed) {
            return None;
        }
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn cmk_protected(&self) -> Vec<DataKeyRef> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .data_keys
            .iter()
            .filter(|k| {
                k.wrapped_by
                    .iter()
                    .any(|w| matches!(w, WrapperId::Cmk { .. }))
            })
            .map(|k| k.key_ref())
            .collect()
    }

    /// Fails with `Revoked` when `key` is protected by a revoked customer-managed key. Cheap
    /// (one atomic load) while nothing is revoked: called before every use of a cached key.
    pub fn check_usable(&self, key: DataKeyRef) -> Result<(), KeyError> {
        if !self.revoked_flag.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.cmk_protected().contains(&key) {
            return Err(KeyError::Revoked(
                self.revoked_reason()
                    .unwrap_or_else(|| "customer-managed key revoked".into()),
            ));
        }
        Ok(())
    }

    /// Persist key-store changes (rotation, CMK changes) to both copies of `file`.
    pub fn with_store_file(mut self, file: super::KeyStoreFile) -> Self {
        self.store_file = Some(file);
        self
    }

    /// Starts a new data-key epoch of `scope` for new files; existing files keep theirs.
    /// The key store on disk is replaced atomically before memory changes.
    pub fn rotate_data_key(&self, scope: u32, now: u64) -> Result<DataKeyRef, KeyError> {
        let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _hosts = self.lock_shared_store()?;
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        let next = match store.current(scope) {
            Some(cur) => DataKeyRef {
                scope,
                epoch: cur.epoch + 1,
            },
            None => DataKeyRef { scope, epoch: 0 },
        };
        let record = Self::new_data_key_record(&self.providers, next, now, &self.audit)?;
        let mut updated = store.clone();
        updated.data_keys.push(record);
        if let Some(file) = &self.store_file
            && let Err(e) = file.save(&updated)
        {
            self.audit.record(
                AuditEvent::new(
                    AuditOp::DataKeyRotate,
                    format!("{next}"),
                    AuditResult::Error,
                )
                .scope(scope)
                .detail(e.to_string()),
            );
            return Err(e);
        }
        *store = updated;
        self.audit.record(
            AuditEvent::new(AuditOp::DataKeyRotate, format!("{next}"), AuditResult::Ok)
                .scope(scope),
        );
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
        self.check_usable(key)?;
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
        let dk = Arc::new(DataKey::with_name_scheme(
            self.unwrap_record(&record)?,
            self.name_scheme,
        )?);
        self.cache.insert(key, dk.clone());
        Ok(dk)
    }

    /// Peels every wrapping layer of `record`, outermost first.
    pub fn unwrap_record(&self, record: &WrappedDataKey) -> Result<SecretKey, KeyError> {
        let key = record.key_ref();
        let mut bytes =
            zeroize::Zeroizing::new(STANDARD.decode(&record.wrapped).map_err(|_| {
                KeyError::Unwrap {
                    key,
                    reason: "wrapped key is not base64".into(),
                }
            })?);
        for layer in record.wrapped_by.iter().rev() {
            let provider = self
                .providers
                .iter()
                .find(|p| p.handles(layer))
                .ok_or_else(|| KeyError::NoProvider(format!("{layer:?}")))?;
            let started = std::time::Instant::now();
            let result = provider.unwrap(layer, &bytes);
            let mut ev = AuditEvent::new(
                AuditOp::KeyUnwrap,
                super::audit_key_id(layer),
                match &result {
                    Ok(_) => AuditResult::Ok,
                    Err(e) => result_of(e),
                },
            )
            .scope(key.scope)
            .duration(started.elapsed());
            if let Some(id) = provider.last_request_id() {
                ev = ev.correlation_id(id);
            }
            if let Err(e) = &result {
                ev = ev.detail(format!("data key {key}: {e}"));
            }
            self.audit.record(ev);
            bytes = result?;
        }
        Ok(SecretKey::from_slice(&bytes)?)
    }

    /// Generates a data key for (`scope`, `epoch`) and wraps it with every provider, innermost
    /// first. The caller adds the record to the store and persists it.
    pub fn new_data_key_record(
        providers: &[Arc<dyn KeyProvider>],
        key: DataKeyRef,
        created: u64,
        audit: &AuditLog,
    ) -> Result<WrappedDataKey, KeyError> {
        let dk = SecretKey::generate()?;
        let mut bytes = zeroize::Zeroizing::new(dk.expose().to_vec());
        let mut wrapped_by = Vec::new();
        for p in providers {
            let started = std::time::Instant::now();
            let result = p.wrap(&bytes);
            let mut ev = match &result {
                Ok((_, id)) => {
                    AuditEvent::new(AuditOp::KeyWrap, super::audit_key_id(id), AuditResult::Ok)
                }
                Err(e) => AuditEvent::new(AuditOp::KeyWrap, "(wrap failed)", result_of(e))
                    .detail(e.to_string()),
            }
            .scope(key.scope)
            .duration(started.elapsed());
            if let Some(id) = p.last_request_id() {
                ev = ev.correlation_id(id);
            }
            audit.record(ev.detail(format!("data key {key}")));
            let (w, id) = result?;
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
