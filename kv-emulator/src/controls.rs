//! Test controls: deny-all, latency, fault injection, token allow-list, counters and request log.
//!
//! Shared between the Key Vault request path and the control surfaces (Rust methods on
//! [`crate::Emulator`] and the `/_emulator/...` HTTP API). Guarded by a std `Mutex`; never held
//! across an `.await`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Maximum number of request-log entries kept (oldest dropped first).
pub const LOG_CAPACITY: usize = 10_000;

/// A failure to inject instead of serving a Key Vault request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// 429 `Throttled` with a `Retry-After` header (seconds).
    Throttled {
        /// `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Close the connection without answering.
    CloseConnection,
}

impl Fault {
    /// Parses `503`, `429` (optionally with a retry-after) or `close`.
    pub fn parse(kind: &str, retry_after_secs: u64) -> Option<Fault> {
        match kind.to_ascii_lowercase().as_str() {
            "503" | "unavailable" => Some(Fault::ServiceUnavailable),
            "429" | "throttle" | "throttled" => Some(Fault::Throttled { retry_after_secs }),
            "close" | "reset" => Some(Fault::CloseConnection),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct FaultRule {
    fault: Fault,
    /// `None` = until cleared.
    remaining: Option<u32>,
    /// Only requests of this operation (`None` = any).
    op: Option<String>,
}

/// One served (or refused) Key Vault request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// Operation (`wrapkey`, `unwrapkey`, `get`, `create`, …; see the README).
    pub op: String,
    /// HTTP method.
    pub method: String,
    /// Request path (without query).
    pub path: String,
    /// Key name, if the route has one.
    pub key: Option<String>,
    /// Key version: the one actually used when resolved (latest for an empty segment), else as requested.
    pub version: Option<String>,
    /// HTTP status answered; `0` when the connection was closed by an injected fault.
    pub status: u16,
    /// Whether the request carried an accepted bearer token.
    pub authenticated: bool,
}

/// All control state.
#[derive(Debug, Default)]
pub struct Controls {
    /// Answer 403 `AccessDenied` to every authenticated Key Vault request.
    pub deny_all: bool,
    /// Delay added before every Key Vault request is handled.
    pub latency: Duration,
    /// If set, only these bearer tokens are accepted (others get 401).
    pub allowed_tokens: Option<Vec<String>>,
    faults: Vec<FaultRule>,
    counters: BTreeMap<String, u64>,
    total: u64,
    unauthorized: u64,
    log: Vec<LogEntry>,
}

impl Controls {
    /// Adds a fault rule: `count = None` means until cleared; `op = None` means any operation.
    pub fn inject(&mut self, fault: Fault, count: Option<u32>, op: Option<String>) {
        if count == Some(0) {
            return;
        }
        self.faults.push(FaultRule {
            fault,
            remaining: count,
            op: op.map(|o| o.to_ascii_lowercase()),
        });
    }

    /// Removes every fault rule.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Number of fault rules still active.
    pub fn active_faults(&self) -> usize {
        self.faults.len()
    }

    /// Consumes the first fault rule matching `op`, if any.
    pub fn take_fault(&mut self, op: &str) -> Option<Fault> {
        let idx = self
            .faults
            .iter()
            .position(|r| r.op.as_deref().is_none_or(|o| o == op))?;
        let rule = &mut self.faults[idx];
        let fault = rule.fault;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.faults.remove(idx);
            }
        }
        Some(fault)
    }

    /// Whether `token` passes the allow-list.
    pub fn token_allowed(&self, token: &str) -> bool {
        self.allowed_tokens
            .as_ref()
            .is_none_or(|l| l.iter().any(|t| t == token))
    }

    /// Records a finished request (counters count authenticated requests only).
    pub fn record(&mut self, entry: LogEntry) {
        if entry.authenticated {
            *self.counters.entry(entry.op.clone()).or_insert(0) += 1;
            self.total += 1;
        } else {
            self.unauthorized += 1;
        }
        if self.log.len() >= LOG_CAPACITY {
            self.log.remove(0);
        }
        self.log.push(entry);
    }

    /// Authenticated requests of operation `op` (`"unauthorized"` = 401 challenges answered).
    pub fn count(&self, op: &str) -> u64 {
        if op.eq_ignore_ascii_case("unauthorized") {
            return self.unauthorized;
        }
        self.counters
            .get(&op.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Authenticated requests of any operation.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counters by operation (plus `unauthorized`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut c = self.counters.clone();
        c.insert("unauthorized".into(), self.unauthorized);
        c
    }

    /// Resets counters and the request log.
    pub fn reset_counters(&mut self) {
        self.counters.clear();
        self.total = 0;
        self.unauthorized = 0;
        self.log.clear();
    }

    /// A copy of the request log.
    pub fn log(&self) -> Vec<LogEntry> {
        self.log.clone()
    }

    /// Resets deny-all, latency, faults and the token allow-list (not counters, not keys).
    pub fn reset_behaviour(&mut self) {
        self.deny_all = false;
        self.latency = Duration::ZERO;
        self.allowed_tokens = None;
        self.faults.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed() {
        let mut c = Controls::default();
        c.inject(Fault::ServiceUnavailable, Some(2), Some("unwrapkey".into()));
        assert_eq!(c.take_fault("get"), None);
        assert_eq!(c.take_fault("unwrapkey"), Some(Fault::ServiceUnavailable));
        assert_eq!(c.take_fault("unwrapkey"), Some(Fault::ServiceUnavailable));
        assert_eq!(c.take_fault("unwrapkey"), None);
        c.inject(Fault::CloseConnection, None, None);
        for _ in 0..5 {
            assert_eq!(c.take_fault("get"), Some(Fault::CloseConnection));
        }
        c.clear_faults();
        assert_eq!(c.take_fault("get"), None);
    }
}
