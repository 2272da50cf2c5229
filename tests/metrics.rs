//! Prometheus metrics of a real mount: scraped over TCP and over a Unix socket while a workload
//! runs, the counters move and, once the mount is quiet, equal what `cmkfs status --json`
//! reports; Key Vault calls, latency and the revocation state of a customer-managed key
//! (against the Key Vault emulator) follow a disable, an enable and an outage.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestVolume, bin, run, run_ok};
use kv_emulator::{Emulator, Fault};

/// A port free a moment ago on the loopback address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `GET path` on `conn`; returns (status line, headers, body).
fn http_get(mut conn: impl Read + Write, path: &str) -> (String, String, String) {
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn connect_tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `series -> value` of a text-format scrape (`name{labels}` as written).
fn parse(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let v = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), v))
        })
        .collect()
}

fn scrape_tcp(port: u16) -> HashMap<String, f64> {
    let (status, headers, body) = http_get(connect_tcp(port), "/metrics");
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        headers.contains("text/plain; version=0.0.4"),
        "Prometheus text format: {headers}"
    );
    parse(&body)
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing from the scrape: {m:#?}"))
}

fn status_json(mnt: &Path) -> serde_json::Value {
    let out = run_ok(Command::new(bin()).arg("status").arg(mnt).arg("--json"));
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn counters_move_with_a_workload_and_match_status() {
    let port = free_port();
    let v = TestVolume::with_opts(&[&format!("metrics_listen=127.0.0.1:{port}")]);
    let first = scrape_tcp(port);
    let mnt = v.mnt();
    let workload = std::thread::spawn(move || {
        let data = vec![0x5au8; 256 * 1024];
        for i in 0..40 {
            let p = mnt.join(format!("f{i}"));
            fs::write(&p, &data).unwrap();
            assert_eq!(fs::read(&p).unwrap().len(), data.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // Scrapes during the workload never see a counter go down.
    let mut last = first.clone();
    let mut during = 0;
    while !workload.is_finished() {
        let now = scrape_tcp(port);
        for series in [
            "cmkfs_written_bytes_total",
            "cmkfs_read_bytes_total",
            "cmkfs_fuse_requests_total{operation=\"write\"}",
            "cmkfs_data_key_cache_hits_total",
        ] {
            assert!(
                get(&now, series) >= get(&last, series),
                "{series} went down"
            );
        }
        last = now;
        during += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    workload.join().unwrap();
    assert!(during >= 1, "no scrape happened during the workload");
    assert_eq!(
        fs::read(v.p("missing")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );

    // Quiet mount: the releases of the last files have arrived once no file is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_json(&v.mnt())["open_files"] != 0 {
        assert!(Instant::now() < deadline, "files still open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = scrape_tcp(port);
    let s = status_json(&v.mnt());
    let total = 40.0 * 256.0 * 1024.0;
    assert!(get(&m, "cmkfs_written_bytes_total") >= total);
    assert!(get(&m, "cmkfs_read_bytes_total") > get(&first, "cmkfs_read_bytes_total"));
    for (series, field) in [
        ("cmkfs_written_bytes_total", &s["bytes_written"]),
        ("cmkfs_read_bytes_total", &s["bytes_read"]),
        ("cmkfs_open_files", &s["open_files"]),
        ("cmkfs_io_errors_total", &s["failed_requests"]),
        ("cmkfs_access_denied_total", &s["denied_requests"]),
        ("cmkfs_data_key_cache_hits_total", &s["cache"]["hits"]),
        ("cmkfs_data_key_cache_misses_total", &s["cache"]["misses"]),
        (
            "cmkfs_data_key_cache_evictions_total",
            &s["cache"]["evictions"],
        ),
        ("cmkfs_data_key_cache_entries", &s["cache"]["entries"]),
    ] {
        assert_eq!(
            get(&m, series),
            field.as_f64().unwrap(),
            "{series} against status --json"
        );
    }
    assert!(get(&m, "cmkfs_data_key_cache_hits_total") > 0.0);
    for op in ["create", "write", "read", "lookup", "release"] {
        let series = format!("cmkfs_fuse_requests_total{{operation=\"{op}\"}}");
        assert!(
            get(&m, &series) > get(&first, &series),
            "{series} did not move"
        );
    }
    assert!(
        get(&m, "cmkfs_fuse_request_errors_total{operation=\"lookup\"}") >= 1.0,
        "the lookup of a missing name is an error reply"
    );
    assert!(get(&m, "cmkfs_audit_records_written_total") >= 1.0);
    assert!(get(&m, "process_resident_memory_bytes") > 1e6);
    let info = m
        .keys()
        .find(|k| k.starts_with("cmkfs_mount_info{"))
        .expect("cmkfs_mount_info");
    assert!(
        info.contains(s["volume_id"].as_str().unwrap()),
        "{info} names the volume"
    );
    // No customer-managed key: no key series.
    assert!(!m.keys().any(|k| k.starts_with("cmkfs_cmk_revoked")));
}

#[test]
fn unix_socket_serves_metrics_and_only_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("metrics.sock");
    let mut v = TestVolume::with_opts(&[&format!("metrics_socket={}", sock.display())]);
    fs::write(v.p("a"), b"hello").unwrap();
    assert_eq!(
        fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, _, body) = http_get(UnixStream::connect(&sock).unwrap(), "/metrics");
    assert!(status.contains("200"), "{status}");
    let m = parse(&body);
    assert!(get(&m, "cmkfs_written_bytes_total") >= 5.0);
    assert!(body.contains("# TYPE cmkfs_fuse_requests_total counter"));
    let (status, _, _) = http_get(UnixStream::connect(&sock).unwrap(), "/");
    assert!(status.contains("404"), "{status}");
    let mut c = UnixStream::connect(&sock).unwrap();
    write!(c, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    v.umount();
    assert!(!sock.exists(), "the socket is removed at unmount");
}

#[test]
fn a_bad_metrics_address_fails_before_mounting_with_one_line() {
    let mut v = TestVolume::init_only();
    v.opts = vec!["metrics_listen=9464".into()];
    let out = run(&mut v.mount_cmd());
    assert!(!out.success());
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("metrics address") && line.contains("HOST:PORT"),
        "{line}"
    );
    assert!(!common::is_mounted(&v.mnt()));
}

#[test]
fn key_vault_calls_and_revocation_state_are_exported() {
    let emu = Emulator::start();
    emu.create_rsa_key("kek");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("mnt")).unwrap();
    emu.write_ca_file(d.join("ca.pem")).unwrap();
    fs::write(d.join("token"), "test-token\n").unwrap();
    let key_url = format!("{}keys/kek", emu.url());
    let kv: Vec<String> = vec![
        "--azure-credential".into(),
        format!("access-token-file:{}", d.join("token").display()),
        "--ca-file".into(),
        d.join("ca.pem").display().to_string(),
        "--no-verify-challenge-resource".into(),
        "--key-vault-timeout".into(),
        "5".into(),
    ];
    run_ok(
        Command::new(bin())
            .arg("init")
            .arg(d.join("backing"))
            .arg("--service-key")
            .arg(d.join("key"))
            .arg("--cmk")
            .arg(&key_url)
            .arg("--audit-log")
            .arg(d.join("audit.log"))
            .args(&kv),
    );
    let port = free_port();
    let mnt = d.join("mnt");
    run_ok(
        Command::new(bin())
            .arg("mount")
            .arg(d.join("backing"))
            .arg(&mnt)
            .arg("--service-key")
            .arg(d.join("key"))
            .arg("--audit-log")
            .arg(d.join("audit.log"))
            .arg("--log-file")
            .arg(d.join("log"))
            .args(&kv)
            .args(["--revocation-check-interval", "3600"])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}")),
    );
    let key_check = || {
        run_ok(
            Command::new(bin())
                .args(["key", "check"])
                .arg(&mnt)
                .arg("--json"),
        )
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fs::write(mnt.join("secret"), b"top secret").unwrap();
        key_check();
        let k = format!("{{key=\"{key_url}\"}}");
        let m = scrape_tcp(port);
        assert_eq!(get(&m, &format!("cmkfs_cmk_revoked{k}")), 0.0);
        assert!(
            get(
                &m,
                &format!("cmkfs_cmk_since_last_successful_check_seconds{k}")
            ) < 60.0
        );
        assert!(
            get(
                &m,
                "cmkfs_key_vault_requests_total{operation=\"unwrap\",outcome=\"ok\"}"
            ) >= 1.0
        );
        let gets = get(
            &m,
            "cmkfs_key_vault_requests_total{operation=\"get\",outcome=\"ok\"}",
        );
        assert!(gets >= 1.0);
        assert_eq!(
            get(
                &m,
                "cmkfs_key_vault_request_duration_seconds_count{operation=\"get\",outcome=\"ok\"}"
            ),
            gets,
            "one latency sample per call"
        );
        assert_eq!(
            get(
                &m,
                "cmkfs_key_vault_request_duration_seconds_bucket{operation=\"get\",outcome=\"ok\",le=\"+Inf\"}"
            ),
            gets
        );

        emu.disable_key("kek").unwrap();
        key_check();
        let m = scrape_tcp(port);
        assert_eq!(get(&m, &format!("cmkfs_cmk_revoked{k}")), 1.0);
        assert!(get(&m, "cmkfs_revocation_checks_total{result=\"revoked\"}") >= 1.0);
        emu.enable_key("kek").unwrap();
        key_check();
        assert_eq!(
            get(&scrape_tcp(port), &format!("cmkfs_cmk_revoked{k}")),
            0.0
        );

        emu.inject_failure(Fault::ServiceUnavailable, None);
        key_check();
        key_check();
        let m = scrape_tcp(port);
        assert_eq!(
            get(&m, &format!("cmkfs_cmk_consecutive_unreachable_checks{k}")),
            2.0
        );
        assert_eq!(
            get(&m, &format!("cmkfs_cmk_revoked{k}")),
            0.0,
            "an outage is not a revocation"
        );
        assert!(
            get(
                &m,
                "cmkfs_key_vault_requests_total{operation=\"get\",outcome=\"unavailable\"}"
            ) >= 2.0
        );
        emu.clear_failures();
        key_check();
        let m = scrape_tcp(port);
        assert_eq!(
            get(&m, &format!("cmkfs_cmk_consecutive_unreachable_checks{k}")),
            0.0
        );
    }));
    let _ = run(Command::new(bin()).arg("umount").arg(&mnt));
    common::force_unmount(&mnt);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
