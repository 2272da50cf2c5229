//! `cmkfs status`, `cmkfs cache ...`, `cmkfs key ...`: clients of a mount's control socket.
//! Human output by default, `--json` for scripts.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::control::{ControlClient, Request, find_socket};

#[derive(Args)]
pub struct StatusArgs {
    /// The mountpoint (default: every cmkfs mount of this host).
    pub mountpoint: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Drop (and zeroize) every cached data key now.
    Flush(TargetArgs),
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Check the keys protecting the volume now (revocation check on demand).
    Check(TargetArgs),
    /// Rotate: re-wrap to a newer customer-managed key version, or with --data-key start a
    /// new data-key epoch for new files.
    Rotate(RotateArgs),
    /// Protect an unmounted volume with a customer-managed key (re-wraps every data key; no
    /// data is re-encrypted). Also switches from one CMK to another.
    SetCmk(SetCmkArgs),
    /// Remove the customer-managed key layer of an unmounted volume (back to the service key
    /// alone; no data is re-encrypted).
    RemoveCmk(RemoveCmkArgs),
    /// Write the key store and volume config (wrapped keys only) to FILE, with a checksum and
    /// the volume id: `cmkfs key backup BACKING|MOUNTPOINT --out FILE`.
    Backup(super::key_backup::BackupArgs),
    /// Put back the key store and volume config from a backup, after checking the volume id
    /// and that the backup's keys unwrap: `cmkfs key restore BACKING --from FILE`.
    Restore(super::key_backup::RestoreArgs),
}

