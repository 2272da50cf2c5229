//! Parsing of `-o` mount options into what the daemon and fuser need.

use std::path::PathBuf;

use crate::volume::AtimePolicy;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    /// Kernel/FUSE flags passed through (nosuid, nodev, noatime, ...).
    pub kernel_flags: Vec<String>,
    /// `noatime`, `relatime` (default), `strictatime` (and `atime`, `norelatime`,
    /// `nostrictatime`, as mount(8) reads them): when reads update the atime. The kernel
    /// leaves atimes of a FUSE mount to the daemon, so this is the daemon's policy.
    pub atime: AtimePolicy,
    /// `nodiratime`: listing a directory never updates its atime.
    pub nodiratime: bool,
    pub fsname: Option<String>,
    /// `service_key=FILE`, the same as `--service-key`.
    pub service_key: Option<PathBuf>,
    /// `log_file=FILE`, the same as `--log-file`.
    pub log_file: Option<PathBuf>,
    /// `config=FILE`, the same as `--config`.
    pub config: Option<PathBuf>,
    /// Allow mounting over a non-empty directory (hides its content while mounted).
    pub nonempty: bool,
    /// `writeback_cache`: use the kernel's write-back cache (experimental, off by default).
    pub writeback_cache: bool,
    /// `read_ahead_kb=N`: the kernel's read-ahead for this mount (default 1024; FUSE's default
    /// of 128 KiB makes sequential reads 3x slower).
    pub read_ahead_kb: Option<u32>,
    /// `shared_timeout_ms=N`: on a shared volume, how long the kernel may keep attributes and
    /// names before asking again (default 1000): the delay within which another host's
    /// changes of sizes, times and names are seen (docs/shared.md).
    pub shared_timeout_ms: Option<u64>,
    /// Every other `cmkfs mount` flag as an option: `threads=N`, `cache_capacity=N`,
    /// `cache_max_age=S`, `revocation_check_interval=S`, `audit_log=FILE`,
    /// `azure_credential=SPEC`, `ca_file=PEM`, `no_verify_challenge_resource`,
    /// `key_vault_timeout=S`, `foreground`.
    pub threads: Option<usize>,
    pub cache_capacity: Option<usize>,
    pub cache_max_age: Option<u64>,
    pub revocation_check_interval: Option<u64>,
    pub audit_log: Option<PathBuf>,
    pub azure_credential: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub no_verify_challenge_resource: bool,
    pub key_vault_timeout: Option<u64>,
    pub foreground: bool,
    /// `fips=required`: refuse to mount without a FIPS validated module in FIPS mode.
    pub fips: Option<crate::config::FipsPolicy>,
    /// `metrics_listen=ADDR`, `metrics_socket=PATH`: as `--metrics-listen`, `--metrics-socket`.
    pub metrics_listen: Option<String>,
    pub metrics_socket: Option<PathBuf>,
    /// `log_target=auto|journald|stderr`, as `--log-target`.
    pub log_target: Option<crate::daemon::LogTarget>,
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("mount option {key}={v} is not a valid number"))
}

const KERNEL_FLAGS: &[&str] = &[
    "nosuid", "suid", "nodev", "dev", "noexec", "exec", "atime", "noatime", "sync", "async",
    "dirsync",
];
/// Options of mount(8) and fstab that concern the caller, not the filesystem.
const IGNORED: &[&str] = &[
    "rw", "defaults", "auto", "noauto", "user", "users", "nouser", "nofail", "_netdev",
];

