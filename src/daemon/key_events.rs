//! What the daemon does when the customer-managed key changes state: on revocation, drop
//! derived content keys and the kernel's cached pages and attributes; log every change in
//! words an operator can grep ("revoked", "Key Vault unreachable", "access restored").

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::fs::KernelCaches;
use crate::keys::{CmkState, Revocation, RevocationListener};
use crate::volume::Volume;

pub struct KeyEvents {
    pub volume: Arc<Volume>,
    /// Set once the session exists (the watcher may start checking before).
    pub kernel: OnceLock<KernelCaches>,
}

impl RevocationListener for KeyEvents {
    fn revoked(&self, key_url: &str, reason: &str, what: &Revocation) {
        self.volume.forget_open_file_keys_in(&what.scopes);
        let inodes = self
            .kernel
            .get()
            .map(|k| k.invalidate_scopes(&what.scopes))
            .unwrap_or(0);
        tracing::error!(
            key = key_url,
            scopes = ?what.scopes,
            flushed_keys = what.flushed,
            invalidated_inodes = inodes,
            "customer-managed key revoked: {reason}; data keys flushed, further access fails with EKEYREVOKED"
        );
    }

    fn restored(&self, key_url: &str) {
        tracing::warn!(
            key = key_url,
            "customer-managed key usable again: access restored"
        );
    }

    fn unreachable(&self, key_url: &str, why: &str, first: bool) {
        if first {
            self.volume.keys().audit().record(
                crate::audit::AuditEvent::new(
                    crate::audit::AuditOp::KeyServiceUnreachable,
                    key_url,
                    crate::audit::AuditResult::Unreachable,
                )
                .detail(why.to_string()),
            );
            tracing::warn!(
                key = key_url,
                "Key Vault unreachable ({why}); not a revocation: cached data keys keep serving until their max age"
            );
        } else {
            tracing::debug!(key = key_url, "Key Vault still unreachable: {why}");
        }
    }

    fn rewrapped(&self, key_url: &str, records: usize, to: &str) {
        tracing::info!(
            key = key_url,
            records,
            "data keys re-wrapped to the newest key version {to} (no data re-encrypted)"
        );
    }

    fn checked(&self, key_url: &str, duration: Duration, state: &CmkState) {
        tracing::debug!(
            key = key_url,
            ms = duration.as_millis() as u64,
            "key check: {state:?}"
        );
    }
}
