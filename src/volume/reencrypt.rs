//! Re-encryption to the newest data key, online (shared `OpenFile`s are switched to the new
//! backing file under their write lock) and resumable (each file is replaced atomically by
//! rename; files already on the newest key are skipped; leftovers of a crash are removed).
//! File contents, xattr values and symlink targets move; directory names stay under the key
//! named by each directory's id file.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, readlinkat, renameat2};
use nix::sys::stat::{Mode, UtimensatFlags, fstat, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

use crate::crypto::{NONCE_LEN, TAG_LEN, random_id};
use crate::format::{FileHeader, block_aad};

use super::{Dir, FileKind, Result, Volume, VolumeError, dir::hex, errno};

const TMP_PREFIX: &str = ".tmp.reenc.";

/// What happened to one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Reencrypted {
    Done,
    AlreadyCurrent,
    Skipped(String),
}

/// Totals of a re-encryption run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReencryptReport {
    pub entries: u64,
    pub reencrypted: u64,
    pub already_current: u64,
    pub skipped: Vec<String>,
    pub stale_temp_files_removed: u64,
}

fn ts(sec: i64, nsec: i64) -> TimeSpec {
    TimeSpec::new(sec, nsec)
}

impl Volume {
    /// Re-encrypts every file and symlink of the volume; `progress(done, total)`.
    pub fn reencrypt_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<ReencryptReport> {
        self.reencrypt_under(&self.root()?, "/", progress)
    }

