//! The committed sample volumes (tests/fixtures/volume-v1, volume-v2 and volume-v2-scopes, made by
//! scripts/make-sample-volume.sh in its format-1 and format-2 versions) must keep reading back
//! exactly: a format change has to be deliberate. A copy of the format-1 volume mounted
//! read-write is upgraded to format 2 and takes format-2 content (a sparse file).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmkfs::keys::ServiceKey;
use cmkfs::volume::{OpenOptions, Volume};

const HELLO: &str = "Hello from the cmkfs v1 sample volume.\n";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies the fixture volume and its key into a temp dir (git does not keep modes).
fn copy_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    copy_fixture_version(dir, "v1")
}

fn copy_fixture_version(dir: &Path, version: &str) -> (PathBuf, PathBuf) {
    let backing = dir.join("backing");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture().join(format!("volume-{version}")))
        .arg(&backing)
        .status()
        .unwrap();
    assert!(st.success());
    let key = dir.join("key");
    fs::copy(fixture().join(format!("volume-{version}.key")), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    (backing, key)
}

fn numbers() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn sample_volume_reads_through_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture(dir.path());
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let vol = Volume::open(&backing, ServiceKey::load(&key).unwrap(), &opts).unwrap();
    assert_eq!(vol.config().format, 1);
    let root = vol.root().unwrap();
    let mut names: Vec<String> = vol
        .read_dir(&root)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    names.sort();
    let long = format!("{}.txt", "L".repeat(200));
    let mut expect = vec![
        "docs".to_string(),
        "grüße-日本.txt".into(),
        "hello.txt".into(),
        "link".into(),
        long.clone(),
    ];
    expect.sort();
    assert_eq!(names, expect);
    let hello = vol.open_file(&root, OsStr::new("hello.txt")).unwrap();
    assert_eq!(vol.read(&hello, 0, 4096).unwrap(), HELLO.as_bytes());
    let long_f = vol.open_file(&root, OsStr::new(&long)).unwrap();
    assert_eq!(vol.read(&long_f, 0, 100).unwrap(), b"long name\n");
    assert_eq!(
        vol.readlink(&root, OsStr::new("link")).unwrap(),
        b"hello.txt"
    );
    let docs = vol.open_subdir(&root, OsStr::new("docs")).unwrap();
    let n = vol.open_file(&docs, OsStr::new("numbers.bin")).unwrap();
    assert_eq!(vol.read(&n, 0, 20_000).unwrap(), numbers());
    let e = vol.open_file(&docs, OsStr::new("empty")).unwrap();
    assert_eq!(vol.read(&e, 0, 10).unwrap(), b"");
}

