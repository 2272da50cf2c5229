//! Serves the mount's metrics in the Prometheus text format (version 0.0.4, encoded by
//! `prometheus-client`) over HTTP, on a TCP address (`--metrics-listen`) or a Unix socket
//! (`--metrics-socket`). Owns the listener, the one-request-per-connection HTTP exchange and
//! the values read at scrape time (traffic, cache, revocation state, RSS); the counters bumped
//! by the layers below live in `crate::metrics`. Never changes the mount.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::fs::FsStats;
use crate::volume::Volume;

/// Where the metrics are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsEndpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl MetricsEndpoint {
    /// `--metrics-listen ADDR`: `HOST:PORT` (e.g. `127.0.0.1:9464`, `[::1]:9464`,
    /// `localhost:9464`).
    pub fn parse_listen(addr: &str) -> Result<MetricsEndpoint, String> {
        let mut found = addr.to_socket_addrs().map_err(|e| {
            format!("metrics address {addr:?} is not HOST:PORT (e.g. 127.0.0.1:9464): {e}")
        })?;
        found
            .next()
            .map(MetricsEndpoint::Tcp)
            .ok_or_else(|| format!("metrics address {addr:?} resolves to no address"))
    }
}

impl std::fmt::Display for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsEndpoint::Tcp(a) => write!(f, "http://{a}/metrics"),
            MetricsEndpoint::Unix(p) => write!(f, "unix:{} (GET /metrics)", p.display()),
        }
    }
}

/// What a scrape reads from the running mount.
pub struct ScrapeSource {
    pub volume: Arc<Volume>,
    pub stats: Arc<FsStats>,
    pub mountpoint: PathBuf,
    pub started: Instant,
}

/// The running server; dropping it stops accepting and removes a Unix socket.
pub struct MetricsServer {
    endpoint: MetricsEndpoint,
    stop: Arc<AtomicBool>,
}

/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;
/// A client that sends nothing for this long is dropped (scrapes are served one at a time).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

