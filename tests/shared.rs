//! Shared mode on a real distributed filesystem: two daemons ("hosts") on two GlusterFS mounts
//! of one volume (`common::gluster`). Close-to-open consistency, concurrent writers to one
//! file and appenders to their own files (checked against a model), a rename over a file the
//! other host has open, key rotations and a customer-managed key re-wrap taken in by the other
//! host without a remount, revocation seen by both, a killed daemon, host leases, and a
//! non-shared volume that still admits one daemon.

mod common;

use common::gluster::SharedVolume;
use common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn shared() -> Vec<String> {
    vec!["--shared".into()]
}

/// No integrity error was logged by either daemon (another host's work is not tampering).
fn assert_no_integrity_errors(v: &SharedVolume) {
    for (h, tag) in v.hosts.iter().zip(["A", "B"]) {
        let bad: Vec<String> = h
            .log()
            .lines()
            .filter(|l| l.contains(" ERROR ") && !l.contains("customer-managed key revoked"))
            .map(str::to_string)
            .collect();
        assert!(bad.is_empty(), "host {tag} logged errors: {bad:#?}");
    }
}

/// Waits up to `limit` for `cond`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn close_to_open_and_concurrent_writers_across_hosts() {
    let mut v = SharedVolume::init("c2o", &shared());
    v.mount(0);
    v.mount(1);
    let (a, b) = (&v.hosts[0], &v.hosts[1]);

    // Written and closed on A, opened on B: A's bytes and size. Then rewritten in place.
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(a.p("doc"), &data).unwrap();
    assert_eq!(fs::read(b.p("doc")).unwrap(), data);
    let f = open_rw(&a.p("doc"));
    f.write_all_at(b"REWRITTEN", 4090).unwrap();
    drop(f);
    let mut want = data.clone();
    want[4090..4099].copy_from_slice(b"REWRITTEN");
    assert_eq!(fs::read(b.p("doc")).unwrap(), want, "after A's rewrite");
    // Directory listings: a name made on B is seen on A.
    fs::create_dir(b.p("from-b")).unwrap();
    fs::write(b.p("from-b/x"), b"x").unwrap();
    assert!(eventually(Duration::from_secs(3), || a
        .p("from-b/x")
        .exists()));

    // Concurrent: each host writes 4 KiB-unaligned ranges of its own half of one file (blocks
    // at the boundary are shared) and appends to a file of its own, for CMKFS_SHARED_SECS.
    const N: usize = 400_000;
    fs::write(a.p("shared.bin"), vec![0u8; N]).unwrap();
    let secs: u64 = std::env::var("CMKFS_SHARED_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let model = Arc::new(Mutex::new(vec![0u8; N]));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for (i, h) in v.hosts.iter().enumerate() {
        let (file, log) = (h.p("shared.bin"), h.p(&format!("appends-{i}")));
        let model = model.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(7 + i as u64);
            let f = open_rw(&file);
            let mut appended = Vec::new();
            let mut app = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let (lo, hi) = if i == 0 { (0, N / 2) } else { (N / 2, N) };
            let mut n = 0;
            while Instant::now() < stop {
                let len = rng.range(1, 9000) as usize;
                let off = rng.range(lo as u64, (hi - len) as u64) as usize;
                let bytes = rng.bytes(len);
                // The model is updated under its lock with the write, so it is exact.
                let mut m = model.lock().unwrap();
                f.write_all_at(&bytes, off as u64).unwrap();
                m[off..off + len].copy_from_slice(&bytes);
                drop(m);
                let line_len = rng.range(1, 300) as usize;
                let line = rng.bytes(line_len);
                app.write_all(&line).unwrap();
                appended.extend_from_slice(&line);
                n += 1;
            }
            (n, appended)
        }));
    }
    let results: Vec<(u64, Vec<u8>)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let model = model.lock().unwrap().clone();
    for h in &v.hosts {
        assert_bytes_eq(&fs::read(h.p("shared.bin")).unwrap(), &model, "shared.bin");
        for (i, (_, appended)) in results.iter().enumerate() {
            assert_bytes_eq(
                &fs::read(h.p(&format!("appends-{i}"))).unwrap(),
                appended,
                "appends",
            );
        }
    }
    eprintln!(
        "writes per host in {secs} s: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(results.iter().all(|r| r.0 > 10), "both hosts wrote");
    assert_no_integrity_errors(&v);
}

#[test]
fn rename_over_a_file_the_other_host_has_open() {
    let mut v = SharedVolume::init("rename", &shared());
    v.mount(0);
    v.mount(1);
    let (a, b) = (&v.hosts[0], &v.hosts[1]);
    fs::write(a.p("config.json"), b"old content".repeat(1000)).unwrap();
    let mut open_on_b = fs::File::open(b.p("config.json")).unwrap();
    let mut first = [0u8; 11];
    open_on_b.read_exact(&mut first).unwrap();
    fs::write(a.p("config.json.tmp"), b"new content").unwrap();
    fs::rename(a.p("config.json.tmp"), a.p("config.json")).unwrap();
    // B's open descriptor keeps reading the old file; a fresh open on B sees the new one.
    let mut rest = Vec::new();
    open_on_b.seek(SeekFrom::Start(0)).unwrap();
    open_on_b.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"old content".repeat(1000));
    assert!(eventually(Duration::from_secs(3), || fs::read(
        b.p("config.json")
    )
    .map(|c| c == b"new content")
    .unwrap_or(false)));
    assert_no_integrity_errors(&v);
}

