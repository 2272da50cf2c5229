//! Reading and replacing the key store: two sealed copies in `.cmkfs/` bound to the volume
//! id (see `meta_copies`), or the single `keystore.json` of a version-1 volume.

use std::path::{Path, PathBuf};

use crate::format::{KeyStore, META_DIR, META_FORMAT_VERSION};
use crate::meta_copies::{self, Loaded, MetaError, Record};

use super::KeyError;

/// Copy 1 of the key store as `stat` sees it (see [`KeyStoreFile::stamp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
}

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

    /// What identifies copy 1 as it is now (inode, size, change time): every save replaces
    /// it by a rename, so an unchanged stamp means an unchanged store, for the price of a
    /// `stat`. None when it cannot be read.
    pub fn stamp(&self) -> Option<StoreStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.path()).ok()?;
        Some(StoreStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
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

    /// The newest valid generation on disk: tells, cheaply, whether another host changed the
    /// store (shared mode).
    pub fn generation(&self) -> u64 {
        meta_copies::current_generation(&self.meta_dir, Record::KeyStore, &self.volume_id)
    }

    /// Shared mode: serializes the key-store changes of every host (an exclusive `flock` on
    /// `.cmkfs/keystore.lock`, which NFSv4, CephFS and GlusterFS carry between clients), held
    /// until the returned file is dropped.
    pub fn lock_changes(&self) -> Result<std::fs::File, KeyError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.meta_dir.join("keystore.lock");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.err(format!("cannot open {}: {e}", path.display())))?;
        loop {
            // SAFETY: flock on an fd we own; no pointers.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(f);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(self.err(format!("cannot lock {}: {e}", path.display())));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_every_save_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(META_DIR)).unwrap();
        let file = KeyStoreFile::new(dir.path(), "00112233445566778899aabbccddeeff");
        assert_eq!(file.stamp(), None, "no store yet");
        let mut store = KeyStore {
            format: META_FORMAT_VERSION,
            cmk: None,
            data_keys: Vec::new(),
            scopes: Vec::new(),
        };
        file.save(&store).unwrap();
        let first = file.stamp().unwrap();
        file.load(false).unwrap();
        assert_eq!(file.stamp(), Some(first), "reading leaves it alone");
        // The same length, so only the replacement itself can tell the two apart.
        store.cmk = Some("https://a.vault.azure.net/keys/k".into());
        file.save(&store).unwrap();
        let second = file.stamp().unwrap();
        store.cmk = Some("https://b.vault.azure.net/keys/k".into());
        file.save(&store).unwrap();
        assert_ne!(first, second);
        assert_ne!(second, file.stamp().unwrap());
    }
}
