//! Stress: threads (each with a child `cat` process reading now and then) doing random
//! creates, writes (with gaps), truncates, renames, hard links, unlinks, user xattrs and reads
//! over many files, every byte checked against an in-memory model. Meanwhile the daemon's RSS
//! (`/proc/PID/status` VmRSS) is sampled and its open fds (`/proc/PID/fd`) counted; fds must
//! come back to the baseline once every file is closed, and RSS must stay flat.
//!
//! `CMKFS_STRESS_SECS` (default 20) sets the duration, `CMKFS_STRESS_THREADS` (default 4) the
//! number of threads, `CMKFS_SEED` the seed. With 60 s or more the RSS bound is the strict one
//! (growth under 10 % over the last half of the run); shorter runs report the figures and
//! assert a generous bound (50 %).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const NAMES: usize = 24;
const MAX_SIZE: u64 = 256 * 1024;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[derive(Default, Clone)]
struct Inode {
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// One thread's model: names in its directory -> inode number (model-local) -> content.
struct Model {
    names: HashMap<String, u64>,
    inodes: HashMap<u64, Inode>,
    next: u64,
}

fn status_pid(mnt: &Path) -> u32 {
    let st = run_ok(cmkfs().arg("status").arg(mnt).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    v["pid"].as_u64().expect("status --json reports pid") as u32
}

fn rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fd_targets(pid: u32) -> Vec<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .collect()
}

/// Fds of the daemon that are not directories. Directory fds follow the kernel's inode cache
/// (a FORGET closes one, e.g. after a `drop_caches` by another process), so they are no measure
/// of a leak; a leaked file handle shows up here as a backing-file fd.
fn non_dir_fd_count(pid: u32) -> usize {
    fd_targets(pid).iter().filter(|p| !p.is_dir()).count()
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn xattr_set(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    cvt(unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

fn xattr_get(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and buffer.
    let r = cvt_l(unsafe {
        libc::getxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    } as libc::c_long)?;
    buf.truncate(r as usize);
    Ok(buf)
}

fn xattr_remove(p: &Path, name: &str) -> std::io::Result<()> {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings.
    cvt(unsafe { libc::removexattr(cstr(p).as_ptr(), n.as_ptr()) }).map(|_| ())
}

fn xattr_list(p: &Path) -> std::io::Result<Vec<String>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C string and buffer.
    let r = cvt_l(
        unsafe { libc::listxattr(cstr(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
            as libc::c_long,
    )?;
    let mut v: Vec<String> = buf[..r as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|s| s.starts_with("user."))
        .collect();
    v.sort();
    Ok(v)
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    bytes_written: AtomicU64,
    bytes_checked: AtomicU64,
    xattr_ops: AtomicU64,
}

fn worker(
    dir: PathBuf,
    seed: u64,
    deadline: Instant,
    c: &Counters,
    failed: &AtomicBool,
) -> Result<(), String> {
    let mut hist = std::collections::VecDeque::new();
    worker_inner(dir, seed, deadline, c, failed, &mut hist).map_err(|e| {
        format!(
            "{e}\n  last operations of this thread (oldest first):\n    {}",
            Vec::from(hist).join("\n    ")
        )
    })
}

fn worker_inner(
    dir: PathBuf,
    seed: u64,
    deadline: Instant,
    c: &Counters,
    failed: &AtomicBool,
    hist: &mut std::collections::VecDeque<String>,
) -> Result<(), String> {
    let log = |h: &mut std::collections::VecDeque<String>, s: String| {
        if h.len() == 40 {
            h.pop_front();
        }
        h.push_back(s);
    };
    let mut rng = Rng::new(seed);
    let mut m = Model {
        names: HashMap::new(),
        inodes: HashMap::new(),
        next: 1,
    };
    let name = |i: u64| format!("f{i:02}");
    let mut held: Option<(u64, File)> = None; // a handle kept open across operations
    while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
        c.ops.fetch_add(1, Ordering::Relaxed);
        let a = name(rng.below(NAMES as u64));
        let pa = dir.join(&a);
        let op = rng.below(100);
        let ctx = |what: &str| format!("{} {what}", pa.display());
        if op < 28 {
            // write at a random offset, possibly past the end (zero gap)
            let ino = *m.names.entry(a.clone()).or_insert_with(|| {
                m.next += 1;
                m.next
            });
            let node = m.inodes.entry(ino).or_default();
            let size = node.data.len() as u64;
            let off = rng.below((size + 8192).min(MAX_SIZE));
            let len = rng
                .range(1, 48 * 1024)
                .min(MAX_SIZE - off.min(MAX_SIZE - 1)) as usize;
            let data = rng.bytes(len);
            let f = match &held {
                Some((h, f)) if *h == ino => f.try_clone().unwrap(),
                _ => OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&pa)
                    .map_err(|e| ctx(&format!("open for write: {e}")))?,
            };
            f.write_all_at(&data, off)
                .map_err(|e| ctx(&format!("pwrite {len} at {off}: {e}")))?;
            log(
                hist,
                format!(
                    "write {a} (ino {ino}, held {}) {len} at {off}, size was {size}",
                    matches!(&held, Some((h, _)) if *h == ino)
                ),
            );
            let end = off as usize + len;
            if node.data.len() < end {
                node.data.resize(end, 0);
            }
            node.data[off as usize..end].copy_from_slice(&data);
            c.bytes_written.fetch_add(len as u64, Ordering::Relaxed);
        } else if op < 36 {
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            let node = m.inodes.get_mut(&ino).unwrap();
            let to = rng.below((node.data.len() as u64 + 16384).min(MAX_SIZE));
            let f = OpenOptions::new()
                .write(true)
                .open(&pa)
                .map_err(|e| ctx(&format!("open for truncate: {e}")))?;
            f.set_len(to)
                .map_err(|e| ctx(&format!("truncate to {to}: {e}")))?;
            log(hist, format!("truncate {a} (ino {ino}) to {to}"));
            node.data.resize(to as usize, 0);
        } else if op < 56 {
            // read back: whole file or a random range
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            let want = &m.inodes[&ino].data;
            if rng.chance(50) {
                let got = fs::read(&pa).map_err(|e| ctx(&format!("read: {e}")))?;
                if &got != want {
                    let first = got.iter().zip(want.iter()).position(|(x, y)| x != y);
                    return Err(ctx(&format!(
                        "content: {} bytes, want {}, first difference at {first:?}",
                        got.len(),
                        want.len()
                    )));
                }
                c.bytes_checked
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
            } else {
                let f = File::open(&pa).map_err(|e| ctx(&format!("open for read: {e}")))?;
                let off = rng.below(want.len() as u64 + 100);
                let blen = rng.range(1, 20000) as usize;
                let mut buf = vec![0u8; blen];
                let n = f
                    .read_at(&mut buf, off)
                    .map_err(|e| ctx(&format!("pread at {off}: {e}")))?;
                let exp = &want
                    [(off as usize).min(want.len())..(off as usize + buf.len()).min(want.len())];
                if &buf[..n] != exp {
                    return Err(ctx(&format!(
                        "pread {} at {off}: got {n} bytes, want {}, differs",
                        buf.len(),
                        exp.len()
                    )));
                }
                c.bytes_checked.fetch_add(n as u64, Ordering::Relaxed);
            }
            let st = fs::metadata(&pa).map_err(|e| ctx(&format!("stat: {e}")))?;
            if st.len() != want.len() as u64 {
                return Err(ctx(&format!(
                    "stat size {} != model {}",
                    st.len(),
                    want.len()
                )));
            }
        } else if op < 64 {
            // rename a over b
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            let b = name(rng.below(NAMES as u64));
            if b == a {
                continue;
            }
            fs::rename(&pa, dir.join(&b)).map_err(|e| ctx(&format!("rename to {b}: {e}")))?;
            log(
                hist,
                format!(
                    "rename {a} (ino {ino}) over {b} (ino {:?})",
                    m.names.get(&b)
                ),
            );
            if m.names.get(&b) == Some(&ino) {
                // both names are links to the same inode: rename does nothing
            } else {
                m.names.remove(&a);
                m.names.insert(b, ino);
            }
        } else if op < 69 {
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            let b = name(rng.below(NAMES as u64));
            if m.names.contains_key(&b) {
                continue;
            }
            fs::hard_link(&pa, dir.join(&b)).map_err(|e| ctx(&format!("link to {b}: {e}")))?;
            log(hist, format!("link {a} (ino {ino}) as {b}"));
            m.names.insert(b, ino);
        } else if op < 76 {
            let Some(ino) = m.names.remove(&a) else {
                continue;
            };
            fs::remove_file(&pa).map_err(|e| ctx(&format!("unlink: {e}")))?;
            log(hist, format!("unlink {a} (ino {ino})"));
            if !m.names.values().any(|&i| i == ino) {
                m.inodes.remove(&ino);
                if matches!(&held, Some((h, _)) if *h == ino) {
                    held = None;
                }
            }
        } else if op < 92 {
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            c.xattr_ops.fetch_add(1, Ordering::Relaxed);
            let node = m.inodes.get_mut(&ino).unwrap();
            let xn = format!("user.k{}", rng.below(6));
            match rng.below(4) {
                0 | 1 => {
                    let vlen = rng.below(300) as usize;
                    let val = rng.bytes(vlen);
                    xattr_set(&pa, &xn, &val).map_err(|e| ctx(&format!("setxattr {xn}: {e}")))?;
                    node.xattrs.insert(xn, val);
                }
                2 => {
                    let r = xattr_remove(&pa, &xn);
                    match (node.xattrs.remove(&xn), r) {
                        (Some(_), Ok(())) => {}
                        (None, Err(e)) if e.raw_os_error() == Some(libc::ENODATA) => {}
                        (had, r) => {
                            return Err(ctx(&format!(
                                "removexattr {xn}: had {}, got {r:?}",
                                had.is_some()
                            )));
                        }
                    }
                }
                _ => {
                    let r = xattr_get(&pa, &xn);
                    match (node.xattrs.get(&xn), r) {
                        (Some(v), Ok(got)) if *v == got => {}
                        (None, Err(e)) if e.raw_os_error() == Some(libc::ENODATA) => {}
                        (want, got) => {
                            return Err(ctx(&format!(
                                "getxattr {xn}: want {:?} bytes, got {got:?}",
                                want.map(|v| v.len())
                            )));
                        }
                    }
                    let list = xattr_list(&pa).map_err(|e| ctx(&format!("listxattr: {e}")))?;
                    let want: Vec<String> = node.xattrs.keys().cloned().collect();
                    if list != want {
                        return Err(ctx(&format!("listxattr {list:?}, want {want:?}")));
                    }
                }
            }
        } else if op < 96 {
            // keep a handle open for a while (or drop the one held)
            log(hist, format!("hold {a} (ino {:?})", m.names.get(&a)));
            held = if rng.chance(50) && m.names.contains_key(&a) {
                Some((
                    m.names[&a],
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&pa)
                        .map_err(|e| ctx(&format!("open held: {e}")))?,
                ))
            } else {
                None
            };
        } else {
            // another process reads the file
            let Some(&ino) = m.names.get(&a) else {
                continue;
            };
            let out = std::process::Command::new("cat")
                .arg(&pa)
                .output()
                .map_err(|e| ctx(&format!("spawn cat: {e}")))?;
            if !out.status.success() || out.stdout != m.inodes[&ino].data {
                return Err(ctx(&format!(
                    "cat: {} ({} bytes, want {})",
                    out.status,
                    out.stdout.len(),
                    m.inodes[&ino].data.len()
                )));
            }
        }
    }
    drop(held);
    // Final full check of every name.
    let mut listed: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = m.names.keys().cloned().collect();
    want.sort();
    if listed != want {
        return Err(format!(
            "{}: listing {listed:?}, model {want:?}",
            dir.display()
        ));
    }
    for (n, ino) in &m.names {
        let got = fs::read(dir.join(n)).map_err(|e| format!("final read {n}: {e}"))?;
        if got != m.inodes[ino].data {
            return Err(format!("final content of {}/{n} differs", dir.display()));
        }
    }
    Ok(())
}

#[test]
fn random_operations_match_the_model_and_the_daemon_does_not_leak() {
    let secs = env_num("CMKFS_STRESS_SECS", 20);
    let threads = env_num("CMKFS_STRESS_THREADS", 4) as usize;
    let seed = seed_from_env(0x57E5);
    let v = TestVolume::new();
    let pid = status_pid(&v.mnt());
    let dirs: Vec<PathBuf> = (0..threads).map(|i| v.p(&format!("w{i}"))).collect();
    for d in &dirs {
        fs::create_dir(d).unwrap();
        fs::metadata(d).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let fd_base = non_dir_fd_count(pid);
    let rss_base = rss_kib(pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let counters = Arc::new(Counters::default());
    let failed = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(f64, u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (samples, failed) = (samples.clone(), failed.clone());
        std::thread::spawn(move || {
            while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                samples.lock().unwrap().push((
                    start.elapsed().as_secs_f64(),
                    rss_kib(pid),
                    fd_count(pid),
                ));
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let handles: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (d, c, failed) = (d.clone(), counters.clone(), failed.clone());
            std::thread::spawn(move || {
                let r = worker(d, seed.wrapping_add(i as u64 * 7919), deadline, &c, &failed);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let results: Vec<Result<(), String>> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    sampler.join().unwrap();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "model mismatch or error (seed {seed}): {errors:#?}"
    );

    // Every file is closed now: the daemon's fds come back to the baseline.
    let mut fd_end = non_dir_fd_count(pid);
    let t = Instant::now();
    while fd_end > fd_base && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        fd_end = non_dir_fd_count(pid);
    }
    let samples = samples.lock().unwrap().clone();
    let half = samples.len() / 2;
    let rss_mid = samples.get(half).map(|s| s.1).unwrap_or(rss_base);
    let rss_max_last_half = samples[half..].iter().map(|s| s.1).max().unwrap_or(rss_mid);
    let rss_end = rss_kib(pid);
    let growth = (rss_max_last_half as f64 - rss_mid as f64) / rss_mid as f64 * 100.0;
    let fd_max = samples.iter().map(|s| s.2).max().unwrap_or(0);
    eprintln!(
        "stress: {secs} s, {threads} threads, {} ops, {} MiB written, {} MiB checked, {} xattr ops",
        counters.ops.load(Ordering::Relaxed),
        counters.bytes_written.load(Ordering::Relaxed) >> 20,
        counters.bytes_checked.load(Ordering::Relaxed) >> 20,
        counters.xattr_ops.load(Ordering::Relaxed)
    );
    eprintln!(
        "stress: daemon pid {pid} VmRSS base {rss_base} kB, mid-run {rss_mid} kB, max over last half {rss_max_last_half} kB \
         ({growth:+.1} %), end {rss_end} kB; non-directory fds base {fd_base}, end {fd_end}, all fds max {fd_max}; {} samples",
        samples.len()
    );
    assert!(
        fd_end <= fd_base,
        "daemon fds leak: {fd_base} non-directory fds at the start, {fd_end} after every file was closed: {:#?}\nstatus: {}",
        fd_targets(pid),
        run_ok(cmkfs().arg("status").arg(v.mnt())).stdout
    );
    let bound = if secs >= 60 { 10.0 } else { 50.0 };
    assert!(
        growth < bound,
        "daemon RSS grew {growth:.1} % over the last half of the run (bound {bound} %)"
    );
    assert!(rss_end < 512 * 1024, "daemon RSS {rss_end} kB");
    let fs_stats = run_ok(cmkfs().arg("status").arg(v.mnt()).arg("--json"));
    let st: serde_json::Value = serde_json::from_str(&fs_stats.stdout).unwrap();
    assert_eq!(
        st["open_files"].as_u64(),
        Some(0),
        "status reports open files after all were closed: {}",
        fs_stats.stdout
    );
}
