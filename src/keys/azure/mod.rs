//! The customer-managed key in Azure Key Vault, through the official SDK
//! (`azure_security_keyvault_keys`). The only module that names an Azure type. Calls are
//! synchronous from the caller's view: each runs on a private tokio runtime with a bounded
//! timeout (FUSE threads never enter a runtime). The runtime and client are rebuilt after a
//! fork (the daemon forks after checking the key). Keys of one vault share one runtime and
//! client (key scopes may each have a key).

mod credential;
mod errors;

pub use credential::CredentialSpec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::ExponentialRetryOptions;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientGetKeyOptions, KeyClientWrapKeyOptions, KeyOperationParameters,
    KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use zeroize::Zeroizing;

use crate::format::WrapperId;
use crate::metrics::{KeyVaultOp, Outcome};

use super::{CmkState, CustomerKey, KeyError, KeyProvider, parse_key_url};

/// Wrap algorithm for RSA keys (Key Vault).
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";
/// Wrap algorithm for AES keys (`oct-HSM`, Managed HSM).
pub const A256KW: &str = "A256KW";

fn sdk_algorithm(name: &str) -> Option<EncryptionAlgorithm> {
    match name {
        RSA_OAEP_256 => Some(EncryptionAlgorithm::RsaOaep256),
        A256KW => Some(EncryptionAlgorithm::A256Kw),
        _ => None,
    }
}

/// How to reach and authenticate to the key.
#[derive(Clone, Debug)]
pub struct AzureSettings {
    /// `https://VAULT/keys/NAME`.
    pub key_url: String,
    pub credential: CredentialSpec,
    /// PEM file of a private CA to trust for the vault endpoint.
    pub ca_file: Option<PathBuf>,
    pub verify_challenge_resource: bool,
    /// Bound on one Key Vault call, retries included.
    pub timeout: Duration,
    /// Retries of transient failures inside one call.
    pub retries: u32,
}

struct Connection {
    pid: u32,
    rt: tokio::runtime::Runtime,
    client: KeyClient,
    /// `x-ms-request-id` of the last answer (audit correlation).
    last_request_id: Mutex<Option<String>>,
}

impl Connection {
    fn note_request_id(&self, headers: &azure_core::http::headers::Headers) {
        let id = headers
            .get_optional_string(&azure_core::http::headers::HeaderName::from_static(
                "x-ms-request-id",
            ))
            .or_else(|| {
                headers.get_optional_string(&azure_core::http::headers::HeaderName::from_static(
                    "x-ms-client-request-id",
                ))
            });
        *self
            .last_request_id
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = id;
    }
}

pub struct AzureCmk {
    settings: AzureSettings,
    key_url: String,
    name: String,
    endpoint: String,
    /// Shared by every key of the same vault reached with the same settings (key scopes
    /// each have a key; one runtime thread and HTTP client serve them all).
    conn: Arc<Mutex<Option<Arc<Connection>>>>,
    /// The wrap algorithm, chosen from the key type on first use.
    algorithm: std::sync::OnceLock<&'static str>,
}

impl std::fmt::Debug for AzureCmk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCmk")
            .field("key_url", &self.key_url)
            .finish_non_exhaustive()
    }
}

fn version_of(key_id: &str) -> Option<String> {
    parse_key_url(key_id).ok().and_then(|(_, _, v)| v)
}

/// The fips build: TLS to Key Vault (and to the identity endpoints, same client) on rustls'
/// FIPS provider, which runs on AWS-LC-FIPS. reqwest builds its rustls config from the process
/// default provider, so it is installed before the first client is built.
#[cfg(feature = "fips")]
fn install_fips_tls_provider() -> Result<(), String> {
    // Err only when a provider is installed already; what counts is which one it is.
    let _ = rustls::crypto::default_fips_provider().install_default();
    match rustls::crypto::CryptoProvider::get_default() {
        Some(p) if p.fips() => {
            tracing::debug!("TLS to Key Vault on rustls' FIPS provider (AWS-LC-FIPS)");
            Ok(())
        }
        _ => Err("TLS to Key Vault: the process's rustls provider is not the FIPS one".into()),
    }
}

/// One connection slot per vault endpoint and settings, for the whole process.
type Slot = Arc<Mutex<Option<Arc<Connection>>>>;

fn shared_slot(endpoint: &str, settings: &AzureSettings) -> Slot {
    static SLOTS: std::sync::OnceLock<Mutex<HashMap<String, Slot>>> = std::sync::OnceLock::new();
    let id = format!(
        "{endpoint}|{:?}|{:?}|{}|{:?}|{}",
        settings.credential,
        settings.ca_file,
        settings.verify_challenge_resource,
        settings.timeout,
        settings.retries
    );
    SLOTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id)
        .or_default()
        .clone()
}

