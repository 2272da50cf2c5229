//! `cmkfs fsck`: parses the arguments, draws the progress bar and prints the report of
//! `crate::fsck`. Exits itself with the fsck exit code (0 clean, 1 problems found, 2 could
//! not check), since `cli::run` maps every error to 1: `run` returns `Ok(())` only when clean.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fsck::{self, EXIT_CANNOT_CHECK, FsckOptions, NoProgress, Progress, Report};

#[derive(Args)]
pub struct FsckArgs {
    /// The backing directory of the volume (it may be mounted: fsck only reads it).
    pub backing: PathBuf,
    /// Print the report as one JSON document on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Move files whose blocks or header cannot be read into DIR (outside BACKING), keeping
    /// their backing path, with a .json note each. Nothing is deleted.
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// Rewrite a damaged, missing or stale copy of the volume config, the key store or a
    /// directory id from its verified twin (never guesses; each rewrite is audited).
    #[arg(long)]
    pub repair: bool,
    /// Check a shared volume while other hosts have it mounted: takes no lock, does not
    /// report their operations in flight, reports only problems found again in later walks.
    /// --repair is refused while any host has it mounted.
    #[arg(long)]
    pub shared: bool,
    #[command(flatten)]
    pub keys: super::VolumeKeyArgs,
}

pub fn run(a: FsckArgs) -> Result<(), String> {
    let cmk = match crate::volume::Volume::read_cmk_url(&a.backing) {
        Ok(Some(url)) => match a.keys.key_vault.connect(&url) {
            Ok(c) => Some(c as std::sync::Arc<dyn crate::keys::CustomerKey>),
            Err(e) => {
                eprintln!("cmkfs: {e}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    let opts = FsckOptions {
        service_key: a.keys.service_key.clone(),
        quarantine: a.quarantine.clone(),
        cmk,
        repair: a.repair,
        connector: Some(std::sync::Arc::new(a.keys.key_vault.clone())),
        shared: a.shared,
    };
    let mut bar;
    let mut none = NoProgress;
    let progress: &mut dyn Progress = if !a.json && std::io::stderr().is_terminal() {
        bar = Bar::new();
        &mut bar
    } else {
        &mut none
    };
    let code = match fsck::check(&a.backing, &opts, progress) {
        Ok(report) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_human(&report);
            }
            report.exit_code
        }
        Err(e) => {
            if a.json {
                let doc = serde_json::json!({
                    "backing": a.backing,
                    "clean": false,
                    "exit_code": EXIT_CANNOT_CHECK,
                    "error": e.to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            eprintln!("cmkfs fsck: could not check {}: {e}", a.backing.display());
            EXIT_CANNOT_CHECK
        }
    };
    let _ = std::io::stdout().flush();
    if code == 0 {
        Ok(())
    } else {
        std::process::exit(code)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_human(r: &Report) {
    println!(
        "cmkfs fsck: volume {} in {} (block size {})",
        r.volume_id,
        r.backing.display(),
        r.block_size
    );
    for (_, problems) in r.by_object() {
        let name = problems[0].display_name();
        for p in problems {
            let code = serde_json::to_value(p.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            println!("{} {name}: {} [{code}]", p.kind, p.message);
        }
    }
    let bad_keys = r.keys.iter().filter(|k| !k.unwraps).count();
    println!(
        "key store: {}{}",
        plural(r.keys.len() as u64, "data key", "data keys"),
        if bad_keys == 0 {
            ", all unwrap".to_string()
        } else {
            format!(", {bad_keys} do not unwrap")
        }
    );
    for p in &r.in_flight {
        println!(
            "in flight {}: {} (another host's operation in progress, or its leftover; not a problem)",
            p.display_name(),
            p.message
        );
    }
    if let Some(sh) = &r.shared {
        let hosts = sh
            .hosts
            .iter()
            .map(|h| format!("{} (pid {}) at {}", h.host, h.pid, h.mountpoint.display()))
            .collect::<Vec<_>>();
        println!(
            "shared volume, mounted by {}{}; {}",
            plural(hosts.len() as u64, "host", "hosts"),
            if hosts.is_empty() {
                String::new()
            } else {
                format!(": {}", hosts.join(", "))
            },
            plural(u64::from(sh.passes), "walk", "walks")
        );
    }
    for m in &r.repaired {
        println!("repaired: {m}");
    }
    if let Some(q) = &r.quarantine {
        for m in &q.moved {
            let what = m
                .path
                .clone()
                .unwrap_or_else(|| format!("[backing {}]", m.backing_path));
            println!(
                "quarantined {what} -> {} (note {})",
                m.to.display(),
                m.note.display()
            );
        }
        for e in &q.errors {
            println!("quarantine failed: {e}");
        }
    }
    let s = &r.summary;
    println!(
        "checked {}, {}, {}, {}; {} ({}): {}",
        plural(s.files, "file", "files"),
        plural(s.dirs, "directory", "directories"),
        plural(s.symlinks, "symlink", "symlinks"),
        plural(s.special, "special file", "special files"),
        plural(s.blocks_checked, "block", "blocks"),
        human_bytes(s.bytes_checked),
        if r.clean {
            "clean".to_string()
        } else {
            let bad = if s.bad_blocks > 0 {
                format!(", {} bad", plural(s.bad_blocks, "block", "blocks"))
            } else {
                String::new()
            };
            format!("{} found{bad}", plural(s.problems, "problem", "problems"))
        }
    );
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The check's progress bar on stderr (indicatif; only used on a terminal): bytes checked
/// against the total, problems found so far, the object being checked.
struct Bar {
    bar: ProgressBar,
    problems: u64,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(Self::style("{binary_bytes} checked, {prefix} {wide_msg}"));
        bar.set_prefix(plural(0, "problem", "problems"));
        Bar { bar, problems: 0 }
    }

    fn style(template: &str) -> ProgressStyle {
        // The templates are constants; a bad one would only lose the bar's layout.
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-")
    }
}

impl Progress for Bar {
    fn wants_total(&self) -> bool {
        true
    }

    fn start(&mut self, total_bytes: u64) {
        self.bar.set_length(total_bytes);
        self.bar.set_style(Self::style(
            "[{bar:24}] {percent:>3}% {binary_bytes}/{binary_total_bytes}, {prefix} {wide_msg}",
        ));
    }

    fn entry(&mut self, name: &str) {
        self.bar.set_message(name.to_string());
    }

    fn advance(&mut self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn problem(&mut self) {
        self.problems += 1;
        self.bar
            .set_prefix(plural(self.problems, "problem", "problems"));
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
