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
    assert!(v.backing().join(".cmkfs/volume.json").is_file(), "no volume.json");
    assert!(v.backing().join(".cmkfs/keystore.json").is_file(), "no keystore.json");
    assert!(v.backing().join(".cmkfs.dirid").is_file(), "no root .cmkfs.dirid");
    // volume.json and keystore.json are JSON
    for f in ["volume.json", "keystore.json"] {
        let s = fs::read(v.backing().join(".cmkfs").join(f)).unwrap();
        serde_json::from_slice::<serde_json::Value>(&s).unwrap_or_else(|e| panic!("{f} is not JSON: {e}"));
    }
    let meta = fs::metadata(v.key()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "key file mode");
    assert!(meta.len() >= 32, "key file too short: {} bytes", meta.len());

    let w = TestVolume::init_only();
    assert_ne!(fs::read(v.key()).unwrap(), fs::read(w.key()).unwrap(), "two inits gave the same key");
}

#[test]
fn init_refuses_non_empty_dir() {
    let d = tempfile::tempdir().unwrap();
    let backing = d.path().join("backing");
    fs::create_dir(&backing).unwrap();
    fs::write(backing.join("somefile"), b"hello").unwrap();
    let key = d.path().join("key");
    let o = run(cmkfs().arg("init").arg(&backing).arg("--service-key").arg(&key));
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
    assert!(!backing.join(".cmkfs").exists(), "init wrote metadata into a non-empty dir");
}

#[test]
fn init_refuses_existing_volume() {
    let v = TestVolume::init_only();
    let before_vol = fs::read(v.backing().join(".cmkfs/volume.json")).unwrap();
    let before_ks = fs::read(v.backing().join(".cmkfs/keystore.json")).unwrap();
    let key2 = v.root().join("key2");
    let o = run(cmkfs().arg("init").arg(v.backing()).arg("--service-key").arg(&key2));
    assert!(!o.success(), "second init of a volume succeeded: {o:?}");
    assert!(!o.stderr.trim().is_empty(), "no error message on stderr");
    assert!(
        o.stderr.contains(v.backing().to_str().unwrap()),
        "stderr does not name the backing dir: {:?}",
        o.stderr
    );
    assert_eq!(fs::read(v.backing().join(".cmkfs/volume.json")).unwrap(), before_vol);
    assert_eq!(fs::read(v.backing().join(".cmkfs/keystore.json")).unwrap(), before_ks);
}

fn assert_one_line_naming(o: &Outcome, key: &std::path::Path) {
    assert!(!o.success(), "mount succeeded: {o:?}");
    let msg = o.stderr.trim();
    assert!(!msg.is_empty(), "no message on stderr");
    assert_eq!(msg.lines().count(), 1, "stderr is not one line: {msg:?}");
    assert!(msg.contains(key.to_str().unwrap()), "stderr does not name the key file {}: {msg:?}", key.display());
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
    let o = run(cmkfs().arg("mount").arg(v.backing()).arg(v.mnt()).arg("--service-key").arg(&bad));
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
    assert!(left.is_empty(), "mountpoint not empty after umount: {left:?}");
    // the backing dir got something for our file and dir
    assert!(visible_entries(&v.backing()).len() >= 2, "backing lacks entries");
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
    assert_bytes_eq(&fs::read(v.p("d1/d2/big")).unwrap(), &data, "big after remount");
    assert_eq!(fs::read(v.p("small")).unwrap(), b"x");
    assert_eq!(fs::read(v.p("empty")).unwrap(), b"");
    assert_eq!(fs::read_link(v.p("link")).unwrap().to_str().unwrap(), "d1/d2/big");
    let mut names: Vec<String> =
        fs::read_dir(v.mnt()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
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
    assert_eq!(fs::read(v.p("f")).unwrap(), b"content", "reads work on ro mount");
    let erofs = Some(libc::EROFS);
    assert_eq!(errno(&fs::OpenOptions::new().write(true).open(v.p("f"))), erofs, "open for write");
    assert_eq!(errno(&fs::write(v.p("new"), b"x")), erofs, "create");
    assert_eq!(errno(&fs::create_dir(v.p("newdir"))), erofs, "mkdir");
    assert_eq!(errno(&fs::remove_file(v.p("f"))), erofs, "unlink");
    assert_eq!(errno(&fs::remove_dir(v.p("d"))), erofs, "rmdir");
    assert_eq!(errno(&fs::rename(v.p("f"), v.p("g"))), erofs, "rename");
    assert_eq!(errno(&fs::set_permissions(v.p("f"), fs::Permissions::from_mode(0o600))), erofs, "chmod");
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
            panic!("foreground mount exited early with {st}; log:\n{}", v.log_contents());
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
    assert!(child.try_wait().unwrap().is_none(), "foreground process exited while mounted");
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
    assert!(!v.log_contents().trim().is_empty(), "log file empty after a mount/umount with RUST_LOG=info");
}

/// Runs `args` as uid/gid 65534 (nobody) via setpriv; returns the outcome.
fn as_nobody(args: &[&std::ffi::OsStr]) -> Outcome {
    run(std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args))
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
    assert!(!o.success(), "another user read the mount without allow_other: {o:?}");
    drop(v);

    let v = TestVolume::with_opts(&["allow_other", "default_permissions"]);
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == v.mnt().to_str())
        .map(str::to_string)
        .expect("mount in mountinfo");
    assert!(line.contains("allow_other"), "allow_other missing from mount options: {line}");
    assert!(line.contains("default_permissions"), "default_permissions missing: {line}");
    fs::write(v.p("public"), b"public").unwrap();
    fs::write(v.p("secret"), b"secret").unwrap();
    fs::set_permissions(v.p("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(v.p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(v.mnt(), fs::Permissions::from_mode(0o755)).unwrap();
    let o = as_nobody(&["cat".as_ref(), v.p("public").as_os_str()]);
    assert!(o.success(), "nobody cannot read a 0644 file with allow_other: {o:?}");
    assert_eq!(o.stdout, "public");
    let o = as_nobody(&["cat".as_ref(), v.p("secret").as_os_str()]);
    assert!(!o.success(), "nobody read a 0600 root file with default_permissions: {o:?}");
    assert!(o.stderr.contains("Permission denied"), "expected EACCES: {}", o.stderr);
    let o = as_nobody(&["touch".as_ref(), v.p("newfile").as_os_str()]);
    assert!(!o.success(), "nobody created a file in a 0755 root-owned dir: {o:?}");
    assert!(!v.p("newfile").exists());
}