#[test]
fn sample_volume_mounts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture(dir.path());
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let bin = env!("CARGO_BIN_EXE_cmkfs");
    let out = Command::new(bin)
        .args([
            "mount",
            backing.to_str().unwrap(),
            mnt.to_str().unwrap(),
            "--service-key",
            key.to_str().unwrap(),
            "-o",
            "ro",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = || {
        assert_eq!(fs::read_to_string(mnt.join("hello.txt")).unwrap(), HELLO);
        assert_eq!(fs::read(mnt.join("docs/numbers.bin")).unwrap(), numbers());
        assert_eq!(
            fs::metadata(mnt.join("docs/numbers.bin")).unwrap().len(),
            10_000
        );
        assert_eq!(
            fs::read_to_string(mnt.join("grüße-日本.txt")).unwrap(),
            "unicode\n"
        );
        assert_eq!(
            fs::read_link(mnt.join("link")).unwrap(),
            Path::new("hello.txt")
        );
        assert_eq!(fs::read_to_string(mnt.join("link")).unwrap(), HELLO);
        let err = fs::write(mnt.join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    };
    let result = std::panic::catch_unwind(check);
    let um = Command::new(bin)
        .args(["umount", mnt.to_str().unwrap()])
        .output()
        .unwrap();
    result.unwrap();
    assert!(
        um.status.success(),
        "umount failed: {}",
        String::from_utf8_lossy(&um.stderr)
    );
}

const HELLO_V2: &str = "Hello from the cmkfs v2 sample volume.\n";

/// `sparse.bin` of the format-2 sample: 4 MiB, 64 KiB of data at 1 MiB with 16 KiB punched
/// out of it, "tail\n" at the end, holes elsewhere.
fn sparse_content() -> Vec<u8> {
    let mut v = vec![0u8; 4 << 20];
    for i in 0..65536usize {
        v[(1 << 20) + i] = (i % 253) as u8;
    }
    v[(1 << 20) + 16384..(1 << 20) + 32768].fill(0);
    let n = v.len();
    v[n - 5..].copy_from_slice(b"tail\n");
    v
}

fn mount(backing: &Path, key: &Path, mnt: &Path, opts: &[&str]) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cmkfs"));
    c.arg("mount")
        .arg(backing)
        .arg(mnt)
        .arg("--service-key")
        .arg(key);
    if !opts.is_empty() {
        c.arg("-o").arg(opts.join(","));
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umount(mnt: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_cmkfs"))
        .arg("umount")
        .arg(mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `check` on the mount, unmounting whatever happens.
fn with_mount(backing: &Path, key: &Path, mnt: &Path, opts: &[&str], check: impl FnOnce()) {
    mount(backing, key, mnt, opts);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    umount(mnt);
    result.unwrap();
}

fn seek_data(p: &Path, off: i64) -> i64 {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(p).unwrap();
    // SAFETY: plain syscall on an open descriptor.
    unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) }
}

#[test]
fn format_2_sample_volume_mounts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture_version(dir.path(), "v2");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    // Read-only first (nothing may be written), then read-write (the clone lacks the
    // directory ids' xattr copies, which git does not carry: they are restored).
    for opts in [&["ro"][..], &[][..]] {
        with_mount(&backing, &key, &mnt, opts, || {
            assert_eq!(fs::read_to_string(mnt.join("hello.txt")).unwrap(), HELLO_V2);
            assert_eq!(fs::read(mnt.join("docs/numbers.bin")).unwrap(), numbers());
            assert_eq!(fs::read(mnt.join("docs/empty")).unwrap(), b"");
            let long = format!("{}.txt", "L".repeat(200));
            assert_eq!(fs::read(mnt.join(&long)).unwrap(), b"long name\n");
            assert_eq!(
                fs::read_to_string(mnt.join("grüße-日本.txt")).unwrap(),
                "unicode\n"
            );
            assert_eq!(fs::read_to_string(mnt.join("link")).unwrap(), HELLO_V2);
            let target = fs::read_link(mnt.join("long-link")).unwrap();
            assert_eq!(target.as_os_str().len(), 4003, "long symlink target length");
            assert!(target.to_string_lossy().ends_with("t/end"));
            assert_eq!(fs::read(mnt.join("sparse.bin")).unwrap(), sparse_content());
            assert_eq!(seek_data(&mnt.join("sparse.bin"), 0), 1 << 20);
        });
    }
}

#[test]
fn format_1_sample_volume_upgrades_on_a_writable_mount_and_takes_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture(dir.path());
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    with_mount(&backing, &key, &mnt, &[], || {
        assert_eq!(fs::read_to_string(mnt.join("hello.txt")).unwrap(), HELLO);
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(mnt.join("sparse"))
            .unwrap();
        f.set_len(1 << 30).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"end", (1 << 30) - 3).unwrap();
    });
    let cfg = fs::read(backing.join(".cmkfs/volume.json")).unwrap();
    assert!(
        cfg.starts_with(b"cmkfs-meta 2 "),
        "volume.json not upgraded"
    );
    with_mount(&backing, &key, &mnt, &["ro"], || {
        assert_eq!(fs::read_to_string(mnt.join("hello.txt")).unwrap(), HELLO);
        assert_eq!(fs::read(mnt.join("docs/numbers.bin")).unwrap(), numbers());
        let f = fs::File::open(mnt.join("sparse")).unwrap();
        let mut buf = vec![1u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (1 << 30) - 8).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0end");
        assert_eq!(seek_data(&mnt.join("sparse"), 0), (1 << 30) - 4096);
    });
}

/// The committed sample with key scopes (scripts/make-scopes-sample.sh): a scope's files
/// read under its own key, a locked scope stays locked (kept in the key store), and the
/// offline listing finds both scope roots.
#[test]
fn sample_volume_with_key_scopes_mounts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, key) = copy_fixture_version(dir.path(), "v2-scopes");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let errno = |p: &Path| fs::read(p).err().and_then(|e| e.raw_os_error());
    for opts in [&["ro"][..], &[][..]] {
        with_mount(&backing, &key, &mnt, opts, || {
            assert_eq!(fs::read(mnt.join("root.txt")).unwrap(), b"the operator\n");
            assert_eq!(
                fs::read(mnt.join("customer/contract.txt")).unwrap(),
                b"customer's contract\n"
            );
            assert_eq!(
                fs::read(mnt.join("customer/sub/deep.txt")).unwrap(),
                b"deep\n"
            );
            assert_eq!(
                errno(&mnt.join("offboarded/old.txt")),
                Some(libc::EKEYREVOKED)
            );
        });
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cmkfs"))
        .args(["scope", "list"])
        .arg(&backing)
        .arg("--service-key")
        .arg(&key)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scopes = v["scopes"].as_array().unwrap();
    let root_of = |r: &str| scopes.iter().find(|s| s["root"] == r).cloned();
    assert_eq!(scopes.len(), 3, "{v}");
    assert_eq!(root_of("/customer").unwrap()["state"], "usable");
    assert_eq!(root_of("/customer").unwrap()["files"], 2);
    assert_eq!(root_of("/offboarded").unwrap()["state"], "locked");
}
