//! The daemon's answers to control-socket requests: status, cache flush, key check/rotate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::control::ControlHandler;
use crate::fs::FsStats;
use crate::keys::RevocationWatcher;
use crate::volume::Volume;

pub struct DaemonControl {
    pub volume: Arc<Volume>,
    pub stats: Arc<FsStats>,
    pub mountpoint: PathBuf,
    pub name: Option<String>,
    pub started: Instant,
    pub watcher: Arc<RevocationWatcher>,
    /// The kernel caches to drop when a scope is locked or made.
    pub events: Arc<super::key_events::KeyEvents>,
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DaemonControl {
    fn cmk_state(&self) -> String {
        if let Some(r) = self.volume.keys().revoked_reason() {
            return format!("revoked: {r}");
        }
        let last = self.watcher.last_report();
        match last.state.as_str() {
            "none" => "not checked yet".into(),
            other => other.to_string(),
        }
    }

    fn key_scopes(&self) -> Value {
        Value::Array(
            self.volume
                .keys()
                .scope_summaries()
                .into_iter()
                .map(|s| {
                    let state = if s.scope == 0 {
                        match &s.cmk {
                            None => "none".to_string(),
                            Some(_) => self.cmk_state(),
                        }
                    } else {
                        let unreachable = s
                            .cmk
                            .as_deref()
                            .and_then(|u| self.watcher.report_of(u))
                            .is_some_and(|r| r.state == "unreachable");
                        match s.state.as_str() {
                            "usable" if unreachable => "unreachable".to_string(),
                            "usable" if s.cmk.is_none() => "none".to_string(),
                            "usable" => "enabled".to_string(),
                            other => other.to_string(),
                        }
                    };
                    json!({
                        "scope": s.scope,
                        "current_epoch": s.current_epoch,
                        "data_keys": s.epochs.len(),
                        "protection": if s.cmk.is_none() { "service-managed key" } else { "service-managed key + customer-managed key" },
                        "cmk_ids": s.cmk_versions,
                        "cmk_state": state,
                        "cached_keys": s.cached_keys,
                    })
                })
                .collect(),
        )
    }
}

impl ControlHandler for DaemonControl {
    fn scope_create(&self, path: &str, cmk: Option<&str>) -> Result<Value, String> {
        self.create_scope(path, cmk)
    }

    fn scope_list(&self) -> Result<Value, String> {
        self.list_scopes()
    }

    fn scope_lock(&self, path: &str, locked: bool) -> Result<Value, String> {
        self.lock_scope(path, locked)
    }

    fn scope_set_cmk(&self, path: &str, cmk: Option<&str>) -> Result<Value, String> {
        self.set_scope_cmk(path, cmk)
    }

    fn status(&self) -> Value {
        let cache = self.volume.keys().cache().stats();
        json!({
            "name": self.name,
            "mountpoint": self.mountpoint,
            "backing": self.volume.backing(),
            "volume_id": self.volume.config().volume_id,
            "format": self.volume.config().format,
            "block_size": self.volume.config().block_size,
            "name_cipher": self.volume.config().name_cipher,
            "crypto_module": crate::crypto::module_info(),
            "read_only": self.volume.read_only(),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "key_scopes": self.key_scopes(),
            "last_key_check": if self.volume.keys().cmk().is_some() { serde_json::to_value(self.watcher.last_report()).unwrap_or(Value::Null) } else { Value::Null },
            "cache": cache,
            "open_files": self.stats.open_files.load(Ordering::Relaxed),
            "bytes_read": self.stats.bytes_read.load(Ordering::Relaxed),
            "bytes_written": self.stats.bytes_written.load(Ordering::Relaxed),
            "failed_requests": self.stats.requests_failed.load(Ordering::Relaxed),
            "denied_requests": self.stats.requests_denied.load(Ordering::Relaxed),
            "metadata_repairs": self.volume.metadata_repairs(),
            "metadata_damaged": self.volume.metadata_events().iter().filter(|e| !e.repaired).count(),
            "shared": self.volume.shared(),
            "hosts": if self.volume.shared() { serde_json::to_value(crate::volume::list_hosts(self.volume.backing()).unwrap_or_default()).unwrap_or(Value::Null) } else { Value::Null },
        })
    }

