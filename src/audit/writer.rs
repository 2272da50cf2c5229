//! The append-only writer: one canonical JSON line per event, written with one write(2) on an
//! O_APPEND descriptor and made durable with fdatasync before `record` returns.
//!
//! Several processes may share one log (every mount of a host uses the default path): each
//! append happens under an exclusive flock(2), and a writer that finds the file longer (or
//! shorter) than it left it re-reads the last line to continue that chain. A log that was
//! renamed away (logrotate) is noticed by its inode and a new file is started.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::AuditError;
use super::record::{AuditEvent, AuditRecord, ZERO_HASH, check_line, sha256_hex};
use super::time::Timestamp;

/// At most one `AccessDenied` record per key in this window.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(60);
/// Keys the denial limiter remembers; the least recently denied is dropped first.
pub const MAX_DENIAL_KEYS: usize = 10_000;

/// The audit log of one process: append-only, hash-chained, thread-safe. `AuditLog::disabled()`
/// accepts every call and writes nothing.
pub struct AuditLog {
    inner: Option<Inner>,
}

struct Inner {
    path: PathBuf,
    state: Mutex<Chain>,
    denials: Mutex<DenialLimiter>,
    failures: AtomicU64,
}

/// The open file and where its chain ends.
struct Chain {
    file: File,
    dev_ino: (u64, u64),
    /// `seq` of the last record (0: empty file).
    seq: u64,
    /// SHA-256 of the last line: the next record's `prev`.
    prev: String,
    /// File length after our last append: any other length means someone else appended.
    end: u64,
}

struct DenialLimiter {
    window: Duration,
    keys: LruCache<String, DenialEntry>,
}

struct DenialEntry {
    /// When the last record for this key was written.
    written_at: Instant,
    /// Denials not written since.
    suppressed: u64,
    /// The most recent of them, for the summary written by `flush_denials` or on eviction.
    last: Option<AuditEvent>,
}

