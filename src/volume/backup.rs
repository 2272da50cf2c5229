//! Backup and restore of a volume's key material: the volume config and the key store
//! (wrapped data keys only: useless without the service key and, where used, the CMK) in one
//! sealed file bound to the volume id (`format::SealedCopy`, record `backup`). Restore
//! checks the volume id and that every data key of the backup unwraps before writing both
//! copies of both records. Never writes file content or directory ids.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditLog, AuditOp, AuditResult};
use crate::format::{KeyStore, META_DIR, META_FORMAT_VERSION, SealedCopy, VolumeConfig};
use crate::keys::{CustomerKey, DataKeyCache, KeyHierarchy, KeyProvider, KeyStoreFile, ServiceKey};
use crate::meta_copies::{self, CopyState, Record};

use super::{Result, Volume, VolumeError, lock_backing};

/// The sealed record name of a backup file.
pub const BACKUP_RECORD: &str = "backup";

/// The JSON content of a backup file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBackup {
    pub format: u8,
    /// When the backup was made, seconds since the Unix epoch.
    pub created: u64,
    pub volume_config: VolumeConfig,
    pub key_store: KeyStore,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub volume_id: String,
    pub data_keys: usize,
    /// Whether BACKING still had a readable volume id to compare with.
    pub volume_id_checked: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The backup of the volume in `backing` (its best valid copies; nothing is written there).
pub fn backup_volume(backing: &Path) -> Result<(Vec<u8>, KeyBackup)> {
    let config = Volume::read_config(backing)?;
    let (store, _) = KeyStoreFile::new(backing, &config.volume_id).load(false)?;
    let b = KeyBackup {
        format: META_FORMAT_VERSION,
        created: now(),
        volume_config: config,
        key_store: store,
    };
    let mut content = serde_json::to_vec_pretty(&b)
        .map_err(|e| VolumeError::Setup(format!("cannot encode the backup: {e}")))?;
    content.push(b'\n');
    let bytes = SealedCopy {
        record: BACKUP_RECORD.into(),
        generation: 1,
        volume_id: b.volume_config.volume_id.clone(),
        content,
    }
    .encode();
    Ok((bytes, b))
}

/// Decodes and verifies a backup file's bytes.
pub fn parse_backup(bytes: &[u8], name: &str) -> Result<KeyBackup> {
    let setup = VolumeError::Setup;
    let c = SealedCopy::decode(bytes, BACKUP_RECORD).map_err(|e| {
        setup(format!(
            "{name} is not a valid cmkfs key backup ({e}): it is damaged or not made by `cmkfs key backup`"
        ))
    })?;
    let b: KeyBackup = serde_json::from_slice(&c.content)
        .map_err(|e| setup(format!("{name}: the backup content does not parse: {e}")))?;
    let config = VolumeConfig::parse(&b.volume_config.to_json())
        .map_err(|e| setup(format!("{name}: volume config: {e}")))?;
    let store = KeyStore::parse(&b.key_store.to_json())
        .map_err(|e| setup(format!("{name}: key store: {e}")))?;
    if config.volume_id != c.volume_id {
        return Err(setup(format!(
            "{name}: sealed for volume {} but holds the config of volume {}",
            c.volume_id, config.volume_id
        )));
    }
    Ok(KeyBackup {
        volume_config: config,
        key_store: store,
        ..b
    })
}

/// The volume id `backing` still shows: from a valid copy of its config, else from a valid
/// copy of its key store.
pub fn surviving_volume_id(backing: &Path) -> Option<String> {
    if let Ok(c) = Volume::read_config(backing) {
        return Some(c.volume_id);
    }
    let meta = backing.join(META_DIR);
    [1, 2].into_iter().find_map(|n| {
        match meta_copies::read_copy(&meta, Record::KeyStore, n, None) {
            CopyState::Valid(c) => Some(c.volume_id),
            _ => None,
        }
    })
}

/// Puts the backup back into `backing` after checking it belongs to this volume and that
/// every data key unwraps with `service_key` (and `cmk` when the key store names one).
/// Refuses while the volume is mounted.
pub fn restore_volume(
    backing: &Path,
    backup: &KeyBackup,
    service_key: ServiceKey,
    cmk: Option<Arc<dyn CustomerKey>>,
    audit: Arc<AuditLog>,
) -> Result<RestoreReport> {
    let setup = VolumeError::Setup;
    let id = &backup.volume_config.volume_id;
    let found = surviving_volume_id(backing);
    if let Some(f) = &found
        && f != id
    {
        return Err(setup(format!(
            "the backup is of volume {id}, but {} is volume {f}: refusing to restore another volume's keys",
            backing.display()
        )));
    }
    let providers: Vec<Arc<dyn KeyProvider>> = vec![Arc::new(service_key)];
    let mut keys = KeyHierarchy::new(
        backup.key_store.clone(),
        providers,
        DataKeyCache::new(16, std::time::Duration::from_secs(60)),
    )
    .with_audit(audit.clone());
    match (&backup.key_store.cmk, cmk) {
        (Some(url), None) => {
            return Err(setup(format!(
                "the backup's data keys are wrapped by the customer-managed key {url}; give --azure-credential"
            )));
        }
        (_, Some(c)) => keys = keys.with_cmk(c),
        (None, None) => {}
    }
    for k in &backup.key_store.data_keys {
        keys.data_key(k.key_ref()).map_err(|e| {
            setup(format!(
                "data key {} of the backup does not unwrap: {e}; the backup does not belong to this service key, nothing was written",
                k.key_ref()
            ))
        })?;
    }
    let meta = backing.join(META_DIR);
    if !meta.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&meta)
            .map_err(|e| setup(format!("cannot create {}: {e}", meta.display())))?;
    }
    let _lock = lock_backing(backing, Path::new("(cmkfs key restore)"), false)?;
    KeyStoreFile::new(backing, id).save(&backup.key_store)?;
    let mut config = backup.volume_config.clone();
    config.format = META_FORMAT_VERSION;
    meta_copies::save(&meta, Record::VolumeConfig, id, &config.to_json()).map_err(|e| {
        setup(format!(
            "cannot write the volume config into {}: {e}",
            meta.display()
        ))
    })?;
    audit.record(
        AuditEvent::new(AuditOp::MetadataRestore, id.clone(), AuditResult::Ok).detail(format!(
            "volume config and key store ({} data keys) restored from a backup of {}",
            backup.key_store.data_keys.len(),
            backup.created
        )),
    );
    Ok(RestoreReport {
        volume_id: id.clone(),
        data_keys: backup.key_store.data_keys.len(),
        volume_id_checked: found.is_some(),
    })
}
