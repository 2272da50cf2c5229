//! Key Vault keys REST API: route classification and handlers.
//!
//! [`Route::classify`] maps `METHOD /path` to an operation (used for auth, faults, counters and
//! logs before anything is executed); [`execute`] runs it against the vault. Empty version
//! segments (`/keys/kek/`, `/keys/kek//wrapkey`) mean "latest". Any `api-version` is accepted.
//! Every client-reachable failure is a [`KvError`] (no panics on bad JSON / base64 / routes).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::bundle;
use crate::crypto::{OCT_KTY, WrapAlg, is_oct_kty};
use crate::error::KvError;
use crate::state::Shared;
use crate::store::{AttributePatch, KeyOp, NewVersion, now};

/// A classified Key Vault request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /keys/{name}/create`
    Create { name: String },
    /// `GET /keys/{name}[/{version}]`
    Get { name: String, version: String },
    /// `PATCH /keys/{name}[/{version}]`
    Update { name: String, version: String },
    /// `POST /keys/{name}/rotate`
    Rotate { name: String },
    /// `GET /keys/{name}/versions`
    Versions { name: String },
    /// `GET /keys`
    List,
    /// `POST /keys/{name}/{version}/{wrapkey|unwrapkey|encrypt|decrypt}`
    Crypto {
        name: String,
        version: String,
        op: KeyOp,
    },
    /// `DELETE /keys/{name}`
    Delete { name: String },
    /// `GET /deletedkeys/{name}`
    GetDeleted { name: String },
    /// `GET /deletedkeys`
    ListDeleted,
    /// `POST /deletedkeys/{name}/recover`
    Recover { name: String },
    /// `DELETE /deletedkeys/{name}`
    Purge { name: String },
    /// Known path, wrong method.
    MethodNotAllowed,
    /// Anything else.
    Unknown,
}

impl Route {
    /// Classifies a request path (without query).
    pub fn classify(method: &str, path: &str) -> Route {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let segs: Vec<&str> = trimmed.split('/').collect();
        let lower = |s: &str| s.to_ascii_lowercase();
        let s = |i: usize| segs.get(i).copied().unwrap_or("").to_string();
        let m = method.to_ascii_uppercase();
        let bad = Route::MethodNotAllowed;
        match (segs.first().map(|s| lower(s)).as_deref(), segs.len()) {
            (Some("keys"), 1) => {
                if m == "GET" {
                    Route::List
                } else {
                    bad
                }
            }
            (Some("keys"), 2) if segs[1].is_empty() => {
                if m == "GET" {
                    Route::List
                } else {
                    bad
                }
            }
            (Some("keys"), 2) => match m.as_str() {
                "GET" => Route::Get {
                    name: s(1),
                    version: String::new(),
                },
                "PATCH" => Route::Update {
                    name: s(1),
                    version: String::new(),
                },
                "DELETE" => Route::Delete { name: s(1) },
                _ => bad,
            },
            (Some("keys"), 3) => match (lower(segs[2]).as_str(), m.as_str()) {
                ("create", "POST") => Route::Create { name: s(1) },
                ("rotate", "POST") => Route::Rotate { name: s(1) },
                ("versions", "GET") => Route::Versions { name: s(1) },
                ("create" | "rotate" | "versions", _) => bad,
                (_, "GET") => Route::Get {
                    name: s(1),
                    version: s(2),
                },
                (_, "PATCH") => Route::Update {
                    name: s(1),
                    version: s(2),
                },
                _ => bad,
            },
            (Some("keys"), 4) => {
                let op = match lower(segs[3]).as_str() {
                    "wrapkey" => KeyOp::WrapKey,
                    "unwrapkey" => KeyOp::UnwrapKey,
                    "encrypt" => KeyOp::Encrypt,
                    "decrypt" => KeyOp::Decrypt,
                    _ => return Route::Unknown,
                };
                if m == "POST" {
                    Route::Crypto {
                        name: s(1),
                        version: s(2),
                        op,
                    }
                } else {
                    bad
                }
            }
            (Some("deletedkeys"), 1) => {
                if m == "GET" {
                    Route::ListDeleted
                } else {
                    bad
                }
            }
            (Some("deletedkeys"), 2) if segs[1].is_empty() => {
                if m == "GET" {
                    Route::ListDeleted
                } else {
                    bad
                }
            }
            (Some("deletedkeys"), 2) => match m.as_str() {
                "GET" => Route::GetDeleted { name: s(1) },
                "DELETE" => Route::Purge { name: s(1) },
                _ => bad,
            },
            (Some("deletedkeys"), 3) if lower(segs[2]) == "recover" => {
                if m == "POST" {
                    Route::Recover { name: s(1) }
                } else {
                    bad
                }
            }
            _ => Route::Unknown,
        }
    }

