//! Offline (or read-only, on a mounted volume) consistency check of a volume: the key store
//! and its wrapping chains, every directory id, name, long-name side file and leftover, every
//! file header and block, every symlink target. Usable without the CLI:
//!
//! ```no_run
//! let opts = cmkfs::fsck::FsckOptions::default();
//! let report = cmkfs::fsck::check(std::path::Path::new("/srv/backing"), &opts, &mut cmkfs::fsck::NoProgress)?;
//! std::process::exit(report.exit_code);
//! # Ok::<(), cmkfs::fsck::FsckError>(())
//! ```
//!
//! The volume is opened read-only and nothing in BACKING is written, except that
//! `FsckOptions::quarantine` moves files whose content cannot be read in full into another
//! directory (never deleting anything), and `FsckOptions::repair` rewrites a damaged copy of
//! redundant metadata from its verified twin (never guessing; audited). See `docs/fsck.md`.

mod keystore;
mod progress;
mod quarantine;
mod report;
mod walk;

use std::path::{Path, PathBuf};

pub use progress::{NoProgress, Progress};
pub use report::{
    EXIT_CANNOT_CHECK, EXIT_CLEAN, EXIT_PROBLEMS, FsckError, KeyReport, Problem, ProblemCode,
    QuarantineReport, QuarantinedFile, Report, SharedCheck, Summary,
};

use crate::keys::{ServiceKey, default_service_key_path};
use crate::volume::{OpenOptions, Volume, lock_backing};

/// How to check.
#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// The service key file (default: where `cmkfs init` put it for this volume).
    pub service_key: Option<PathBuf>,
    /// Move files whose content cannot be read in full into this directory.
    pub quarantine: Option<PathBuf>,
    /// The customer-managed key, for volumes whose key store names one.
    pub cmk: Option<std::sync::Arc<dyn crate::keys::CustomerKey>>,
    /// Rewrite damaged, missing or stale copies of redundant metadata (volume config, key
    /// store, directory ids) from a verified copy; nothing else is written.
    pub repair: bool,
    /// Reaches the customer-managed keys of key scopes.
    pub connector: Option<std::sync::Arc<dyn crate::keys::CmkConnector>>,
    /// Check a shared volume that other hosts have mounted (`--shared`): no lock is taken,
    /// other hosts' operations in flight are not reported, `repair` is refused while any
    /// host has the volume mounted, and a volume that is not shared must not be mounted.
    pub shared: bool,
}

/// Walks over a shared volume at most: a problem must be found by every one of them.
const SHARED_PASSES: u32 = 3;

