//! Verification of an audit log: every line must be a record whose `hash` matches its bytes,
//! whose `prev` is the hash of the line before (64 zeros for the first) and whose `seq` is
//! one more than the previous one (1 for the first). Reports the first problem found.
//!
//! The chain alone cannot notice records cut off the end. An anchor taken earlier (the count
//! and last hash printed by a previous verify, kept elsewhere) can: the log must still hold
//! at least that many records, and the record at that position must have that hash.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;

use super::AuditError;
use super::record::{LineFault, ZERO_HASH, check_line};

/// The kind of the first problem found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// Not a record: not JSON, a member missing, an incomplete last line.
    BadJson,
    /// The record does not match its hash: edited.
    HashMismatch,
    /// `prev` does not match the previous line: a record deleted, inserted or reordered.
    BrokenChain,
    /// The chain holds but `seq` does not count up by one.
    SeqGap,
    /// Fewer records than the anchor's count: records removed from the end.
    Truncated,
    /// The record the anchor names has another hash (or none has it): the end was rewritten.
    AnchorMismatch,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// 1-based line number.
    pub line: u64,
    pub kind: ProblemKind,
    /// What is wrong, in a sentence.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records that checked out (all of them when there is no problem; those before it otherwise).
    pub records: u64,
    /// `hash` of the last record that checked out (64 zeros for none).
    pub last_hash: String,
    /// The first problem, `None` when the chain is intact.
    pub problem: Option<VerifyProblem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A checkpoint of a log, kept elsewhere, to detect truncation at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchor {
    /// The log must hold a record with this hash: record number `expect_count` if that is
    /// given, any record otherwise (normally the last one when the anchor was taken).
    pub expect_last: Option<String>,
    /// The log must hold at least this many records.
    pub expect_count: Option<u64>,
}

/// Verifies the chain of the log at `path`. `Err` only when the file cannot be read.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    verify_with_anchor(path, &Anchor::default())
}

fn fail(report: &mut VerifyReport, line: u64, kind: ProblemKind, message: String) {
    report.problem = Some(VerifyProblem {
        line,
        kind,
        message,
    });
}

