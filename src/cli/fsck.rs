//! `cmkfs fsck`: parses the arguments, draws the progress bar and prints the report of
//! `crate::fsck`. Exits itself with the fsck exit code (0 clean, 1 problems found, 2 could
//! not check), since `cli::run` maps every error to 1: `run` returns `Ok(())` only when clean.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::fsck::{self, EXIT_CANNOT_CHECK, FsckOptions, NoProgress, Progress, Report};

#[derive(Args)]
pub struct FsckArgs {
    /// The backing directory of the volume (it may be mounted: fsck only reads it).
    pub backing: PathBuf,
    /// The service key file (default: the location `cmkfs init` chose for this volume).
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
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
    #[command(flatten)]
    pub key_vault: super::KeyVaultArgs,
}

pub fn run(a: FsckArgs) -> Result<(), String> {
    let cmk = match crate::volume::Volume::read_cmk_url(&a.backing) {
        Ok(Some(url)) => match a.key_vault.connect(&url) {
            Ok(c) => Some(c as std::sync::Arc<dyn crate::keys::CustomerKey>),
            Err(e) => {
                eprintln!("cmkfs: {e}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    let opts = FsckOptions {
        service_key: a.service_key.clone(),
        quarantine: a.quarantine.clone(),
        cmk,
        repair: a.repair,
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

/// A one-line progress bar on stderr, redrawn at most ten times a second.
struct Bar {
    total: Option<u64>,
    done: u64,
    problems: u64,
    current: String,
    last: Option<Instant>,
    drawn: bool,
}

impl Bar {
    fn new() -> Self {
        Bar {
            total: None,
            done: 0,
            problems: 0,
            current: String::new(),
            last: None,
            drawn: false,
        }
    }

    fn width() -> usize {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 20 {
            ws.ws_col as usize
        } else {
            80
        }
    }

    fn draw(&mut self, force: bool) {
        if !force
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let width = Self::width();
        let head = match self.total {
            Some(total) if total > 0 => {
                let frac = (self.done as f64 / total as f64).min(1.0);
                let cells = 24;
                let full = (frac * cells as f64) as usize;
                format!(
                    "[{}{}] {:>3}% {}/{}",
                    "#".repeat(full),
                    "-".repeat(cells - full),
                    (frac * 100.0) as u32,
                    human_bytes(self.done),
                    human_bytes(total)
                )
            }
            _ => format!("{} checked", human_bytes(self.done)),
        };
        let head = format!("{head}, {} ", plural(self.problems, "problem", "problems"));
        let room = width.saturating_sub(head.chars().count() + 1);
        let cur: String = if self.current.chars().count() > room {
            let skip = self.current.chars().count() - room.saturating_sub(1);
            format!("…{}", self.current.chars().skip(skip).collect::<String>())
        } else {
            self.current.clone()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{head}{cur}");
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Progress for Bar {
    fn wants_total(&self) -> bool {
        true
    }

    fn start(&mut self, total_bytes: u64) {
        self.total = Some(total_bytes);
        self.draw(true);
    }

    fn entry(&mut self, name: &str) {
        self.current.clear();
        self.current.push_str(name);
        self.draw(false);
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.draw(false);
    }

    fn problem(&mut self) {
        self.problems += 1;
    }

    fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
