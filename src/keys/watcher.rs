//! The revocation watcher: checks the customer-managed key on an interval and on demand.
//! Definitive refusals revoke (flush the data keys it protects, tell the listener); an
//! enabled key again restores access; a newer key version triggers a re-wrap; an outage
//! changes nothing (cached keys keep serving until their max age).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{CmkState, KeyHierarchy};
use crate::metrics::CheckResult;

/// What the daemon does when the key's state changes (kernel caches, audit, logs).
pub trait RevocationListener: Send + Sync {
    fn revoked(&self, key_url: &str, reason: &str, flushed: usize);
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

pub struct RevocationWatcher {
    keys: Arc<KeyHierarchy>,
    listener: Arc<dyn RevocationListener>,
    last: Mutex<CheckReport>,
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

impl RevocationWatcher {
    pub fn new(keys: Arc<KeyHierarchy>, listener: Arc<dyn RevocationListener>) -> Arc<Self> {
        Arc::new(RevocationWatcher {
            keys,
            listener,
            last: Mutex::new(CheckReport {
                state: "none".into(),
                ..Default::default()
            }),
            running: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
        })
    }

    pub fn last_report(&self) -> CheckReport {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks now and acts on the answer; returns what was found.
    pub fn check_now(&self) -> CheckReport {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cmk) = self.keys.cmk().cloned() else {
            return CheckReport {
                state: "none".into(),
                checked_at: now(),
                ..Default::default()
            };
        };
        let url = cmk.key_url().to_string();
        let in_use = self.keys.cmk_versions_in_use();
        let started = std::time::Instant::now();
        let state = cmk.check(&in_use);
        crate::metrics::global().revocation_check(match &state {
            CmkState::Enabled { .. } => CheckResult::enabled,
            CmkState::Revoked(_) => CheckResult::revoked,
            CmkState::Unreachable(_) => CheckResult::unreachable,
        });
        self.listener.checked(&url, started.elapsed(), &state);
        let was_unreachable = self.last_report().state == "unreachable";
        let mut report = CheckReport {
            key_url: Some(url.clone()),
            versions_in_use: in_use.clone(),
            checked_at: now(),
            ..Default::default()
        };
        match &state {
            CmkState::Revoked(reason) => {
                if self.keys.revoked_reason().is_none() {
                    let flushed = self.keys.revoke(reason);
                    self.listener.revoked(&url, reason, flushed);
                }
                report.state = "revoked".into();
                report.detail = Some(reason.clone());
            }
            CmkState::Enabled { latest_version } => {
                if self.keys.revoked_reason().is_some() {
                    self.keys.restore();
                    self.listener.restored(&url);
                }
                report.state = "enabled".into();
                report.latest_version = Some(latest_version.clone());
                if in_use.iter().any(|v| v != latest_version) {
                    match self.keys.rewrap_cmk() {
                        Ok(n) => {
                            report.rewrapped = n;
                            report.versions_in_use = self.keys.cmk_versions_in_use();
                            if n > 0 {
                                self.listener.rewrapped(&url, n, latest_version);
                            }
                        }
                        Err(e) => {
                            report.detail = Some(format!("re-wrap to {latest_version} failed: {e}"))
                        }
                    }
                }
            }
            CmkState::Unreachable(why) => {
                self.listener.unreachable(&url, why, !was_unreachable);
                report.state = "unreachable".into();
                report.detail = Some(why.clone());
            }
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = report.clone();
        report
    }

    /// Checks every `interval` on a thread of its own until the process exits.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("revocation-watcher".into())
            .spawn(move || {
                loop {
                    if me.last_report().checked_at == 0 {
                        me.check_now();
                    }
                    let (lock, cv) = &me.wake;
                    let woken = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (mut woken, _) = cv
                        .wait_timeout(woken, interval)
                        .unwrap_or_else(|p| p.into_inner());
                    *woken = false;
                    drop(woken);
                    me.check_now();
                }
            })?;
        Ok(())
    }
}
