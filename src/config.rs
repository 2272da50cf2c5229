//! The daemon's config file (`/etc/cmkfs/NAME.toml`): one key per `cmkfs mount` flag. Flags
//! override the file. Unknown keys and bad values are rejected with the file, line and key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Keys of the config file. Every `cmkfs mount` flag has one (`-o` options as `options`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Instance name: the control socket is also reachable as /run/cmkfs/NAME.sock.
    pub name: Option<String>,
    pub backing: Option<PathBuf>,
    pub mountpoint: Option<PathBuf>,
    /// Path of the service key file.
    pub service_key: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=NAME:...`) holding the service key.
    pub service_key_credential: Option<String>,
    pub foreground: Option<bool>,
    /// Mount options, as for `-o` (a list of strings or one comma-separated string).
    pub options: Option<OptionList>,
    pub log_file: Option<PathBuf>,
    /// tracing filter, e.g. "info" or "cmkfs=debug" (RUST_LOG wins when set).
    pub log_level: Option<String>,
    /// "auto" (default), "journald" or "stderr", as `--log-target`.
    pub log_target: Option<crate::daemon::LogTarget>,
    pub threads: Option<usize>,
    pub cache_capacity: Option<usize>,
    /// Seconds.
    pub cache_max_age: Option<u64>,
    /// Seconds between revocation checks of the customer-managed key.
    pub revocation_check_interval: Option<u64>,
    pub audit_log: Option<PathBuf>,
    /// As `--azure-credential`.
    pub azure_credential: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// false = `--no-verify-challenge-resource`.
    pub verify_challenge_resource: Option<bool>,
    /// Seconds.
    pub key_vault_timeout: Option<u64>,
    /// `"required"`: refuse to mount unless this is the fips build in FIPS mode.
    pub fips: Option<FipsPolicy>,
    /// As `--metrics-listen`: HOST:PORT serving Prometheus metrics.
    pub metrics_listen: Option<String>,
    /// As `--metrics-socket`: a Unix socket serving Prometheus metrics.
    pub metrics_socket: Option<PathBuf>,
}

/// Whether a mount may run without a FIPS validated module in FIPS mode (`fips = "required"`
/// in the config file, `--fips required`, `-o fips=required`). The fips build always enters
/// FIPS mode and refuses to mount if it cannot, whatever the policy.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FipsPolicy {
    /// FIPS mode in the fips build; the default build runs on AWS-LC without it.
    #[default]
    Auto,
    /// Only the fips build in FIPS mode mounts (for fleets that must never run the other one).
    Required,
}

impl FipsPolicy {
    pub fn parse(s: &str) -> Result<FipsPolicy, String> {
        match s {
            "auto" => Ok(FipsPolicy::Auto),
            "required" => Ok(FipsPolicy::Required),
            _ => Err(format!("fips={s}: expected \"required\" or \"auto\"")),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OptionList {
    One(String),
    Many(Vec<String>),
}

impl OptionList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OptionList::One(s) => vec![s.clone()],
            OptionList::Many(v) => v.clone(),
        }
    }
}

/// Line (1-based) of byte offset `pos` in `text`, and the key written on that line.
fn line_and_key(text: &str, pos: usize) -> (usize, Option<String>) {
    let pos = pos.min(text.len());
    let line_no = text[..pos].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty());
    (line_no, key)
}

fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.split_once('=')
                .map(|(k, _)| k.trim() == key)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config {}: cannot read: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, String> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let (line, key) = line_and_key(text, span.start);
                    match key {
                        Some(k) => {
                            format!("config {} line {line}, key `{k}`: {msg}", path.display())
                        }
                        None => format!("config {} line {line}: {msg}", path.display()),
                    }
                }
                None => format!("config {}: {msg}", path.display()),
            }
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), String> {
        let bad = |key: &str, why: &str| {
            let line = key_line(text, key)
                .map(|l| format!(" line {l},"))
                .unwrap_or_default();
            Err(format!(
                "config {}{line} key `{key}`: {why}",
                path.display()
            ))
        };
        if self.threads == Some(0) {
            return bad("threads", "must be at least 1");
        }
        if self.cache_capacity == Some(0) {
            return bad("cache_capacity", "must be at least 1");
        }
        if self.revocation_check_interval == Some(0) {
            return bad("revocation_check_interval", "must be at least 1 second");
        }
        if let Some(c) = &self.azure_credential
            && let Err(e) = crate::keys::azure::CredentialSpec::parse(c)
        {
            return bad("azure_credential", &e);
        }
        if self.cache_max_age == Some(0) {
            return bad("cache_max_age", "must be at least 1 second");
        }
        if let Some(l) = &self.log_level
            && log_filter(l).is_err()
        {
            return bad(
                "log_level",
                "is not a valid level or filter (try \"info\" or \"debug\")",
            );
        }
        if let Some(n) = &self.name
            && (n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
                || n.starts_with('.'))
        {
            return bad("name", "may only use letters, digits, '-', '_', '.', '@'");
        }
        if let Some(o) = &self.options
            && let Err(e) = crate::cli::MountOptions::parse(&o.to_vec())
        {
            return bad("options", &e);
        }
        if let Some(c) = &self.service_key_credential
            && (c.is_empty() || c.contains('/'))
        {
            return bad(
                "service_key_credential",
                "must be a credential name without '/'",
            );
        }
        Ok(())
    }
}

/// The service key file a systemd credential names.
pub fn credential_path(name: &str) -> Result<PathBuf, String> {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(d) => Ok(PathBuf::from(d).join(name)),
        None => Err(format!(
            "service key credential `{name}` is configured but $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
        )),
    }
}

/// Parses a log filter (`info`, `cmkfs=debug,fuser=warn`, ...). Filters are ASCII; anything
/// else is refused here, because tracing-subscriber's parser panics on some non-ASCII input
/// (found by the `config_file` fuzz target).
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if !spec.is_ascii() {
        return Err(format!("{spec:?} is not a log filter (ASCII only)"));
    }
    tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| format!("{spec:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(s, Path::new("/etc/cmkfs/t.toml"))
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            "name = \"data\"\nbacking = \"/srv/b\"\nmountpoint = \"/mnt/d\"\nservice_key = \"/k\"\noptions = [\"allow_other\", \"noatime\"]\nthreads = 4\ncache_capacity = 10\ncache_max_age = 60\nlog_level = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(c.threads, Some(4));
        assert_eq!(c.options.unwrap().to_vec(), vec!["allow_other", "noatime"]);
        assert_eq!(
            parse("options = \"ro,allow_other\"")
                .unwrap()
                .options
                .unwrap()
                .to_vec(),
            vec!["ro,allow_other"]
        );
    }

    #[test]
    fn typo_names_line_and_key() {
        let e = parse("backing = \"/b\"\ncach_capacity = 5\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("cach_capacity") && e.contains("t.toml"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = parse("backing = \"/b\"\n\nthreads = \"many\"\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("threads"), "{e}");
        let e = parse("cache_capacity = 0\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("cache_capacity"), "{e}");
        let e = parse("options = \"allow_other,bogus\"\n").unwrap_err();
        assert!(e.contains("options") && e.contains("bogus"), "{e}");
        let e = parse("log_level = \"[[[\"\n").unwrap_err();
        assert!(e.contains("log_level"), "{e}");
        // Once a panic inside tracing-subscriber's parser (fuzz/artifacts/config_file).
        let e = parse("log_level=\" \u{1a9}[ [\"\n").unwrap_err();
        assert!(e.contains("log_level"), "{e}");
    }

    #[test]
    fn fips_policy() {
        assert_eq!(
            parse("fips = \"required\"\n").unwrap().fips,
            Some(FipsPolicy::Required)
        );
        assert_eq!(
            parse("fips = \"auto\"").unwrap().fips,
            Some(FipsPolicy::Auto)
        );
        assert_eq!(parse("").unwrap().fips, None);
        let e = parse("fips = \"yes\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("fips"), "{e}");
        assert_eq!(FipsPolicy::parse("required"), Ok(FipsPolicy::Required));
        assert!(FipsPolicy::parse("on").is_err());
    }
}
