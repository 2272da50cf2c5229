//! `cmkfs audit verify` / `cmkfs audit show` on logs written through `cmkfs::audit::AuditLog`,
//! then tampered with: edits, swaps, deletions, truncation; plus reopening, the denial rate
//! limit and concurrent writers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cmkfs::audit::{AuditEvent, AuditLog, AuditOp, AuditResult, service_key_id};
use serde_json::Value;

const CMK: &str = "https://vault.example.net/keys/volume-cmk/0123456789abcdef0123456789abcdef";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cmkfs(args: &[&str], file: &Path) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_cmkfs"))
        .arg("audit")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn verify(file: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["verify"];
    args.extend_from_slice(extra);
    cmkfs(&args, file)
}

/// A log of `n` events, all `result: ok`: mount, then unwraps/wraps/checks.
fn write_log(dir: &Path, n: usize) -> (PathBuf, Vec<String>) {
    let p = dir.join("audit.log");
    let log = AuditLog::open(&p).unwrap();
    for i in 0..n {
        let e = match i % 4 {
            0 => AuditEvent::new(
                AuditOp::MountStarted,
                service_key_id("9f86d081884c7d65"),
                AuditResult::Ok,
            ),
            1 => AuditEvent::new(AuditOp::KeyUnwrap, CMK, AuditResult::Ok)
                .scope(1)
                .duration(Duration::from_micros(8_250))
                .correlation_id(format!("req-{i}")),
            2 => AuditEvent::new(AuditOp::KeyWrap, CMK, AuditResult::Ok)
                .scope(1)
                .duration_ms(11.5),
            _ => AuditEvent::new(AuditOp::KeyCheck, CMK, AuditResult::Ok).detail("key enabled"),
        };
        log.record(e);
    }
    (p.clone(), lines(&p))
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn put(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn assert_fails_at(out: &Out, file: &Path, line: u64) {
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let expected = format!("audit log {} line {line}: ", file.display());
    assert!(
        out.stdout.contains(&expected),
        "expected {expected:?} in: {}{}",
        out.stdout,
        out.stderr
    );
}

fn ok_summary(out: &Out) -> (u64, String) {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let s = out.stdout.trim();
    let rest = s.strip_prefix("OK: ").unwrap_or_else(|| panic!("{s}"));
    let (n, rest) = rest
        .split_once(" records, chain intact, last hash ")
        .unwrap_or_else(|| panic!("{s}"));
    (n.parse().unwrap(), rest.to_string())
}

#[test]
fn a_good_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ls) = write_log(dir.path(), 6);
    let (n, hash) = ok_summary(&verify(&p, &[]));
    assert_eq!(n, 6);
    let last: Value = serde_json::from_str(&ls[5]).unwrap();
    assert_eq!(hash, last["hash"].as_str().unwrap());
    for l in &ls {
        let v: Value = serde_json::from_str(l).unwrap();
        let t = v["time"].as_str().unwrap();
        assert!(
            t.len() == 27 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
            "time {t}"
        );
    }

    let out = verify(&p, &["--json"]);
    assert_eq!(out.code, 0);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            doc["ok"].as_bool(),
            doc["records"].as_u64(),
            doc["last_hash"].as_str()
        ),
        (Some(true), Some(6), Some(hash.as_str()))
    );
}

#[test]
fn an_edited_field_fails_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut ls) = write_log(dir.path(), 6);
    assert!(ls[3].contains(r#""result":"ok""#));
    ls[3] = ls[3].replace(r#""result":"ok""#, r#""result":"denied""#);
    put(&p, &ls);
    let out = verify(&p, &[]);
    assert_eq!(out.code, 1);
    assert_fails_at(&out, &p, 4);
    assert!(out.stdout.contains("HashMismatch"), "{}", out.stdout);

    let out = verify(&p, &["--json"]);
    assert_eq!(out.code, 1);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            doc["problem"]["line"].as_u64(),
            doc["problem"]["kind"].as_str()
        ),
        (Some(4), Some("HashMismatch"))
    );
}

#[test]
fn swapped_lines_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut ls) = write_log(dir.path(), 6);
    ls.swap(2, 3);
    put(&p, &ls);
    let out = verify(&p, &[]);
    assert_fails_at(&out, &p, 3);
    assert!(out.stdout.contains("BrokenChain"), "{}", out.stdout);
}

#[test]
fn a_deleted_middle_line_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut ls) = write_log(dir.path(), 6);
    ls.remove(2);
    put(&p, &ls);
    assert_fails_at(&verify(&p, &[]), &p, 3);
}

#[test]
fn an_inserted_line_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut ls) = write_log(dir.path(), 6);
    let copy = ls[1].clone();
    ls.insert(4, copy);
    put(&p, &ls);
    assert_fails_at(&verify(&p, &[]), &p, 5);
}

