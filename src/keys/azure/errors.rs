//! Sorting Key Vault failures into revocation (definitive) and outage (transient).

use azure_core::error::{ErrorKind, ErrorResponse};

use super::super::KeyError;

/// Definitive answers revoke: 403 (disabled, access denied, RBAC, firewall), 404 (deleted),
/// 401 (the identity cannot authenticate any more). Timeouts, 408, 429, 5xx and transport
/// failures are an outage.
pub fn classify(what: &str, e: azure_core::Error) -> KeyError {
    let status = match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    };
    match status {
        Some(403) | Some(404) | Some(401) => {
            let code = e.kind().to_string();
            let inner = ErrorResponse::try_from(e)
                .ok()
                .and_then(|r| r.error)
                .map(|d| {
                    let inner = d.inner_error.and_then(|i| i.code);
                    let outer = d.code.unwrap_or_default();
                    match inner {
                        Some(i) => format!("{outer}/{i}"),
                        None => outer,
                    }
                })
                .unwrap_or(code);
            let why = match status {
                Some(404) => "key not found (deleted)",
                Some(401) => "unauthorized",
                _ if inner.contains("KeyDisabled") => "key disabled",
                _ => "access denied",
            };
            KeyError::Revoked(format!("{what}: {why} ({inner})"))
        }
        Some(408) | Some(429) | Some(500..=599) => KeyError::Unavailable(format!(
            "{what}: Key Vault unreachable (HTTP {})",
            status.unwrap_or(0)
        )),
        Some(s) => KeyError::Unwrap {
            key: crate::format::DataKeyRef { scope: 0, epoch: 0 },
            reason: format!("{what}: HTTP {s}: {e}"),
        },
        None => match e.kind() {
            ErrorKind::Connection | ErrorKind::Io | ErrorKind::Credential => {
                KeyError::Unavailable(format!("{what}: Key Vault unreachable ({e})"))
            }
            _ => KeyError::Unavailable(format!("{what}: Key Vault unreachable ({e})")),
        },
    }
}
