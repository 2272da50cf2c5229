//! The committed sample volume (tests/fixtures/volume-v1, made by scripts/make-sample-volume.sh)
//! must keep reading back exactly: a format change has to be deliberate.

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
    let backing = dir.join("backing");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture().join("volume-v1"))
        .arg(&backing)
        .status()
        .unwrap();
    assert!(st.success());
    let key = dir.join("key");
    fs::copy(fixture().join("volume-v1.key"), &key).unwrap();
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
