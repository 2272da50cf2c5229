//! State shared by the server tasks and the control surfaces.
//!
//! [`Shared`] owns the [`Vault`] and the [`Controls`], each behind a std `Mutex` (never held across
//! an `.await`), and implements the few operations used both by the Key Vault REST handlers and by
//! the test controls (create / rotate, which generate RSA keys outside the lock).

use std::sync::{Mutex, MutexGuard};

use crate::controls::Controls;
use crate::crypto::KeyMaterial;
use crate::error::KvError;
use crate::store::{KeyVersion, NewVersion, Vault, validate_name};

/// Default RSA key size.
pub const DEFAULT_KEY_SIZE: u32 = 2048;

/// Everything the server and the controls share.
#[derive(Debug)]
pub struct Shared {
    vault: Mutex<Vault>,
    controls: Mutex<Controls>,
    /// The test CA certificate (PEM).
    pub ca_pem: String,
}

impl Shared {
    /// New empty state.
    pub fn new(ca_pem: String) -> Self {
        Shared {
            vault: Mutex::new(Vault::default()),
            controls: Mutex::new(Controls::default()),
            ca_pem,
        }
    }

    /// Locks the vault (a poisoned lock is recovered: state stays usable after a panic elsewhere).
    pub fn vault(&self) -> MutexGuard<'_, Vault> {
        self.vault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the controls.
    pub fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a key (or a new version of it) of `spec.kty` (default `RSA`); `bits` `None` = the
    /// default size for the type (2048 RSA, 256 oct). Blocking: may generate an RSA key.
    pub fn create_key(
        &self,
        name: &str,
        bits: Option<u32>,
        spec: NewVersion,
    ) -> Result<KeyVersion, KvError> {
        validate_name(name)?;
        let material = KeyMaterial::generate(spec.kty.as_deref().unwrap_or("RSA"), bits)?;
        self.vault().add_version(name, material, spec)
    }

    /// Rotates a key: a new version with the latest version's size, kty, key_ops and tags. Blocking.
    pub fn rotate_key(&self, name: &str) -> Result<KeyVersion, KvError> {
        let (bits, spec) = self.vault().rotation_template(name)?;
        let material =
            KeyMaterial::generate(spec.kty.as_deref().unwrap_or("RSA"), Some(bits as u32))?;
        self.vault().add_version(name, material, spec)
    }
}
