//! The command line: init, mount (key checks, options), umount, remount.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

#[test]
fn init_creates_volume_and_key() {
    let v = TestVolume::init_only();
    assert!(v.backing().join(".cmkfs").is_dir(), "no .cmkfs dir");
    assert!(
        v.backing().join(".cmkfs/volume.json").is_file(),
        "no volume.json"
    );
    assert!(
        v.backing().join(".cmkfs/keystore.json").is_file(),
        "no keystore.json"
    );
    assert!(
        v.backing().join(".cmkfs.dirid").is_file(),
        "no root .cmkfs.dirid"
    );
    // volume.json and keystore.json are two sealed copies each, holding JSON
    for f in ["volume.json", "keystore.json"] {
        let one = fs::read(v.backing().join(".cmkfs").join(f)).unwrap();
        let two = fs::read(v.backing().join(".cmkfs").join(format!("{f}.2"))).unwrap();
        assert_eq!(one, two, "the two copies of {f} differ");
        assert!(one.starts_with(b"cmkfs-meta 2 "), "{f} is not sealed");
    }
    for r in [
        cmkfs::meta_copies::Record::VolumeConfig,
        cmkfs::meta_copies::Record::KeyStore,
    ] {
        assert_eq!(read_record(&v.backing(), r)["format"], 2);
    }
    let meta = fs::metadata(v.key()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "key file mode");
    assert!(meta.len() >= 32, "key file too short: {} bytes", meta.len());

    let w = TestVolume::init_only();
    assert_ne!(
        fs::read(v.key()).unwrap(),
        fs::read(w.key()).unwrap(),
        "two inits gave the same key"
    );
}

#[test]
fn init_refuses_non_empty_dir() {
    let d = tempfile::tempdir().unwrap();
    let backing = d.path().join("backing");
    fs::create_dir(&backing).unwrap();
    fs::write(backing.join("somefile"), b"hello").unwrap();
    let key = d.path().join("key");
    let o = run(cmkfs()
        .arg("init")
        .arg(&backing)
        .arg("--service-key")
        .arg(&key));
    assert!(!o.success(), "init of a non-empty dir succeeded: {o:?}");
    assert!(!o.stderr.trim().is_empty(), "no error message on stderr");
    assert!(
        o.stderr.contains(backing.to_str().unwrap()),
        "stderr does not name the backing dir {}: {:?}",
        backing.display(),
        o.stderr
    );
    // nothing was touched
    assert_eq!(fs::read(backing.join("somefile")).unwrap(), b"hello");
    assert!(
        !backing.join(".cmkfs").exists(),
        "init wrote metadata into a non-empty dir"
    );
}

#[test]
fn init_refuses_existing_volume() {
    let v = TestVolume::init_only();
    let before_vol = fs::read(v.backing().join(".cmkfs/volume.json")).unwrap();
    let before_ks = fs::read(v.backing().join(".cmkfs/keystore.json")).unwrap();
    let key2 = v.root().join("key2");
    let o = run(cmkfs()
        .arg("init")
        .arg(v.backing())
        .arg("--service-key")
        .arg(&key2));
    assert!(!o.success(), "second init of a volume succeeded: {o:?}");
    assert!(!o.stderr.trim().is_empty(), "no error message on stderr");
    assert!(
        o.stderr.contains(v.backing().to_str().unwrap()),
        "stderr does not name the backing dir: {:?}",
        o.stderr
    );
    assert_eq!(
        fs::read(v.backing().join(".cmkfs/volume.json")).unwrap(),
        before_vol
    );
    assert_eq!(
        fs::read(v.backing().join(".cmkfs/keystore.json")).unwrap(),
        before_ks
    );
}

fn assert_one_line_naming(o: &Outcome, key: &std::path::Path) {
    assert!(!o.success(), "mount succeeded: {o:?}");
    let msg = o.stderr.trim();
    assert!(!msg.is_empty(), "no message on stderr");
    assert_eq!(msg.lines().count(), 1, "stderr is not one line: {msg:?}");
    assert!(
        msg.contains(key.to_str().unwrap()),
        "stderr does not name the key file {}: {msg:?}",
        key.display()
    );
}

