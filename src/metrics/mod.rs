//! The process's metrics: counters and histograms that the layers bump as things happen (FUSE
//! requests and errors, Key Vault calls and their latency, revocation checks, audit records).
//! Owns only the numbers: every bump is an atomic add on a handle made once, no lock on the
//! FUSE path, no I/O. It never serves them: the daemon builds a registry from [`register`]
//! plus what it reads at scrape time (cache, open files, bytes, RSS) and serves it over HTTP.
//!
//! One process serves one mount, so the counters are process-wide (a `OnceLock`), which spares
//! every layer a handle to pass down. They start at zero when the daemon starts, like
//! `cmkfs status` counters.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The FUSE operations counted one by one; any other name counts as `other`.
pub const FUSE_OPS: &[&str] = &[
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "lseek",
    "fallocate",
    "tmpfile",
    "getlk",
    "setlk",
    "flock",
    "other",
];

/// Upper bounds (seconds) of the Key Vault latency buckets: a local emulator answers in
/// milliseconds, a remote vault in tens to hundreds, a timeout takes the call bound (10 s).
const KEY_VAULT_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FuseLabels {
    operation: &'static str,
}

/// A call to Key Vault.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum KeyVaultOp {
    /// Read the key (its type, or its state for a revocation check).
    get,
    wrap,
    unwrap,
}

/// How a Key Vault call ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    ok,
    /// A definitive refusal: disabled, deleted, access denied.
    revoked,
    /// Timeout, 5xx, 429, DNS or TLS failure.
    unavailable,
    /// Anything else (a malformed answer, no provider).
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyVaultLabels {
    operation: KeyVaultOp,
    outcome: Outcome,
}

/// What a revocation check of the customer-managed key found.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CheckResult {
    enabled,
    revoked,
    unreachable,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    result: CheckResult,
}

fn key_vault_histogram() -> Histogram {
    Histogram::new(KEY_VAULT_BUCKETS)
}

/// The counters of this process.
pub struct Metrics {
    fuse_requests_family: Family<FuseLabels, Counter>,
    fuse_errors_family: Family<FuseLabels, Counter>,
    /// Handles into the families above, by index in [`FUSE_OPS`].
    fuse_requests: Vec<Counter>,
    fuse_errors: Vec<Counter>,
    key_vault_requests: Family<KeyVaultLabels, Counter>,
    key_vault_duration: Family<KeyVaultLabels, Histogram, fn() -> Histogram>,
    revocation_checks: Family<CheckLabels, Counter>,
    audit_records: Counter,
    audit_failures: Counter,
    /// Unix time in milliseconds of the last check with a definitive answer (0: none yet).
    last_definitive_check_ms: AtomicU64,
    /// Checks in a row that could not reach Key Vault.
    consecutive_unreachable: AtomicU64,
    key_vault_total: AtomicU64,
}

/// The metrics of this process (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one request of FUSE operation `op` (a name from [`FUSE_OPS`]).
pub fn fuse_request(op: &str) {
    global().fuse_requests[fuse_index(op)].inc();
}

/// Counts one FUSE request of operation `op` answered with an error.
pub fn fuse_error(op: &str) {
    global().fuse_errors[fuse_index(op)].inc();
}

fn fuse_index(op: &str) -> usize {
    FUSE_OPS
        .iter()
        .position(|o| *o == op)
        .unwrap_or(FUSE_OPS.len() - 1)
}

impl Metrics {
    fn new() -> Metrics {
        let fuse_requests_family = Family::<FuseLabels, Counter>::default();
        let fuse_errors_family = Family::<FuseLabels, Counter>::default();
        let handles = |family: &Family<FuseLabels, Counter>| {
            FUSE_OPS
                .iter()
                .map(|op| family.get_or_create(&FuseLabels { operation: op }).clone())
                .collect()
        };
        Metrics {
            fuse_requests: handles(&fuse_requests_family),
            fuse_errors: handles(&fuse_errors_family),
            fuse_requests_family,
            fuse_errors_family,
            key_vault_requests: Family::default(),
            key_vault_duration: Family::new_with_constructor(key_vault_histogram),
            revocation_checks: Family::default(),
            audit_records: Counter::default(),
            audit_failures: Counter::default(),
            last_definitive_check_ms: AtomicU64::new(0),
            consecutive_unreachable: AtomicU64::new(0),
            key_vault_total: AtomicU64::new(0),
        }
    }

