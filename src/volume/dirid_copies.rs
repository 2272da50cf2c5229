//! The two copies of a directory's id (format 2): the `.cmkfs.dirid` file and the
//! `user.cmkfs.dirid` xattr of the backing directory, the same self-checking 48 bytes.
//! Reading takes a verified copy; two verified copies that disagree are refused (never a
//! guess). Rewriting a damaged copy uses only a verified one. A version-1 file (no
//! checksum) is read when no verified copy exists, and upgraded when the volume may write.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::crypto::random_id;
use crate::format::{DIRID_FILE_NAME, DIRID_LEN, DIRID_XATTR_NAME, DirIdFile};

/// What one copy is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirIdCopy {
    /// Version 2, checksum verified.
    Valid(DirIdFile),
    /// Version 1 (file only): decodes, but carries no checksum.
    V1(DirIdFile),
    Missing,
    Damaged(String),
    /// The backing filesystem has no user xattrs: only the file copy exists.
    Unsupported,
}

/// Both copies of one directory's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirIdCopies {
    pub file: DirIdCopy,
    pub xattr: DirIdCopy,
}

/// The id to use, and the copies that must be rewritten (with why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedDirId {
    pub id: DirIdFile,
    /// Copy 1 (the file) needs rewriting: why.
    pub file_problem: Option<String>,
    /// Copy 2 (the xattr) needs rewriting: why.
    pub xattr_problem: Option<String>,
    /// Read from a version-1 file alone (an upgrade, not a repair, rewrites it).
    pub legacy: bool,
}

fn decode(b: &[u8]) -> DirIdCopy {
    match DirIdFile::decode_versioned(b) {
        Ok((id, false)) => DirIdCopy::Valid(id),
        Ok((id, true)) => DirIdCopy::V1(id),
        Err(crate::format::FormatError::Field("checksum")) => {
            DirIdCopy::Damaged("fails its checksum".into())
        }
        Err(e) => DirIdCopy::Damaged(format!("is invalid ({e})")),
    }
}

fn xattr_name() -> CString {
    CString::new(DIRID_XATTR_NAME).unwrap_or_default()
}

/// Reads both copies of the directory open as `dir`.
pub fn read_copies(dir: BorrowedFd<'_>) -> DirIdCopies {
    let file = match openat(
        dir,
        DIRID_FILE_NAME,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT) => DirIdCopy::Missing,
        Err(e) => DirIdCopy::Damaged(format!("cannot be read ({e})")),
        Ok(fd) => {
            let f = File::from(fd);
            // One read (this runs for every directory opened): a regular file's pread is short
            // only at its end, so one byte more than a record tells an overlong file too.
            let mut buf = [0u8; DIRID_LEN + 1];
            let read = loop {
                match f.read_at(&mut buf, 0) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r,
                }
            };
            match read {
                Err(e) => DirIdCopy::Damaged(format!("cannot be read ({e})")),
                Ok(got) => decode(&buf[..got]),
            }
        }
    };
    let mut buf = [0u8; DIRID_LEN + 1];
    let name = xattr_name();
    // SAFETY: valid fd, NUL-terminated name, buffer valid for its length.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let xattr = if n >= 0 {
        match decode(&buf[..n as usize]) {
            DirIdCopy::V1(_) => DirIdCopy::Damaged("is a version-1 record".into()),
            c => c,
        }
    } else {
        match Errno::last() {
            Errno::ENODATA => DirIdCopy::Missing,
            Errno::ENOTSUP => DirIdCopy::Unsupported,
            Errno::ERANGE => DirIdCopy::Damaged("is too long".into()),
            e => DirIdCopy::Damaged(format!("cannot be read ({e})")),
        }
    };
    DirIdCopies { file, xattr }
}

fn problem(c: &DirIdCopy) -> Option<String> {
    match c {
        DirIdCopy::Valid(_) | DirIdCopy::Unsupported => None,
        DirIdCopy::V1(_) => Some("is a version-1 record (no checksum)".into()),
        DirIdCopy::Missing => Some("is missing".into()),
        DirIdCopy::Damaged(w) => Some(w.clone()),
    }
}

