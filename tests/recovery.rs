//! One flipped bit must not lose a volume (issue 16): every byte of every copy of the volume
//! config, the key store and a directory id is flipped, one at a time, each on a fresh copy of
//! a small volume; the volume still opens, every file reads back exactly and the damaged copy
//! is rewritten. Truncated or deleted copies likewise. Both copies damaged: mount and fsck
//! refuse, naming `cmkfs key restore`, and a restore from `cmkfs key backup` brings the volume
//! back. Another volume's backup is refused. `fsck --repair`, version-1 upgrade, `status`.
//!
//! The byte loop goes through the library (`Volume::open` + reads through the core, which is
//! what a mount runs) so that ~1,500 cases take seconds; a sample of the cases is checked
//! through a real mount as well.

mod common;

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmkfs::keys::ServiceKey;
use cmkfs::meta_copies::Record;
use cmkfs::volume::{OpenOptions, Volume};
use common::*;

const XATTR: &str = "user.cmkfs.dirid";

/// The plaintext tree of the test volume: path -> content.
fn expected() -> BTreeMap<&'static str, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert("a.txt", b"alpha\n".to_vec());
    m.insert("sub/b.bin", (0..9000u32).map(|i| (i % 251) as u8).collect());
    m.insert("sub/c.txt", b"gamma\n".to_vec());
    m
}

/// A small populated, unmounted volume.
fn small_volume() -> TestVolume {
    let mut v = TestVolume::new();
    fs::create_dir(v.p("sub")).unwrap();
    for (p, c) in expected() {
        fs::write(v.p(p), c).unwrap();
    }
    v.umount();
    v
}

fn get_xattr(dir: &Path) -> Option<Vec<u8>> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(XATTR).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid strings and buffer.
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

