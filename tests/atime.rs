//! Access times. First the reported defect: opening a file (without reading it) must not move
//! its atime, as cmkfs's own read of the backing header used to. Then `relatime` (default),
//! `noatime` and `strictatime` of the cmkfs mount, step by step beside an ext4 directory
//! mounted with the same option (a bind mount of a directory on the same disk), and cmkfs's
//! own backing I/O (fsck, re-encryption) leaving atime and mtime alone.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (atime, mtime) in nanoseconds, asked of the filesystem itself (`AT_STATX_FORCE_SYNC`: a
/// FUSE mount then asks the daemon instead of answering from its attribute cache).
fn times(p: &Path) -> (i128, i128) {
    let c = cstr(p);
    // SAFETY: statx fills the zeroed struct; the path is NUL-terminated.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_FORCE_SYNC,
            libc::STATX_ATIME | libc::STATX_MTIME,
            &mut sx,
        )
    };
    assert_eq!(
        r,
        0,
        "statx {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    let ns = |t: libc::statx_timestamp| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    (ns(sx.stx_atime), ns(sx.stx_mtime))
}

fn set_atime(p: &Path, t: SystemTime) {
    let f = fs::File::open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(t)).unwrap();
}

fn set_mtime(p: &Path, t: SystemTime) {
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
}

fn drop_caches() {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

fn year(y: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((y - 1970) * 365 * 86_400)
}

fn read_all(p: &Path) {
    let _ = fs::read(p).unwrap();
}

/// The steps, each answering "did the atime move?" on the directory `d`.
fn steps(d: &Path) -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    let f = d.join("f");
    fs::write(&f, b"hello world\n").unwrap();
    set_mtime(&f, year(2021));
    set_atime(&f, year(2020));
    drop_caches();

    let before = times(&f);
    {
        let file = fs::OpenOptions::new().read(true).open(&f).unwrap();
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    drop_caches();
    out.push(("open without read, fchmod", times(&f).0 != before.0));
    assert_eq!(times(&f).1, before.1, "mtime moved on open");

    let before = times(&f);
    read_all(&f);
    out.push(("read, atime older than mtime", times(&f).0 != before.0));

    // An atime newer than mtime and ctime, and recent: relatime leaves it.
    set_atime(&f, SystemTime::now() + Duration::from_secs(3600));
    let before = times(&f);
    read_all(&f);
    out.push(("read, recent atime", times(&f).0 != before.0));
    let before = times(&f);
    read_all(&f);
    out.push(("read again (cached pages)", times(&f).0 != before.0));

    // Written, then read from the page cache the write filled.
    set_atime(&f, year(2020));
    std::thread::sleep(Duration::from_millis(20));
    let mut w = fs::OpenOptions::new().append(true).open(&f).unwrap();
    std::io::Write::write_all(&mut w, b"more\n").unwrap();
    drop(w);
    let before = times(&f);
    out.push(("append", times(&f).0 != before.0));
    read_all(&f);
    out.push(("read after write", times(&f).0 != before.0));

    // O_DIRECT-free open for writing only, no read.
    let before = times(&f);
    drop(
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(0)
            .open(&f)
            .unwrap(),
    );
    out.push(("open for writing", times(&f).0 != before.0));

    // Directories: listing.
    let sub = d.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("x"), b"x").unwrap();
    set_atime(&sub, year(2020));
    drop_caches();
    let before = times(&sub);
    let _: Vec<_> = fs::read_dir(&sub).unwrap().collect();
    out.push(("list directory, old atime", times(&sub).0 != before.0));
    set_atime(&sub, SystemTime::now() + Duration::from_secs(3600));
    let before = times(&sub);
    let _: Vec<_> = fs::read_dir(&sub).unwrap().collect();
    out.push(("list directory, recent atime", times(&sub).0 != before.0));
    // Looking a name up is not a read of the directory.
    set_atime(&sub, year(2020));
    let before = times(&sub);
    let _ = fs::metadata(sub.join("x")).unwrap();
    out.push(("lookup in directory", times(&sub).0 != before.0));
    out
}

/// A bind mount of `dir` onto itself with an atime option (an ext4 oracle mounted as the
/// cmkfs mount is); unmounted on drop.
struct Bind(PathBuf);

