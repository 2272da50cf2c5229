//! `--azure-credential` specs and the credentials they build. Secrets come from files, never
//! from the command line; no credential prints a secret in `Debug`.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};

/// How to authenticate to Key Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSpec {
    ManagedIdentity {
        client_id: Option<String>,
    },
    WorkloadIdentity,
    ClientSecret {
        tenant: String,
        client_id: String,
        secret_file: PathBuf,
    },
    DeveloperTools,
    AccessTokenFile(PathBuf),
}

impl CredentialSpec {
    pub fn parse(s: &str) -> Result<CredentialSpec, String> {
        let bad = |why: &str| {
            format!(
                "--azure-credential {}: {why}",
                s.split(':').next().unwrap_or("")
            )
        };
        let (kind, rest) = s
            .split_once(':')
            .map(|(k, r)| (k, Some(r)))
            .unwrap_or((s, None));
        match (kind, rest) {
            ("managed-identity", None) => Ok(CredentialSpec::ManagedIdentity { client_id: None }),
            ("managed-identity", Some(id)) if !id.is_empty() => {
                Ok(CredentialSpec::ManagedIdentity {
                    client_id: Some(id.into()),
                })
            }
            ("workload-identity", None) => Ok(CredentialSpec::WorkloadIdentity),
            ("developer-tools", None) => Ok(CredentialSpec::DeveloperTools),
            ("access-token-file", Some(p)) if !p.is_empty() => {
                Ok(CredentialSpec::AccessTokenFile(p.into()))
            }
            ("client-secret", Some(r)) => {
                let mut parts = r.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(t), Some(c), Some(f))
                        if !t.is_empty() && !c.is_empty() && !f.is_empty() =>
                    {
                        Ok(CredentialSpec::ClientSecret {
                            tenant: t.into(),
                            client_id: c.into(),
                            secret_file: f.into(),
                        })
                    }
                    _ => Err(bad("expected client-secret:TENANT:CLIENT_ID:SECRET_FILE")),
                }
            }
            _ => Err(bad(
                "expected managed-identity[:CLIENT_ID], workload-identity, client-secret:TENANT:CLIENT_ID:SECRET_FILE, developer-tools or access-token-file:PATH",
            )),
        }
    }

    pub fn build(&self) -> Result<Arc<dyn TokenCredential>, String> {
        let err = |e: azure_core::Error| format!("Azure credential: {e}");
        Ok(match self {
            CredentialSpec::ManagedIdentity { client_id } => {
                let opts = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                ManagedIdentityCredential::new(Some(opts)).map_err(err)?
            }
            CredentialSpec::WorkloadIdentity => {
                WorkloadIdentityCredential::new(None).map_err(err)?
            }
            CredentialSpec::DeveloperTools => DeveloperToolsCredential::new(None).map_err(err)?,
            CredentialSpec::ClientSecret {
                tenant,
                client_id,
                secret_file,
            } => {
                let secret = std::fs::read_to_string(secret_file)
                    .map_err(|e| format!("client secret file {}: {e}", secret_file.display()))?;
                ClientSecretCredential::new(
                    tenant,
                    client_id.clone(),
                    Secret::new(secret.trim().to_string()),
                    None,
                )
                .map_err(err)?
            }
            CredentialSpec::AccessTokenFile(p) => Arc::new(AccessTokenFile(p.clone())),
        })
    }
}

/// A bearer token minted elsewhere, read from a file; re-read whenever the SDK asks again
/// (after a 401 or expiry).
#[derive(Debug)]
pub struct AccessTokenFile(PathBuf);

#[async_trait::async_trait]
impl TokenCredential for AccessTokenFile {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _o: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = std::fs::read_to_string(&self.0).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("access token file {}: {e}", self.0.display()),
            )
        })?;
        Ok(AccessToken::new(
            Secret::new(token.trim().to_string()),
            OffsetDateTime::now_utc() + Duration::minutes(10),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            CredentialSpec::parse("managed-identity").unwrap(),
            CredentialSpec::ManagedIdentity { client_id: None }
        );
        assert_eq!(
            CredentialSpec::parse("managed-identity:abc").unwrap(),
            CredentialSpec::ManagedIdentity {
                client_id: Some("abc".into())
            }
        );
        assert_eq!(
            CredentialSpec::parse("client-secret:t:c:/s").unwrap(),
            CredentialSpec::ClientSecret {
                tenant: "t".into(),
                client_id: "c".into(),
                secret_file: "/s".into()
            }
        );
        assert_eq!(
            CredentialSpec::parse("access-token-file:/x").unwrap(),
            CredentialSpec::AccessTokenFile("/x".into())
        );
        let e = CredentialSpec::parse("client-secret:t:c").unwrap_err();
        assert!(e.contains("TENANT"), "{e}");
        assert!(
            CredentialSpec::parse("password:hunter2")
                .unwrap_err()
                .contains("expected")
        );
        assert!(
            !CredentialSpec::parse("password:hunter2")
                .unwrap_err()
                .contains("hunter2")
        );
    }
}