    /// Operation name used by counters, faults and the log.
    pub fn op(&self) -> &'static str {
        match self {
            Route::Create { .. } => "create",
            Route::Get { .. } => "get",
            Route::Update { .. } => "update",
            Route::Rotate { .. } => "rotate",
            Route::Versions { .. } => "versions",
            Route::List => "list",
            Route::Crypto {
                op: KeyOp::WrapKey, ..
            } => "wrapkey",
            Route::Crypto {
                op: KeyOp::UnwrapKey,
                ..
            } => "unwrapkey",
            Route::Crypto {
                op: KeyOp::Encrypt, ..
            } => "encrypt",
            Route::Crypto {
                op: KeyOp::Decrypt, ..
            } => "decrypt",
            Route::Delete { .. } => "delete",
            Route::GetDeleted { .. } => "getdeleted",
            Route::ListDeleted => "listdeleted",
            Route::Recover { .. } => "recover",
            Route::Purge { .. } => "purge",
            Route::MethodNotAllowed | Route::Unknown => "unknown",
        }
    }

    /// Permission name used in `AccessDenied` messages.
    pub fn permission(&self) -> &'static str {
        match self {
            Route::Crypto { op, .. } => op.jwk_name(),
            Route::Create { .. } => "create",
            Route::Get { .. } | Route::Versions { .. } => "get",
            Route::List => "list",
            Route::Update { .. } => "update",
            Route::Rotate { .. } => "rotate",
            Route::Delete { .. } => "delete",
            Route::GetDeleted { .. } | Route::ListDeleted => "get",
            Route::Recover { .. } => "recover",
            Route::Purge { .. } => "purge",
            Route::MethodNotAllowed | Route::Unknown => "get",
        }
    }

    /// Key name, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Route::Create { name }
            | Route::Get { name, .. }
            | Route::Update { name, .. }
            | Route::Rotate { name }
            | Route::Versions { name }
            | Route::Crypto { name, .. }
            | Route::Delete { name }
            | Route::GetDeleted { name }
            | Route::Recover { name }
            | Route::Purge { name } => Some(name),
            _ => None,
        }
    }

    /// Requested version, if the route has one (may be empty = latest).
    pub fn version(&self) -> Option<&str> {
        match self {
            Route::Get { version, .. }
            | Route::Update { version, .. }
            | Route::Crypto { version, .. } => Some(version),
            _ => None,
        }
    }
}

/// Result of a handled request: status, JSON body and the key version actually used (for logs).
#[derive(Debug)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// Resolved version, when one was used.
    pub version: Option<String>,
}

fn ok(body: Value, version: Option<String>) -> Outcome {
    Outcome {
        status: 200,
        body,
        version,
    }
}

fn parse_body(body: &[u8], required: bool) -> Result<Map<String, Value>, KvError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return if required {
            Err(KvError::bad_parameter("The request body is required."))
        } else {
            Ok(Map::new())
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(KvError::bad_parameter(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(KvError::bad_parameter(format!(
            "The request body is not valid JSON: {e}."
        ))),
    }
}

fn opt_time(obj: &Map<String, Value>, field: &str) -> Result<Option<Option<i64>>, KvError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(|t| Some(Some(t)))
            .ok_or_else(|| {
                KvError::bad_parameter(format!(
                    "Property 'attributes.{field}' must be a Unix time in seconds."
                ))
            }),
    }
}