/// [`verify`], and checks `anchor`.
pub fn verify_with_anchor(path: &Path, anchor: &Anchor) -> Result<VerifyReport, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let expect_last = anchor
        .expect_last
        .as_deref()
        .map(|h| h.trim().to_ascii_lowercase());
    let mut report = VerifyReport {
        records: 0,
        last_hash: ZERO_HASH.to_string(),
        problem: None,
    };
    let mut prev_line = ZERO_HASH.to_string();
    let mut last_seq = 0u64;
    let mut anchor_found = false;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        if buf.pop_if(|c| *c == b'\n').is_none() {
            fail(&mut report, line_no, ProblemKind::BadJson, "the last line is incomplete (no newline at the end): an interrupted write or a truncation".into());
            return Ok(report);
        }
        let c = match check_line(&buf) {
            Ok(c) => c,
            Err((fault, msg)) => {
                let kind = match fault {
                    LineFault::BadJson => ProblemKind::BadJson,
                    LineFault::HashMismatch => ProblemKind::HashMismatch,
                };
                fail(&mut report, line_no, kind, msg);
                return Ok(report);
            }
        };
        if c.prev != prev_line {
            let msg = if line_no == 1 {
                "the first record does not start a chain (prev is not zero): records before it were removed".to_string()
            } else {
                format!(
                    "broken chain: prev {} is not the hash of line {} ({}): a record was deleted, inserted or reordered here",
                    c.prev,
                    line_no - 1,
                    prev_line
                )
            };
            fail(&mut report, line_no, ProblemKind::BrokenChain, msg);
            return Ok(report);
        }
        if c.seq != last_seq + 1 {
            fail(
                &mut report,
                line_no,
                ProblemKind::SeqGap,
                format!(
                    "seq {} follows seq {last_seq}, expected {}",
                    c.seq,
                    last_seq + 1
                ),
            );
            return Ok(report);
        }
        report.records += 1;
        last_seq = c.seq;
        prev_line = c.line_hash;
        report.last_hash = c.hash;
        if let Some(h) = &expect_last {
            match anchor.expect_count {
                Some(n) if n == report.records && *h != report.last_hash => {
                    let msg = format!(
                        "record {n} has hash {}, the anchor expects {h}: the log was cut and rewritten after it",
                        report.last_hash
                    );
                    fail(&mut report, line_no, ProblemKind::AnchorMismatch, msg);
                    return Ok(report);
                }
                Some(_) => {}
                None => anchor_found |= *h == report.last_hash,
            }
        }
    }
    if let Some(n) = anchor.expect_count.filter(|n| report.records < *n) {
        let msg = format!(
            "the log ends after {} records, the anchor expects at least {n}: records were removed from the end",
            report.records
        );
        let line = report.records + 1;
        fail(&mut report, line, ProblemKind::Truncated, msg);
    } else if let Some(h) = expect_last.filter(|_| anchor.expect_count.is_none() && !anchor_found) {
        let msg = format!(
            "no record has the anchor hash {h} (last hash {}): the end of the log was removed or rewritten",
            report.last_hash
        );
        let line = report.records.max(1);
        fail(&mut report, line, ProblemKind::AnchorMismatch, msg);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, AuditLog, AuditOp, AuditResult};

    fn write_log(p: &Path, n: usize) -> Vec<String> {
        let log = AuditLog::open(p).unwrap();
        for i in 0..n {
            log.record(
                AuditEvent::new(AuditOp::KeyUnwrap, "service:ab12", AuditResult::Ok)
                    .scope(i as u32),
            );
        }
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

    fn problem(p: &Path, anchor: &Anchor) -> (u64, ProblemKind) {
        let r = verify_with_anchor(p, anchor).unwrap();
        let pr = r.problem.unwrap();
        (pr.line, pr.kind)
    }

    #[test]
    fn intact_log_and_empty_log_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let ls = write_log(&p, 4);
        let r = verify(&p).unwrap();
        assert!(r.is_ok());
        assert_eq!(r.records, 4);
        let last: serde_json::Value = serde_json::from_str(&ls[3]).unwrap();
        assert_eq!(r.last_hash, last["hash"].as_str().unwrap());
        std::fs::write(&p, "").unwrap();
        assert_eq!(
            verify(&p).unwrap(),
            VerifyReport {
                records: 0,
                last_hash: ZERO_HASH.into(),
                problem: None
            }
        );
        assert!(verify(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn tampering_is_found_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let ls = write_log(&p, 5);
        let none = Anchor::default();

        let mut edited = ls.clone();
        edited[2] = edited[2].replace("\"result\":\"ok\"", "\"result\":\"denied\"");
        put(&p, &edited);
        assert_eq!(problem(&p, &none), (3, ProblemKind::HashMismatch));

        let mut swapped = ls.clone();
        swapped.swap(1, 2);
        put(&p, &swapped);
        assert_eq!(problem(&p, &none), (2, ProblemKind::BrokenChain));

        let mut deleted = ls.clone();
        deleted.remove(2);
        put(&p, &deleted);
        assert_eq!(problem(&p, &none), (3, ProblemKind::BrokenChain));

        let mut first_gone = ls.clone();
        first_gone.remove(0);
        put(&p, &first_gone);
        assert_eq!(problem(&p, &none), (1, ProblemKind::BrokenChain));

        let mut inserted = ls.clone();
        inserted.insert(3, ls[1].clone());
        put(&p, &inserted);
        assert_eq!(problem(&p, &none), (4, ProblemKind::BrokenChain));

        let mut garbage = ls.clone();
        garbage[1] = "{not json".into();
        put(&p, &garbage);
        assert_eq!(problem(&p, &none), (2, ProblemKind::BadJson));

        put(&p, &ls);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() - 10]).unwrap();
        assert_eq!(problem(&p, &none), (5, ProblemKind::BadJson));
    }

    #[test]
    fn anchors_catch_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let ls = write_log(&p, 5);
        let full = verify(&p).unwrap();
        let anchor = Anchor {
            expect_last: Some(full.last_hash.to_uppercase()),
            expect_count: Some(5),
        };
        assert!(verify_with_anchor(&p, &anchor).unwrap().is_ok());
        assert!(
            verify_with_anchor(
                &p,
                &Anchor {
                    expect_last: Some(full.last_hash.clone()),
                    expect_count: None
                }
            )
            .unwrap()
            .is_ok()
        );

        put(&p, &ls[..4]);
        assert!(verify(&p).unwrap().is_ok());
        assert_eq!(
            problem(
                &p,
                &Anchor {
                    expect_last: None,
                    expect_count: Some(5)
                }
            ),
            (5, ProblemKind::Truncated)
        );
        assert_eq!(
            problem(
                &p,
                &Anchor {
                    expect_last: Some(full.last_hash.clone()),
                    expect_count: None
                }
            ),
            (4, ProblemKind::AnchorMismatch)
        );

        // Cut and continued: the count is reached again, the hash at the anchor is not.
        write_log(&p, 3);
        assert_eq!(problem(&p, &anchor), (5, ProblemKind::AnchorMismatch));
        // A log that grew past the anchor still satisfies it.
        put(&p, &ls);
        write_log(&p, 2);
        assert!(verify_with_anchor(&p, &anchor).unwrap().is_ok());
    }
}
