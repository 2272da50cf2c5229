//! Reading and atomically replacing `keystore.json` (temp file, fsync, rename, fsync dir).

use std::path::Path;

use crate::format::KeyStore;

use super::KeyError;

pub fn load_key_store(path: &Path) -> Result<KeyStore, KeyError> {
    let err = |reason: String| KeyError::Store {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    KeyStore::parse(&bytes).map_err(|e| err(e.to_string()))
}

pub fn save_key_store(path: &Path, store: &KeyStore) -> Result<(), KeyError> {
    crate::atomic_file::write_atomic(path, &store.to_json(), 0o600).map_err(|e| KeyError::Store {
        path: path.to_path_buf(),
        reason: format!("cannot write: {e}"),
    })
}
