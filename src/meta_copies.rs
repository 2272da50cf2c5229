//! The two copies of each metadata record in `.cmkfs/` (format 2): `volume.json` and
//! `volume.json.2`, `keystore.json` and `keystore.json.2`, each a sealed copy
//! (`format::SealedCopy`: generation, volume id, checksum). Writes go to copy 1 (temp file,
//! fsync, rename, fsync of the directory), then to copy 2 the same way, so a crash at any
//! point leaves at least one complete, valid copy. Reads take the valid copy with the highest
//! generation and, when allowed, rewrite a damaged, missing or stale other copy from it.
//! Knows nothing of what the records mean; callers parse the content and audit repairs.

use std::path::{Path, PathBuf};

use crate::atomic_file::write_atomic;
use crate::format::{SealedCopy, is_sealed};

/// Which record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    VolumeConfig,
    KeyStore,
}

impl Record {
    pub fn file_name(self) -> &'static str {
        match self {
            Record::VolumeConfig => "volume.json",
            Record::KeyStore => "keystore.json",
        }
    }

    /// The record name in the sealed header.
    pub fn tag(self) -> &'static str {
        match self {
            Record::VolumeConfig => "volume",
            Record::KeyStore => "keystore",
        }
    }

    /// For messages.
    pub fn label(self) -> &'static str {
        match self {
            Record::VolumeConfig => "volume config",
            Record::KeyStore => "key store",
        }
    }
}

/// Path of copy `n` (1 or 2) of `record` in the metadata directory `meta_dir`.
pub fn copy_path(meta_dir: &Path, record: Record, n: u8) -> PathBuf {
    if n == 1 {
        meta_dir.join(record.file_name())
    } else {
        meta_dir.join(format!("{}.{n}", record.file_name()))
    }
}

/// What one copy on disk is.
#[derive(Clone, Debug)]
pub enum CopyState {
    Valid(SealedCopy),
    /// A version-1 record (plain JSON, no checksum); only copy 1 can be one.
    Legacy(Vec<u8>),
    Missing,
    Damaged(String),
}

/// A damaged, missing or stale copy found while reading, and whether it was rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub record: Record,
    pub copy: u8,
    pub path: PathBuf,
    pub message: String,
    pub repaired: bool,
}

/// The record as read.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub content: Vec<u8>,
    /// 0 for a version-1 record.
    pub generation: u64,
    /// Read from a version-1 (single, unchecked) file.
    pub legacy: bool,
    /// The volume id the copy is bound to (None for a version-1 record).
    pub volume_id: Option<String>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Neither copy exists (not a volume, or not initialised).
    #[error("{0}")]
    Missing(String),
    /// No copy is valid.
    #[error("{0}")]
    Damaged(String),
    #[error("{0}")]
    Io(String),
}

/// Reads copy `n` and says what it is.
pub fn read_copy(
    meta_dir: &Path,
    record: Record,
    n: u8,
    expected_volume_id: Option<&str>,
) -> CopyState {
    let path = copy_path(meta_dir, record, n);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CopyState::Missing,
        Err(e) => return CopyState::Damaged(format!("cannot be read ({e})")),
    };
    if !is_sealed(&bytes) {
        return if n == 1 && bytes.first() == Some(&b'{') {
            CopyState::Legacy(bytes)
        } else {
            CopyState::Damaged("has a damaged header line (field: magic)".into())
        };
    }
    match SealedCopy::decode(&bytes, record.tag()) {
        Ok(c) => match expected_volume_id {
            Some(id) if c.volume_id != id => CopyState::Damaged(format!(
                "belongs to volume {}, not {id} (field: volume id)",
                c.volume_id
            )),
            _ => CopyState::Valid(c),
        },
        Err(crate::format::FormatError::Field("checksum")) => {
            CopyState::Damaged("fails its checksum".into())
        }
        Err(e) => CopyState::Damaged(format!("has a damaged header line ({e})")),
    }
}

fn restore_hint(meta_dir: &Path) -> String {
    let backing = meta_dir.parent().unwrap_or(meta_dir);
    format!(
        "restore with `cmkfs key restore {} --from FILE` (a backup made by `cmkfs key backup`; see docs/recovery.md)",
        backing.display()
    )
}

fn fsck_hint(meta_dir: &Path) -> String {
    let backing = meta_dir.parent().unwrap_or(meta_dir);
    format!("`cmkfs fsck --repair {}` rewrites it", backing.display())
}

