//! `cmkfs volume`: settings of an unmounted volume (`set-shared`) and the daemons that have a
//! shared volume mounted (`hosts`).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::volume::{Volume, list_hosts, set_shared};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Turn shared mode on or off for an unmounted volume (on: several hosts may mount it).
    SetShared {
        /// The backing directory.
        backing: PathBuf,
        /// on or off.
        state: OnOff,
    },
    /// The daemons (host, pid, mountpoint, last renewal) that have a shared volume mounted.
    Hosts {
        /// The backing directory.
        backing: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

pub fn run(c: VolumeCommand) -> Result<(), String> {
    match c {
        VolumeCommand::SetShared { backing, state } => {
            let on = matches!(state, OnOff::On);
            let changed = set_shared(&backing, on).map_err(|e| e.to_string())?;
            let word = if on { "on" } else { "off" };
            if changed {
                println!("Shared mode is now {word} for {}", backing.display());
            } else {
                println!("Shared mode was already {word} for {}", backing.display());
            }
            Ok(())
        }
        VolumeCommand::Hosts { backing, json } => {
            let config = Volume::read_config(&backing).map_err(|e| e.to_string())?;
            let hosts = list_hosts(&backing).map_err(|e| e.to_string())?;
            if json {
                let v = serde_json::json!({ "shared": config.shared, "hosts": hosts });
                println!("{v}");
                return Ok(());
            }
            if !config.shared {
                println!(
                    "{} is not a shared volume (one daemon at a time; see `cmkfs status`)",
                    backing.display()
                );
                return Ok(());
            }
            if hosts.is_empty() {
                println!("No host has {} mounted", backing.display());
                return Ok(());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            println!(
                "{:<20} {:>8}  {:<40} LAST RENEWAL",
                "HOST", "PID", "MOUNTPOINT"
            );
            for h in hosts {
                println!(
                    "{:<20} {:>8}  {:<40} {} s ago{}",
                    h.host,
                    h.pid,
                    h.mountpoint.display(),
                    now.saturating_sub(h.heartbeat),
                    if h.stale {
                        " (stale: daemon gone?)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}