#[test]
fn hosts_are_listed_and_a_non_shared_volume_admits_one_daemon() {
    let mut v = SharedVolume::init("hosts", &shared());
    v.mount(0);
    v.mount(1);
    let o = run_ok(
        cmkfs()
            .args(["volume", "hosts"])
            .arg(&v.hosts[0].backing)
            .arg("--json"),
    );
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(j["shared"], true);
    let hosts = j["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{j}");
    let mnts: Vec<&str> = hosts
        .iter()
        .map(|h| h["mountpoint"].as_str().unwrap())
        .collect();
    for h in &v.hosts {
        assert!(mnts.contains(&h.mnt.to_str().unwrap()), "{j}");
    }
    assert!(
        hosts
            .iter()
            .all(|h| h["stale"] == false && h["pid"].as_u64().is_some())
    );
    // `cmkfs status` of either daemon lists both.
    let st = run_ok(cmkfs().arg("status").arg(&v.hosts[1].mnt).arg("--json"));
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["shared"], true, "{st}");
    assert_eq!(st["hosts"].as_array().map(|h| h.len()), Some(2), "{st}");
    let text = run_ok(cmkfs().arg("status").arg(&v.hosts[0].mnt)).stdout;
    assert!(
        text.contains("shared mode:") && text.contains(v.hosts[1].mnt.to_str().unwrap()),
        "{text}"
    );
    // Shared mode cannot be turned off while mounted; it can once both are unmounted.
    let o = run(cmkfs()
        .args(["volume", "set-shared"])
        .arg(&v.hosts[0].backing)
        .arg("off"));
    assert!(
        !o.success() && o.stderr.contains("mounted in shared mode"),
        "{}",
        o.stderr
    );
    v.umount(0);
    v.umount(1);
    run_ok(
        cmkfs()
            .args(["volume", "set-shared"])
            .arg(&v.hosts[0].backing)
            .arg("off"),
    );
    // Not shared: the second daemon is refused, naming the first.
    v.mount(0);
    let o = run(&mut v.hosts[1].mount_cmd(&v.key()));
    assert!(
        !o.success() && o.stderr.contains("already mounted"),
        "{}",
        o.stderr
    );
    // fsck --shared refuses a mounted volume that is not shared.
    let (code, j, stderr) = fsck_shared(&v, &[]);
    assert_eq!(code, 2, "{j}");
    assert!(stderr.contains("not a shared volume"), "{stderr}");
}

#[test]
fn a_killed_daemon_leaves_the_other_host_serving_and_is_remountable() {
    let mut v = SharedVolume::init("kill", &shared());
    v.mount(0);
    v.mount(1);
    let st = run_ok(cmkfs().arg("status").arg(&v.hosts[0].mnt).arg("--json"));
    let pid = serde_json::from_str::<serde_json::Value>(&st.stdout).unwrap()["pid"]
        .as_u64()
        .unwrap() as i32;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (p, stop) = (v.hosts[0].p("being-written"), stop.clone());
        std::thread::spawn(move || {
            let mut f = fs::File::create(p).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if f.write_all(&[b'w'; 5000]).is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    // B keeps serving, reads what A wrote (whole blocks of 'w'), and writes.
    let b = &v.hosts[1];
    // The kill may have cut A's last append short: its final blocks then read EIO (a torn
    // block, never wrong data; docs/reliability.md); everything before is A's bytes.
    let torn = read_with_torn_tail(&b.p("being-written"), b'w', 3);
    fs::write(b.p("after-kill"), b"b works").unwrap();
    assert_eq!(fs::read(b.p("after-kill")).unwrap(), b"b works");
    // A mounts again (its stale mount is cleared, its dead lease replaced).
    force_unmount(&v.hosts[0].mnt);
    v.hosts[0].mounted = false;
    v.mount(0);
    assert_eq!(fs::read(v.hosts[0].p("after-kill")).unwrap(), b"b works");
    let o = run_ok(
        cmkfs()
            .args(["volume", "hosts"])
            .arg(&v.hosts[0].backing)
            .arg("--json"),
    );
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        j["hosts"].as_array().unwrap().len(),
        2,
        "dead lease gone: {j}"
    );
    assert_no_integrity_errors_but(&v, torn > 0);
}

/// Reads `p` by 4 KiB block: every block holds only `byte`, except that up to `tail` final
/// blocks may read `EIO` (torn by a kill mid-write). Returns how many did.
fn read_with_torn_tail(p: &Path, byte: u8, tail: u64) -> u64 {
    let f = fs::File::open(p).unwrap();
    let size = f.metadata().unwrap().len();
    let blocks = size.div_ceil(4096);
    let mut torn = 0;
    for blk in 0..blocks {
        let len = 4096.min(size - blk * 4096) as usize;
        let mut buf = vec![0u8; len];
        match f.read_exact_at(&mut buf, blk * 4096) {
            Ok(()) => assert!(
                buf.iter().all(|c| *c == byte),
                "block {blk}: not only {byte}"
            ),
            Err(e) if e.raw_os_error() == Some(libc::EIO) && blk + tail >= blocks => torn += 1,
            Err(e) => panic!("block {blk} of {blocks}: {e}"),
        }
    }
    if torn > 0 {
        eprintln!("{torn} final block(s) torn by the kill read EIO");
    }
    torn
}

/// The data-key epoch in the header of the backing file of a new file `name`-N (in the volume
/// root) made on `host`.
fn epoch_of_new_file(v: &SharedVolume, host: usize, name: &str) -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed));
    let before = backing_files(&v.hosts[host].backing);
    fs::write(v.hosts[host].p(&name), b"x").unwrap();
    let p = new_entry(&v.hosts[host].backing, &before);
    let bytes = fs::read(&p).unwrap();
    let h = cmkfs::format::FileHeader::decode(&bytes[..cmkfs::format::HEADER_LEN]).unwrap();
    h.key.epoch as u64
}

