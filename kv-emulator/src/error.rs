//! Key Vault error bodies.
//!
//! Every failure the emulator reports to a Key Vault client is a [`KvError`], rendered as
//! `{"error":{"code":"…","message":"…","innererror":{"code":"…"}}}` with the matching HTTP status
//! and an `x-ms-error-code` header, like the real service.

use serde_json::{Value, json};

/// A Key Vault style error: HTTP status, `error.code`, message and optional `innererror.code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    /// HTTP status code.
    pub status: u16,
    /// `error.code` (e.g. `Forbidden`, `KeyNotFound`, `BadParameter`).
    pub code: &'static str,
    /// Human readable message.
    pub message: String,
    /// `error.innererror.code` (e.g. `KeyDisabled`, `AccessDenied`).
    pub inner: Option<&'static str>,
}

impl KvError {
    /// Generic constructor.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        KvError {
            status,
            code,
            message: message.into(),
            inner: None,
        }
    }

    /// Adds an `innererror.code`.
    pub fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    /// 400 `BadParameter`.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(400, "BadParameter", message)
    }

    /// 404 `KeyNotFound` for a key name (and optional version).
    pub fn key_not_found(name: &str, version: Option<&str>) -> Self {
        let what = match version {
            Some(v) if !v.is_empty() => format!("{name}/{v}"),
            _ => name.to_string(),
        };
        Self::new(
            404,
            "KeyNotFound",
            format!(
                "A key with (name/id) {what} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    /// 403 `Forbidden` / `KeyDisabled`.
    pub fn key_disabled(op: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("Operation {op} is not allowed on a disabled key."),
        )
        .with_inner("KeyDisabled")
    }

    /// 403 `Forbidden` / `AccessDenied` (the "deny all" switch).
    pub fn access_denied(op: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "The user, group or application 'appid=00000000-0000-0000-0000-000000000000;oid=00000000-0000-0000-0000-000000000000;iss=https://sts.windows.net/00000000-0000-0000-0000-000000000000/' does not have keys {op} permission on key vault 'kv-emulator;location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("AccessDenied")
    }

    /// 401 `Unauthorized` (missing or rejected bearer token).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", message)
    }

    /// 404 for a path that matches no Key Vault route.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("No route for {method} {path} in the Key Vault emulator."),
        )
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("Method {method} is not allowed on {path}."),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = self.inner {
            err["innererror"] = json!({ "code": inner });
        }
        json!({ "error": err })
    }
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(inner) = self.inner {
            write!(f, " ({inner})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KvError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_body_shape() {
        let b = KvError::key_disabled("unwrapKey").body();
        assert_eq!(b["error"]["code"], "Forbidden");
        assert_eq!(b["error"]["innererror"]["code"], "KeyDisabled");
        assert!(
            KvError::bad_parameter("x").body()["error"]
                .get("innererror")
                .is_none()
        );
    }
}
