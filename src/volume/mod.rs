//! The volume core, usable without FUSE: the backing-directory layout, directory handles and
//! name operations, file content with block read-modify-write, xattrs, symlink targets and the
//! open-file table with per-inode locks. Never names a FUSE type.

mod attr;
mod dir;
mod error;
mod file;
mod holes;
mod init;
mod lock;
mod open_files;
mod reaper;
mod reencrypt;
mod scan;
mod symlink;
mod xattr;

pub use attr::{Attr, FileKind};
pub use dir::{Dir, DirEntry, Owner, TimeSet};
pub use error::{Result, VolumeError, errno};
pub use file::{OpenFile, seal_blocks};
pub use init::{InitOptions, InitReport, init_volume};
pub use lock::{MountLock, lock_backing};
pub use reencrypt::{ReencryptReport, Reencrypted};
pub use scan::{
    EntryName, HeaderState, ScanDir, ScanEntry, SymlinkScan, TMP_MKDIR_PREFIX, TMP_PREFIX,
};
pub use xattr::XattrTarget;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::{BlockLayout, DataKeyRef, META_DIR, VolumeConfig};
use std::sync::Arc;

use crate::keys::{
    CustomerKey, DataKeyCache, KeyHierarchy, KeyProvider, ServiceKey, load_key_store,
};

use open_files::OpenFileTable;

/// How a volume is opened.
#[derive(Clone)]
pub struct OpenOptions {
    pub read_only: bool,
    pub cache_capacity: usize,
    pub cache_max_age: Duration,
    /// The customer-managed key, required when the key store names one.
    pub cmk: Option<Arc<dyn CustomerKey>>,
    /// Where key events are recorded.
    pub audit: Arc<crate::audit::AuditLog>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            cache_capacity: 1024,
            cache_max_age: Duration::from_secs(3600),
            cmk: None,
            audit: Arc::new(crate::audit::AuditLog::disabled()),
        }
    }
}

/// An open volume: its backing root, parameters and key hierarchy.
pub struct Volume {
    backing: PathBuf,
    root_fd: OwnedFd,
    config: VolumeConfig,
    layout: BlockLayout,
    keys: Arc<KeyHierarchy>,
    open_files: OpenFileTable,
    read_only: bool,
    /// Told (old, new) when re-encryption replaces a backing inode, before the old inode can
    /// be released and its number reused (the FUSE layer rebinds its inode table).
    on_replaced: std::sync::RwLock<Option<ReplacedHook>>,
    /// Frees deleted files in the background.
    reaper: reaper::Reaper,
}

/// Called with (old, new) backing inode numbers when re-encryption replaces a file.
type ReplacedHook = Box<dyn Fn(u64, u64) + Send + Sync>;

pub fn volume_config_path(backing: &Path) -> PathBuf {
    backing.join(META_DIR).join("volume.json")
}

pub fn key_store_path(backing: &Path) -> PathBuf {
    backing.join(META_DIR).join("keystore.json")
}

