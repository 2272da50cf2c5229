//! `KeyHierarchy`: resolves a data-key reference to an unwrapped data key, through the cache
//! or by unwrapping the key-store record with the providers, outermost layer first.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use crate::crypto::{NameScheme, SecretKey};
use crate::format::{DataKeyRef, KeyStore, WrappedDataKey};

use crate::audit::{AuditEvent, AuditLog, AuditOp, AuditResult};
use crate::format::WrapperId;

use super::{CmkConnector, CustomerKey, DataKey, DataKeyCache, KeyError, KeyProvider};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

mod scopes;
pub use scopes::{Revocation, ScopeSummary};

pub struct KeyHierarchy {
    store: RwLock<KeyStore>,
    /// Where the key store is persisted (None: in memory only).
    store_file: Option<super::KeyStoreFile>,
    /// Innermost (service key) first; the customer-managed key, if any, last.
    providers: Vec<Arc<dyn KeyProvider>>,
    cmk: Option<Arc<dyn CustomerKey>>,
    /// The customer-managed keys of key scopes, by versionless URL, connected on first need.
    pub(super) scope_cmks: RwLock<HashMap<String, Arc<dyn CustomerKey>>>,
    /// Connects to a scope's customer-managed key (the daemon's Key Vault settings).
    connector: Option<Arc<dyn CmkConnector>>,
    /// Customer-managed keys found revoked: versionless URL → why.
    pub(super) revoked: RwLock<HashMap<String, String>>,
    /// Scopes whose keys may not be used now (revoked key, locked scope) → why.
    pub(super) denied: RwLock<HashMap<u32, String>>,
    /// Whether `denied` has any entry: the one load `check_usable` makes on the fast path.
    pub(super) denied_flag: AtomicBool,
    /// Locked scopes are usable anyway (`fsck`: checking is not serving).
    pub(super) ignore_locks: bool,
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
    /// Shared mode: the key store as it was when a data key missing from it was last looked
    /// for there. While it stays the same, another miss does not read it again (a header
    /// naming a key that does not exist fails at once rather than costing a read per access).
    missed_in: std::sync::Mutex<Option<super::store::StoreStamp>>,
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
            scope_cmks: RwLock::new(HashMap::new()),
            connector: None,
            revoked: RwLock::new(HashMap::new()),
            denied: RwLock::new(HashMap::new()),
            denied_flag: AtomicBool::new(false),
            ignore_locks: false,
            missed_in: std::sync::Mutex::new(None),
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
        self.refresh_denied();
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

    /// Locked scopes' keys may be used (for `fsck`, which checks but never serves).
    pub fn with_ignore_locks(mut self, ignore: bool) -> Self {
        self.ignore_locks = ignore;
        self
    }

    /// How the customer-managed keys of key scopes are reached (without it, only the
    /// volume's own customer-managed key is).
    pub fn with_connector(mut self, connector: Arc<dyn CmkConnector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The customer-managed key at versionless `url`: the volume's, or a scope's (connected
    /// on first need and kept).
    pub fn cmk_for(&self, url: &str) -> Result<Arc<dyn CustomerKey>, KeyError> {
        if let Some(c) = self.cmk.as_ref().filter(|c| c.key_url() == url) {
            return Ok(c.clone());
        }
        if let Some(c) = self
            .scope_cmks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return Ok(c.clone());
        }
        let connector = self.connector.as_ref().ok_or_else(|| {
            KeyError::NoProvider(format!(
                "the customer-managed key {url} (no Key Vault settings: give --azure-credential)"
            ))
        })?;
        let c = connector.connect(url)?;
        Ok(self
            .scope_cmks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_string())
            .or_insert(c)
            .clone())
    }

    /// The provider that can unwrap `layer`.
    fn provider_for(&self, layer: &WrapperId) -> Result<Arc<dyn KeyProvider>, KeyError> {
        if let Some(p) = self.providers.iter().find(|p| p.handles(layer)) {
            return Ok(p.clone());
        }
        if let WrapperId::Cmk { key_id, .. } = layer
            && let Some(url) = versionless(key_id)
        {
            let c: Arc<dyn KeyProvider> = self.cmk_for(&url)?;
            return Ok(c);
        }
        Err(KeyError::NoProvider(format!("{layer:?}")))
    }

    /// The providers that wrap a new data key of `scope`, innermost first: the service key,
    /// then the scope's customer-managed key if it has one.
    pub(super) fn providers_for(&self, scope: u32) -> Result<Vec<Arc<dyn KeyProvider>>, KeyError> {
        let url = self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .scope_cmk(scope)
            .map(str::to_string);
        let mut out = vec![self.service_provider()?];
        if let Some(url) = url {
            let c: Arc<dyn KeyProvider> = self.cmk_for(&url)?;
            out.push(c);
        }
        Ok(out)
    }

    /// The service-key provider (always the innermost layer).
    fn service_provider(&self) -> Result<Arc<dyn KeyProvider>, KeyError> {
        self.providers
            .first()
            .cloned()
            .ok_or_else(|| KeyError::NoProvider("no service key".into()))
    }

