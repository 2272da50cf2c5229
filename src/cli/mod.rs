//! Command-line interface: argument parsing and one clear sentence per error. Delegates
//! the work to `daemon` (mount) and the volume core (init).

mod audit;
mod control_cmds;
mod fsck;
mod generate;
mod init;
mod key_backup;
mod mount_options;
mod reencrypt;
mod scope;
mod umount;
mod volume;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use mount_options::MountOptions;

#[derive(Parser)]
#[command(
    name = "cmkfs",
    version,
    about = "Transparent encrypted filesystem with envelope encryption and customer-managed keys",
    long_about = "\
cmkfs presents a plaintext view (the mount) of a backing directory whose contents, names, \
symlink targets and extended attributes are encrypted. Each file's blocks are AES-256-GCM \
sealed with a per-file key derived from a data key; data keys are stored only wrapped by the \
service key (a 32-byte file kept outside the backing directory), and optionally wrapped again \
by a customer-managed key in Azure Key Vault. Tampered, swapped, truncated or extended \
ciphertext reads as EIO, never as wrong data.\n\n\
`cmkfs BACKING MOUNTPOINT -o OPTIONS` (the form mount.fuse3 uses for fstab type fuse.cmkfs) \
means `cmkfs mount`."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new volume in an empty backing directory, with a fresh service key.
    Init(InitArgs),
    /// Mount a volume (runs the daemon; in the background unless --foreground).
    ///
    /// Without --foreground the command returns once the mount answers requests; with it the
    /// daemon stays in the foreground (systemd Type=notify: READY=1 after the mount served a
    /// request, STATUS= lines, STOPPING=1 on stop). SIGTERM or SIGINT unmounts and exits 0. A
    /// wrong or missing service key fails before anything is mounted, with one line naming the
    /// key file and the reason.
    Mount(MountArgs),
    /// Unmount a cmkfs mount and wait for its daemon to exit.
    Umount(UmountArgs),
    /// Show the state of one mount (or all): keys, cache, open files, traffic, uptime.
    ///
    /// Asks the mount's control socket (/run/cmkfs/ID.sock, mode 0600, root or the daemon's
    /// user only).
    Status(control_cmds::StatusArgs),
    /// Data-key cache operations on a running mount.
    #[command(subcommand)]
    Cache(control_cmds::CacheCommand),
    /// Key operations on a running mount (and set-cmk / remove-cmk on an unmounted volume).
    #[command(subcommand)]
    Key(control_cmds::KeyCommand),
    /// Move existing files to the newest data key (online through MOUNTPOINT, or offline on
    /// BACKING); resumable.
    Reencrypt(reencrypt::ReencryptArgs),
    /// Check a volume (exit 0 clean, 1 problems found, 2 could not check); read-only unless --quarantine.
    Fsck(fsck::FsckArgs),
    /// The tamper-evident audit log of key events: verify its hash chain, show its records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Volume settings and the hosts that have a shared volume mounted.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Key scopes: directory subtrees with their own data keys and customer-managed key,
    /// revoked, locked and rotated on their own.
    #[command(subcommand)]
    Scope(scope::ScopeCommand),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(generate::CompletionsArgs),
    /// Write the man pages (cmkfs.8 and one per subcommand) to DIR.
    #[command(hide = true)]
    GenerateMan(generate::GenerateManArgs),
}

/// How to reach a customer-managed key in Azure Key Vault (same flags for init, mount and
/// the key commands; config-file keys of the same names).
#[derive(Args, Clone, Default, Debug)]
pub struct KeyVaultArgs {
    /// Azure credential: managed-identity[:CLIENT_ID] | workload-identity |
    /// client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH
    #[arg(long, value_name = "SPEC")]
    pub azure_credential: Option<String>,
    /// PEM file of a private CA to trust for the vault endpoint.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Accept a vault host that is not under the resource named by Key Vault's 401 challenge
    /// (private endpoints, emulators).
    #[arg(long)]
    pub no_verify_challenge_resource: bool,
    /// Bound on one Key Vault call, in seconds (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub key_vault_timeout: Option<u64>,
}