/// Parses `{"attributes":{enabled,exp,nbf},"key_ops":[…],"tags":{…}}` into a patch.
pub fn parse_patch(body: &Map<String, Value>) -> Result<AttributePatch, KvError> {
    let mut patch = AttributePatch::default();
    match body.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(a)) => {
            patch.enabled = match a.get("enabled") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => {
                    return Err(KvError::bad_parameter(
                        "Property 'attributes.enabled' must be a boolean.",
                    ));
                }
            };
            patch.exp = opt_time(a, "exp")?;
            patch.nbf = opt_time(a, "nbf")?;
        }
        Some(_) => {
            return Err(KvError::bad_parameter(
                "Property 'attributes' must be an object.",
            ));
        }
    }
    patch.key_ops = match body.get("key_ops") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    KvError::bad_parameter("Property 'key_ops' must be an array of strings.")
                })?,
        ),
        Some(_) => {
            return Err(KvError::bad_parameter(
                "Property 'key_ops' must be an array of strings.",
            ));
        }
    };
    patch.tags = match body.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => Some(
            t.iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| {
                    KvError::bad_parameter("Property 'tags' must map strings to strings.")
                })?,
        ),
        Some(_) => return Err(KvError::bad_parameter("Property 'tags' must be an object.")),
    };
    Ok(patch)
}

fn parse_create(body: &Map<String, Value>) -> Result<(Option<u32>, NewVersion), KvError> {
    let kty = match body.get("kty").and_then(Value::as_str) {
        Some(k @ ("RSA" | "RSA-HSM")) => k.to_string(),
        Some(k) if is_oct_kty(k) => OCT_KTY.to_string(),
        Some(other) => {
            return Err(KvError::bad_parameter(format!(
                "Key type '{other}' is not supported by the emulator (RSA, RSA-HSM and oct-HSM only)."
            )));
        }
        None => return Err(KvError::bad_parameter("Property 'kty' is required.")),
    };
    let bits = match body.get("key_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|b| u32::try_from(b).ok())
                .ok_or_else(|| KvError::bad_parameter("Property 'key_size' must be an integer."))?,
        ),
    };
    if let Some(e) = body.get("public_exponent").and_then(Value::as_u64)
        && e != 65537
    {
        return Err(KvError::bad_parameter(
            "The emulator only supports public_exponent 65537.",
        ));
    }
    let mut patch = parse_patch(body)?;
    let key_ops = patch.key_ops.take();
    let tags = patch.tags.take();
    Ok((
        bits,
        NewVersion {
            kty: Some(kty),
            key_ops,
            patch,
            tags,
        },
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(KvError::new(500, "InternalError", "A worker task failed.")))
}

/// Executes a classified, authenticated and permitted request.
pub async fn execute(
    shared: &Arc<Shared>,
    route: &Route,
    base: &str,
    path: &str,
    method: &str,
    body: &[u8],
) -> Result<Outcome, KvError> {
    match route {
        Route::Create { name } => {
            let (bits, spec) = parse_create(&parse_body(body, true)?)?;
            let (s, n) = (shared.clone(), name.clone());
            let v = blocking(move || s.create_key(&n, bits, spec)).await?;
            Ok(ok(
                bundle::key_bundle(base, name, &v),
                Some(v.version.clone()),
            ))
        }
        Route::Rotate { name } => {
            let (s, n) = (shared.clone(), name.clone());
            let v = blocking(move || s.rotate_key(&n)).await?;
            Ok(ok(
                bundle::key_bundle(base, name, &v),
                Some(v.version.clone()),
            ))
        }
        Route::Get { name, version } => {
            let v = shared.vault().get(name, version)?;
            Ok(ok(
                bundle::key_bundle(base, name, &v),
                Some(v.version.clone()),
            ))
        }
        Route::Update { name, version } => {
            let patch = parse_patch(&parse_body(body, false)?)?;
            let v = shared.vault().update(name, version, &patch)?;
            Ok(ok(
                bundle::key_bundle(base, name, &v),
                Some(v.version.clone()),
            ))
        }
        Route::Versions { name } => {
            let vs = shared.vault().versions(name)?;
            let items: Vec<Value> = vs
                .iter()
                .map(|v| bundle::key_properties(base, name, v))
                .collect();
            Ok(ok(json!({ "value": items, "nextLink": null }), None))
        }
        Route::List => {
            let all = shared.vault().list();
            let items: Vec<Value> = all
                .iter()
                .map(|(n, v)| bundle::key_properties(base, n, v))
                .collect();
            Ok(ok(json!({ "value": items, "nextLink": null }), None))
        }
        Route::Crypto { name, version, op } => crypto(shared, base, name, version, *op, body),
        Route::Delete { name } => {
            let d = shared.vault().delete(name)?;
            let b = bundle::deleted_bundle(base, name, &d)
                .ok_or_else(|| KvError::key_not_found(name, None))?;
            Ok(ok(b, d.latest().map(|v| v.version.clone())))
        }
        Route::GetDeleted { name } => {
            let d = shared.vault().get_deleted(name)?;
            let b = bundle::deleted_bundle(base, name, &d)
                .ok_or_else(|| KvError::key_not_found(name, None))?;
            Ok(ok(b, d.latest().map(|v| v.version.clone())))
        }
        Route::ListDeleted => {
            let all = shared.vault().list_deleted();
            let items: Vec<Value> = all
                .iter()
                .filter_map(|(n, d)| bundle::deleted_properties(base, n, d))
                .collect();
            Ok(ok(json!({ "value": items, "nextLink": null }), None))
        }
        Route::Recover { name } => {
            let v = shared.vault().recover(name)?;
            Ok(ok(
                bundle::key_bundle(base, name, &v),
                Some(v.version.clone()),
            ))
        }
        Route::Purge { name } => {
            shared.vault().purge(name)?;
            Ok(Outcome {
                status: 204,
                body: Value::Null,
                version: None,
            })
        }
        Route::MethodNotAllowed => Err(KvError::method_not_allowed(method, path)),
        Route::Unknown => Err(KvError::unknown_route(method, path)),
    }
}

