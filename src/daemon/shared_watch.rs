//! Shared mode: notices key-store changes made by other hosts' daemons (a data-key rotation,
//! a re-wrap to a new version of the customer-managed key, `key set-cmk`) within one check
//! interval, and takes them in without a remount: the new store replaces the old, cached data
//! keys are flushed and open files derive their keys again through the new wraps.

use std::sync::Arc;
use std::time::Duration;

use crate::volume::Volume;

/// Checks the key store's generation every `every` on a thread of its own.
pub fn spawn(volume: Arc<Volume>, every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("key-store-watch".into())
        .spawn(move || {
            let mut seen = volume.keys().store_generation();
            loop {
                std::thread::sleep(every);
                let generation = volume.keys().store_generation();
                if generation == seen {
                    continue;
                }
                match volume.keys().reload_store() {
                    Ok(changed) => {
                        seen = generation;
                        if changed {
                            volume.forget_open_file_keys();
                            tracing::info!(
                                generation,
                                "took in the key store as changed by another host"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cannot read the key store changed by another host: {e}")
                    }
                }
            }
        })
        .map(|_| ())
}
