//! Volume metadata when a volume is opened: `volume.json` and the key store read from their
//! two copies (see `meta_copies`), damaged or stale copies rewritten when the volume may be
//! written, version-1 volumes upgraded in place (format 2), and the record of what was found
//! and repaired (logged, audited as `MetadataRepair`, counted for `status`).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::audit::{AuditEvent, AuditLog, AuditOp, AuditResult};
use crate::format::{KeyStore, META_DIR, META_FORMAT_VERSION, VolumeConfig};
use crate::keys::KeyStoreFile;
use crate::meta_copies::{self, Finding, Loaded, MetaError, Record};

use super::{Result, VolumeError};

/// One damaged, missing or stale metadata copy found since the volume was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaEvent {
    /// The copy, relative to the backing directory (`.cmkfs/keystore.json.2`, `a/b/.cmkfs.dirid`).
    pub copy: String,
    pub message: String,
    pub repaired: bool,
}

/// What was found and repaired, shared by every opener of the volume.
pub(super) struct MetaLog {
    events: Mutex<Vec<MetaEvent>>,
    repairs: AtomicU64,
    audit: std::sync::Arc<AuditLog>,
}

impl MetaLog {
    pub(super) fn new(audit: std::sync::Arc<AuditLog>) -> Self {
        MetaLog {
            events: Mutex::new(Vec::new()),
            repairs: AtomicU64::new(0),
            audit,
        }
    }

    /// Logs, audits (repairs only) and remembers one finding.
    pub(super) fn note(&self, copy: String, message: String, repaired: bool) {
        tracing::warn!("{message}");
        if repaired {
            self.repairs.fetch_add(1, Ordering::Relaxed);
            self.audit.record(
                AuditEvent::new(AuditOp::MetadataRepair, copy.clone(), AuditResult::Ok)
                    .detail(message.clone()),
            );
        }
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if ev.len() < 10_000 {
            ev.push(MetaEvent {
                copy,
                message,
                repaired,
            });
        }
    }

    pub(super) fn events(&self) -> Vec<MetaEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn repairs(&self) -> u64 {
        self.repairs.load(Ordering::Relaxed)
    }

    fn note_findings(&self, backing: &Path, findings: &[Finding]) {
        for f in findings {
            let rel = f
                .path
                .strip_prefix(backing)
                .unwrap_or(&f.path)
                .display()
                .to_string();
            self.note(rel, f.message.clone(), f.repaired);
        }
    }
}

/// Reads `volume.json` from its copies; with `repair`, rewrites a bad copy.
pub(super) fn read_config_copies(backing: &Path, repair: bool) -> Result<(VolumeConfig, Loaded)> {
    let setup = VolumeError::Setup;
    let meta = backing.join(META_DIR);
    let cfg_path = meta_copies::copy_path(&meta, Record::VolumeConfig, 1);
    let loaded =
        meta_copies::load(&meta, Record::VolumeConfig, None, repair).map_err(|e| match e {
            MetaError::Missing(_) => setup(format!(
                "{} is not a cmkfs volume ({} is missing; run `cmkfs init` first)",
                backing.display(),
                cfg_path.display()
            )),
            MetaError::Damaged(m) | MetaError::Io(m) => setup(m),
        })?;
    let config = VolumeConfig::parse(&loaded.content).map_err(|e| {
        setup(if loaded.legacy {
            format!(
                "{}: {e} (a version-1 volume config, kept in one copy only): restore with `cmkfs key restore {} --from FILE`",
                cfg_path.display(),
                backing.display()
            )
        } else {
            format!("{}: {e}", cfg_path.display())
        })
    })?;
    if let Some(id) = &loaded.volume_id
        && *id != config.volume_id
    {
        return Err(setup(format!(
            "{}: the copy is sealed for volume {id} but names volume {} (field: volume_id)",
            cfg_path.display(),
            config.volume_id
        )));
    }
    Ok((config, loaded))
}