#[test]
fn mount_with_wrong_key_fails() {
    let v = TestVolume::init_only();
    let other = TestVolume::init_only();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(other.key())
        .arg("--log-file")
        .arg(v.log_path()));
    let mounted = is_mounted(&v.mnt());
    if mounted {
        force_unmount(&v.mnt());
    }
    assert_one_line_naming(&o, &other.key());
    assert!(!mounted, "mount point is mounted after a failed mount");
}

#[test]
fn mount_with_missing_key_fails() {
    let v = TestVolume::init_only();
    let missing = v.root().join("no-such-key");
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&missing)
        .arg("--log-file")
        .arg(v.log_path()));
    let mounted = is_mounted(&v.mnt());
    if mounted {
        force_unmount(&v.mnt());
    }
    assert_one_line_naming(&o, &missing);
    assert!(!mounted, "mount point is mounted after a failed mount");
}

#[test]
fn mount_with_truncated_key_fails() {
    let v = TestVolume::init_only();
    let bad = v.root().join("bad-key");
    let k = fs::read(v.key()).unwrap();
    fs::write(&bad, &k[..k.len() / 2]).unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&bad));
    let mounted = is_mounted(&v.mnt());
    if mounted {
        force_unmount(&v.mnt());
    }
    assert_one_line_naming(&o, &bad);
    assert!(!mounted, "mount point is mounted after a failed mount");
}

#[test]
fn mount_write_umount_leaves_mountpoint_empty() {
    let mut v = TestVolume::new();
    assert!(is_mounted(&v.mnt()));
    fs::write(v.p("a.txt"), b"hello world").unwrap();
    fs::create_dir(v.p("sub")).unwrap();
    v.umount();
    assert!(!is_mounted(&v.mnt()));
    let left: Vec<_> = fs::read_dir(v.mnt()).unwrap().collect();
    assert!(
        left.is_empty(),
        "mountpoint not empty after umount: {left:?}"
    );
    // the backing dir got something for our file and dir
    assert!(
        visible_entries(&v.backing()).len() >= 2,
        "backing lacks entries"
    );
}

#[test]
fn remount_shows_same_content() {
    let mut v = TestVolume::new();
    let mut rng = Rng::new(42);
    let data = rng.bytes(100_000);
    fs::create_dir_all(v.p("d1/d2")).unwrap();
    fs::write(v.p("d1/d2/big"), &data).unwrap();
    fs::write(v.p("small"), b"x").unwrap();
    fs::write(v.p("empty"), b"").unwrap();
    std::os::unix::fs::symlink("d1/d2/big", v.p("link")).unwrap();
    v.remount();
    assert_bytes_eq(
        &fs::read(v.p("d1/d2/big")).unwrap(),
        &data,
        "big after remount",
    );
    assert_eq!(fs::read(v.p("small")).unwrap(), b"x");
    assert_eq!(fs::read(v.p("empty")).unwrap(), b"");
    assert_eq!(
        fs::read_link(v.p("link")).unwrap().to_str().unwrap(),
        "d1/d2/big"
    );
    let mut names: Vec<String> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d1", "empty", "link", "small"]);
}

#[test]
fn read_only_mount_gives_erofs() {
    let mut v = TestVolume::new();
    fs::write(v.p("f"), b"content").unwrap();
    fs::create_dir(v.p("d")).unwrap();
    v.umount();
    v.opts = vec!["ro".into()];
    v.mount();
    assert_eq!(
        fs::read(v.p("f")).unwrap(),
        b"content",
        "reads work on ro mount"
    );
    let erofs = Some(libc::EROFS);
    assert_eq!(
        errno(&fs::OpenOptions::new().write(true).open(v.p("f"))),
        erofs,
        "open for write"
    );
    assert_eq!(errno(&fs::write(v.p("new"), b"x")), erofs, "create");
    assert_eq!(errno(&fs::create_dir(v.p("newdir"))), erofs, "mkdir");
    assert_eq!(errno(&fs::remove_file(v.p("f"))), erofs, "unlink");
    assert_eq!(errno(&fs::remove_dir(v.p("d"))), erofs, "rmdir");
    assert_eq!(errno(&fs::rename(v.p("f"), v.p("g"))), erofs, "rename");
    assert_eq!(
        errno(&fs::set_permissions(
            v.p("f"),
            fs::Permissions::from_mode(0o600)
        )),
        erofs,
        "chmod"
    );
    assert_eq!(fs::read(v.p("f")).unwrap(), b"content");
    v.umount();
    v.opts.clear();
    v.mount();
    assert_eq!(fs::read(v.p("f")).unwrap(), b"content");
}

