//! JSON records in the metadata directory: the volume config (`volume.json`) and the key
//! store (`keystore.json`). Both carry `"format": 1` (a version-1 volume) or `2` (stored in two
//! sealed copies, see `sealed`) and reject unknown fields.

use serde::{Deserialize, Serialize};

use super::{DataKeyRef, FORMAT_VERSION, FormatError, META_FORMAT_VERSION};
use crate::crypto::NameScheme;

/// `volume.json`: the parameters fixed when the volume was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub format: u8,
    /// Random volume id, 32 hex digits.
    pub volume_id: String,
    /// Plaintext bytes per block; a power of two from 512 to 1 MiB.
    pub block_size: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    pub content_cipher: String,
    pub name_cipher: String,
    /// Shared mode: any number of daemons (on several hosts) may mount the volume at once
    /// (docs/shared.md). Absent means false; binaries without shared mode refuse the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl VolumeConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let c: VolumeConfig = serde_json::from_slice(bytes)
            .map_err(|_| FormatError::Field("volume.json is not valid"))?;
        if c.format != FORMAT_VERSION && c.format != META_FORMAT_VERSION {
            return Err(FormatError::Version(c.format));
        }
        if !c.block_size.is_power_of_two() || !(512..=1 << 20).contains(&c.block_size) {
            return Err(FormatError::Field("block_size"));
        }
        if c.content_cipher != "AES-256-GCM" {
            return Err(FormatError::Field("cipher"));
        }
        c.name_scheme()?;
        Ok(c)
    }

    /// The name encryption scheme: `"AES-256-GCM-SIV"` (format 1) or
    /// `"HMAC-SHA256-SIV-AES-256-CTR"` (the FIPS scheme, format 2).
    pub fn name_scheme(&self) -> Result<NameScheme, FormatError> {
        NameScheme::parse(&self.name_cipher).ok_or(FormatError::Field("name_cipher"))
    }

    pub fn block_shift(&self) -> u8 {
        self.block_size.trailing_zeros() as u8
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Identity of a key that wrapped a data key, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WrapperId {
    /// The service-managed key, by fingerprint; AES-256 key wrap (RFC 3394).
    Service { fingerprint: String },
    /// A customer-managed key: full key id with version, and the algorithm used.
    Cmk { key_id: String, algorithm: String },
}

/// One data key, stored only wrapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedDataKey {
    pub scope: u32,
    pub epoch: u32,
    pub created: u64,
    /// The keys that wrapped it, in the order they were applied.
    pub wrapped_by: Vec<WrapperId>,
    /// The outermost ciphertext, standard base64.
    pub wrapped: String,
}

impl WrappedDataKey {
    pub fn key_ref(&self) -> DataKeyRef {
        DataKeyRef {
            scope: self.scope,
            epoch: self.epoch,
        }
    }
}

/// `keystore.json`: every data key of the volume and which epoch of each scope is current.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStore {
    pub format: u8,
    /// The customer-managed key (versionless URL, `https://VAULT/keys/NAME`) that wraps every
    /// data key on top of the service key; absent for service-key-only volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmk: Option<String>,
    pub data_keys: Vec<WrappedDataKey>,
    /// Key scopes other than the volume's own (scope 0): directory subtrees with their own
    /// data keys and customer-managed key. Absent when there are none, so volumes without
    /// scopes read as before; binaries without scopes refuse the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeRecord>,
}

/// One key scope: the directory at its root, the customer-managed key that wraps its data
/// keys (on top of the service key; none with `--service-key-only`), and whether it is locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRecord {
    /// The scope number in data-key references (1 and up).
    pub scope: u32,
    /// The directory id of the scope's root directory, 32 hex digits.
    pub root_dir_id: String,
    /// Versionless key URL, `https://VAULT/keys/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmk: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Locked on demand (`cmkfs scope lock`): its keys are not unwrapped until unlocked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
}

