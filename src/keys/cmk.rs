//! Customer-managed keys: the `CustomerKey` trait (a `KeyProvider` whose state can be
//! checked remotely) and `CmkState`, the three answers a check can give.

use super::{KeyError, KeyProvider};

/// What a check of a customer-managed key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmkState {
    /// Usable; `latest_version` is the newest version in the vault.
    Enabled { latest_version: String },
    /// A definitive refusal: disabled key or version, deleted key, access denied.
    Revoked(String),
    /// No definitive answer (timeout, 5xx, 429, connection refused): an outage.
    Unreachable(String),
}

/// A customer-managed key (Azure Key Vault). Wraps on top of the service key.
pub trait CustomerKey: KeyProvider + std::fmt::Debug {
    /// The versionless key URL, `https://VAULT/keys/NAME`.
    fn key_url(&self) -> &str;

    /// Checks the key and the versions in use (full key ids with version).
    fn check(&self, versions_in_use: &[String]) -> CmkState;

    /// The newest version's full key id.
    fn latest_key_id(&self) -> Result<String, KeyError>;
}

/// Connects to a customer-managed key by its versionless URL (the daemon's Key Vault
/// settings), for key scopes that each have their own key.
pub trait CmkConnector: Send + Sync + std::fmt::Debug {
    fn connect(&self, key_url: &str) -> Result<std::sync::Arc<dyn CustomerKey>, KeyError>;
}

/// Splits `https://host/keys/NAME[/VERSION]` into (vault endpoint, name, version).
pub fn parse_key_url(url: &str) -> Result<(String, String, Option<String>), String> {
    let bad = || format!("{url} is not a Key Vault key URL (https://VAULT/keys/NAME)");
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let mut parts = path.trim_end_matches('/').split('/');
    if parts.next() != Some("keys") || host.is_empty() {
        return Err(bad());
    }
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(bad)?
        .to_string();
    let version = parts.next().filter(|v| !v.is_empty()).map(str::to_string);
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((format!("https://{host}/"), name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls() {
        assert_eq!(
            parse_key_url("https://v.vault.azure.net/keys/kek").unwrap(),
            ("https://v.vault.azure.net/".into(), "kek".into(), None)
        );
        assert_eq!(
            parse_key_url("https://127.0.0.1:8443/keys/kek/0123").unwrap(),
            (
                "https://127.0.0.1:8443/".into(),
                "kek".into(),
                Some("0123".into())
            )
        );
        assert!(parse_key_url("http://v/keys/k").is_err());
        assert!(parse_key_url("https://v/secrets/k").is_err());
        assert!(parse_key_url("https://v/keys/").is_err());
    }
}