#[test]
fn foreground_mount_runs_until_umount() {
    let v = TestVolume::init_only();
    let mut child = cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key())
        .arg("--foreground")
        .arg("--log-file")
        .arg(v.log_path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(&v.mnt()) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "foreground mount exited early with {st}; log:\n{}",
                v.log_contents()
            );
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("foreground mount did not mount within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        let mut f = fs::File::create(v.p("fg")).unwrap();
        f.write_all(b"foreground").unwrap();
    }
    assert_eq!(fs::read(v.p("fg")).unwrap(), b"foreground");
    assert!(
        child.try_wait().unwrap().is_none(),
        "foreground process exited while mounted"
    );
    run_ok(cmkfs().arg("umount").arg(v.mnt()));
    let start = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("foreground process still running 30 s after umount");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(st.success(), "foreground mount exited with {st}");
    assert!(!is_mounted(&v.mnt()));
}

#[test]
fn log_file_gets_lines() {
    let mut v = TestVolume::new();
    fs::write(v.p("x"), b"y").unwrap();
    v.umount();
    assert!(
        !v.log_contents().trim().is_empty(),
        "log file empty after a mount/umount with RUST_LOG=info"
    );
}

/// Runs `args` as uid/gid 65534 (nobody) via setpriv; returns the outcome.
fn as_nobody(args: &[&std::ffi::OsStr]) -> Outcome {
    run(setpriv(65534, 65534).args(args))
}

#[test]
fn allow_other_and_default_permissions() {
    if !have_program("setpriv") {
        eprintln!("SKIPPED: setpriv is not installed");
        return;
    }
    // without allow_other another user cannot even stat the mount
    let v = TestVolume::new();
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(v.p("public"), b"public").unwrap();
    let o = as_nobody(&["cat".as_ref(), v.p("public").as_os_str()]);
    assert!(
        !o.success(),
        "another user read the mount without allow_other: {o:?}"
    );
    drop(v);

    let v = TestVolume::with_opts(&["allow_other", "default_permissions"]);
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == v.mnt().to_str())
        .map(str::to_string)
        .expect("mount in mountinfo");
    assert!(
        line.contains("allow_other"),
        "allow_other missing from mount options: {line}"
    );
    assert!(
        line.contains("default_permissions"),
        "default_permissions missing: {line}"
    );
    fs::write(v.p("public"), b"public").unwrap();
    fs::write(v.p("secret"), b"secret").unwrap();
    fs::set_permissions(v.p("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(v.p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(v.mnt(), fs::Permissions::from_mode(0o755)).unwrap();
    let o = as_nobody(&["cat".as_ref(), v.p("public").as_os_str()]);
    assert!(
        o.success(),
        "nobody cannot read a 0644 file with allow_other: {o:?}"
    );
    assert_eq!(o.stdout, "public");
    let o = as_nobody(&["cat".as_ref(), v.p("secret").as_os_str()]);
    assert!(
        !o.success(),
        "nobody read a 0600 root file with default_permissions: {o:?}"
    );
    assert!(
        o.stderr.contains("Permission denied"),
        "expected EACCES: {}",
        o.stderr
    );
    let o = as_nobody(&["touch".as_ref(), v.p("newfile").as_os_str()]);
    assert!(
        !o.success(),
        "nobody created a file in a 0755 root-owned dir: {o:?}"
    );
    assert!(!v.p("newfile").exists());
}

#[test]
fn mount_of_non_volume_fails_cleanly() {
    let v = TestVolume::init_only();
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("x"), b"x").unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(&plain)
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    let mounted = is_mounted(&v.mnt());
    if mounted {
        force_unmount(&v.mnt());
    }
    assert!(!o.success(), "mounting a non-volume succeeded");
    assert!(!mounted, "something got mounted");
    assert!(!o.stderr.trim().is_empty(), "no message");
    assert_eq!(
        o.stderr.trim().lines().count(),
        1,
        "message is not one line: {:?}",
        o.stderr
    );
    assert_eq!(fs::read(plain.join("x")).unwrap(), b"x");
}

