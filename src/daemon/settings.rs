//! Effective mount settings: `cmkfs mount` flags, `-o` options and the config file merged
//! (flags first, then `-o`, then the file, then defaults).

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{KeyVaultArgs, MountArgs, MountOptions};
use crate::config::{ConfigFile, FipsPolicy, credential_path};

use super::metrics_server::MetricsEndpoint;
use super::process::LogTarget;

pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
pub const DEFAULT_CACHE_MAX_AGE: u64 = 3600;
pub const DEFAULT_REVOCATION_CHECK_INTERVAL: u64 = 30;

#[derive(Debug, Clone)]
pub struct MountSettings {
    pub name: Option<String>,
    pub backing: PathBuf,
    pub mountpoint: PathBuf,
    /// None: the default location for the volume id.
    pub service_key: Option<PathBuf>,
    pub foreground: bool,
    pub options: MountOptions,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_target: LogTarget,
    pub threads: usize,
    pub cache_capacity: usize,
    pub cache_max_age: Duration,
    pub revocation_check_interval: Duration,
    pub audit_log: Option<PathBuf>,
    pub key_vault: KeyVaultArgs,
    pub fips: FipsPolicy,
    /// Where Prometheus metrics are served (none by default).
    pub metrics: Vec<MetricsEndpoint>,
}

fn absolute(p: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

impl MountSettings {
    pub fn resolve(a: &MountArgs) -> Result<MountSettings, String> {
        let cli_opts = MountOptions::parse(&a.options)?;
        let config_path = a.config.clone().or(cli_opts.config.clone());
        let file = match &config_path {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        // -o options from the command line extend (and so override) the file's.
        let mut groups = file
            .options
            .as_ref()
            .map(|o| o.to_vec())
            .unwrap_or_default();
        groups.extend(a.options.iter().cloned());
        let options = MountOptions::parse(&groups)?;
        let backing = a
            .backing
            .clone()
            .or(file.backing.clone())
            .ok_or("no backing directory given (argument or `backing` in the config file)")?;
        let mountpoint = a
            .mountpoint
            .clone()
            .or(file.mountpoint.clone())
            .ok_or("no mountpoint given (argument or `mountpoint` in the config file)")?;
        let service_key = match (
            a.service_key.clone().or(cli_opts.service_key.clone()),
            &file.service_key,
            &file.service_key_credential,
        ) {
            (Some(p), _, _) => Some(p),
            (None, _, Some(cred)) => Some(credential_path(cred)?),
            (None, Some(p), None) => Some(p.clone()),
            (None, None, None) => None,
        };
        let o = &cli_opts;
        let threads = a
            .threads
            .or(o.threads)
            .or(file.threads)
            .unwrap_or_else(default_threads);
        let mut metrics = Vec::new();
        if let Some(addr) = a
            .metrics_listen
            .as_ref()
            .or(options.metrics_listen.as_ref())
            .or(file.metrics_listen.as_ref())
        {
            metrics.push(MetricsEndpoint::parse_listen(addr)?);
        }
        if let Some(path) = a
            .metrics_socket
            .clone()
            .or(options.metrics_socket.clone())
            .or(file.metrics_socket.clone())
        {
            metrics.push(MetricsEndpoint::Unix(absolute(path)?));
        }
        Ok(MountSettings {
            name: file.name.clone(),
            metrics,
            backing: absolute(backing)?,
            mountpoint: absolute(mountpoint)?,
            service_key: service_key.map(absolute).transpose()?,
            foreground: a.foreground || o.foreground || file.foreground.unwrap_or(false),
            log_file: a
                .log_file
                .clone()
                .or(options.log_file.clone())
                .or(file.log_file.clone())
                .map(absolute)
                .transpose()?,
            log_level: file.log_level.clone(),
            log_target: a
                .log_target
                .or(options.log_target)
                .or(file.log_target)
                .unwrap_or_default(),
            threads,
            cache_capacity: a
                .cache_capacity
                .or(o.cache_capacity)
                .or(file.cache_capacity)
                .unwrap_or(DEFAULT_CACHE_CAPACITY),
            cache_max_age: Duration::from_secs(
                a.cache_max_age
                    .or(o.cache_max_age)
                    .or(file.cache_max_age)
                    .unwrap_or(DEFAULT_CACHE_MAX_AGE),
            ),
            revocation_check_interval: Duration::from_secs(
                a.revocation_check_interval
                    .or(o.revocation_check_interval)
                    .or(file.revocation_check_interval)
                    .unwrap_or(DEFAULT_REVOCATION_CHECK_INTERVAL)
                    .max(1),
            ),
            audit_log: a
                .audit_log
                .clone()
                .or(o.audit_log.clone())
                .or(file.audit_log.clone())
                .map(absolute)
                .transpose()?,
            key_vault: KeyVaultArgs {
                azure_credential: a
                    .key_vault
                    .azure_credential
                    .clone()
                    .or(o.azure_credential.clone())
                    .or(file.azure_credential.clone()),
                ca_file: a
                    .key_vault
                    .ca_file
                    .clone()
                    .or(o.ca_file.clone())
                    .or(file.ca_file.clone()),
                no_verify_challenge_resource: a.key_vault.no_verify_challenge_resource
                    || o.no_verify_challenge_resource
                    || file.verify_challenge_resource == Some(false),
                key_vault_timeout: a
                    .key_vault
                    .key_vault_timeout
                    .or(o.key_vault_timeout)
                    .or(file.key_vault_timeout),
            },
            fips: a.fips.or(options.fips).or(file.fips).unwrap_or_default(),
            options,
        })
    }
}

/// Threads serving FUSE requests by default: twice the CPUs, at least 4. Requests that wait on
/// the disk (an open reading a header, a mkdir's fsync) and the kernel's asynchronous ones
/// (release, forget) then do not hold up the next request: on 2 CPUs, 4 threads untar a
/// 31,000-file tree in 10.0-10.1 s against 12.2-14.2 s with 2 (see docs/performance.md).
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_mul(2)
        .max(4)
}
