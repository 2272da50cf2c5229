//! `cmkfs key backup` and `cmkfs key restore`: the CLI side of `volume::backup`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::control::{ControlClient, Request, find_socket};
use crate::volume::{backup_volume, parse_backup, restore_volume};

#[derive(Args)]
pub struct BackupArgs {
    /// The backing directory, or the mountpoint of a running mount.
    pub target: PathBuf,
    /// Where to write the backup (mode 0600). Keep it outside the backing directory.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backing directory (the volume must not be mounted).
    pub backing: PathBuf,
    /// A backup written by `cmkfs key backup`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
    #[arg(long)]
    pub json: bool,
}

/// The backing directory of `target`: itself if it holds a volume, else the backing of the
/// mount at `target`.
fn backing_of(target: &Path) -> Result<PathBuf, String> {
    if target.join(crate::format::META_DIR).is_dir() {
        return Ok(target.to_path_buf());
    }
    let sockets = find_socket(Some(target)).unwrap_or_default();
    let Some(s) = sockets.into_iter().next() else {
        return Err(format!(
            "{} is neither a backing directory of a cmkfs volume nor a cmkfs mountpoint",
            target.display()
        ));
    };
    let v = ControlClient::new(s).call(&Request::Status)?;
    v.get("backing")
        .and_then(|b| b.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "the mount at {} did not name its backing directory",
                target.display()
            )
        })
}

pub fn backup(a: BackupArgs) -> Result<(), String> {
    let backing = backing_of(&a.target)?;
    let (bytes, b) = backup_volume(&backing).map_err(|e| e.to_string())?;
    crate::atomic_file::write_atomic(&a.out, &bytes, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    if a.json {
        let v = serde_json::json!({
            "volume_id": b.volume_config.volume_id,
            "data_keys": b.key_store.data_keys.len(),
            "out": a.out,
        });
        println!("{v}");
    } else {
        println!(
            "Backed up the volume config and key store of volume {} ({} data keys, wrapped) to {}",
            b.volume_config.volume_id,
            b.key_store.data_keys.len(),
            a.out.display()
        );
        println!(
            "The backup is useless without the service key{}; keep both, apart from the backing directory.",
            if b.key_store.cmk.is_some() {
                " and the customer-managed key"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn restore(a: RestoreArgs) -> Result<(), String> {
    let name = a.from.display().to_string();
    let bytes = std::fs::read(&a.from).map_err(|e| format!("cannot read {name}: {e}"))?;
    let b = parse_backup(&bytes, &name).map_err(|e| e.to_string())?;
    let key_path = a
        .keys
        .service_key
        .clone()
        .unwrap_or_else(|| crate::keys::default_service_key_path(&b.volume_config.volume_id));
    let sk = crate::keys::ServiceKey::load(&key_path).map_err(|e| e.to_string())?;
    let cmk = match &b.key_store.cmk {
        Some(url) => {
            Some(a.keys.key_vault.connect(url)? as std::sync::Arc<dyn crate::keys::CustomerKey>)
        }
        None => None,
    };
    let audit = crate::audit::AuditLog::open(&crate::audit::default_audit_log_path())
        .map_err(|e| format!("audit log: {e}"))?;
    let r = restore_volume(&a.backing, &b, sk, cmk, std::sync::Arc::new(audit))
        .map_err(|e| e.to_string())?;
    if a.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "Restored the volume config and key store of volume {} ({} data keys, all unwrap) into {}{}",
            r.volume_id,
            r.data_keys,
            a.backing.display(),
            if r.volume_id_checked {
                ""
            } else {
                " (no readable volume id was left there: matched by the service key alone)"
            }
        );
    }
    Ok(())
}
