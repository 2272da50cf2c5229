//! Key scopes in the tree: making an empty directory the root of a new scope (its id names
//! the scope's key from then on, so everything created below it uses that scope's keys),
//! resolving a plaintext path to its directory, and finding each scope's root and files.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::format::{DIRID_XATTR_NAME, DirIdFile};

use super::{Dir, FileKind, Result, Volume, VolumeError, dir::hex};

/// Where each scope's root is and how many regular files each scope holds.
#[derive(Clone, Debug, Default)]
pub struct ScopeTree {
    /// Scope → its root, relative to the volume root (scope 0 → "/").
    pub roots: HashMap<u32, PathBuf>,
    /// Scope → regular files found under it (absent when its names could not be read:
    /// locked or revoked).
    pub files: HashMap<u32, u64>,
}

/// The backing names of the cmkfs xattrs of `fd` (encrypted names; not the directory id).
fn sealed_xattr_names(fd: i32) -> Result<Vec<CString>> {
    let mut list = vec![0u8; 65536];
    // SAFETY: list is valid for its length.
    let n = unsafe { libc::flistxattr(fd, list.as_mut_ptr().cast(), list.len()) };
    if n < 0 {
        return Err(VolumeError::Io(std::io::Error::last_os_error()));
    }
    Ok(list[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| s.starts_with(b"user.cmkfs.") && *s != DIRID_XATTR_NAME.as_bytes())
        .filter_map(|s| CString::new(s.to_vec()).ok())
        .collect())
}

impl Volume {
    /// Opens the directory at `rel` (plaintext names, relative to the volume root): its
    /// parent (None for the root) and the directory itself.
    pub fn open_dir_path(&self, rel: &Path) -> Result<(Option<(Dir, OsString)>, Dir)> {
        let mut parent = None;
        let mut dir = self.root()?;
        for c in rel.components() {
            match c {
                Component::Normal(name) => {
                    let sub = self.open_subdir(&dir, name).map_err(|e| match e {
                        VolumeError::Io(io) if io.raw_os_error() == Some(libc::ENOTDIR) => {
                            super::errno(libc::ENOTDIR)
                        }
                        e => e,
                    })?;
                    parent = Some((dir, name.to_os_string()));
                    dir = sub;
                }
                Component::RootDir | Component::CurDir => {}
                _ => return Err(super::errno(libc::EINVAL)),
            }
        }
        Ok((parent, dir))
    }

    /// Makes the empty directory `dir` the root of a new key scope whose data keys are
    /// wrapped by the service key and by the customer-managed key `cmk` (or the service key
    /// alone). Nested scopes are refused: `dir` must be in the volume's own scope, and not
    /// its root. The key store records the scope first; then the directory's own xattrs
    /// (ACLs) are sealed again under the scope's key and its id copies name that key. A
    /// crash between the two id copies leaves them differing only in the key, which the next
    /// open settles by the key store (see `meta::dir_id_of`). Returns the directory with its
    /// new id.
    pub fn create_scope(&self, dir: &Dir, is_root: bool, cmk: Option<&str>) -> Result<Dir> {
        self.check_writable()?;
        if is_root {
            return Err(VolumeError::Setup(
                "the volume root is the volume's own key scope (0); make a scope of a directory below it".into(),
            ));
        }
        if dir.scope() != 0 {
            return Err(VolumeError::Setup(format!(
                "this directory is inside key scope {}: nested key scopes are not supported",
                dir.scope()
            )));
        }
        let fd = dir.fd().try_clone_to_owned()?;
        if !self.is_empty_dir(&fd)? {
            return Err(VolumeError::Setup(
                "a key scope starts at an empty directory (this one has entries)".into(),
            ));
        }
        let old = self.dir_identity(dir);
        let old_names = sealed_xattr_names(fd.as_raw_fd())?;
        let key = self.keys().create_scope(&hex(&old.dir_id), cmk)?;
        let new = DirIdFile {
            key,
            dir_id: old.dir_id,
        };
        let raw = fd.as_raw_fd();
        self.rekey_xattrs(raw, raw, old.dir_id, old.key, key)?;
        match super::dirid_copies::write_xattr(fd.as_fd(), &new) {
            Err(e) if !super::dirid_copies::is_unsupported(&e) => return Err(e.into()),
            _ => {}
        }
        super::dirid_copies::replace_file(fd.as_fd(), &new)?;
        for name in old_names {
            // SAFETY: valid fd and NUL-terminated name.
            unsafe { libc::fremovexattr(raw, name.as_ptr()) };
        }
        dir.reopened_with(new)
    }

    /// Finds every scope's root (walking the tree from the root; a scope's root is a
    /// directory whose key scope differs from its parent's) and counts regular files per
    /// scope. Directories whose names cannot be read (a locked or revoked scope) are not
    /// entered.
    pub fn scope_tree(&self) -> Result<ScopeTree> {
        let mut tree = ScopeTree::default();
        tree.roots.insert(0, PathBuf::from("/"));
        let mut unreadable = std::collections::HashSet::new();
        let mut stack = vec![(self.root()?, PathBuf::from("/"))];
        while let Some((dir, path)) = stack.pop() {
            let entries = match self.read_dir(&dir) {
                Ok(e) => {
                    tree.files.entry(dir.scope()).or_insert(0);
                    e
                }
                Err(_) => {
                    unreadable.insert(dir.scope());
                    continue;
                }
            };
            for e in entries {
                let name = OsStr::from_bytes(&e.name);
                match e.kind {
                    Some(FileKind::Dir) => {
                        let Ok(sub) = self.open_subdir(&dir, name) else {
                            continue;
                        };
                        let p = path.join(name);
                        if sub.scope() != dir.scope() {
                            tree.roots.insert(sub.scope(), p.clone());
                        }
                        stack.push((sub, p));
                    }
                    Some(FileKind::File) => {
                        *tree.files.entry(dir.scope()).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
        }
        for s in unreadable {
            tree.files.remove(&s);
        }
        Ok(tree)
    }
}