#[test]
fn second_mount_on_same_mountpoint_fails_and_first_keeps_working() {
    let v = TestVolume::new();
    fs::write(v.p("f"), b"first").unwrap();
    let o = run(&mut v.mount_cmd());
    let stacked = mount_points().iter().filter(|m| **m == v.mnt()).count();
    if o.success() && stacked > 1 {
        // remove the stacked mount so that the first one is on top again
        let _ = run(cmkfs().arg("umount").arg(v.mnt()));
    }
    assert!(
        !o.success(),
        "a second mount on a mounted mountpoint succeeded ({stacked} mounts stacked there)"
    );
    assert!(!o.stderr.trim().is_empty(), "no message");
    assert_eq!(
        fs::read(v.p("f")).unwrap(),
        b"first",
        "first mount disturbed"
    );
    let n = mount_points().iter().filter(|m| **m == v.mnt()).count();
    assert_eq!(n, 1, "mountpoint is mounted {n} times");
    // and the same backing on a second mountpoint either fails or shows the same data
    let mnt2 = v.root().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(&mnt2)
        .arg("--service-key")
        .arg(v.key())
        .arg("--log-file")
        .arg(v.root().join("log2")));
    if o.success() {
        let content = fs::read(mnt2.join("f"));
        let _ = run(cmkfs().arg("umount").arg(&mnt2));
        force_unmount(&mnt2);
        assert_eq!(content.unwrap(), b"first");
    } else {
        assert!(!is_mounted(&mnt2));
        assert!(!o.stderr.trim().is_empty(), "no message");
    }
    assert_eq!(fs::read(v.p("f")).unwrap(), b"first");
}

#[test]
fn umount_of_unmounted_dir_fails() {
    let d = tempfile::tempdir().unwrap();
    let o = run(cmkfs().arg("umount").arg(d.path()));
    assert!(!o.success(), "umount of a plain dir succeeded");
    assert!(!o.stderr.trim().is_empty(), "no message");
}

#[test]
fn umount_while_file_open_does_not_lose_data() {
    let mut v = TestVolume::new();
    let mut f = fs::File::create(v.p("busy")).unwrap();
    f.write_all(b"written before umount").unwrap();
    // A busy mount: umount may fail (EBUSY) or succeed lazily, but must not lose written data.
    let o = run(cmkfs().arg("umount").arg(v.mnt()));
    if o.success() {
        drop(f);
        // wait for the lazily detached daemon to go away, then remount
        let start = Instant::now();
        while is_mounted(&v.mnt()) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        v.forget_mounted();
        v.mount();
    } else {
        assert!(
            !o.stderr.trim().is_empty(),
            "failed umount without a message"
        );
        assert!(
            is_mounted(&v.mnt()),
            "failed umount left the mount half gone"
        );
        drop(f);
        v.remount();
    }
    assert_eq!(fs::read(v.p("busy")).unwrap(), b"written before umount");
}