impl AzureCmk {
    pub fn new(settings: AzureSettings) -> Result<AzureCmk, String> {
        let (endpoint, name, _) = parse_key_url(&settings.key_url)?;
        let conn = shared_slot(&endpoint, &settings);
        let key_url = format!("{}keys/{name}", endpoint);
        let cmk = AzureCmk {
            settings,
            key_url,
            name,
            endpoint,
            conn,
            algorithm: std::sync::OnceLock::new(),
        };
        cmk.connection()?;
        Ok(cmk)
    }

    fn build_connection(&self) -> Result<Connection, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyvault")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the Key Vault runtime: {e}"))?;
        #[cfg(feature = "fips")]
        install_fips_tls_provider()?;
        let credential = self.settings.credential.build()?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout);
        if let Some(ca) = &self.settings.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
        let retry = if self.settings.retries == 0 {
            RetryOptions::none()
        } else {
            RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: self.settings.retries,
                max_total_elapsed: azure_core::time::Duration::seconds(
                    self.settings.timeout.as_secs() as i64,
                ),
                max_delay: azure_core::time::Duration::seconds(2),
            })
        };
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry,
            ..Default::default()
        };
        let options = KeyClientOptions {
            client_options,
            verify_challenge_resource: Some(self.settings.verify_challenge_resource),
            ..Default::default()
        };
        let client = KeyClient::new(&self.endpoint, credential, Some(options))
            .map_err(|e| format!("Key Vault client: {e}"))?;
        Ok(Connection {
            pid: std::process::id(),
            rt,
            client,
            last_request_id: Mutex::new(None),
        })
    }

    fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            if c.pid == std::process::id() {
                return Ok(c.clone());
            }
            // Forked: the runtime's threads do not exist here. Leak the old one, rebuild.
            if let Some(old) = slot.take() {
                std::mem::forget(old);
            }
        }
        let c = Arc::new(self.build_connection()?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` against the client with the call timeout; counts the call in the metrics.
    fn call<T, F>(
        &self,
        op: KeyVaultOp,
        what: &str,
        f: impl FnOnce(Arc<Connection>) -> F,
    ) -> Result<T, KeyError>
    where
        F: std::future::Future<Output = Result<T, KeyError>>,
    {
        let started = std::time::Instant::now();
        let result = self
            .connection()
            .map_err(KeyError::Unavailable)
            .and_then(|conn| {
                let fut = f(conn.clone());
                let timeout = self.settings.timeout;
                conn.rt.block_on(async move {
                    match tokio::time::timeout(timeout, fut).await {
                        Ok(r) => r,
                        Err(_) => Err(KeyError::Unavailable(format!(
                            "{what}: Key Vault unreachable (no answer in {} s)",
                            timeout.as_secs()
                        ))),
                    }
                })
            });
        let outcome = match &result {
            Ok(_) => Outcome::ok,
            Err(KeyError::Revoked(_)) => Outcome::revoked,
            Err(KeyError::Unavailable(_)) => Outcome::unavailable,
            Err(_) => Outcome::error,
        };
        crate::metrics::global().key_vault_call(op, outcome, started.elapsed());
        result
    }

    /// RSA keys wrap with RSA-OAEP-256, AES keys (`oct`, `oct-HSM`) with A256KW.
    fn algorithm(&self) -> Result<&'static str, KeyError> {
        if let Some(a) = self.algorithm.get() {
            return Ok(a);
        }
        let name = self.name.clone();
        let what = format!("get {}", self.key_url);
        let kty = self.call(KeyVaultOp::get, &what.clone(), move |conn| async move {
            let key = conn
                .client
                .get_key(&name, None)
                .await
                .map_err(|e| errors::classify(&what, e))?
                .into_model()
                .map_err(|e| KeyError::Unavailable(format!("{what}: bad answer: {e}")))?;
            Ok(key.key.and_then(|k| k.kty))
        })?;
        let alg = match kty {
            Some(KeyType::Oct) | Some(KeyType::OctHsm) => A256KW,
            _ => RSA_OAEP_256,
        };
        Ok(self.algorithm.get_or_init(|| alg))
    }

    fn get_key_state(&self, version: Option<String>) -> Result<(String, bool), KeyError> {
        let name = self.name.clone();
        let what = format!("get {}", self.key_url);
        self.call(KeyVaultOp::get, &what.clone(), move |conn| async move {
            let client = &conn.client;
            let opts = KeyClientGetKeyOptions {
                key_version: version,
                ..Default::default()
            };
            let key = client
                .get_key(&name, Some(opts))
                .await
                .map_err(|e| errors::classify(&what, e))?
                .into_model()
                .map_err(|e| KeyError::Unavailable(format!("{what}: bad answer: {e}")))?;
            let kid = key.key.and_then(|k| k.kid).unwrap_or_default();
            let enabled = key.attributes.and_then(|a| a.enabled).unwrap_or(true);
            Ok((kid, enabled))
        })
    }
}

impl KeyProvider for AzureCmk {
    fn last_request_id(&self) -> Option<String> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;

        conn.last_request_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn handles(&self, id: &WrapperId) -> bool {
        match id {
            WrapperId::Cmk { key_id, .. } => parse_key_url(key_id)
                .map(|(e, n, _)| e == self.endpoint && n == self.name)
                .unwrap_or(false),
            WrapperId::Service { .. } => false,
        }
    }

    fn wrap(&self, plain: &[u8]) -> Result<(Vec<u8>, WrapperId), KeyError> {
        let alg = self.algorithm()?;
        let name = self.name.clone();
        let what = format!("wrap with {}", self.key_url);
        let value = plain.to_vec();
        self.call(KeyVaultOp::wrap, &what.clone(), move |conn| async move {
            let client = &conn.client;
            let params = KeyOperationParameters {
                algorithm: sdk_algorithm(alg),
                value: Some(value),
                ..Default::default()
            };
            let content = params
                .try_into()
                .map_err(|e| KeyError::Unavailable(format!("{what}: {e}")))?;
            let resp = client
                .wrap_key(&name, content, Some(KeyClientWrapKeyOptions::default()))
                .await
                .map_err(|e| errors::classify(&what, e))?;
            conn.note_request_id(resp.headers());
            let r = resp
                .into_model()
                .map_err(|e| KeyError::Unavailable(format!("{what}: bad answer: {e}")))?;
            let kid = r.kid.filter(|k| version_of(k).is_some()).ok_or_else(|| {
                KeyError::Unavailable(format!("{what}: no versioned key id in the answer"))
            })?;
            let wrapped = r.result.ok_or_else(|| {
                KeyError::Unavailable(format!("{what}: no wrapped key in the answer"))
            })?;
            Ok((
                wrapped,
                WrapperId::Cmk {
                    key_id: kid,
                    algorithm: alg.into(),
                },
            ))
        })
    }

    fn unwrap(&self, id: &WrapperId, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let WrapperId::Cmk { key_id, algorithm } = id else {
            return Err(KeyError::NoProvider(format!("{id:?}")));
        };
        let Some(sdk_alg) = sdk_algorithm(algorithm) else {
            return Err(KeyError::NoProvider(format!("algorithm {algorithm}")));
        };
        // Never "latest": exactly the version that wrapped it.
        let version = version_of(key_id)
            .ok_or_else(|| KeyError::NoProvider(format!("{key_id} has no version")))?;
        let name = self.name.clone();
        let what = format!("unwrap with {key_id}");
        let value = wrapped.to_vec();
        self.call(KeyVaultOp::unwrap, &what.clone(), move |conn| async move {
            let client = &conn.client;
            let params = KeyOperationParameters {
                algorithm: Some(sdk_alg),
                value: Some(value),
                ..Default::default()
            };
            let content = params
                .try_into()
                .map_err(|e| KeyError::Unavailable(format!("{what}: {e}")))?;
            let resp = client
                .unwrap_key(&name, &version, content, None)
                .await
                .map_err(|e| errors::classify(&what, e))?;
            conn.note_request_id(resp.headers());
            let r = resp
                .into_model()
                .map_err(|e| KeyError::Unavailable(format!("{what}: bad answer: {e}")))?;
            r.result
                .map(Zeroizing::new)
                .ok_or_else(|| KeyError::Unavailable(format!("{what}: no key in the answer")))
        })
    }
}

impl CustomerKey for AzureCmk {
    fn key_url(&self) -> &str {
        &self.key_url
    }

    fn check(&self, versions_in_use: &[String]) -> CmkState {
        for kid in versions_in_use {
            match self.get_key_state(version_of(kid)) {
                Ok((_, false)) => {
                    return CmkState::Revoked(format!("key version {kid} is disabled"));
                }
                Ok((_, true)) => {}
                Err(KeyError::Revoked(r)) => return CmkState::Revoked(r),
                Err(e) => return CmkState::Unreachable(e.to_string()),
            }
        }
        match self.get_key_state(None) {
            Ok((kid, _)) => CmkState::Enabled {
                latest_version: kid,
            },
            Err(KeyError::Revoked(r)) => CmkState::Revoked(r),
            Err(e) => CmkState::Unreachable(e.to_string()),
        }
    }

    fn latest_key_id(&self) -> Result<String, KeyError> {
        self.get_key_state(None).map(|(kid, _)| kid)
    }
}