/// Reads `record`: the valid copy with the highest generation. With `repair`, a damaged,
/// missing or stale other copy is rewritten from it. `expected_volume_id` binds the copies
/// to a volume (the key store's copies to `volume.json`'s id).
pub fn load(
    meta_dir: &Path,
    record: Record,
    expected_volume_id: Option<&str>,
    repair: bool,
) -> Result<Loaded, MetaError> {
    let states = [
        read_copy(meta_dir, record, 1, expected_volume_id),
        read_copy(meta_dir, record, 2, expected_volume_id),
    ];
    let valid: Vec<(u8, &SealedCopy)> = states
        .iter()
        .zip([1u8, 2])
        .filter_map(|(s, n)| match s {
            CopyState::Valid(c) => Some((n, c)),
            _ => None,
        })
        .collect();
    if let [(_, a), (_, b)] = valid[..]
        && a.volume_id != b.volume_id
    {
        return Err(MetaError::Damaged(format!(
            "the two copies of the {} in {} belong to different volumes ({} and {}); {}",
            record.label(),
            meta_dir.display(),
            a.volume_id,
            b.volume_id,
            restore_hint(meta_dir)
        )));
    }
    let Some(&(best_n, best)) = valid.iter().max_by_key(|(n, c)| (c.generation, 2 - n)) else {
        return no_valid_copy(meta_dir, record, &states);
    };
    let other_n = 3 - best_n;
    let problem = match &states[other_n as usize - 1] {
        CopyState::Valid(c) if c.generation == best.generation => None,
        CopyState::Valid(c) => Some(format!(
            "is stale (generation {} < {})",
            c.generation, best.generation
        )),
        CopyState::Legacy(_) => Some("is an unchecked version-1 record".into()),
        CopyState::Missing => Some("is missing".into()),
        CopyState::Damaged(why) => Some(why.clone()),
    };
    let mut findings = Vec::new();
    if let Some(problem) = problem {
        let path = copy_path(meta_dir, record, other_n);
        let repaired = repair && write_atomic(&path, &best.encode(), 0o600).is_ok();
        let action = if repaired {
            format!("using copy {best_n} and rewriting copy {other_n}")
        } else if repair {
            format!("using copy {best_n}; rewriting copy {other_n} failed")
        } else {
            format!(
                "using copy {best_n} (nothing written now; {})",
                fsck_hint(meta_dir)
            )
        };
        findings.push(Finding {
            record,
            copy: other_n,
            message: format!(
                "copy {other_n} of the {} ({}) {problem}; {action}",
                record.label(),
                path.display()
            ),
            path,
            repaired,
        });
    }
    Ok(Loaded {
        content: best.content.clone(),
        generation: best.generation,
        legacy: false,
        volume_id: Some(best.volume_id.clone()),
        findings,
    })
}

fn no_valid_copy(
    meta_dir: &Path,
    record: Record,
    states: &[CopyState; 2],
) -> Result<Loaded, MetaError> {
    match states {
        [CopyState::Legacy(bytes), other] => {
            let mut findings = Vec::new();
            if let CopyState::Damaged(why) = other {
                let path = copy_path(meta_dir, record, 2);
                findings.push(Finding {
                    record,
                    copy: 2,
                    message: format!(
                        "copy 2 of the {} ({}) {why}; using the version-1 copy 1",
                        record.label(),
                        path.display()
                    ),
                    path,
                    repaired: false,
                });
            }
            Ok(Loaded {
                content: bytes.clone(),
                generation: 0,
                legacy: true,
                volume_id: None,
                findings,
            })
        }
        [CopyState::Missing, CopyState::Missing] => Err(MetaError::Missing(format!(
            "{} is missing",
            copy_path(meta_dir, record, 1).display()
        ))),
        [a, b] => {
            let why = |s: &CopyState| match s {
                CopyState::Missing => "is missing".to_string(),
                CopyState::Damaged(w) => w.clone(),
                CopyState::Legacy(_) | CopyState::Valid(_) => "is not usable".to_string(),
            };
            Err(MetaError::Damaged(format!(
                "both copies of the {} are damaged (copy 1, {}, {}; copy 2, {}, {}): {}",
                record.label(),
                copy_path(meta_dir, record, 1).display(),
                why(a),
                copy_path(meta_dir, record, 2).display(),
                why(b),
                restore_hint(meta_dir)
            )))
        }
    }
}

