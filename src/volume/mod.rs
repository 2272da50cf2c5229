//! The volume core, usable without FUSE: the backing-directory layout, directory handles and
//! name operations, file content with block read-modify-write, xattrs, symlink targets and the
//! open-file table with per-inode locks. Never names a FUSE type.

mod acl;
mod app_locks;
mod atime;
mod attr;
mod backup;
mod dir;
pub mod dirid_copies;
mod error;
mod file;
mod holes;
mod init;
mod lock;
mod meta;
mod open_files;
mod reaper;
mod reencrypt;
mod rename_compat;
mod scan;
mod scope;
mod shared;
mod shared_io;
mod symlink;
mod tmpfile;
mod xattr;

pub use acl::{Acl, AclKind, Inherited};
pub use app_locks::LockRange;
pub use atime::AtimePolicy;
pub use attr::{Attr, FileKind};
pub use backup::{
    BACKUP_RECORD, KeyBackup, RestoreReport, backup_volume, parse_backup, restore_volume,
    surviving_volume_id,
};
pub use dir::{Dir, DirEntry, LastRef, Owner, Replaced, TimeSet};
pub use dirid_copies::{DirIdCopies, DirIdCopy, ResolvedDirId};
pub use error::{Result, VolumeError, errno};
pub use file::{OpenFile, seal_blocks};
pub use holes::{HOLES_DIR, hole_map_name};
pub use init::{InitOptions, InitReport, init_volume};
pub use lock::{MountLock, lock_backing, lock_backing_shared};
pub use meta::{DirIdFinding, MetaEvent};
pub use reaper::ReleaseHold;
pub use reencrypt::{ReencryptReport, Reencrypted};
pub use scan::{
    EntryName, HeaderState, ScanDir, ScanEntry, SymlinkScan, TMP_MKDIR_PREFIX, TMP_PREFIX,
};
pub use scope::ScopeTree;
pub use shared::{HOSTS_DIR, HostLease, list_hosts, set_shared};
pub use shared_io::FileLock;
pub use symlink::LINKS_DIR;
pub use xattr::XattrTarget;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::{BlockLayout, DataKeyRef, META_DIR, VolumeConfig};
use std::sync::Arc;

use crate::keys::{CustomerKey, DataKeyCache, KeyHierarchy, KeyProvider, ServiceKey};

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
    /// Rewrite damaged copies of metadata (volume config, key store, directory ids) even
    /// when `read_only` (for `fsck --repair`); a writable volume always repairs them.
    pub repair_metadata: bool,
    /// Connects to the customer-managed keys of key scopes (None: scopes with their own
    /// customer-managed key cannot be opened).
    pub connector: Option<Arc<dyn crate::keys::CmkConnector>>,
    /// Use the keys of locked scopes too (`fsck`: it checks, never serves).
    pub ignore_scope_locks: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            cache_capacity: 1024,
            cache_max_age: Duration::from_secs(3600),
            cmk: None,
            audit: Arc::new(crate::audit::AuditLog::disabled()),
            repair_metadata: false,
            connector: None,
            ignore_scope_locks: false,
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
    /// Told when space is wanted (statfs, a full disk): the FUSE layer frees the removed files
    /// its inodes keep (and that nothing has open) before the release thread is drained.
    on_space: std::sync::RwLock<Option<SpaceHook>>,
    /// Frees deleted files in the background.
    reaper: reaper::Reaper,
    /// The mount's atime policy, and whether it applies to directories (`nodiratime`).
    atime: std::sync::RwLock<atime::AtimeSettings>,
    /// Whether damaged metadata copies are rewritten.
    repair_metadata: bool,
    /// Damaged metadata copies found, and repairs made.
    meta_log: meta::MetaLog,
    /// Set once the backing filesystem refused the directory-id xattr (warned once).
    no_dirid_xattr: std::sync::atomic::AtomicBool,
    /// Renames with flags, emulated where the backing filesystem lacks them.
    renamer: rename_compat::Renamer,
    /// Shared mode (`volume.json`): other hosts' daemons change the same backing files.
    shared: bool,
    /// Applications' locks forwarded to the backing files (shared mode).
    app_locks: app_locks::AppLocks,
}

/// Called with (old, new) backing inode numbers when re-encryption replaces a file.
type ReplacedHook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Called when space is wanted (see `Volume::release_deleted`).
pub type SpaceHook = Box<dyn Fn() + Send + Sync>;

