//! `cmkfs reencrypt MOUNTPOINT[/DIR]|BACKING`: move existing files to the newest data key, online
//! through the daemon (MOUNTPOINT) or offline (BACKING, not mounted). Resumable: run it again
//! after an interruption; files already on the newest key are skipped.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::{ControlClient, Request, find_mount_of};

#[derive(Args)]
pub struct ReencryptArgs {
    /// A mountpoint or a directory inside one (online, through its daemon: only below that
    /// directory) or a backing directory (offline).
    pub target: PathBuf,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A progress bar of entries on stderr (indicatif), only on a terminal; left drawn at the end.
fn progress_printer(enabled: bool) -> impl FnMut(u64, u64) {
    let mut bar_slot: Option<ProgressBar> = None;
    let mut finished = false;
    move |done, total| {
        if !enabled || total == 0 || finished {
            return;
        }
        let bar = bar_slot.get_or_insert_with(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            // A constant template; a bad one would only lose the bar's layout.
            b.set_style(
                ProgressStyle::with_template("[{bar:40}] {pos}/{len} entries")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("#>."),
            );
            b
        });
        bar.set_length(total);
        bar.set_position(done.min(total));
        if done >= total {
            finished = true;
            // Left drawn; the line ends so the report starts on its own.
            if let Some(b) = bar_slot.take() {
                b.finish();
                eprintln!();
            }
        }
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
        let (vol, _lock) = super::control_cmds::open_offline(&a.target, &a.keys)?;
        let r = vol
            .reencrypt_all(&mut progress)
            .map_err(|e| e.to_string())?;
        serde_json::to_value(&r).unwrap_or_default()
    } else {
        let (socket, rel) = find_mount_of(&a.target)?;
        let path = Some(rel).filter(|r| !r.is_empty());
        ControlClient::new(socket)
            .call_with_progress(&Request::Reencrypt { path }, &mut progress)?
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