/// Writes `config` as a new generation of both copies of `volume.json`; `what` names the
/// change for the error ("cannot {what} of BACKING: ...").
pub(super) fn save_config(backing: &Path, config: &VolumeConfig, what: &str) -> Result<()> {
    meta_copies::save(
        &backing.join(META_DIR),
        Record::VolumeConfig,
        &config.volume_id,
        &config.to_json(),
    )
    .map(|_| ())
    .map_err(|e| VolumeError::Setup(format!("cannot {what} of {}: {e}", backing.display())))
}

/// Reads both records for opening; repairs and upgrades (version 1 -> 2) when `repair`.
pub(super) fn open_records(
    backing: &Path,
    repair: bool,
    log: &MetaLog,
) -> Result<(VolumeConfig, KeyStore, KeyStoreFile)> {
    let (mut config, cfg) = read_config_copies(backing, repair)?;
    log.note_findings(backing, &cfg.findings);
    let file = KeyStoreFile::new(backing, &config.volume_id);
    let (mut store, ks) = file.load(repair)?;
    log.note_findings(backing, &ks.findings);
    if repair && (cfg.legacy || ks.legacy) {
        // Key store first: volume.json at format 2 marks a finished upgrade.
        if ks.legacy || store.format != META_FORMAT_VERSION {
            store.format = META_FORMAT_VERSION;
            file.save(&store)?;
        }
        if cfg.legacy || config.format != META_FORMAT_VERSION {
            config.format = META_FORMAT_VERSION;
            save_config(backing, &config, "upgrade the volume config to format 2")?;
        }
        tracing::info!(
            "upgraded the metadata of {} to format 2 (two self-checking copies)",
            backing.display()
        );
    }
    Ok((config, store, file))
}

/// One damaged copy of a directory id, as found (and maybe rewritten) when the directory
/// was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirIdFinding {
    pub copy: u8,
    pub message: String,
    pub repaired: bool,
}

impl super::Volume {
    /// The backing path of an open directory, for messages.
    pub(super) fn describe_dir(&self, dir: std::os::fd::BorrowedFd<'_>) -> String {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .unwrap_or_else(|_| self.backing.join("?"))
            .display()
            .to_string()
    }

    /// Reads the directory id of `dir` from its two copies; rewrites a damaged one from the
    /// verified copy (and upgrades a version-1 file) when the volume repairs metadata.
    pub(super) fn dir_id_of(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
    ) -> Result<crate::format::DirIdFile> {
        use super::dirid_copies::{DirIdCopy, read_copies};
        let copies = read_copies(dir);
        match (&copies.file, &copies.xattr) {
            (DirIdCopy::Valid(a), DirIdCopy::Valid(b)) if a == b => return Ok(*a),
            (DirIdCopy::Valid(a), DirIdCopy::Unsupported) => {
                self.warn_no_dirid_xattr();
                return Ok(*a);
            }
            _ => {}
        }
        let where_ = self.describe_dir(dir);
        if let (DirIdCopy::Valid(a), DirIdCopy::Valid(b)) = (&copies.file, &copies.xattr)
            && let Some(id) = self.scope_root_between(a, b)
        {
            let stale = || {
                Some("names the key from before the directory became a key scope root".to_string())
            };
            let r = super::ResolvedDirId {
                id,
                file_problem: if id == *a { None } else { stale() },
                xattr_problem: if id == *b { None } else { stale() },
                legacy: false,
            };
            self.fix_dir_id(dir, &where_, &r);
            return Ok(id);
        }
        let r = copies
            .resolve(&where_)
            .map_err(super::VolumeError::Integrity)?;
        self.fix_dir_id(dir, &where_, &r);
        Ok(r.id)
    }

