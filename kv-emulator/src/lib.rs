//! Azure Key Vault **keys** data-plane emulator for cmkfs tests.
//!
//! [`Emulator::start`] runs an HTTPS server on `127.0.0.1:<random port>` on its own thread with its
//! own tokio runtime (usable from plain `#[test]` functions), with a freshly generated test CA and
//! leaf certificate. It speaks enough of the Key Vault REST API for the official
//! `azure_security_keyvault_keys` client (401 challenge, create/get/update/rotate/delete/recover,
//! wrapkey/unwrapkey with RSA-OAEP-256 or RSA-OAEP, Managed HSM `oct-HSM` AES-256 keys with A256KW,
//! versions) and offers test controls both as Rust
//! methods and as an HTTP API under `/_emulator/…`.
//!
//! Modules: [`error`] (error bodies), [`crypto`] (RSA, AES key wrap), [`store`] (vault state), [`bundle`]
//! (JSON), [`controls`] (faults, counters, log), [`state`] (shared state), [`rest`] (Key Vault
//! routes), [`control_api`] (`/_emulator`), [`server`] (TLS + pipeline), [`tls`] (test PKI).

pub mod bundle;
pub mod control_api;
pub mod controls;
pub mod crypto;
pub mod error;
pub mod rest;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use controls::{Fault, LogEntry};
pub use error::KvError;
use state::{DEFAULT_KEY_SIZE, Shared};
use store::{AttributePatch, NewVersion};

/// Start options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Port to bind on 127.0.0.1 (`0` = random).
    pub port: u16,
    /// Extra DNS SANs for the leaf certificate (besides `localhost`, `*.vault.localhost`, `kvtest.vault.localhost`).
    pub extra_dns_names: Vec<String>,
}

/// Why the emulator could not start.
#[derive(Debug)]
pub enum StartError {
    /// Binding or thread/runtime creation failed.
    Io(std::io::Error),
    /// Certificate or TLS configuration failed.
    Tls(tls::TlsSetupError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Io(e) => write!(f, "kv-emulator start failed: {e}"),
            StartError::Tls(e) => write!(f, "kv-emulator start failed: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// A running emulator. Dropping it (or [`Emulator::stop`]) shuts the server down: the port then
/// refuses connections and open connections are closed.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Emulator {
    /// Starts on a random port. Panics if that fails (test helper; see [`Emulator::try_start`]).
    pub fn start() -> Emulator {
        match Self::try_start(Options::default()) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Emulator::start`] from async code (runs the blocking start on tokio's blocking pool).
    pub async fn start_async() -> Emulator {
        match tokio::task::spawn_blocking(|| Self::try_start(Options::default())).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("kv-emulator start task failed: {e}"),
        }
    }

    /// Starts with options; returns once the port is listening.
    pub fn try_start(opts: Options) -> Result<Emulator, StartError> {
        let pki = tls::TestPki::generate(&opts.extra_dns_names).map_err(StartError::Tls)?;
        let config = pki.server_config().map_err(StartError::Tls)?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(pki.ca_pem.clone()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kv-emulator")
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kv-emulator".into())
            .spawn(move || {
                runtime.block_on(server::run(listener, acceptor, s, rx));
                // Dropping the runtime cancels every connection task, closing their sockets.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })?;
        Ok(Emulator {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// `https://127.0.0.1:PORT` (no trailing slash; the prefix of every `kid`).
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA certificate (PEM) to trust.
    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    /// Writes the CA PEM to `path`.
    pub fn write_ca_file(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.shared.ca_pem.as_bytes())
    }

    /// Stops the server (idempotent). Afterwards the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    // ----- keys -----

    /// Creates an RSA-2048 key (or a new version if it exists); returns the versioned kid.
    /// Panics on an invalid or soft-deleted name (see [`Emulator::try_create_rsa_key`]).
    pub fn create_rsa_key(&self, name: &str) -> String {
        match self.try_create_rsa_key(name, DEFAULT_KEY_SIZE) {
            Ok(kid) => kid,
            Err(e) => panic!("create_rsa_key({name}): {e}"),
        }
    }

    /// Creates an RSA key of `bits` (2048/3072/4096); returns the versioned kid.
    pub fn try_create_rsa_key(&self, name: &str, bits: u32) -> Result<String, KvError> {
        let v = self
            .shared
            .create_key(name, Some(bits), NewVersion::default())?;
        Ok(bundle::kid(&self.base(), name, &v.version))
    }

    /// Creates a Managed HSM symmetric key (`oct-HSM`, AES-256; wrapKey/unwrapKey with `A256KW`)
    /// or a new version if it exists; returns the versioned kid. Panics on an invalid or
    /// soft-deleted name (see [`Emulator::try_create_oct_key`]).
    pub fn create_oct_key(&self, name: &str) -> String {
        match self.try_create_oct_key(name) {
            Ok(kid) => kid,
            Err(e) => panic!("create_oct_key({name}): {e}"),
        }
    }

    /// Creates an `oct-HSM` AES-256 key (or a new version); returns the versioned kid.
    pub fn try_create_oct_key(&self, name: &str) -> Result<String, KvError> {
        let spec = NewVersion {
            kty: Some(crypto::OCT_KTY.to_string()),
            ..Default::default()
        };
        let v = self.shared.create_key(name, Some(256), spec)?;
        Ok(bundle::kid(&self.base(), name, &v.version))
    }

    /// Rotates a key; returns the new versioned kid.
    pub fn rotate_key(&self, name: &str) -> Result<String, KvError> {
        let v = self.shared.rotate_key(name)?;
        Ok(bundle::kid(&self.base(), name, &v.version))
    }

    /// Latest version id of a live key.
    pub fn latest_version(&self, name: &str) -> Result<String, KvError> {
        Ok(self.shared.vault().get(name, "")?.version)
    }

    /// All version ids of a live key, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .shared
            .vault()
            .versions(name)?
            .into_iter()
            .map(|v| v.version)
            .collect())
    }

