//! Reading and replacing the key store: two sealed copies in `.cmkfs/` bound to the volume
//! id (see `meta_copies`), or the single `keystore.json` of a version-1 volume.

use std::path::{Path, PathBuf};

use crate::format::{KeyStore, META_DIR, META_FORMAT_VERSION};
use crate::meta_copies::{self, Loaded, MetaError, Record};

use super::KeyError;

/// Where a volume's key store lives and the volume its copies are bound to.
#[derive(Clone, Debug)]
pub struct KeyStoreFile {
    meta_dir: PathBuf,
    volume_id: String,
}

impl KeyStoreFile {
    pub fn new(backing: &Path, volume_id: &str) -> Self {
        KeyStoreFile {
            meta_dir: backing.join(META_DIR),
            volume_id: volume_id.to_string(),
        }
    }

    /// Path of copy 1 (for messages).
    pub fn path(&self) -> PathBuf {
        meta_copies::copy_path(&self.meta_dir, Record::KeyStore, 1)
    }

    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn err(&self, reason: String) -> KeyError {
        KeyError::Store {
            path: self.path(),
            reason,
        }
    }

    /// Reads the best valid copy; with `repair`, rewrites a damaged or stale other copy.
    /// The findings say which copies were damaged and what was done.
    pub fn load(&self, repair: bool) -> Result<(KeyStore, Loaded), KeyError> {
        let loaded = meta_copies::load(
            &self.meta_dir,
            Record::KeyStore,
            Some(&self.volume_id),
            repair,
        )
        .map_err(|e| match e {
            MetaError::Missing(m) | MetaError::Io(m) => self.err(m),
            MetaError::Damaged(m) => KeyError::Store {
                path: self.meta_dir.clone(),
                reason: m,
            },
        })?;
        let store = KeyStore::parse(&loaded.content).map_err(|e| {
            self.err(if loaded.legacy {
                format!(
                    "{e} (a version-1 key store, kept in one copy only): restore with `cmkfs key restore {} --from FILE`",
                    self.meta_dir.parent().unwrap_or(&self.meta_dir).display()
                )
            } else {
                format!("{e} (its checksum matches: written so by a cmkfs version with a bug?)")
            })
        })?;
        Ok((store, loaded))
    }

    /// Writes `store` as a new generation of both copies (format 2), copy 1 first.
    pub fn save(&self, store: &KeyStore) -> Result<(), KeyError> {
        let mut s = store.clone();
        s.format = META_FORMAT_VERSION;
        meta_copies::save(
            &self.meta_dir,
            Record::KeyStore,
            &self.volume_id,
            &s.to_json(),
        )
        .map(|_| ())
        .map_err(|e| self.err(format!("cannot write: {e}")))
    }
}
