//! In-memory vault: keys, their versions, attributes, and soft-deleted keys.
//!
//! Pure state and Key Vault semantics (which operation is allowed on which version); no HTTP here.
//! RSA generation is slow, so callers generate the [`KeyMaterial`] *before* taking the vault lock and
//! hand it to [`Vault::add_version`]. Versions are returned as cheap clones ([`KeyVersion`] holds
//! the key material in an `Arc`) so crypto runs outside the lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::{KeyMaterial, OCT_KTY};
use crate::error::KvError;

/// Default `key_ops` of a new RSA key.
pub const DEFAULT_KEY_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];

/// Default `key_ops` of a new oct-HSM (AES) key.
pub const DEFAULT_OCT_KEY_OPS: [&str; 4] = ["encrypt", "decrypt", "wrapKey", "unwrapKey"];

/// Soft-delete retention reported in bundles.
pub const RECOVERABLE_DAYS: i64 = 90;

/// Current time as Unix seconds (Key Vault IntDate).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh 32-hex-digit version id.
pub fn new_version_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Extremely unlikely; fall back to time-derived bytes so ids still differ.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks a key name (`^[0-9a-zA-Z-]{1,127}$`).
pub fn validate_name(name: &str) -> Result<(), KvError> {
    if !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        Ok(())
    } else {
        Err(KvError::bad_parameter(format!(
            "The request URI contains an invalid name: '{name}'. Key names may contain only 0-9, a-z, A-Z and -."
        )))
    }
}

/// Key version attributes (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `enabled`.
    pub enabled: bool,
    /// `created`.
    pub created: i64,
    /// `updated`.
    pub updated: i64,
    /// `exp` (expiry), if set.
    pub exp: Option<i64>,
    /// `nbf` (not before), if set.
    pub nbf: Option<i64>,
}

/// Key operations checked by [`KeyVersion::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    /// wrapKey (refused when disabled, expired or not yet valid).
    WrapKey,
    /// unwrapKey (refused only when disabled).
    UnwrapKey,
    /// encrypt (like wrapKey).
    Encrypt,
    /// decrypt (like unwrapKey).
    Decrypt,
}

impl KeyOp {
    /// The JWK operation name (`wrapKey`, …).
    pub fn jwk_name(self) -> &'static str {
        match self {
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
        }
    }

    fn needs_validity_window(self) -> bool {
        matches!(self, KeyOp::WrapKey | KeyOp::Encrypt)
    }
}

/// One version of a key.
#[derive(Debug, Clone)]
pub struct KeyVersion {
    /// 32-hex version id.
    pub version: String,
    /// `RSA`, `RSA-HSM` or `oct-HSM`.
    pub kty: String,
    /// Key material.
    pub material: Arc<KeyMaterial>,
    /// Attributes.
    pub attrs: Attributes,
    /// Permitted operations (`key_ops`).
    pub key_ops: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl KeyVersion {
    /// Key Vault's checks for `op` at time `now`: disabled → 403 `KeyDisabled`; op not in
    /// `key_ops` → 403 `KeyOperationForbidden`; wrap/encrypt outside `nbf`/`exp` → 403
    /// `KeyExpired` / `KeyNotYetValid` (unwrap/decrypt still work, as documented).
    pub fn check(&self, op: KeyOp, now: i64) -> Result<(), KvError> {
        let name = op.jwk_name();
        if !self.attrs.enabled {
            return Err(KvError::key_disabled(name));
        }
        if !self.key_ops.iter().any(|o| o == name) {
            return Err(KvError::new(
                403,
                "Forbidden",
                format!("Operation {name} is not permitted on this key."),
            )
            .with_inner("KeyOperationForbidden"));
        }
        if op.needs_validity_window() {
            if let Some(exp) = self.attrs.exp
                && now >= exp
            {
                return Err(KvError::new(
                    403,
                    "Forbidden",
                    format!("Operation {name} is not allowed on an expired key."),
                )
                .with_inner("KeyExpired"));
            }
            if let Some(nbf) = self.attrs.nbf
                && now < nbf
            {
                return Err(KvError::new(
                    403,
                    "Forbidden",
                    format!("Operation {name} is not allowed on a key that is not yet valid."),
                )
                .with_inner("KeyNotYetValid"));
            }
        }
        Ok(())
    }
}

/// All versions of one key (oldest first; the last one is "latest").
#[derive(Debug, Clone, Default)]
pub struct KeyEntry {
    /// Versions, oldest first.
    pub versions: Vec<KeyVersion>,
}

impl KeyEntry {
    fn latest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    fn find_mut(&mut self, version: &str) -> Option<&mut KeyVersion> {
        if version.is_empty() {
            self.versions.last_mut()
        } else {
            self.versions
                .iter_mut()
                .find(|v| v.version.eq_ignore_ascii_case(version))
        }
    }