#[test]
fn key_rotations_and_cmk_rewrap_on_one_host_are_taken_in_by_the_other() {
    let emu = kv_emulator::Emulator::start();
    emu.create_rsa_key("kek");
    let dir = tempfile::tempdir().unwrap();
    emu.write_ca_file(dir.path().join("ca.pem")).unwrap();
    fs::write(dir.path().join("token"), "t").unwrap();
    let kv: Vec<String> = vec![
        "--azure-credential".into(),
        format!("access-token-file:{}", dir.path().join("token").display()),
        "--ca-file".into(),
        dir.path().join("ca.pem").display().to_string(),
        "--no-verify-challenge-resource".into(),
    ];
    let url = format!("{}keys/kek", emu.url());
    let mut init = shared();
    init.extend(["--cmk".into(), url.clone()]);
    init.extend(kv.clone());
    let mut v = SharedVolume::init("keys", &init);
    for h in &mut v.hosts {
        h.extra = kv.clone();
        h.extra
            .extend(["--revocation-check-interval".into(), "1".into()]);
    }
    v.mount(0);
    v.mount(1);
    fs::write(v.hosts[0].p("before"), b"written before the rotations").unwrap();
    assert_eq!(epoch_of_new_file(&v, 1, "b-first"), 0);

    // A starts a new data-key epoch: B's new files use it without a remount.
    run_ok(
        cmkfs()
            .args(["key", "rotate"])
            .arg(&v.hosts[0].mnt)
            .arg("--data-key"),
    );
    assert!(
        eventually(Duration::from_secs(5), || epoch_of_new_file(
            &v, 1, "b-probe"
        ) == 1),
        "B's new files did not move to epoch 1"
    );

    // A new version of the CMK; A re-wraps every data key to it; then the old version is
    // disabled. B reads old and new files through the new wraps (its cache was flushed when it
    // took in the new store), with no remount.
    let old_version = emu.latest_version("kek").unwrap();
    emu.rotate_key("kek").unwrap();
    run_ok(cmkfs().args(["key", "rotate"]).arg(&v.hosts[0].mnt));
    let b = &v.hosts[1];
    assert!(eventually(Duration::from_secs(5), || b
        .log()
        .contains("took in the key store as changed by another host")));
    emu.disable_version("kek", &old_version).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fs::read(b.p("before")).unwrap(),
        b"written before the rotations"
    );
    fs::write(b.p("after"), b"new").unwrap();
    assert_eq!(fs::read(v.hosts[0].p("after")).unwrap(), b"new");

    // Revocation: both hosts' own watchers see it within a check interval.
    emu.disable_key("kek").unwrap();
    for h in &v.hosts {
        let p = h.p("before");
        assert!(
            eventually(Duration::from_secs(5), || errno(&fs::read(&p))
                == Some(libc::EKEYREVOKED)),
            "{} did not see the revocation",
            h.mnt.display()
        );
    }
    emu.enable_key("kek").unwrap();
    for h in &v.hosts {
        let p = h.p("before");
        assert!(eventually(Duration::from_secs(5), || fs::read(&p).is_ok()));
    }
    // Every key event is in each host's audit log, chain intact.
    for h in &v.hosts {
        run_ok(
            cmkfs()
                .args(["audit", "verify"])
                .arg(&h.audit)
                .current_dir(Path::new("/")),
        );
    }
    assert_no_integrity_errors(&v);
}

fn lockf(f: &fs::File, cmd: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor.
    cvt(unsafe { libc::lockf(f.as_raw_fd(), cmd, 0) }).map(|_| ())
}

fn flock(f: &fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor.
    cvt(unsafe { libc::flock(f.as_raw_fd(), op) }).map(|_| ())
}

#[test]
fn fcntl_and_flock_locks_hold_across_hosts() {
    let mut v = SharedVolume::init("locks", &shared());
    v.mount(0);
    v.mount(1);
    let (a, b) = (&v.hosts[0], &v.hosts[1]);
    fs::write(a.p("lk"), b"x").unwrap();
    // POSIX (fcntl) locks: A holds, B is refused, A's close releases.
    let fa = open_rw(&a.p("lk"));
    let fb = open_rw(&b.p("lk"));
    lockf(&fa, libc::F_LOCK).unwrap();
    assert_eq!(errno(&lockf(&fb, libc::F_TLOCK)), Some(libc::EAGAIN));
    drop(fa);
    assert!(eventually(Duration::from_secs(3), || lockf(
        &fb,
        libc::F_TLOCK
    )
    .is_ok()));
    drop(fb);
    // flock: the same across hosts; a waiting LOCK_EX on B gets it once A unlocks.
    let fa = open_rw(&a.p("lk"));
    let fb = open_rw(&b.p("lk"));
    flock(&fa, libc::LOCK_EX).unwrap();
    assert_eq!(
        errno(&flock(&fb, libc::LOCK_EX | libc::LOCK_NB)),
        Some(libc::EWOULDBLOCK)
    );
    let waiter = std::thread::spawn(move || {
        flock(&fb, libc::LOCK_EX).unwrap();
        Instant::now()
    });
    std::thread::sleep(Duration::from_millis(300));
    let unlocked = Instant::now();
    flock(&fa, libc::LOCK_UN).unwrap();
    assert!(waiter.join().unwrap() >= unlocked, "B waited for A");
}