fn crypto(
    shared: &Arc<Shared>,
    base: &str,
    name: &str,
    version: &str,
    op: KeyOp,
    body: &[u8],
) -> Result<Outcome, KvError> {
    let params = parse_body(body, true)?;
    let v = shared.vault().get(name, version)?;
    v.check(op, now())?;
    let alg = WrapAlg::parse(params.get("alg").and_then(Value::as_str))?;
    let value = match params.get("value") {
        Some(Value::String(s)) => bundle::b64url_decode("value", s)?,
        Some(_) => {
            return Err(KvError::bad_parameter(
                "Property 'value' must be a base64url string.",
            ));
        }
        None => return Err(KvError::bad_parameter("Property 'value' is required.")),
    };
    if v.material.is_oct() && matches!(op, KeyOp::Encrypt | KeyOp::Decrypt) {
        return Err(KvError::bad_parameter(format!(
            "Algorithm '{}' is not supported for {} on an oct-HSM key by the emulator (only wrapKey/unwrapKey with A256KW).",
            alg.name(),
            op.jwk_name()
        )));
    }
    let out = match op {
        KeyOp::WrapKey | KeyOp::Encrypt => v.material.wrap(alg, &value)?,
        KeyOp::UnwrapKey | KeyOp::Decrypt => v.material.unwrap(alg, &value)?,
    };
    let body = json!({ "kid": bundle::kid(base, name, &v.version), "value": bundle::b64url(&out) });
    Ok(ok(body, Some(v.version.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_routes() {
        let wrap = Route::classify("POST", "/keys/kek//wrapkey");
        assert_eq!(
            wrap,
            Route::Crypto {
                name: "kek".into(),
                version: String::new(),
                op: KeyOp::WrapKey
            }
        );
        assert_eq!(wrap.op(), "wrapkey");
        assert_eq!(
            Route::classify("GET", "/keys/kek/"),
            Route::Get {
                name: "kek".into(),
                version: String::new()
            }
        );
        assert_eq!(
            Route::classify("POST", "/keys/kek/create"),
            Route::Create { name: "kek".into() }
        );
        assert_eq!(
            Route::classify("GET", "/keys/kek/create"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            Route::classify("POST", "/deletedkeys/kek/recover"),
            Route::Recover { name: "kek".into() }
        );
        assert_eq!(Route::classify("GET", "/secrets/x"), Route::Unknown);
        assert_eq!(Route::classify("POST", "/keys/a/b/sign"), Route::Unknown);
    }

    #[test]
    fn patch_parsing() {
        let body = parse_body(
            br#"{"attributes":{"enabled":false,"exp":null,"nbf":5}}"#,
            true,
        )
        .expect("json");
        let p = parse_patch(&body).expect("patch");
        assert_eq!(p.enabled, Some(false));
        assert_eq!(p.exp, Some(None));
        assert_eq!(p.nbf, Some(Some(5)));
        assert!(parse_body(b"{not json", true).is_err());
        assert!(
            parse_patch(&parse_body(br#"{"attributes":{"enabled":"no"}}"#, true).expect("json"))
                .is_err()
        );
    }
}
