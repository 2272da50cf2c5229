//! Shared fixtures for the cmkfs integration tests: a real volume (init + mount) in its own
//! temporary directory, command helpers, a tiny PRNG and backing-tree walkers.
//!
//! Every test builds its own `TestVolume`, so tests run in parallel safely.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmkfs")
}

/// A `cmkfs` command with logging turned on (`RUST_LOG=info`, or `CMKFS_TEST_LOG` if set).
pub fn cmkfs() -> Command {
    let mut c = Command::new(bin());
    c.env(
        "RUST_LOG",
        std::env::var("CMKFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    c
}

/// Whether `CMKFS_TEST_FOREGROUND=1` asks the fixture to mount with `--foreground`.
pub fn foreground_mode() -> bool {
    std::env::var("CMKFS_TEST_FOREGROUND")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Result of a finished command.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// How long any single command may run before the test gives up on it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` with stdout/stderr captured into files (not pipes: a daemonizing child that
/// keeps inherited descriptors open must not block us), with a timeout.
pub fn run(cmd: &mut Command) -> Outcome {
    let what = format!("{cmd:?}");
    let dir = tempfile::tempdir().expect("tempdir for command output");
    let out_p = dir.path().join("stdout");
    let err_p = dir.path().join("stderr");
    let out = fs::File::create(&out_p).unwrap();
    let err = fs::File::create(&err_p).unwrap();
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > CMD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "command timed out after {CMD_TIMEOUT:?}: {what}\nstderr: {}",
                fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_p).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_p).unwrap_or_default()).into_owned(),
        what,
    }
}

/// Runs `cmd` and panics (with its stdout and stderr) unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Outcome {
    let o = run(cmd);
    assert!(
        o.success(),
        "command failed ({}): {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        o.what,
        o.stdout,
        o.stderr
    );
    o
}

/// Whether a program can be found on PATH.
/// `setpriv` set up to run what follows as `uid`/`gid`, without supplementary groups.
pub fn setpriv(uid: u32, gid: u32) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--"]);
    c
}

pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Mount points from /proc/self/mountinfo (field 5, octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let s = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    s.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|f| PathBuf::from(unescape_mountinfo(f)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_mounted(path: &Path) -> bool {
    let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mount_points().iter().any(|m| m == &p)
}

/// Best-effort forced unmount (used when `cmkfs umount` failed).
pub fn force_unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if is_mounted(path) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A volume in its own temp dir: `backing/`, `mnt/`, `key`, `log`.
///
/// With `CMKFS_TEST_FOREGROUND=1` the fixture runs `mount --foreground` as a child process and
/// waits for the mount to appear, instead of relying on the daemonizing mount (for debugging).
pub struct TestVolume {
    dir: tempfile::TempDir,
    mounted: bool,
    fg_child: Option<std::process::Child>,
    /// Extra `-o` options used by every (re)mount.
    pub opts: Vec<String>,
    /// Extra environment of the daemon.
    pub env: Vec<(String, String)>,
}

impl TestVolume {
    /// init + mount.
    pub fn new() -> Self {
        let mut v = Self::init_only();
        v.mount();
        v
    }

    /// init + mount with `-o` options.
    pub fn with_opts(opts: &[&str]) -> Self {
        let mut v = Self::init_only();
        v.opts = opts.iter().map(|s| s.to_string()).collect();
        v.mount();
        v
    }

    /// Creates the directories and runs `cmkfs init`, without mounting.
    pub fn init_only() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cmkfs-test-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("backing")).unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let v = TestVolume {
            dir,
            mounted: false,
            fg_child: None,
            opts: Vec::new(),
            env: Vec::new(),
        };
        run_ok(
            cmkfs()
                .arg("init")
                .arg(v.backing())
                .arg("--service-key")
                .arg(v.key()),
        );
        v
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    pub fn backing(&self) -> PathBuf {
        self.dir.path().join("backing")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }
    /// Path of `rel` inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }

    pub fn log_contents(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Waits up to 5 s for a log line satisfying `pred`; returns that line.
    pub fn wait_log_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log_contents().lines().find(|l| pred(l)) {
                return Some(l.to_string());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The mount command (not run) with this volume's key, log file and options.
    pub fn mount_cmd(&self) -> Command {
        let mut c = cmkfs();
        c.arg("mount")
            .arg(self.backing())
            .arg(self.mnt())
            .arg("--service-key")
            .arg(self.key())
            .arg("--log-file")
            .arg(self.log_path());
        if !self.opts.is_empty() {
            c.arg("-o").arg(self.opts.join(","));
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn mount(&mut self) {
        assert!(!self.mounted, "already mounted");
        if foreground_mode() {
            self.mount_foreground();
        } else {
            run_ok(&mut self.mount_cmd());
        }
        self.mounted = true;
        assert!(
            is_mounted(&self.mnt()),
            "mount returned success but {} is not in /proc/self/mountinfo",
            self.mnt().display()
        );
    }

    fn mount_foreground(&mut self) {
        let mut cmd = self.mount_cmd();
        cmd.arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn foreground mount");
        let start = Instant::now();
        while !is_mounted(&self.mnt()) {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "foreground mount exited with {st}; log:\n{}",
                    self.log_contents()
                );
            }
            if start.elapsed() > CMD_TIMEOUT {
                let _ = child.kill();
                panic!("foreground mount did not appear within {CMD_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fg_child = Some(child);
    }

    fn reap_foreground(&mut self) {
        if let Some(mut child) = self.fg_child.take() {
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn umount(&mut self) {
        assert!(self.mounted, "not mounted");
        let o = run(cmkfs().arg("umount").arg(self.mnt()));
        self.mounted = false;
        if !o.success() {
            force_unmount(&self.mnt());
            self.reap_foreground();
            panic!("cmkfs umount failed ({}): stderr:\n{}", o.status, o.stderr);
        }
        self.reap_foreground();
        assert!(!is_mounted(&self.mnt()), "still mounted after cmkfs umount");
    }

    pub fn remount(&mut self) {
        self.umount();
        self.mount();
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Records that the volume is no longer mounted (after an unmount done behind our back).
    pub fn forget_mounted(&mut self) {
        self.mounted = false;
        self.reap_foreground();
    }

    /// All regular files (and symlinks) under the backing directory, recursively.
    pub fn backing_files(&self) -> Vec<PathBuf> {
        backing_files(&self.backing())
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        if self.mounted || is_mounted(&self.mnt()) {
            let _ = run_quiet(cmkfs().arg("umount").arg(self.mnt()));
            force_unmount(&self.mnt());
        }
        self.reap_foreground();
        if std::thread::panicking() {
            let log = self.log_contents();
            if let Some(dest) = std::env::var_os("CMKFS_TEST_KEEP_LOG") {
                let _ = fs::write(dest, &log);
            }
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
                .take(20)
                .collect();
            if !errors.is_empty() {
                eprintln!(
                    "---- daemon log: first errors and warnings ----\n{}",
                    errors.join("\n")
                );
            }
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- daemon log tail ({}) ----\n{}",
                self.log_path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn run_quiet(cmd: &mut Command) -> io::Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// All non-directory entries under `root`, recursively (symlinks not followed).
pub fn backing_files(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| !fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false))
        .collect()
}

/// All entries (files, dirs, symlinks...) under `root`, recursively, excluding `root`.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(r) => r,
            Err(e) => panic!("read_dir {}: {e}", d.display()),
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Entries of `dir` whose names do not start with '.', i.e. encrypted short names.
pub fn visible_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().as_bytes().starts_with(b"."))
        .collect();
    v.sort();
    v
}

/// The only non-dot entry of `backing_dir` that is not in `before`: the backing object of the
/// plaintext entry just created in the matching directory. Panics unless there is exactly one.
pub fn new_entry(backing_dir: &Path, before: &[PathBuf]) -> PathBuf {
    let now = visible_entries(backing_dir);
    let new: Vec<&PathBuf> = now.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(
        new.len(),
        1,
        "expected exactly one new backing entry in {}, got {new:?}",
        backing_dir.display()
    );
    new[0].clone()
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The errno of an io::Result error, or None on success.
pub fn errno<T>(r: &io::Result<T>) -> Option<i32> {
    match r {
        Ok(_) => None,
        Err(e) => e.raw_os_error(),
    }
}

/// Converts a libc return value (-1 = error) to io::Result.
/// `renameat2(2)` with `flags` (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT).
pub fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let (a, b) = (cstr(from), cstr(to));
    // SAFETY: plain syscall with valid NUL-terminated paths.
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    })
    .map(|_| ())
}

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn cvt_l(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// xorshift64* PRNG: deterministic, seedable, no dependencies.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix the seed so that small seeds still give good streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x1234_5678 } else { z })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Seed from `CMKFS_SEED` or `default`, printed so failures can be replayed.
pub fn seed_from_env(default: u64) -> u64 {
    let s = std::env::var("CMKFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("CMKFS_SEED={s}");
    s
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts two byte slices are equal, reporting the first difference instead of dumping both.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want.iter()).position(|(a, b)| a != b);
    panic!(
        "{what}: contents differ: got {} bytes, want {} bytes, first difference at {:?}",
        got.len(),
        want.len(),
        first.or(Some(got.len().min(want.len())))
    );
}

/// The JSON content of a metadata record (`volume.json` or the key store) of the volume in
/// `backing`, from its best valid copy.
pub fn read_record(backing: &Path, record: cmkfs::meta_copies::Record) -> serde_json::Value {
    let meta = backing.join(".cmkfs");
    let l = cmkfs::meta_copies::load(&meta, record, None, false).expect("record readable");
    serde_json::from_slice(&l.content).expect("record is JSON")
}

/// Replaces both copies of a metadata record with `value`, as a new generation with valid
/// checksums (to test what the parser does with well-sealed but wrong content).
pub fn write_record(backing: &Path, record: cmkfs::meta_copies::Record, value: &serde_json::Value) {
    let meta = backing.join(".cmkfs");
    let id = read_record(backing, cmkfs::meta_copies::Record::VolumeConfig)["volume_id"]
        .as_str()
        .expect("volume id")
        .to_string();
    let mut bytes = serde_json::to_vec_pretty(value).unwrap();
    bytes.push(b'\n');
    cmkfs::meta_copies::save(&meta, record, &id, &bytes).expect("record written");
}

/// Opens `p` for reading and writing, creating it if missing (never truncating).
pub fn open_rw(p: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// `fallocate(2)` on an open file.
pub fn fallocate(f: &fs::File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) }).map(|_| ())
}
pub mod gluster;
pub mod kv;
