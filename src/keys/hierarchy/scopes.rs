//! Key scopes and what may use their keys: which scopes are denied now (a revoked
//! customer-managed key, a locked scope), revocation and restoration per key, and the scope
//! operations (create, lock, unlock, summaries). Scope 0 is the volume's own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::KeyHierarchy;
use crate::audit::{AuditEvent, AuditOp, AuditResult};
use crate::format::{DataKeyRef, ScopeRecord};
use crate::keys::{CustomerKey, KeyError};

/// What a revocation did: cached keys dropped, and the scopes whose keys are now refused.
#[derive(Clone, Debug, Default)]
pub struct Revocation {
    pub flushed: usize,
    pub scopes: Vec<u32>,
}

/// One key scope as `cmkfs scope list` shows it (the root path is found by the caller).
#[derive(Clone, Debug, Serialize)]
pub struct ScopeSummary {
    pub scope: u32,
    /// Directory id of the scope's root (32 hex digits; empty for scope 0, the volume root).
    pub root_dir_id: String,
    /// Versionless customer-managed key URL; None: the service key alone.
    pub cmk: Option<String>,
    /// Full key ids (with version) wrapping its data keys.
    pub cmk_versions: Vec<String>,
    /// "usable", "locked" or "revoked" (the caller adds "unreachable" from the watcher).
    pub state: String,
    pub detail: Option<String>,
    pub epochs: Vec<u32>,
    pub current_epoch: Option<u32>,
    pub cached_keys: usize,
    pub created: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl KeyHierarchy {
    /// Recomputes which scopes are refused: locked ones, and those whose customer-managed
    /// key is revoked. Called after any change of either.
    pub(crate) fn refresh_denied(&self) {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let mut denied = HashMap::new();
        let scopes = std::iter::once((0, store.cmk.as_ref(), false)).chain(
            store
                .scopes
                .iter()
                .map(|s| (s.scope, s.cmk.as_ref(), s.locked)),
        );
        for (scope, cmk, locked) in scopes {
            if locked && !self.ignore_locks {
                denied.insert(scope, format!("key scope {scope} is locked"));
            } else if let Some(why) = cmk.and_then(|u| revoked.get(u)) {
                denied.insert(scope, why.clone());
            }
        }
        let mut d = self.denied.write().unwrap_or_else(|p| p.into_inner());
        self.denied_flag.store(!denied.is_empty(), Ordering::SeqCst);
        *d = denied;
    }

    /// Fails with `Revoked` when `key`'s scope is refused (its customer-managed key revoked,
    /// or locked). One atomic load while nothing is refused: called before every use of a
    /// cached key. Other scopes' refusals cost one map lookup.
    pub fn check_usable(&self, key: DataKeyRef) -> Result<(), KeyError> {
        if !self.denied_flag.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self
            .denied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key.scope)
        {
            Some(why) => Err(KeyError::Revoked(why.clone())),
            None => Ok(()),
        }
    }

    /// The scopes whose keys `url` (versionless) wraps.
    fn scopes_of_key(&self, url: &str) -> Vec<u32> {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<u32> = store
            .cmk
            .iter()
            .filter(|c| *c == url)
            .map(|_| 0)
            .chain(
                store
                    .scopes
                    .iter()
                    .filter(|s| s.cmk.as_deref() == Some(url))
                    .map(|s| s.scope),
            )
            .collect();
        v.sort();
        v
    }

