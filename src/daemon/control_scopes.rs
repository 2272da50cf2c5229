//! The daemon's answers to the key-scope requests of the control socket: create, list,
//! lock/unlock, set-cmk, and rotation of one scope's keys. Paths are relative to the mount.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::control_impl::DaemonControl;
use crate::volume::Dir;

impl DaemonControl {
    /// The directory `path` of the mount: (whether it is the root, the directory).
    pub(super) fn resolve(&self, path: &str) -> Result<(bool, Dir), String> {
        let (parent, dir) = self
            .volume
            .open_dir_path(Path::new(path))
            .map_err(|e| format!("{path}: {e}"))?;
        Ok((parent.is_none(), dir))
    }

    /// Drops what the kernel and open files hold of `scope`'s keys.
    fn forget_scope(&self, scope: u32) -> usize {
        self.volume.forget_open_file_keys_in(&[scope]);
        self.events
            .kernel
            .get()
            .map(|k| k.invalidate_scopes(&[scope]))
            .unwrap_or(0)
    }

    pub(super) fn create_scope(&self, path: &str, cmk: Option<&str>) -> Result<Value, String> {
        let (is_root, dir) = self.resolve(path)?;
        let backing_ino = nix::sys::stat::fstat(dir.fd().as_fd())
            .map_err(|e| e.to_string())?
            .st_ino;
        let made = self
            .volume
            .create_scope(&dir, is_root, cmk)
            .map_err(|e| format!("{path}: {e}"))?;
        let scope = made.scope();
        if let Some(k) = self.events.kernel.get() {
            k.replace_dir(backing_ino, Arc::new(made));
        }
        tracing::info!(
            path,
            scope,
            cmk = cmk.unwrap_or("service key only"),
            "key scope created"
        );
        Ok(json!({ "scope": scope, "path": path, "cmk": cmk, "epoch": 0 }))
    }

    pub(super) fn list_scopes(&self) -> Result<Value, String> {
        let tree = self.volume.scope_tree().map_err(|e| e.to_string())?;
        let scopes: Vec<Value> = self
            .volume
            .keys()
            .scope_summaries()
            .into_iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                let unreachable = s
                    .cmk
                    .as_deref()
                    .and_then(|u| self.watcher.report_of(u))
                    .filter(|r| r.state == "unreachable");
                if s.state == "usable"
                    && let Some(r) = unreachable
                {
                    v["state"] = json!("unreachable");
                    v["detail"] = json!(r.detail);
                }
                v["root"] = json!(tree.roots.get(&s.scope).map(|p| p.display().to_string()));
                v["files"] = json!(tree.files.get(&s.scope));
                v
            })
            .collect();
        Ok(json!({ "scopes": scopes, "watcher": self.watcher.watch_stats() }))
    }

    pub(super) fn lock_scope(&self, path: &str, locked: bool) -> Result<Value, String> {
        let (_, dir) = self.resolve(path)?;
        let scope = dir.scope();
        if scope == 0 {
            return Err(format!(
                "{path} is in the volume's own key scope (0), which cannot be locked; lock a scope made with cmkfs scope create"
            ));
        }
        let result = self.volume.keys().set_scope_locked(scope, locked);
        let inodes = self.forget_scope(scope);
        let flushed = result.map_err(|e| format!("key scope {scope}: {e}"))?;
        tracing::warn!(
            path,
            scope,
            flushed_keys = flushed,
            invalidated_inodes = inodes,
            "key scope {}",
            if locked { "locked" } else { "unlocked" }
        );
        Ok(json!({ "scope": scope, "locked": locked, "flushed": flushed }))
    }

    pub(super) fn set_scope_cmk(&self, path: &str, cmk: Option<&str>) -> Result<Value, String> {
        let (_, dir) = self.resolve(path)?;
        let scope = dir.scope();
        if scope == 0 {
            return Err(format!(
                "{path} is in the volume's own key scope (0): change its key offline with cmkfs key set-cmk BACKING"
            ));
        }
        let keys = self.volume.keys();
        let key = match cmk {
            Some(url) => Some(keys.cmk_for(url).map_err(|e| e.to_string())?),
            None => None,
        };
        let n = keys
            .set_cmk_layer_for(scope, key.as_ref())
            .map_err(|e| format!("key scope {scope}: {e}"))?;
        Ok(json!({ "scope": scope, "cmk": cmk, "rewrapped": n }))
    }

    /// `key rotate` of a scope other than the volume's: a new data-key epoch, or a re-wrap
    /// to the newest version of the scope's customer-managed key.
    pub(super) fn rotate_scope(&self, scope: u32, data_key: bool) -> Result<Value, String> {
        let keys = self.volume.keys();
        if data_key {
            let next = keys
                .rotate_data_key(scope, super::control_impl::now())
                .map_err(|e| e.to_string())?;
            tracing::info!(
                scope,
                epoch = next.epoch,
                "new data-key epoch for new files"
            );
            return Ok(json!({ "rotated": true, "scope": scope, "epoch": next.epoch }));
        }
        let Some(url) = keys.store_snapshot().scope_cmk(scope).map(str::to_string) else {
            return Ok(
                json!({ "rotated": false, "scope": scope, "reason": "this key scope has no customer-managed key; use --data-key to start a new data-key epoch" }),
            );
        };
        let cmk = keys.cmk_for(&url).map_err(|e| e.to_string())?;
        let n = keys.rewrap_key(&cmk).map_err(|e| e.to_string())?;
        Ok(
            json!({ "rotated": n > 0, "scope": scope, "rewrapped": n, "versions_in_use": keys.versions_in_use(&url),
            "reason": if n == 0 { "already on the newest key version" } else { "re-wrapped" } }),
        )
    }
}