/// The highest generation of a valid copy on disk (0 if none).
pub fn current_generation(meta_dir: &Path, record: Record, volume_id: &str) -> u64 {
    [1, 2]
        .iter()
        .filter_map(|n| match read_copy(meta_dir, record, *n, Some(volume_id)) {
            CopyState::Valid(c) => Some(c.generation),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Writes `content` as a new generation of `record`: copy 1, durably, then copy 2.
pub fn save(
    meta_dir: &Path,
    record: Record,
    volume_id: &str,
    content: &[u8],
) -> std::io::Result<u64> {
    let generation = current_generation(meta_dir, record, volume_id) + 1;
    let bytes = SealedCopy {
        record: record.tag().to_string(),
        generation,
        volume_id: volume_id.to_string(),
        content: content.to_vec(),
    }
    .encode();
    let one = copy_path(meta_dir, record, 1);
    let before = std::fs::read(&one).ok();
    write_atomic(&one, &bytes, 0o600)?;
    if let Err(e) = write_atomic(&copy_path(meta_dir, record, 2), &bytes, 0o600) {
        // The write failed (ENOSPC, EIO): put copy 1 back, so the caller's "failed" means the
        // record did not change. If that fails too, copy 1 is the newer valid copy and wins.
        if let Some(b) = before {
            let _ = write_atomic(&one, &b, 0o600);
        }
        return Err(e);
    }
    Ok(generation)
}

/// Copies the best valid copy of `record` from `from_meta` into both copies in `to_meta`
/// (a version-1 record into copy 1 only), unless they already hold those bytes.
pub fn copy_record(from_meta: &Path, to_meta: &Path, record: Record) -> Result<(), MetaError> {
    let l = load(from_meta, record, None, false)?;
    let bytes = match &l.volume_id {
        Some(id) => SealedCopy {
            record: record.tag().to_string(),
            generation: l.generation,
            volume_id: id.clone(),
            content: l.content.clone(),
        }
        .encode(),
        None => l.content.clone(),
    };
    let copies: &[u8] = if l.legacy { &[1] } else { &[1, 2] };
    for n in copies {
        let p = copy_path(to_meta, record, *n);
        if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
            write_atomic(&p, &bytes, 0o600)
                .map_err(|e| MetaError::Io(format!("cannot write {}: {e}", p.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn damaged_stale_and_missing_copies_are_repaired() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path();
        assert!(matches!(
            load(m, Record::KeyStore, Some(ID), true),
            Err(MetaError::Missing(_))
        ));
        assert_eq!(save(m, Record::KeyStore, ID, b"{\"a\":1}").unwrap(), 1);
        let old = std::fs::read(copy_path(m, Record::KeyStore, 2)).unwrap();
        assert_eq!(save(m, Record::KeyStore, ID, b"{\"a\":2}").unwrap(), 2);
        // Stale copy 2 (a crash between the two writes).
        std::fs::write(copy_path(m, Record::KeyStore, 2), &old).unwrap();
        let l = load(m, Record::KeyStore, Some(ID), false).unwrap();
        assert_eq!(l.content, b"{\"a\":2}");
        assert!(l.findings[0].message.contains("copy 2 of the key store"));
        assert!(l.findings[0].message.contains("stale"));
        assert!(!l.findings[0].repaired);
        let l = load(m, Record::KeyStore, Some(ID), true).unwrap();
        assert!(l.findings[0].repaired);
        assert!(
            load(m, Record::KeyStore, Some(ID), true)
                .unwrap()
                .findings
                .is_empty()
        );
        // A flipped byte in copy 1.
        let p1 = copy_path(m, Record::KeyStore, 1);
        let mut b = std::fs::read(&p1).unwrap();
        let last = b.len() - 2;
        b[last] ^= 1;
        std::fs::write(&p1, &b).unwrap();
        let l = load(m, Record::KeyStore, Some(ID), true).unwrap();
        assert_eq!(l.content, b"{\"a\":2}");
        assert!(
            l.findings[0]
                .message
                .starts_with("copy 1 of the key store (")
                && l.findings[0]
                    .message
                    .ends_with("fails its checksum; using copy 2 and rewriting copy 1"),
            "{}",
            l.findings[0].message
        );
        // Another volume's copy is not taken.
        assert!(matches!(
            load(m, Record::KeyStore, Some("ff"), false),
            Err(MetaError::Damaged(_))
        ));
        // Both damaged.
        std::fs::write(&p1, b"x").unwrap();
        std::fs::remove_file(copy_path(m, Record::KeyStore, 2)).unwrap();
        let Err(MetaError::Damaged(msg)) = load(m, Record::KeyStore, Some(ID), true) else {
            panic!("both copies damaged must fail");
        };
        assert!(
            msg.contains("both copies of the key store are damaged"),
            "{msg}"
        );
        assert!(msg.contains("cmkfs key restore"), "{msg}");
    }

    #[test]
    fn a_version_1_record_is_read_as_legacy() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(copy_path(d.path(), Record::VolumeConfig, 1), b"{}").unwrap();
        let l = load(d.path(), Record::VolumeConfig, None, true).unwrap();
        assert!(l.legacy);
        assert!(!copy_path(d.path(), Record::VolumeConfig, 2).exists());
    }
}
