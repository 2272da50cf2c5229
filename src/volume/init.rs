//! Creating a volume: the metadata directory, `volume.json`, a fresh service key outside the
//! backing directory, the first data key wrapped by it, and the root directory id.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::random_id;
use crate::format::{DataKeyRef, DirIdFile, KeyStore, META_DIR, META_FORMAT_VERSION, VolumeConfig};
use crate::keys::{KeyHierarchy, KeyProvider, KeyStoreFile, ServiceKey, default_service_key_path};
use crate::meta_copies::{self, Record};

use super::dir::hex;
use super::{Result, VolumeError, dirid_copies};

pub struct InitOptions {
    pub service_key: Option<PathBuf>,
    pub block_size: u32,
    /// A customer-managed key that wraps the data key on top of the service key.
    pub cmk: Option<std::sync::Arc<dyn crate::keys::CustomerKey>>,
    /// Where the first key wrap is recorded (default: the default audit log).
    pub audit_log: Option<PathBuf>,
    /// How names are encrypted (default: the FIPS scheme in the fips build, GCM-SIV otherwise).
    pub name_scheme: crate::crypto::NameScheme,
    /// Shared mode: several daemons (hosts) may mount it at once (docs/shared.md).
    pub shared: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            service_key: None,
            block_size: 4096,
            cmk: None,
            audit_log: None,
            name_scheme: crate::crypto::NameScheme::build_default(),
            shared: false,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct InitReport {
    pub volume_id: String,
    pub cmk: Option<String>,
    pub service_key: PathBuf,
    pub service_key_fingerprint: String,
    /// The volume's `"name_cipher"`.
    pub name_cipher: &'static str,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn init_volume(backing: &Path, opts: &InitOptions) -> Result<InitReport> {
    let setup = VolumeError::Setup;
    if !opts.block_size.is_power_of_two() || !(512..=1 << 20).contains(&opts.block_size) {
        return Err(setup(format!(
            "block size {} is not a power of two between 512 and 1048576",
            opts.block_size
        )));
    }
    if backing.join(META_DIR).exists() {
        return Err(setup(format!(
            "{} is already a cmkfs volume",
            backing.display()
        )));
    }
    match fs::read_dir(backing) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(setup(format!(
                    "{} is not empty; cmkfs init needs an empty directory",
                    backing.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(backing)
                .map_err(|e| setup(format!("cannot create {}: {e}", backing.display())))?;
        }
        Err(e) => return Err(setup(format!("cannot read {}: {e}", backing.display()))),
    }
    let volume_id = hex(&random_id()?);
    let key_path = opts
        .service_key
        .clone()
        .unwrap_or_else(|| default_service_key_path(&volume_id));
    let key_abs = std::path::absolute(&key_path).unwrap_or(key_path.clone());
    let backing_abs = std::path::absolute(backing).unwrap_or(backing.to_path_buf());
    if key_abs.starts_with(&backing_abs) {
        return Err(setup(format!(
            "the service key must live outside the backing directory ({} is inside {})",
            key_path.display(),
            backing.display()
        )));
    }
    let service_key = ServiceKey::create(&key_path)?;
    let fingerprint = service_key.fingerprint().to_string();
    let meta = backing.join(META_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&meta)
        .map_err(|e| setup(format!("cannot create {}: {e}", meta.display())))?;
    let config = VolumeConfig {
        format: META_FORMAT_VERSION,
        volume_id: volume_id.clone(),
        block_size: opts.block_size,
        created: now(),
        content_cipher: "AES-256-GCM".into(),
        name_cipher: opts.name_scheme.as_str().into(),
        shared: opts.shared,
    };
    let mut providers: Vec<std::sync::Arc<dyn KeyProvider>> =
        vec![std::sync::Arc::new(service_key)];
    if let Some(cmk) = &opts.cmk {
        providers.push(cmk.clone());
    }
    let first = DataKeyRef { scope: 0, epoch: 0 };
    let audit = crate::audit::AuditLog::open(
        &opts
            .audit_log
            .clone()
            .unwrap_or_else(crate::audit::default_audit_log_path),
    )
    .unwrap_or_else(|e| {
        tracing::warn!("audit log unavailable: {e}");
        crate::audit::AuditLog::disabled()
    });
    let record = match KeyHierarchy::new_data_key_record(&providers, first, now(), &audit) {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir(&meta);
            return Err(e.into());
        }
    };
    let cmk = opts.cmk.as_ref().map(|c| c.key_url().to_string());
    KeyStoreFile::new(backing, &volume_id).save(&KeyStore {
        format: META_FORMAT_VERSION,
        cmk,
        data_keys: vec![record],
        scopes: Vec::new(),
    })?;
    let root_id = DirIdFile {
        key: first,
        dir_id: random_id()?,
    };
    let root = fs::File::open(backing)?;
    dirid_copies::create_file(root.as_fd(), &root_id)?;
    if let Err(e) = dirid_copies::write_xattr(root.as_fd(), &root_id) {
        if !dirid_copies::is_unsupported(&e) {
            return Err(e.into());
        }
        tracing::warn!(
            "{} has no user xattrs: directory ids are kept in one copy only",
            backing.display()
        );
    }
    // volume.json last: its presence marks a complete volume.
    meta_copies::save(&meta, Record::VolumeConfig, &volume_id, &config.to_json())?;
    Ok(InitReport {
        volume_id,
        cmk: opts.cmk.as_ref().map(|c| c.key_url().to_string()),
        service_key: key_path,
        service_key_fingerprint: fingerprint,
        name_cipher: opts.name_scheme.as_str(),
    })
}