    fn cache_flush(&self) -> Result<Value, String> {
        let n = self.volume.keys().flush_cache("cmkfs cache flush");
        self.volume.forget_open_file_keys();
        tracing::info!(flushed = n, "data-key cache flushed on request");
        Ok(json!({ "flushed": n }))
    }

    fn key_check(&self) -> Result<Value, String> {
        let scope_keys: Vec<String> = self
            .volume
            .keys()
            .cmk_urls()
            .into_iter()
            .filter(|u| self.volume.keys().cmk().is_none_or(|c| c.key_url() != u))
            .collect();
        let scope_reports = |watcher: &crate::keys::RevocationWatcher| -> Vec<Value> {
            scope_keys
                .iter()
                .filter_map(|u| watcher.report_of(u))
                .map(|r| json!({ "key": r.key_url, "state": r.state, "detail": r.detail, "latest_version": r.latest_version, "versions_in_use": r.versions_in_use, "scope_key": true }))
                .collect()
        };
        if let Some(cmk) = self.volume.keys().cmk() {
            let report = self.watcher.check_now();
            let state = report.state.clone();
            let mut keys = vec![
                json!({ "key": "service-managed key", "state": "ok" }),
                json!({ "key": cmk.key_url(), "state": state, "detail": report.detail, "latest_version": report.latest_version, "versions_in_use": report.versions_in_use }),
            ];
            keys.extend(scope_reports(&self.watcher));
            return Ok(json!({ "checked_at": report.checked_at, "keys": keys }));
        }
        if !scope_keys.is_empty() {
            self.watcher.check_now();
        }
        let current = self.volume.keys().current(0).map_err(|e| e.to_string())?;
        let record = self
            .volume
            .keys()
            .store_snapshot()
            .find(current)
            .cloned()
            .ok_or_else(|| format!("data key {current} is missing from the key store"))?;
        self.volume
            .keys()
            .unwrap_record(&record)
            .map_err(|e| e.to_string())?;
        let mut keys = vec![json!({ "key": "service-managed key", "state": "ok" })];
        keys.extend(scope_reports(&self.watcher));
        Ok(json!({ "checked_at": now(), "keys": keys }))
    }

    fn reencrypt(
        &self,
        path: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Value, String> {
        tracing::info!(
            path = path.unwrap_or("/"),
            "re-encryption to the newest data key started"
        );
        let report = match path {
            None => self.volume.reencrypt_all(progress),
            Some(p) => {
                let (_, dir) = self.resolve(p)?;
                let shown = format!("/{}/", p.trim_matches('/'));
                self.volume.reencrypt_under(&dir, &shown, progress)
            }
        }
        .map_err(|e| e.to_string())?;
        tracing::info!(
            reencrypted = report.reencrypted,
            skipped = report.skipped.len(),
            "re-encryption finished"
        );
        Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
    }

    fn key_rotate(&self, data_key: bool, path: Option<&str>) -> Result<Value, String> {
        let scope = match path {
            Some(p) => self.resolve(p)?.1.scope(),
            None => 0,
        };
        if scope != 0 {
            return self.rotate_scope(scope, data_key);
        }
        if !data_key {
            if self.volume.keys().cmk().is_none() {
                return Ok(
                    json!({ "rotated": false, "reason": "no customer-managed key is configured; use --data-key to start a new data-key epoch" }),
                );
            }
            let n = self.volume.keys().rewrap_cmk().map_err(|e| e.to_string())?;
            let versions = self.volume.keys().cmk_versions_in_use();
            tracing::info!(
                records = n,
                "data keys re-wrapped to the newest customer-managed key version on request"
            );
            return Ok(
                json!({ "rotated": n > 0, "rewrapped": n, "versions_in_use": versions,
                "reason": if n == 0 { "already on the newest key version" } else { "re-wrapped" } }),
            );
        }
        let next = self
            .volume
            .keys()
            .rotate_data_key(0, now())
            .map_err(|e| e.to_string())?;
        tracing::info!(
            scope = next.scope,
            epoch = next.epoch,
            "new data-key epoch for new files"
        );
        Ok(json!({ "rotated": true, "scope": next.scope, "epoch": next.epoch }))
    }
}
