//! The walk over the backing tree: every directory (id file, names, long-name side files,
//! leftovers), every regular file (header, length, every block authenticated through
//! `Volume::read`), every symlink target. Only reads; files to quarantine are collected as
//! candidates for `quarantine`.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;

use crate::format::{DataKeyRef, HEADER_LEN};
use crate::volume::{EntryName, FileKind, HeaderState, ScanDir, ScanEntry, Volume, VolumeError};

use super::keystore::KeyStates;
use super::progress::Progress;
use super::report::{FsckError, Problem, ProblemCode, Report};

/// A file `--quarantine` should move: its content cannot be read in full.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    /// The backing directory holding it, relative to BACKING.
    pub dir_rel: PathBuf,
    /// Its backing entry name.
    pub entry: OsString,
    /// Its long-name side file (in the same directory), if any.
    pub side_file: Option<String>,
    pub path: Option<String>,
    pub bad_blocks: Vec<u64>,
    pub reasons: Vec<String>,
}

/// One finding about a file's content, before it is attached to a path.
#[derive(Clone, Debug)]
struct Finding {
    code: ProblemCode,
    blocks: Vec<u64>,
    key: Option<DataKeyRef>,
    message: String,
}

/// What checking one inode's content found (shared by its hard links).
#[derive(Debug, Default)]
struct Verdict {
    findings: Vec<Finding>,
    /// Content that no key in the store can read back in full: quarantine it.
    unrecoverable: bool,
    bad_blocks: Vec<u64>,
    blocks: u64,
    bytes: u64,
    /// The file disappeared while being checked (mounted volume).
    vanished: bool,
}

impl Verdict {
    fn add(&mut self, code: ProblemCode, key: Option<DataKeyRef>, message: String) {
        self.findings.push(Finding {
            code,
            blocks: Vec::new(),
            key,
            message,
        });
    }
}

pub(super) struct Walker<'a> {
    vol: &'a Volume,
    report: &'a mut Report,
    progress: &'a mut dyn Progress,
    keys: &'a mut KeyStates,
    inodes: HashMap<u64, Rc<Verdict>>,
    candidates: Vec<Candidate>,
    /// Side records of long symlink targets that some symlink names.
    long_links: HashSet<String>,
    /// Hole map names of the files seen (`<file id>-<scope>-<epoch>`).
    hole_maps: HashSet<String>,
    /// `--shared`: other hosts change the volume while it is walked.
    shared: bool,
}

pub(super) fn kind_name(k: Option<FileKind>) -> &'static str {
    match k {
        Some(FileKind::File) => "file",
        Some(FileKind::Dir) => "dir",
        Some(FileKind::Symlink) => "symlink",
        Some(FileKind::Fifo) => "fifo",
        Some(FileKind::Socket) => "socket",
        Some(FileKind::CharDevice) => "char_device",
        Some(FileKind::BlockDevice) => "block_device",
        None => "unknown",
    }
}

