//! The `KeyProvider` trait: one layer of wrapping around a data key.

use zeroize::Zeroizing;

use crate::format::WrapperId;

use super::KeyError;

/// A key that wraps and unwraps bytes (a data key, or a data key already wrapped by an
/// inner provider). Implementations: the service key; a customer-managed key.
pub trait KeyProvider: Send + Sync {
    /// Whether this provider can unwrap something wrapped by `id`.
    fn handles(&self, id: &WrapperId) -> bool;

    /// Wraps `plain`, returning the ciphertext and the exact identity of the wrapping key.
    fn wrap(&self, plain: &[u8]) -> Result<(Vec<u8>, WrapperId), KeyError>;

    /// Unwraps ciphertext produced under `id`.
    fn unwrap(&self, id: &WrapperId, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;

    /// The request id of the provider's last remote call (audit correlation), if remote.
    fn last_request_id(&self) -> Option<String> {
        None
    }
}

/// How a wrapping key is named in audit records: `service:<fingerprint>` or the CMK key id
/// with version.
pub fn audit_key_id(id: &WrapperId) -> String {
    match id {
        WrapperId::Service { fingerprint } => format!("service:{fingerprint}"),
        WrapperId::Cmk { key_id, .. } => key_id.clone(),
    }
}
