//! `--quarantine DIR`: moves files whose content cannot be read in full out of the backing
//! directory, so the rest of the volume stays usable. Nothing is ever deleted: a file is
//! renamed, or (across filesystems) copied with its xattrs, fsynced and only then removed.
//!
//! DIR mirrors the backing layout and becomes a cmkfs volume of its own holding only the
//! quarantined files: it gets copies of `.cmkfs/volume.json`, `.cmkfs/keystore.json` and the
//! `.cmkfs.dirid` (and long-name side file) of every directory on the way, so it can be
//! mounted read-only with the same service key to salvage the readable blocks. Each file
//! gets a note `<backing name>.json` naming its plaintext path and bad blocks.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::format::{DIRID_FILE_NAME, META_DIR};
use crate::meta_copies::{self, Record};
use crate::names::{LONG_NAME_PREFIX, SIDE_FILE_PREFIX};
use crate::volume::{Volume, volume_config_path};
use std::os::fd::AsFd;

use super::report::{FsckError, QuarantineReport, QuarantinedFile};
use super::walk::Candidate;

/// Checks the quarantine directory without creating anything: it must be outside BACKING
/// (and not contain it), and be missing, empty or a quarantine of the same volume.
pub(super) fn check_dir(backing: &Path, dir: &Path, volume_id: &str) -> Result<(), FsckError> {
    let err = |m: String| FsckError(format!("quarantine directory {}: {m}", dir.display()));
    let backing_c = backing.canonicalize().map_err(|e| {
        FsckError(format!(
            "cannot resolve backing directory {}: {e}",
            backing.display()
        ))
    })?;
    let dir_c = resolve(dir).map_err(|e| err(e.to_string()))?;
    if dir_c.starts_with(&backing_c) {
        return Err(err(format!(
            "must be outside the backing directory {}",
            backing.display()
        )));
    }
    if backing_c.starts_with(&dir_c) {
        return Err(err(format!(
            "must not contain the backing directory {}",
            backing.display()
        )));
    }
    let cfg = volume_config_path(&dir_c);
    if cfg.exists() {
        let c = Volume::read_config(&dir_c).map_err(|e| err(e.to_string()))?;
        if c.volume_id != volume_id {
            return Err(err(format!(
                "holds files of another volume ({})",
                c.volume_id
            )));
        }
    } else if dir_c.exists() {
        if !dir_c.is_dir() {
            return Err(err("is not a directory".into()));
        }
        if fs::read_dir(&dir_c)
            .map_err(|e| err(format!("cannot read: {e}")))?
            .next()
            .is_some()
        {
            return Err(err(
                "is not empty and not a quarantine of this volume".into()
            ));
        }
    }
    Ok(())
}

/// Creates the quarantine directory (after [`check_dir`]) and checks it again; returns its
/// canonical path.
pub(super) fn prepare_dir(
    backing: &Path,
    dir: &Path,
    volume_id: &str,
) -> Result<PathBuf, FsckError> {
    let err = |m: String| FsckError(format!("quarantine directory {}: {m}", dir.display()));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(format!("cannot create: {e}")))?;
    check_dir(backing, dir, volume_id)?;
    dir.canonicalize().map_err(|e| err(e.to_string()))
}