/// Opens the volume in `backing` read-only and checks it. `Err` means the volume could not
/// be checked at all (exit code 2); problems found are in the report (exit code 1).
pub fn check(
    backing: &Path,
    opts: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<Report, FsckError> {
    let setup = |e: &dyn std::fmt::Display| FsckError(e.to_string());
    let config = Volume::read_config(backing).map_err(|e| setup(&e))?;
    if opts.shared {
        return check_shared(backing, config.shared, opts, progress);
    }
    check_once(backing, opts, false, progress)
}

/// One check (one walk) of the volume in `backing`.
fn check_once(
    backing: &Path,
    opts: &FsckOptions,
    shared: bool,
    progress: &mut dyn Progress,
) -> Result<Report, FsckError> {
    let setup = |e: &dyn std::fmt::Display| FsckError(e.to_string());
    let config = Volume::read_config(backing).map_err(|e| setup(&e))?;
    let key_path = opts
        .service_key
        .clone()
        .unwrap_or_else(|| default_service_key_path(&config.volume_id));
    let service_key = ServiceKey::load(&key_path).map_err(|e| setup(&e))?;
    let vol = Volume::open(
        backing,
        service_key,
        &OpenOptions {
            read_only: true,
            cmk: opts.cmk.clone(),
            repair_metadata: opts.repair,
            audit: repair_audit(opts.repair),
            connector: opts.connector.clone(),
            ignore_scope_locks: true,
            ..Default::default()
        },
    )
    .map_err(|e| setup(&e))?;
    let mut report = check_volume_with(&vol, opts.quarantine.as_deref(), shared, progress)?;
    if opts.repair {
        remove_metadata_leftovers(&vol, &mut report);
    }
    Ok(report)
}

/// `--shared`: checks a volume that daemons on other hosts have mounted and change
/// meanwhile. No lock is taken (every daemon holds `mount.lock` shared); each file is checked
/// with its writers held off; temporary files and orphans are other hosts' operations in
/// flight (or their leftovers), listed apart; and a problem is reported only if it is still
/// there in a second and third walk, which drops what was in flight in an earlier one
/// (renames, long names half made, key store changes). A volume that is not shared is
/// checked as an unmounted one, under its mount lock: refused while it is mounted.
fn check_shared(
    backing: &Path,
    is_shared: bool,
    opts: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<Report, FsckError> {
    if !is_shared {
        let _lock = lock_backing(backing, Path::new("(cmkfs fsck --shared)"), true).map_err(|e| {
            FsckError(format!(
                "{e}; it is not a shared volume, so --shared cannot check it while it is mounted (a plain `cmkfs fsck` checks it read-only)"
            ))
        })?;
        return check_once(backing, opts, false, progress);
    }
    let hosts: Vec<_> = crate::volume::list_hosts(backing)
        .map_err(|e| FsckError(e.to_string()))?
        .into_iter()
        .filter(|h| !h.stale)
        .collect();
    if opts.repair && !hosts.is_empty() {
        let list = hosts
            .iter()
            .map(|h| format!("{} (pid {}) at {}", h.host, h.pid, h.mountpoint.display()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(FsckError(format!(
            "--repair is refused while other hosts have the shared volume mounted: {list}; unmount them first (a check without --repair works while they are mounted)"
        )));
    }
    if opts.repair || opts.quarantine.is_some() {
        // No host has it mounted: the exclusive lock of the plain path keeps it so.
        return check_once(backing, opts, false, progress);
    }
    let mut report = check_once(backing, opts, true, progress)?;
    let mut passes = 1;
    while !report.problems.is_empty() && passes < SHARED_PASSES {
        std::thread::sleep(std::time::Duration::from_millis(500 * u64::from(passes)));
        let again = check_once(backing, opts, true, &mut NoProgress)?;
        passes += 1;
        let key = |p: &Problem| (p.code, p.backing_path.clone());
        let earlier: std::collections::HashSet<_> = report.problems.iter().map(key).collect();
        let before = report.problems.len();
        let mut next = again;
        next.problems.retain(|p| earlier.contains(&key(p)));
        tracing::debug!(
            pass = passes,
            before,
            after = next.problems.len(),
            "shared check: problems confirmed by another walk"
        );
        report = next;
    }
    report.summary.bad_blocks = report
        .problems
        .iter()
        .filter(|p| p.code == ProblemCode::BadBlocks)
        .map(|p| p.blocks.len() as u64)
        .sum();
    report.shared = Some(SharedCheck { hosts, passes });
    report.finish();
    Ok(report)
}

/// `--repair`: removes the orphans of the metadata directory: temporary files that
/// interrupted metadata writes left (an atomic write renames its temp file into place or
/// leaves the old copies as they were, so such a file holds nothing the volume needs), and
/// hole maps and long-symlink records of files that no longer exist (an unnamed `O_TMPFILE`
/// file's map after a crash, a removal cut short) when every file was read. Audited. Refused (left reported) while the
/// volume is mounted: the daemon may be writing that very file, or creating its owner.
fn remove_metadata_leftovers(vol: &Volume, report: &mut Report) {
    let Ok(_lock) = lock_backing(vol.backing(), Path::new("(cmkfs fsck --repair)"), false) else {
        return;
    };
    let meta = format!("{}/", crate::format::META_DIR);
    // A map or record looks orphaned also when its file could not be read: removed only
    // when every file was.
    let owners_all_read = report
        .problems
        .iter()
        .all(|p| matches!(p.code, ProblemCode::Orphan | ProblemCode::OrphanSideFile));
    let audit = repair_audit(true);
    let mut kept = Vec::new();
    for p in std::mem::take(&mut report.problems) {
        let leftover = p.code == ProblemCode::Orphan
            && p.backing_path.starts_with(&meta)
            && (p.message.contains("leftover temporary file") || owners_all_read);
        if leftover && std::fs::remove_file(vol.backing().join(&p.backing_path)).is_ok() {
            let message = format!("removed {}: {}", p.backing_path, p.message);
            audit.record(
                crate::audit::AuditEvent::new(
                    crate::audit::AuditOp::MetadataRepair,
                    p.backing_path.clone(),
                    crate::audit::AuditResult::Ok,
                )
                .detail(message.clone()),
            );
            report.repaired.push(message);
        } else {
            kept.push(p);
        }
    }
    report.problems = kept;
    report.finish();
}

/// The audit log that records `--repair`'s rewrites (the default log; none without repair).
fn repair_audit(repair: bool) -> std::sync::Arc<crate::audit::AuditLog> {
    let log = if repair {
        crate::audit::AuditLog::open(&crate::audit::default_audit_log_path()).unwrap_or_else(|e| {
            tracing::warn!("audit log unavailable, repairs are not audited: {e}");
            crate::audit::AuditLog::disabled()
        })
    } else {
        crate::audit::AuditLog::disabled()
    };
    std::sync::Arc::new(log)
}

/// Checks an already opened volume (read-only is enough, also with `quarantine`, which
/// moves files with plain renames). `quarantine` is validated (outside the backing
/// directory, empty or a quarantine of this volume) before anything is checked, and needs
/// the volume's mount lock: it fails if the volume is mounted.
pub fn check_volume(
    vol: &Volume,
    quarantine: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<Report, FsckError> {
    check_volume_with(vol, quarantine, false, progress)
}

/// `check_volume`; `shared`: other hosts have the volume mounted (`--shared`).
fn check_volume_with(
    vol: &Volume,
    quarantine: Option<&Path>,
    shared: bool,
    progress: &mut dyn Progress,
) -> Result<Report, FsckError> {
    let config = vol.config();
    // Moving files out from under a running daemon (which may be writing them) is refused:
    // take the mount lock for the whole check, so no mount starts meanwhile either.
    let mut _lock = None;
    let mut qdir = None;
    if let Some(d) = quarantine {
        quarantine::check_dir(vol.backing(), d, &config.volume_id)?;
        _lock = Some(lock_backing(vol.backing(), Path::new("(cmkfs fsck --quarantine)"), false).map_err(|e| {
            FsckError(format!("{e}; unmount it before --quarantine (a check without it works while mounted)"))
        })?);
        qdir = Some(quarantine::prepare_dir(
            vol.backing(),
            d,
            &config.volume_id,
        )?);
    }
    let mut report = Report::new(
        vol.backing().to_path_buf(),
        config.volume_id.clone(),
        config.block_size,
    );
    for ev in vol.metadata_events() {
        if ev.repaired {
            report.repaired.push(ev.message);
        } else {
            report.push(Problem {
                code: ProblemCode::MetadataCopy,
                backing_path: ev.copy,
                path: None,
                kind: "metadata".into(),
                blocks: Vec::new(),
                key: None,
                message: ev.message,
            });
        }
    }
    let mut keys = keystore::check_key_store(vol, &mut report);
    let candidates = {
        let mut walker = walk::Walker::new(vol, &mut report, progress, &mut keys, shared);
        walker.walk()?;
        walker.into_candidates()
    };
    keystore::record_usage(&keys, &mut report);
    if let Some(dir) = &qdir {
        report.quarantine = Some(quarantine::quarantine(vol, dir, &candidates));
    }
    report.finish();
    Ok(report)
}
