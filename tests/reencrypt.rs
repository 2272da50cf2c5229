//! `cmkfs reencrypt`: after `key rotate --data-key`, existing files move to the newest data
//! key online (open handles keep working) or offline, resumably, with content, xattrs and
//! symlinks intact.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use common::{TestVolume, bin, run_ok};

/// Data-key epochs named by the headers of all regular backing files.
fn header_epochs(backing: &Path) -> Vec<u32> {
    common::backing_files(backing)
        .into_iter()
        .filter(|p| {
            !p.to_string_lossy().contains("/.cmkfs")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .filter(|p| p.symlink_metadata().map(|m| m.is_file()).unwrap_or(false))
        .filter_map(|p| {
            let b = fs::read(&p).ok()?;
            (b.len() >= 32 && &b[..4] == b"CMKF")
                .then(|| u32::from_le_bytes([b[12], b[13], b[14], b[15]]))
        })
        .collect()
}

fn contents(v: &TestVolume) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, size) in [
        ("empty", 0usize),
        ("one", 1),
        ("block", 4096),
        ("big", 300_000),
        ("d/nested", 10_000),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + name.len()) as u8).collect();
        out.push((name.to_string(), data));
    }
    fs::create_dir_all(v.p("d")).unwrap();
    for (n, d) in &out {
        fs::write(v.p(n), d).unwrap();
    }
    out
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = common::cstr(p);
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

fn get_xattr(p: &Path, name: &str) -> Vec<u8> {
    let c = common::cstr(p);
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "getxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf
}

#[test]
fn online_reencrypt_moves_files_to_the_new_key_and_keeps_open_handles_working() {
    let mut v = TestVolume::new();
    let files = contents(&v);
    set_xattr(&v.p("big"), "user.color", b"blue");
    std::os::unix::fs::symlink("d/nested", v.p("link")).unwrap();
    let mut held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.p("big"))
        .unwrap();
    assert!(header_epochs(&v.backing()).iter().all(|e| *e == 0));

    run_ok(
        Command::new(bin())
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--data-key"),
    );
    let out = run_ok(
        Command::new(bin())
            .arg("reencrypt")
            .arg(v.mnt())
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(r["reencrypted"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
    let epochs = header_epochs(&v.backing());
    assert!(
        !epochs.is_empty() && epochs.iter().all(|e| *e == 1),
        "headers after reencrypt: {epochs:?}"
    );

    for (n, d) in &files {
        let got = fs::read(v.p(n)).unwrap();
        let first_diff = got.iter().zip(d.iter()).position(|(a, b)| a != b);
        assert!(
            got == *d,
            "{n} after reencrypt: {} bytes read, {} expected, first difference at {first_diff:?}",
            got.len(),
            d.len()
        );
    }
    assert_eq!(get_xattr(&v.p("big"), "user.color"), b"blue");
    assert_eq!(fs::read_link(v.p("link")).unwrap(), Path::new("d/nested"));
    // The handle opened before keeps reading and writing the (new) file.
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut first = vec![0u8; 100];
    held.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &files[3].1[..100]);
    held.seek(SeekFrom::Start(5)).unwrap();
    held.write_all(b"WRITTEN-AFTER").unwrap();
    held.sync_all().unwrap();
    drop(held);
    let mut expect = files[3].1.clone();
    expect[5..18].copy_from_slice(b"WRITTEN-AFTER");
    assert_eq!(fs::read(v.p("big")).unwrap(), expect);

    // Resumable and idempotent: a second run has nothing to do.
    let out = run_ok(
        Command::new(bin())
            .arg("reencrypt")
            .arg(v.mnt())
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["reencrypted"], 0, "{r}");
    v.remount();
    assert_eq!(fs::read(v.p("big")).unwrap(), expect);
    assert_eq!(fs::read(v.p("d/nested")).unwrap(), files[4].1);
    assert_eq!(get_xattr(&v.p("big"), "user.color"), b"blue");
}

#[test]
fn offline_reencrypt_of_backing_removes_crash_leftovers() {
    let mut v = TestVolume::new();
    let files = contents(&v);
    run_ok(
        Command::new(bin())
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--data-key"),
    );
    v.umount();
    fs::write(
        v.backing().join(".tmp.reenc.0123456789abcdef"),
        b"half-written leftover",
    )
    .unwrap();
    let out = run_ok(
        Command::new(bin())
            .arg("reencrypt")
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["stale_temp_files_removed"], 1, "{r}");
    assert!(header_epochs(&v.backing()).iter().all(|e| *e == 1));
    assert!(!v.backing().join(".tmp.reenc.0123456789abcdef").exists());
    v.mount();
    for (n, d) in &files {
        assert_eq!(&fs::read(v.p(n)).unwrap(), d, "{n}");
    }
    let mut f = fs::File::create(v.p("after")).unwrap();
    f.write_all(b"new file on the new key").unwrap();
    drop(f);
    assert_eq!(fs::read(v.p("after")).unwrap(), b"new file on the new key");
}
