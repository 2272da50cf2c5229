//! Audit log lines: `serde_json::from_slice::<cmkfs::audit::AuditRecord>` on one line, and
//! `cmkfs::audit::verify` on the bytes as a whole log file (its line checker is private).
//! Never panics; a log the verifier accepts parses record by record.
#![no_main]
use std::io::Write;

use cmkfs::audit::{AuditRecord, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<AuditRecord>(data) {
        let _ = r.canonical_unhashed();
        let _ = r.to_line();
    }
    thread_local! {
        static PATH: std::path::PathBuf = {
            let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
            dir.join(format!("cmkfs-fuzz-audit-{}.log", std::process::id()))
        };
    }
    PATH.with(|p| {
        let mut f = std::fs::File::create(p).unwrap();
        f.write_all(data).unwrap();
        drop(f);
        let report = verify(p).expect("verify reads the file");
        if report.is_ok() {
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                serde_json::from_slice::<AuditRecord>(line).expect("a verified line is a record");
            }
        }
    });
});
