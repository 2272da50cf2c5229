//! Shared mode: notices key-store changes made by other hosts' daemons (a data-key rotation,
//! a re-wrap to a new version of the customer-managed key, `key set-cmk`) within one check
//! interval, and takes them in without a remount: the new store replaces the old, cached data
//! keys are flushed and open files derive their keys again through the new wraps. Key scopes
//! made elsewhere are taken in too (the directory at a new scope's root is loaded again), and
//! a scope locked elsewhere loses its kernel caches here as well.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::key_events::KeyEvents;
use crate::volume::Volume;

/// After the key store changed: directories that became scope roots elsewhere are loaded
/// again, and the kernel caches of scopes refused now (locked elsewhere) are dropped.
fn take_in_scopes(volume: &Volume, events: &KeyEvents, denied_before: &[u32]) {
    let Some(kernel) = events.kernel.get() else {
        return;
    };
    let roots: HashMap<String, u32> = volume
        .keys()
        .store_snapshot()
        .scopes
        .iter()
        .map(|s| (s.root_dir_id.clone(), s.scope))
        .collect();
    let reloaded = kernel.reload_dirs(
        |d| roots.get(&d.dir_id_hex()).is_some_and(|s| *s != d.scope()),
        |d| volume.reload_dir(d).ok(),
    );
    let newly: Vec<u32> = volume
        .keys()
        .denied_scopes()
        .into_iter()
        .filter(|s| !denied_before.contains(s))
        .collect();
    if !newly.is_empty() {
        volume.forget_open_file_keys_in(&newly);
        kernel.invalidate_scopes(&newly);
    }
    if reloaded > 0 || !newly.is_empty() {
        tracing::info!(
            reloaded_dirs = reloaded,
            refused_scopes = ?newly,
            "took in key scopes changed by another host"
        );
    }
}

/// Checks the key store's generation every `every` on a thread of its own.
pub fn spawn(volume: Arc<Volume>, events: Arc<KeyEvents>, every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("key-store-watch".into())
        .spawn(move || {
            let mut seen = volume.keys().store_generation();
            // Refused scopes as last handled here (a reload elsewhere, e.g. while opening a
            // directory, may already have taken the store in).
            let mut denied_seen = volume.keys().denied_scopes();
            loop {
                std::thread::sleep(every);
                let generation = volume.keys().store_generation();
                if generation == seen {
                    continue;
                }
                match volume.keys().reload_store() {
                    Ok(changed) => {
                        seen = generation;
                        volume.forget_open_file_keys();
                        if changed {
                            tracing::info!(
                                generation,
                                "took in the key store as changed by another host"
                            );
                        }
                        take_in_scopes(&volume, &events, &denied_seen);
                        denied_seen = volume.keys().denied_scopes();
                    }
                    Err(e) => {
                        tracing::warn!("cannot read the key store changed by another host: {e}")
                    }
                }
            }
        })
        .map(|_| ())
}