impl Bind {
    fn new(dir: &Path, opt: &str) -> Bind {
        run_ok(Command::new("mount").arg("--bind").arg(dir).arg(dir));
        let b = Bind(dir.to_path_buf());
        run_ok(
            Command::new("mount")
                .args(["-o", &format!("remount,bind,{opt}")])
                .arg(dir),
        );
        b
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg(&self.0));
    }
}

/// The same steps in a cmkfs mount with `opt` and in an ext4 directory mounted with `opt`.
fn compare(opt: Option<&str>) -> Vec<(&'static str, bool)> {
    let v = match opt {
        Some(o) => TestVolume::with_opts(&[o]),
        None => TestVolume::new(),
    };
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    let _bind = opt.map(|o| Bind::new(&plain, o));
    let want = steps(&plain);
    let got = steps(&v.mnt());
    assert_eq!(
        got, want,
        "cmkfs with {opt:?} differs from ext4 with the same option"
    );
    want
}

fn expect(transcript: &[(&str, bool)], step: &str, moved: bool) {
    let got = transcript.iter().find(|(s, _)| *s == step).unwrap().1;
    assert_eq!(got, moved, "oracle step {step:?} in {transcript:?}");
}

#[test]
fn open_without_read_keeps_atime() {
    let v = TestVolume::new();
    let f = v.p("f");
    fs::write(&f, b"content").unwrap();
    set_mtime(&f, year(2021));
    set_atime(&f, year(2020));
    // A fresh inode: unmount and mount again, so the open loads the header from disk.
    let mut v = v;
    v.remount();
    drop_caches();
    let before = times(&f);
    let file = fs::File::open(&f).unwrap();
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    drop(file);
    drop_caches();
    assert_eq!(
        times(&f),
        before,
        "open (no read) + fchmod moved atime or mtime"
    );
    // The backing file's own times are the plaintext times.
    let backing = fs::read_dir(v.backing())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("backing file");
    assert_eq!(times(&backing).0, before.0);
}

#[test]
fn relatime_by_default_as_on_ext4() {
    let t = compare(None);
    expect(&t, "open without read, fchmod", false);
    expect(&t, "read, atime older than mtime", true);
    expect(&t, "read, recent atime", false);
    expect(&t, "read after write", true);
    expect(&t, "list directory, old atime", true);
    expect(&t, "list directory, recent atime", false);
    expect(&t, "lookup in directory", false);
}

#[test]
fn noatime_as_on_ext4() {
    let t = compare(Some("noatime"));
    expect(&t, "read, atime older than mtime", false);
    expect(&t, "list directory, old atime", false);
}

#[test]
fn strictatime_as_on_ext4() {
    let t = compare(Some("strictatime"));
    expect(&t, "read, atime older than mtime", true);
    expect(&t, "read, recent atime", true);
    expect(&t, "list directory, recent atime", true);
    expect(&t, "open for writing", false);
}

#[test]
fn fsck_and_reencryption_keep_atime_and_mtime() {
    let mut v = TestVolume::new();
    let files: Vec<PathBuf> = (0..3).map(|i| v.p(&format!("f{i}"))).collect();
    for (i, f) in files.iter().enumerate() {
        fs::write(f, vec![i as u8; 10_000 + i]).unwrap();
        set_mtime(f, year(2021));
        set_atime(f, year(2020));
    }
    fs::create_dir(v.p("d")).unwrap();
    set_atime(&v.p("d"), year(2020));
    let before: Vec<_> = files.iter().map(|f| times(f)).collect();
    let dir_before = times(&v.p("d"));
    v.umount();
    drop_caches();
    run_ok(
        cmkfs()
            .arg("fsck")
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key()),
    );
    v.mount();
    let after: Vec<_> = files.iter().map(|f| times(f)).collect();
    assert_eq!(after, before, "fsck moved times");
    assert_eq!(
        times(&v.p("d")).0,
        dir_before.0,
        "fsck moved a directory atime"
    );
    run_ok(
        cmkfs()
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--data-key"),
    );
    run_ok(cmkfs().arg("reencrypt").arg(v.mnt()));
    drop_caches();
    let after: Vec<_> = files.iter().map(|f| times(f)).collect();
    assert_eq!(after, before, "re-encryption moved times");
    assert_eq!(
        times(&v.p("d")).0,
        dir_before.0,
        "re-encryption moved a directory atime"
    );
}

#[test]
fn nodiratime_as_on_ext4() {
    let t = compare(Some("nodiratime"));
    expect(&t, "read, atime older than mtime", true);
    expect(&t, "list directory, old atime", false);
}