impl KeyVaultArgs {
    /// Connects to the customer-managed key `url` with these settings.
    pub fn connect(
        &self,
        url: &str,
    ) -> Result<std::sync::Arc<crate::keys::azure::AzureCmk>, String> {
        use crate::keys::azure::{AzureCmk, AzureSettings, CredentialSpec};
        let spec = self.azure_credential.as_deref().ok_or_else(|| {
            format!(
                "the customer-managed key {url} needs --azure-credential (e.g. managed-identity)"
            )
        })?;
        let settings = AzureSettings {
            key_url: url.to_string(),
            credential: CredentialSpec::parse(spec)?,
            ca_file: self.ca_file.clone(),
            verify_challenge_resource: !self.no_verify_challenge_resource,
            timeout: std::time::Duration::from_secs(self.key_vault_timeout.unwrap_or(10).max(1)),
            retries: 2,
        };
        Ok(std::sync::Arc::new(AzureCmk::new(settings)?))
    }
}

/// The keys a command opens an unmounted volume with: its service key, and the Key Vault
/// settings that reach its customer-managed keys (the volume's and its scopes').
#[derive(Args, Clone, Default, Debug)]
pub struct VolumeKeyArgs {
    /// The service key file (default: the location `cmkfs init` chose for this volume); not
    /// needed when a running mount's daemon serves the command.
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
    #[command(flatten)]
    pub key_vault: KeyVaultArgs,
}

/// Scopes' customer-managed keys are reached with the same settings as the volume's.
impl crate::keys::CmkConnector for KeyVaultArgs {
    fn connect(
        &self,
        key_url: &str,
    ) -> Result<std::sync::Arc<dyn crate::keys::CustomerKey>, crate::keys::KeyError> {
        KeyVaultArgs::connect(self, key_url)
            .map(|c| c as std::sync::Arc<dyn crate::keys::CustomerKey>)
            .map_err(crate::keys::KeyError::NoProvider)
    }
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
    /// Bind the volume to a customer-managed key: https://VAULT/keys/NAME. Data keys are then
    /// wrapped by the service key and again by this key.
    #[arg(long, value_name = "URL")]
    pub cmk: Option<String>,
    #[command(flatten)]
    pub key_vault: KeyVaultArgs,
    /// The audit log that records the first key wrap (default /var/log/cmkfs/audit.log as root).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Encrypt names with the FIPS scheme (HMAC-SHA-256 synthetic IV + AES-256-CTR, approved
    /// algorithms only). Always on in a build made with `--features fips`.
    #[arg(long)]
    pub fips: bool,
    /// Shared mode: several daemons (on several hosts, backing directory on a network or
    /// distributed filesystem) may mount the volume at once (docs/shared.md).
    #[arg(long)]
    pub shared: bool,
}