impl Volume {
    /// Opens the volume in `backing` with the service key, and proves the key is right by
    /// unwrapping the current data key before anything is served.
    /// Reads and validates `volume.json` of the volume in `backing`.
    pub fn read_config(backing: &Path) -> Result<VolumeConfig> {
        let setup = |m: String| VolumeError::Setup(m);
        let cfg_path = volume_config_path(backing);
        let cfg_bytes = std::fs::read(&cfg_path).map_err(|e| {
            setup(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not a cmkfs volume ({} is missing; run `cmkfs init` first)",
                    backing.display(),
                    cfg_path.display()
                )
            } else {
                format!("cannot read {}: {e}", cfg_path.display())
            })
        })?;
        VolumeConfig::parse(&cfg_bytes).map_err(|e| setup(format!("{}: {e}", cfg_path.display())))
    }

    /// Opens the volume in `backing` with the service key, and proves the key is right by
    /// unwrapping the current data key before anything is served.
    pub fn open(backing: &Path, service_key: ServiceKey, opts: &OpenOptions) -> Result<Volume> {
        let setup = |m: String| VolumeError::Setup(m);
        let config = Self::read_config(backing)?;
        let store = load_key_store(&key_store_path(backing))?;
        let root_fd: OwnedFd = File::open(backing)
            .map_err(|e| {
                setup(format!(
                    "cannot open backing directory {}: {e}",
                    backing.display()
                ))
            })?
            .into();
        let providers: Vec<Arc<dyn KeyProvider>> = vec![Arc::new(service_key)];
        let wanted_cmk = store.cmk.clone();
        let mut keys = KeyHierarchy::new(
            store,
            providers,
            DataKeyCache::new(opts.cache_capacity, opts.cache_max_age),
        )
        .with_store_path(key_store_path(backing))
        .with_audit(opts.audit.clone())
        .with_name_scheme(
            config
                .name_scheme()
                .map_err(|e| setup(format!("{}: {e}", volume_config_path(backing).display())))?,
        );
        match (&wanted_cmk, &opts.cmk) {
            (Some(url), None) => {
                return Err(setup(format!(
                    "this volume is protected by the customer-managed key {url}; give --azure-credential (and --ca-file for a private CA)"
                )));
            }
            (_, Some(cmk)) => keys = keys.with_cmk(cmk.clone()),
            (None, None) => {}
        }
        let store_path = key_store_path(backing);
        let current = keys.current(0).map_err(|_| {
            setup(format!(
                "key store {}: has no data key for scope 0",
                store_path.display()
            ))
        })?;
        keys.data_key(current).map_err(|e| match e {
            e @ (crate::keys::KeyError::WrongServiceKey { .. }
            | crate::keys::KeyError::ServiceKey { .. }
            | crate::keys::KeyError::Revoked(_)
            | crate::keys::KeyError::Unavailable(_)) => VolumeError::Keys(e),
            e => setup(format!(
                "key store {}: data key {current}: {e}",
                store_path.display()
            )),
        })?;
        let keys = Arc::new(keys);
        Ok(Volume {
            backing: backing.to_path_buf(),
            root_fd,
            layout: BlockLayout::new(config.block_size as u64),
            config,
            keys,
            open_files: OpenFileTable::default(),
            read_only: opts.read_only,
            on_replaced: std::sync::RwLock::new(None),
            reaper: reaper::Reaper::new(),
        })
    }

    pub fn backing(&self) -> &Path {
        &self.backing
    }

    pub fn config(&self) -> &VolumeConfig {
        &self.config
    }

    pub fn layout(&self) -> BlockLayout {
        self.layout
    }

    pub fn keys(&self) -> &KeyHierarchy {
        &self.keys
    }

    pub fn keys_arc(&self) -> Arc<KeyHierarchy> {
        self.keys.clone()
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The data key new files and directories get.
    fn current_key(&self) -> Result<DataKeyRef> {
        Ok(self.keys.current(0)?)
    }

    /// The customer-managed key URL the key store names, if any (read before opening, to
    /// know whether Key Vault settings are needed).
    pub fn read_cmk_url(backing: &Path) -> Result<Option<String>> {
        Ok(load_key_store(&key_store_path(backing))?.cmk)
    }

    /// Forgets the content keys derived into open files (after a revocation or flush), so
    /// the next access goes through the key hierarchy again.
    pub fn forget_open_file_keys(&self) {
        for f in self.open_files.live() {
            f.forget_cipher();
        }
    }

    /// Registers the listener for backing inodes replaced by re-encryption.
    pub fn set_replacement_listener(&self, f: Box<dyn Fn(u64, u64) + Send + Sync>) {
        *self.on_replaced.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    fn record_replacement(&self, old: u64, new: u64) {
        if let Some(f) = self
            .on_replaced
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f(old, new);
        }
    }

    /// Waits until the deleted files still being freed in the background are freed; returns
    /// whether there were any.
    pub fn release_deleted(&self) -> bool {
        self.reaper.drain()
    }

    /// Runs `op`; if the backing filesystem is full while deleted files are still being freed,
    /// waits for them and runs `op` once more. `op` must leave nothing behind when it fails.
    pub(super) fn retry_when_full<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        match op() {
            Err(e) if e.is_no_space() && self.release_deleted() => op(),
            r => r,
        }
    }

    /// Filesystem statistics of the backing filesystem (after deleted files are freed, so
    /// `df` right after `rm` shows the space).
    pub fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        self.release_deleted();
        Ok(nix::sys::statvfs::fstatvfs(&self.root_fd)?)
    }
}
