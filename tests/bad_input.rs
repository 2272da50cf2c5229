//! Bad input everywhere: malformed or truncated `volume.json` / `keystore.json`, key files of
//! the wrong size, key stores with a missing, duplicate or broken record, a backing "dir" that
//! is a file, unreadable or on a read-only filesystem, busy / non-empty / missing mountpoints,
//! and a second mount of a mounted backing dir. Each must fail with exit code non-zero and
//! exactly one stderr line that starts with `cmkfs: `, names the file or directory at fault and
//! does not come from a panic; nothing may be left mounted.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmkfs::meta_copies::Record;
use common::*;

/// Asserts `o` is a clean, one-sentence failure that mentions `names`.
#[track_caller]
fn assert_clean_failure(o: &Outcome, names: &str, case: &str) -> String {
    let err = o.stderr.trim_end().to_string();
    assert!(
        !o.success(),
        "{case}: expected failure, got success; stdout: {}",
        o.stdout
    );
    assert!(!err.contains("panicked"), "{case}: panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: stderr must be one line, got {}: {err:?}",
        lines.len()
    );
    assert!(
        lines[0].starts_with("cmkfs: "),
        "{case}: stderr must start with `cmkfs: `: {err:?}"
    );
    assert!(
        err.contains(names),
        "{case}: message does not name {names}: {err:?}"
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{case}: exit code {:?} ({err})",
        o.status.code()
    );
    err
}

fn meta(v: &TestVolume, f: &str) -> PathBuf {
    v.backing().join(".cmkfs").join(f)
}

fn try_mount(v: &TestVolume) -> Outcome {
    let o = run(&mut v.mount_cmd());
    if o.success() {
        // Leave nothing mounted behind even when the test is about to fail.
        let _ = run(cmkfs().arg("umount").arg(v.mnt()));
        force_unmount(&v.mnt());
    }
    assert!(
        o.success() || !is_mounted(&v.mnt()),
        "failed mount left {} mounted",
        v.mnt().display()
    );
    o
}

fn keystore_json(v: &TestVolume) -> serde_json::Value {
    read_record(&v.backing(), Record::KeyStore)
}

fn write_json(v: &TestVolume, record: Record, j: &serde_json::Value) {
    write_record(&v.backing(), record, j);
}

/// Writes `bytes` over both copies of a record (`name` and `name.2`).
fn damage_both(v: &TestVolume, name: &str, bytes: &[u8]) {
    fs::write(meta(v, name), bytes).unwrap();
    fs::write(meta(v, &format!("{name}.2")), bytes).unwrap();
}

#[test]
fn malformed_or_truncated_volume_json() {
    let v = TestVolume::init_only();
    let p = meta(&v, "volume.json");
    let good = fs::read(&p).unwrap();
    let good2 = fs::read(meta(&v, "volume.json.2")).unwrap();
    let raw: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("truncated by one byte", good[..good.len() - 1].to_vec()),
        ("binary garbage", vec![0xff, 0x00, 0xfe, 0x80, 0x01]),
        ("not an object", b"[1,2,3]".to_vec()),
    ];
    for (case, bytes) in raw {
        damage_both(&v, "volume.json", &bytes);
        let o = try_mount(&v);
        let err =
            assert_clean_failure(&o, &p.display().to_string(), &format!("volume.json {case}"));
        assert!(err.contains("cmkfs key restore"), "{case}: {err}");
    }
    fs::write(&p, &good).unwrap();
    fs::write(meta(&v, "volume.json.2"), &good2).unwrap();
    // Sealed (valid checksums) but wrong content: the parser still refuses.
    let j = read_record(&v.backing(), Record::VolumeConfig);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut k = j.clone();
        f(&mut k);
        k
    };
    let sealed: Vec<(&str, serde_json::Value)> = vec![
        (
            "missing fields",
            serde_json::json!({"format": 2, "volume_id": j["volume_id"]}),
        ),
        ("format 3", with(&|k| k["format"] = 3.into())),
        ("block size 1000", with(&|k| k["block_size"] = 1000.into())),
        (
            "unknown cipher",
            with(&|k| k["name_cipher"] = "ROT13".into()),
        ),
        ("unknown field", with(&|k| k["extra"] = true.into())),
    ];
    for (case, value) in sealed {
        write_json(&v, Record::VolumeConfig, &value);
        let o = try_mount(&v);
        assert_clean_failure(&o, &p.display().to_string(), &format!("volume.json {case}"));
    }
    fs::remove_file(&p).unwrap();
    fs::remove_file(meta(&v, "volume.json.2")).unwrap();
    let o = try_mount(&v);
    assert_clean_failure(&o, &p.display().to_string(), "volume.json missing");
    // Restored, the volume mounts: nothing above damaged anything.
    fs::write(&p, &good).unwrap();
    let o = try_mount(&v);
    assert!(o.success(), "restored volume does not mount: {}", o.stderr);
}