impl AuditLog {
    /// Opens (creating it and its directories if needed, mode 0600/0700) the log at `path` for
    /// appending, continuing the chain of its last record. Refuses a file whose last line is
    /// damaged (incomplete, not a record, or not matching its own hash): appending to it would
    /// hide the damage behind a fresh-looking chain.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let chain = Chain::open(path)?;
        Ok(AuditLog {
            inner: Some(Inner {
                path: path.to_path_buf(),
                state: Mutex::new(chain),
                denials: Mutex::new(DenialLimiter::new(DENIAL_WINDOW, MAX_DENIAL_KEYS)),
                failures: AtomicU64::new(0),
            }),
        })
    }

    /// A log that records nothing (no audit log configured).
    pub fn disabled() -> AuditLog {
        AuditLog { inner: None }
    }

    /// Changes the denial rate limit (default: one record per key per [`DENIAL_WINDOW`], at
    /// most [`MAX_DENIAL_KEYS`] keys remembered). Forgets the keys seen so far.
    pub fn with_denial_limits(self, window: Duration, max_keys: usize) -> AuditLog {
        if let Some(inner) = &self.inner {
            *lock(&inner.denials) = DenialLimiter::new(window, max_keys);
        }
        self
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The file written, or `None` when disabled.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|i| i.path.as_path())
    }

    /// Records written by this process that could not be written (each also logged as an error).
    pub fn failures(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.failures.load(Ordering::Relaxed))
    }

    /// Appends one record and syncs it. Failures are logged (`tracing::error!`) and counted in
    /// [`failures`](Self::failures), never returned: a key operation does not fail because
    /// its audit record could not be written. Use [`try_record`](Self::try_record) to see them.
    pub fn record(&self, event: AuditEvent) {
        if let Err(e) = self.try_record(event) {
            if let Some(inner) = &self.inner {
                inner.failures.fetch_add(1, Ordering::Relaxed);
            }
            tracing::error!("could not write audit record: {e}");
        }
    }

    /// [`record`](Self::record), returning the error.
    pub fn try_record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let mut chain = lock(&inner.state);
        let result = chain.append(&inner.path, event);
        crate::metrics::global().audit_record(result.is_ok());
        result
    }

    /// Records a denial, at most one per `key` (e.g. a path or an inode number) per
    /// [`DENIAL_WINDOW`]. The others are counted; the next record written for the key says
    /// "N similar denials suppressed" in its `detail`.
    pub fn record_denial(&self, key: &str, event: AuditEvent) {
        let Some(inner) = &self.inner else { return };
        let mut out = Vec::new();
        {
            let mut lim = lock(&inner.denials);
            let now = Instant::now();
            let window = lim.window;
            if let Some(e) = lim.keys.get_mut(key) {
                if now.duration_since(e.written_at) < window {
                    e.suppressed += 1;
                    e.last = Some(event);
                    return;
                }
                let n = std::mem::take(&mut e.suppressed);
                e.last = None;
                e.written_at = now;
                out.push(with_suppressed(event, n));
            } else {
                let fresh = DenialEntry {
                    written_at: now,
                    suppressed: 0,
                    last: None,
                };
                // At capacity, `push` evicts the least recently denied key: summarize it.
                if let Some((
                    _,
                    DenialEntry {
                        suppressed: n @ 1..,
                        last: Some(last),
                        ..
                    },
                )) = lim.keys.push(key.to_string(), fresh)
                {
                    out.push(with_suppressed(last, n));
                }
                out.push(event);
            }
        }
        for e in out {
            self.record(e);
        }
    }

    /// Writes one summary record for every key with suppressed denials (the last suppressed
    /// denial, with "N similar denials suppressed"), e.g. before unmounting. Also runs on drop.
    pub fn flush_denials(&self) {
        let Some(inner) = &self.inner else { return };
        let out: Vec<AuditEvent> = {
            let mut lim = lock(&inner.denials);
            lim.keys
                .iter_mut()
                .filter_map(|(_, e)| {
                    let n = std::mem::take(&mut e.suppressed);
                    e.last
                        .take()
                        .filter(|_| n > 0)
                        .map(|last| with_suppressed(last, n))
                })
                .collect()
        };
        for e in out {
            self.record(e);
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush_denials();
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("AuditLog")
                .field("path", &i.path)
                .finish_non_exhaustive(),
            None => f.write_str("AuditLog(disabled)"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn with_suppressed(mut event: AuditEvent, n: u64) -> AuditEvent {
    if n > 0 {
        let note = format!("{n} similar denials suppressed");
        event.detail = Some(match event.detail.take().filter(|d| !d.is_empty()) {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
    }
    event
}

impl DenialLimiter {
    fn new(window: Duration, max_keys: usize) -> DenialLimiter {
        DenialLimiter {
            window,
            keys: LruCache::new(NonZeroUsize::new(max_keys).unwrap_or(NonZeroUsize::MIN)),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Holds flock(LOCK_EX) on a file until dropped.
struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn lock(file: &'a File, path: &Path) -> Result<FlockGuard<'a>, AuditError> {
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FlockGuard(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err(path)(e));
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Chain {
    fn open(path: &Path) -> Result<Chain, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err(dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        if !meta.is_file() {
            return Err(io_err(path)(std::io::Error::other("not a regular file")));
        }
        let (seq, prev, end) = {
            let _lock = FlockGuard::lock(&file, path)?;
            read_tail(&file, path)?
        };
        Ok(Chain {
            dev_ino: (meta.dev(), meta.ino()),
            file,
            seq,
            prev,
            end,
        })
    }

    fn append(&mut self, path: &Path, event: AuditEvent) -> Result<(), AuditError> {
        // Rotated away or deleted: start the file now at `path`.
        match std::fs::metadata(path) {
            Ok(m) if (m.dev(), m.ino()) == self.dev_ino => {}
            _ => *self = Chain::open(path)?,
        }
        let _lock = FlockGuard::lock(&self.file, path)?;
        let len = self.file.metadata().map_err(io_err(path))?.len();
        if len != self.end {
            (self.seq, self.prev, self.end) = read_tail(&self.file, path)?;
        }
        let record = AuditRecord::seal(event, self.seq + 1, &self.prev, Timestamp::now());
        let line = record.to_line();
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if let Err(e) = (&self.file).write_all(&buf) {
            // Take back a partial line (we hold the lock) so the chain stays appendable.
            let _ = self.file.set_len(len);
            return Err(io_err(path)(e));
        }
        self.seq = record.seq;
        self.prev = sha256_hex(line.as_bytes());
        self.end = len + buf.len() as u64;
        self.file.sync_data().map_err(io_err(path))
    }
}

/// Reads the last line of the log: `(seq, its line hash, file length)`, or `(0, zeros, 0)` for
/// an empty file. Errors name the damaged line.
fn read_tail(file: &File, path: &Path) -> Result<(u64, String, u64), AuditError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    if len == 0 {
        return Ok((0, ZERO_HASH.to_string(), 0));
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)
        .map_err(io_err(path))?;
    if last[0] != b'\n' {
        let line = count_newlines(file, len).map_err(io_err(path))? + 1;
        return Err(AuditError::Damaged {
            path: path.to_path_buf(),
            line,
            reason: "the last line is incomplete (no newline at the end): an interrupted write or a truncation".into(),
        });
    }
    // Find the newline before the last line, reading backwards in chunks.
    let mut start = 0u64;
    let mut pos = len - 1;
    let mut chunk = vec![0u8; 64 * 1024];
    'search: while pos > 0 {
        let from = pos.saturating_sub(chunk.len() as u64);
        let n = (pos - from) as usize;
        file.read_exact_at(&mut chunk[..n], from)
            .map_err(io_err(path))?;
        if let Some(i) = chunk[..n].iter().rposition(|&c| c == b'\n') {
            start = from + i as u64 + 1;
            break 'search;
        }
        pos = from;
    }
    let mut line = vec![0u8; (len - 1 - start) as usize];
    file.read_exact_at(&mut line, start).map_err(io_err(path))?;
    match check_line(&line) {
        Ok(c) => Ok((c.seq, c.line_hash, len)),
        Err((_, reason)) => {
            let line_no = count_newlines(file, start).map_err(io_err(path))? + 1;
            Err(AuditError::Damaged {
                path: path.to_path_buf(),
                line: line_no,
                reason,
            })
        }
    }
}

/// Newlines in the first `upto` bytes of the file.
fn count_newlines(file: &File, upto: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut pos, mut count) = (0u64, 0u64);
    while pos < upto {
        let n = ((upto - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        count += buf[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        pos += n as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditOp, AuditResult};
    use crate::audit::verify;

    fn ev(op: AuditOp) -> AuditEvent {
        AuditEvent::new(op, "service:ab12", AuditResult::Ok)
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn writes_a_chain_and_continues_it_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dir/audit.log");
        {
            let log = AuditLog::open(&p).unwrap();
            log.record(ev(AuditOp::MountStarted));
            log.record(ev(AuditOp::KeyUnwrap).scope(1));
        }
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let log = AuditLog::open(&p).unwrap();
        log.record(ev(AuditOp::MountStopped));
        let ls = lines(&p);
        assert_eq!(ls.len(), 3);
        let seqs: Vec<u64> = ls
            .iter()
            .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        let third: AuditRecord = serde_json::from_str(&ls[2]).unwrap();
        assert_eq!(third.prev, sha256_hex(ls[1].as_bytes()));
        let r = verify::verify(&p).unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((r.records, r.last_hash.as_str()), (3, third.hash.as_str()));
    }

    #[test]
    fn refuses_to_continue_a_damaged_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        AuditLog::open(&p).unwrap().record(ev(AuditOp::KeyCheck));
        AuditLog::open(&p).unwrap().record(ev(AuditOp::KeyCheck));
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("\"ok\"", "\"error\"")).unwrap();
        let e = AuditLog::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains(&p.display().to_string()),
            "{e}"
        );
        std::fs::write(&p, &text[..text.len() - 1]).unwrap();
        let e = AuditLog::open(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("incomplete"), "{e}");
    }

    #[test]
    fn two_writers_on_one_file_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let (a, b) = (AuditLog::open(&p).unwrap(), AuditLog::open(&p).unwrap());
        for i in 0..10 {
            if i % 3 == 0 { &b } else { &a }.record(ev(AuditOp::KeyWrap));
        }
        let r = verify::verify(&p).unwrap();
        assert!(r.is_ok() && r.records == 10, "{r:?}");
    }

    #[test]
    fn a_rotated_log_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let log = AuditLog::open(&p).unwrap();
        log.record(ev(AuditOp::KeyWrap));
        std::fs::rename(&p, dir.path().join("audit.log.1")).unwrap();
        log.record(ev(AuditOp::KeyWrap));
        let r = verify::verify(&p).unwrap();
        assert!(r.is_ok() && r.records == 1, "{r:?}");
    }

    #[test]
    fn denials_are_limited_per_key_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let log = AuditLog::open(&p)
            .unwrap()
            .with_denial_limits(Duration::from_secs(60), 2);
        let deny = || {
            AuditEvent::new(AuditOp::AccessDenied, "service:ab12", AuditResult::Revoked)
                .caller(1000, 42)
        };
        for _ in 0..5 {
            log.record_denial("a", deny());
        }
        assert_eq!(lines(&p).len(), 1);
        log.record_denial("b", deny());
        log.record_denial("c", deny()); // evicts "a": its 4 suppressed denials are summarized
        let ls = lines(&p);
        assert_eq!(ls.len(), 4, "{ls:#?}");
        assert!(
            ls[2].contains("\"detail\":\"4 similar denials suppressed\""),
            "{}",
            ls[2]
        );
        log.record_denial("c", deny().detail("open /x"));
        log.flush_denials();
        let ls = lines(&p);
        assert_eq!(ls.len(), 5);
        assert!(
            ls[4].contains("\"detail\":\"open /x; 1 similar denials suppressed\""),
            "{}",
            ls[4]
        );
        log.flush_denials();
        assert_eq!(lines(&p).len(), 5);
        assert!(verify::verify(&p).unwrap().is_ok());
    }

    #[test]
    fn disabled_log_writes_nothing() {
        let log = AuditLog::disabled();
        log.record(ev(AuditOp::KeyWrap));
        log.record_denial("k", ev(AuditOp::AccessDenied));
        assert!(!log.is_enabled() && log.path().is_none() && log.failures() == 0);
    }
}