    fn find(&self, version: &str) -> Option<&KeyVersion> {
        if version.is_empty() {
            self.latest()
        } else {
            self.versions
                .iter()
                .find(|v| v.version.eq_ignore_ascii_case(version))
        }
    }
}

/// A soft-deleted key.
#[derive(Debug, Clone)]
pub struct DeletedKey {
    /// The key as it was.
    pub entry: KeyEntry,
    /// Deletion time.
    pub deleted_date: i64,
    /// When it would be purged.
    pub scheduled_purge_date: i64,
}

impl DeletedKey {
    /// Latest version of the deleted key.
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.entry.latest()
    }
}

/// Parameters of a new version (create / rotate / test control).
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// `RSA` (default), `RSA-HSM` or `oct-HSM` (`oct` is stored as `oct-HSM`).
    pub kty: Option<String>,
    /// `key_ops`; default [`DEFAULT_KEY_OPS`] (RSA) or [`DEFAULT_OCT_KEY_OPS`] (oct).
    pub key_ops: Option<Vec<String>>,
    /// Initial attribute changes.
    pub patch: AttributePatch,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// A partial update (PATCH). Outer `None` = unchanged; `Some(None)` for exp/nbf = clear.
#[derive(Debug, Clone, Default)]
pub struct AttributePatch {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `exp`.
    pub exp: Option<Option<i64>>,
    /// `nbf`.
    pub nbf: Option<Option<i64>>,
    /// `key_ops`.
    pub key_ops: Option<Vec<String>>,
    /// `tags` (replaces all tags).
    pub tags: Option<BTreeMap<String, String>>,
}

impl AttributePatch {
    fn apply(&self, v: &mut KeyVersion, now: i64) {
        if let Some(e) = self.enabled {
            v.attrs.enabled = e;
        }
        if let Some(exp) = self.exp {
            v.attrs.exp = exp;
        }
        if let Some(nbf) = self.nbf {
            v.attrs.nbf = nbf;
        }
        if let Some(ops) = &self.key_ops {
            v.key_ops = ops.clone();
        }
        if let Some(tags) = &self.tags {
            v.tags = tags.clone();
        }
        v.attrs.updated = now;
    }
}

/// The vault.
#[derive(Debug, Default)]
pub struct Vault {
    keys: BTreeMap<String, KeyEntry>,
    deleted: BTreeMap<String, DeletedKey>,
}

impl Vault {
    /// Adds a new version to `name` (creating the key if needed). 409 if the name is soft-deleted.
    pub fn add_version(
        &mut self,
        name: &str,
        material: impl Into<KeyMaterial>,
        spec: NewVersion,
    ) -> Result<KeyVersion, KvError> {
        validate_name(name)?;
        let material: KeyMaterial = material.into();
        if self.deleted.contains_key(name) {
            return Err(KvError::new(
                409,
                "Conflict",
                format!(
                    "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
                ),
            ));
        }
        let now = now();
        let (kty, default_ops): (String, &[&str]) = if material.is_oct() {
            (OCT_KTY.to_string(), &DEFAULT_OCT_KEY_OPS)
        } else {
            let kty = spec
                .kty
                .filter(|k| k == "RSA" || k == "RSA-HSM")
                .unwrap_or_else(|| "RSA".to_string());
            (kty, &DEFAULT_KEY_OPS)
        };
        let mut v = KeyVersion {
            version: new_version_id(),
            kty,
            material: Arc::new(material),
            attrs: Attributes {
                enabled: true,
                created: now,
                updated: now,
                exp: None,
                nbf: None,
            },
            key_ops: spec
                .key_ops
                .unwrap_or_else(|| default_ops.iter().map(|s| s.to_string()).collect()),
            tags: spec.tags.unwrap_or_default(),
        };
        spec.patch.apply(&mut v, now);
        v.attrs.updated = now;
        self.keys
            .entry(name.to_string())
            .or_default()
            .versions
            .push(v.clone());
        Ok(v)
    }

    /// The latest version's parameters (kty, bits, key_ops, tags) used by rotate.
    pub fn rotation_template(&self, name: &str) -> Result<(usize, NewVersion), KvError> {
        let latest = self
            .keys
            .get(name)
            .and_then(KeyEntry::latest)
            .ok_or_else(|| KvError::key_not_found(name, None))?;
        Ok((
            latest.material.bits(),
            NewVersion {
                kty: Some(latest.kty.clone()),
                key_ops: Some(latest.key_ops.clone()),
                patch: AttributePatch::default(),
                tags: Some(latest.tags.clone()),
            },
        ))
    }

    /// A version (`""` = latest). Unknown or deleted → 404 `KeyNotFound`.
    pub fn get(&self, name: &str, version: &str) -> Result<KeyVersion, KvError> {
        self.keys
            .get(name)
            .and_then(|e| e.find(version))
            .cloned()
            .ok_or_else(|| KvError::key_not_found(name, Some(version)))
    }