fn set_xattr(dir: &Path, v: &[u8]) {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(XATTR).unwrap();
    // SAFETY: valid strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

fn remove_xattr(dir: &Path) {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(XATTR).unwrap();
    // SAFETY: valid strings.
    let r = unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// The backing directory of `sub` (the only subdirectory of the root).
fn sub_dir(backing: &Path) -> PathBuf {
    fs::read_dir(backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("backing dir of sub")
}

/// One place a metadata copy lives.
#[derive(Clone, Debug)]
enum Target {
    /// A file relative to the backing root (".cmkfs/keystore.json", ".cmkfs.dirid", ...).
    File(String),
    /// The sub directory's id file.
    SubDirIdFile,
    /// The sub directory's id xattr.
    SubDirIdXattr,
}

impl Target {
    fn all() -> Vec<Target> {
        vec![
            Target::File(".cmkfs/volume.json".into()),
            Target::File(".cmkfs/volume.json.2".into()),
            Target::File(".cmkfs/keystore.json".into()),
            Target::File(".cmkfs/keystore.json.2".into()),
            Target::File(".cmkfs.dirid".into()),
            Target::SubDirIdFile,
            Target::SubDirIdXattr,
        ]
    }

    fn read(&self, backing: &Path) -> Option<Vec<u8>> {
        match self {
            Target::File(f) => fs::read(backing.join(f)).ok(),
            Target::SubDirIdFile => fs::read(sub_dir(backing).join(".cmkfs.dirid")).ok(),
            Target::SubDirIdXattr => get_xattr(&sub_dir(backing)),
        }
    }

    fn write(&self, backing: &Path, bytes: &[u8]) {
        match self {
            Target::File(f) => write_file(&backing.join(f), bytes),
            Target::SubDirIdFile => write_file(&sub_dir(backing).join(".cmkfs.dirid"), bytes),
            Target::SubDirIdXattr => set_xattr(&sub_dir(backing), bytes),
        }
    }

    fn delete(&self, backing: &Path) {
        match self {
            Target::File(f) => fs::remove_file(backing.join(f)).unwrap(),
            Target::SubDirIdFile => fs::remove_file(sub_dir(backing).join(".cmkfs.dirid")).unwrap(),
            Target::SubDirIdXattr => remove_xattr(&sub_dir(backing)),
        }
    }
}

/// Writes a file that may be read-only (directory id files are 0400).
fn write_file(p: &Path, bytes: &[u8]) {
    if p.exists() {
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o400)).unwrap();
}

/// A fresh copy of `src` (with xattrs) at `dst`.
fn copy_backing(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Opens the volume writable through the library and reads every file; returns the repairs.
fn open_and_read_all(backing: &Path, key: &Path, case: &str) -> u64 {
    let vol = Volume::open(
        backing,
        ServiceKey::load(key).unwrap(),
        &OpenOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{case}: volume does not open: {e}"));
    let root = vol.root().unwrap();
    let sub = vol
        .open_subdir(&root, OsStr::new("sub"))
        .unwrap_or_else(|e| panic!("{case}: sub does not open: {e}"));
    for (p, want) in expected() {
        let (dir, name) = match p.strip_prefix("sub/") {
            Some(n) => (&sub, n),
            None => (&root, p),
        };
        let f = vol
            .open_file(dir, OsStr::new(name))
            .unwrap_or_else(|e| panic!("{case}: {p} does not open: {e}"));
        let got = vol.read(&f, 0, 1 << 20).unwrap();
        assert!(got == want, "{case}: {p} reads back different bytes");
    }
    let mut names: Vec<Vec<u8>> = vol
        .read_dir(&sub)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, vec![b"b.bin".to_vec(), b"c.txt".to_vec()], "{case}");
    vol.metadata_repairs()
}

/// Mounts `backing` at `mnt`, checks every file and the listing against `expected()`, unmounts.
fn mount_and_read_all(backing: &Path, mnt: &Path, key: &Path, case: &str) {
    fs::create_dir_all(mnt).unwrap();
    let o = run(cmkfs()
        .arg("mount")
        .arg(backing)
        .arg(mnt)
        .arg("--service-key")
        .arg(key));
    assert!(o.success(), "{case}: mount failed: {}", o.stderr);
    let check = std::panic::catch_unwind(|| {
        for (p, want) in expected() {
            assert!(
                fs::read(mnt.join(p)).unwrap() == want,
                "{case}: {p} differs"
            );
        }
        let mut names: Vec<String> = fs::read_dir(mnt.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["b.bin", "c.txt"], "{case}");
    });
    run_ok(cmkfs().arg("umount").arg(mnt));
    if let Err(e) = check {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn every_flipped_byte_of_every_metadata_copy_is_survived_and_repaired() {
    let v = small_volume();
    let work = tempfile::tempdir().unwrap();
    let mut cases = 0;
    let mut mounted = 0;
    let started = std::time::Instant::now();
    for t in Target::all() {
        let good = t.read(&v.backing()).expect("copy exists");
        for i in 0..good.len() {
            let case = format!("{t:?} byte {i} flipped");
            let b = work.path().join(format!("b{cases}"));
            copy_backing(&v.backing(), &b);
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            t.write(&b, &bad);
            // A sample goes through a real mount (first, middle and last byte).
            if i == 0 || i == good.len() / 2 || i == good.len() - 1 {
                mount_and_read_all(&b, &work.path().join("mnt"), &v.key(), &case);
                mounted += 1;
            } else {
                let repairs = open_and_read_all(&b, &v.key(), &case);
                assert!(repairs >= 1, "{case}: no repair counted");
            }
            assert!(
                t.read(&b).as_deref() == Some(&good[..]),
                "{case}: the damaged copy was not rewritten"
            );
            fs::remove_dir_all(&b).unwrap();
            cases += 1;
        }
    }
    eprintln!(
        "{cases} flipped bytes ({mounted} through a mount) in {:.1?}",
        started.elapsed()
    );
    assert!(cases > 1000, "only {cases} cases");
}

#[test]
fn a_truncated_or_deleted_copy_is_survived_and_repaired() {
    let v = small_volume();
    let work = tempfile::tempdir().unwrap();
    for t in Target::all() {
        let good = t.read(&v.backing()).unwrap();
        for how in ["truncated", "deleted", "emptied"] {
            let case = format!("{t:?} {how}");
            let b = work.path().join("b");
            copy_backing(&v.backing(), &b);
            match how {
                "truncated" => t.write(&b, &good[..good.len() / 2]),
                "emptied" => t.write(&b, b""),
                _ => t.delete(&b),
            }
            if how == "deleted" {
                mount_and_read_all(&b, &work.path().join("mnt"), &v.key(), &case);
            } else {
                assert!(open_and_read_all(&b, &v.key(), &case) >= 1, "{case}");
            }
            assert!(
                t.read(&b).as_deref() == Some(&good[..]),
                "{case}: not rewritten"
            );
            fs::remove_dir_all(&b).unwrap();
        }
    }
}

/// A stale copy (a crash between the writes of the two copies of a key rotation) is
/// recognised by its generation and rewritten; the newer key is kept.
#[test]
fn a_stale_key_store_copy_is_replaced_by_the_newer_one() {
    let mut v = small_volume();
    let old2 = fs::read(v.backing().join(".cmkfs/keystore.json.2")).unwrap();
    v.mount();
    run_ok(
        cmkfs()
            .arg("key")
            .arg("rotate")
            .arg(v.mnt())
            .arg("--data-key"),
    );
    fs::write(v.p("new.txt"), b"after rotation").unwrap();
    v.umount();
    let new1 = fs::read(v.backing().join(".cmkfs/keystore.json")).unwrap();
    fs::write(v.backing().join(".cmkfs/keystore.json.2"), &old2).unwrap();
    v.mount();
    assert_eq!(fs::read(v.p("new.txt")).unwrap(), b"after rotation");
    v.umount();
    assert_eq!(
        fs::read(v.backing().join(".cmkfs/keystore.json.2")).unwrap(),
        new1
    );
}

fn backup(target: &Path, out: &Path) -> Outcome {
    run(cmkfs()
        .arg("key")
        .arg("backup")
        .arg(target)
        .arg("--out")
        .arg(out))
}

fn restore(backing: &Path, from: &Path, key: &Path) -> Outcome {
    run(cmkfs()
        .arg("key")
        .arg("restore")
        .arg(backing)
        .arg("--from")
        .arg(from)
        .arg("--service-key")
        .arg(key))
}

fn fsck(backing: &Path, key: &Path, extra: &[&str]) -> Outcome {
    run(cmkfs()
        .arg("fsck")
        .arg(backing)
        .arg("--service-key")
        .arg(key)
        .args(extra))
}

#[test]
fn both_copies_damaged_refuses_and_key_restore_brings_the_volume_back() {
    let mut v = small_volume();
    let file = v.root().join("keys.backup");
    // Backup through the mountpoint of a running mount.
    v.mount();
    let o = backup(&v.mnt(), &file);
    assert!(o.success(), "backup via mountpoint: {}", o.stderr);
    v.umount();
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let meta = v.backing().join(".cmkfs");
    for (record, files) in [
        ("key store", ["keystore.json", "keystore.json.2"]),
        ("volume config", ["volume.json", "volume.json.2"]),
    ] {
        let saved: Vec<Vec<u8>> = files
            .iter()
            .map(|f| fs::read(meta.join(f)).unwrap())
            .collect();
        let mut b = fs::read(meta.join(files[0])).unwrap();
        b[40] ^= 1;
        fs::write(meta.join(files[0]), &b).unwrap();
        fs::write(meta.join(files[1]), &b[..10]).unwrap();
        let o = run(&mut v.mount_cmd());
        assert!(!o.success(), "{record}: mounted with both copies damaged");
        let want = format!("both copies of the {record} are damaged");
        assert!(o.stderr.contains(&want), "{record}: {}", o.stderr);
        assert!(o.stderr.contains("cmkfs key restore"), "{}", o.stderr);
        assert!(o.stderr.contains("fails its checksum"), "{}", o.stderr);
        let o = fsck(&v.backing(), &v.key(), &[]);
        assert_eq!(o.status.code(), Some(2), "fsck: {}", o.stderr);
        assert!(o.stderr.contains(&want), "{}", o.stderr);
        let o = restore(&v.backing(), &file, &v.key());
        assert!(o.success(), "restore: {}", o.stderr);
        for (f, s) in files.iter().zip(&saved) {
            // Restored as a new generation: sealed and valid, not necessarily the same bytes.
            assert!(
                fs::read(meta.join(f))
                    .unwrap()
                    .starts_with(b"cmkfs-meta 2 ")
            );
            assert!(!s.is_empty());
        }
        mount_and_read_all(&v.backing(), &v.mnt(), &v.key(), record);
    }
    // Everything lost in .cmkfs: the backup still brings it back (matched by the service key).
    for f in [
        "keystore.json",
        "keystore.json.2",
        "volume.json",
        "volume.json.2",
    ] {
        fs::remove_file(meta.join(f)).unwrap();
    }
    let o = restore(&v.backing(), &file, &v.key());
    assert!(o.success(), "restore into an empty .cmkfs: {}", o.stderr);
    mount_and_read_all(
        &v.backing(),
        &v.mnt(),
        &v.key(),
        "after total loss of .cmkfs",
    );
    // A damaged backup file is refused.
    let mut b = fs::read(&file).unwrap();
    let n = b.len() - 5;
    b[n] ^= 1;
    let bad = v.root().join("bad.backup");
    fs::write(&bad, &b).unwrap();
    let o = restore(&v.backing(), &bad, &v.key());
    assert!(!o.success());
    assert!(
        o.stderr.contains("not a valid cmkfs key backup"),
        "{}",
        o.stderr
    );
}

#[test]
fn another_volumes_backup_is_refused() {
    let v = small_volume();
    let w = TestVolume::init_only();
    let wfile = w.root().join("w.backup");
    assert!(backup(&w.backing(), &wfile).success());
    let before: Vec<Vec<u8>> = [
        "keystore.json",
        "keystore.json.2",
        "volume.json",
        "volume.json.2",
    ]
    .iter()
    .map(|f| fs::read(v.backing().join(".cmkfs").join(f)).unwrap())
    .collect();
    // With the volume id still readable: refused by id.
    let o = restore(&v.backing(), &wfile, &w.key());
    assert!(!o.success());
    assert!(o.stderr.contains("another volume"), "{}", o.stderr);
    // With nothing left to compare: refused because the keys do not unwrap with v's key.
    let meta = v.backing().join(".cmkfs");
    let save = v.root().join("meta-save");
    copy_backing(&meta, &save);
    for f in [
        "keystore.json",
        "keystore.json.2",
        "volume.json",
        "volume.json.2",
    ] {
        fs::remove_file(meta.join(f)).unwrap();
    }
    let o = restore(&v.backing(), &wfile, &v.key());
    assert!(!o.success(), "another volume's backup restored");
    assert!(o.stderr.contains("does not unwrap"), "{}", o.stderr);
    assert!(
        !meta.join("keystore.json").exists(),
        "something was written"
    );
    for (f, b) in [
        "keystore.json",
        "keystore.json.2",
        "volume.json",
        "volume.json.2",
    ]
    .iter()
    .zip(&before)
    {
        fs::write(meta.join(f), b).unwrap();
    }
    let mut v = v;
    v.mount();
    assert_eq!(fs::read(v.p("a.txt")).unwrap(), b"alpha\n");
}

#[test]
fn fsck_reports_damaged_copies_and_repair_rewrites_them() {
    let v = small_volume();
    let b = v.backing();
    let good_ks2 = fs::read(b.join(".cmkfs/keystore.json.2")).unwrap();
    let good_root = fs::read(b.join(".cmkfs.dirid")).unwrap();
    let good_x = get_xattr(&sub_dir(&b)).unwrap();
    let mut d = good_ks2.clone();
    d[100] ^= 4;
    fs::write(b.join(".cmkfs/keystore.json.2"), &d).unwrap();
    Target::File(".cmkfs.dirid".into()).write(&b, b"garbage");
    remove_xattr(&sub_dir(&b));
    // Without --repair: reported, nothing written.
    let o = fsck(&b, &v.key(), &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", o.stdout, o.stderr);
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let codes: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "metadata_copy").count(),
        1,
        "{:#}",
        j["problems"]
    );
    assert_eq!(
        codes.iter().filter(|c| **c == "dir_id_copy").count(),
        2,
        "{codes:?}"
    );
    let msgs = j["problems"].to_string();
    assert!(msgs.contains("copy 2 of the key store"), "{msgs}");
    assert!(msgs.contains("fsck --repair"), "{msgs}");
    assert_eq!(fs::read(b.join(".cmkfs/keystore.json.2")).unwrap(), d);
    assert_eq!(get_xattr(&sub_dir(&b)), None);
    // --repair: rewritten from the verified copies, exit 0, each repair listed.
    let o = fsck(&b, &v.key(), &["--repair", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(j["summary"]["repaired"], 3, "{j:#}");
    assert_eq!(
        fs::read(b.join(".cmkfs/keystore.json.2")).unwrap(),
        good_ks2
    );
    assert_eq!(fs::read(b.join(".cmkfs.dirid")).unwrap(), good_root);
    assert_eq!(get_xattr(&sub_dir(&b)).unwrap(), good_x);
    // Each rewrite is audited (fsck writes to the default audit log).
    let log = fs::read_to_string(cmkfs::audit::default_audit_log_path()).unwrap();
    let ours = log
        .lines()
        .filter(|l| l.contains("\"MetadataRepair\"") && l.contains(b.to_str().unwrap()))
        .count();
    assert!(
        ours >= 2,
        "MetadataRepair records for {}: {ours}",
        b.display()
    );
    // And the volume is clean afterwards.
    let o = fsck(&b, &v.key(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", o.stdout);
}

#[test]
fn two_intact_but_different_directory_ids_are_refused_not_guessed() {
    let v = small_volume();
    let b = v.backing();
    let sub = sub_dir(&b);
    // The root's id put on sub's xattr: both copies verify, they disagree.
    set_xattr(&sub, &fs::read(b.join(".cmkfs.dirid")).unwrap());
    let vol = Volume::open(
        &b,
        ServiceKey::load(&v.key()).unwrap(),
        &OpenOptions::default(),
    )
    .unwrap();
    let root = vol.root().unwrap();
    let Err(e) = vol.open_subdir(&root, OsStr::new("sub")) else {
        panic!("a directory with disagreeing ids opened");
    };
    assert!(e.to_string().contains("disagree"), "{e}");
}

#[test]
fn status_counts_metadata_repairs() {
    let mut v = small_volume();
    fs::remove_file(v.backing().join(".cmkfs/volume.json.2")).unwrap();
    v.mount();
    let o = run_ok(cmkfs().arg("status").arg(v.mnt()).arg("--json"));
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(j["metadata_repairs"], 1, "{j:#}");
    assert!(v.backing().join(".cmkfs/volume.json.2").is_file());
    let o = run_ok(cmkfs().arg("status").arg(v.mnt()));
    assert!(
        o.stdout.contains("1 damaged copies repaired"),
        "{}",
        o.stdout
    );
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let backing = dir.join("backing");
    copy_backing(&fixture().join("volume-v1"), &backing);
    let key = dir.join("key");
    fs::copy(fixture().join("volume-v1.key"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    (backing, key)
}

/// Every file under `root` with its bytes (to prove a read-only mount wrote nothing).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(root)
        .into_iter()
        .filter(|p| {
            let in_meta = p.parent().and_then(|d| d.file_name()) == Some(OsStr::new(".cmkfs"));
            let name = p.file_name().unwrap_or_default();
            p.is_file() && (!in_meta || name == "volume.json" || name == "keystore.json")
        })
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn a_version_1_volume_is_upgraded_on_the_first_writable_mount_only() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture(dir.path());
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let before = tree(&backing);
    // Read-only: reads, writes nothing.
    run_ok(
        cmkfs()
            .arg("mount")
            .arg(&backing)
            .arg(&mnt)
            .arg("--service-key")
            .arg(&key)
            .arg("-o")
            .arg("ro"),
    );
    let hello = fs::read(mnt.join("hello.txt"));
    let docs = fs::read(mnt.join("docs/numbers.bin"));
    run_ok(cmkfs().arg("umount").arg(&mnt));
    assert!(hello.unwrap().starts_with(b"Hello"));
    assert_eq!(docs.unwrap().len(), 10_000);
    assert_eq!(tree(&backing), before, "a read-only mount wrote");
    assert!(!backing.join(".cmkfs/keystore.json.2").exists());
    // Writable: upgraded (format 2, two sealed copies, directory ids with their xattr).
    run_ok(
        cmkfs()
            .arg("mount")
            .arg(&backing)
            .arg(&mnt)
            .arg("--service-key")
            .arg(&key),
    );
    let hello = fs::read(mnt.join("hello.txt"));
    let docs = fs::read(mnt.join("docs/numbers.bin"));
    run_ok(cmkfs().arg("umount").arg(&mnt));
    assert!(hello.unwrap().starts_with(b"Hello"));
    assert_eq!(docs.unwrap().len(), 10_000);
    for f in [
        "volume.json",
        "volume.json.2",
        "keystore.json",
        "keystore.json.2",
    ] {
        let b = fs::read(backing.join(".cmkfs").join(f)).unwrap();
        assert!(b.starts_with(b"cmkfs-meta 2 "), "{f} not upgraded");
    }
    assert_eq!(read_record(&backing, Record::VolumeConfig)["format"], 2);
    assert_eq!(read_record(&backing, Record::KeyStore)["format"], 2);
    assert_eq!(fs::read(backing.join(".cmkfs.dirid")).unwrap().len(), 48);
    assert_eq!(
        get_xattr(&backing).unwrap(),
        fs::read(backing.join(".cmkfs.dirid")).unwrap()
    );
    // And it still reads, through the core too, and fsck finds it clean.
    let vol = Volume::open(
        &backing,
        ServiceKey::load(&key).unwrap(),
        &OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(vol.config().format, 2);
    let root = vol.root().unwrap();
    let f = vol.open_file(&root, OsStr::new("hello.txt")).unwrap();
    assert!(vol.read(&f, 0, 4096).unwrap().starts_with(b"Hello"));
    drop(vol);
    let o = fsck(&backing, &key, &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
}