    /// Marks the customer-managed key at `url` revoked and flushes (zeroizes) the cached data
    /// keys of every scope it protects; audited with each scope.
    pub fn revoke(&self, url: &str, reason: &str) -> Revocation {
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), reason.to_string());
        self.refresh_denied();
        let scopes = self.scopes_of_key(url);
        let flushed = self.cache.flush_where(|r| scopes.contains(&r.scope));
        for s in &scopes {
            self.audit.record(
                AuditEvent::new(AuditOp::RevocationDetected, url, AuditResult::Revoked)
                    .scope(*s)
                    .detail(format!("{reason}; cached data keys of the scope flushed")),
            );
        }
        Revocation { flushed, scopes }
    }

    /// Lifts the revocation of `url` (the key is usable again); audited with each scope.
    pub fn restore(&self, url: &str) {
        let was = self
            .revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
        self.refresh_denied();
        if was.is_some() {
            for s in self.scopes_of_key(url) {
                self.audit.record(
                    AuditEvent::new(AuditOp::AccessRestored, url, AuditResult::Ok).scope(s),
                );
            }
        }
    }

    /// Why the customer-managed key at `url` is revoked, while it is.
    pub fn key_revoked(&self, url: &str) -> Option<String> {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    /// Why the volume's own customer-managed key is revoked, while it is.
    pub fn revoked_reason(&self) -> Option<String> {
        self.cmk().and_then(|c| self.key_revoked(c.key_url()))
    }

    /// The scopes whose keys are refused now (revoked or locked).
    pub fn denied_scopes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .denied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Makes a new key scope rooted at the directory whose id is `root_dir_id` (hex): a first
    /// data key wrapped by the service key and by `cmk` (when given), recorded with the scope
    /// in the key store before anything else changes. Returns the scope's first data key.
    pub fn create_scope(
        &self,
        root_dir_id: &str,
        cmk: Option<&str>,
    ) -> Result<DataKeyRef, KeyError> {
        let cmk_key: Option<Arc<dyn CustomerKey>> = match cmk {
            Some(url) => Some(self.cmk_for(url)?),
            None => None,
        };
        let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _hosts = self.lock_shared_store()?;
        let snapshot = self.store_snapshot();
        let scope = snapshot.next_scope();
        let key = DataKeyRef { scope, epoch: 0 };
        let mut providers = vec![self.service_provider()?];
        if let Some(c) = &cmk_key {
            let p: Arc<dyn crate::keys::KeyProvider> = c.clone();
            providers.push(p);
        }
        let record = Self::new_data_key_record(&providers, key, now(), &self.audit)?;
        let mut updated = snapshot.clone();
        updated.data_keys.push(record);
        updated.scopes.push(ScopeRecord {
            scope,
            root_dir_id: root_dir_id.to_string(),
            cmk: cmk_key.as_ref().map(|c| c.key_url().to_string()),
            created: now(),
            locked: false,
        });
        self.replace_store(&snapshot, updated)?;
        self.audit.record(
            AuditEvent::new(
                AuditOp::ScopeCreate,
                cmk.unwrap_or("service key only"),
                AuditResult::Ok,
            )
            .scope(scope)
            .detail(format!("root directory id {root_dir_id}")),
        );
        Ok(key)
    }

    /// Locks (`true`) or unlocks a scope. Locking flushes its cached keys at once and refuses
    /// them until unlocked; the state is kept in the key store (it survives a remount and
    /// reaches other hosts). Unlocking unwraps the scope's current key through its keys again
    /// (so a revoked or unreachable customer-managed key is reported, not hidden). Returns the
    /// cached keys flushed.
    pub fn set_scope_locked(&self, scope: u32, locked: bool) -> Result<usize, KeyError> {
        {
            let _change = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
            let _hosts = self.lock_shared_store()?;
            let snapshot = self.store_snapshot();
            let Some(rec) = snapshot.scope(scope) else {
                return Err(KeyError::NoProvider(format!(
                    "no key scope {scope} (the volume root, scope 0, cannot be locked)"
                )));
            };
            if rec.locked != locked {
                let mut updated = snapshot.clone();
                if let Some(r) = updated.scopes.iter_mut().find(|s| s.scope == scope) {
                    r.locked = locked;
                }
                self.replace_store(&snapshot, updated)?;
            }
        }
        self.refresh_denied();
        let flushed = if locked {
            self.cache.flush_where(|r| r.scope == scope)
        } else {
            0
        };
        let op = if locked {
            AuditOp::ScopeLock
        } else {
            AuditOp::ScopeUnlock
        };
        let target = self
            .store_snapshot()
            .scope_cmk(scope)
            .unwrap_or("service key only")
            .to_string();
        if !locked {
            let current = self.current(scope)?;
            if let Err(e) = self.data_key(current) {
                self.audit.record(
                    AuditEvent::new(op, target, AuditResult::Error)
                        .scope(scope)
                        .detail(e.to_string()),
                );
                return Err(e);
            }
        }
        self.audit.record(
            AuditEvent::new(op, target, AuditResult::Ok)
                .scope(scope)
                .detail(format!("{flushed} cached data keys flushed")),
        );
        Ok(flushed)
    }

    /// Every scope, the volume's own (0) first.
    pub fn scope_summaries(&self) -> Vec<ScopeSummary> {
        let store = self.store_snapshot();
        let cached = self.cache.cached_keys();
        let denied = self
            .denied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut records: Vec<ScopeRecord> = vec![ScopeRecord {
            scope: 0,
            root_dir_id: String::new(),
            cmk: store.cmk.clone(),
            created: 0,
            locked: false,
        }];
        records.extend(store.scopes.iter().cloned());
        records
            .into_iter()
            .map(|r| {
                let mut epochs: Vec<u32> = store
                    .data_keys
                    .iter()
                    .filter(|k| k.scope == r.scope)
                    .map(|k| k.epoch)
                    .collect();
                epochs.sort();
                let state = if r.locked {
                    "locked"
                } else if denied.contains_key(&r.scope) {
                    "revoked"
                } else {
                    "usable"
                };
                ScopeSummary {
                    scope: r.scope,
                    cmk_versions: r
                        .cmk
                        .as_deref()
                        .map(|u| self.versions_in_use(u))
                        .unwrap_or_default(),
                    root_dir_id: r.root_dir_id,
                    cmk: r.cmk,
                    state: state.into(),
                    detail: denied.get(&r.scope).cloned(),
                    current_epoch: epochs.last().copied(),
                    epochs,
                    cached_keys: cached.iter().filter(|k| k.scope == r.scope).count(),
                    created: r.created,
                }
            })
            .collect()
    }
}
