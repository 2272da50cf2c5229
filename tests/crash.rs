//! Crash safety: SIGKILL the daemon at random moments while writer threads create, write,
//! append, overwrite, truncate (down, and up with holes), punch holes, write past the end,
//! rename, unlink and fsync files (and a key rotation may be rewriting the key store), then
//! remount and check:
//!
//! - every file whose last operation was a completed `fsync` reads back exactly (holes too);
//! - every other file reads back only bytes that some writer really wrote at that offset
//!   (self-describing 64-byte records) or zeros (a hole, or a gap whose write did not reach
//!   the disk: never another write's bytes), or fails with `EIO` on a few specific blocks;
//! - every directory lists; `.cmkfs/volume.json` and `.cmkfs/keystore.json` parse;
//! - the volume mounts again at once.
//!
//! `CMKFS_CRASH_ITERS` (default 10) sets the number of kill/remount rounds, `CMKFS_SEED` the
//! seed. Odd rounds run the daemon with `--foreground` (pid = our child), even rounds in the
//! background (pid from `/run/cmkfs/<mount id>.pid`, cross-checked with `cmkfs status --json`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const REC: usize = 64;
const BLOCK: u64 = 4096;
const WRITERS: usize = 4;
const SLOTS: usize = 6;

fn crash_iters() -> usize {
    std::env::var("CMKFS_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// The 64-byte record for object `tag`, version `ver`, at file offset `off`:
/// `"CMKR" || tag (4) || ver (4) || off (8) || 44 pseudo-random bytes derived from all three`.
fn record(tag: u32, ver: u32, off: u64) -> [u8; REC] {
    let mut r = [0u8; REC];
    r[..4].copy_from_slice(b"CMKR");
    r[4..8].copy_from_slice(&tag.to_le_bytes());
    r[8..12].copy_from_slice(&ver.to_le_bytes());
    r[12..20].copy_from_slice(&off.to_le_bytes());
    let mut g = Rng::new(((tag as u64) << 32 | ver as u64) ^ off.rotate_left(17));
    g.fill(&mut r[20..]);
    r
}

/// Content of version `ver` of object `tag` for the byte range [from, to) (record aligned).
fn content(tag: u32, ver: u32, from: u64, to: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity((to - from) as usize);
    let mut off = from;
    while off < to {
        v.extend_from_slice(&record(tag, ver, off));
        off += REC as u64;
    }
    v
}

/// Checks `data` read at file offset `off`: every record must be one a writer started.
fn check_records(data: &[u8], off: u64, started: &HashSet<(u32, u32)>) -> Result<(), String> {
    if !data.len().is_multiple_of(REC) {
        return Err(format!(
            "read {} bytes at {off}: not a whole number of records",
            data.len()
        ));
    }
    for (i, r) in data.chunks(REC).enumerate() {
        let pos = off + (i * REC) as u64;
        if r.iter().all(|&b| b == 0) {
            continue; // a hole, or a gap that was never written
        }
        if &r[..4] != b"CMKR" {
            return Err(format!("record at {pos} has no magic: {:02x?}", &r[..16]));
        }
        let tag = u32::from_le_bytes(r[4..8].try_into().unwrap());
        let ver = u32::from_le_bytes(r[8..12].try_into().unwrap());
        if !started.contains(&(tag, ver)) {
            return Err(format!(
                "record at {pos} names tag {tag} version {ver}, which was never written"
            ));
        }
        if r != record(tag, ver, pos) {
            return Err(format!(
                "record at {pos} (tag {tag} version {ver}) has wrong bytes (written for another offset?)"
            ));
        }
    }
    Ok(())
}

/// What the test knows about one name.
#[derive(Clone, Debug)]
enum State {
    /// Not present (never created or unlinked and the unlink completed).
    Absent,
    /// Last operation was a completed fsync of exactly this content; no mutation started since.
    Synced { sha: String, len: u64 },
    /// Something may have been in flight: any started records, or EIO on a few blocks.
    Dirty,
}

/// One writer's files: churn slots in `t<i>/`, plus write-once fsync'd files in `t<i>/d/`.
struct WriterModel {
    id: usize,
    slots: Vec<State>,
    /// Object tag and version currently believed to be in each slot (for appends).
    slot_obj: Vec<Option<(u32, u64)>>,
    durable: Vec<(String, String, u64)>,
    next_obj: u32,
    next_ver: u32,
    durable_count: usize,
}

impl WriterModel {
    fn new(id: usize) -> Self {
        WriterModel {
            id,
            slots: vec![State::Absent; SLOTS],
            slot_obj: vec![None; SLOTS],
            durable: Vec::new(),
            next_obj: 1,
            next_ver: 1,
            durable_count: 0,
        }
    }
    fn slot_name(&self, s: usize) -> String {
        if s % 3 == 2 {
            // long names: encoded form > 255 bytes, so a `.L`/`.N` pair in the backing dir
            format!("t{}/slot{s}-{}", self.id, "x".repeat(200))
        } else {
            format!("t{}/slot{s}", self.id)
        }
    }
    fn tag(&mut self) -> u32 {
        let t = ((self.id as u32 + 1) << 24) | self.next_obj;
        self.next_obj += 1;
        t
    }
}

struct Shared {
    mnt: PathBuf,
    started: Mutex<HashSet<(u32, u32)>>,
    stop: AtomicBool,
    /// Unexpected errors seen before the kill.
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn start(&self, tag: u32, ver: u32) {
        self.started.lock().unwrap().insert((tag, ver));
    }
}

/// Ends the writer on any error once the kill is under way; before it, records the error.
fn check<T>(sh: &Shared, what: &str, r: io::Result<T>) -> Result<T, ()> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            if !sh.stop.load(Ordering::SeqCst) {
                sh.errors.lock().unwrap().push(format!("{what}: {e}"));
            }
            Err(())
        }
    }
}

