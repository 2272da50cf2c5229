//! HTTPS server: accept loop, TLS, and the per-request pipeline.
//!
//! Pipeline for Key Vault requests: read body → classify route → injected latency → bearer-token
//! check (401 challenge with `WWW-Authenticate`) → injected fault (503 / 429 / close) → deny-all
//! (403 `AccessDenied`) → [`rest::execute`] → log + counters. Requests under `/_emulator/` go to
//! [`control_api`] without auth, latency, faults or counting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::control_api;
use crate::controls::{Fault, LogEntry};
use crate::error::KvError;
use crate::rest::{self, Route};
use crate::state::Shared;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// Tenant used in the 401 challenge.
pub const CHALLENGE_AUTHORITY: &str =
    "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000";

/// Error returned to hyper to drop the connection without an answer (injected `close` fault).
#[derive(Debug)]
pub struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by injected fault")
    }
}

impl std::error::Error for CloseConnection {}

/// Response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Resp {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_null() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    r
}

/// A Key Vault error response (body + `x-ms-error-code`).
pub fn error_response(e: &KvError) -> Resp {
    let mut r = json_response(e.status, &e.body());
    if let Ok(v) = HeaderValue::from_str(e.code) {
        r.headers_mut().insert("x-ms-error-code", v);
    }
    r
}

/// Runs the accept loop until `shutdown` fires.
pub async fn run(
    listener: std::net::TcpListener,
    tls: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kv-emulator: cannot register listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (tls, shared) = (tls.clone(), shared.clone());
                tokio::spawn(async move { serve_connection(tcp, peer, tls, shared).await });
            }
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    _peer: SocketAddr,
    tls: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        _ => return, // handshake failed (e.g. client does not trust the CA) or timed out
    };
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { handle(shared, req).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn host_of(req: &Request<Incoming>) -> String {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// The challenge `resource`: `https://vault.localhost` for `*.vault.localhost` hosts (so the
/// SDK's `verify_challenge_resource` can stay on), `https://vault.azure.net` otherwise.
pub fn challenge_resource(host: &str) -> &'static str {
    let hostname = host
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .unwrap_or(host);
    if hostname.to_ascii_lowercase().ends_with(".vault.localhost") {
        "https://vault.localhost"
    } else {
        "https://vault.azure.net"
    }
}

fn bearer_token(req: &Request<Incoming>) -> Option<String> {
    let v = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, CloseConnection> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let host = host_of(&req);
    let base = format!("https://{host}");
    let token = bearer_token(&req);
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();

    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error_response(&KvError::bad_parameter(
                "The request body could not be read or is too large.",
            )));
        }
    };

    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Ok(control_api::handle(&shared, &method, &path, &query, &base).await);
    }

    let route = Route::classify(&method, &path);
    let mut entry = LogEntry {
        op: route.op().to_string(),
        method: method.clone(),
        path: path.clone(),
        key: route.key().map(str::to_string),
        version: route
            .version()
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        status: 0,
        authenticated: false,
    };

    let latency = shared.controls().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let mut resp = match pipeline(
        &shared,
        &route,
        token.as_deref(),
        &base,
        &host,
        &path,
        &method,
        &body,
        &mut entry,
    )
    .await
    {
        Ok(r) => r,
        Err(CloseConnection) => {
            entry.status = 0;
            shared.controls().record(entry);
            return Err(CloseConnection);
        }
    };
    entry.status = resp.status().as_u16();
    shared.controls().record(entry);
    if let Some(id) = client_request_id {
        resp.headers_mut().insert("x-ms-client-request-id", id);
    }
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn pipeline(
    shared: &Arc<Shared>,
    route: &Route,
    token: Option<&str>,
    base: &str,
    host: &str,
    path: &str,
    method: &str,
    body: &[u8],
    entry: &mut LogEntry,
) -> Result<Resp, CloseConnection> {
    // 1. Authentication (401 challenge).
    let auth_error = match token {
        None => Some(KvError::unauthorized(
            "AKV10000: Request is missing a Bearer or PoP token.",
        )),
        Some(t) if !shared.controls().token_allowed(t) => Some(KvError::unauthorized(
            "AKV10032: Invalid issuer. The token is not in the emulator's allow-list.",
        )),
        Some(_) => None,
    };
    if let Some(e) = auth_error {
        let mut r = error_response(&e);
        let challenge = format!(
            "Bearer authorization=\"{CHALLENGE_AUTHORITY}\", resource=\"{}\"",
            challenge_resource(host)
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
        }
        return Ok(r);
    }
    entry.authenticated = true;

    // 2. Injected faults, then deny-all.
    let (fault, deny) = {
        let mut c = shared.controls();
        (c.take_fault(route.op()), c.deny_all)
    };
    match fault {
        Some(Fault::CloseConnection) => return Err(CloseConnection),
        Some(Fault::ServiceUnavailable) => {
            return Ok(error_response(&KvError::new(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable (injected by kv-emulator).",
            )));
        }
        Some(Fault::Throttled { retry_after_secs }) => {
            let e = KvError::new(
                429,
                "Throttled",
                format!("Rate limit is exceeded. Try again in {retry_after_secs} seconds."),
            );
            let mut r = error_response(&e);
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs),
            );
            return Ok(r);
        }
        None => {}
    }
    if deny && !matches!(route, Route::Unknown | Route::MethodNotAllowed) {
        return Ok(error_response(&KvError::access_denied(route.permission())));
    }

    // 3. The operation itself.
    Ok(
        match rest::execute(shared, route, base, path, method, body).await {
            Ok(out) => {
                if out.version.is_some() {
                    entry.version = out.version.clone();
                }
                json_response(out.status, &out.body)
            }
            Err(e) => error_response(&e),
        },
    )
}

/// Convenience for handlers that never fail.
pub fn ok_json(body: Value) -> Resp {
    json_response(200, &body)
}

/// `{"ok":true}`.
pub fn ok_true() -> Resp {
    ok_json(json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_by_host() {
        assert_eq!(
            challenge_resource("127.0.0.1:8443"),
            "https://vault.azure.net"
        );
        assert_eq!(
            challenge_resource("kvtest.vault.localhost:8443"),
            "https://vault.localhost"
        );
        assert_eq!(
            challenge_resource("KVTEST.vault.localhost"),
            "https://vault.localhost"
        );
    }
}