    /// Full key ids (with version) of the volume's customer-managed key that wrap stored
    /// data keys.
    pub fn cmk_versions_in_use(&self) -> Vec<String> {
        match &self.cmk {
            Some(c) => self.versions_in_use(c.key_url()),
            None => Vec::new(),
        }
    }

    /// Full key ids (with version) of the customer-managed key at versionless `url` that wrap
    /// stored data keys.
    pub fn versions_in_use(&self, url: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .data_keys
            .iter()
            .flat_map(|k| k.wrapped_by.iter())
            .filter_map(|w| match w {
                WrapperId::Cmk { key_id, .. } if versionless(key_id).as_deref() == Some(url) => {
                    Some(key_id.clone())
                }
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every customer-managed key (versionless URL) the key store names: the volume's and
    /// each scope's, once each.
    pub fn cmk_urls(&self) -> Vec<String> {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = store
            .cmk
            .iter()
            .chain(store.scopes.iter().filter_map(|s| s.cmk.as_ref()))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Re-wraps every data key whose customer-managed layer is not under the newest version
    /// of the key (no data is re-encrypted). The key store is replaced atomically. Returns
    /// how many records changed.
    pub fn rewrap_cmk(&self) -> Result<usize, KeyError> {
        let cmk = self
            .cmk
            .clone()
            .ok_or_else(|| KeyError::NoProvider("no customer-managed key".into()))?;
        self.rewrap_key(&cmk)
    }

    /// As [`Self::rewrap_cmk`] for the data keys whose outer layer is `cmk` (the volume's or a
    /// scope's customer-managed key).
    pub fn rewrap_key(&self, cmk: &Arc<dyn CustomerKey>) -> Result<usize, KeyError> {
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
            if *key_id == latest || !cmk.handles(&last) {
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

    /// Adds (`Some`) or removes (`None`) the customer-managed layer of every data key of the
    /// volume's own scope (0).
    pub fn set_cmk_layer(&self, cmk: Option<&Arc<dyn CustomerKey>>) -> Result<usize, KeyError> {
        self.set_cmk_layer_for(0, cmk)
    }

    /// Adds (`Some`), replaces or removes (`None`) the customer-managed layer of every data
    /// key of `scope`.
    pub fn set_cmk_layer_for(
        &self,
        scope: u32,
        cmk: Option<&Arc<dyn CustomerKey>>,
    ) -> Result<usize, KeyError> {
        let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _hosts = self.lock_shared_store()?;
        let snapshot = self.store_snapshot();
        if scope != 0 && snapshot.scope(scope).is_none() {
            return Err(KeyError::NoProvider(format!("no key scope {scope}")));
        }
        let mut updated = snapshot.clone();
        let mut changed = 0;
        for rec in updated.data_keys.iter_mut().filter(|r| r.scope == scope) {
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
                let provider = self.provider_for(&last)?;
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
        let url = cmk.map(|c| c.key_url().to_string());
        match updated.scopes.iter_mut().find(|s| s.scope == scope) {
            Some(s) => s.cmk = url,
            None => updated.cmk = url,
        }
        self.replace_store(&snapshot, updated)?;
        self.refresh_denied();
        self.audit.record(
            AuditEvent::new(
                AuditOp::KeyRotate,
                cmk.map(|c| c.key_url().to_string())
                    .unwrap_or_else(|| "service key only".into()),
                AuditResult::Ok,
            )
            .scope(scope)
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
        let providers = self.providers_for(scope)?;
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        if scope != 0 && store.scope(scope).is_none() {
            return Err(KeyError::NoProvider(format!("no key scope {scope}")));
        }
        let next = match store.current(scope) {
            Some(cur) => DataKeyRef {
                scope,
                epoch: cur.epoch + 1,
            },
            None => DataKeyRef { scope, epoch: 0 },
        };
        let record = Self::new_data_key_record(&providers, next, now, &self.audit)?;
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
        let find = || {
            self.store
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .find(key)
                .cloned()
        };
        // Shared mode: a key another host just made (a rotation) may not be taken in here
        // yet; read the store again rather than fail.
        let record = find()
            .or_else(|| self.reload_after_miss().then(find).flatten())
            .ok_or(KeyError::UnknownDataKey(key))?;
        let dk = Arc::new(DataKey::with_name_scheme(
            self.unwrap_record(&record)?,
            self.name_scheme,
        )?);
        self.cache.insert(key, dk.clone());
        Ok(dk)
    }

    /// Shared mode, a data key not in the store: reads the store again, unless it has not
    /// changed since the last such read. Returns whether it was read.
    fn reload_after_miss(&self) -> bool {
        let (true, Some(file)) = (self.shared, &self.store_file) else {
            return false;
        };
        let stamp = file.stamp();
        let mut missed_in = self.missed_in.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.is_some() && *missed_in == stamp {
            return false;
        }
        // Stamped before reading: a change made while reading is read again next time.
        *missed_in = stamp;
        drop(missed_in);
        self.reload_store().is_ok()
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
            let provider = self.provider_for(layer)?;
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

/// `https://VAULT/keys/NAME` of a full key id (with or without version).
pub fn versionless(key_id: &str) -> Option<String> {
    super::parse_key_url(key_id)
        .ok()
        .map(|(endpoint, name, _)| format!("{endpoint}keys/{name}"))
}