fn punch_hole(f: &File, off: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain syscall on an open descriptor.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write_all_chunks(f: &File, data: &[u8], mut off: u64, rng: &mut Rng) -> io::Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        let n = ((rng.range(1, 64) as usize) * REC).min(data.len() - pos);
        f.write_all_at(&data[pos..pos + n], off)?;
        pos += n;
        off += n as u64;
    }
    Ok(())
}

fn writer(sh: &Shared, m: &mut WriterModel, seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = sh.mnt.join(format!("t{}", m.id));
    let ddir = dir.join("d");
    if check(sh, "mkdir", fs::create_dir_all(&ddir)).is_err() {
        return;
    }
    while !sh.stop.load(Ordering::SeqCst) {
        let s = rng.below(SLOTS as u64) as usize;
        let path = sh.mnt.join(m.slot_name(s));
        let op = rng.below(100);
        let r: Result<(), ()> = (|| {
            if op < 30 {
                // overwrite with a new object (O_TRUNC), maybe fsync
                let tag = m.tag();
                let ver = m.next_ver;
                m.next_ver += 1;
                let len = rng.below(48 * 1024 / REC as u64) * REC as u64
                    + if rng.chance(20) { 300 * 1024 } else { 0 };
                sh.start(tag, ver);
                m.slots[s] = State::Dirty;
                m.slot_obj[s] = Some((tag, ver as u64));
                let f = check(
                    sh,
                    "create",
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&path),
                )?;
                let data = content(tag, ver, 0, len);
                check(sh, "write", write_all_chunks(&f, &data, 0, &mut rng))?;
                if rng.chance(60) {
                    check(sh, "fsync", f.sync_all())?;
                    m.slots[s] = State::Synced {
                        sha: sha256_hex(&data),
                        len,
                    };
                }
            } else if op < 45 {
                // append or overwrite in place with a new version of the slot's object
                let Some((tag, _)) = m.slot_obj[s] else {
                    return Ok(());
                };
                if matches!(m.slots[s], State::Absent) {
                    return Ok(());
                }
                let ver = m.next_ver;
                m.next_ver += 1;
                sh.start(tag, ver);
                m.slots[s] = State::Dirty;
                let f = check(
                    sh,
                    "open rw",
                    OpenOptions::new().read(true).write(true).open(&path),
                )?;
                let size = check(sh, "fstat", f.metadata())?.len();
                let from = rng.below(size / REC as u64 + 1) * REC as u64;
                let to = from + rng.range(1, 40) * REC as u64;
                let data = content(tag, ver, from, to);
                check(sh, "pwrite", write_all_chunks(&f, &data, from, &mut rng))?;
                if rng.chance(50) {
                    check(sh, "fsync", f.sync_all())?;
                    let all = check(sh, "read back", fs::read(&path))?;
                    m.slots[s] = State::Synced {
                        sha: sha256_hex(&all),
                        len: all.len() as u64,
                    };
                }
            } else if op < 55 {
                // truncate down to a record boundary
                if matches!(m.slots[s], State::Absent) {
                    return Ok(());
                }
                m.slots[s] = State::Dirty;
                let f = check(
                    sh,
                    "open for truncate",
                    OpenOptions::new().read(true).write(true).open(&path),
                )?;
                let size = check(sh, "fstat", f.metadata())?.len();
                let to = rng.below(size / REC as u64 + 1) * REC as u64;
                check(sh, "ftruncate", f.set_len(to))?;
                if rng.chance(50) {
                    check(sh, "fsync", f.sync_all())?;
                    let all = check(sh, "read back", fs::read(&path))?;
                    m.slots[s] = State::Synced {
                        sha: sha256_hex(&all),
                        len: all.len() as u64,
                    };
                }
            } else if op < 65 {
                // rename slot s over slot t
                let t = rng.below(SLOTS as u64) as usize;
                if t == s || matches!(m.slots[s], State::Absent) {
                    return Ok(());
                }
                let was = m.slots[s].clone();
                m.slots[s] = State::Dirty;
                m.slots[t] = State::Dirty;
                check(sh, "rename", fs::rename(&path, sh.mnt.join(m.slot_name(t))))?;
                m.slots[s] = State::Absent;
                m.slots[t] = was; // content unchanged by rename
                m.slot_obj[t] = m.slot_obj[s].take();
            } else if op < 70 {
                // hard link then unlink the old name (a rename done in two steps)
                let t = rng.below(SLOTS as u64) as usize;
                if t == s
                    || matches!(m.slots[s], State::Absent)
                    || !matches!(m.slots[t], State::Absent)
                {
                    return Ok(());
                }
                let was = m.slots[s].clone();
                m.slots[t] = State::Dirty;
                check(
                    sh,
                    "link",
                    fs::hard_link(&path, sh.mnt.join(m.slot_name(t))),
                )?;
                m.slots[t] = was.clone();
                m.slot_obj[t] = m.slot_obj[s];
                m.slots[s] = State::Dirty;
                check(sh, "unlink", fs::remove_file(&path))?;
                m.slots[s] = State::Absent;
                m.slot_obj[s] = None;
            } else if op < 75 {
                if matches!(m.slots[s], State::Absent) {
                    return Ok(());
                }
                m.slots[s] = State::Dirty;
                check(sh, "unlink", fs::remove_file(&path))?;
                m.slots[s] = State::Absent;
                m.slot_obj[s] = None;
            } else if op < 85 {
                // sparse: grow with a hole, punch a hole, or write past the end over a gap
                if matches!(m.slots[s], State::Absent) {
                    return Ok(());
                }
                let Some((tag, _)) = m.slot_obj[s] else {
                    return Ok(());
                };
                m.slots[s] = State::Dirty;
                let f = check(
                    sh,
                    "open for sparse op",
                    OpenOptions::new().read(true).write(true).open(&path),
                )?;
                let size = check(sh, "fstat", f.metadata())?.len();
                let kind = rng.below(3);
                if kind == 0 {
                    let to = size
                        + rng.range(1, 64) * BLOCK
                        + rng.below(BLOCK / REC as u64) * REC as u64;
                    check(sh, "truncate up", f.set_len(to))?;
                } else if kind == 1 {
                    let from = rng.below(size / REC as u64 + 1) * REC as u64;
                    let len = rng.range(1, 256) * REC as u64;
                    check(sh, "punch hole", punch_hole(&f, from, len))?;
                } else {
                    let ver = m.next_ver;
                    m.next_ver += 1;
                    sh.start(tag, ver);
                    let from = size
                        + rng.range(1, 40) * BLOCK
                        + rng.below(BLOCK / REC as u64) * REC as u64;
                    let data = content(tag, ver, from, from + rng.range(1, 40) * REC as u64);
                    check(
                        sh,
                        "write past the end",
                        write_all_chunks(&f, &data, from, &mut rng),
                    )?;
                }
                if rng.chance(50) {
                    check(sh, "fsync", f.sync_all())?;
                    let all = check(sh, "read back", fs::read(&path))?;
                    m.slots[s] = State::Synced {
                        sha: sha256_hex(&all),
                        len: all.len() as u64,
                    };
                }
            } else {
                // write-once durable file, fsync'd, never touched again
                let tag = m.tag();
                let ver = m.next_ver;
                m.next_ver += 1;
                let len = rng.range(0, 40 * 1024 / REC as u64) * REC as u64;
                let name = if rng.chance(20) {
                    format!("t{}/d/{}-{}", m.id, m.durable_count, "y".repeat(180))
                } else {
                    format!("t{}/d/{}", m.id, m.durable_count)
                };
                m.durable_count += 1;
                sh.start(tag, ver);
                let f = check(
                    sh,
                    "create durable",
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(sh.mnt.join(&name)),
                )?;
                let data = content(tag, ver, 0, len);
                check(
                    sh,
                    "write durable",
                    write_all_chunks(&f, &data, 0, &mut rng),
                )?;
                check(sh, "fsync durable", f.sync_all())?;
                m.durable.push((name, sha256_hex(&data), len));
            }
            Ok(())
        })();
        if r.is_err() {
            return;
        }
    }
}