impl KeyStore {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let s: KeyStore = serde_json::from_slice(bytes)
            .map_err(|_| FormatError::Field("keystore.json is not valid"))?;
        if s.format != FORMAT_VERSION && s.format != META_FORMAT_VERSION {
            return Err(FormatError::Version(s.format));
        }
        let mut refs: Vec<DataKeyRef> = s.data_keys.iter().map(|k| k.key_ref()).collect();
        refs.sort();
        if refs.windows(2).any(|w| w[0] == w[1]) {
            return Err(FormatError::Field("duplicate data key"));
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn find(&self, key: DataKeyRef) -> Option<&WrappedDataKey> {
        self.data_keys.iter().find(|k| k.key_ref() == key)
    }

    /// The record of key scope `scope` (None for scope 0, the volume's own, and unknown ones).
    pub fn scope(&self, scope: u32) -> Option<&ScopeRecord> {
        self.scopes.iter().find(|s| s.scope == scope)
    }

    /// The customer-managed key (versionless URL) that wraps the data keys of `scope`.
    pub fn scope_cmk(&self, scope: u32) -> Option<&str> {
        match scope {
            0 => self.cmk.as_deref(),
            n => self.scope(n).and_then(|s| s.cmk.as_deref()),
        }
    }

    /// The number the next new scope gets.
    pub fn next_scope(&self) -> u32 {
        let used = self.data_keys.iter().map(|k| k.scope);
        let scopes = self.scopes.iter().map(|s| s.scope);
        used.chain(scopes).max().unwrap_or(0) + 1
    }

    /// The newest epoch of `scope`: new files and directories use it.
    pub fn current(&self, scope: u32) -> Option<DataKeyRef> {
        self.data_keys
            .iter()
            .filter(|k| k.scope == scope)
            .map(|k| k.key_ref())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> KeyStore {
        KeyStore {
            format: 1,
            cmk: None,
            data_keys: vec![WrappedDataKey {
                scope: 0,
                epoch: 0,
                created: 1,
                wrapped_by: vec![WrapperId::Service {
                    fingerprint: "00ff".into(),
                }],
                wrapped: "AAAA".into(),
            }],
            scopes: Vec::new(),
        }
    }

    #[test]
    fn keystore_round_trip_and_rejects_unknown_fields() {
        let s = store();
        assert_eq!(KeyStore::parse(&s.to_json()).unwrap(), s);
        let text = String::from_utf8(s.to_json())
            .unwrap()
            .replace("\"format\"", "\"formt\"");
        assert!(KeyStore::parse(text.as_bytes()).is_err());
        assert!(KeyStore::parse(b"{").is_err());
        let mut dup = store();
        dup.data_keys.push(dup.data_keys[0].clone());
        assert!(KeyStore::parse(&dup.to_json()).is_err());
        assert_eq!(s.current(0), Some(DataKeyRef { scope: 0, epoch: 0 }));
        // No scopes: no field, so binaries without scopes still read the store.
        assert!(!String::from_utf8_lossy(&s.to_json()).contains("scopes"));
        let mut scoped = store();
        scoped.scopes.push(ScopeRecord {
            scope: 1,
            root_dir_id: "00".repeat(16),
            cmk: Some("https://v/keys/a".into()),
            created: 2,
            locked: true,
        });
        assert_eq!(KeyStore::parse(&scoped.to_json()).unwrap(), scoped);
        assert_eq!(scoped.scope_cmk(1), Some("https://v/keys/a"));
        assert_eq!(scoped.scope_cmk(0), None);
        assert_eq!(scoped.next_scope(), 2);
    }

    #[test]
    fn volume_config_validates() {
        let c = VolumeConfig {
            format: 1,
            volume_id: "ab".into(),
            block_size: 4096,
            created: 0,
            content_cipher: "AES-256-GCM".into(),
            name_cipher: "AES-256-GCM-SIV".into(),
            shared: false,
        };
        assert_eq!(VolumeConfig::parse(&c.to_json()).unwrap(), c);
        // Not shared: no field, so binaries without shared mode still read it.
        assert!(!String::from_utf8_lossy(&c.to_json()).contains("shared"));
        let mut shared = c.clone();
        shared.shared = true;
        assert_eq!(VolumeConfig::parse(&shared.to_json()).unwrap(), shared);
        assert_eq!(c.block_shift(), 12);
        let mut bad = c.clone();
        bad.block_size = 1000;
        assert!(VolumeConfig::parse(&bad.to_json()).is_err());
    }

    #[test]
    fn volume_config_name_ciphers() {
        let mut c = VolumeConfig {
            format: 1,
            volume_id: "ab".into(),
            block_size: 4096,
            created: 0,
            content_cipher: "AES-256-GCM".into(),
            name_cipher: "HMAC-SHA256-SIV-AES-256-CTR".into(),
            shared: false,
        };
        let parsed = VolumeConfig::parse(&c.to_json()).unwrap();
        assert_eq!(parsed.name_scheme(), Ok(NameScheme::HmacSivCtr));
        c.name_cipher = "AES-256-GCM-SIV".into();
        let parsed = VolumeConfig::parse(&c.to_json()).unwrap();
        assert_eq!(parsed.name_scheme(), Ok(NameScheme::AesGcmSiv));
        for bad in ["AES-256-SIV", "", "hmac-sha256-siv-aes-256-ctr"] {
            c.name_cipher = bad.into();
            assert_eq!(
                VolumeConfig::parse(&c.to_json()),
                Err(FormatError::Field("name_cipher")),
                "{bad}"
            );
        }
    }
}