/// Copy 1 of `volume.json` (copy 2 is `volume.json.2`).
/// The entry names of the directory `dir` (a metadata subdirectory), sorted.
fn sorted_names(dir: OwnedFd) -> Result<Vec<String>> {
    let mut d = nix::dir::Dir::from_fd(dir)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

pub fn volume_config_path(backing: &Path) -> PathBuf {
    backing.join(META_DIR).join("volume.json")
}

/// Copy 1 of the key store (copy 2 is `keystore.json.2`).
pub fn key_store_path(backing: &Path) -> PathBuf {
    backing.join(META_DIR).join("keystore.json")
}

impl Volume {
    /// Reads and validates `volume.json` of the volume in `backing` (the best valid copy;
    /// nothing is written).
    pub fn read_config(backing: &Path) -> Result<VolumeConfig> {
        meta::read_config_copies(backing, false).map(|(c, _)| c)
    }

    /// Opens the volume in `backing` with the service key, and proves the key is right by
    /// unwrapping the current data key before anything is served.
    pub fn open(backing: &Path, service_key: ServiceKey, opts: &OpenOptions) -> Result<Volume> {
        let setup = |m: String| VolumeError::Setup(m);
        let repair_metadata = !opts.read_only || opts.repair_metadata;
        let meta_log = meta::MetaLog::new(opts.audit.clone());
        let (config, store, store_file) = meta::open_records(backing, repair_metadata, &meta_log)?;
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
        .with_store_file(store_file.clone())
        .with_shared(config.shared)
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
        if let Some(c) = &opts.connector {
            keys = keys.with_connector(c.clone());
        }
        // Scopes locked before (kept in the key store) stay locked.
        keys = keys.with_ignore_locks(opts.ignore_scope_locks);
        keys.refresh_denied();
        let store_path = store_file.path();
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
        let shared = config.shared;
        Ok(Volume {
            backing: backing.to_path_buf(),
            root_fd,
            layout: BlockLayout::new(config.block_size as u64),
            config,
            keys,
            open_files: OpenFileTable::default(),
            read_only: opts.read_only,
            on_replaced: std::sync::RwLock::new(None),
            on_space: std::sync::RwLock::new(None),
            reaper: reaper::Reaper::new(),
            atime: std::sync::RwLock::new(atime::AtimeSettings::default()),
            repair_metadata,
            meta_log,
            no_dirid_xattr: std::sync::atomic::AtomicBool::new(false),
            renamer: rename_compat::Renamer::default(),
            shared,
            app_locks: app_locks::AppLocks::default(),
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

    /// Shared mode: several daemons (hosts) have the volume mounted (docs/shared.md).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Whether `renameat2` flags are emulated because the backing filesystem lacks them
    /// (found on the first rename that needed one).
    pub fn emulates_rename_flags(&self) -> bool {
        self.renamer.emulating()
    }

    /// The data key new files and directories of key scope `scope` get.
    fn current_key(&self, scope: u32) -> Result<DataKeyRef> {
        Ok(self.keys.current(scope)?)
    }

    /// The customer-managed key URL the key store names, if any (read before opening, to
    /// know whether Key Vault settings are needed).
    pub fn read_cmk_url(backing: &Path) -> Result<Option<String>> {
        let config = Self::read_config(backing)?;
        Ok(crate::keys::KeyStoreFile::new(backing, &config.volume_id)
            .load(false)?
            .0
            .cmk)
    }

    /// Damaged, missing or stale metadata copies found since the volume was opened (and
    /// whether each was rewritten).
    pub fn metadata_events(&self) -> Vec<MetaEvent> {
        self.meta_log.events()
    }

    /// How many metadata copies were rewritten since the volume was opened.
    pub fn metadata_repairs(&self) -> u64 {
        self.meta_log.repairs()
    }

    /// Forgets the content keys derived into open files (after a revocation or flush), so
    /// the next access goes through the key hierarchy again.
    pub fn forget_open_file_keys(&self) {
        for f in self.open_files.live() {
            f.forget_cipher();
        }
    }

    /// As [`Self::forget_open_file_keys`] for the open files of the key scopes `scopes`.
    pub fn forget_open_file_keys_in(&self, scopes: &[u32]) {
        for f in self.open_files.live() {
            if scopes.contains(&f.scope()) {
                f.forget_cipher();
            }
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

    /// Registers the listener asked to give up removed files when space is wanted.
    pub fn set_space_listener(&self, f: SpaceHook) {
        *self.on_space.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Waits until the deleted files still being freed in the background are freed; returns
    /// whether there were any.
    pub fn release_deleted(&self) -> bool {
        if let Some(f) = self
            .on_space
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f();
        }
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
