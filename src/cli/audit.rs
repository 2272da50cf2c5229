//! `cmkfs audit verify` and `cmkfs audit show`: read an audit log (see `crate::audit`).
//! `verify` exits itself: 0 chain intact, 1 damaged or tampered, 2 could not read the log.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::audit::{self, Anchor, AuditOp, Timestamp};

/// Exit code of `audit verify` when the log cannot be read at all.
const EXIT_CANNOT_READ: i32 = 2;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log (exit 0 intact, 1 tampered or damaged, 2 unreadable).
    Verify(VerifyArgs),
    /// Print the records of an audit log, one per line.
    Show(ShowArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit log (default: /var/log/cmkfs/audit.log as root,
    /// $XDG_STATE_HOME/cmkfs/audit.log or ~/.local/state/cmkfs/audit.log otherwise).
    pub file: Option<PathBuf>,
    /// Anchor: a hash printed by an earlier verify; the log must still hold that record (record
    /// number --expect-count when given). Detects records cut off the end.
    #[arg(long, value_name = "HASH")]
    pub expect_last: Option<String>,
    /// Anchor: the log must hold at least N records (the count an earlier verify printed).
    #[arg(long, value_name = "N")]
    pub expect_count: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The audit log (default: as for `verify`).
    pub file: Option<PathBuf>,
    /// Print the JSON lines as they are in the log.
    #[arg(long)]
    pub json: bool,
    /// Only records of this op (e.g. KeyUnwrap, AccessDenied; case-insensitive).
    #[arg(long, value_name = "OP")]
    pub op: Option<AuditOp>,
    /// Only records at or after this time (RFC 3339, e.g. 2025-03-01T12:00:00Z, or a date).
    #[arg(long, value_name = "RFC3339", value_parser = Timestamp::parse_rfc3339)]
    pub since: Option<Timestamp>,
}

pub fn run(c: AuditCommand) -> Result<(), String> {
    match c {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Show(a) => show(a),
    }
}

fn verify(a: VerifyArgs) -> Result<(), String> {
    let file = a.file.unwrap_or_else(audit::default_audit_log_path);
    if let Some(h) = a
        .expect_last
        .as_ref()
        .filter(|h| h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!(
            "--expect-last: {h:?} is not a SHA-256 hash (64 hex digits)"
        ));
    }
    let anchor = Anchor {
        expect_last: a.expect_last.clone(),
        expect_count: a.expect_count,
    };
    let report = match audit::verify_with_anchor(&file, &anchor) {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                let doc = serde_json::json!({ "file": file, "ok": false, "error": e.to_string() });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            eprintln!("cmkfs audit verify: cannot read {e}");
            exit(EXIT_CANNOT_READ);
        }
    };
    if a.json {
        let doc = serde_json::json!({
            "file": file,
            "ok": report.is_ok(),
            "records": report.records,
            "last_hash": report.last_hash,
            "problem": report.problem,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        match &report.problem {
            None => println!(
                "OK: {} records, chain intact, last hash {}",
                report.records, report.last_hash
            ),
            Some(p) => println!(
                "audit log {} line {}: {} ({})",
                file.display(),
                p.line,
                p.message,
                p.kind
            ),
        }
    }
    if report.is_ok() { Ok(()) } else { exit(1) }
}

fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn show(a: ShowArgs) -> Result<(), String> {
    let file = a.file.unwrap_or_else(audit::default_audit_log_path);
    let f = std::fs::File::open(&file)
        .map_err(|e| format!("cannot read audit log {}: {e}", file.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("cannot read audit log {}: {e}", file.display()))?;
        let text = String::from_utf8_lossy(&line);
        let Some(v) = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(Value::is_object)
        else {
            eprintln!(
                "cmkfs audit show: {} line {}: not a record, skipped",
                file.display(),
                i + 1
            );
            continue;
        };
        if !matches(&v, a.op, a.since) {
            continue;
        }
        let written = if a.json {
            writeln!(out, "{text}")
        } else {
            writeln!(out, "{}", human(&v))
        };
        if written.is_err() {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
    }
    let _ = out.flush();
    Ok(())
}

fn matches(v: &Value, op: Option<AuditOp>, since: Option<Timestamp>) -> bool {
    if op.is_some_and(|op| v.get("op").and_then(Value::as_str) != Some(op.as_str())) {
        return false;
    }
    if let Some(since) = since {
        let t = v
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| Timestamp::parse_rfc3339(t).ok());
        if t.is_none_or(|t| t < since) {
            return false;
        }
    }
    true
}

/// `time  op  result  key_id  scope  duration  detail`, `-` for what is absent.
fn human(v: &Value) -> String {
    let s = |k: &str| match v.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let duration = v
        .get("duration_ms")
        .and_then(Value::as_f64)
        .map_or("-".to_string(), |d| format!("{d:.3}ms"));
    let mut detail = s("detail");
    if v.get("uid").is_some() || v.get("pid").is_some() {
        let caller = format!("uid {} pid {}", s("uid"), s("pid"));
        detail = if detail == "-" {
            caller
        } else {
            format!("{detail} ({caller})")
        };
    }
    format!(
        "{}  {:<21}  {:<11}  {}  {}  {}  {}",
        s("time"),
        s("op"),
        s("result"),
        s("key_id"),
        s("scope"),
        duration,
        detail
    )
}
