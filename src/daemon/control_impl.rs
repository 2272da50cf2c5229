//! The daemon's answers to control-socket requests: status, cache flush, key check/rotate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::control::ControlHandler;
use crate::format::WrapperId;
use crate::fs::FsStats;
use crate::volume::Volume;

pub struct DaemonControl {
    pub volume: Arc<Volume>,
    pub stats: Arc<FsStats>,
    pub mountpoint: PathBuf,
    pub name: Option<String>,
    pub started: Instant,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl DaemonControl {
    fn key_scopes(&self) -> Value {
        let store = self.volume.keys().store_snapshot();
        let mut scopes: Vec<u32> = store.data_keys.iter().map(|k| k.scope).collect();
        scopes.sort();
        scopes.dedup();
        Value::Array(
            scopes
                .into_iter()
                .map(|s| {
                    let keys: Vec<&crate::format::WrappedDataKey> = store.data_keys.iter().filter(|k| k.scope == s).collect();
                    let current = store.current(s).map(|r| r.epoch);
                    let cmks: Vec<String> = keys
                        .iter()
                        .flat_map(|k| k.wrapped_by.iter())
                        .filter_map(|w| match w {
                            WrapperId::Cmk { key_id, .. } => Some(key_id.clone()),
                            WrapperId::Service { .. } => None,
                        })
                        .collect();
                    json!({
                        "scope": s,
                        "current_epoch": current,
                        "data_keys": keys.len(),
                        "protection": if cmks.is_empty() { "service-managed key" } else { "service-managed key + customer-managed key" },
                        "cmk_ids": cmks,
                        "cmk_state": if cmks.is_empty() { "none" } else { "unknown" },
                    })
                })
                .collect(),
        )
    }
}

impl ControlHandler for DaemonControl {
    fn status(&self) -> Value {
        let cache = self.volume.keys().cache().stats();
        json!({
            "name": self.name,
            "mountpoint": self.mountpoint,
            "backing": self.volume.backing(),
            "volume_id": self.volume.config().volume_id,
            "format": self.volume.config().format,
            "block_size": self.volume.config().block_size,
            "read_only": self.volume.read_only(),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "key_scopes": self.key_scopes(),
            "last_key_check": Value::Null,
            "cache": cache,
            "open_files": self.stats.open_files.load(Ordering::Relaxed),
            "bytes_read": self.stats.bytes_read.load(Ordering::Relaxed),
            "bytes_written": self.stats.bytes_written.load(Ordering::Relaxed),
            "failed_requests": self.stats.requests_failed.load(Ordering::Relaxed),
        })
    }

    fn cache_flush(&self) -> Result<Value, String> {
        let n = self.volume.keys().cache().flush();
        tracing::info!(flushed = n, "data-key cache flushed on request");
        Ok(json!({ "flushed": n }))
    }

    fn key_check(&self) -> Result<Value, String> {
        let current = self.volume.keys().current(0).map_err(|e| e.to_string())?;
        let record = self
            .volume
            .keys()
            .store_snapshot()
            .find(current)
            .cloned()
            .ok_or_else(|| format!("data key {current} is missing from the key store"))?;
        self.volume.keys().unwrap_record(&record).map_err(|e| e.to_string())?;
        Ok(json!({ "checked_at": now(), "keys": [ { "key": "service-managed key", "state": "ok" } ] }))
    }

    fn key_rotate(&self, data_key: bool) -> Result<Value, String> {
        if !data_key {
            return Ok(json!({ "rotated": false, "reason": "no customer-managed key is configured; use --data-key to start a new data-key epoch" }));
        }
        let next = self.volume.keys().rotate_data_key(0, now()).map_err(|e| e.to_string())?;
        tracing::info!(scope = next.scope, epoch = next.epoch, "new data-key epoch for new files");
        Ok(json!({ "rotated": true, "scope": next.scope, "epoch": next.epoch }))
    }
}