#[derive(Args)]
pub struct SetCmkArgs {
    /// The backing directory (the volume must not be mounted), or a key scope's directory in
    /// a running mount (MOUNTPOINT/DIR: that scope's data keys, through the daemon).
    pub backing: PathBuf,
    /// The customer-managed key: https://VAULT/keys/NAME.
    #[arg(long, value_name = "URL")]
    pub cmk: String,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RemoveCmkArgs {
    /// The backing directory (the volume must not be mounted).
    pub backing: PathBuf,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TargetArgs {
    /// The mountpoint (may be omitted when exactly one cmkfs mount runs).
    pub mountpoint: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RotateArgs {
    /// The mountpoint (may be omitted when exactly one cmkfs mount runs), or a directory in
    /// it: the keys of that directory's key scope are rotated.
    pub mountpoint: Option<PathBuf>,
    /// Start a new data-key epoch: new files use a fresh data key.
    #[arg(long)]
    pub data_key: bool,
    #[arg(long)]
    pub json: bool,
}

/// Whether `path` is a backing directory (holds a volume's metadata).
fn is_backing(path: &std::path::Path) -> bool {
    path.join(crate::format::META_DIR)
        .join("volume.json")
        .exists()
}

pub(super) fn one_socket(mountpoint: Option<&std::path::Path>) -> Result<ControlClient, String> {
    let mut sockets = find_socket(mountpoint)?;
    match sockets.len() {
        1 => Ok(ControlClient::new(sockets.remove(0))),
        0 => Err("no cmkfs mount is running on this host".into()),
        _ => Err("several cmkfs mounts are running; name the mountpoint".into()),
    }
}

pub(super) fn print(v: &Value, json: bool, human: impl Fn(&Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", human(v));
    }
}

fn human_status(v: &Value) -> String {
    let mut out = String::new();
    let g = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let s = |k: &str| match g(k) {
        Value::String(s) => s,
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    out.push_str(&format!(
        "{} (volume {})\n",
        s("mountpoint"),
        s("volume_id")
    ));
    out.push_str(&format!("  backing:       {}\n", s("backing")));
    if let Some(m) = v.get("crypto_module") {
        let f = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        out.push_str(&format!(
            "  crypto:        {} {}, FIPS mode: {}; names {}\n",
            f("module"),
            f("version"),
            if m.get("fips_mode") == Some(&Value::Bool(true)) {
                "on"
            } else {
                "off"
            },
            s("name_cipher")
        ));
    }
    if let Some(n) = v.get("name").and_then(Value::as_str) {
        out.push_str(&format!("  instance:      {n}\n"));
    }
    out.push_str(&format!(
        "  daemon:        pid {}, up {} s{}\n",
        s("pid"),
        s("uptime_seconds"),
        if g("read_only") == Value::Bool(true) {
            ", read-only"
        } else {
            ""
        }
    ));
    let scopes = g("key_scopes").as_array().cloned().unwrap_or_default();
    // Many scopes (one per customer): the volume's own in full, the rest counted by state.
    const SHOWN: usize = 8;
    if scopes.len() > SHOWN {
        let mut by_state = std::collections::BTreeMap::<String, usize>::new();
        for s in &scopes[1..] {
            let st = s.get("cmk_state").and_then(Value::as_str).unwrap_or("?");
            *by_state
                .entry(st.replace("none", "service key only"))
                .or_default() += 1;
        }
        out.push_str(&format!(
            "  key scopes:    {} besides the volume's own ({}); cmkfs scope list shows each\n",
            scopes.len() - 1,
            by_state
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let shown = if scopes.len() > SHOWN {
        1
    } else {
        scopes.len()
    };
    for scope in scopes.into_iter().take(shown) {
        let cmks = scope
            .get("cmk_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  key scope {}:   {} (epoch {}, {} data keys){}{}\n",
            scope.get("scope").cloned().unwrap_or(Value::Null),
            scope
                .get("protection")
                .and_then(Value::as_str)
                .unwrap_or("-"),
            scope.get("current_epoch").cloned().unwrap_or(Value::Null),
            scope.get("data_keys").cloned().unwrap_or(Value::Null),
            if cmks.is_empty() {
                String::new()
            } else {
                format!(", CMK {cmks}")
            },
            scope
                .get("cmk_state")
                .and_then(Value::as_str)
                .filter(|s| *s != "none")
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default(),
        ));
    }
    let check = g("last_key_check");
    let last = match check.get("state").and_then(Value::as_str) {
        None => "- (service-managed key only)".to_string(),
        Some(state) => format!(
            "{state}{} at unix time {}",
            check
                .get("detail")
                .and_then(Value::as_str)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            check.get("checked_at").cloned().unwrap_or(Value::Null)
        ),
    };
    out.push_str(&format!("  last check:    {last}\n"));
    let c = g("cache");
    out.push_str(&format!(
        "  key cache:     {} entries, {} hits, {} misses, {} evictions\n",
        c.get("entries").cloned().unwrap_or(Value::Null),
        c.get("hits").cloned().unwrap_or(Value::Null),
        c.get("misses").cloned().unwrap_or(Value::Null),
        c.get("evictions").cloned().unwrap_or(Value::Null)
    ));
    out.push_str(&format!("  open files:    {}\n", s("open_files")));
    if let Some(hosts) = g("hosts").as_array() {
        out.push_str("  shared mode:   mounted by\n");
        for h in hosts {
            let f = |k: &str| {
                h.get(k)
                    .map(|v| v.to_string().trim_matches('"').to_string())
            };
            out.push_str(&format!(
                "    host {} pid {} at {}, renewed at unix time {}{}\n",
                f("host").unwrap_or_default(),
                f("pid").unwrap_or_default(),
                f("mountpoint").unwrap_or_default(),
                f("heartbeat").unwrap_or_default(),
                if h.get("stale") == Some(&Value::Bool(true)) {
                    " (stale)"
                } else {
                    ""
                }
            ));
        }
    }
    out.push_str(&format!(
        "  metadata:      {} damaged copies repaired, {} left damaged\n",
        s("metadata_repairs"),
        s("metadata_damaged")
    ));
    out.push_str(&format!(
        "  traffic:       {} bytes read, {} bytes written",
        s("bytes_read"),
        s("bytes_written")
    ));
    out
}

pub fn status(a: StatusArgs) -> Result<(), String> {
    let sockets = find_socket(a.mountpoint.as_deref())?;
    if sockets.is_empty() {
        if a.json {
            println!("[]");
            return Ok(());
        }
        return Err("no cmkfs mount is running on this host".into());
    }
    let mut all = Vec::new();
    for s in sockets {
        all.push(ControlClient::new(s).call(&Request::Status)?);
    }
    if a.json {
        let v = if a.mountpoint.is_some() && all.len() == 1 {
            all.remove(0)
        } else {
            Value::Array(all)
        };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{}",
            all.iter()
                .map(human_status)
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
    Ok(())
}

pub fn cache(c: CacheCommand) -> Result<(), String> {
    match c {
        CacheCommand::Flush(t) => {
            let v = one_socket(t.mountpoint.as_deref())?.call(&Request::CacheFlush)?;
            print(&v, t.json, |v| {
                format!(
                    "flushed {} cached data keys",
                    v.get("flushed").cloned().unwrap_or(Value::Null)
                )
            });
        }
    }
    Ok(())
}

/// Opens an unmounted volume (holding its mount lock) with its current CMK, if any.
pub(super) fn open_offline(
    backing: &std::path::Path,
    keys: &super::VolumeKeyArgs,
) -> Result<(crate::volume::Volume, crate::volume::MountLock), String> {
    let lock = crate::volume::lock_backing(backing, std::path::Path::new("(cmkfs key)"), false)
        .map_err(|e| e.to_string())?;
    Ok((open_volume(backing, keys, false)?, lock))
}

/// Opens the volume in `backing` with `keys`: its service key (default place unless given),
/// its customer-managed key and the scopes' keys, recording key events in the default audit
/// log; read-only takes no lock and writes nothing.
pub(super) fn open_volume(
    backing: &std::path::Path,
    keys: &super::VolumeKeyArgs,
    read_only: bool,
) -> Result<crate::volume::Volume, String> {
    use crate::volume::{OpenOptions, Volume};
    let (service_key, kv) = (keys.service_key.as_deref(), &keys.key_vault);
    let config = Volume::read_config(backing).map_err(|e| e.to_string())?;
    let key_path = service_key
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| crate::keys::default_service_key_path(&config.volume_id));
    let sk = crate::keys::ServiceKey::load(&key_path).map_err(|e| e.to_string())?;
    let cmk = match Volume::read_cmk_url(backing).map_err(|e| e.to_string())? {
        Some(url) => Some(kv.connect(&url)? as std::sync::Arc<dyn crate::keys::CustomerKey>),
        None => None,
    };
    let audit = if read_only {
        crate::audit::AuditLog::disabled()
    } else {
        crate::audit::AuditLog::open(&crate::audit::default_audit_log_path())
            .map_err(|e| e.to_string())?
    };
    Volume::open(
        backing,
        sk,
        &OpenOptions {
            read_only,
            cmk,
            audit: std::sync::Arc::new(audit),
            connector: Some(std::sync::Arc::new(kv.clone())),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())
}

pub fn key(c: KeyCommand) -> Result<(), String> {
    match c {
        KeyCommand::Backup(a) => super::key_backup::backup(a)?,
        KeyCommand::Restore(a) => super::key_backup::restore(a)?,
        KeyCommand::SetCmk(a) if !is_backing(&a.backing) => {
            let (sock, path) = crate::control::find_mount_of(&a.backing)?;
            let v = ControlClient::new(sock).call(&Request::ScopeSetCmk {
                path,
                cmk: Some(a.cmk.clone()),
            })?;
            print(&v, a.json, |v| {
                format!(
                    "{} data keys of key scope {} now wrapped by the service key and {} (no data re-encrypted)",
                    v["rewrapped"], v["scope"], a.cmk
                )
            });
        }
        KeyCommand::SetCmk(a) => {
            let (vol, _lock) = open_offline(&a.backing, &a.keys)?;
            let cmk =
                a.keys.key_vault.connect(&a.cmk)? as std::sync::Arc<dyn crate::keys::CustomerKey>;
            let n = vol
                .keys()
                .set_cmk_layer(Some(&cmk))
                .map_err(|e| e.to_string())?;
            let v = serde_json::json!({ "cmk": cmk.key_url(), "rewrapped": n, "versions_in_use": vol.keys().store_snapshot().data_keys.iter().filter_map(|k| match k.wrapped_by.last() { Some(crate::format::WrapperId::Cmk { key_id, .. }) => Some(key_id.clone()), _ => None }).collect::<Vec<_>>() });
            print(&v, a.json, |v| {
                format!(
                    "{} data keys now wrapped by the service key and {} (no data re-encrypted)",
                    n,
                    v["cmk"].as_str().unwrap_or("?")
                )
            });
        }
        KeyCommand::RemoveCmk(a) => {
            let (vol, _lock) = open_offline(&a.backing, &a.keys)?;
            if vol.keys().cmk().is_none() {
                return Err(format!(
                    "{} has no customer-managed key",
                    a.backing.display()
                ));
            }
            let n = vol.keys().set_cmk_layer(None).map_err(|e| e.to_string())?;
            let v = serde_json::json!({ "cmk": null, "rewrapped": n });
            print(&v, a.json, |_| {
                format!("{n} data keys now wrapped by the service key only (no data re-encrypted)")
            });
        }
        KeyCommand::Check(t) => {
            let v = one_socket(t.mountpoint.as_deref())?.call(&Request::KeyCheck)?;
            print(&v, t.json, |v| {
                v.get("keys")
                    .and_then(Value::as_array)
                    .map(|ks| {
                        ks.iter()
                            .map(|k| {
                                format!(
                                    "{}: {}",
                                    k.get("key").and_then(Value::as_str).unwrap_or("?"),
                                    k.get("state").and_then(Value::as_str).unwrap_or("?")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        KeyCommand::Rotate(r) => {
            let (client, path) = match r.mountpoint.as_deref() {
                Some(p) => {
                    let (sock, rel) = crate::control::find_mount_of(p)?;
                    (
                        ControlClient::new(sock),
                        Some(rel).filter(|r| !r.is_empty()),
                    )
                }
                None => (one_socket(None)?, None),
            };
            let v = client.call(&Request::KeyRotate {
                data_key: r.data_key,
                path,
            })?;
            print(&v, r.json, |v| match v.get("rotated") {
                Some(_) if v.get("rewrapped").is_some() => format!(
                    "{} data keys re-wrapped; customer-managed key versions in use: {}",
                    v.get("rewrapped").cloned().unwrap_or(Value::Null),
                    v.get("versions_in_use")
                        .and_then(Value::as_array)
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
                Some(Value::Bool(true)) => format!(
                    "new data-key epoch {} of scope {}: new files use it; existing files keep theirs",
                    v.get("epoch").cloned().unwrap_or(Value::Null),
                    v.get("scope").cloned().unwrap_or(Value::Null)
                ),
                _ => v
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("nothing to rotate")
                    .to_string(),
            });
        }
    }
    Ok(())
}