/// `cmkfs fsck --shared BACKING --json` of `v` (through host A's view of the backing
/// directory): exit code and report.
fn fsck_shared(v: &SharedVolume, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let o = run(cmkfs()
        .args(["fsck", "--shared"])
        .arg(&v.hosts[0].backing)
        .arg("--service-key")
        .arg(v.key())
        .arg("--json")
        .args(extra));
    let j = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("fsck --json output ({e}): {}\n{}", o.stdout, o.stderr));
    (o.status.code().unwrap_or(-1), j, o.stderr)
}

/// Host A's loop of what other hosts legitimately do while a check runs: whole files written
/// under a temporary name and renamed into place, in-place writes growing a sparse file,
/// punched holes, long names made and renamed, directories made and removed. Returns the
/// number of rounds; panics on any error.
fn churn(dir: &Path, stop: &AtomicBool, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(dir).unwrap();
    let big = open_rw_create(&dir.join("big"));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (tmp, dst) = (
            dir.join(format!("t-{}.tmp", i % 4)),
            dir.join(format!("t-{}", i % 4)),
        );
        let len = rng.range(1, 40_000) as usize;
        fs::write(&tmp, rng.bytes(len)).unwrap();
        fs::rename(&tmp, &dst).unwrap();
        let len = rng.range(1, 9000) as usize;
        big.write_all_at(&rng.bytes(len), rng.range(0, 300_000))
            .unwrap();
        if i % 7 == 3 {
            let off = rng.range(0, 60) * 4096;
            fallocate(
                &big,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                8192,
            )
            .unwrap();
        }
        if i % 5 == 1 {
            let long = |k: u64| dir.join(format!("{}-{k}", "L".repeat(180)));
            fs::write(long(i % 3), rng.bytes(5000)).unwrap();
            fs::rename(long(i % 3), long(3 + i % 3)).unwrap();
        }
        if i % 11 == 2 {
            let d = dir.join(format!("dir-{i}"));
            fs::create_dir(&d).unwrap();
            fs::write(d.join("x"), b"x").unwrap();
            fs::remove_file(d.join("x")).unwrap();
            fs::remove_dir(&d).unwrap();
        }
        i += 1;
    }
    i
}

fn open_rw_create(p: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap()
}

/// Host B's loop: reads what A's loop writes; only ENOENT (a name between its removal and the
/// rename into place) is allowed. Returns the number of files read.
fn read_along(dir: &Path, stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(rd) = fs::read_dir(dir) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        for e in rd.flatten() {
            match fs::read(e.path()) {
                Ok(_) => n += 1,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EISDIR)) => {}
                Err(err) => panic!("B reading {}: {err}", e.path().display()),
            }
        }
    }
    n
}

