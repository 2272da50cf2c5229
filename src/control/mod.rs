//! The control socket: one JSON request line, one JSON response line, over a Unix socket
//! per mount (mode 0600, peer credentials checked). Knows the daemon only through the
//! `ControlHandler` trait.

mod client;
mod server;

pub use client::{ControlClient, find_mount_of, find_socket};
pub use server::ControlServer;

use serde::{Deserialize, Serialize};

/// What a client may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    CacheFlush,
    KeyCheck,
    /// `path`: a directory of the mount (relative to it); its key scope is rotated.
    KeyRotate {
        data_key: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Streams `{"progress":[done,total]}` lines before the response. `path`: only below
    /// this directory of the mount.
    Reencrypt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Makes the empty directory `path` the root of a new key scope (`cmk`: its
    /// customer-managed key; none: the service key alone).
    ScopeCreate {
        path: String,
        #[serde(default)]
        cmk: Option<String>,
    },
    ScopeList,
    ScopeLock {
        path: String,
    },
    ScopeUnlock {
        path: String,
    },
    /// Re-wraps the data keys of `path`'s scope under `cmk` (none: the service key alone).
    ScopeSetCmk {
        path: String,
        #[serde(default)]
        cmk: Option<String>,
    },
}

/// The answer: `ok` with a JSON payload, or an error sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The daemon side of the control socket.
pub trait ControlHandler: Send + Sync + 'static {
    fn status(&self) -> serde_json::Value;
    fn cache_flush(&self) -> Result<serde_json::Value, String>;
    fn key_check(&self) -> Result<serde_json::Value, String>;
    fn key_rotate(&self, data_key: bool, path: Option<&str>) -> Result<serde_json::Value, String>;
    fn reencrypt(
        &self,
        path: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<serde_json::Value, String>;
    fn scope_create(&self, path: &str, cmk: Option<&str>) -> Result<serde_json::Value, String>;
    fn scope_list(&self) -> Result<serde_json::Value, String>;
    fn scope_lock(&self, path: &str, locked: bool) -> Result<serde_json::Value, String>;
    fn scope_set_cmk(&self, path: &str, cmk: Option<&str>) -> Result<serde_json::Value, String>;
}

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 4096;

pub fn handle(
    handler: &dyn ControlHandler,
    line: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Response {
    let request: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return Response {
                ok: false,
                error: Some(format!("bad request: {e}")),
                data: serde_json::Value::Null,
            };
        }
    };
    let result = match request {
        Request::Status => Ok(handler.status()),
        Request::CacheFlush => handler.cache_flush(),
        Request::KeyCheck => handler.key_check(),
        Request::KeyRotate { data_key, path } => handler.key_rotate(data_key, path.as_deref()),
        Request::Reencrypt { path } => handler.reencrypt(path.as_deref(), progress),
        Request::ScopeCreate { path, cmk } => handler.scope_create(&path, cmk.as_deref()),
        Request::ScopeList => handler.scope_list(),
        Request::ScopeLock { path } => handler.scope_lock(&path, true),
        Request::ScopeUnlock { path } => handler.scope_lock(&path, false),
        Request::ScopeSetCmk { path, cmk } => handler.scope_set_cmk(&path, cmk.as_deref()),
    };
    match result {
        Ok(data) => Response {
            ok: true,
            error: None,
            data,
        },
        Err(e) => Response {
            ok: false,
            error: Some(e),
            data: serde_json::Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"key-rotate","data_key":true}"#).unwrap(),
            Request::KeyRotate {
                data_key: true,
                path: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reencrypt"}"#).unwrap(),
            Request::Reencrypt { path: None }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }
}
