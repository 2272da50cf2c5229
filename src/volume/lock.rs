//! One daemon per backing directory. On this host: an exclusive `flock` on
//! `.cmkfs/mount.lock`. Across hosts sharing the backing directory (NFS, SMB, where `flock`
//! may not reach other clients): the file also holds a lease, `{pid, host, mountpoint,
//! heartbeat}`, renewed every `LEASE_RENEW` seconds by the holder; a mount from another host
//! is refused while the lease is younger than `LEASE_EXPIRY`, and may take over a stale one.
//! The holder is named in every refusal.
//!
//! A shared volume (docs/shared.md) is mounted with a shared `flock` instead, by any number of
//! daemons, each with a lease file of its own (`shared`); an exclusive lock (a non-shared
//! mount, `fsck --repair`, `key restore`, `volume set-shared`) then waits for all of them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::format::META_DIR;

use super::{Result, VolumeError};

/// Seconds between lease renewals by the holder.
pub const LEASE_RENEW: u64 = 10;
/// A lease older than this (seconds) is stale: its holder died without unmounting.
pub const LEASE_EXPIRY: u64 = 45;

/// Held for as long as the volume is mounted (inherited by the daemon across fork).
pub struct MountLock {
    file: Option<File>,
    mountpoint: PathBuf,
    /// Shared mode: this daemon's lease file (the lease is not in `mount.lock`).
    shared: Option<SharedLease>,
}

struct SharedLease {
    backing: PathBuf,
    lease: super::shared::HostLease,
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn describe(backing: &Path, holder: &serde_json::Value) -> String {
    format!(
        "{} is already mounted (by pid {} on host {} at {}); one daemon per backing directory",
        backing.display(),
        holder
            .get("pid")
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into()),
        holder.get("host").and_then(|v| v.as_str()).unwrap_or("?"),
        holder
            .get("mountpoint")
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
    )
}

fn try_lock(file: &std::fs::File) -> bool {
    // SAFETY: flock on an fd we own; no pointers.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn try_lock_shared(file: &std::fs::File) -> bool {
    // SAFETY: flock on an fd we own; no pointers.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) == 0 }
}

/// Who has the shared volume in `backing` mounted, for a refusal.
fn describe_shared(backing: &Path) -> Option<String> {
    let hosts = super::shared::list_hosts(backing).ok()?;
    let live: Vec<String> = hosts
        .iter()
        .filter(|h| !h.stale)
        .map(|h| {
            format!(
                "pid {} on host {} at {}",
                h.pid,
                h.host,
                h.mountpoint.display()
            )
        })
        .collect();
    (!live.is_empty()).then(|| {
        format!(
            "{} is mounted in shared mode ({}); unmount it everywhere first",
            backing.display(),
            live.join(", ")
        )
    })
}

fn wait_for_lock(file: &std::fs::File, patience: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + patience;
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if try_lock(file) {
            return true;
        }
    }
    false
}