#[test]
fn fsck_shared_checks_a_volume_other_hosts_are_changing() {
    let mut v = SharedVolume::init("fsck", &shared());
    v.mount(0);
    v.mount(1);
    // Quiet files nobody touches during the check; one will be damaged.
    let before = backing_files(&v.hosts[0].backing);
    let quiet: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 253) as u8).collect();
    fs::write(v.hosts[0].p("quiet"), &quiet).unwrap();
    let quiet_backing = new_entry(&v.hosts[0].backing, &before);
    fs::create_dir(v.hosts[1].p("still")).unwrap();
    fs::write(v.hosts[1].p("still/other"), b"other").unwrap();
    std::os::unix::fs::symlink("quiet", v.hosts[1].p("link")).unwrap();
    // Leftovers of another host's crash: temporary files of cmkfs.
    fs::write(v.hosts[0].backing.join(".tmp.xchg.0123456789abcdef"), b"x").unwrap();
    fs::write(
        v.hosts[0].backing.join(".cmkfs/.tmp.0123456789abcdef"),
        b"{",
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (da, db) = (v.hosts[0].p("busy"), v.hosts[1].p("busy"));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || churn(&da, &stop, 11))
    };
    std::thread::sleep(Duration::from_millis(500));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || read_along(&db, &stop))
    };
    // Exclusive work is refused while both hosts are mounted, naming them.
    let (code, j, stderr) = fsck_shared(&v, &["--repair"]);
    assert_eq!(code, 2, "{j}");
    assert!(
        stderr.contains("--repair is refused") && stderr.contains(v.hosts[1].mnt.to_str().unwrap()),
        "{stderr}"
    );
    for round in 0..2 {
        let (code, j, stderr) = fsck_shared(&v, &[]);
        assert_eq!(code, 0, "round {round}: no false alarm: {j:#}\n{stderr}");
        assert_eq!(j["problems"].as_array().map(Vec::len), Some(0), "{j:#}");
        assert_eq!(
            j["shared"]["hosts"].as_array().map(Vec::len),
            Some(2),
            "{j}"
        );
        let in_flight: Vec<&str> = j["in_flight"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["backing_path"].as_str().unwrap())
            .collect();
        assert!(
            in_flight.contains(&".tmp.xchg.0123456789abcdef")
                && in_flight.contains(&".cmkfs/.tmp.0123456789abcdef"),
            "{j:#}"
        );
        assert!(j["summary"]["files"].as_u64().unwrap() >= 3, "{j}");
        eprintln!(
            "round {round}: {} walks, in flight: {in_flight:?}",
            j["shared"]["passes"]
        );
    }
    // A flipped ciphertext byte of the quiet file is reported, while the others keep going.
    let f = open_rw(&quiet_backing);
    let off = cmkfs::format::HEADER_LEN as u64 + 4096 + 28 + 50; // block 1
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], off).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let (code, j, _) = fsck_shared(&v, &[]);
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    let reads = reader.join().unwrap();
    assert_eq!(code, 1, "{j:#}");
    let problems = j["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "only the damaged file: {j:#}");
    assert_eq!(problems[0]["code"], "bad_blocks", "{j:#}");
    assert_eq!(problems[0]["path"], "/quiet", "{j:#}");
    assert_eq!(problems[0]["blocks"], serde_json::json!([1]), "{j:#}");
    // The human report names it too.
    let o = run(cmkfs()
        .args(["fsck", "--shared"])
        .arg(&v.hosts[0].backing)
        .arg("--service-key")
        .arg(v.key()));
    assert_eq!(o.status.code(), Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("/quiet") && o.stdout.contains("[bad_blocks]"),
        "{}",
        o.stdout
    );
    eprintln!("A's rounds during the checks: {rounds}; B's reads: {reads}");
    assert!(
        rounds > 5 && reads > 0,
        "both hosts worked: {rounds} {reads}"
    );
    // The daemons read what they serve, and B never read the damaged file.
    assert_no_integrity_errors(&v);
    assert_eq!(
        errno(&fs::read(v.hosts[1].p("quiet"))),
        Some(libc::EIO),
        "a mount refuses the damaged block too"
    );
}

/// What a writer thread wrote: the bytes every acknowledged write left, and the write in
/// flight (offset, bytes), if any.
#[derive(Default)]
struct Written {
    model: Vec<u8>,
    pending: Option<(usize, Vec<u8>)>,
}

/// Writes random ranges of `[lo, hi)` of `shared` and appends to `own` until `stop` or the
/// first error, keeping `w` exact. Returns the rounds done and the error that ended it.
fn write_loop(
    shared: &Path,
    own: &Path,
    (lo, hi): (usize, usize),
    w: &Mutex<Written>,
    own_w: &Mutex<Written>,
    stop: &AtomicBool,
    seed: u64,
) -> (u64, Option<std::io::Error>) {
    let mut rng = Rng::new(seed);
    let f = open_rw(shared);
    let mut app = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(own)
        .unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let len = rng.range(1, 9000) as usize;
        let off = rng.range(lo as u64, (hi - len) as u64) as usize;
        let bytes = rng.bytes(len);
        w.lock().unwrap().pending = Some((off, bytes.clone()));
        if let Err(e) = f.write_all_at(&bytes, off as u64) {
            return (n, Some(e));
        }
        {
            let mut g = w.lock().unwrap();
            g.model[off..off + len].copy_from_slice(&bytes);
            g.pending = None;
        }
        let line_len = rng.range(1, 3000) as usize;
        let line = rng.bytes(line_len);
        own_w.lock().unwrap().pending = Some((0, line.clone()));
        if let Err(e) = app.write_all(&line) {
            return (n, Some(e));
        }
        let mut g = own_w.lock().unwrap();
        g.model.extend_from_slice(&line);
        g.pending = None;
        drop(g);
        n += 1;
    }
    (n, None)
}

/// Reads `p` block by block (4 KiB): each block reads `model`'s bytes, or, where it meets the
/// write in flight `pending`, the old or the new bytes byte by byte, or `EIO` (a block torn by
/// the kill). Returns the blocks that gave `EIO`. Past the model's end, only the pending
/// append's bytes may follow.
fn check_against(p: &Path, w: &Written, append: bool, upto: Option<usize>) -> Vec<u64> {
    let f = fs::File::open(p).unwrap();
    let file_size = f.metadata().unwrap().len() as usize;
    let (pend_lo, pend) = match &w.pending {
        Some((_, b)) if append => (w.model.len(), b.as_slice()),
        Some((off, b)) => (*off, b.as_slice()),
        None => (0, &[][..]),
    };
    assert!(
        upto.is_some()
            || (file_size >= w.model.len() && file_size <= w.model.len().max(pend_lo + pend.len())),
        "{}: size {file_size}, model {}, pending {}+{}",
        p.display(),
        w.model.len(),
        pend_lo,
        pend.len()
    );
    let size = upto.unwrap_or(file_size);
    let mut eio = Vec::new();
    for blk in 0..size.div_ceil(4096) {
        let (lo, hi) = (blk * 4096, ((blk + 1) * 4096).min(size));
        let mut buf = vec![0u8; hi - lo];
        let in_pending = lo < pend_lo + pend.len() && hi > pend_lo;
        match f.read_exact_at(&mut buf, lo as u64) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EIO) && in_pending => {
                eio.push(blk as u64);
                continue;
            }
            Err(e) => panic!("{} block {blk}: {e}", p.display()),
        }
        for (i, got) in buf.iter().enumerate() {
            let at = lo + i;
            let old = w.model.get(at);
            let new = (at >= pend_lo && at < pend_lo + pend.len()).then(|| pend[at - pend_lo]);
            assert!(
                Some(got) == old || Some(*got) == new,
                "{} byte {at}: {got} is neither the old {old:?} nor the new {new:?}",
                p.display()
            );
        }
    }
    eio
}

