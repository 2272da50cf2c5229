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
    /// The mountpoint (may be omitted when exactly one cmkfs mount runs).
    pub mountpoint: Option<PathBuf>,
    /// Start a new data-key epoch: new files use a fresh data key.
    #[arg(long)]
    pub data_key: bool,
    #[arg(long)]
    pub json: bool,
}

fn one_socket(mountpoint: Option<&std::path::Path>) -> Result<ControlClient, String> {
    let mut sockets = find_socket(mountpoint)?;
    match sockets.len() {
        1 => Ok(ControlClient::new(sockets.remove(0))),
        0 => Err("no cmkfs mount is running on this host".into()),
        _ => Err("several cmkfs mounts are running; name the mountpoint".into()),
    }
}

fn print(v: &Value, json: bool, human: impl Fn(&Value) -> String) {
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
    out.push_str(&format!("{} (volume {})\n", s("mountpoint"), s("volume_id")));
    out.push_str(&format!("  backing:       {}\n", s("backing")));
    if let Some(n) = v.get("name").and_then(Value::as_str) {
        out.push_str(&format!("  instance:      {n}\n"));
    }
    out.push_str(&format!("  daemon:        pid {}, up {} s{}\n", s("pid"), s("uptime_seconds"), if g("read_only") == Value::Bool(true) { ", read-only" } else { "" }));
    for scope in g("key_scopes").as_array().cloned().unwrap_or_default() {
        let cmks = scope.get("cmk_ids").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        out.push_str(&format!(
            "  key scope {}:   {} (epoch {}, {} data keys){}{}\n",
            scope.get("scope").cloned().unwrap_or(Value::Null),
            scope.get("protection").and_then(Value::as_str).unwrap_or("-"),
            scope.get("current_epoch").cloned().unwrap_or(Value::Null),
            scope.get("data_keys").cloned().unwrap_or(Value::Null),
            if cmks.is_empty() { String::new() } else { format!(", CMK {cmks}") },
            scope.get("cmk_state").and_then(Value::as_str).filter(|s| *s != "none").map(|s| format!(" [{s}]")).unwrap_or_default(),
        ));
    }
    out.push_str(&format!("  last check:    {}\n", s("last_key_check")));
    let c = g("cache");
    out.push_str(&format!(
        "  key cache:     {} entries, {} hits, {} misses, {} evictions\n",
        c.get("entries").cloned().unwrap_or(Value::Null),
        c.get("hits").cloned().unwrap_or(Value::Null),
        c.get("misses").cloned().unwrap_or(Value::Null),
        c.get("evictions").cloned().unwrap_or(Value::Null)
    ));
    out.push_str(&format!("  open files:    {}\n", s("open_files")));
    out.push_str(&format!("  traffic:       {} bytes read, {} bytes written", s("bytes_read"), s("bytes_written")));
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
        let v = if a.mountpoint.is_some() && all.len() == 1 { all.remove(0) } else { Value::Array(all) };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{}", all.iter().map(human_status).collect::<Vec<_>>().join("\n\n"));
    }
    Ok(())
}

pub fn cache(c: CacheCommand) -> Result<(), String> {
    match c {
        CacheCommand::Flush(t) => {
            let v = one_socket(t.mountpoint.as_deref())?.call(&Request::CacheFlush)?;
            print(&v, t.json, |v| format!("flushed {} cached data keys", v.get("flushed").cloned().unwrap_or(Value::Null)));
        }
    }
    Ok(())
}

pub fn key(c: KeyCommand) -> Result<(), String> {
    match c {
        KeyCommand::Check(t) => {
            let v = one_socket(t.mountpoint.as_deref())?.call(&Request::KeyCheck)?;
            print(&v, t.json, |v| {
                v.get("keys")
                    .and_then(Value::as_array)
                    .map(|ks| {
                        ks.iter()
                            .map(|k| format!("{}: {}", k.get("key").and_then(Value::as_str).unwrap_or("?"), k.get("state").and_then(Value::as_str).unwrap_or("?")))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        KeyCommand::Rotate(r) => {
            let v = one_socket(r.mountpoint.as_deref())?.call(&Request::KeyRotate { data_key: r.data_key })?;
            print(&v, r.json, |v| match v.get("rotated") {
                Some(Value::Bool(true)) => format!(
                    "new data-key epoch {} of scope {}: new files use it; existing files keep theirs",
                    v.get("epoch").cloned().unwrap_or(Value::Null),
                    v.get("scope").cloned().unwrap_or(Value::Null)
                ),
                _ => v.get("reason").and_then(Value::as_str).unwrap_or("nothing to rotate").to_string(),
            });
        }
    }
    Ok(())
}