    /// One call to Key Vault: how it ended and how long it took.
    pub fn key_vault_call(&self, op: KeyVaultOp, outcome: Outcome, took: Duration) {
        let labels = KeyVaultLabels {
            operation: op,
            outcome,
        };
        self.key_vault_requests.get_or_create(&labels).inc();
        self.key_vault_total.fetch_add(1, Ordering::Relaxed);
        self.key_vault_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One revocation check of the customer-managed key. Enabled and revoked are definitive
    /// answers (a successful check); unreachable extends the run of failed checks.
    pub fn revocation_check(&self, result: CheckResult) {
        self.revocation_checks
            .get_or_create(&CheckLabels { result })
            .inc();
        match result {
            CheckResult::enabled | CheckResult::revoked => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                self.last_definitive_check_ms.store(now, Ordering::Relaxed);
                self.consecutive_unreachable.store(0, Ordering::Relaxed);
            }
            CheckResult::unreachable => {
                self.consecutive_unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An audit record was appended (`ok`) or could not be.
    pub fn audit_record(&self, ok: bool) {
        if ok {
            self.audit_records.inc();
        } else {
            self.audit_failures.inc();
        }
    }

    /// Unix time of the last revocation check with a definitive answer, if any.
    pub fn last_definitive_check(&self) -> Option<SystemTime> {
        match self.last_definitive_check_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Revocation checks in a row that could not reach Key Vault (0 after any answer).
    pub fn consecutive_unreachable_checks(&self) -> u64 {
        self.consecutive_unreachable.load(Ordering::Relaxed)
    }

    /// Calls to Key Vault by this process so far (every operation and outcome).
    pub fn key_vault_requests_total(&self) -> u64 {
        self.key_vault_total.load(Ordering::Relaxed)
    }

    pub fn audit_records_written(&self) -> u64 {
        self.audit_records.get()
    }

    pub fn fuse_requests_of(&self, op: &str) -> u64 {
        self.fuse_requests[fuse_index(op)].get()
    }
}

/// Adds the counters of this process to `registry` (names as served: `cmkfs_..._total`,
/// `..._seconds`). The daemon adds what it reads at scrape time.
pub fn register(registry: &mut Registry) {
    let m = global();
    registry.register(
        "cmkfs_fuse_requests",
        "FUSE requests served, by operation",
        m.fuse_requests_family.clone(),
    );
    registry.register(
        "cmkfs_fuse_request_errors",
        "FUSE requests answered with an error, by operation",
        m.fuse_errors_family.clone(),
    );
    registry.register(
        "cmkfs_key_vault_requests",
        "Calls to Azure Key Vault, by operation and outcome",
        m.key_vault_requests.clone(),
    );
    registry.register_with_unit(
        "cmkfs_key_vault_request_duration",
        "Latency of calls to Azure Key Vault, by operation and outcome",
        Unit::Seconds,
        m.key_vault_duration.clone(),
    );
    registry.register(
        "cmkfs_revocation_checks",
        "Revocation checks of the customer-managed key, by result",
        m.revocation_checks.clone(),
    );
    registry.register(
        "cmkfs_audit_records_written",
        "Audit records appended and synced by this process",
        m.audit_records.clone(),
    );
    registry.register(
        "cmkfs_audit_record_failures",
        "Audit records that could not be written (each also logged)",
        m.audit_failures.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_and_encodes_with_conventional_names() {
        let before = global().fuse_requests_of("read");
        fuse_request("read");
        fuse_request("read");
        fuse_request("no-such-op");
        fuse_error("read");
        assert!(global().fuse_requests_of("read") >= before + 2);
        global().key_vault_call(KeyVaultOp::unwrap, Outcome::ok, Duration::from_millis(3));
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("cmkfs_fuse_requests_total{operation=\"read\"}"));
        assert!(text.contains("cmkfs_fuse_requests_total{operation=\"other\"}"));
        assert!(text.contains("cmkfs_fuse_request_errors_total{operation=\"read\"}"));
        assert!(text.contains(
            "cmkfs_key_vault_request_duration_seconds_bucket{operation=\"unwrap\",outcome=\"ok\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(
            text.contains("cmkfs_key_vault_requests_total{operation=\"unwrap\",outcome=\"ok\"}")
        );
        assert!(text.contains("# TYPE cmkfs_audit_records_written_total counter"));
    }

    #[test]
    fn unreachable_checks_run_until_an_answer() {
        let m = Metrics::new();
        m.revocation_check(CheckResult::unreachable);
        m.revocation_check(CheckResult::unreachable);
        assert_eq!(m.consecutive_unreachable_checks(), 2);
        assert!(m.last_definitive_check().is_none());
        m.revocation_check(CheckResult::enabled);
        assert_eq!(m.consecutive_unreachable_checks(), 0);
        assert!(m.last_definitive_check().is_some());
    }
}