/// Pids of cmkfs processes whose command line is `... mount ... MNT ...`.
fn daemon_pids(mnt: &std::path::Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        let is_cmkfs = args.first().is_some_and(|a| a.ends_with(b"cmkfs"));
        let has_mount = args.iter().any(|a| *a == b"mount");
        let has_mnt = args.contains(&mnt.as_os_str().as_encoded_bytes());
        if is_cmkfs && has_mount && has_mnt {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut v = TestVolume::new();
    fs::write(v.p("f"), b"before sigterm").unwrap();
    let pids = daemon_pids(&v.mnt());
    assert_eq!(
        pids.len(),
        1,
        "expected one daemon for the mount, found {pids:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0]),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    // a zombie (foreground mode: our unreaped child) has an empty cmdline
    let alive = |pid: i32| {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| !c.is_empty())
            .unwrap_or(false)
    };
    while is_mounted(&v.mnt()) || alive(pids[0]) {
        if start.elapsed() > Duration::from_secs(20) {
            panic!("daemon did not unmount and exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    v.forget_mounted();
    v.mount();
    assert_eq!(fs::read(v.p("f")).unwrap(), b"before sigterm");
}

#[test]
fn fsynced_data_survives_daemon_kill() {
    let mut v = TestVolume::new();
    let data = Rng::new(8).bytes(300_000);
    {
        let mut f = fs::File::create(v.p("durable")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    fs::create_dir(v.p("dir")).unwrap();
    fs::write(v.p("dir/small"), b"small").unwrap();
    fs::File::open(v.p("dir/small"))
        .unwrap()
        .sync_all()
        .unwrap();
    let pids = daemon_pids(&v.mnt());
    assert_eq!(
        pids.len(),
        1,
        "expected one daemon for the mount, found {pids:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{}/cmdline", pids[0])).exists()
        && fs::read(format!("/proc/{}/cmdline", pids[0]))
            .map(|c| !c.is_empty())
            .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // the dead mount answers ENOTCONN; cmkfs umount (or the fallback) must clear it
    let o = run(cmkfs().arg("umount").arg(v.mnt()));
    if !o.success() {
        eprintln!(
            "cmkfs umount of a dead mount failed ({}): {}",
            o.status,
            o.stderr.trim()
        );
        force_unmount(&v.mnt());
    }
    assert!(!is_mounted(&v.mnt()), "dead mount still present");
    v.forget_mounted();
    v.mount();
    assert_bytes_eq(
        &fs::read(v.p("durable")).unwrap(),
        &data,
        "fsynced file after daemon kill",
    );
    assert_eq!(fs::read(v.p("dir/small")).unwrap(), b"small");
}

#[test]
fn init_never_overwrites_an_existing_key_file() {
    let v = TestVolume::init_only();
    let key_before = fs::read(v.key()).unwrap();
    let other = v.root().join("other-backing");
    fs::create_dir(&other).unwrap();
    let o = run(cmkfs()
        .arg("init")
        .arg(&other)
        .arg("--service-key")
        .arg(v.key()));
    assert!(
        !o.success(),
        "init overwrote (or reused) an existing key file"
    );
    assert!(
        o.stderr.contains(v.key().to_str().unwrap()),
        "message does not name the key file: {:?}",
        o.stderr
    );
    assert_eq!(
        fs::read(v.key()).unwrap(),
        key_before,
        "existing key file changed"
    );
    assert_eq!(
        fs::read_dir(&other).unwrap().count(),
        0,
        "failed init left files in the backing dir"
    );
    // the first volume still mounts with its key
    let mut v = v;
    v.mount();
}

#[test]
fn init_rejects_key_inside_backing_and_creates_missing_dir() {
    let d = tempfile::tempdir().unwrap();
    let backing = d.path().join("b");
    let o = run(cmkfs()
        .arg("init")
        .arg(&backing)
        .arg("--service-key")
        .arg(backing.join("key")));
    assert!(
        !o.success(),
        "init accepted a key file inside the backing dir"
    );
    assert!(
        !backing.join("key").exists(),
        "key written inside the backing dir"
    );
    let missing = d.path().join("not-yet");
    run_ok(
        cmkfs()
            .arg("init")
            .arg(&missing)
            .arg("--service-key")
            .arg(d.path().join("k")),
    );
    assert!(
        missing.join(".cmkfs/volume.json").is_file(),
        "init did not create the missing backing dir"
    );
}

/// MountStarted is written by the daemon after it reports ready (off the mount command's
/// path), so an unmount right after the mount must still find it written, before MountStopped.
#[test]
fn mount_and_unmount_are_audited_in_order_even_back_to_back() {
    let v = TestVolume::init_only();
    let audit = v.root().join("audit.log");
    for _ in 0..3 {
        run_ok(v.mount_cmd().arg("--audit-log").arg(&audit));
        let o = run(cmkfs().arg("umount").arg(v.mnt()));
        if !o.success() {
            force_unmount(&v.mnt());
            panic!("cmkfs umount failed: {}", o.stderr);
        }
    }
    let log = fs::read_to_string(&audit).unwrap();
    let ops: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["op"].to_string())
        .filter(|op| op.contains("Mount"))
        .collect();
    let expected = ["\"MountStarted\"", "\"MountStopped\""].repeat(3);
    assert_eq!(ops, expected, "mount records in {audit:?}");
    run_ok(cmkfs().args(["audit", "verify"]).arg(&audit));
}