/// The canonical form of `p`, which may not exist yet: its nearest existing ancestor
/// canonicalized, plus the remaining components.
fn resolve(p: &Path) -> std::io::Result<PathBuf> {
    let abs = lexical(&std::path::absolute(p)?);
    let mut base = abs.clone();
    let mut rest = Vec::new();
    loop {
        match base.canonicalize() {
            Ok(c) => {
                let mut out = c;
                out.extend(rest.iter().rev());
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match (base.file_name(), base.parent()) {
                    (Some(name), Some(parent)) => {
                        rest.push(name.to_os_string());
                        base = parent.to_path_buf();
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `..` and `.` removed without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Moves every candidate into `qdir` (prepared by [`prepare_dir`]).
pub(super) fn quarantine(vol: &Volume, qdir: &Path, candidates: &[Candidate]) -> QuarantineReport {
    let mut report = QuarantineReport {
        dir: qdir.to_path_buf(),
        ..Default::default()
    };
    let backing = vol.backing();
    if candidates.is_empty() {
        return report;
    }
    if let Err(e) = copy_volume_meta(backing, qdir) {
        report.errors.push(format!(
            "cannot set up {}: {e}; nothing was moved",
            qdir.display()
        ));
        return report;
    }
    let mut done = std::collections::HashSet::new();
    for c in candidates {
        let rel = c.dir_rel.join(&c.entry);
        if !done.insert(rel.clone()) {
            continue;
        }
        match quarantine_one(vol, qdir, c) {
            Ok(q) => report.moved.push(q),
            Err(e) => report
                .errors
                .push(format!("{}: not moved: {e}", rel.display())),
        }
    }
    report
}

fn quarantine_one(vol: &Volume, qdir: &Path, c: &Candidate) -> Result<QuarantinedFile, String> {
    let backing = vol.backing();
    let src_dir = backing.join(&c.dir_rel);
    let dst_dir = qdir.join(&c.dir_rel);
    mirror_dirs(backing, qdir, &c.dir_rel)
        .map_err(|e| format!("cannot create {}: {e}", dst_dir.display()))?;
    let src = src_dir.join(&c.entry);
    let to = free_name(&dst_dir, c.entry.clone());
    move_file(&src, &to)
        .map_err(|e| format!("cannot move {} to {}: {e}", src.display(), to.display()))?;
    let mut side_to = None;
    let mut side_error = None;
    if let Some(sf) = &c.side_file {
        let s = src_dir.join(sf);
        if s.symlink_metadata().is_ok() {
            let t = free_name(&dst_dir, OsString::from(sf));
            match move_file(&s, &t) {
                Ok(()) => side_to = Some(t),
                Err(e) => side_error = Some(format!("side file {} not moved: {e}", s.display())),
            }
        }
    }
    let mut note_name = to.file_name().unwrap_or_default().to_os_string();
    note_name.push(".json");
    let note = dst_dir.join(note_name);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let backing_path = c.dir_rel.join(&c.entry).to_string_lossy().into_owned();
    let body = serde_json::json!({
        "volume_id": vol.config().volume_id,
        "path": c.path,
        "backing_path": backing_path,
        "moved_from": src.to_string_lossy(),
        "side_file": c.side_file,
        "block_size": vol.config().block_size,
        "bad_blocks": c.bad_blocks,
        "problems": c.reasons,
        "quarantined_at": now,
    });
    let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
    text.push(b'\n');
    write_new(&note, &text, 0o600).map_err(|e| {
        format!(
            "moved to {}, but cannot write the note {}: {e}",
            to.display(),
            note.display()
        )
    })?;
    sync_dir(&dst_dir);
    sync_dir(&src_dir);
    if let Some(e) = side_error {
        return Err(format!("moved to {}, but {e}", to.display()));
    }
    Ok(QuarantinedFile {
        backing_path,
        path: c.path.clone(),
        to,
        note,
        side_file: side_to,
        bad_blocks: c.bad_blocks.clone(),
    })
}

/// Copies the volume's metadata into the quarantine root: `volume.json` once, `keystore.json`
/// whenever it changed (key stores only grow), and the root directory id.
fn copy_volume_meta(backing: &Path, qdir: &Path) -> std::io::Result<()> {
    let meta = qdir.join(META_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&meta)?;
    let from = backing.join(META_DIR);
    for record in [Record::VolumeConfig, Record::KeyStore] {
        meta_copies::copy_record(&from, &meta, record).map_err(std::io::Error::other)?;
    }
    copy_dir_id(backing, qdir)?;
    Ok(())
}

/// Creates `qdir/rel` directory by directory, each with a copy of the backing directory's id
/// file and (for a long name) its side file in the parent.
fn mirror_dirs(backing: &Path, qdir: &Path, rel: &Path) -> std::io::Result<()> {
    let mut src = backing.to_path_buf();
    let mut dst = qdir.to_path_buf();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        if let Some(hash) = name.to_str().and_then(|n| n.strip_prefix(LONG_NAME_PREFIX)) {
            let side = format!("{SIDE_FILE_PREFIX}{hash}");
            copy_if_missing(&src.join(&side), &dst.join(&side))?;
        }
        src.push(name);
        dst.push(name);
        match fs::DirBuilder::new().mode(0o700).create(&dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        copy_dir_id(&src, &dst)?;
    }
    Ok(())
}

/// Copies the directory id of `src` (its verified copy) into both copies in `dst`, unless
/// `dst` has its id file already; a version-1 id file is copied as it is.
fn copy_dir_id(src: &Path, dst: &Path) -> std::io::Result<()> {
    use crate::volume::dirid_copies;
    if dst.join(DIRID_FILE_NAME).symlink_metadata().is_ok() {
        return Ok(());
    }
    let s = fs::File::open(src)?;
    let Ok(r) = dirid_copies::read_copies(s.as_fd()).resolve(&src.display().to_string()) else {
        // Nothing verified to copy: keep what there is, for a later look.
        return copy_if_missing(&src.join(DIRID_FILE_NAME), &dst.join(DIRID_FILE_NAME));
    };
    if r.legacy {
        return copy_if_missing(&src.join(DIRID_FILE_NAME), &dst.join(DIRID_FILE_NAME));
    }
    let d = fs::File::open(dst)?;
    dirid_copies::create_file(d.as_fd(), &r.id)?;
    match dirid_copies::write_xattr(d.as_fd(), &r.id) {
        Err(e) if !dirid_copies::is_unsupported(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Copies a small metadata file (a copy, the original stays). A missing source is skipped.
fn copy_if_missing(src: &Path, dst: &Path) -> std::io::Result<()> {
    if dst.symlink_metadata().is_ok() {
        return Ok(());
    }
    let bytes = match fs::read(src) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    write_new(dst, &bytes, 0o400)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `dir/name`, or `dir/name~N` if that is taken (a file quarantined earlier).
fn free_name(dir: &Path, name: OsString) -> PathBuf {
    let first = dir.join(&name);
    if first.symlink_metadata().is_err() {
        return first;
    }
    (1u32..)
        .map(|n| {
            let mut s = name.clone();
            s.push(format!("~{n}"));
            dir.join(s)
        })
        .find(|p| p.symlink_metadata().is_err())
        .unwrap_or(first)
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Renames `src` to `dst` (never replacing); across filesystems copies content, mode,
/// owner, times and xattrs, fsyncs, and removes `src` only once the copy is durable.
fn move_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    match rename_noreplace(src, dst) {
        Ok(()) => Ok(()),
        Err(Errno::EXDEV) => copy_then_remove(src, dst),
        Err(e) => Err(e.into()),
    }
}

/// `rename` that never replaces `dst`. On a filesystem without `renameat2` flags (EINVAL for
/// a regular file can mean nothing else), checks first: fsck is the only writer of the
/// quarantine directory.
fn rename_noreplace(src: &Path, dst: &Path) -> nix::Result<()> {
    match renameat2(AT_FDCWD, src, AT_FDCWD, dst, RenameFlags::RENAME_NOREPLACE) {
        Err(Errno::EINVAL) => match dst.symlink_metadata() {
            Ok(_) => Err(Errno::EEXIST),
            Err(_) => renameat2(AT_FDCWD, src, AT_FDCWD, dst, RenameFlags::empty()),
        },
        r => r,
    }
}

fn copy_then_remove(src: &Path, dst: &Path) -> std::io::Result<()> {
    let md = src.symlink_metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut tmp_name = OsString::from(".tmp.quarantine.");
    tmp_name.push(format!("{}.", std::process::id()));
    tmp_name.push(dst.file_name().unwrap_or_default());
    let tmp = dst.with_file_name(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(src)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let copied = std::io::copy(&mut input, &mut out)?;
        if copied != md.len() {
            return Err(std::io::Error::other(format!(
                "copied {copied} of {} bytes",
                md.len()
            )));
        }
        copy_xattrs(&input, &out)?;
        let _ = nix::unistd::fchown(&out, Some(md.uid().into()), Some(md.gid().into()));
        out.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))?;
        let times = fs::FileTimes::new()
            .set_accessed(md.accessed()?)
            .set_modified(md.modified()?);
        out.set_times(times)?;
        out.sync_all()?;
        rename_noreplace(&tmp, dst)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp); // our own partial copy; the source is untouched
        return Err(e);
    }
    sync_dir(dst.parent().unwrap_or(Path::new(".")));
    fs::remove_file(src)
}

/// Copies every extended attribute (cmkfs keeps encrypted xattr values there).
fn copy_xattrs(from: &File, to: &File) -> std::io::Result<()> {
    let list = xattr_buf(|buf, len| unsafe {
        libc::flistxattr(from.as_raw_fd(), buf as *mut libc::c_char, len)
    })?;
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        let value = xattr_buf(|buf, len| unsafe {
            libc::fgetxattr(
                from.as_raw_fd(),
                cname.as_ptr(),
                buf as *mut libc::c_void,
                len,
            )
        })?;
        let rc = unsafe {
            libc::fsetxattr(
                to.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr() as *const libc::c_void,
                value.len(),
                0,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Calls a size-probing xattr syscall until the buffer is big enough.
fn xattr_buf(call: impl Fn(*mut u8, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u8; need as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}