#[test]
fn malformed_or_truncated_keystore_json() {
    let mut v = TestVolume::new();
    fs::write(v.p("f"), b"data").unwrap();
    v.umount();
    let p = meta(&v, "keystore.json");
    let good = fs::read(&p).unwrap();
    let mut dup = keystore_json(&v);
    let rec = dup["data_keys"][0].clone();
    dup["data_keys"].as_array_mut().unwrap().push(rec);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("truncated to 1 byte", good[..1].to_vec()),
        ("binary garbage", vec![0x00; 64]),
        (
            "format 9",
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("\"format\": 2", "\"format\": 9", 1)
                .into_bytes(),
        ),
    ];
    for (case, bytes) in cases {
        damage_both(&v, "keystore.json", &bytes);
        let o = try_mount(&v);
        let err = assert_clean_failure(
            &o,
            &p.display().to_string(),
            &format!("keystore.json {case}"),
        );
        assert!(
            err.contains("both copies of the key store are damaged"),
            "{case}: {err}"
        );
    }
    write_json(&v, Record::KeyStore, &dup);
    let o = try_mount(&v);
    assert_clean_failure(
        &o,
        &p.display().to_string(),
        "keystore.json duplicate record",
    );
    fs::remove_file(&p).unwrap();
    fs::remove_file(meta(&v, "keystore.json.2")).unwrap();
    let o = try_mount(&v);
    assert_clean_failure(&o, &p.display().to_string(), "keystore.json missing");
    fs::write(&p, &good).unwrap();
    v.mount();
    assert_eq!(fs::read(v.p("f")).unwrap(), b"data");
}

/// Deleting the only data key: the volume cannot be opened; the message must say where.
#[test]
fn keystore_without_its_only_data_key() {
    let v = TestVolume::init_only();
    let p = meta(&v, "keystore.json");
    let mut j = keystore_json(&v);
    j["data_keys"] = serde_json::json!([]);
    write_json(&v, Record::KeyStore, &j);
    let o = try_mount(&v);
    assert_clean_failure(
        &o,
        &p.display().to_string(),
        "keystore.json with no data key",
    );
}

/// An extra record that becomes the current key but whose wrapped bytes are not a wrapped key.
#[test]
fn keystore_with_extra_broken_record() {
    let v = TestVolume::init_only();
    let p = meta(&v, "keystore.json");
    let mut j = keystore_json(&v);
    let mut rec = j["data_keys"][0].clone();
    rec["epoch"] = serde_json::json!(1);
    rec["wrapped"] = serde_json::json!("AAAA");
    j["data_keys"].as_array_mut().unwrap().push(rec);
    write_json(&v, Record::KeyStore, &j);
    let o = try_mount(&v);
    assert_clean_failure(
        &o,
        &p.display().to_string(),
        "keystore.json with a broken epoch-1 record",
    );
}

