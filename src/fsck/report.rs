//! What a check found: the report types (serialized as the `--json` document) and the exit
//! codes.

use std::path::PathBuf;

use serde::Serialize;

use crate::format::{DataKeyRef, WrapperId};

/// Exit code: the volume is clean.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: problems were found.
pub const EXIT_PROBLEMS: i32 = 1;
/// Exit code: the volume could not be checked (does not open, wrong key, unreadable).
pub const EXIT_CANNOT_CHECK: i32 = 2;

/// The kind of a problem. Serialized in snake case (`"bad_blocks"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// A key-store record does not unwrap with the available keys.
    KeyUnwrap,
    /// A key-store record has an empty wrapping chain: the data key is stored in the clear.
    KeyNotWrapped,
    /// Two key-store records have the same (scope, epoch).
    KeyDuplicate,
    /// An object references a data key that is not in the key store.
    KeyMissing,
    /// An object references a data key whose record does not unwrap.
    KeyUnavailable,
    /// A directory's `.cmkfs.dirid` is missing or invalid: its names cannot be decrypted.
    DirId,
    /// An entry name does not decrypt.
    Name,
    /// An entry name decrypts but is not where a lookup of that name looks.
    MisplacedName,
    /// A long-name entry without its side file.
    MissingSideFile,
    /// A long-name side file without its entry.
    OrphanSideFile,
    /// A leftover of an interrupted operation (`.tmp.mkdir.*`, `.tmp.*`).
    Orphan,
    /// An entry cmkfs does not write (a reserved name, not UTF-8, an unknown file type).
    Unknown,
    /// A file header does not decode.
    Header,
    /// A ciphertext length no valid file has (a partial block of 1..=28 bytes).
    Length,
    /// Blocks that fail authentication.
    BadBlocks,
    /// A symlink target does not decrypt.
    Symlink,
    /// The backing filesystem refused to read an entry.
    Io,
    /// One copy of the volume config or the key store is damaged, missing or stale (the
    /// other copy is used; `--repair` rewrites it).
    MetadataCopy,
    /// One copy of a directory id (`.cmkfs.dirid` or xattr `user.cmkfs.dirid`) is damaged
    /// or missing (the other copy is used; `--repair` rewrites it).
    DirIdCopy,
}

/// One problem with one backing object.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub code: ProblemCode,
    /// Backing path relative to BACKING ("." for the root).
    pub backing_path: String,
    /// Plaintext path ("/dir/file"), when every name on the way decrypts.
    pub path: Option<String>,
    /// "file", "dir", "symlink", "fifo", "socket", "char_device", "block_device", "key", ...
    pub kind: String,
    /// Bad block indexes (`bad_blocks`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<u64>,
    /// The data key concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<DataKeyRef>,
    pub message: String,
}

impl Problem {
    /// How the object is named in human output: the plaintext path, else the backing path.
    pub fn display_name(&self) -> String {
        match &self.path {
            Some(p) => format!("{p} [backing {}]", self.backing_path),
            None => format!("[backing {}]", self.backing_path),
        }
    }
}

/// One data key of the key store.
#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    pub scope: u32,
    pub epoch: u32,
    pub created: u64,
    /// The epoch new files of the scope use.
    pub current: bool,
    pub wrapped_by: Vec<WrapperId>,
    /// Whether the whole wrapping chain unwrapped with the available keys.
    pub unwraps: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Headers, directory ids and symlink targets that reference the key.
    pub used_by: u64,
}

/// Counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub special: u64,
    /// Blocks that were decrypted and authenticated (hard links count once).
    pub blocks_checked: u64,
    pub bad_blocks: u64,
    /// Ciphertext bytes read.
    pub bytes_checked: u64,
    pub keys: u64,
    pub problems: u64,
    pub quarantined: u64,
    /// Metadata copies rewritten from a verified copy (`--repair`).
    pub repaired: u64,
    /// `--shared`: entries of other hosts' operations in flight (or their leftovers); not
    /// problems.
    pub in_flight: u64,
}

/// `--shared`: the check of a shared volume that other hosts may have mounted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SharedCheck {
    /// The hosts that had the volume mounted when the check started (live leases).
    pub hosts: Vec<crate::volume::HostLease>,
    /// Walks over the volume: a problem is reported only if every walk found it (another
    /// host's change in flight is gone by the next one).
    pub passes: u32,
}

/// One file moved into the quarantine directory.
#[derive(Clone, Debug, Serialize)]
pub struct QuarantinedFile {
    pub backing_path: String,
    pub path: Option<String>,
    /// Where the file went.
    pub to: PathBuf,
    /// The note written next to it.
    pub note: PathBuf,
    /// Where its long-name side file went, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_file: Option<PathBuf>,
    pub bad_blocks: Vec<u64>,
}

/// What `--quarantine` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QuarantineReport {
    pub dir: PathBuf,
    pub moved: Vec<QuarantinedFile>,
    /// Files that should have been moved but could not be (they stay in place).
    pub errors: Vec<String>,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub backing: PathBuf,
    pub volume_id: String,
    pub block_size: u32,
    /// No problems found.
    pub clean: bool,
    pub exit_code: i32,
    pub summary: Summary,
    pub keys: Vec<KeyReport>,
    pub problems: Vec<Problem>,
    /// `--shared`: temporary files, orphan side files and hole maps of other hosts'
    /// operations in flight, or leftovers of their crashes (not problems).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedCheck>,
    /// What `--repair` rewrote: one sentence per metadata copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineReport>,
}

impl Report {
    pub(super) fn new(backing: PathBuf, volume_id: String, block_size: u32) -> Self {
        Report {
            backing,
            volume_id,
            block_size,
            clean: true,
            exit_code: EXIT_CLEAN,
            summary: Summary::default(),
            keys: Vec::new(),
            problems: Vec::new(),
            in_flight: Vec::new(),
            shared: None,
            repaired: Vec::new(),
            quarantine: None,
        }
    }

    pub(super) fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    /// Fills in the derived fields (`clean`, `exit_code`, counts).
    pub(super) fn finish(&mut self) {
        self.summary.problems = self.problems.len() as u64;
        self.summary.in_flight = self.in_flight.len() as u64;
        self.summary.keys = self.keys.len() as u64;
        self.summary.repaired = self.repaired.len() as u64;
        self.summary.quarantined = self
            .quarantine
            .as_ref()
            .map(|q| q.moved.len() as u64)
            .unwrap_or(0);
        self.clean = self.problems.is_empty()
            && self.quarantine.as_ref().is_none_or(|q| q.errors.is_empty());
        self.exit_code = if self.clean {
            EXIT_CLEAN
        } else {
            EXIT_PROBLEMS
        };
    }

    /// The problems grouped by object (backing path), in report order.
    pub fn by_object(&self) -> Vec<(&str, Vec<&Problem>)> {
        let mut out: Vec<(&str, Vec<&Problem>)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for p in &self.problems {
            match index.get(p.backing_path.as_str()) {
                Some(&i) => out[i].1.push(p),
                None => {
                    index.insert(p.backing_path.as_str(), out.len());
                    out.push((&p.backing_path, vec![p]));
                }
            }
        }
        out
    }
}

/// Why a volume could not be checked (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FsckError(pub String);
