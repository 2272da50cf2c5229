//! The revocation watcher: checks the customer-managed keys (the volume's and each key
//! scope's, one thread for all) on an interval and on demand.
//! Definitive refusals revoke (flush the data keys it protects, tell the listener); an
//! enabled key again restores access; a newer key version triggers a re-wrap; an outage
//! changes nothing (cached keys keep serving until their max age).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{CmkState, KeyHierarchy, Revocation};
use crate::metrics::CheckResult;

/// What the daemon does when the key's state changes (kernel caches, audit, logs).
pub trait RevocationListener: Send + Sync {
    fn revoked(&self, key_url: &str, reason: &str, what: &Revocation);
    fn restored(&self, key_url: &str);
    fn unreachable(&self, key_url: &str, why: &str, first: bool);
    fn rewrapped(&self, key_url: &str, records: usize, to: &str);
    fn checked(&self, key_url: &str, duration: Duration, state: &CmkState);
}

/// The outcome of the last check, for `cmkfs status` and `cmkfs key check`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub key_url: Option<String>,
    /// "enabled", "revoked", "unreachable" or "none".
    pub state: String,
    pub detail: Option<String>,
    pub latest_version: Option<String>,
    pub versions_in_use: Vec<String>,
    pub rewrapped: usize,
    /// Unix seconds.
    pub checked_at: u64,
}

/// What the last round of checks did, for `cmkfs status`: the Key Vault request rate the
/// watcher causes stays bounded by the keys in use, not by the scopes that exist.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchStats {
    /// Customer-managed keys the key store names (the volume's and every scope's).
    pub keys_known: usize,
    /// Keys checked in the last round: those with cached data keys, revoked or unreachable
    /// ones (a key with nothing cached has nothing to flush; its next unwrap asks the vault).
    pub keys_checked: usize,
    /// Key Vault requests made by the last round.
    pub requests: u64,
    pub duration_ms: u64,
    /// Unix seconds.
    pub at: u64,
}

pub struct RevocationWatcher {
    keys: Arc<KeyHierarchy>,
    listener: Arc<dyn RevocationListener>,
    /// The volume's own key's last report.
    last: Mutex<CheckReport>,
    /// Every key's last report, by versionless URL.
    per_key: Mutex<HashMap<String, CheckReport>>,
    round: Mutex<WatchStats>,
    /// Serializes checks (interval and on demand).
    running: Mutex<()>,
    wake: (Mutex<bool>, Condvar),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The longest pause between two keys' checks in one round (spreads a round's requests).
const MAX_GAP: Duration = Duration::from_millis(50);

impl RevocationWatcher {
    pub fn new(keys: Arc<KeyHierarchy>, listener: Arc<dyn RevocationListener>) -> Arc<Self> {
        Arc::new(RevocationWatcher {
            keys,
            listener,
            last: Mutex::new(CheckReport {
                state: "none".into(),
                ..Default::default()
            }),
            per_key: Mutex::new(HashMap::new()),
            round: Mutex::new(WatchStats::default()),
            running: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
        })
    }