/// An extra record wrapped by a key this volume's service key is not (wrong fingerprint):
/// refused before any unwrap, naming the service key file.
#[test]
fn keystore_with_extra_record_of_another_key() {
    let v = TestVolume::init_only();
    let _p = meta(&v, "keystore.json");
    let mut j = keystore_json(&v);
    let mut rec = j["data_keys"][0].clone();
    rec["epoch"] = serde_json::json!(1);
    rec["wrapped_by"][0]["fingerprint"] = serde_json::json!("0000000000000000");
    j["data_keys"].as_array_mut().unwrap().push(rec);
    write_json(&v, Record::KeyStore, &j);
    let o = try_mount(&v);
    let err = assert_clean_failure(
        &o,
        &v.key().display().to_string(),
        "record wrapped by another key",
    );
    assert!(
        err.contains("0000000000000000"),
        "names the expected fingerprint: {err}"
    );
}

#[test]
fn key_files_of_the_wrong_size_or_kind() {
    let v = TestVolume::init_only();
    let dir = v.root().join("keys");
    fs::create_dir(&dir).unwrap();
    for n in [0usize, 1, 31, 33] {
        let k = dir.join(format!("k{n}"));
        fs::write(&k, vec![7u8; n]).unwrap();
        fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
        let o = run(cmkfs()
            .arg("mount")
            .arg(v.backing())
            .arg(v.mnt())
            .arg("--service-key")
            .arg(&k));
        let err = assert_clean_failure(&o, &k.display().to_string(), &format!("{n}-byte key"));
        assert!(
            err.contains(&format!("{n} bytes")),
            "{n}-byte key: message gives the size: {err}"
        );
        assert!(!is_mounted(&v.mnt()));
    }
    // right size, wrong key
    let k = dir.join("other");
    fs::write(&k, [9u8; 32]).unwrap();
    fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&k));
    assert_clean_failure(&o, &k.display().to_string(), "wrong 32-byte key");
    // readable by others
    fs::set_permissions(&k, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&k));
    assert_clean_failure(&o, &k.display().to_string(), "key mode 0644");
    // a directory, a missing file
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&dir));
    assert_clean_failure(&o, &dir.display().to_string(), "key is a directory");
    let missing = dir.join("missing");
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&missing));
    assert_clean_failure(&o, &missing.display().to_string(), "key missing");
    assert!(!is_mounted(&v.mnt()));
}

/// A 64-byte key file: the message must give its real size.
#[test]
fn key_file_too_long_reports_its_real_size() {
    let v = TestVolume::init_only();
    let k = v.root().join("k64");
    fs::write(&k, [7u8; 64]).unwrap();
    fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(&k));
    let err = assert_clean_failure(&o, &k.display().to_string(), "64-byte key");
    assert!(
        err.contains("64 bytes") || err.contains("more than 32") || err.contains("longer than 32"),
        "size misreported: {err}"
    );
}

#[test]
fn backing_dir_that_is_a_file_or_missing() {
    let v = TestVolume::init_only();
    let f = v.root().join("plainfile");
    fs::write(&f, b"x").unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(&f)
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert_clean_failure(&o, &f.display().to_string(), "backing is a file");
    let missing = v.root().join("nope");
    let o = run(cmkfs()
        .arg("mount")
        .arg(&missing)
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert_clean_failure(&o, &missing.display().to_string(), "backing missing");
    // an empty directory is not a volume
    let empty = v.root().join("empty");
    fs::create_dir(&empty).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(&empty)
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert_clean_failure(&o, &empty.display().to_string(), "backing not a volume");
    // init refuses a file and a non-empty directory
    let o = run(cmkfs()
        .arg("init")
        .arg(&f)
        .arg("--service-key")
        .arg(v.root().join("k2")));
    assert_clean_failure(&o, &f.display().to_string(), "init on a file");
    let o = run(cmkfs()
        .arg("init")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.root().join("k3")));
    assert_clean_failure(
        &o,
        &v.backing().display().to_string(),
        "init on an existing volume",
    );
}