impl MetricsServer {
    pub fn start(endpoint: &MetricsEndpoint, source: Arc<ScrapeSource>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        match endpoint {
            MetricsEndpoint::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(
                        "metrics served on {addr}, which is not a loopback address: anyone who can reach it sees key ids, the mountpoint and traffic counts"
                    );
                }
                let listener = TcpListener::bind(addr)?;
                spawn_loop(move || {
                    for conn in listener.incoming() {
                        if stop2.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Ok(mut c) = conn {
                            let _ = c.set_read_timeout(Some(CLIENT_TIMEOUT));
                            let _ = c.set_write_timeout(Some(CLIENT_TIMEOUT));
                            answer(&mut c, &source);
                        }
                    }
                })?;
            }
            MetricsEndpoint::Unix(path) => {
                // A socket left by a daemon that died would make bind fail.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                spawn_loop(move || {
                    for conn in listener.incoming() {
                        if stop2.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Ok(mut c) = conn {
                            let _ = c.set_read_timeout(Some(CLIENT_TIMEOUT));
                            let _ = c.set_write_timeout(Some(CLIENT_TIMEOUT));
                            answer(&mut c, &source);
                        }
                    }
                })?;
            }
        }
        tracing::info!("metrics served at {endpoint}");
        Ok(MetricsServer {
            endpoint: endpoint.clone(),
            stop,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        match &self.endpoint {
            MetricsEndpoint::Tcp(a) => {
                let _ = std::net::TcpStream::connect_timeout(a, Duration::from_millis(200));
            }
            MetricsEndpoint::Unix(p) => {
                let _ = std::os::unix::net::UnixStream::connect(p);
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn spawn_loop(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(f)
        .map(|_| ())
}

/// Reads one request head and answers it: `GET /metrics` with the metrics, anything else with
/// 404 or 405. The connection is closed after the answer.
fn answer(conn: &mut (impl Read + Write), source: &ScrapeSource) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match render(source) {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                format!("cannot encode the metrics: {e}\n"),
            ),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "cmkfs serves its metrics at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics is served\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    let _ = conn.write_all(&response);
    let _ = conn.flush();
}

/// The metrics text of one scrape.
pub fn render(source: &ScrapeSource) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    crate::metrics::register(&mut registry);
    registry.register_collector(Box::new(MountCollector(ScrapeValues::read(source))));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The values read from the mount for one scrape.
#[derive(Debug)]
struct ScrapeValues {
    volume_id: String,
    mountpoint: String,
    bytes_read: u64,
    bytes_written: u64,
    open_files: u64,
    io_errors: u64,
    denied: u64,
    cache_entries: u64,
    cache_hits: u64,
    cache_misses: u64,
    cache_evictions: u64,
    /// The customer-managed key: its URL, whether revoked, seconds since the last check with
    /// a definitive answer (infinite before the first), unreachable checks in a row.
    cmk: Option<(String, bool, f64, u64)>,
    rss_bytes: Option<u64>,
    uptime_seconds: f64,
}

impl ScrapeValues {
    fn read(s: &ScrapeSource) -> ScrapeValues {
        use std::sync::atomic::Ordering::Relaxed;
        let keys = s.volume.keys();
        let cache = keys.cache().stats();
        let m = crate::metrics::global();
        let cmk = keys.cmk().map(|c| {
            let since = m
                .last_definitive_check()
                .map(|t| {
                    SystemTime::now()
                        .duration_since(t)
                        .unwrap_or_default()
                        .as_secs_f64()
                })
                .unwrap_or(f64::INFINITY);
            (
                c.key_url().to_string(),
                keys.revoked_reason().is_some(),
                since,
                m.consecutive_unreachable_checks(),
            )
        });
        ScrapeValues {
            volume_id: s.volume.config().volume_id.clone(),
            mountpoint: s.mountpoint.display().to_string(),
            bytes_read: s.stats.bytes_read.load(Relaxed),
            bytes_written: s.stats.bytes_written.load(Relaxed),
            open_files: s.stats.open_files.load(Relaxed),
            io_errors: s.stats.requests_failed.load(Relaxed),
            denied: s.stats.requests_denied.load(Relaxed),
            cache_entries: cache.entries,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_evictions: cache.evictions,
            cmk,
            rss_bytes: resident_bytes(Path::new("/proc/self/statm")),
            uptime_seconds: s.started.elapsed().as_secs_f64(),
        }
    }
}

/// Resident set size from `/proc/self/statm` (its second field, in pages).
fn resident_bytes(statm: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(statm).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0)?)
}

#[derive(Debug)]
struct MountCollector(ScrapeValues);

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

impl Collector for MountCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &self.0;
        let bytes = Unit::Bytes;
        let seconds = Unit::Seconds;
        let info = [
            ("volume_id", v.volume_id.clone()),
            ("mountpoint", v.mountpoint.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        e.encode_descriptor(
            "cmkfs_mount",
            "The mounted volume (value 1).",
            None,
            MetricType::Info,
        )?
        .encode_info(&info)?;
        counter(
            &mut e,
            "cmkfs_read",
            "Plaintext bytes read through the mount.",
            Some(&bytes),
            v.bytes_read,
        )?;
        counter(
            &mut e,
            "cmkfs_written",
            "Plaintext bytes written through the mount.",
            Some(&bytes),
            v.bytes_written,
        )?;
        gauge(
            &mut e,
            "cmkfs_open_files",
            "Files open through the mount.",
            None,
            v.open_files as i64,
        )?;
        counter(
            &mut e,
            "cmkfs_io_errors",
            "Requests answered with EIO (failed authentication, key service unreachable, backing I/O).",
            None,
            v.io_errors,
        )?;
        counter(
            &mut e,
            "cmkfs_access_denied",
            "Requests answered with EKEYREVOKED.",
            None,
            v.denied,
        )?;
        counter(
            &mut e,
            "cmkfs_data_key_cache_hits",
            "Data-key cache lookups served from the cache.",
            None,
            v.cache_hits,
        )?;
        counter(
            &mut e,
            "cmkfs_data_key_cache_misses",
            "Data-key cache lookups that had to unwrap.",
            None,
            v.cache_misses,
        )?;
        counter(
            &mut e,
            "cmkfs_data_key_cache_evictions",
            "Data keys dropped from the cache (capacity or age).",
            None,
            v.cache_evictions,
        )?;
        gauge(
            &mut e,
            "cmkfs_data_key_cache_entries",
            "Data keys held in the cache.",
            None,
            v.cache_entries as i64,
        )?;
        if let Some((key, revoked, since, unreachable)) = &v.cmk {
            let labels = [("key", key.as_str())];
            let mut m = e.encode_descriptor(
                "cmkfs_cmk_revoked",
                "Whether access through the customer-managed key is revoked (1) or not (0).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(*revoked)).encode(m.encode_family(&labels)?)?;
            let mut m = e.encode_descriptor(
                "cmkfs_cmk_since_last_successful_check",
                "Time since a revocation check last got an answer from Key Vault (+Inf before the first).",
                Some(&seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(*since).encode(m.encode_family(&labels)?)?;
            let mut m = e.encode_descriptor(
                "cmkfs_cmk_consecutive_unreachable_checks",
                "Revocation checks in a row that could not reach Key Vault.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(*unreachable as i64).encode(m.encode_family(&labels)?)?;
        }
        if let Some(rss) = v.rss_bytes {
            gauge(
                &mut e,
                "process_resident_memory",
                "Resident memory of the daemon.",
                Some(&bytes),
                rss as i64,
            )?;
        }
        gauge(
            &mut e,
            "cmkfs_uptime",
            "Time since the daemon mounted the volume.",
            Some(&seconds),
            v.uptime_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            MetricsEndpoint::parse_listen("127.0.0.1:9464").unwrap(),
            MetricsEndpoint::Tcp("127.0.0.1:9464".parse().unwrap())
        );
        assert!(MetricsEndpoint::parse_listen("[::1]:9464").is_ok());
        let e = MetricsEndpoint::parse_listen("9464").unwrap_err();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn reads_resident_memory() {
        assert!(resident_bytes(Path::new("/proc/self/statm")).unwrap() > 0);
        assert!(resident_bytes(Path::new("/nonexistent")).is_none());
    }
}
