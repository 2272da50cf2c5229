//! Raw access to the backing tree for `cmkfs fsck`: every entry of a backing directory with its
//! decrypted name or the reason it has none (where `Volume::read_dir` silently skips), and
//! access to entries by backing name, including those whose name does not decrypt and
//! directories without a valid id file. Everything here only reads the backing tree.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, fstatat};

use crate::format::{DIRID_FILE_NAME, DataKeyRef, DirIdFile, FileHeader, HEADER_LEN, META_DIR};
use crate::keys::DataKey;
use crate::names::{self, EntryKind, LONG_NAME_PREFIX, SIDE_FILE_PREFIX};

use super::atime::{list_dir, openat_noatime};
use super::{FileKind, OpenFile, Result, Volume, symlink};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Prefix of the temporary directory `mkdir` builds a new directory in.
pub const TMP_MKDIR_PREFIX: &str = ".tmp.mkdir.";
/// Prefix of other temporary files (atomic metadata writes).
pub const TMP_PREFIX: &str = ".tmp.";

/// A backing directory opened for scanning. Unlike [`super::Dir`] it exists even when the
/// directory id file is missing or invalid (its entries then have no names).
pub struct ScanDir {
    fd: OwnedFd,
    is_root: bool,
    id: std::result::Result<DirIdFile, String>,
    /// Damaged copies of the directory id (and whether each was rewritten).
    id_copies: Vec<super::meta::DirIdFinding>,
}

impl ScanDir {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory id file, if it is present and decodes.
    pub fn id(&self) -> Option<&DirIdFile> {
        self.id.as_ref().ok()
    }

    /// Damaged copies of the directory id found when it was opened, and whether each was
    /// rewritten (only when the volume repairs metadata).
    pub fn id_copy_findings(&self) -> &[super::meta::DirIdFinding] {
        &self.id_copies
    }

    /// Why the directory id file is unusable, if it is.
    pub fn id_error(&self) -> Option<&str> {
        self.id.as_ref().err().map(String::as_str)
    }

    pub fn is_root(&self) -> bool {
        self.is_root
    }
}

/// What a backing entry's name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryName {
    /// A valid encrypted name (`side_file` for a long name).
    Name {
        plain: Vec<u8>,
        side_file: Option<String>,
    },
    /// It decrypts, but the name encrypts to another backing name (e.g. a short encoding
    /// stored as a long-name entry): lookups by name cannot find the entry.
    Misplaced {
        plain: Vec<u8>,
        expected: String,
        side_file: Option<String>,
    },
    /// An encrypted-looking name (or a long name's side file) that does not decrypt.
    Undecryptable {
        reason: String,
        side_file: Option<String>,
    },
    /// A long-name entry `.L<hash>` whose side file `.N<hash>` is missing or unreadable.
    MissingSideFile { side_file: String, reason: String },
    /// The directory's names cannot be decrypted at all (no valid id file, or its data key
    /// is unusable); the reason is reported once for the directory.
    Unnamed { side_file: Option<String> },
    /// The directory id file `.cmkfs.dirid`.
    DirId,
    /// The metadata directory `.cmkfs` (root only).
    MetaDir,
    /// A long-name side file `.N<hash>`; `orphan` when its entry `.L<hash>` does not exist.
    SideFile { entry: String, orphan: bool },
    /// `.tmp.mkdir.*`: a directory whose creation never finished.
    TmpMkdir,
    /// Another `.tmp.*` leftover.
    TmpFile,
    /// Not something cmkfs writes (a reserved name it does not use, or not UTF-8).
    Unknown,
}

impl EntryName {
    /// The decrypted name, if there is one.
    pub fn plain(&self) -> Option<&[u8]> {
        match self {
            EntryName::Name { plain, .. } | EntryName::Misplaced { plain, .. } => Some(plain),
            _ => None,
        }
    }

    /// The long-name side file that belongs to this entry, if it is a long-name entry.
    pub fn side_file(&self) -> Option<&str> {
        match self {
            EntryName::Name { side_file, .. }
            | EntryName::Misplaced { side_file, .. }
            | EntryName::Undecryptable { side_file, .. }
            | EntryName::Unnamed { side_file } => side_file.as_deref(),
            _ => None,
        }
    }

    /// Whether the entry stands for a plaintext object (file, directory, link, ...), even if
    /// its name is damaged, as opposed to metadata, side files and leftovers.
    pub fn is_object(&self) -> bool {
        matches!(
            self,
            EntryName::Name { .. }
                | EntryName::Misplaced { .. }
                | EntryName::Undecryptable { .. }
                | EntryName::MissingSideFile { .. }
                | EntryName::Unnamed { .. }
        )
    }
}

