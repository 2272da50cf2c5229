//! Shared helpers for the SDK tests: a static bearer credential and a `KeyClient` that trusts the
//! emulator's CA (same snippet as in the README).
#![allow(dead_code)]

use std::sync::Arc;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_core::time::{Duration, OffsetDateTime};
use azure_security_keyvault_keys::models::{EncryptionAlgorithm, KeyOperationParameters};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};

/// A credential that always returns the same token.
#[derive(Debug)]
pub struct StaticToken(pub String);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _o: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.0.clone()),
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}

/// A `KeyClient` for `vault_url`, trusting `ca_pem`, with no retries.
pub fn key_client(vault_url: &str, ca_pem: &str, token: &str) -> KeyClient {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client");
    let options = KeyClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::none(),
            ..Default::default()
        },
        verify_challenge_resource: Some(false),
        ..Default::default()
    };
    let credential: Arc<dyn TokenCredential> = Arc::new(StaticToken(token.to_string()));
    KeyClient::new(vault_url, credential, Some(options)).expect("KeyClient")
}

/// RSA-OAEP-256 parameters for `value`.
pub fn oaep256(value: Vec<u8>) -> KeyOperationParameters {
    KeyOperationParameters {
        algorithm: Some(EncryptionAlgorithm::RsaOaep256),
        value: Some(value),
        ..Default::default()
    }
}

/// (status, error.code, innererror.code) of an SDK error.
pub fn error_parts(e: azure_core::Error) -> (u16, Option<String>, Option<String>) {
    let status = e.http_status().map(u16::from).unwrap_or(0);
    match azure_core::error::ErrorResponse::try_from(e) {
        Ok(r) => {
            let detail = r.error;
            let code = detail.as_ref().and_then(|d| d.code.clone());
            let inner = detail.and_then(|d| d.inner_error).and_then(|i| i.code);
            (status, code, inner)
        }
        Err(_) => (status, None, None),
    }
}