    pub fn last_report(&self) -> CheckReport {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last report of the key at versionless `url`, if it was checked.
    pub fn report_of(&self, url: &str) -> Option<CheckReport> {
        self.per_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    pub fn watch_stats(&self) -> WatchStats {
        self.round.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks every key now (on demand) and acts on the answers; returns the volume's own
    /// key's report ("none" without one).
    pub fn check_now(&self) -> CheckReport {
        self.round_of_checks(true, Duration::ZERO)
    }

    /// One round: every key (`all`) or the keys in use, `gap` at most between two checks.
    fn round_of_checks(&self, all: bool, gap: Duration) -> CheckReport {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let requests_before = crate::metrics::global().key_vault_requests_total();
        let urls = self.keys.cmk_urls();
        let volume_url = self.keys.cmk().map(|c| c.key_url().to_string());
        let cached = self.keys.cache().cached_keys();
        let store = self.keys.store_snapshot();
        let in_use = |url: &String| {
            Some(url) == volume_url.as_ref()
                || self.keys.key_revoked(url).is_some()
                || self
                    .report_of(url)
                    .is_some_and(|r| r.state == "unreachable")
                || cached
                    .iter()
                    .any(|k| store.scope_cmk(k.scope) == Some(url.as_str()))
        };
        let todo: Vec<&String> = urls.iter().filter(|u| all || in_use(u)).collect();
        for (i, url) in todo.iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                std::thread::sleep(gap);
            }
            let report = self.check_key(url);
            if Some(*url) == volume_url.as_ref() {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = report.clone();
            }
            self.per_key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(url.to_string(), report);
        }
        *self.round.lock().unwrap_or_else(|p| p.into_inner()) = WatchStats {
            keys_known: urls.len(),
            keys_checked: todo.len(),
            requests: crate::metrics::global()
                .key_vault_requests_total()
                .saturating_sub(requests_before),
            duration_ms: started.elapsed().as_millis() as u64,
            at: now(),
        };
        match volume_url {
            Some(_) => self.last_report(),
            None => CheckReport {
                state: "none".into(),
                checked_at: now(),
                ..Default::default()
            },
        }
    }

    /// Checks the key at versionless `url` and acts on the answer.
    fn check_key(&self, url: &str) -> CheckReport {
        let in_use = self.keys.versions_in_use(url);
        let was_unreachable = self
            .report_of(url)
            .is_some_and(|r| r.state == "unreachable");
        let started = std::time::Instant::now();
        let state = match self.keys.cmk_for(url) {
            Ok(cmk) => cmk.check(&in_use),
            Err(e) => CmkState::Unreachable(e.to_string()),
        };
        crate::metrics::global().revocation_check(match &state {
            CmkState::Enabled { .. } => CheckResult::enabled,
            CmkState::Revoked(_) => CheckResult::revoked,
            CmkState::Unreachable(_) => CheckResult::unreachable,
        });
        self.listener.checked(url, started.elapsed(), &state);
        let mut report = CheckReport {
            key_url: Some(url.to_string()),
            versions_in_use: in_use.clone(),
            checked_at: now(),
            ..Default::default()
        };
        match &state {
            CmkState::Revoked(reason) => {
                if self.keys.key_revoked(url).is_none() {
                    let r = self.keys.revoke(url, reason);
                    self.listener.revoked(url, reason, &r);
                }
                report.state = "revoked".into();
                report.detail = Some(reason.clone());
            }
            CmkState::Enabled { latest_version } => {
                if self.keys.key_revoked(url).is_some() {
                    self.keys.restore(url);
                    self.listener.restored(url);
                }
                report.state = "enabled".into();
                report.latest_version = Some(latest_version.clone());
                if in_use.iter().any(|v| v != latest_version)
                    && let Ok(cmk) = self.keys.cmk_for(url)
                {
                    match self.keys.rewrap_key(&cmk) {
                        Ok(n) => {
                            report.rewrapped = n;
                            report.versions_in_use = self.keys.versions_in_use(url);
                            if n > 0 {
                                self.listener.rewrapped(url, n, latest_version);
                            }
                        }
                        Err(e) => {
                            report.detail = Some(format!("re-wrap to {latest_version} failed: {e}"))
                        }
                    }
                }
            }
            CmkState::Unreachable(why) => {
                self.listener.unreachable(url, why, !was_unreachable);
                report.state = "unreachable".into();
                report.detail = Some(why.clone());
            }
        }
        report
    }

    /// Checks every `interval` on a thread of its own until the process exits.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("revocation-watcher".into())
            .spawn(move || {
                loop {
                    if me.watch_stats().at == 0 {
                        me.round_of_checks(false, MAX_GAP);
                    }
                    let (lock, cv) = &me.wake;
                    let woken = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (mut woken, _) = cv
                        .wait_timeout(woken, interval)
                        .unwrap_or_else(|p| p.into_inner());
                    *woken = false;
                    drop(woken);
                    let keys = me.keys.cmk_urls().len().max(1) as u32;
                    me.round_of_checks(false, MAX_GAP.min(interval / keys));
                }
            })?;
        Ok(())
    }
}