/// Takes the backing directory's mount lock, or says who holds it. A read-only mount of a
/// backing directory on a read-only filesystem needs no lock (nothing can be written).
pub fn lock_backing(backing: &Path, mountpoint: &Path, read_only: bool) -> Result<MountLock> {
    let path = backing.join(META_DIR).join("mount.lock");
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if read_only && e.raw_os_error() == Some(libc::EROFS) => {
            return Ok(MountLock {
                file: None,
                mountpoint: mountpoint.to_path_buf(),
                shared: None,
            });
        }
        Err(e) => {
            return Err(VolumeError::Setup(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    };
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !try_lock(&file) {
        // An empty lease: its holder unmounted cleanly and is exiting (a remount right after
        // `cmkfs umount`). Wait for it briefly rather than refuse.
        let exiting = holder.get("pid").is_none();
        if !(exiting && wait_for_lock(&file, std::time::Duration::from_secs(5))) {
            let why = match exiting.then(|| describe_shared(backing)).flatten() {
                Some(shared) => shared,
                None => describe(backing, &holder),
            };
            return Err(VolumeError::Setup(why));
        }
    }
    // Another host's live lease (flock does not see across hosts on every shared filesystem).
    let other_host = holder
        .get("host")
        .and_then(|h| h.as_str())
        .is_some_and(|h| h != hostname());
    let heartbeat = holder
        .get("heartbeat")
        .and_then(|h| h.as_u64())
        .unwrap_or(0);
    if other_host && now().saturating_sub(heartbeat) < LEASE_EXPIRY {
        return Err(VolumeError::Setup(describe(backing, &holder)));
    }
    if other_host {
        tracing::warn!(
            "taking over the stale mount lease of {}",
            describe(backing, &holder)
        );
    }
    let mut lock = MountLock {
        file: Some(file),
        mountpoint: mountpoint.to_path_buf(),
        shared: None,
    };
    lock.renew();
    Ok(lock)
}

/// Takes a shared mount lock on the shared volume in `backing` and writes this daemon's host
/// lease, or says who holds the volume exclusively.
pub fn lock_backing_shared(backing: &Path, mountpoint: &Path) -> Result<MountLock> {
    let path = backing.join(META_DIR).join("mount.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| VolumeError::Setup(format!("cannot open {}: {e}", path.display())))?;
    if !try_lock_shared(&file) {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if holder.get("pid").is_some() {
            return Err(VolumeError::Setup(describe(backing, &holder)));
        }
        return Err(VolumeError::Setup(format!(
            "{} is locked by a maintenance command (fsck --repair, key restore, volume set-shared); try again when it is done",
            backing.display()
        )));
    }
    super::shared::clear_dead_local_leases(backing);
    let mut lock = MountLock {
        file: Some(file),
        mountpoint: mountpoint.to_path_buf(),
        shared: Some(SharedLease {
            backing: backing.to_path_buf(),
            lease: super::shared::HostLease::mine(mountpoint, now()),
        }),
    };
    lock.renew();
    Ok(lock)
}

impl MountLock {
    /// Rewrites the lease with the current pid and time (call every `LEASE_RENEW` seconds;
    /// also after the daemon forks).
    pub fn renew(&mut self) {
        if let Some(s) = self.shared.as_mut() {
            // After a fork the daemon's pid names the lease; the parent's goes.
            let old = s.lease.clone();
            s.lease.pid = std::process::id();
            s.lease.heartbeat = now();
            if let Err(e) = super::shared::write_lease(&s.backing, &s.lease) {
                tracing::warn!("cannot renew the host lease: {e}");
            }
            if old.pid != s.lease.pid {
                super::shared::remove_lease(&s.backing, &old);
            }
            return;
        }
        let me = serde_json::json!({
            "pid": std::process::id(),
            "host": hostname(),
            "mountpoint": self.mountpoint,
            "heartbeat": now(),
        });
        if let Some(f) = self.file.as_mut() {
            let _ = f
                .set_len(0)
                .and_then(|_| f.rewind())
                .and_then(|_| f.write_all(me.to_string().as_bytes()));
        }
    }

    /// Renews the lease on a thread of its own until the process exits.
    pub fn keep_renewing(&self) {
        let Some(file) = self.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            return;
        };
        let mut renewer = MountLock {
            file: Some(file),
            mountpoint: self.mountpoint.clone(),
            shared: self.shared.as_ref().map(|s| SharedLease {
                backing: s.backing.clone(),
                lease: s.lease.clone(),
            }),
        };
        let _ = std::thread::Builder::new()
            .name("mount-lease".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(LEASE_RENEW));
                    renewer.renew();
                }
            });
    }

    /// Leaves the lease in place (the process that forked the daemon exits, the daemon keeps it).
    pub fn hand_over(mut self) {
        self.file = None;
        self.shared = None;
    }

    /// Whether this is a shared-mode lock.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

impl Drop for MountLock {
    /// A clean unmount leaves no lease behind.
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            super::shared::remove_lease(&s.backing, &s.lease);
            return;
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.set_len(0);
        }
    }
}