/// The backing dir is 0700 root: a non-root user (setpriv to nobody) cannot read it.
#[test]
fn backing_dir_unreadable_to_a_non_root_user() {
    if !have_program("setpriv") {
        eprintln!("setpriv missing: skipped");
        return;
    }
    let v = TestVolume::init_only();
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(v.backing(), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(v.mnt(), Some(65534), Some(65534)).unwrap();
    let o = run(setpriv(65534, 65534)
        .arg(bin())
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key())
        .env("HOME", "/nonexistent")
        .env("XDG_RUNTIME_DIR", v.root()));
    assert_clean_failure(
        &o,
        &v.backing().display().to_string(),
        "backing unreadable to nobody",
    );
    assert!(
        o.stderr.contains("Permission denied") || o.stderr.contains("permission"),
        "says why: {}",
        o.stderr
    );
    assert!(!is_mounted(&v.mnt()));
}

/// Runs `f`, then unmounts `dir` (lazily if needed) even when `f` panics.
fn with_mount<R>(dir: &Path, f: impl FnOnce() -> R) -> R {
    struct Guard<'a>(&'a Path);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
            if is_mounted(self.0) {
                let _ = Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
    }
    let _g = Guard(dir);
    f()
}

/// A read-only bind mount of a real volume, and an (empty) read-only tmpfs.
#[test]
fn backing_dir_on_a_read_only_filesystem() {
    let mut v = TestVolume::new();
    fs::write(v.p("kept"), b"still here").unwrap();
    v.umount();
    let ro = v.root().join("ro");
    fs::create_dir(&ro).unwrap();
    run_ok(
        Command::new("mount")
            .arg("--bind")
            .arg(v.backing())
            .arg(&ro),
    );
    with_mount(&ro, || {
        run_ok(
            Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(&ro),
        );
        let o = run(cmkfs()
            .arg("mount")
            .arg(&ro)
            .arg(v.mnt())
            .arg("--service-key")
            .arg(v.key()));
        let err = assert_clean_failure(
            &o,
            &ro.display().to_string(),
            "rw mount of a read-only backing",
        );
        assert!(err.contains("Read-only file system"), "says why: {err}");
        // `-o ro` mounts a read-only backing dir (no mount lock needed) and reads back.
        let o = run(cmkfs()
            .arg("mount")
            .arg(&ro)
            .arg(v.mnt())
            .arg("--service-key")
            .arg(v.key())
            .arg("-o")
            .arg("ro"));
        assert!(
            o.success(),
            "-o ro on a read-only backing must mount: {}",
            o.stderr
        );
        let got = fs::read(v.mnt().join("kept"));
        let _ = run(cmkfs().arg("umount").arg(v.mnt()));
        force_unmount(&v.mnt());
        assert_eq!(got.unwrap(), b"still here");
    });
    // An empty read-only tmpfs: neither a volume nor initializable.
    let t = v.root().join("rotmpfs");
    fs::create_dir(&t).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(&t),
    );
    with_mount(&t, || {
        let o = run(cmkfs()
            .arg("mount")
            .arg(&t)
            .arg(v.mnt())
            .arg("--service-key")
            .arg(v.key()));
        assert_clean_failure(
            &o,
            &t.display().to_string(),
            "mount of an empty read-only tmpfs",
        );
        let o = run(cmkfs()
            .arg("init")
            .arg(t.join("vol"))
            .arg("--service-key")
            .arg(v.root().join("k-ro")));
        assert_clean_failure(&o, &t.display().to_string(), "init on a read-only tmpfs");
    });
    assert!(!is_mounted(&v.mnt()));
    // The original volume is untouched.
    v.mount();
    assert_eq!(fs::read(v.p("kept")).unwrap(), b"still here");
}