    /// All versions of a key, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<KeyVersion>, KvError> {
        self.keys
            .get(name)
            .map(|e| e.versions.clone())
            .ok_or_else(|| KvError::key_not_found(name, None))
    }

    /// Latest version of every key, by name.
    pub fn list(&self) -> Vec<(String, KeyVersion)> {
        self.keys
            .iter()
            .filter_map(|(n, e)| e.latest().map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Applies a PATCH to one version (`""` = latest).
    pub fn update(
        &mut self,
        name: &str,
        version: &str,
        patch: &AttributePatch,
    ) -> Result<KeyVersion, KvError> {
        let v = self
            .keys
            .get_mut(name)
            .and_then(|e| e.find_mut(version))
            .ok_or_else(|| KvError::key_not_found(name, Some(version)))?;
        patch.apply(v, now());
        Ok(v.clone())
    }

    /// Sets `enabled` on every version of a key.
    pub fn set_enabled_all(&mut self, name: &str, enabled: bool) -> Result<(), KvError> {
        let e = self
            .keys
            .get_mut(name)
            .ok_or_else(|| KvError::key_not_found(name, None))?;
        let now = now();
        for v in &mut e.versions {
            v.attrs.enabled = enabled;
            v.attrs.updated = now;
        }
        Ok(())
    }

    /// Soft-deletes a key (all versions).
    pub fn delete(&mut self, name: &str) -> Result<DeletedKey, KvError> {
        let entry = self
            .keys
            .remove(name)
            .ok_or_else(|| KvError::key_not_found(name, None))?;
        let now = now();
        let d = DeletedKey {
            entry,
            deleted_date: now,
            scheduled_purge_date: now + RECOVERABLE_DAYS * 86400,
        };
        self.deleted.insert(name.to_string(), d.clone());
        Ok(d)
    }

    /// A soft-deleted key.
    pub fn get_deleted(&self, name: &str) -> Result<DeletedKey, KvError> {
        self.deleted
            .get(name)
            .cloned()
            .ok_or_else(|| KvError::key_not_found(name, None))
    }

    /// All soft-deleted keys, by name.
    pub fn list_deleted(&self) -> Vec<(String, DeletedKey)> {
        self.deleted
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect()
    }

    /// Recovers a soft-deleted key; returns its latest version.
    pub fn recover(&mut self, name: &str) -> Result<KeyVersion, KvError> {
        let d = self
            .deleted
            .remove(name)
            .ok_or_else(|| KvError::key_not_found(name, None))?;
        let latest = d.entry.latest().cloned();
        self.keys.insert(name.to_string(), d.entry);
        latest.ok_or_else(|| KvError::key_not_found(name, None))
    }

    /// Permanently removes a soft-deleted key.
    pub fn purge(&mut self, name: &str) -> Result<(), KvError> {
        self.deleted
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| KvError::key_not_found(name, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut vault = Vault::default();
        let v1 = vault
            .add_version(
                "kek",
                crate::crypto::RsaKey::generate(2048).expect("gen"),
                NewVersion::default(),
            )
            .expect("add");
        assert_eq!(v1.version.len(), 32);
        assert_eq!(vault.get("kek", "").expect("latest").version, v1.version);
        let p = AttributePatch {
            enabled: Some(false),
            ..Default::default()
        };
        vault.update("kek", &v1.version, &p).expect("patch");
        let got = vault.get("kek", &v1.version).expect("get");
        assert_eq!(
            got.check(KeyOp::UnwrapKey, now())
                .expect_err("disabled")
                .inner,
            Some("KeyDisabled")
        );
        vault.delete("kek").expect("delete");
        assert_eq!(vault.get("kek", "").expect_err("gone").status, 404);
        assert_eq!(
            vault
                .add_version(
                    "kek",
                    crate::crypto::RsaKey::generate(2048).expect("gen"),
                    NewVersion::default()
                )
                .expect_err("409")
                .status,
            409
        );
        vault.recover("kek").expect("recover");
        assert!(vault.get("kek", &v1.version).is_ok());
        assert!(validate_name("bad/name").is_err());
    }

    #[test]
    fn expiry_blocks_wrap_only() {
        let mut vault = Vault::default();
        let patch = AttributePatch {
            exp: Some(Some(now() - 10)),
            ..Default::default()
        };
        let v = vault
            .add_version(
                "k",
                crate::crypto::RsaKey::generate(2048).expect("gen"),
                NewVersion {
                    patch,
                    ..Default::default()
                },
            )
            .expect("add");
        assert_eq!(
            v.check(KeyOp::WrapKey, now()).expect_err("expired").inner,
            Some("KeyExpired")
        );
        assert!(v.check(KeyOp::UnwrapKey, now()).is_ok());
    }
}
