//! The service-managed key: 32 random bytes in a file outside the backing directory
//! (default `/var/lib/cmkfs/keys/<volume id>.key`, or the user's data dir when not root).
//! It wraps data keys with AES-256 key wrap.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{SecretKey, key_fingerprint, unwrap_key, wrap_key};
use crate::format::WrapperId;

use super::{KeyError, KeyProvider};

pub struct ServiceKey {
    key: SecretKey,
    path: PathBuf,
    fingerprint: String,
}

/// Where `cmkfs init` puts the service key of volume `volume_id` when not told otherwise.
pub fn default_service_key_path(volume_id: &str) -> PathBuf {
    let base = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/cmkfs/keys")
    } else if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("cmkfs/keys")
    } else if let Some(h) = std::env::var_os("HOME") {
        PathBuf::from(h).join(".local/share/cmkfs/keys")
    } else {
        PathBuf::from(".")
    };
    base.join(format!("{volume_id}.key"))
}

impl ServiceKey {
    /// Generates a key and writes it to `path` (mode 0600; refuses to overwrite a file).
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::ServiceKey {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let key = SecretKey::generate()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("cannot create: {e}")))?;
        f.write_all(key.expose())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        Ok(Self::from_key(key, path))
    }

    /// Loads a key file: exactly 32 bytes, not readable by group or others.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::ServiceKey {
            path: path.to_path_buf(),
            reason,
        };
        let mut f = fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let meta = f.metadata().map_err(|e| err(format!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        if meta.permissions().mode() & 0o077 != 0 && !path.starts_with(credentials_dir()) {
            return Err(err(format!(
                "mode {:o} lets others read it; run chmod 600",
                meta.permissions().mode() & 0o777
            )));
        }
        if meta.len() != SecretKey::LEN as u64 {
            return Err(err(format!(
                "is {} bytes, a service key is exactly 32",
                meta.len()
            )));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(33));
        (&mut f)
            .take(33)
            .read_to_end(&mut buf)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if buf.len() != SecretKey::LEN {
            return Err(err(format!(
                "is {} bytes, a service key is exactly 32",
                buf.len()
            )));
        }
        let key = SecretKey::from_slice(&buf)?;
        Ok(Self::from_key(key, path))
    }

    fn from_key(key: SecretKey, path: &Path) -> Self {
        let fingerprint = key_fingerprint(&key);
        ServiceKey {
            key,
            path: path.to_path_buf(),
            fingerprint,
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn credentials_dir() -> PathBuf {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/nonexistent"))
}

impl KeyProvider for ServiceKey {
    fn handles(&self, id: &WrapperId) -> bool {
        matches!(id, WrapperId::Service { .. })
    }

    fn wrap(&self, plain: &[u8]) -> Result<(Vec<u8>, WrapperId), KeyError> {
        let dk = SecretKey::from_slice(plain)?;
        let wrapped = wrap_key(&self.key, &dk)?;
        Ok((
            wrapped.to_vec(),
            WrapperId::Service {
                fingerprint: self.fingerprint.clone(),
            },
        ))
    }

    fn unwrap(&self, id: &WrapperId, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let WrapperId::Service { fingerprint } = id else {
            return Err(KeyError::NoProvider(format!("{id:?}")));
        };
        if *fingerprint != self.fingerprint {
            return Err(KeyError::WrongServiceKey {
                path: self.path.clone(),
                expected: fingerprint.clone(),
                actual: self.fingerprint.clone(),
            });
        }
        let dk = unwrap_key(&self.key, wrapped)?;
        Ok(Zeroizing::new(dk.expose().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/k.key");
        let sk = ServiceKey::create(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = ServiceKey::load(&p).unwrap();
        assert_eq!(sk.fingerprint(), again.fingerprint());
        assert!(ServiceKey::create(&p).is_err(), "must not overwrite");
        let short = dir.path().join("short");
        fs::write(&short, [0u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let e = ServiceKey::load(&short).err().unwrap().to_string();
        assert!(e.contains("31 bytes") && e.contains("short"), "{e}");
        let open = dir.path().join("open");
        fs::write(&open, [0u8; 32]).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            ServiceKey::load(&open)
                .err()
                .unwrap()
                .to_string()
                .contains("chmod 600")
        );
    }

    #[test]
    fn wrap_unwrap_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServiceKey::create(&dir.path().join("a")).unwrap();
        let b = ServiceKey::create(&dir.path().join("b")).unwrap();
        let dk = [5u8; 32];
        let (w, id) = a.wrap(&dk).unwrap();
        assert_eq!(&a.unwrap(&id, &w).unwrap()[..], &dk);
        assert!(matches!(
            b.unwrap(&id, &w),
            Err(KeyError::WrongServiceKey { .. })
        ));
    }
}