#[test]
fn mountpoint_busy_not_empty_or_missing() {
    let v = TestVolume::init_only();
    let mnt = v.mnt();
    // not empty
    fs::write(mnt.join("stray"), b"x").unwrap();
    let o = try_mount(&v);
    assert_clean_failure(&o, &mnt.display().to_string(), "non-empty mountpoint");
    fs::remove_file(mnt.join("stray")).unwrap();
    // busy: something else is mounted there
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt),
    );
    with_mount(&mnt, || {
        let o = run(&mut v.mount_cmd());
        assert_clean_failure(&o, &mnt.display().to_string(), "mountpoint is a mount");
    });
    // missing, or a file
    let missing = v.root().join("missing-mnt");
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(&missing)
        .arg("--service-key")
        .arg(v.key()));
    assert_clean_failure(&o, &missing.display().to_string(), "missing mountpoint");
    let file = v.root().join("file-mnt");
    fs::write(&file, b"").unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(&file)
        .arg("--service-key")
        .arg(v.key()));
    assert_clean_failure(&o, &file.display().to_string(), "mountpoint is a file");
    // and afterwards it mounts
    let o = try_mount(&v);
    assert!(o.success(), "{}", o.stderr);
}

/// A second `cmkfs mount` of a mounted backing dir is refused, naming the holder (pid and
/// mountpoint), by the flock on `.cmkfs/mount.lock`; the first mount keeps working.
#[test]
fn second_mount_of_the_same_backing_dir_names_the_holder() {
    let v = TestVolume::new();
    fs::write(v.p("a"), b"first").unwrap();
    let st = run_ok(cmkfs().arg("status").arg(v.mnt()).arg("--json"));
    let pid = serde_json::from_str::<serde_json::Value>(&st.stdout).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let mnt2 = v.root().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(&mnt2)
        .arg("--service-key")
        .arg(v.key()));
    if o.success() {
        force_unmount(&mnt2);
    }
    let err = assert_clean_failure(&o, &v.backing().display().to_string(), "second mount");
    assert!(
        err.contains(&format!("pid {pid}")),
        "names the holder pid {pid}: {err}"
    );
    assert!(
        err.contains(&v.mnt().display().to_string()),
        "names the holder's mountpoint: {err}"
    );
    assert!(!is_mounted(&mnt2));
    // the same mountpoint again: refused too (already a mount point)
    let o = run(&mut v.mount_cmd());
    assert_clean_failure(&o, &v.mnt().display().to_string(), "same mountpoint again");
    assert_eq!(fs::read(v.p("a")).unwrap(), b"first");
}

/// docs/format.md: bytes 5..8 of `.cmkfs.dirid` are "reserved, zero". Found by the `dirid`
/// fuzz target (fuzz/artifacts/dirid/crash-0593f647...): decode accepts non-zero reserved bytes,
/// so decode -> encode is not the identity.
#[test]
fn dirid_with_nonzero_reserved_bytes_is_rejected() {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(b"CMKD");
    b[4] = 1;
    b[6] = 0x20;
    assert!(
        cmkfs::format::DirIdFile::decode(&b).is_err(),
        "reserved byte 6 = 0x20 accepted"
    );
}

/// A backing dir shared with another host: a live lease of that host refuses the mount (naming
/// it); a stale one (its daemon died without unmounting) is taken over; a clean unmount leaves
/// no lease.
#[test]
fn another_hosts_live_lease_refuses_and_a_stale_one_is_taken_over() {
    let mut v = TestVolume::init_only();
    let lock = meta(&v, "mount.lock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lease = |heartbeat: u64| {
        serde_json::json!({"pid": 4242, "host": "other-host.example", "mountpoint": "/mnt/elsewhere", "heartbeat": heartbeat})
            .to_string()
    };
    fs::write(&lock, lease(now)).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert!(!o.success(), "mounted over another host's live lease");
    assert!(
        o.stderr.contains("other-host.example")
            && o.stderr.contains("4242")
            && o.stderr.contains("/mnt/elsewhere"),
        "{}",
        o.stderr
    );
    assert!(!is_mounted(&v.mnt()));
    fs::write(&lock, lease(now - 3600)).unwrap();
    v.mount();
    let held: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&lock).unwrap()).unwrap();
    assert_ne!(
        held["host"], "other-host.example",
        "the stale lease was taken over: {held}"
    );
    assert!(held["heartbeat"].as_u64().unwrap() >= now);
    v.umount();
    assert_eq!(
        fs::read_to_string(&lock).unwrap(),
        "",
        "a clean unmount leaves no lease"
    );
}