/// One backing entry, as found on disk.
#[derive(Clone, Debug)]
pub struct ScanEntry {
    /// The backing entry name.
    pub entry: OsString,
    /// `None` when the entry could not be stat'ed (see `stat_error`) or has an unknown type.
    pub kind: Option<FileKind>,
    pub backing_ino: u64,
    pub nlink: u64,
    /// Length of the backing object.
    pub backing_size: u64,
    pub stat_error: Option<String>,
    pub name: EntryName,
}

/// The header of a backing file, raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderState {
    /// Length 0: an empty file created without a header.
    Empty,
    Valid(FileHeader),
    /// Why the header is unusable.
    Bad(String),
}

/// A backing symlink's target.
#[derive(Debug)]
pub struct SymlinkScan {
    /// The data key named in the stored target, if the target parses that far.
    pub key: Option<DataKeyRef>,
    /// The decrypted target.
    pub target: Result<Vec<u8>>,
    /// The side record of a long target (format 2), by file name in `.cmkfs/links/`.
    pub long_record: Option<String>,
}

impl Volume {
    /// Opens the backing root for scanning.
    pub fn scan_root(&self) -> Result<ScanDir> {
        let fd = openat(&self.root_fd, ".", DIR_FLAGS, Mode::empty())?;
        Ok(self.scan_dir_from_fd(fd, true))
    }

    /// Opens the backing directory at `rel` (relative to the backing root, no symlinks in the
    /// last component) for scanning.
    pub fn scan_dir_at(&self, rel: &Path) -> Result<ScanDir> {
        if rel.as_os_str().is_empty() || rel == Path::new(".") {
            return self.scan_root();
        }
        let fd = openat(&self.root_fd, rel, DIR_FLAGS, Mode::empty())?;
        Ok(self.scan_dir_from_fd(fd, false))
    }

    fn scan_dir_from_fd(&self, fd: OwnedFd, is_root: bool) -> ScanDir {
        let copies = super::dirid_copies::read_copies(fd.as_fd());
        let where_ = self.describe_dir(fd.as_fd());
        let (id, id_copies) = match copies.resolve(&where_) {
            Ok(r) => (Ok(r.id), self.fix_dir_id(fd.as_fd(), &where_, &r)),
            Err(e) => (Err(e), Vec::new()),
        };
        ScanDir {
            fd,
            is_root,
            id,
            id_copies,
        }
    }

    /// The name cipher of a scanned directory, or why its names cannot be decrypted.
    pub fn scan_name_key(&self, dir: &ScanDir) -> std::result::Result<Arc<DataKey>, String> {
        let id = dir.id.as_ref().map_err(|e| e.clone())?;
        self.keys().data_key(id.key).map_err(|e| e.to_string())
    }

