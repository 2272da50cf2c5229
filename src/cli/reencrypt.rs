//! `cmkfs reencrypt MOUNTPOINT|BACKING`: move existing files to the newest data key, online
//! through the daemon (MOUNTPOINT) or offline (BACKING, not mounted). Resumable: run it again
//! after an interruption; files already on the newest key are skipped.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use crate::control::{ControlClient, Request, find_socket};

#[derive(Args)]
pub struct ReencryptArgs {
    /// A mountpoint (online, through its daemon) or a backing directory (offline).
    pub target: PathBuf,
    /// The service key (offline only; default: where `cmkfs init` put it).
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
    #[command(flatten)]
    pub key_vault: super::KeyVaultArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A one-line progress bar on stderr, only on a terminal.
fn progress_printer(enabled: bool) -> impl FnMut(u64, u64) {
    move |done, total| {
        if !enabled || total == 0 {
            return;
        }
        let width = 40;
        let filled = (done.min(total) * width / total) as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} entries",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

pub fn run(a: ReencryptArgs) -> Result<(), String> {
    let show = !a.json && std::io::stderr().is_terminal();
    let mut progress = progress_printer(show);
    let report = if a
        .target
        .join(crate::format::META_DIR)
        .join("volume.json")
        .exists()
    {
        let (vol, _lock) =
            super::control_cmds::open_offline(&a.target, a.service_key.as_deref(), &a.key_vault)?;
        let r = vol
            .reencrypt_all(&mut progress)
            .map_err(|e| e.to_string())?;
        serde_json::to_value(&r).unwrap_or_default()
    } else {
        let sockets = find_socket(Some(&a.target))?;
        let socket = sockets.into_iter().next().ok_or("no control socket")?;
        ControlClient::new(socket).call_with_progress(&Request::Reencrypt, &mut progress)?
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "re-encrypted {} entries to the newest data key; {} already current; {} skipped",
            report["reencrypted"],
            report["already_current"],
            report["skipped"].as_array().map(|s| s.len()).unwrap_or(0)
        );
        for s in report["skipped"].as_array().cloned().unwrap_or_default() {
            println!("  skipped {}", s.as_str().unwrap_or(""));
        }
    }
    Ok(())
}
