//! Shared mode's bookkeeping: turning it on or off for an unmounted volume, and the host
//! leases of the daemons that have a shared volume mounted.
//!
//! Each daemon of a shared volume keeps a lease file `.cmkfs/hosts/<host>-<pid>.json`
//! (`{host, pid, mountpoint, started, heartbeat}`), renewed every `LEASE_RENEW` seconds and
//! removed on a clean unmount. A lease older than `LEASE_EXPIRY` is stale: its daemon died
//! (or its host is cut off). `cmkfs volume hosts` and `cmkfs status` list them.

use std::path::{Path, PathBuf};

use crate::format::META_DIR;

use super::lock::{LEASE_EXPIRY, hostname, now};
use super::{Result, Volume, VolumeError, lock_backing};

/// Directory of the host leases, under the metadata directory.
pub const HOSTS_DIR: &str = "hosts";

/// One daemon's lease on a shared volume.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostLease {
    pub host: String,
    pub pid: u32,
    pub mountpoint: PathBuf,
    /// When the daemon mounted, seconds since the Unix epoch.
    pub started: u64,
    /// Its last renewal, seconds since the Unix epoch.
    pub heartbeat: u64,
    /// Not renewed for `LEASE_EXPIRY` seconds (computed when listed, not stored).
    #[serde(default, skip_deserializing)]
    pub stale: bool,
}

impl HostLease {
    /// This process's lease for `mountpoint`.
    pub fn mine(mountpoint: &Path, started: u64) -> HostLease {
        HostLease {
            host: hostname(),
            pid: std::process::id(),
            mountpoint: mountpoint.to_path_buf(),
            started,
            heartbeat: now(),
            stale: false,
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}-{}.json", self.host.replace('/', "_"), self.pid)
    }
}

pub fn hosts_dir(backing: &Path) -> PathBuf {
    backing.join(META_DIR).join(HOSTS_DIR)
}

/// Writes (or renews) `lease` atomically.
pub(super) fn write_lease(backing: &Path, lease: &HostLease) -> std::io::Result<()> {
    let dir = hosts_dir(backing);
    std::fs::create_dir_all(&dir)?;
    let bytes = serde_json::to_vec(lease).unwrap_or_default();
    crate::atomic_file::write_atomic(&dir.join(lease.file_name()), &bytes, 0o600)
}

pub(super) fn remove_lease(backing: &Path, lease: &HostLease) {
    let _ = std::fs::remove_file(hosts_dir(backing).join(lease.file_name()));
}

/// The leases of the daemons that have the shared volume in `backing` mounted (stale ones
/// marked), by host and pid.
pub fn list_hosts(backing: &Path) -> Result<Vec<HostLease>> {
    let dir = hosts_dir(backing);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(VolumeError::Setup(format!(
                "cannot list {}: {e}",
                dir.display()
            )));
        }
    };
    let t = now();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue; // a temporary file of a renewal
        }
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue; // removed while listed
        };
        if let Ok(mut l) = serde_json::from_slice::<HostLease>(&bytes) {
            l.stale = t.saturating_sub(l.heartbeat) >= LEASE_EXPIRY;
            out.push(l);
        }
    }
    out.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
    Ok(out)
}

/// Whether process `pid` runs (a zombie, killed and not yet reaped, does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Removes the leases that daemons of this host left when they died (their pid is gone).
pub(super) fn clear_dead_local_leases(backing: &Path) {
    let me = hostname();
    for l in list_hosts(backing).unwrap_or_default() {
        if l.host == me && !alive(l.pid) {
            tracing::info!(
                "removing the lease of daemon {} (mounted at {}), which is gone",
                l.pid,
                l.mountpoint.display()
            );
            remove_lease(backing, &l);
        }
    }
}

/// Turns shared mode on or off for the unmounted volume in `backing`; returns whether it
/// changed. Refused while any daemon has the volume mounted.
pub fn set_shared(backing: &Path, on: bool) -> Result<bool> {
    let _lock = lock_backing(backing, Path::new("(cmkfs volume set-shared)"), false)?;
    let mut config = Volume::read_config(backing)?;
    if config.shared == on {
        return Ok(false);
    }
    config.shared = on;
    super::meta::save_config(backing, &config, "write the volume config")?;
    Ok(true)
}