fn rel_string(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

fn join_plain(parent: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn is_enoent(e: &VolumeError) -> bool {
    matches!(e, VolumeError::Io(io) if io.raw_os_error() == Some(libc::ENOENT))
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        vol: &'a Volume,
        report: &'a mut Report,
        progress: &'a mut dyn Progress,
        keys: &'a mut KeyStates,
        shared: bool,
    ) -> Self {
        Walker {
            shared,
            vol,
            report,
            progress,
            keys,
            inodes: HashMap::new(),
            candidates: Vec::new(),
            long_links: HashSet::new(),
            hole_maps: HashSet::new(),
        }
    }

    pub(super) fn into_candidates(self) -> Vec<Candidate> {
        self.candidates
    }

    fn problem(
        &mut self,
        code: ProblemCode,
        rel: &Path,
        path: Option<&str>,
        kind: &str,
        message: String,
    ) {
        self.push(Problem {
            code,
            backing_path: rel_string(rel),
            path: path.map(str::to_string),
            kind: kind.into(),
            blocks: Vec::new(),
            key: None,
            message,
        });
    }

    fn push(&mut self, p: Problem) {
        // Another host's operation in flight, or its crash's leftover: not a problem of the
        // volume while other hosts may have it mounted.
        if self.shared && matches!(p.code, ProblemCode::Orphan | ProblemCode::OrphanSideFile) {
            self.report.in_flight.push(p);
            return;
        }
        self.progress.problem();
        self.report.push(p);
    }

    /// Walks the whole tree, depth first in backing-name order. Fails only when the backing
    /// root itself cannot be read.
    pub(super) fn walk(&mut self) -> Result<(), FsckError> {
        if self.progress.wants_total() {
            let total = total_bytes(self.vol.backing());
            self.progress.start(total);
        }
        let root = self.vol.scan_root().map_err(|e| {
            FsckError(format!(
                "cannot open backing directory {}: {e}",
                self.vol.backing().display()
            ))
        })?;
        let entries = self.vol.scan_entries(&root).map_err(|e| {
            FsckError(format!(
                "cannot list backing directory {}: {e}",
                self.vol.backing().display()
            ))
        })?;
        let mut stack: Vec<(PathBuf, Option<String>)> = Vec::new();
        self.check_dir(root, entries, PathBuf::new(), Some("/".into()), &mut stack);
        while let Some((rel, plain)) = stack.pop() {
            let opened = self.vol.scan_dir_at(&rel).and_then(|d| {
                let entries = self.vol.scan_entries(&d)?;
                Ok((d, entries))
            });
            match opened {
                Ok((d, entries)) => self.check_dir(d, entries, rel, plain, &mut stack),
                Err(e) if is_enoent(&e) => {}
                Err(e) => {
                    self.report.summary.dirs += 1;
                    self.problem(
                        ProblemCode::Io,
                        &rel,
                        plain.as_deref(),
                        "dir",
                        format!("cannot read directory: {e}"),
                    );
                }
            }
        }
        self.check_long_links();
        self.check_hole_maps();
        self.progress.finish();
        Ok(())
    }

    fn check_dir(
        &mut self,
        d: ScanDir,
        entries: Vec<ScanEntry>,
        rel: PathBuf,
        plain: Option<String>,
        stack: &mut Vec<(PathBuf, Option<String>)>,
    ) {
        self.report.summary.dirs += 1;
        self.progress
            .entry(plain.as_deref().unwrap_or(&rel_string(&rel)));
        let objects = entries.iter().filter(|e| e.name.is_object()).count();
        if let Some(err) = d.id_error() {
            let msg = format!("{err}: the names of its {objects} entries cannot be decrypted");
            self.problem(ProblemCode::DirId, &rel, plain.as_deref(), "dir", msg);
        } else if let Some(id) = d.id()
            && let Some((code, msg)) = self.keys.reference(id.key)
        {
            self.push(Problem {
                code,
                backing_path: rel_string(&rel),
                path: plain.clone(),
                kind: "dir".into(),
                blocks: Vec::new(),
                key: Some(id.key),
                message: format!(
                    "directory id {msg}: the names of its {objects} entries cannot be decrypted"
                ),
            });
        }
        for f in d.id_copy_findings() {
            if f.repaired {
                self.report.repaired.push(f.message.clone());
            } else {
                self.problem(
                    ProblemCode::DirIdCopy,
                    &rel,
                    plain.as_deref(),
                    "dir",
                    f.message.clone(),
                );
            }
        }
        let mut subdirs = Vec::new();
        for e in entries {
            let rel_e = rel.join(&e.entry);
            let plain_e = match (&plain, e.name.plain()) {
                (Some(p), Some(n)) => Some(join_plain(p, n)),
                _ => None,
            };
            let kind = kind_name(e.kind);
            if let Some(err) = &e.stat_error {
                self.problem(
                    ProblemCode::Io,
                    &rel_e,
                    plain_e.as_deref(),
                    kind,
                    format!("cannot stat: {err}"),
                );
                continue;
            }
            match &e.name {
                EntryName::DirId => {
                    if e.kind != Some(FileKind::File) {
                        self.problem(
                            ProblemCode::DirId,
                            &rel_e,
                            None,
                            kind,
                            "the directory id is not a regular file".into(),
                        );
                    }
                    continue;
                }
                EntryName::MetaDir => {
                    self.check_meta_dir(&rel_e);
                    continue;
                }
                EntryName::SideFile { entry, orphan } => {
                    if *orphan {
                        let msg = format!("long-name side file without its entry {entry}");
                        self.problem(ProblemCode::OrphanSideFile, &rel_e, None, kind, msg);
                    }
                    continue;
                }
                EntryName::TmpMkdir => {
                    let msg = "orphan: leftover of an interrupted mkdir (not part of the volume)"
                        .to_string();
                    self.problem(ProblemCode::Orphan, &rel_e, None, kind, msg);
                    continue;
                }
                EntryName::TmpFile => {
                    let msg = "orphan: leftover temporary file of an interrupted write".to_string();
                    self.problem(ProblemCode::Orphan, &rel_e, None, kind, msg);
                    continue;
                }
                EntryName::Unknown => {
                    self.problem(
                        ProblemCode::Unknown,
                        &rel_e,
                        None,
                        kind,
                        "not an entry cmkfs writes".into(),
                    );
                    continue;
                }
                EntryName::Undecryptable { reason, .. } => {
                    let msg = format!(
                        "name does not decrypt ({reason}); the entry is invisible in the mount"
                    );
                    self.problem(ProblemCode::Name, &rel_e, None, kind, msg);
                }
                EntryName::MissingSideFile { reason, .. } => {
                    let msg = format!(
                        "long-name entry without its name: {reason}; the entry is invisible in the mount"
                    );
                    self.problem(ProblemCode::MissingSideFile, &rel_e, None, kind, msg);
                }
                EntryName::Misplaced { expected, .. } => {
                    let msg = format!(
                        "name decrypts but belongs at backing name {expected}; lookups cannot find it"
                    );
                    self.problem(
                        ProblemCode::MisplacedName,
                        &rel_e,
                        plain_e.as_deref(),
                        kind,
                        msg,
                    );
                }
                EntryName::Name { .. } | EntryName::Unnamed { .. } => {}
            }
            match e.kind {
                Some(FileKind::Dir) => subdirs.push((rel_e, plain_e)),
                Some(FileKind::File) => self.check_file(&d, &rel, &e, &rel_e, plain_e),
                Some(FileKind::Symlink) => self.check_symlink(&d, &e.entry, &rel_e, plain_e),
                Some(_) => self.report.summary.special += 1,
                None => self.problem(
                    ProblemCode::Unknown,
                    &rel_e,
                    plain_e.as_deref(),
                    kind,
                    "unknown file type".into(),
                ),
            }
        }
        // Popped in reverse: keep backing-name order.
        stack.extend(subdirs.into_iter().rev());
    }

    /// Side records of long symlink targets that no symlink names (a crash between writing
    /// one and creating its symlink, or between removing the last link and the record).
    fn check_long_links(&mut self) {
        let records = match self.vol.long_link_records() {
            Ok(r) => r,
            Err(e) => {
                let rel = Path::new(crate::volume::LINKS_DIR);
                let msg = format!("cannot list long symlink target records: {e}");
                self.problem(ProblemCode::Io, rel, None, "dir", msg);
                return;
            }
        };
        for r in records {
            if self.long_links.contains(&r) {
                continue;
            }
            let rel = Path::new(crate::volume::LINKS_DIR).join(&r);
            let msg = "orphan: long symlink target record that no symlink names".to_string();
            self.problem(ProblemCode::Orphan, &rel, None, "file", msg);
        }
    }

    /// Hole maps that belong to no file (a crash between removing a sparse file's last name
    /// and its map), and temp files of interrupted map writes. A damaged map is found with its
    /// file (its holes fail to read).
    fn check_hole_maps(&mut self) {
        let rel_dir = Path::new(crate::format::META_DIR).join(crate::volume::HOLES_DIR);
        let names = match self.vol.hole_map_names() {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("cannot list the hole maps: {e}");
                self.problem(ProblemCode::Io, &rel_dir, None, "dir", msg);
                return;
            }
        };
        for n in names {
            let msg = if n.starts_with(".tmp.") {
                "orphan: leftover temporary file of an interrupted hole map write"
            } else if !self.hole_maps.contains(&n) {
                "orphan: hole map of a file that no longer exists"
            } else {
                continue;
            };
            self.problem(
                ProblemCode::Orphan,
                &rel_dir.join(&n),
                None,
                "file",
                msg.to_string(),
            );
        }
    }

    /// The metadata directory: only leftovers of interrupted atomic writes are reported
    /// (`volume.json` and `keystore.json` were checked when the volume was opened).
    fn check_meta_dir(&mut self, rel: &Path) {
        let Ok(rd) = std::fs::read_dir(self.vol.backing().join(rel)) else {
            return;
        };
        let mut names: Vec<OsString> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            if n.to_string_lossy().starts_with(crate::volume::TMP_PREFIX) {
                let msg =
                    "orphan: leftover temporary file of an interrupted metadata write".to_string();
                self.problem(ProblemCode::Orphan, &rel.join(&n), None, "file", msg);
            }
        }
    }

    fn check_symlink(&mut self, d: &ScanDir, entry: &OsStr, rel_e: &Path, plain_e: Option<String>) {
        self.report.summary.symlinks += 1;
        self.progress
            .entry(plain_e.as_deref().unwrap_or(&rel_string(rel_e)));
        let s = match self.vol.scan_readlink(d, entry) {
            Ok(s) => s,
            Err(e) if is_enoent(&e) => return,
            Err(e) => {
                self.problem(
                    ProblemCode::Io,
                    rel_e,
                    plain_e.as_deref(),
                    "symlink",
                    format!("cannot read the link: {e}"),
                );
                return;
            }
        };
        if let Some(r) = &s.long_record {
            self.long_links.insert(r.clone());
        }
        if let Some(k) = s.key
            && let Some((code, msg)) = self.keys.reference(k)
        {
            self.push(Problem {
                code,
                backing_path: rel_string(rel_e),
                path: plain_e,
                kind: "symlink".into(),
                blocks: Vec::new(),
                key: Some(k),
                message: format!("target {msg}"),
            });
            return;
        }
        if let Err(e) = s.target {
            self.problem(
                ProblemCode::Symlink,
                rel_e,
                plain_e.as_deref(),
                "symlink",
                format!("target does not decrypt: {e}"),
            );
        }
    }

    fn check_file(
        &mut self,
        d: &ScanDir,
        dir_rel: &Path,
        e: &ScanEntry,
        rel_e: &Path,
        plain_e: Option<String>,
    ) {
        self.progress
            .entry(plain_e.as_deref().unwrap_or(&rel_string(rel_e)));
        let verdict = match self.inodes.get(&e.backing_ino) {
            Some(v) if e.nlink > 1 => v.clone(),
            _ => {
                let v = Rc::new(self.check_content(d, &e.entry));
                self.report.summary.blocks_checked += v.blocks;
                self.report.summary.bytes_checked += v.bytes;
                self.report.summary.bad_blocks += v.bad_blocks.len() as u64;
                if e.nlink > 1 {
                    self.inodes.insert(e.backing_ino, v.clone());
                }
                v
            }
        };
        if verdict.vanished {
            return;
        }
        self.report.summary.files += 1;
        for f in &verdict.findings {
            self.push(Problem {
                code: f.code,
                backing_path: rel_string(rel_e),
                path: plain_e.clone(),
                kind: "file".into(),
                blocks: f.blocks.clone(),
                key: f.key,
                message: f.message.clone(),
            });
        }
        if verdict.unrecoverable {
            self.candidates.push(Candidate {
                dir_rel: dir_rel.to_path_buf(),
                entry: e.entry.clone(),
                side_file: e.name.side_file().map(str::to_string),
                path: plain_e,
                bad_blocks: verdict.bad_blocks.clone(),
                reasons: verdict.findings.iter().map(|f| f.message.clone()).collect(),
            });
        }
    }

    /// Checks a file's content; on a mounted volume a file that changes while it is checked
    /// and shows problems is checked once more (twice more with `--shared`, where writers of
    /// other hosts are also held off while a file is checked, see `Volume::hold_writers_off`).
    fn check_content(&mut self, d: &ScanDir, entry: &OsStr) -> Verdict {
        let stamp = || {
            fstatat(d.fd(), entry, AtFlags::AT_SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| {
                    (
                        st.st_ino,
                        st.st_size,
                        st.st_mtime,
                        st.st_mtime_nsec,
                        st.st_ctime,
                        st.st_ctime_nsec,
                    )
                })
        };
        let rechecks = if self.shared { 2 } else { 1 };
        let mut before = stamp();
        let mut v = self.check_content_once(d, entry);
        for _ in 0..rechecks {
            let now = stamp();
            if v.findings.is_empty() || v.vanished || now == before {
                break;
            }
            if now.is_none() {
                // Removed or renamed away since it was listed.
                v = Verdict {
                    vanished: true,
                    ..Verdict::default()
                };
                break;
            }
            before = now;
            v = self.check_content_once(d, entry);
        }
        v
    }

    fn check_content_once(&mut self, d: &ScanDir, entry: &OsStr) -> Verdict {
        let mut v = Verdict::default();
        let f = match self.vol.scan_open_file(d, entry) {
            Ok(f) => f,
            Err(e) if is_enoent(&e) => {
                v.vanished = true;
                return v;
            }
            Err(e) => {
                v.add(ProblemCode::Io, None, format!("cannot open: {e}"));
                return v;
            }
        };
        let _writers_held_off = self
            .vol
            .hold_writers_off(&f, std::time::Duration::from_secs(5));
        let (len, header) = match self.vol.scan_file_header(&f) {
            Ok(x) => x,
            Err(e) => {
                v.add(
                    ProblemCode::Io,
                    None,
                    format!("cannot read the header: {e}"),
                );
                return v;
            }
        };
        match header {
            HeaderState::Empty => return v,
            HeaderState::Bad(why) => {
                v.add(
                    ProblemCode::Header,
                    None,
                    format!("{why}; the content cannot be decrypted"),
                );
                v.unrecoverable = true;
                return v;
            }
            HeaderState::Valid(h) => {
                self.hole_maps.insert(crate::volume::hole_map_name(&h));
                if let Some((code, msg)) = self.keys.reference(h.key) {
                    v.add(
                        code,
                        Some(h.key),
                        format!("header {msg}; the content cannot be decrypted"),
                    );
                    v.unrecoverable = code == ProblemCode::KeyMissing;
                    return v;
                }
            }
        }
        let layout = self.vol.layout();
        let bs = layout.block_size;
        let sealed = layout.sealed_block_size();
        let size = f.size();
        let mut bad = Vec::new();
        for i in 0..layout.block_count(size) {
            let want = bs.min(size - i * bs);
            match self.vol.read(&f, i * bs, bs as usize) {
                Ok(data) if data.len() as u64 == want => {}
                Ok(data) => {
                    bad.push(i);
                    tracing::debug!(block = i, got = data.len(), want, "short block");
                }
                Err(VolumeError::Integrity(_)) => bad.push(i),
                Err(VolumeError::Keys(e)) => {
                    v.add(
                        ProblemCode::KeyUnavailable,
                        None,
                        format!("data key unusable while reading block {i}: {e}"),
                    );
                    break;
                }
                Err(e) => {
                    v.add(ProblemCode::Io, None, format!("cannot read block {i}: {e}"));
                    break;
                }
            }
            v.blocks += 1;
            v.bytes += want + (sealed - bs);
            self.progress.advance(want + (sealed - bs));
        }
        v.bytes += HEADER_LEN as u64;
        if layout.plaintext_size(len).is_err() {
            let body = len.saturating_sub(HEADER_LEN as u64);
            let (idx, rest) = (body / sealed, body % sealed);
            v.findings.push(Finding {
                code: ProblemCode::Length,
                blocks: vec![idx],
                key: None,
                message: format!(
                    "ciphertext is {len} bytes: block {idx} is a {rest}-byte fragment, shorter than its nonce and tag (28 bytes); it is lost"
                ),
            });
            if !bad.contains(&idx) {
                bad.push(idx);
            }
            v.unrecoverable = true;
        }
        bad.sort_unstable();
        if !bad.is_empty() {
            let total = layout.block_count(size) + u64::from(layout.plaintext_size(len).is_err());
            let list = bad
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let noun = if bad.len() == 1 { "block" } else { "blocks" };
            v.findings.push(Finding {
                code: ProblemCode::BadBlocks,
                blocks: bad.clone(),
                key: None,
                message: format!("{noun} {list} of {total} cannot be decrypted: failed authentication (unrecoverable)"),
            });
            v.unrecoverable = true;
        }
        v.bad_blocks = bad;
        v
    }
}

/// Ciphertext bytes of all regular files under `backing` (for the progress bar).
fn total_bytes(backing: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![backing.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name == crate::format::META_DIR || name.starts_with(crate::volume::TMP_PREFIX) {
                continue;
            }
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file()
                && (!name.starts_with('.') || name.starts_with(crate::names::LONG_NAME_PREFIX))
            {
                total += md.len();
            }
        }
    }
    total
}