#[test]
fn kill_9_of_one_host_under_load_loses_only_its_writes_in_flight() {
    let mut v = SharedVolume::init("kill-load", &shared());
    v.mount(0);
    v.mount(1);
    const N: usize = 256 * 1024;
    let initial: Vec<u8> = (0..N).map(|i| (i % 241) as u8).collect();
    fs::write(v.hosts[0].p("both.bin"), &initial).unwrap();
    let st = run_ok(cmkfs().arg("status").arg(&v.hosts[0].mnt).arg("--json"));
    let pid = serde_json::from_str::<serde_json::Value>(&st.stdout).unwrap()["pid"]
        .as_u64()
        .unwrap() as i32;
    // Each host's model of the shared file (only its own half changes).
    let shared_w: [Arc<Mutex<Written>>; 2] = std::array::from_fn(|_| {
        Arc::new(Mutex::new(Written {
            model: initial.clone(),
            pending: None,
        }))
    });
    let own_w: [Arc<Mutex<Written>>; 2] = Default::default();
    let stops = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let mut workers = Vec::new();
    for (i, h) in v.hosts.iter().enumerate() {
        // Disjoint halves of one file (no block shared), and a file of each host's own.
        let (file, own) = (h.p("both.bin"), h.p(&format!("own-{i}")));
        let (w, ow, stop) = (shared_w[i].clone(), own_w[i].clone(), stops[i].clone());
        let range = if i == 0 { (0, N / 2) } else { (N / 2, N) };
        workers.push(std::thread::spawn(move || {
            write_loop(&file, &own, range, &w, &ow, &stop, 90 + i as u64)
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    stops[0].store(true, Ordering::Relaxed);
    let (a_rounds, a_err) = workers.remove(0).join().unwrap();
    // B keeps writing, without an error, for 3 s after the kill.
    while killed_at.elapsed() < Duration::from_secs(3) {
        assert!(!workers[0].is_finished(), "B's writer stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    stops[1].store(true, Ordering::Relaxed);
    let (b_rounds, b_err) = workers.remove(0).join().unwrap();
    assert!(b_err.is_none(), "B's writes failed: {b_err:?}");
    eprintln!("rounds: A {a_rounds} (ended by {a_err:?}), B {b_rounds}");
    assert!(a_rounds > 3 && b_rounds > a_rounds, "B went on writing");

    // A mounts again.
    force_unmount(&v.hosts[0].mnt);
    v.hosts[0].mounted = false;
    v.mount(0);
    // Both read B's bytes exactly; A's only lose the write in flight at the kill.
    let (shared_a, shared_b) = (shared_w[0].lock().unwrap(), shared_w[1].lock().unwrap());
    let own_b = own_w[1].lock().unwrap();
    assert!(own_b.pending.is_none() && shared_b.pending.is_none());
    let mut torn = Vec::new();
    for h in &v.hosts {
        let got = fs::read(h.p("own-1")).unwrap();
        assert_bytes_eq(&got, &own_b.model, "B's own file");
        let f = fs::File::open(h.p("both.bin")).unwrap();
        let mut half = vec![0u8; N / 2];
        f.read_exact_at(&mut half, (N / 2) as u64).unwrap();
        assert_bytes_eq(&half, &shared_b.model[N / 2..], "B's half of both.bin");
        torn.extend(check_against(
            &h.p("both.bin"),
            &shared_a,
            false,
            Some(N / 2),
        ));
        torn.extend(check_against(
            &h.p("own-0"),
            &own_w[0].lock().unwrap(),
            true,
            None,
        ));
    }
    // fsck --shared, with both mounted: clean, unless the kill tore the block A was writing.
    let (code, j, stderr) = fsck_shared(&v, &[]);
    let problems = j["problems"].as_array().unwrap();
    if torn.is_empty() {
        assert_eq!(code, 0, "{j:#}\n{stderr}");
    } else {
        eprintln!("blocks torn by the kill (EIO, never wrong data): {torn:?}");
        assert!(
            problems.iter().all(|p| p["code"] == "bad_blocks"
                && (p["path"] == "/both.bin" || p["path"] == "/own-0")),
            "only A's blocks in flight: {j:#}"
        );
    }
    assert_no_integrity_errors_but(&v, !torn.is_empty());
}

/// `assert_no_integrity_errors`, or, when `torn` (a block torn by a kill was read), only
/// authentication failures.
fn assert_no_integrity_errors_but(v: &SharedVolume, torn: bool) {
    if !torn {
        return assert_no_integrity_errors(v);
    }
    for h in &v.hosts {
        for l in h.log().lines().filter(|l| l.contains(" ERROR ")) {
            assert!(
                l.contains("authentication") || l.contains("integrity"),
                "{l}"
            );
        }
    }
}

/// Runs `f` on a thread of its own; panics if it does not finish within `limit` (a hang).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: did not finish within {limit:?}"))
}

#[test]
fn a_lock_holder_can_write_and_the_next_holder_reads_its_bytes() {
    let mut v = SharedVolume::init("lock-write", &shared());
    v.mount(0);
    v.mount(1);
    let (pa, pb) = (v.hosts[0].p("db"), v.hosts[1].p("db"));
    fs::write(&pa, vec![b'0'; 3 * 4096]).unwrap();
    // A process holding a POSIX lock over the whole file, or an flock, writes: no wait for
    // its own lock (cmkfs's change lock is a byte of its own).
    let (pa2, pb2) = (pa.clone(), pb.clone());
    within(Duration::from_secs(30), "write under a lock", move || {
        let f = open_rw(&pa2);
        lockf(&f, libc::F_LOCK).unwrap();
        f.write_all_at(b"held-a", 0).unwrap();
        drop(f);
        let g = open_rw(&pb2);
        flock(&g, libc::LOCK_EX).unwrap();
        g.write_all_at(b"held-b", 4096).unwrap();
        flock(&g, libc::LOCK_UN).unwrap();
    });
    // A keeps the file open and has read it (its kernel caches the pages); B rewrites it
    // under a lock; once A holds the lock, it reads B's bytes, not its cached pages.
    let fa = open_rw(&pa);
    let mut buf = vec![0u8; 3 * 4096];
    fa.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..6], b"held-a");
    let fb = open_rw(&pb);
    lockf(&fb, libc::F_LOCK).unwrap();
    fb.write_all_at(&vec![b'B'; 3 * 4096], 0).unwrap();
    lockf(&fb, libc::F_ULOCK).unwrap();
    lockf(&fa, libc::F_LOCK).unwrap();
    fa.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        buf,
        vec![b'B'; 3 * 4096],
        "A read pages cached before B's change"
    );
    lockf(&fa, libc::F_ULOCK).unwrap();
    assert_no_integrity_errors(&v);
}

#[test]
fn open_o_creat_of_a_name_the_other_host_removed_creates_it() {
    let mut v = SharedVolume::init("recreate", &shared());
    v.mount(0);
    v.mount(1);
    let (pa, pb) = (v.hosts[0].p("journal"), v.hosts[1].p("journal"));
    for round in 0..5 {
        fs::write(&pa, b"old").unwrap();
        // A's kernel knows the name (cached for up to shared_timeout_ms); B removes it.
        assert!(eventually(Duration::from_secs(3), || pb.exists()));
        fs::metadata(&pa).unwrap();
        fs::remove_file(&pb).unwrap();
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&pa);
        let f = f.unwrap_or_else(|e| panic!("round {round}: open(O_CREAT) on A: {e}"));
        f.write_all_at(b"new", 0).unwrap();
        drop(f);
        assert_eq!(fs::read(&pa).unwrap(), b"new");
        assert!(eventually(Duration::from_secs(3), || fs::read(&pb)
            .map(|c| c == b"new")
            .unwrap_or(false)));
        fs::remove_file(&pa).unwrap();
    }
    assert_no_integrity_errors(&v);
}

/// Two `sqlite3` processes per host insert rows into one rollback-journal database, one
/// transaction per row, waiting for each other's locks (busy timeout).
#[test]
fn sqlite_with_two_writers_per_host_completes() {
    if !have_program("sqlite3") {
        eprintln!("NOTE: sqlite3 is not installed (scripts/test-deps.sh installs it); skipped");
        return;
    }
    const ROWS: usize = 100;
    let mut v = SharedVolume::init("sqlite", &shared());
    v.mount(0);
    v.mount(1);
    let sql = |host: usize, script: &str| {
        run(std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 60000"])
            .arg(v.hosts[host].p("t.db"))
            .arg(script))
    };
    let o = sql(0, "create table t(id integer primary key, w text, i int);");
    assert!(o.success(), "{}", o.stderr);
    let start = Instant::now();
    let mut writers = Vec::new();
    for (host, name) in [(0, "a1"), (0, "a2"), (1, "b1"), (1, "b2")] {
        let mut child = std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 60000"])
            .arg(v.hosts[host].p("t.db"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let script: String = (0..ROWS)
            .map(|i| format!("insert into t(w, i) values('{name}', {i});\n"))
            .collect();
        stdin.write_all(script.as_bytes()).unwrap();
        drop(stdin);
        writers.push((name, child));
    }
    let limit = Duration::from_secs(120);
    for (name, mut child) in writers {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sqlite3 writer {name} did not finish within {limit:?} (hung)");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success() && err.is_empty(),
            "writer {name}: {status}: {err}"
        );
    }
    eprintln!("4 sqlite3 writers x {ROWS} rows: {:?}", start.elapsed());
    let o = sql(1, "select count(*) from t; pragma integrity_check;");
    let (a, b) = common::gluster::two_hosts_dirs();
    eprintln!(
        "rows and integrity_check read on B: {:?} ({})",
        o.stdout.trim(),
        if a == b {
            "local directory"
        } else {
            "GlusterFS"
        }
    );
    if a == b {
        // A coherent backing (one local directory): every row, and a sound database.
        assert_eq!(o.stdout.trim(), format!("{}\nok", 4 * ROWS), "{}", o.stderr);
    }
    assert_no_integrity_errors(&v);
}

#[test]
fn a_key_scope_made_or_locked_on_one_host_holds_on_the_other() {
    let mut v = SharedVolume::init("scopes", &shared());
    v.mount(0);
    v.mount(1);
    let (a, b) = (&v.hosts[0], &v.hosts[1]);
    fs::create_dir(a.p("customer")).unwrap();
    // B knows the directory (it is in B's inode table) before it becomes a scope root.
    assert!(eventually(Duration::from_secs(3), || fs::read_dir(
        b.p("customer")
    )
    .map(|d| d.count() == 0)
    .unwrap_or(false)));
    let out = run_ok(
        cmkfs()
            .args(["scope", "create"])
            .arg(a.p("customer"))
            .args(["--service-key-only", "--json"]),
    );
    let scope = serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["scope"]
        .as_u64()
        .unwrap();
    // Within one check interval B writes into the scope with the scope's key: A lists and
    // reads B's file (a file under the old key would not even list on A).
    std::thread::sleep(Duration::from_millis(2500));
    fs::write(b.p("customer/from-b.txt"), b"written on B").unwrap();
    assert!(eventually(Duration::from_secs(3), || fs::read(
        a.p("customer/from-b.txt")
    )
    .map(|c| c == b"written on B")
    .unwrap_or(false)));
    let list = run_ok(cmkfs().args(["scope", "list"]).arg(&a.mnt).arg("--json"));
    let l: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let s = l["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == scope)
        .cloned()
        .unwrap();
    assert_eq!(s["files"], 1, "{s}");
    // A locks it: B refuses it too within one check interval, the open handle included.
    let mut held = fs::File::open(b.p("customer/from-b.txt")).unwrap();
    let mut buf = Vec::new();
    held.read_to_end(&mut buf).unwrap();
    run_ok(cmkfs().args(["scope", "lock"]).arg(a.p("customer")));
    assert!(eventually(Duration::from_secs(5), || errno(&fs::read(
        b.p("customer/from-b.txt")
    )) == Some(
        libc::EKEYREVOKED
    )));
    let mut again = [0u8; 4];
    assert_eq!(errno(&held.read_at(&mut again, 0)), Some(libc::EKEYREVOKED));
    fs::write(b.p("outside.txt"), b"root still works on B").unwrap();
    run_ok(cmkfs().args(["scope", "unlock"]).arg(a.p("customer")));
    assert!(eventually(Duration::from_secs(5), || fs::read(
        b.p("customer/from-b.txt")
    )
    .is_ok()));
    assert_no_integrity_errors(&v);
}

#[test]
fn a_lock_waiter_killed_while_waiting_leaves_no_lock_behind() {
    if !have_program("flock") {
        eprintln!("NOTE: flock(1) is not installed; skipped");
        return;
    }
    let mut v = SharedVolume::init("lock-kill", &shared());
    v.mount(0);
    v.mount(1);
    fs::write(v.hosts[0].p("lk"), b"x").unwrap();
    let pb = v.hosts[1].p("lk");
    assert!(eventually(Duration::from_secs(3), || pb.exists()));
    let fa = open_rw(&v.hosts[0].p("lk"));
    flock(&fa, libc::LOCK_EX).unwrap();
    // A process on B waits for the lock and is killed while it waits.
    let mut waiter = std::process::Command::new("flock")
        .arg("-x")
        .arg(&pb)
        .arg("true")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "B's waiter did not wait"
    );
    waiter.kill().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Once A unlocks, the killed waiter's lock (granted to its dying request) goes with it.
    flock(&fa, libc::LOCK_UN).unwrap();
    let start = Instant::now();
    while waiter.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the killed waiter did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let fb = open_rw(&pb);
    assert!(
        eventually(Duration::from_secs(5), || flock(
            &fb,
            libc::LOCK_EX | libc::LOCK_NB
        )
        .is_ok()),
        "a lock was left behind by the killed waiter"
    );
    flock(&fb, libc::LOCK_UN).unwrap();
    // fuser's reply to the killed request may fail (logged); nothing else may be an error.
    for h in &v.hosts {
        for l in h.log().lines().filter(|l| l.contains(" ERROR ")) {
            assert!(l.contains("Failed to send FUSE reply"), "{l}");
        }
    }
}

#[test]
fn reencryption_on_one_host_never_loses_the_other_hosts_writes() {
    let mut v = SharedVolume::init("reencrypt", &shared());
    v.mount(0);
    v.mount(1);
    let (a, b) = (&v.hosts[0], &v.hosts[1]);
    fs::write(a.p("doc"), b"v1".repeat(5000)).unwrap();
    fs::write(a.p("gone"), b"deleted elsewhere").unwrap();
    assert!(eventually(Duration::from_secs(3), || b.p("doc").exists()
        && b.p("gone").exists()));
    let on_b = fs::OpenOptions::new().write(true).open(b.p("doc")).unwrap();
    on_b.write_all_at(b"B-before", 0).unwrap();
    // A moves every file to a new data key (each backing file replaced by a new one).
    run_ok(
        cmkfs()
            .args(["key", "rotate"])
            .arg(&a.mnt)
            .arg("--data-key"),
    );
    let out = run_ok(cmkfs().arg("reencrypt").arg(&a.mnt).arg("--json"));
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(r["reencrypted"].as_u64().unwrap() >= 2, "{r}");
    // B's write before the re-encryption is in the new file.
    assert_eq!(&fs::read(a.p("doc")).unwrap()[..8], b"B-before");
    // B's next write through its old descriptor fails loudly (ESTALE), never lands in the
    // replaced file where nobody would read it; a fresh open writes, and A sees it.
    assert_eq!(
        errno(&on_b.write_all_at(b"B-after!", 100)),
        Some(libc::ESTALE)
    );
    drop(on_b);
    let fresh = fs::OpenOptions::new().write(true).open(b.p("doc")).unwrap();
    fresh.write_all_at(b"B-after!", 100).unwrap();
    drop(fresh);
    assert!(eventually(Duration::from_secs(3), || fs::read(a.p("doc"))
        .map(|d| &d[100..108] == b"B-after!")
        .unwrap_or(false)));
    // A file deleted by another host (not replaced) keeps POSIX semantics for its holder.
    let gone_on_b = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.p("gone"))
        .unwrap();
    fs::remove_file(a.p("gone")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    gone_on_b.write_all_at(b"still mine", 0).unwrap();
    let mut back = [0u8; 10];
    gone_on_b.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"still mine");
    assert_no_integrity_errors(&v);
}