    /// Two valid id copies of one directory that differ only in the key, where one names a
    /// key scope whose root is this directory: `scope create` was cut between the copies.
    /// The key store (written first) settles it: that copy.
    fn scope_root_between(
        &self,
        a: &crate::format::DirIdFile,
        b: &crate::format::DirIdFile,
    ) -> Option<crate::format::DirIdFile> {
        if a.dir_id != b.dir_id || a.key == b.key {
            return None;
        }
        let id = super::dir::hex(&a.dir_id);
        let find = || {
            let store = self.keys().store_snapshot();
            [a, b]
                .into_iter()
                .find(|c| {
                    store
                        .scope(c.key.scope)
                        .is_some_and(|s| s.root_dir_id == id)
                })
                .copied()
        };
        // Shared mode: another host may be making this directory a scope root right now,
        // its key store not yet taken in here.
        find().or_else(|| {
            (self.shared() && self.keys().reload_store().is_ok())
                .then(find)
                .flatten()
        })
    }

    /// Rewrites the copies `r` says are damaged (only when the volume repairs metadata) and
    /// notes each damaged copy (logged; audited and counted when rewritten). A version-1
    /// directory is upgraded without a note. Returns what was found.
    pub fn fix_dir_id(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        where_: &str,
        r: &super::ResolvedDirId,
    ) -> Vec<DirIdFinding> {
        use super::dirid_copies::{describe, is_unsupported, replace_file, write_xattr};
        let mut out = Vec::new();
        if r.legacy {
            if self.repair_metadata {
                match write_xattr(dir, &r.id).and_then(|()| replace_file(dir, &r.id)) {
                    Ok(()) => {}
                    Err(e) if is_unsupported(&e) => self.warn_no_dirid_xattr(),
                    Err(e) => tracing::warn!(
                        "cannot upgrade the directory id of {where_} to format 2: {e}"
                    ),
                }
            }
            return out;
        }
        // The xattr first: a crash then leaves the file as it was.
        for (copy, problem) in [(2u8, &r.xattr_problem), (1, &r.file_problem)] {
            let Some(problem) = problem else { continue };
            let result = if !self.repair_metadata {
                Err(format!(
                    "not rewritten now (`cmkfs fsck --repair {}` rewrites it)",
                    self.backing.display()
                ))
            } else if copy == 2 {
                write_xattr(dir, &r.id).map_err(|e| {
                    if is_unsupported(&e) {
                        self.warn_no_dirid_xattr();
                    }
                    e.to_string()
                })
            } else {
                replace_file(dir, &r.id).map_err(|e| e.to_string())
            };
            let repaired = result.is_ok();
            let message = describe(where_, copy, problem, result);
            let dir_rel = match std::path::Path::new(where_).strip_prefix(&self.backing) {
                Ok(r) if r.as_os_str().is_empty() => ".".to_string(),
                Ok(r) => r.display().to_string(),
                Err(_) => where_.to_string(),
            };
            let rel = if copy == 1 {
                format!("{dir_rel}/{}", crate::format::DIRID_FILE_NAME)
            } else {
                format!("{dir_rel} (xattr {})", crate::format::DIRID_XATTR_NAME)
            };
            self.meta_log.note(rel, message.clone(), repaired);
            out.push(DirIdFinding {
                copy,
                message,
                repaired,
            });
        }
        out
    }

    /// Sets both copies of a new directory's id (before it is renamed into place).
    pub(super) fn write_new_dir_id(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        id: &crate::format::DirIdFile,
    ) -> Result<()> {
        super::dirid_copies::create_file(dir, id)?;
        if let Err(e) = super::dirid_copies::write_xattr(dir, id) {
            if super::dirid_copies::is_unsupported(&e) {
                self.warn_no_dirid_xattr();
            } else {
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn warn_no_dirid_xattr(&self) {
        if !self
            .no_dirid_xattr
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the backing filesystem of {} has no user xattrs: directory ids are kept in one copy only (the {} file), so a damaged one loses that directory's names",
                self.backing.display(),
                crate::format::DIRID_FILE_NAME
            );
        }
    }
}
