//! Out-of-band HTTP control API under `/_emulator/…` (for scripts driving a running emulator).
//!
//! No authentication, never counted, never faulted. Parameters are query-string values so that
//! plain `curl -X POST 'https://…/_emulator/latency?ms=200'` works; answers are JSON (errors use
//! the Key Vault error shape). The endpoint list is in the crate README.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use crate::bundle;
use crate::controls::Fault;
use crate::crypto::{OCT_KTY, is_oct_kty};
use crate::error::KvError;
use crate::server::{Resp, error_response, ok_json, ok_true};
use crate::state::Shared;
use crate::store::{AttributePatch, KeyVersion, NewVersion};

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h << 4) | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=x` into a map (last value wins).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn num<T: std::str::FromStr>(q: &HashMap<String, String>, k: &str) -> Result<Option<T>, KvError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            KvError::bad_parameter(format!("Query parameter '{k}' must be a number."))
        }),
    }
}

fn opt_time(q: &HashMap<String, String>, k: &str) -> Result<Option<Option<i64>>, KvError> {
    match q.get(k).map(String::as_str) {
        None => Ok(None),
        Some("" | "none" | "null") => Ok(Some(None)),
        Some(v) => v.parse().map(|t| Some(Some(t))).map_err(|_| {
            KvError::bad_parameter(format!(
                "Query parameter '{k}' must be Unix seconds or 'none'."
            ))
        }),
    }
}

fn kid_json(base: &str, name: &str, v: &KeyVersion) -> Value {
    json!({ "kid": bundle::kid(base, name, &v.version), "version": v.version })
}

fn key_state(shared: &Shared, base: &str, name: &str) -> Result<Value, KvError> {
    let vault = shared.vault();
    let (deleted, versions) = match vault.versions(name) {
        Ok(v) => (false, v),
        Err(_) => (true, vault.get_deleted(name)?.entry.versions),
    };
    let items: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version, "kid": bundle::kid(base, name, &v.version),
                "enabled": v.attrs.enabled, "exp": v.attrs.exp, "nbf": v.attrs.nbf,
                "key_ops": v.key_ops, "key_size": v.material.bits(), "kty": v.kty,
            })
        })
        .collect();
    Ok(json!({ "name": name, "deleted": deleted, "versions": items }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(KvError::new(500, "InternalError", "A worker task failed.")))
}

/// Handles one control request.
pub async fn handle(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    base: &str,
) -> Resp {
    match route(shared, method, path, query, base).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn route(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    base: &str,
) -> Result<Resp, KvError> {
    let q = parse_query(query);
    let rest = path.trim_start_matches("/_emulator").trim_matches('/');
    let segs: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    let m = method.to_ascii_uppercase();
    let version = q.get("version").cloned().unwrap_or_default();
    match (m.as_str(), segs.as_slice()) {
        ("GET", [] | ["health"]) => Ok(ok_json(json!({ "ok": true, "url": format!("{base}/") }))),
        ("GET", ["ca"]) => {
            let mut r = Response::new(Full::new(Bytes::from(shared.ca_pem.clone())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            );
            Ok(r)
        }
        ("POST" | "PUT", ["keys", name]) => {
            let bits = num::<u32>(&q, "size")?;
            let kty = match q.get("kty").map(String::as_str) {
                None | Some("") | Some("RSA") => None,
                Some("RSA-HSM") => Some("RSA-HSM".to_string()),
                Some(k) if is_oct_kty(k) => Some(OCT_KTY.to_string()),
                Some(other) => {
                    return Err(KvError::bad_parameter(format!(
                        "Query parameter 'kty' must be RSA, RSA-HSM, oct or oct-HSM (got '{other}')."
                    )));
                }
            };
            let (s, n) = (shared.clone(), name.to_string());
            let spec = NewVersion {
                kty,
                ..Default::default()
            };
            let v = blocking(move || s.create_key(&n, bits, spec)).await?;
            Ok(ok_json(kid_json(base, name, &v)))
        }
        ("GET", ["keys", name]) => Ok(ok_json(key_state(shared, base, name)?)),
        ("DELETE", ["keys", name]) | ("POST", ["keys", name, "delete"]) => {
            shared.vault().delete(name)?;
            Ok(ok_true())
        }
        ("POST", ["keys", name, "rotate"]) => {
            let (s, n) = (shared.clone(), name.to_string());
            let v = blocking(move || s.rotate_key(&n)).await?;
            Ok(ok_json(kid_json(base, name, &v)))
        }
        ("POST", ["keys", name, action @ ("disable" | "enable")]) => {
            let enabled = *action == "enable";
            if version.is_empty() {
                shared.vault().set_enabled_all(name, enabled)?;
            } else {
                let p = AttributePatch {
                    enabled: Some(enabled),
                    ..Default::default()
                };
                shared.vault().update(name, &version, &p)?;
            }
            Ok(ok_true())
        }
        ("POST", ["keys", name, "attributes"]) => {
            let enabled = match q.get("enabled").map(String::as_str) {
                None => None,
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                Some(_) => {
                    return Err(KvError::bad_parameter(
                        "Query parameter 'enabled' must be true or false.",
                    ));
                }
            };
            let p = AttributePatch {
                enabled,
                exp: opt_time(&q, "exp")?,
                nbf: opt_time(&q, "nbf")?,
                ..Default::default()
            };
            let v = shared.vault().update(name, &version, &p)?;
            Ok(ok_json(kid_json(base, name, &v)))
        }
        ("POST", ["keys", name, "recover"]) => {
            let v = shared.vault().recover(name)?;
            Ok(ok_json(kid_json(base, name, &v)))
        }
        ("POST", ["keys", name, "purge"]) => {
            shared.vault().purge(name)?;
            Ok(ok_true())
        }
        ("POST", ["deny"]) => {
            shared.controls().deny_all = true;
            Ok(ok_true())
        }
        ("POST", ["allow" | "restore"]) => {
            shared.controls().deny_all = false;
            Ok(ok_true())
        }
        ("POST", ["latency"]) => {
            let ms = num::<u64>(&q, "ms")?.unwrap_or(0);
            shared.controls().latency = Duration::from_millis(ms);
            Ok(ok_true())
        }
        ("POST", ["faults"]) => {
            let kind = q.get("kind").map(String::as_str).unwrap_or("503");
            let retry_after = num::<u64>(&q, "retry_after")?.unwrap_or(1);
            let fault = Fault::parse(kind, retry_after).ok_or_else(|| {
                KvError::bad_parameter("Query parameter 'kind' must be 503, 429 or close.")
            })?;
            let count = num::<u32>(&q, "count")?;
            shared.controls().inject(fault, count, q.get("op").cloned());
            Ok(ok_true())
        }
        ("DELETE", ["faults"]) | ("POST", ["faults", "clear"]) => {
            shared.controls().clear_faults();
            Ok(ok_true())
        }
        ("GET", ["counters"]) => {
            let c = shared.controls();
            Ok(ok_json(json!({ "total": c.total(), "ops": c.counters() })))
        }
        ("DELETE", ["counters"]) | ("POST", ["counters", "reset"]) => {
            shared.controls().reset_counters();
            Ok(ok_true())
        }
        ("GET", ["log"]) => Ok(ok_json(json!(shared.controls().log()))),
        ("POST", ["tokens"]) => {
            let allow = q.get("allow").map(|a| {
                a.split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            shared.controls().allowed_tokens = allow;
            Ok(ok_true())
        }
        ("DELETE", ["tokens"]) | ("POST", ["tokens", "clear"]) => {
            shared.controls().allowed_tokens = None;
            Ok(ok_true())
        }
        ("POST", ["reset"]) => {
            let mut c = shared.controls();
            c.reset_behaviour();
            c.reset_counters();
            Ok(ok_true())
        }
        _ => Err(KvError::unknown_route(method, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query("kind=close&count=2&op=unwrapkey&allow=a%2Cb&x");
        assert_eq!(q["kind"], "close");
        assert_eq!(q["allow"], "a,b");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
