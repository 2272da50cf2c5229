//! `cmkfs scope create|list|lock|unlock|set-cmk`: key scopes (directory subtrees with their
//! own data keys and customer-managed key) through the running daemon, which uses its own
//! Key Vault credentials; `scope list` also works offline on a backing directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::control_cmds::print;
use crate::control::{ControlClient, Request, find_mount_of};

#[derive(Subcommand)]
pub enum ScopeCommand {
    /// Make an empty directory of a running mount the root of a new key scope: its own data
    /// keys, wrapped by the service key and by --cmk (or the service key alone).
    Create(CreateArgs),
    /// List the key scopes: root, customer-managed key and version, state (usable, revoked,
    /// locked, unreachable), data-key epochs, cached keys, files. MOUNTPOINT or, offline,
    /// BACKING.
    List(ListArgs),
    /// Lock a key scope now: its cached keys flushed, its files and names refused
    /// (EKEYREVOKED) until unlocked. Kept in the key store (survives remounts).
    Lock(PathArgs),
    /// Unlock a locked key scope: its key is unwrapped through Key Vault again.
    Unlock(PathArgs),
    /// Re-wrap a scope's data keys under another customer-managed key (or the service key
    /// alone with --service-key-only); no data is re-encrypted.
    SetCmk(CreateArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("wrap").required(true).args(["cmk", "service_key_only"]))]
pub struct CreateArgs {
    /// The directory, inside a running mount (MOUNTPOINT/DIR).
    pub dir: PathBuf,
    /// The scope's customer-managed key: https://VAULT/keys/NAME.
    #[arg(long, value_name = "URL")]
    pub cmk: Option<String>,
    /// No customer-managed key: the scope's data keys are wrapped by the service key alone.
    #[arg(long)]
    pub service_key_only: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PathArgs {
    /// A directory of the scope (its root), inside a running mount (MOUNTPOINT/DIR).
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// A mountpoint (through its daemon) or a backing directory (offline, not mounted).
    pub target: PathBuf,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
    #[arg(long)]
    pub json: bool,
}

/// The daemon holding `dir`, and `dir` relative to its mount.
fn client_for(dir: &std::path::Path) -> Result<(ControlClient, String), String> {
    let (sock, rel) = find_mount_of(dir)?;
    Ok((ControlClient::new(sock), rel))
}

fn state_line(s: &Value) -> String {
    let f = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let root = s
        .get("root")
        .and_then(Value::as_str)
        .unwrap_or("(root not found)");
    let versions = s
        .get("cmk_versions")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .filter_map(|k| k.rsplit('/').next())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let cmk = match s.get("cmk").and_then(Value::as_str) {
        Some(c) if versions.is_empty() => c.to_string(),
        Some(c) => format!("{c} ({versions})"),
        None => "service key only".into(),
    };
    format!(
        "scope {:<4} {:<12} {:<24} epochs {} (current {}), {} cached keys, {} files, {}{}",
        f("scope"),
        text("state"),
        root,
        s.get("epochs")
            .and_then(Value::as_array)
            .map(|e| e.len())
            .unwrap_or(0),
        f("current_epoch"),
        f("cached_keys"),
        match f("files") {
            Value::Null => "?".to_string(),
            v => v.to_string(),
        },
        cmk,
        s.get("detail")
            .and_then(Value::as_str)
            .map(|d| format!(" [{d}]"))
            .unwrap_or_default()
    )
}

fn offline_list(a: &ListArgs) -> Result<Value, String> {
    let vol = super::control_cmds::open_volume(&a.target, &a.keys, true)?;
    let tree = vol.scope_tree(true).map_err(|e| e.to_string())?;
    let scopes: Vec<Value> = vol
        .keys()
        .scope_summaries()
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
            v["root"] = json!(tree.roots.get(&s.scope).map(|p| p.display().to_string()));
            v["files"] = json!(tree.files.get(&s.scope));
            v
        })
        .collect();
    Ok(json!({ "scopes": scopes }))
}

pub fn run(c: ScopeCommand) -> Result<(), String> {
    match c {
        ScopeCommand::Create(a) => {
            let (client, path) = client_for(&a.dir)?;
            let v = client.call(&Request::ScopeCreate {
                path,
                cmk: a.cmk.clone(),
            })?;
            print(&v, a.json, |v| {
                format!(
                    "{} is now the root of key scope {} ({})",
                    a.dir.display(),
                    v["scope"],
                    a.cmk.as_deref().unwrap_or("service key only")
                )
            });
        }
        ScopeCommand::SetCmk(a) => {
            let (client, path) = client_for(&a.dir)?;
            let v = client.call(&Request::ScopeSetCmk {
                path,
                cmk: a.cmk.clone(),
            })?;
            print(&v, a.json, |v| {
                format!(
                    "{} data keys of key scope {} now wrapped by the service key{} (no data re-encrypted)",
                    v["rewrapped"],
                    v["scope"],
                    a.cmk
                        .as_deref()
                        .map(|c| format!(" and {c}"))
                        .unwrap_or_else(|| " only".into())
                )
            });
        }
        ScopeCommand::Lock(a) => lock(a, true)?,
        ScopeCommand::Unlock(a) => lock(a, false)?,
        ScopeCommand::List(a) => {
            let on_disk = a
                .target
                .join(crate::format::META_DIR)
                .join("volume.json")
                .exists();
            let v = if on_disk {
                offline_list(&a)?
            } else {
                let (client, _) = client_for(&a.target)?;
                client.call(&Request::ScopeList)?
            };
            print(&v, a.json, |v| {
                let mut lines: Vec<String> = v["scopes"]
                    .as_array()
                    .map(|s| s.iter().map(state_line).collect())
                    .unwrap_or_default();
                if let Some(w) = v.get("watcher") {
                    lines.push(format!(
                        "key watcher: {} customer-managed keys, {} checked in the last round ({} Key Vault requests, {} ms)",
                        w["keys_known"], w["keys_checked"], w["requests"], w["duration_ms"]
                    ));
                }
                lines.join("\n")
            });
        }
    }
    Ok(())
}

fn lock(a: PathArgs, locked: bool) -> Result<(), String> {
    let (client, path) = client_for(&a.dir)?;
    let v = client.call(&if locked {
        Request::ScopeLock { path }
    } else {
        Request::ScopeUnlock { path }
    })?;
    print(&v, a.json, |v| {
        if locked {
            format!(
                "key scope {} locked ({} cached data keys flushed); its files give EKEYREVOKED until unlocked",
                v["scope"], v["flushed"]
            )
        } else {
            format!("key scope {} unlocked", v["scope"])
        }
    });
    Ok(())
}