    /// Re-encrypts every file and symlink below `dir` (at plaintext path `path`, ending in
    /// `/`), each under the current data key of its key scope.
    pub fn reencrypt_under(
        &self,
        dir: &Dir,
        path: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ReencryptReport> {
        let total = self.count_entries(dir)?;
        let mut report = ReencryptReport::default();
        let mut done = 0;
        self.reencrypt_dir(dir, path.into(), &mut report, &mut done, total, progress)?;
        progress(done, total);
        Ok(report)
    }

    fn count_entries(&self, dir: &Dir) -> Result<u64> {
        let mut n = 0;
        for e in self.read_dir(dir)? {
            n += 1;
            if e.kind == Some(FileKind::Dir)
                && let Ok(sub) =
                    self.open_subdir(dir, std::os::unix::ffi::OsStrExt::from_bytes(&e.name[..]))
            {
                n += match self.count_entries(&sub) {
                    Err(_) if sub.scope() != dir.scope() => 0,
                    r => r?,
                };
            }
        }
        Ok(n)
    }

    fn reencrypt_dir(
        &self,
        dir: &Dir,
        path: String,
        report: &mut ReencryptReport,
        done: &mut u64,
        total: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        self.remove_stale_temp_files(dir, report);
        for e in self.read_dir(dir)? {
            let name = std::ffi::OsString::from(std::os::unix::ffi::OsStrExt::from_bytes(
                &e.name[..],
            ) as &OsStr);
            let child = format!("{}{}", path, String::from_utf8_lossy(&e.name));
            report.entries += 1;
            *done += 1;
            match e.kind {
                Some(FileKind::Dir) => {
                    let sub = self.open_subdir(dir, &name)?;
                    let r = self.reencrypt_dir(
                        &sub,
                        format!("{child}/"),
                        report,
                        done,
                        total,
                        progress,
                    );
                    match r {
                        // Another key scope that is locked or revoked: skipped, said so.
                        Err(err) if sub.scope() != dir.scope() => {
                            report.skipped.push(format!("{child}/: {err}"))
                        }
                        r => r?,
                    }
                }
                Some(kind @ (FileKind::File | FileKind::Symlink)) => match self
                    .reencrypt_entry(dir, &name, kind)
                {
                    Ok(Reencrypted::Done) => report.reencrypted += 1,
                    Ok(Reencrypted::AlreadyCurrent) => report.already_current += 1,
                    Ok(Reencrypted::Skipped(why)) => report.skipped.push(format!("{child}: {why}")),
                    Err(err) => report.skipped.push(format!("{child}: {err}")),
                },
                _ => report.already_current += 1,
            }
            if (*done).is_multiple_of(64) {
                progress(*done, total);
            }
        }
        Ok(())
    }

    fn remove_stale_temp_files(&self, dir: &Dir, report: &mut ReencryptReport) {
        let Ok(mut d) = super::atime::list_dir(dir.fd(), false) else {
            return;
        };
        let stale: Vec<String> = d
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect();
        for n in stale {
            if unlinkat(dir.fd(), n.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                report.stale_temp_files_removed += 1;
            }
        }
    }

    /// Moves one file or symlink to the newest data key.
    pub fn reencrypt_entry(&self, dir: &Dir, name: &OsStr, kind: FileKind) -> Result<Reencrypted> {
        self.check_writable_volume()?;
        match kind {
            FileKind::File => self.reencrypt_file(dir, name),
            FileKind::Symlink => self.reencrypt_symlink(dir, name),
            _ => Ok(Reencrypted::AlreadyCurrent),
        }
    }

    fn check_writable_volume(&self) -> Result<()> {
        if self.read_only() {
            Err(errno(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn reencrypt_symlink(&self, dir: &Dir, name: &OsStr) -> Result<Reencrypted> {
        let b = self.backing_name(dir, name)?;
        let stored = readlinkat(dir.fd(), b.entry())?;
        let current = self.current_key(dir.scope())?;
        let stored = std::os::unix::ffi::OsStrExt::as_bytes(stored.as_os_str()).to_vec();
        if self.link_key(&stored) == Some(current) {
            return Ok(Reencrypted::AlreadyCurrent);
        }
        let target = self.readlink(dir, name)?;
        let st = nix::sys::stat::fstatat(dir.fd(), b.entry(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let sealed = self.seal_link(current, &target)?;
        let tmp = format!("{TMP_PREFIX}{}", hex(&random_id()?[..8]));
        if let Err(e) = symlinkat(sealed.as_str(), dir.fd(), tmp.as_str()) {
            self.forget_link(sealed.as_bytes());
            return Err(e.into());
        }
        let _ = fchownat(
            dir.fd(),
            tmp.as_str(),
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        let _ = utimensat(
            dir.fd(),
            tmp.as_str(),
            &ts(st.st_atime, st.st_atime_nsec),
            &ts(st.st_mtime, st.st_mtime_nsec),
            UtimensatFlags::NoFollowSymlink,
        );
        if let Err(e) = renameat2(
            dir.fd(),
            tmp.as_str(),
            dir.fd(),
            b.entry(),
            RenameFlags::empty(),
        ) {
            let _ = unlinkat(dir.fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            self.forget_link(sealed.as_bytes());
            return Err(e.into());
        }
        // Other hard links (if any) still name the old record.
        if st.st_nlink == 1 {
            self.forget_link(&stored);
        }
        Ok(Reencrypted::Done)
    }

    fn reencrypt_file(&self, dir: &Dir, name: &OsStr) -> Result<Reencrypted> {
        let b = self.backing_name(dir, name)?;
        let f = self.open_file(dir, name)?;
        let current = self.current_key(dir.scope())?;
        let mut st = f.state_for_reencrypt();
        // Shared mode: other hosts' changes of the file wait until it is replaced (and then
        // fail with ESTALE there: see `shared_io`); the copy starts from its state now.
        let _hosts = self.lock_for_change(&f, st.state_mut())?;
        let Some(old) = st.header_copy() else {
            return Ok(Reencrypted::AlreadyCurrent);
        };
        if old.key == current {
            return Ok(Reencrypted::AlreadyCurrent);
        }
        let src = f.raw_file();
        let meta = src.metadata()?;
        if meta.nlink() > 1 {
            return Ok(Reencrypted::Skipped(
                "has hard links; re-encrypting one name would split them".into(),
            ));
        }
        let old_cipher = self
            .keys()
            .data_key(old.key)?
            .content_cipher(&old.file_id)?;
        let new_header = FileHeader {
            key: current,
            ..old
        };
        let new_cipher = self
            .keys()
            .data_key(current)?
            .content_cipher(&old.file_id)?;
        let tmp = format!("{TMP_PREFIX}{}", hex(&random_id()?[..8]));
        let fd = openat(
            dir.fd(),
            tmp.as_str(),
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW
                | OFlag::O_NOATIME,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
        )?;
        let out = File::from(fd);
        let result = (|| -> Result<()> {
            out.write_all_at(&new_header.encode(), 0)?;
            let size = st.plain_size();
            let l = self.layout();
            let blocks = l.block_count(size);
            let last = blocks.saturating_sub(1);
            let holes = st.holes(self, &old_cipher)?;
            let mut sealed = Vec::new();
            for b in 0..blocks {
                let slen = (l.block_size.min(size - b * l.block_size)
                    + (NONCE_LEN + TAG_LEN) as u64) as usize;
                sealed.resize(slen, 0);
                src.read_exact_at(&mut sealed, l.block_offset(b))
                    .map_err(|_| {
                        VolumeError::Integrity(format!(
                            "block {b} is missing (ciphertext file truncated)"
                        ))
                    })?;
                if holes.contains(b) && super::holes::all_zero(&sealed) {
                    continue; // a hole stays a hole
                }
                let plain_len = old_cipher
                    .open(&block_aad(&old.file_id, b, b == last), &mut sealed)
                    .map_err(|_| {
                        VolumeError::Integrity(format!("block {b} failed authentication"))
                    })?
                    .len();
                debug_assert_eq!(plain_len + NONCE_LEN + TAG_LEN, slen);
                new_cipher.seal(&block_aad(&old.file_id, b, b == last), &mut sealed)?;
                out.write_all_at(&sealed, l.block_offset(b))?;
            }
            out.set_len(l.ciphertext_len(size))?;
            if !holes.is_empty() {
                self.store_holes(&new_header, &new_cipher, &holes, true)?;
            }
            self.rekey_xattrs(
                src.as_raw_fd(),
                out.as_raw_fd(),
                old.file_id,
                old.key,
                current,
            )?;
            let s = fstat(src.as_fd())?;
            fchown(
                out.as_fd(),
                Some(Uid::from_raw(s.st_uid)),
                Some(Gid::from_raw(s.st_gid)),
            )?;
            nix::sys::stat::fchmod(out.as_fd(), Mode::from_bits_truncate(s.st_mode & 0o7777))?;
            futimens(
                out.as_fd(),
                &ts(s.st_atime, s.st_atime_nsec),
                &ts(s.st_mtime, s.st_mtime_nsec),
            )?;
            out.sync_all()?;
            if self.shared() {
                super::shared_io::mark_replaced(&src);
            }
            if let Err(e) = renameat2(
                dir.fd(),
                tmp.as_str(),
                dir.fd(),
                b.entry(),
                RenameFlags::empty(),
            ) {
                super::shared_io::unmark_replaced(&src);
                return Err(e.into());
            }
            nix::unistd::fsync(dir.fd())?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = unlinkat(dir.fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        self.remove_holes(&old);
        let new_ino = out.metadata()?.ino();
        st.switch_to(new_header, std::sync::Arc::new(new_cipher));
        // Re-key before the old inode is released (`src` holds it): its number may be reused
        // by the backing filesystem as soon as it is.
        self.open_files.rekey(meta.ino(), new_ino);
        self.record_replacement(meta.ino(), new_ino);
        f.swap_file(out, new_ino);
        drop(src);
        Ok(Reencrypted::Done)
    }
}