#[test]
fn a_truncated_end_is_caught_by_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ls) = write_log(dir.path(), 6);
    let (n, hash) = ok_summary(&verify(&p, &[]));
    put(&p, &ls[..5]);
    // The chain alone cannot tell...
    assert_eq!(verify(&p, &[]).code, 0);
    // ...the anchor can.
    let out = verify(&p, &["--expect-count", &n.to_string()]);
    assert_fails_at(&out, &p, 6);
    assert!(out.stdout.contains("Truncated"), "{}", out.stdout);
    assert_ne!(verify(&p, &["--expect-last", &hash]).code, 0);
    // Cut and continued: the count is reached again, but not with the anchored record.
    AuditLog::open(&p)
        .unwrap()
        .record(AuditEvent::new(AuditOp::KeyCheck, CMK, AuditResult::Ok));
    assert_eq!(verify(&p, &["--expect-count", "6"]).code, 0);
    assert_fails_at(
        &verify(&p, &["--expect-count", "6", "--expect-last", &hash]),
        &p,
        6,
    );
}

#[test]
fn appending_after_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_log(dir.path(), 3);
    let (_, hash) = ok_summary(&verify(&p, &[]));
    {
        let log = AuditLog::open(&p).unwrap();
        log.record(AuditEvent::new(
            AuditOp::MountStopped,
            service_key_id("9f86d081884c7d65"),
            AuditResult::Ok,
        ));
    }
    let (n, _) = ok_summary(&verify(&p, &[]));
    assert_eq!(n, 4);
    let ls = lines(&p);
    let v: Value = serde_json::from_str(&ls[3]).unwrap();
    assert_eq!(v["seq"].as_u64(), Some(4));
    // An anchor taken before the append still holds.
    assert_eq!(
        verify(&p, &["--expect-count", "3", "--expect-last", &hash]).code,
        0
    );
}

#[test]
fn denials_are_rate_limited_and_the_suppressed_count_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let deny = |i: u32| {
        AuditEvent::new(AuditOp::AccessDenied, CMK, AuditResult::Revoked)
            .scope(1)
            .caller(1000, 4000 + i)
            .detail("read /secret/report.pdf")
    };
    {
        let log = AuditLog::open(&p).unwrap();
        for i in 0..100 {
            log.record_denial("/secret/report.pdf", deny(i));
        }
        assert_eq!(
            lines(&p).len(),
            1,
            "100 denials within a second: one record"
        );
        log.record_denial("/other", deny(0));
        assert_eq!(lines(&p).len(), 2, "another key has its own limit");
        // Dropping the log (unmount) writes what is still suppressed.
    }
    let ls = lines(&p);
    assert_eq!(ls.len(), 3);
    let v: Value = serde_json::from_str(&ls[2]).unwrap();
    assert_eq!(v["op"], "AccessDenied");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("99 similar denials suppressed"),
        "{v}"
    );

    // With a short window, the next denial after it carries the count.
    let p2 = dir.path().join("audit2.log");
    let log = AuditLog::open(&p2)
        .unwrap()
        .with_denial_limits(Duration::from_millis(300), 10_000);
    for i in 0..100 {
        log.record_denial("inode 42", deny(i));
    }
    assert_eq!(lines(&p2).len(), 1);
    std::thread::sleep(Duration::from_millis(400));
    log.record_denial("inode 42", deny(100));
    let ls = lines(&p2);
    assert_eq!(ls.len(), 2);
    let v: Value = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(
        v["detail"],
        "read /secret/report.pdf; 99 similar denials suppressed"
    );
    assert_eq!(
        (v["uid"].as_u64(), v["pid"].as_u64()),
        (Some(1000), Some(4100))
    );
    drop(log);
    assert_eq!(ok_summary(&verify(&p2, &[])).0, 2);
}

#[test]
fn concurrent_records_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = Arc::new(AuditLog::open(&p).unwrap());
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.record(
                        AuditEvent::new(AuditOp::KeyUnwrap, CMK, AuditResult::Ok)
                            .scope(t)
                            .detail(format!("thread {t} event {i}")),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ok_summary(&verify(&p, &[])).0, 200);
    let seqs: Vec<u64> = lines(&p)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}

#[test]
fn a_damaged_tail_is_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut ls) = write_log(dir.path(), 3);
    ls[2] = ls[2].replace("KeyWrap", "KeyUnwrap");
    put(&p, &ls);
    let e = AuditLog::open(&p).unwrap_err().to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn show_prints_filters_and_passes_json_through() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ls) = write_log(dir.path(), 8);
    let out = cmkfs(&["show"], &p);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(shown.len(), 8);
    assert!(
        shown[1].contains("KeyUnwrap")
            && shown[1].contains(CMK)
            && shown[1].contains("8.250ms")
            && shown[1].contains("  ok  "),
        "{}",
        shown[1]
    );
    assert!(shown[3].ends_with("key enabled"), "{}", shown[3]);

    let out = cmkfs(&["show", "--op", "keyunwrap"], &p);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    let out = cmkfs(&["show", "--json", "--op", "KeyWrap"], &p);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [ls[2].as_str(), ls[6].as_str()]
    );

    let t5: Value = serde_json::from_str(&ls[5]).unwrap();
    let out = cmkfs(
        &["show", "--json", "--since", t5["time"].as_str().unwrap()],
        &p,
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ls[5..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        cmkfs(&["show", "--since", "2999-01-01T00:00:00+01:00"], &p).stdout,
        ""
    );
    assert_ne!(cmkfs(&["show", "--since", "yesterday"], &p).code, 0);
    assert_ne!(cmkfs(&["show", "--op", "Nope"], &p).code, 0);
}

#[test]
fn unreadable_log_is_not_ok() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(&dir.path().join("missing.log"), &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("missing.log"), "{}", out.stderr);
}