    /// Every entry of `dir` (except `.` and `..`), sorted by backing name, with what its name
    /// says. Entries that vanish while listing (a mounted volume) are left out.
    #[allow(clippy::useless_conversion)] // nlink_t is u32 on some targets
    pub fn scan_entries(&self, dir: &ScanDir) -> Result<Vec<ScanEntry>> {
        let mut d = list_dir(&dir.fd, false)?;
        let mut raw: Vec<OsString> = Vec::new();
        for e in d.iter() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            raw.push(OsStr::from_bytes(n).to_os_string());
        }
        raw.sort();
        let present: HashSet<&[u8]> = raw.iter().map(|n| n.as_bytes()).collect();
        let key = self.scan_name_key(dir).ok();
        let mut out = Vec::with_capacity(raw.len());
        for entry in &raw {
            let (kind, backing_ino, nlink, backing_size, stat_error) =
                match fstatat(&dir.fd, entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => (
                        FileKind::from_mode(st.st_mode),
                        st.st_ino,
                        u64::from(st.st_nlink),
                        st.st_size as u64,
                        None,
                    ),
                    Err(Errno::ENOENT) => continue,
                    Err(e) => (None, 0, 0, 0, Some(e.to_string())),
                };
            let name = self.classify_entry(dir, key.as_deref(), entry, &present);
            out.push(ScanEntry {
                entry: entry.clone(),
                kind,
                backing_ino,
                nlink,
                backing_size,
                stat_error,
                name,
            });
        }
        Ok(out)
    }

    fn classify_entry(
        &self,
        dir: &ScanDir,
        key: Option<&DataKey>,
        entry: &OsStr,
        present: &HashSet<&[u8]>,
    ) -> EntryName {
        let Some(s) = entry.to_str() else {
            return EntryName::Unknown;
        };
        if s == DIRID_FILE_NAME {
            return EntryName::DirId;
        }
        if dir.is_root && s == META_DIR {
            return EntryName::MetaDir;
        }
        if s.starts_with(TMP_MKDIR_PREFIX) {
            return EntryName::TmpMkdir;
        }
        if s.starts_with(TMP_PREFIX) {
            return EntryName::TmpFile;
        }
        if let Some(hash) = s.strip_prefix(SIDE_FILE_PREFIX) {
            let long = format!("{LONG_NAME_PREFIX}{hash}");
            if matches!(names::classify(&long), EntryKind::Long { .. }) {
                let orphan = !present.contains(long.as_bytes());
                return EntryName::SideFile {
                    entry: long,
                    orphan,
                };
            }
            return EntryName::Unknown;
        }
        let (encoded, side_file) = match names::classify(s) {
            EntryKind::Reserved => return EntryName::Unknown,
            EntryKind::Short(enc) => (enc.to_string(), None),
            EntryKind::Long { side_file } => {
                if key.is_none() {
                    return EntryName::Unnamed {
                        side_file: Some(side_file),
                    };
                }
                match read_side_file(&dir.fd, &side_file) {
                    Ok(enc) => (enc, Some(side_file)),
                    Err(reason) => return EntryName::MissingSideFile { side_file, reason },
                }
            }
        };
        let (Some(key), Some(id)) = (key, dir.id()) else {
            return EntryName::Unnamed { side_file };
        };
        let long_entry = side_file.as_ref().map(|_| s);
        match names::decrypt_name(key.names(), &id.dir_id, &encoded, long_entry) {
            Ok(plain) => match names::encrypt_name(key.names(), &id.dir_id, &plain) {
                Ok(b) if b.entry() == s => EntryName::Name { plain, side_file },
                Ok(b) => EntryName::Misplaced {
                    plain,
                    expected: b.entry().to_string(),
                    side_file,
                },
                Err(e) => EntryName::Undecryptable {
                    reason: format!("decrypted name is not valid: {e}"),
                    side_file,
                },
            },
            Err(e) => {
                let reason = if side_file.is_some() {
                    format!("long name (side file) {e}")
                } else {
                    e.to_string()
                };
                EntryName::Undecryptable { reason, side_file }
            }
        }
    }

    /// Opens the regular file `entry` of `dir` read-only for content checks (shared with any
    /// open handle of the same inode, like `Volume::open_file`).
    pub fn scan_open_file(&self, dir: &ScanDir, entry: &OsStr) -> Result<Arc<OpenFile>> {
        let fd = openat_noatime(
            &dir.fd,
            entry,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        // Read-only: no header is ever written through it, so the scope only says where it is.
        let scope = dir.id.as_ref().map(|i| i.key.scope).unwrap_or(0);
        self.share_open_file(File::from(fd), scope)
    }

    /// The ciphertext length and the raw header of an open file.
    pub fn scan_file_header(&self, f: &OpenFile) -> Result<(u64, HeaderState)> {
        let file = f.raw_file();
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok((0, HeaderState::Empty));
        }
        let mut buf = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got < HEADER_LEN {
            return Ok((
                len,
                HeaderState::Bad(format!("file is {len} bytes, shorter than a header")),
            ));
        }
        let state = match FileHeader::decode(&buf) {
            Ok(h) if h.block_shift as u32 == self.layout().block_size.trailing_zeros() => {
                HeaderState::Valid(h)
            }
            Ok(h) => HeaderState::Bad(format!(
                "header says block size {}, the volume uses {}",
                1u64 << h.block_shift,
                self.layout().block_size
            )),
            Err(e) => HeaderState::Bad(format!("header: {e}")),
        };
        Ok((len, state))
    }

    /// Reads and decrypts the backing symlink `entry` of `dir`.
    pub fn scan_readlink(&self, dir: &ScanDir, entry: &OsStr) -> Result<SymlinkScan> {
        let stored = readlinkat(&dir.fd, entry)?;
        let stored = stored.as_bytes();
        let key = match symlink::parse_marker(stored) {
            Some(_) => self.link_key(stored),
            None => URL_SAFE_NO_PAD
                .decode(stored)
                .ok()
                .filter(|b| b.len() >= 9)
                .map(|b| DataKeyRef {
                    scope: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
                    epoch: u32::from_le_bytes([b[5], b[6], b[7], b[8]]),
                }),
        };
        Ok(SymlinkScan {
            key,
            target: self.open_link(stored),
            long_record: symlink::parse_marker(stored).map(|m| m.record),
        })
    }
}

fn read_side_file(dir: &OwnedFd, side_file: &str) -> std::result::Result<String, String> {
    let fd = openat_noatime(
        dir,
        side_file,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => format!("side file {side_file} is missing"),
        e => format!("side file {side_file} is unreadable: {e}"),
    })?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(File::from(fd), 4096), &mut s)
        .map_err(|e| format!("side file {side_file} is unreadable: {e}"))?;
    Ok(s)
}
