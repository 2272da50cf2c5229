//! JSON rendering of Key Vault objects and base64url helpers.
//!
//! Key bundle: `{"key":{"kid","kty","key_ops","n","e"},"attributes":{…},"tags":{}}` (no `n`/`e`
//! for oct-HSM keys); key
//! properties (list items): `{"kid","attributes","tags"}`; deleted key bundle adds `recoveryId`,
//! `deletedDate`, `scheduledPurgeDate`. Binary values are base64url without padding.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use serde_json::{Value, json};

use crate::error::KvError;
use crate::store::{Attributes, DeletedKey, KeyVersion, RECOVERABLE_DAYS};

/// Encodes base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (padding tolerated); failure is a 400 `BadParameter` naming `field`.
pub fn b64url_decode(field: &str, s: &str) -> Result<Vec<u8>, KvError> {
    URL_SAFE_NO_PAD_INDIFFERENT.decode(s.trim()).map_err(|e| {
        KvError::bad_parameter(format!("Property '{field}' is not valid base64url: {e}."))
    })
}

/// `https://host/keys/name/version`.
pub fn kid(base: &str, name: &str, version: &str) -> String {
    format!("{base}/keys/{name}/{version}")
}

/// The `attributes` object.
pub fn attributes(a: &Attributes) -> Value {
    let mut v = json!({
        "enabled": a.enabled,
        "created": a.created,
        "updated": a.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
        "exportable": false,
    });
    if let Some(exp) = a.exp {
        v["exp"] = json!(exp);
    }
    if let Some(nbf) = a.nbf {
        v["nbf"] = json!(nbf);
    }
    v
}

/// A full key bundle.
/// RSA keys carry the public `n`/`e`; oct-HSM keys carry no key material.
pub fn key_bundle(base: &str, name: &str, v: &KeyVersion) -> Value {
    let mut key = json!({
        "kid": kid(base, name, &v.version),
        "kty": v.kty,
        "key_ops": v.key_ops,
    });
    if let Some(rsa) = v.material.rsa() {
        key["n"] = json!(b64url(rsa.n()));
        key["e"] = json!(b64url(rsa.e()));
    }
    json!({
        "key": key,
        "attributes": attributes(&v.attrs),
        "tags": v.tags,
    })
}

/// A key item (list results).
pub fn key_properties(base: &str, name: &str, v: &KeyVersion) -> Value {
    json!({
        "kid": kid(base, name, &v.version),
        "attributes": attributes(&v.attrs),
        "tags": v.tags,
    })
}

fn add_deletion_info(mut v: Value, base: &str, name: &str, d: &DeletedKey) -> Value {
    v["recoveryId"] = json!(format!("{base}/deletedkeys/{name}"));
    v["deletedDate"] = json!(d.deleted_date);
    v["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
    v
}

/// A deleted key bundle (`None` if the deleted key somehow has no version).
pub fn deleted_bundle(base: &str, name: &str, d: &DeletedKey) -> Option<Value> {
    d.latest()
        .map(|v| add_deletion_info(key_bundle(base, name, v), base, name, d))
}

/// A deleted key item (list results).
pub fn deleted_properties(base: &str, name: &str, d: &DeletedKey) -> Option<Value> {
    d.latest()
        .map(|v| add_deletion_info(key_properties(base, name, v), base, name, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_roundtrip_and_errors() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(
            b64url_decode("value", "-_8").expect("nopad"),
            vec![0xfb, 0xff]
        );
        assert_eq!(
            b64url_decode("value", "-_8=").expect("pad"),
            vec![0xfb, 0xff]
        );
        assert_eq!(
            b64url_decode("value", "**").expect_err("bad").code,
            "BadParameter"
        );
    }
}