impl DirIdCopies {
    /// The id to use, or why there is none. `where_` names the directory in messages.
    pub fn resolve(&self, where_: &str) -> Result<ResolvedDirId, String> {
        match (&self.file, &self.xattr) {
            (DirIdCopy::Valid(a), DirIdCopy::Valid(b)) if a != b => Err(format!(
                "{where_}: the two copies of the directory id ({DIRID_FILE_NAME} and xattr {DIRID_XATTR_NAME}) are both intact but disagree; not guessing: restore the directory from a backup"
            )),
            (DirIdCopy::Valid(a), other) => Ok(ResolvedDirId {
                id: *a,
                file_problem: None,
                xattr_problem: problem(other),
                legacy: false,
            }),
            (other, DirIdCopy::Valid(b)) => Ok(ResolvedDirId {
                id: *b,
                file_problem: problem(other),
                xattr_problem: None,
                legacy: false,
            }),
            (DirIdCopy::V1(a), x) => Ok(ResolvedDirId {
                id: *a,
                file_problem: Some("is a version-1 record (no checksum)".into()),
                xattr_problem: match x {
                    DirIdCopy::Unsupported => None,
                    DirIdCopy::Missing => Some("is missing".into()),
                    x => problem(x),
                },
                legacy: matches!(x, DirIdCopy::Missing | DirIdCopy::Unsupported),
            }),
            (f, x) => Err(format!(
                "{where_}: both copies of the directory id are damaged (copy 1, {DIRID_FILE_NAME}, {}; copy 2, xattr {DIRID_XATTR_NAME}, {}): the names in this directory cannot be decrypted; see docs/recovery.md",
                problem(f).unwrap_or_else(|| "is not usable".into()),
                match x {
                    DirIdCopy::Unsupported => "is not supported by the backing filesystem".into(),
                    x => problem(x).unwrap_or_else(|| "is not usable".into()),
                }
            )),
        }
    }
}

/// Message for one repaired (or repairable) copy.
pub fn describe(where_: &str, copy: u8, problem: &str, rewritten: Result<(), String>) -> String {
    let (this, other) = if copy == 1 {
        (
            format!("copy 1 of the directory id ({where_}/{DIRID_FILE_NAME})"),
            format!("copy 2 (xattr {DIRID_XATTR_NAME})"),
        )
    } else {
        (
            format!("copy 2 of the directory id (xattr {DIRID_XATTR_NAME} of {where_})"),
            format!("copy 1 ({DIRID_FILE_NAME})"),
        )
    };
    match rewritten {
        Ok(()) => format!("{this} {problem}; using {other} and rewriting copy {copy}"),
        Err(e) => format!("{this} {problem}; using {other}; rewriting copy {copy}: {e}"),
    }
}

/// Writes the xattr copy of `id` on `dir`.
pub fn write_xattr(dir: BorrowedFd<'_>, id: &DirIdFile) -> std::io::Result<()> {
    let bytes = id.encode();
    let name = xattr_name();
    // SAFETY: valid fd, NUL-terminated name, buffer valid for its length.
    let r = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the xattr copy (before `rmdir` of an empty directory).
pub fn remove_xattr(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    let name = xattr_name();
    // SAFETY: valid fd and NUL-terminated name.
    if unsafe { libc::fremovexattr(dir.as_raw_fd(), name.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the file copy of `id` in a new directory (fails if one exists).
pub fn create_file(dir: BorrowedFd<'_>, id: &DirIdFile) -> std::io::Result<()> {
    let fd = openat(
        dir,
        DIRID_FILE_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o400),
    )?;
    let mut f = File::from(fd);
    f.write_all(&id.encode())?;
    f.sync_all()
}

/// Replaces the file copy of `id` atomically (temp file, fsync, rename, fsync directory).
pub fn replace_file(dir: BorrowedFd<'_>, id: &DirIdFile) -> std::io::Result<()> {
    let tmp = format!(
        ".tmp.dirid.{}",
        random_id()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let result = (|| -> std::io::Result<()> {
        let fd = openat(
            dir,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o400),
        )?;
        let mut f = File::from(fd);
        f.write_all(&id.encode())?;
        f.sync_all()?;
        renameat(dir, tmp.as_str(), dir, DIRID_FILE_NAME)?;
        nix::unistd::fsync(dir.as_fd())?;
        Ok(())
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// Whether an xattr error means the backing filesystem has no user xattrs.
pub fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DataKeyRef;

    fn id(n: u8) -> DirIdFile {
        DirIdFile {
            key: DataKeyRef { scope: 0, epoch: 0 },
            dir_id: [n; 16],
        }
    }

    #[test]
    fn resolve_takes_the_verified_copy_and_never_guesses() {
        let c = DirIdCopies {
            file: DirIdCopy::Damaged("fails its checksum".into()),
            xattr: DirIdCopy::Valid(id(1)),
        };
        let r = c.resolve("d").unwrap();
        assert_eq!(r.id, id(1));
        assert!(r.file_problem.is_some() && r.xattr_problem.is_none());
        let c = DirIdCopies {
            file: DirIdCopy::Valid(id(1)),
            xattr: DirIdCopy::Valid(id(2)),
        };
        assert!(c.resolve("d").unwrap_err().contains("disagree"));
        let c = DirIdCopies {
            file: DirIdCopy::V1(id(3)),
            xattr: DirIdCopy::Missing,
        };
        assert!(c.resolve("d").unwrap().legacy);
        let c = DirIdCopies {
            file: DirIdCopy::Missing,
            xattr: DirIdCopy::Damaged("x".into()),
        };
        assert!(c.resolve("d").unwrap_err().contains("both copies"));
        let c = DirIdCopies {
            file: DirIdCopy::Valid(id(1)),
            xattr: DirIdCopy::Unsupported,
        };
        assert_eq!(c.resolve("d").unwrap().xattr_problem, None);
    }
}