/// pid of the background daemon serving `mnt`: `/run/cmkfs/<mount id>.pid`, where the mount
/// id is the first 8 bytes of SHA-256 of the canonical mountpoint, cross-checked with
/// `cmkfs status MNT --json`.
fn background_pid(mnt: &Path) -> u32 {
    let canon = mnt.canonicalize().unwrap();
    let id = &sha256_hex(canon.as_os_str().as_encoded_bytes())[..16];
    let pid_file = PathBuf::from(format!("/run/cmkfs/{id}.pid"));
    let from_file: Option<u32> = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let st = run_ok(cmkfs().arg("status").arg(mnt).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("status --json is JSON");
    let from_status = v["pid"].as_u64().map(|p| p as u32);
    assert!(
        from_status.is_some(),
        "status --json has no pid: {}",
        st.stdout
    );
    if let Some(p) = from_file {
        assert_eq!(
            Some(p),
            from_status,
            "pid file {} disagrees with cmkfs status",
            pid_file.display()
        );
    }
    from_status.unwrap()
}

fn spawn_foreground(v: &TestVolume) -> Child {
    let mut cmd = v.mount_cmd();
    cmd.arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn foreground mount");
    let start = Instant::now();
    while !is_mounted(&v.mnt()) || fs::read_dir(v.mnt()).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "foreground mount exited with {st}; log:\n{}",
                v.log_contents()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "foreground mount did not appear"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[derive(Default, Debug)]
struct Verify {
    exact: usize,
    dirty_ok: usize,
    eio_blocks: usize,
    eio_files: Vec<String>,
}

/// Blocks read back: (block index, bytes) of each block that read.
type BlocksRead = Vec<(u64, Vec<u8>)>;

/// Reads `path` block by block; returns (bytes, EIO block count). Errors other than EIO fail.
fn read_blocks(path: &Path) -> Result<(Vec<u8>, usize, BlocksRead), String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok((Vec::new(), 1, Vec::new())),
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    let size = f
        .metadata()
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .len();
    let mut all = Vec::new();
    let mut eio = 0;
    let mut pieces = Vec::new();
    let mut off = 0;
    while off < size {
        let mut buf = vec![0u8; BLOCK as usize];
        match f.read_at(&mut buf, off) {
            Ok(n) => {
                buf.truncate(n);
                all.extend_from_slice(&buf);
                pieces.push((off, buf));
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => eio += 1,
            Err(e) => {
                return Err(format!(
                    "read {} at {off}: {e} (only EIO is acceptable)",
                    path.display()
                ));
            }
        }
        off += BLOCK;
    }
    Ok((all, eio, pieces))
}

fn verify(
    mnt: &Path,
    models: &[WriterModel],
    started: &HashSet<(u32, u32)>,
    out: &mut Verify,
) -> Vec<String> {
    let mut problems = Vec::new();
    for m in models {
        for (name, sha, len) in &m.durable {
            match fs::read(mnt.join(name)) {
                Ok(d) if d.len() as u64 == *len && sha256_hex(&d) == *sha => out.exact += 1,
                Ok(d) => problems.push(format!(
                    "fsync'd file {name}: {} bytes (want {len}), content differs",
                    d.len()
                )),
                Err(e) => problems.push(format!("fsync'd file {name}: {e}")),
            }
        }
        for (s, st) in m.slots.iter().enumerate() {
            let name = m.slot_name(s);
            let p = mnt.join(&name);
            match st {
                State::Synced { sha, len } => match fs::read(&p) {
                    Ok(d) if d.len() as u64 == *len && sha256_hex(&d) == *sha => out.exact += 1,
                    Ok(d) => problems.push(format!(
                        "fsync'd slot {name}: {} bytes (want {len}), content differs",
                        d.len()
                    )),
                    Err(e) => problems.push(format!("fsync'd slot {name}: {e}")),
                },
                State::Absent | State::Dirty => {
                    if !p.exists() {
                        if matches!(st, State::Absent) {
                            continue;
                        }
                        out.dirty_ok += 1;
                        continue;
                    }
                    if matches!(st, State::Absent) {
                        problems.push(format!(
                            "{name} exists but its unlink/rename-away completed before the kill"
                        ));
                        continue;
                    }
                    match read_blocks(&p) {
                        Ok((_, eio, pieces)) => {
                            for (off, piece) in pieces {
                                if let Err(e) = check_records(&piece, off, started) {
                                    problems
                                        .push(format!("{name}: WRONG DATA (never written): {e}"));
                                    break;
                                }
                            }
                            if eio > 0 {
                                out.eio_blocks += eio;
                                out.eio_files.push(name.clone());
                            } else {
                                out.dirty_ok += 1;
                            }
                        }
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
    }
    // Every directory lists, and nothing outside the model appears in the writers' dirs.
    for e in walk(mnt) {
        if fs::symlink_metadata(&e)
            .map(|m| m.is_dir())
            .unwrap_or(false)
            && let Err(err) = fs::read_dir(&e).and_then(|mut d| d.try_for_each(|x| x.map(|_| ())))
        {
            problems.push(format!("directory {} does not list: {err}", e.display()));
        }
    }
    problems
}

fn check_metadata(backing: &Path) -> Vec<String> {
    use cmkfs::meta_copies::{CopyState, Record, load, read_copy};
    let mut p = Vec::new();
    let meta = backing.join(".cmkfs");
    for record in [Record::VolumeConfig, Record::KeyStore] {
        // Each copy is replaced atomically: a kill leaves it old or new, never partial.
        for n in [1, 2] {
            if let CopyState::Damaged(why) = read_copy(&meta, record, n, None) {
                p.push(format!(
                    "copy {n} of the {} {why} after the kill",
                    record.label()
                ));
            }
        }
        let l = match load(&meta, record, None, false) {
            Ok(l) => l,
            Err(e) => {
                p.push(format!(
                    "no valid copy of the {} after the kill: {e}",
                    record.label()
                ));
                continue;
            }
        };
        match record {
            Record::VolumeConfig => {
                if let Err(e) = cmkfs::format::VolumeConfig::parse(&l.content) {
                    p.push(format!("volume.json does not parse after the kill: {e}"));
                }
            }
            Record::KeyStore => match cmkfs::format::KeyStore::parse(&l.content) {
                Ok(ks) if ks.current(0).is_some() => {}
                Ok(_) => p.push("keystore.json has no data key for scope 0".into()),
                Err(e) => p.push(format!("keystore.json does not parse after the kill: {e}")),
            },
        }
    }
    p
}

/// The newest data-key epoch of scope 0 in the best copy of the key store.
fn current_epoch(backing: &Path) -> u32 {
    let l = cmkfs::meta_copies::load(
        &backing.join(".cmkfs"),
        cmkfs::meta_copies::Record::KeyStore,
        None,
        false,
    )
    .unwrap();
    cmkfs::format::KeyStore::parse(&l.content)
        .unwrap()
        .current(0)
        .unwrap()
        .epoch
}

/// Removes (through the mount) the files that came back with EIO so the next round starts from
/// readable files; their slots become absent.
fn drop_damaged(mnt: &Path, models: &mut [WriterModel], eio_files: &[String]) {
    for m in models.iter_mut() {
        for s in 0..SLOTS {
            let name = m.slot_name(s);
            if eio_files.contains(&name) {
                fs::remove_file(mnt.join(&name))
                    .unwrap_or_else(|e| panic!("unlink damaged {name}: {e}"));
                m.slots[s] = State::Absent;
                m.slot_obj[s] = None;
            }
        }
    }
}

/// After verification a dirty slot holds whatever survived: re-read it so the next round
/// knows its content (exact) or absence.
fn settle(mnt: &Path, models: &mut [WriterModel]) {
    for m in models.iter_mut() {
        for s in 0..SLOTS {
            let p = mnt.join(m.slot_name(s));
            match fs::read(&p) {
                Ok(d) => {
                    if let State::Dirty = m.slots[s] {
                        // unknown object: appends keep using the old tag only if records say so
                        m.slot_obj[s] = d
                            .get(4..8)
                            .map(|t| (u32::from_le_bytes(t.try_into().unwrap()), 0));
                    }
                    m.slots[s] = State::Synced {
                        sha: sha256_hex(&d),
                        len: d.len() as u64,
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    m.slots[s] = State::Absent;
                    m.slot_obj[s] = None;
                }
                Err(e) => panic!("settle {}: {e}", p.display()),
            }
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_fsynced() {
    let iters = crash_iters();
    let seed = seed_from_env(0xC8A5);
    let mut rng = Rng::new(seed);
    let mut v = TestVolume::init_only();
    let mut models: Vec<WriterModel> = (0..WRITERS).map(WriterModel::new).collect();
    let started = Arc::new(Mutex::new(HashSet::new()));
    let mut totals = Verify::default();
    let mut rotations_ok = 0usize;
    let mut report = BTreeMap::new();
    for iter in 0..iters {
        let foreground = iter % 2 == 1;
        let mut child = None;
        let pid = if foreground {
            let c = spawn_foreground(&v);
            let pid = c.id();
            child = Some(c);
            pid
        } else {
            v.mount();
            background_pid(&v.mnt())
        };
        let sh = Arc::new(Shared {
            mnt: v.mnt(),
            started: Mutex::new(std::mem::take(&mut *started.lock().unwrap())),
            stop: AtomicBool::new(false),
            errors: Mutex::new(Vec::new()),
        });
        let mut handles = Vec::new();
        for (i, mut m) in std::mem::take(&mut models).into_iter().enumerate() {
            let sh = sh.clone();
            let s = seed ^ ((iter as u64) << 20) ^ i as u64;
            handles.push(std::thread::spawn(move || {
                writer(&sh, &mut m, s);
                m
            }));
        }
        // A key-store update may be in flight at the kill too.
        let rot = {
            let sh = sh.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                while !sh.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(150));
                    let o = run(cmkfs()
                        .arg("key")
                        .arg("rotate")
                        .arg(&sh.mnt)
                        .arg("--data-key"));
                    if o.success() {
                        ok += 1;
                    } else if !sh.stop.load(Ordering::SeqCst) {
                        sh.errors
                            .lock()
                            .unwrap()
                            .push(format!("key rotate --data-key failed: {}", o.stderr.trim()));
                    }
                }
                ok
            })
        };
        let delay = rng.range(100, 1500);
        std::thread::sleep(Duration::from_millis(delay));
        sh.stop.store(true, Ordering::SeqCst);
        // SAFETY: kill(2) on the daemon's pid.
        assert_eq!(
            unsafe { libc::kill(pid as i32, libc::SIGKILL) },
            0,
            "kill {pid}"
        );
        models = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect();
        rotations_ok += rot.join().unwrap();
        if let Some(mut c) = child.take() {
            c.wait().unwrap();
        } else {
            let start = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let errors = sh.errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "round {iter}: errors before the kill: {errors:#?}"
        );
        *started.lock().unwrap() = std::mem::take(&mut *sh.started.lock().unwrap());

        // The kernel mount is dead now (ENOTCONN); detach it and mount again at once.
        let meta_problems = check_metadata(&v.backing());
        assert!(meta_problems.is_empty(), "round {iter}: {meta_problems:#?}");
        force_unmount(&v.mnt());
        v.forget_mounted();
        assert!(
            !is_mounted(&v.mnt()),
            "stale mount still there after fusermount3 -uz"
        );
        v.mount();
        let mut r = Verify::default();
        let st = started.lock().unwrap().clone();
        let problems = verify(&v.mnt(), &models, &st, &mut r);
        assert!(
            problems.is_empty(),
            "round {iter} (killed after {delay} ms): {problems:#?}"
        );
        // At most the blocks in flight: one operation per writer, a few blocks each.
        assert!(
            r.eio_blocks <= 4 * WRITERS,
            "round {iter}: {} EIO blocks in {:?}",
            r.eio_blocks,
            r.eio_files
        );
        eprintln!(
            "round {iter}: killed {} daemon {pid} after {delay} ms; {} exact, {} in-flight readable, {} EIO blocks {:?}",
            if foreground {
                "foreground"
            } else {
                "background"
            },
            r.exact,
            r.dirty_ok,
            r.eio_blocks,
            r.eio_files
        );
        totals.exact += r.exact;
        totals.dirty_ok += r.dirty_ok;
        totals.eio_blocks += r.eio_blocks;
        drop_damaged(&v.mnt(), &mut models, &r.eio_files);
        settle(&v.mnt(), &mut models);
        v.umount();
    }
    report.insert("rounds", iters);
    report.insert("exact", totals.exact);
    report.insert("in_flight_readable", totals.dirty_ok);
    report.insert("eio_blocks", totals.eio_blocks);
    report.insert("key_rotations", rotations_ok);
    eprintln!("crash summary: {report:?}");
}

/// After a SIGKILL the kernel mount is left dead (ENOTCONN). `cmkfs mount` on it must either
/// clean it up and mount, or say what is wrong (a stale mount, how to clear it) in one line.
#[test]
fn mount_after_sigkill_cleans_up_or_explains_stale_mount() {
    let mut v = TestVolume::new();
    fs::write(v.p("before"), b"kept").unwrap();
    let pid = background_pid(&v.mnt());
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = fs::metadata(v.mnt()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "dead mount: {e}");
    v.forget_mounted();
    let o = run(&mut v.mount_cmd());
    if o.success() {
        assert!(is_mounted(&v.mnt()));
        assert_eq!(fs::read(v.p("before")).unwrap(), b"kept");
        run_ok(cmkfs().arg("umount").arg(v.mnt()));
        return;
    }
    let err = o.stderr.trim();
    let lines: Vec<&str> = err.lines().collect();
    let mnt = v.mnt().display().to_string();
    let explains = err.contains(&mnt)
        && (err.contains("not connected")
            || err.contains("stale")
            || err.contains("crashed")
            || err.contains("dead"))
        && (err.contains("umount") || err.contains("unmount") || err.contains("fusermount"));
    force_unmount(&v.mnt());
    assert!(
        lines.len() == 1 && lines[0].starts_with("cmkfs: ") && explains,
        "cmkfs mount on a stale (ENOTCONN) mount neither cleaned it up nor explained it: {err:?}"
    );
    // And after the explained cleanup it mounts at once.
    v.mount();
    assert_eq!(fs::read(v.p("before")).unwrap(), b"kept");
}

/// Key rotations back to back (each rewrites both key-store copies), SIGKILL of the daemon at
/// a random moment: a complete, valid copy always remains, it holds every rotation that was
/// confirmed, and the volume mounts again with its files intact.
#[test]
fn sigkill_during_key_rotations_always_leaves_a_valid_key_store_copy() {
    let seed = seed_from_env(0x5EED);
    let mut rng = Rng::new(seed);
    let mut v = TestVolume::new();
    fs::write(v.p("kept"), b"kept across kills").unwrap();
    v.umount();
    let mut confirmed = 0u32;
    let rounds = crash_iters().max(8);
    for round in 0..rounds {
        v.mount();
        let pid = background_pid(&v.mnt());
        let stop = Arc::new(AtomicBool::new(false));
        let rot = {
            let (stop, mnt) = (stop.clone(), v.mnt());
            std::thread::spawn(move || {
                let mut ok = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let o = run(cmkfs().arg("key").arg("rotate").arg(&mnt).arg("--data-key"));
                    if o.success() {
                        ok += 1;
                    }
                }
                ok
            })
        };
        std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
        // SAFETY: kill(2) on the daemon's pid.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        stop.store(true, Ordering::SeqCst);
        confirmed += rot.join().unwrap();
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let problems = check_metadata(&v.backing());
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        assert!(
            current_epoch(&v.backing()) >= confirmed,
            "round {round}: a confirmed rotation was lost ({} < {confirmed})",
            current_epoch(&v.backing())
        );
        force_unmount(&v.mnt());
        v.forget_mounted();
    }
    eprintln!("{rounds} kills, {confirmed} rotations confirmed");
    v.mount();
    assert_eq!(fs::read(v.p("kept")).unwrap(), b"kept across kills");
}

/// `key set-cmk` / `key remove-cmk` (each rewrites every record and both key-store copies)
/// killed at random moments: a valid copy always remains, every data key in it unwraps
/// (`fsck --repair` exits 0), and the volume still reads.
#[test]
fn sigkill_during_cmk_changes_always_leaves_a_valid_key_store_copy() {
    use kv_emulator::Emulator;
    let seed = seed_from_env(0xC3C3);
    let mut rng = Rng::new(seed);
    let emu = Emulator::start();
    emu.create_rsa_key("kek");
    let mut v = TestVolume::new();
    fs::write(v.p("kept"), b"kept across kills").unwrap();
    v.umount();
    emu.write_ca_file(v.root().join("ca.pem")).unwrap();
    fs::write(v.root().join("token"), "test-token\n").unwrap();
    let kv: Vec<String> = vec![
        "--azure-credential".into(),
        format!("access-token-file:{}", v.root().join("token").display()),
        "--ca-file".into(),
        v.root().join("ca.pem").display().to_string(),
        "--no-verify-challenge-resource".into(),
        "--key-vault-timeout".into(),
        "5".into(),
    ];
    let url = format!("{}keys/kek", emu.url());
    // How long one change takes when it runs to the end: kills land anywhere in 0..1.5x that.
    let t = Instant::now();
    for sub in [vec!["set-cmk", "--cmk", url.as_str()], vec!["remove-cmk"]] {
        run_ok(
            cmkfs()
                .arg("key")
                .args(&sub)
                .arg(v.backing())
                .arg("--service-key")
                .arg(v.key())
                .args(&kv),
        );
    }
    let full = (t.elapsed().as_millis() as u64 / 2).max(2);
    let rounds = crash_iters().max(8) * 2;
    let mut killed = 0;
    for round in 0..rounds {
        let has_cmk = read_record(&v.backing(), cmkfs::meta_copies::Record::KeyStore)
            .get("cmk")
            .is_some();
        let mut c = cmkfs();
        c.arg("key");
        if has_cmk {
            c.arg("remove-cmk");
        } else {
            c.arg("set-cmk").arg("--cmk").arg(&url);
        }
        c.arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .args(&kv)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.range(0, full * 3 / 2)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let problems = check_metadata(&v.backing());
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        let o = run(cmkfs()
            .arg("fsck")
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .arg("--repair")
            .args(&kv));
        assert_eq!(
            o.status.code(),
            Some(0),
            "round {round}: {}\n{}",
            o.stdout,
            o.stderr
        );
    }
    eprintln!("{rounds} rounds, {killed} CMK changes killed in flight (one takes {full} ms)");
    v.opts = Vec::new();
    let mut m = v.mount_cmd();
    m.args(&kv);
    run_ok(&mut m);
    let got = fs::read(v.p("kept"));
    run_ok(cmkfs().arg("umount").arg(v.mnt()));
    assert_eq!(got.unwrap(), b"kept across kills");
}
