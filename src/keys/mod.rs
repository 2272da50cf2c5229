//! Key hierarchy: key providers behind one trait (the local service key; Azure Key Vault
//! later), the key store of wrapped data keys, the data-key LRU cache, and derivation of
//! per-file content keys and per-directory name keys. Knows nothing of files or inodes.

pub mod azure;
mod cache;
mod cmk;
mod hierarchy;
mod provider;
mod service;
mod store;
mod watcher;

pub use cache::{CacheStats, DataKey, DataKeyCache};
pub use cmk::{CmkConnector, CmkState, CustomerKey, parse_key_url};
pub use hierarchy::{KeyHierarchy, Revocation, ScopeSummary, versionless};
pub use provider::{KeyProvider, audit_key_id};
pub use service::{ServiceKey, default_service_key_path};
pub use store::KeyStoreFile;
pub use watcher::{CheckReport, RevocationListener, RevocationWatcher, WatchStats};

use std::path::PathBuf;

/// Errors of the key layer; the FUSE boundary maps them to errnos.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("service key {path}: {reason}")]
    ServiceKey { path: PathBuf, reason: String },
    #[error(
        "service key {path} (fingerprint {actual}) is not the key of this volume (expects fingerprint {expected})"
    )]
    WrongServiceKey {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("data key {0} is not in the key store")]
    UnknownDataKey(crate::format::DataKeyRef),
    #[error("data key {key} could not be unwrapped: {reason}")]
    Unwrap {
        key: crate::format::DataKeyRef,
        reason: String,
    },
    #[error("no key provider for {0}")]
    NoProvider(String),
    #[error("key store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("access to the key was revoked: {0}")]
    Revoked(String),
    #[error("key service unreachable: {0}")]
    Unavailable(String),
    #[error("crypto: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}
