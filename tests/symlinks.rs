//! Symlink targets up to PATH_MAX − 1 = 4,095 bytes: the same lengths are tried on a plain
//! directory on the same disk (the oracle) and in the mount; targets too long for the backing
//! symlink go to an encrypted side record (format 2), which hard links share and which goes
//! away with the last link; fsck knows the records (no false alarms, orphans reported).

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A target of `len` bytes that is a plausible path and differs for every `seed`.
fn target(len: usize, seed: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(len);
    let mut i = 0u32;
    while t.len() < len {
        if t.len() % 50 == 49 {
            t.push(b'/');
        } else {
            t.push(b'a' + ((i.wrapping_mul(7).wrapping_add(seed as u32)) % 26) as u8);
        }
        i += 1;
    }
    t
}

/// symlink(2) with a raw target; the errno on failure.
fn symlink(t: &[u8], link: &Path) -> Result<(), i32> {
    let mut tc = t.to_vec();
    tc.push(0);
    let l = cstr(link);
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::symlink(tc.as_ptr().cast(), l.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// readlink(2) into a buffer larger than PATH_MAX: the exact bytes.
fn readlink(link: &Path) -> Result<Vec<u8>, i32> {
    let l = cstr(link);
    let mut buf = vec![0u8; 8192];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::readlink(l.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn lsize(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().len()
}

fn records(v: &TestVolume) -> Vec<PathBuf> {
    match fs::read_dir(v.backing().join(".cmkfs/links")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn fsck_json(v: &TestVolume) -> Value {
    let o = run(cmkfs()
        .arg("fsck")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.key())
        .arg("--json"));
    serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("fsck --json printed no JSON ({e}): {o:?}"))
}

#[test]
fn targets_up_to_4095_bytes_as_on_ext4() {
    let v = TestVolume::new();
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    for (i, len) in [
        1usize, 100, 3012, 3016, 3017, 3018, 3019, 3100, 4000, 4094, 4095, 4096, 5000,
    ]
    .into_iter()
    .enumerate()
    {
        let t = target(len, i as u8);
        let name = format!("l{len}");
        let want = symlink(&t, &plain.join(&name));
        let got = symlink(&t, &v.p(&name));
        assert_eq!(got, want, "symlink of a {len}-byte target");
        if want.is_err() {
            assert_eq!(want, Err(libc::ENAMETOOLONG), "oracle, {len} bytes");
            assert!(
                fs::symlink_metadata(v.p(&name)).is_err(),
                "{len}: left an entry"
            );
            continue;
        }
        assert_eq!(
            readlink(&v.p(&name)),
            Ok(t.clone()),
            "readlink of {len} bytes"
        );
        assert_eq!(
            lsize(&v.p(&name)),
            lsize(&plain.join(&name)),
            "st_size, {len}"
        );
        // std's read_link and a path walk through the link agree too.
        assert_eq!(
            fs::read_link(v.p(&name)).unwrap().as_os_str().as_bytes(),
            &t[..]
        );
    }
    // Lengths that did not fit inline used side records; the others did not.
    let long = records(&v).len();
    assert_eq!(long, 7, "records for 3017..4095: {:?}", records(&v));
    // No plaintext target (nor a long piece of one) in the backing tree.
    let needle = &target(4095, 10)[1000..1100];
    for p in walk(&v.backing()) {
        let md = fs::symlink_metadata(&p).unwrap();
        let bytes = if md.file_type().is_symlink() {
            fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else if md.is_file() {
            fs::read(&p).unwrap()
        } else {
            continue;
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext target in {}",
            p.display()
        );
    }
    // After a remount (no cache) the same bytes.
    let mut v = v;
    v.remount();
    assert_eq!(readlink(&v.p("l4095")), Ok(target(4095, 10)));
    assert_eq!(lsize(&v.p("l4095")), 4095);
    assert_eq!(readlink(&v.p("l3016")), Ok(target(3016, 3)));
}

#[test]
fn long_targets_with_hard_links_rename_and_unlink() {
    let v = TestVolume::new();
    let t = target(4095, 42);
    symlink(&t, &v.p("a")).unwrap();
    assert_eq!(records(&v).len(), 1);
    // A hard link to the symlink itself (linkat without AT_SYMLINK_FOLLOW).
    let (a, b) = (cstr(&v.p("a")), cstr(&v.p("b")));
    // SAFETY: NUL-terminated paths.
    let r = unsafe { libc::linkat(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(fs::symlink_metadata(v.p("a")).unwrap().len(), 4095);
    assert_eq!(readlink(&v.p("b")), Ok(t.clone()));
    fs::remove_file(v.p("a")).unwrap();
    assert_eq!(records(&v).len(), 1, "record removed while a link remains");
    assert_eq!(readlink(&v.p("b")), Ok(t.clone()));
    // Rename keeps it.
    fs::create_dir(v.p("d")).unwrap();
    fs::rename(v.p("b"), v.p("d/c")).unwrap();
    assert_eq!(readlink(&v.p("d/c")), Ok(t.clone()));
    // Renaming something over it removes its record.
    fs::write(v.p("f"), b"x").unwrap();
    fs::rename(v.p("f"), v.p("d/c")).unwrap();
    assert!(records(&v).is_empty(), "{:?}", records(&v));
    // Unlinking the last link removes it; a long link replacing another keeps only its own.
    symlink(&t, &v.p("x")).unwrap();
    symlink(&target(3500, 1), &v.p("y")).unwrap();
    assert_eq!(records(&v).len(), 2);
    fs::rename(v.p("y"), v.p("x")).unwrap();
    assert_eq!(records(&v).len(), 1);
    assert_eq!(readlink(&v.p("x")), Ok(target(3500, 1)));
    fs::remove_file(v.p("x")).unwrap();
    assert!(records(&v).is_empty(), "{:?}", records(&v));
    // Exchange keeps both.
    symlink(&t, &v.p("p")).unwrap();
    symlink(b"short", &v.p("q")).unwrap();
    let (p, q) = (cstr(&v.p("p")), cstr(&v.p("q")));
    // SAFETY: NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_FDCWD,
            q.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(readlink(&v.p("q")), Ok(t.clone()));
    assert_eq!(readlink(&v.p("p")), Ok(b"short".to_vec()));
    assert_eq!(records(&v).len(), 1);
}

#[test]
fn fsck_knows_long_target_records() {
    let mut v = TestVolume::new();
    symlink(&target(4000, 7), &v.p("long")).unwrap();
    symlink(&target(10, 7), &v.p("short")).unwrap();
    v.umount();
    let j = fsck_json(&v);
    assert_eq!(j["exit_code"].as_i64(), Some(0), "clean volume: {j:#}");
    // An unreferenced record (a crash between writing it and the symlink) is an orphan.
    let rec = records(&v);
    assert_eq!(rec.len(), 1);
    let orphan = rec[0].with_file_name("0123456789abcdef0123456789abcdef");
    fs::copy(&rec[0], &orphan).unwrap();
    let j = fsck_json(&v);
    let found = j["problems"].as_array().unwrap().iter().any(|p| {
        p["code"] == "orphan"
            && p["backing_path"] == ".cmkfs/links/0123456789abcdef0123456789abcdef"
    });
    assert!(found, "{j:#}");
    fs::remove_file(&orphan).unwrap();
    // A damaged record is a symlink problem, and EIO through the mount (never wrong bytes).
    let mut bytes = fs::read(&rec[0]).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    let mut perm = fs::metadata(&rec[0]).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(&rec[0], perm).unwrap();
    fs::write(&rec[0], &bytes).unwrap();
    let j = fsck_json(&v);
    assert_ne!(j["exit_code"].as_i64(), Some(0), "{j:#}");
    assert!(
        j["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "symlink"),
        "{j:#}"
    );
    v.mount();
    assert_eq!(readlink(&v.p("long")), Err(libc::EIO));
    assert_eq!(readlink(&v.p("short")), Ok(target(10, 7)));
}

#[test]
fn reencryption_moves_long_targets_to_the_new_key() {
    let v = TestVolume::new();
    let t = target(4095, 9);
    symlink(&t, &v.p("long")).unwrap();
    let before = records(&v);
    assert_eq!(before.len(), 1);
    run_ok(
        cmkfs()
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--data-key"),
    );
    run_ok(cmkfs().arg("reencrypt").arg(v.mnt()).arg("--json"));
    let after = records(&v);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the record was not rewritten");
    assert_eq!(readlink(&v.p("long")), Ok(t));
}
