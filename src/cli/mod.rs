//! Command-line interface: argument parsing and one clear sentence per error. Delegates
//! the work to `daemon` (mount) and the volume core (init).

mod init;
mod mount_options;
mod umount;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use mount_options::MountOptions;

#[derive(Parser)]
#[command(name = "cmkfs", version, about = "Transparent encrypted filesystem with envelope encryption and customer-managed keys")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new volume in an empty backing directory, with a fresh service key.
    Init(InitArgs),
    /// Mount a volume (runs the daemon; in the background unless --foreground).
    Mount(MountArgs),
    /// Unmount a cmkfs mount and wait for its daemon to exit.
    Umount(UmountArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The backing directory (created if missing; must be empty).
    pub backing: PathBuf,
    /// Where to write the new service key (default: /var/lib/cmkfs/keys/VOLUME_ID.key as root,
    /// ~/.local/share/cmkfs/keys/VOLUME_ID.key otherwise). Must be outside BACKING.
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
    /// Plaintext bytes per encrypted block (power of two, 512..1048576).
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub block_size: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct MountArgs {
    /// The backing directory holding the encrypted volume.
    pub backing: PathBuf,
    /// Where the plaintext view appears.
    pub mountpoint: PathBuf,
    /// The service key file (default: the location `cmkfs init` chose for this volume).
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
    /// Stay in the foreground (for systemd); otherwise return once the mount is usable.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount options, comma separated: ro, allow_other, default_permissions, and the usual
    /// FUSE/mount flags (nosuid, nodev, noexec, noatime, ...). May be repeated.
    #[arg(short = 'o', value_name = "OPTION,...")]
    pub options: Vec<String>,
    /// Append the daemon's log lines to FILE (background mode logs nowhere otherwise).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Threads serving FUSE requests (default: number of CPUs, at least 2).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Data-key cache capacity (entries).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub cache_capacity: usize,
    /// Maximum age of a cached data key, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub cache_max_age: u64,
}

#[derive(Args)]
pub struct UmountArgs {
    /// The mountpoint to unmount.
    pub mountpoint: PathBuf,
    /// Detach now even if busy; the daemon exits once the last file is closed.
    #[arg(long, short = 'l')]
    pub lazy: bool,
}

/// Runs the CLI; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Mount(a) => crate::daemon::mount(a),
        Command::Umount(a) => umount::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("cmkfs: {msg}");
            1
        }
    }
}