impl MountOptions {
    pub fn parse(groups: &[String]) -> Result<MountOptions, String> {
        let mut o = MountOptions::default();
        for opt in groups
            .iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            match (key, value) {
                ("ro", None) => o.read_only = true,
                ("allow_other", None) => o.allow_other = true,
                ("allow_root", None) => o.allow_root = true,
                ("default_permissions", None) => o.default_permissions = true,
                ("noatime", None) => {
                    o.atime = AtimePolicy::Never;
                    o.kernel_flags.push(key.to_string());
                }
                ("atime", None) => {
                    o.atime = AtimePolicy::Relative;
                    o.kernel_flags.push(key.to_string());
                }
                ("relatime" | "nostrictatime", None) => o.atime = AtimePolicy::Relative,
                ("strictatime" | "norelatime", None) => o.atime = AtimePolicy::Strict,
                ("nodiratime", None) => o.nodiratime = true,
                ("diratime", None) => o.nodiratime = false,
                ("nonempty", None) => o.nonempty = true,
                ("writeback_cache", None) => o.writeback_cache = true,
                ("no_writeback_cache", None) => o.writeback_cache = false,
                ("fsname", Some(v)) => o.fsname = Some(v.to_string()),
                ("service_key" | "service-key", Some(v)) => o.service_key = Some(PathBuf::from(v)),
                ("log_file" | "log-file", Some(v)) => o.log_file = Some(PathBuf::from(v)),
                ("config", Some(v)) => o.config = Some(PathBuf::from(v)),
                ("shared_timeout_ms", Some(v)) => {
                    o.shared_timeout_ms = Some(number("shared_timeout_ms", v)?)
                }
                ("read_ahead_kb", Some(v)) => {
                    o.read_ahead_kb = Some(v.parse().map_err(|_| {
                        format!("mount option read_ahead_kb={v} is not a number of KiB")
                    })?)
                }
                ("threads", Some(v)) => o.threads = Some(number(key, v)?),
                ("cache_capacity", Some(v)) => o.cache_capacity = Some(number(key, v)?),
                ("cache_max_age", Some(v)) => o.cache_max_age = Some(number(key, v)?),
                ("revocation_check_interval", Some(v)) => {
                    o.revocation_check_interval = Some(number(key, v)?)
                }
                ("key_vault_timeout", Some(v)) => o.key_vault_timeout = Some(number(key, v)?),
                ("audit_log", Some(v)) => o.audit_log = Some(PathBuf::from(v)),
                ("azure_credential", Some(v)) => o.azure_credential = Some(v.to_string()),
                ("ca_file", Some(v)) => o.ca_file = Some(PathBuf::from(v)),
                ("no_verify_challenge_resource", None) => o.no_verify_challenge_resource = true,
                ("foreground", None) => o.foreground = true,
                ("fips", Some(v)) => o.fips = Some(crate::config::FipsPolicy::parse(v)?),
                ("metrics_listen", Some(v)) => o.metrics_listen = Some(v.to_string()),
                ("metrics_socket", Some(v)) => o.metrics_socket = Some(PathBuf::from(v)),
                ("log_target", Some(v)) => o.log_target = Some(crate::daemon::LogTarget::parse(v)?),
                (k, None) if KERNEL_FLAGS.contains(&k) => o.kernel_flags.push(k.to_string()),
                (k, _)
                    if IGNORED.contains(&k) || k.starts_with("x-") || k.starts_with("comment=") => {
                }
                _ => return Err(format!("unknown mount option \"{opt}\"")),
            }
        }
        if o.allow_other {
            // Without kernel permission checks every user could read every file.
            o.default_permissions = true;
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let o = MountOptions::parse(&[
            "ro,allow_other".into(),
            "nosuid,service_key=/k,nofail,x-systemd.requires=a".into(),
        ])
        .unwrap();
        assert!(o.read_only && o.allow_other && o.default_permissions);
        assert_eq!(o.kernel_flags, vec!["nosuid"]);
        assert_eq!(o.service_key, Some(PathBuf::from("/k")));
        let o = MountOptions::parse(&[
            "threads=3,cache_capacity=7,cache_max_age=60,revocation_check_interval=5,audit_log=/a,azure_credential=access-token-file:/t,ca_file=/ca.pem,no_verify_challenge_resource,key_vault_timeout=4,foreground".into(),
        ])
        .unwrap();
        assert_eq!(
            (
                o.threads,
                o.cache_capacity,
                o.cache_max_age,
                o.revocation_check_interval
            ),
            (Some(3), Some(7), Some(60), Some(5))
        );
        assert_eq!(o.azure_credential.as_deref(), Some("access-token-file:/t"));
        assert!(o.no_verify_challenge_resource && o.foreground && o.key_vault_timeout == Some(4));
        assert!(
            MountOptions::parse(&["threads=many".into()])
                .unwrap_err()
                .contains("threads=many")
        );
        let e = MountOptions::parse(&["bogus".into()]).unwrap_err();
        assert!(e.contains("bogus"));
        assert_eq!(
            MountOptions::parse(&[]).unwrap().atime,
            AtimePolicy::Relative
        );
        let o = MountOptions::parse(&["noatime".into()]).unwrap();
        assert_eq!(
            (o.atime, o.kernel_flags),
            (AtimePolicy::Never, vec!["noatime".into()])
        );
        let o = MountOptions::parse(&["strictatime,nodiratime".into()]).unwrap();
        assert!(o.atime == AtimePolicy::Strict && o.nodiratime && o.kernel_flags.is_empty());
        let o = MountOptions::parse(&["noatime,relatime".into()]).unwrap();
        assert_eq!(o.atime, AtimePolicy::Relative);
    }
}