#[derive(Args, Clone, Default)]
pub struct MountArgs {
    /// The backing directory holding the encrypted volume (or `backing` in the config file).
    pub backing: Option<PathBuf>,
    /// Where the plaintext view appears (or `mountpoint` in the config file).
    pub mountpoint: Option<PathBuf>,
    /// A config file (e.g. /etc/cmkfs/NAME.toml); flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The service key file (default: the location `cmkfs init` chose for this volume).
    #[arg(long, value_name = "FILE")]
    pub service_key: Option<PathBuf>,
    /// Stay in the foreground (for systemd); otherwise return once the mount is usable.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount options, comma separated: ro, allow_other (implies default_permissions),
    /// allow_root, default_permissions, nosuid, nodev, noexec, noatime, ..., and every flag
    /// as an option: service_key=FILE, config=FILE, log_file=FILE. May be repeated.
    #[arg(short = 'o', value_name = "OPTION,...")]
    pub options: Vec<String>,
    /// Append the daemon's log lines to FILE (a background daemon logs nowhere otherwise).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Where log lines go: auto (the journal when stderr is systemd's journal stream and no
    /// --log-file is given, else as stderr), journald (structured fields: volume,
    /// mountpoint, key, errno, file), stderr (--log-file or stderr, as text).
    #[arg(long, value_name = "TARGET", value_enum)]
    pub log_target: Option<crate::daemon::LogTarget>,
    /// Threads serving FUSE requests (default: twice the number of CPUs, at least 4).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Data-key cache capacity in entries (default 1024).
    #[arg(long, value_name = "N")]
    pub cache_capacity: Option<usize>,
    /// Maximum age of a cached data key in seconds (default 3600).
    #[arg(long, value_name = "SECONDS")]
    pub cache_max_age: Option<u64>,
    /// How often the customer-managed key is checked for revocation, in seconds (default 30).
    #[arg(long, value_name = "SECONDS")]
    pub revocation_check_interval: Option<u64>,
    /// The audit log (default /var/log/cmkfs/audit.log as root).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    #[command(flatten)]
    pub key_vault: KeyVaultArgs,
    /// `required`: refuse to mount unless this is the fips build (AWS-LC-FIPS) in FIPS mode
    /// (config key `fips`, option `-o fips=required`).
    #[arg(long, value_name = "POLICY")]
    pub fips: Option<crate::config::FipsPolicy>,
    /// Serve Prometheus metrics over HTTP at ADDR (HOST:PORT, e.g. 127.0.0.1:9464; a loopback
    /// address is recommended), path /metrics. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve Prometheus metrics over HTTP on the Unix socket PATH (mode 0600), path /metrics.
    #[arg(long, value_name = "PATH")]
    pub metrics_socket: Option<PathBuf>,
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
    use clap::{CommandFactory, FromArgMatches};
    // Computed once per process; clap keeps `&'static str` versions.
    let version: &'static str = version_text().leak();
    let matches = Cli::command()
        .version(version)
        .long_version(version)
        .get_matches_from(mount_helper_argv(std::env::args_os().collect()));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Volume(c) => volume::run(c),
        Command::Scope(c) => scope::run(c),
        Command::Mount(a) => crate::daemon::mount(a),
        Command::Umount(a) => umount::run(a),
        Command::Status(a) => control_cmds::status(a),
        Command::Cache(c) => control_cmds::cache(c),
        Command::Key(c) => control_cmds::key(c),
        Command::Reencrypt(a) => reencrypt::run(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Audit(c) => audit::run(c),
        Command::Completions(a) => generate::completions(a),
        Command::GenerateMan(a) => generate::man_pages(a),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("cmkfs: {msg}");
            1
        }
    }
}

/// `cmkfs --version`: the release, the crypto module and its version, and FIPS mode.
fn version_text() -> String {
    let m = crate::crypto::module_info();
    format!(
        "{}\ncrypto module: {} {} (aws-lc-rs{})\nFIPS mode: {}",
        env!("CARGO_PKG_VERSION"),
        m.module,
        m.version,
        if crate::crypto::FIPS_BUILD {
            ", fips build"
        } else {
            ""
        },
        if m.fips_mode { "on" } else { "off" }
    )
}

/// mount(8) runs `cmkfs BACKING MOUNTPOINT -o OPTIONS` (the mount.fuse3 convention, for
/// fstab type `fuse.cmkfs`): without a subcommand, the arguments mean `mount`.
fn mount_helper_argv(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let Some(first) = args.get(1).and_then(|a| a.to_str()).map(str::to_string) else {
        return args;
    };
    let is_subcommand = Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == first)
        || first == "help";
    if !is_subcommand && !first.starts_with('-') && args.len() >= 3 {
        args.insert(1, "mount".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_helper_form_becomes_mount() {
        let v = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            mount_helper_argv(v(&["cmkfs", "/b", "/m", "-o", "ro"])),
            v(&["cmkfs", "mount", "/b", "/m", "-o", "ro"])
        );
        assert_eq!(
            mount_helper_argv(v(&["cmkfs", "status", "/m"])),
            v(&["cmkfs", "status", "/m"])
        );
        assert_eq!(
            mount_helper_argv(v(&["cmkfs", "--help"])),
            v(&["cmkfs", "--help"])
        );
    }
}