    /// Disables every version of a key.
    pub fn disable_key(&self, name: &str) -> Result<(), KvError> {
        self.shared.vault().set_enabled_all(name, false)
    }

    /// Enables every version of a key.
    pub fn enable_key(&self, name: &str) -> Result<(), KvError> {
        self.shared.vault().set_enabled_all(name, true)
    }

    /// Disables one version (`""` = latest).
    pub fn disable_version(&self, name: &str, version: &str) -> Result<(), KvError> {
        self.patch(
            name,
            version,
            AttributePatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
    }

    /// Enables one version (`""` = latest).
    pub fn enable_version(&self, name: &str, version: &str) -> Result<(), KvError> {
        self.patch(
            name,
            version,
            AttributePatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
    }

    /// Sets (or clears with `None`) `exp` in Unix seconds on one version (`""` = latest).
    pub fn set_exp(&self, name: &str, version: &str, exp: Option<i64>) -> Result<(), KvError> {
        self.patch(
            name,
            version,
            AttributePatch {
                exp: Some(exp),
                ..Default::default()
            },
        )
    }

    /// Sets (or clears with `None`) `nbf` in Unix seconds on one version (`""` = latest).
    pub fn set_nbf(&self, name: &str, version: &str, nbf: Option<i64>) -> Result<(), KvError> {
        self.patch(
            name,
            version,
            AttributePatch {
                nbf: Some(nbf),
                ..Default::default()
            },
        )
    }

    /// Sets `key_ops` on one version (`""` = latest).
    pub fn set_key_ops(&self, name: &str, version: &str, ops: &[&str]) -> Result<(), KvError> {
        let key_ops = Some(ops.iter().map(|s| s.to_string()).collect());
        self.patch(
            name,
            version,
            AttributePatch {
                key_ops,
                ..Default::default()
            },
        )
    }

    fn patch(&self, name: &str, version: &str, p: AttributePatch) -> Result<(), KvError> {
        self.shared.vault().update(name, version, &p).map(|_| ())
    }

    /// Soft-deletes a key (404 `KeyNotFound` afterwards).
    pub fn delete_key(&self, name: &str) -> Result<(), KvError> {
        self.shared.vault().delete(name).map(|_| ())
    }

    /// Recovers a soft-deleted key.
    pub fn recover_key(&self, name: &str) -> Result<(), KvError> {
        self.shared.vault().recover(name).map(|_| ())
    }

    /// Purges a soft-deleted key.
    pub fn purge_key(&self, name: &str) -> Result<(), KvError> {
        self.shared.vault().purge(name)
    }

    // ----- behaviour -----

    /// Every authenticated Key Vault request gets 403 `Forbidden` / `AccessDenied`.
    pub fn deny_all(&self) {
        self.shared.controls().deny_all = true;
    }

    /// Undoes [`Emulator::deny_all`].
    pub fn restore_access(&self) {
        self.shared.controls().deny_all = false;
    }

    /// Adds `latency` before every Key Vault request (including 401 challenges).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.controls().latency = latency;
    }

    /// [`Emulator::set_latency`] in milliseconds.
    pub fn set_latency_ms(&self, ms: u64) {
        self.set_latency(Duration::from_millis(ms));
    }

    /// Fails the next `count` authenticated requests (`None` = all until
    /// [`Emulator::clear_failures`]) with `fault`.
    pub fn inject_failure(&self, fault: Fault, count: Option<u32>) {
        self.shared.controls().inject(fault, count, None);
    }

    /// Like [`Emulator::inject_failure`] but only for one operation (`"unwrapkey"`, `"get"`, …).
    pub fn inject_failure_for(&self, op: &str, fault: Fault, count: Option<u32>) {
        self.shared
            .controls()
            .inject(fault, count, Some(op.to_string()));
    }

    /// Removes all injected failures.
    pub fn clear_failures(&self) {
        self.shared.controls().clear_faults();
    }

    /// Only these bearer tokens are accepted (others get the 401 challenge); `None` = any token.
    pub fn set_allowed_tokens(&self, tokens: Option<Vec<String>>) {
        self.shared.controls().allowed_tokens = tokens;
    }

    /// Resets deny-all, latency, failures and the token allow-list (keys and counters untouched).
    pub fn reset_behaviour(&self) {
        self.shared.controls().reset_behaviour();
    }

    // ----- observation -----

    /// Authenticated requests of operation `op` (`create`, `get`, `update`, `rotate`, `versions`,
    /// `list`, `wrapkey`, `unwrapkey`, `encrypt`, `decrypt`, `delete`, `getdeleted`,
    /// `listdeleted`, `recover`, `purge`, `unknown`), whatever their outcome;
    /// `"unauthorized"` counts the 401 answers instead.
    pub fn count(&self, op: &str) -> u64 {
        self.shared.controls().count(op)
    }

    /// Authenticated requests of any operation (401 challenges excluded).
    pub fn total(&self) -> u64 {
        self.shared.controls().total()
    }

    /// Resets counters and the request log.
    pub fn reset_counters(&self) {
        self.shared.controls().reset_counters();
    }

    /// The request log (every Key Vault request including 401s; control API excluded).
    pub fn request_log(&self) -> Vec<LogEntry> {
        self.shared.controls().log()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
