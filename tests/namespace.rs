//! Namespace consistency: inodes reached through cached dentries after renames, links and
//! unlinks; long (side-file) names; no backing leftovers after deletes.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};

#[test]
fn inode_reached_after_parent_rename() {
    let mut v = TestVolume::new();
    fs::create_dir_all(v.p("x/y")).unwrap();
    fs::write(v.p("x/y/z"), b"deep file").unwrap();
    // warm the kernel's dentry/attr caches, then rename an ancestor
    let ino = fs::metadata(v.p("x/y/z")).unwrap().ino();
    let held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.p("x/y/z"))
        .unwrap();
    fs::rename(v.p("x"), v.p("w")).unwrap();
    assert_eq!(
        fs::read(v.p("w/y/z")).unwrap(),
        b"deep file",
        "read via new path right after rename"
    );
    assert_eq!(fs::metadata(v.p("w/y/z")).unwrap().ino(), ino);
    assert_eq!(errno(&fs::metadata(v.p("x/y/z"))), Some(libc::ENOENT));
    // the descriptor opened before the rename keeps working, for data and metadata
    held.write_all_at(b"DEEP", 0).unwrap();
    held.set_len(20).unwrap();
    assert_eq!(held.metadata().unwrap().len(), 20);
    assert_eq!(
        fs::read(v.p("w/y/z")).unwrap(),
        b"DEEP file\0\0\0\0\0\0\0\0\0\0\0"
    );
    // new entries created in the renamed directory land in the right place
    fs::write(v.p("w/y/new"), b"n").unwrap();
    fs::rename(v.p("w/y"), v.p("top")).unwrap();
    let mut names: Vec<String> = fs::read_dir(v.p("top"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["new", "z"]);
    drop(held);
    v.remount();
    assert_eq!(
        fs::read(v.p("top/z")).unwrap(),
        b"DEEP file\0\0\0\0\0\0\0\0\0\0\0"
    );
    assert_eq!(fs::read(v.p("top/new")).unwrap(), b"n");
    assert_eq!(fs::read_dir(v.p("w")).unwrap().count(), 0);
}

#[test]
fn hard_link_survives_unlink_of_other_name() {
    // Unlinking the most recently created link must not make the inode unreachable through its
    // other, still cached, names (getattr and open go by inode, not by a remembered path).
    let v = TestVolume::new();
    fs::write(v.p("orig"), b"shared").unwrap();
    fs::create_dir(v.p("sub")).unwrap();
    fs::hard_link(v.p("orig"), v.p("sub/link2")).unwrap();
    fs::remove_file(v.p("sub/link2")).unwrap();
    let m =
        fs::metadata(v.p("orig")).expect("stat of remaining name right after unlinking the other");
    assert_eq!(m.nlink(), 1);
    assert_eq!(
        fs::read(v.p("orig")).expect("open of remaining name"),
        b"shared"
    );
    // and the same with a rename of one link
    fs::hard_link(v.p("orig"), v.p("sub/l3")).unwrap();
    fs::rename(v.p("sub/l3"), v.p("sub/l4")).unwrap();
    assert_eq!(
        fs::read(v.p("orig")).expect("open orig after renaming the other link"),
        b"shared"
    );
    assert_eq!(fs::read(v.p("sub/l4")).unwrap(), b"shared");
    fs::remove_file(v.p("sub/l4")).unwrap();
    assert_eq!(
        fs::read(v.p("orig")).expect("open orig after unlinking the renamed link"),
        b"shared"
    );
    // rename onto another link of the same inode is a no-op: both names stay
    fs::hard_link(v.p("orig"), v.p("twin")).unwrap();
    fs::rename(v.p("orig"), v.p("twin")).unwrap();
    assert_eq!(fs::read(v.p("orig")).unwrap(), b"shared");
    assert_eq!(fs::read(v.p("twin")).unwrap(), b"shared");
    // O_TRUNC through one name empties the other
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(v.p("twin"))
        .unwrap();
    assert_eq!(fs::read(v.p("orig")).unwrap(), b"");
}

#[test]
fn unlinked_open_file_and_name_reuse() {
    let v = TestVolume::new();
    fs::write(v.p("f"), b"old content").unwrap();
    let mut old = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.p("f"))
        .unwrap();
    fs::remove_file(v.p("f")).unwrap();
    fs::write(v.p("f"), b"new").unwrap();
    // the old descriptor still reads and writes the old (unlinked) file
    let mut s = String::new();
    old.read_to_string(&mut s).unwrap();
    assert_eq!(s, "old content");
    old.write_all_at(b"OLD", 0).unwrap();
    old.set_len(5).unwrap();
    assert_eq!(old.metadata().unwrap().len(), 5);
    old.seek(SeekFrom::Start(0)).unwrap();
    s.clear();
    old.read_to_string(&mut s).unwrap();
    assert_eq!(s, "OLD c");
    assert_eq!(
        fs::read(v.p("f")).unwrap(),
        b"new",
        "new file under the reused name"
    );
    drop(old);
    assert_eq!(fs::read(v.p("f")).unwrap(), b"new");
    let names: Vec<_> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"]);
}

#[test]
fn long_names_listing_and_side_files() {
    let mut v = TestVolume::new();
    fs::create_dir(v.p("d")).unwrap();
    let bdir = new_entry(&v.backing(), &[]);
    // names of 150..=255 bytes: their encodings exceed 255 and need .L/.N side files
    let names: Vec<String> = (0..300)
        .map(|i| format!("{i:04}-{}", "long".repeat(70))[..(150 + i % 106)].to_string())
        .collect();
    for n in &names {
        fs::write(v.p("d").join(n), n.as_bytes()).unwrap();
    }
    let list = |v: &TestVolume| {
        let mut got: Vec<String> = fs::read_dir(v.p("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        got
    };
    let mut want = names.clone();
    want.sort();
    assert_eq!(list(&v), want);
    let long_entries = fs::read_dir(&bdir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .as_bytes()
                .starts_with(b".L")
        })
        .count();
    assert!(
        long_entries > 0,
        "no .L entries in the backing dir for long names"
    );
    // rename long -> long, long -> short, short -> long, unlink long
    fs::rename(v.p("d").join(&names[0]), v.p("d").join(&names[1])).unwrap();
    fs::rename(v.p("d").join(&names[2]), v.p("d/short")).unwrap();
    fs::write(v.p("d/s2"), b"s2").unwrap();
    let renamed = format!("{}-renamed", &names[3][..140]);
    fs::rename(v.p("d/s2"), v.p("d").join(&renamed)).unwrap();
    fs::remove_file(v.p("d").join(&names[4])).unwrap();
    v.remount();
    let got = list(&v);
    assert!(!got.contains(&names[0]) && got.contains(&names[1]) && !got.contains(&names[2]));
    assert!(
        !got.contains(&names[4]) && got.contains(&renamed) && got.contains(&"short".to_string())
    );
    assert_eq!(got.len(), 300 - 2 + 1, "entry count");
    assert_eq!(
        fs::read(v.p("d").join(&names[1])).unwrap(),
        names[0].as_bytes()
    );
    assert_eq!(fs::read(v.p("d/short")).unwrap(), names[2].as_bytes());
    assert_eq!(fs::read(v.p("d").join(&renamed)).unwrap(), b"s2");
    for n in &names[5..] {
        assert_eq!(
            fs::read(v.p("d").join(n)).unwrap(),
            n.as_bytes(),
            "content of {n}"
        );
    }
}

#[test]
fn deletes_leave_no_backing_garbage() {
    let mut v = TestVolume::new();
    let before: Vec<_> = walk(&v.backing());
    fs::create_dir_all(v.p("a/b/c")).unwrap();
    let long = "L".repeat(250);
    fs::write(v.p("a/b/c/f"), vec![1u8; 100_000]).unwrap();
    fs::write(v.p("a").join(&long), b"long").unwrap();
    fs::create_dir(v.p("a/b").join(&long)).unwrap();
    std::os::unix::fs::symlink("target", v.p("a/link")).unwrap();
    std::os::unix::fs::symlink("t", v.p("a").join(format!("{long}xyzab"))).unwrap();
    let c = cstr(&v.p("a/b/c/f"));
    let n = std::ffi::CString::new("user.x").unwrap();
    cvt(unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"v".as_ptr().cast(), 1, 0) }).unwrap();
    {
        let mut f = File::create(v.p("a/tmp")).unwrap();
        f.write_all(b"temp").unwrap();
    }
    fs::rename(v.p("a/tmp"), v.p("a/b/c/f")).unwrap();
    fs::remove_dir_all(v.p("a")).unwrap();
    assert_eq!(fs::read_dir(v.mnt()).unwrap().count(), 0);
    v.umount();
    let after: Vec<_> = walk(&v.backing());
    let extra: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        extra.is_empty(),
        "backing entries left after deleting everything: {extra:?}"
    );
}

#[test]
fn directory_times_and_create_modes() {
    let v = TestVolume::new();
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    fs::create_dir(v.p("d")).unwrap();
    let old = libc::timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    let c = cstr(&v.p("d"));
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [old, old].as_ptr(), 0) }).unwrap();
    fs::write(v.p("d/new"), b"x").unwrap();
    let m = fs::metadata(v.p("d")).unwrap();
    assert!(
        m.mtime() > 1_000_000_000,
        "directory mtime not updated by a create in it"
    );
    // UTIME_OMIT keeps, UTIME_NOW sets
    let f = cstr(&v.p("d/new"));
    let set = libc::timespec {
        tv_sec: 1_234_567_890,
        tv_nsec: 5,
    };
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, f.as_ptr(), [set, set].as_ptr(), 0) }).unwrap();
    let omit_now = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, f.as_ptr(), omit_now.as_ptr(), 0) }).unwrap();
    let m = fs::metadata(v.p("d/new")).unwrap();
    assert_eq!(
        (m.atime(), m.atime_nsec()),
        (1_234_567_890, 5),
        "UTIME_OMIT changed atime"
    );
    assert!(
        m.mtime() > 1_700_000_000,
        "UTIME_NOW did not set mtime: {}",
        m.mtime()
    );
    // creation modes honour the requested mode (umask of this process applies)
    let umask = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(umask) };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o604)
        .open(v.p("m604"))
        .unwrap();
    fs::DirBuilder::new()
        .mode(0o751)
        .create(v.p("d751"))
        .unwrap();
    assert_eq!(
        fs::metadata(v.p("m604")).unwrap().mode() & 0o777,
        0o604 & !umask
    );
    assert_eq!(
        fs::metadata(v.p("d751")).unwrap().mode() & 0o777,
        0o751 & !umask
    );
    // special bits survive chmod (as root: setuid/setgid are not dropped)
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(v.p("d751"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(v.p("m604"), fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(
        fs::metadata(v.p("d751")).unwrap().mode() & 0o7777,
        0o1777,
        "sticky dir mode"
    );
    assert_eq!(
        fs::metadata(v.p("m604")).unwrap().mode() & 0o7777,
        0o6755,
        "setuid/setgid file mode"
    );
}

#[test]
fn readdir_stable_while_deleting() {
    // POSIX: an entry neither removed nor added during a directory scan is returned exactly
    // once. Delete already-returned entries in the middle of a scan of a big directory.
    let v = TestVolume::new();
    fs::create_dir(v.p("d")).unwrap();
    let all: Vec<String> = (0..3000).map(|i| format!("entry-{i:05}")).collect();
    for n in &all {
        File::create(v.p("d").join(n)).unwrap();
    }
    let mut seen: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut rd = fs::read_dir(v.p("d")).unwrap();
    for e in rd.by_ref().take(1000) {
        seen.push(e.unwrap().file_name().into_string().unwrap());
    }
    // remove 800 of the entries already returned, and create some new ones
    for n in seen.iter().take(800) {
        fs::remove_file(v.p("d").join(n)).unwrap();
        removed.push(n.clone());
    }
    for i in 0..100 {
        File::create(v.p("d").join(format!("added-{i}"))).unwrap();
    }
    for e in rd {
        seen.push(e.unwrap().file_name().into_string().unwrap());
    }
    let mut counts = std::collections::HashMap::new();
    for n in &seen {
        *counts.entry(n.as_str()).or_insert(0) += 1;
    }
    let missing: Vec<&String> = all
        .iter()
        .filter(|n| !counts.contains_key(n.as_str()))
        .collect();
    let dups: Vec<(&&str, &i32)> = counts
        .iter()
        .filter(|(n, c)| **c > 1 && !n.starts_with("added-"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} entries never returned by the scan, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        dups.is_empty(),
        "entries returned twice: {:?}",
        &dups[..dups.len().min(5)]
    );
    // and a fresh listing is exact
    let mut now: Vec<String> = fs::read_dir(v.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    now.sort();
    let mut want: Vec<String> = all
        .iter()
        .filter(|n| !removed.contains(n))
        .cloned()
        .chain((0..100).map(|i| format!("added-{i}")))
        .collect();
    want.sort();
    assert_eq!(now, want);
}

#[test]
fn odd_names_round_trip() {
    // Names that look like backing metadata or need escaping are ordinary plaintext names.
    let mut v = TestVolume::new();
    let names = [
        ".cmkfs",
        ".cmkfs.dirid",
        ".Labc",
        ".Nabc",
        ".hidden",
        "..dots",
        "...",
        "-",
        " ",
        "a b",
        "with\nnewline",
        "tab\there",
        "back\\slash",
        "ünïcödé",
        "😀",
        "\u{1}ctl",
        "=",
        "a=b+c",
    ];
    for (i, n) in names.iter().enumerate() {
        fs::write(v.p(n), format!("content {i}")).unwrap_or_else(|e| panic!("create {n:?}: {e}"));
    }
    fs::create_dir(v.p(".cmkfs-dir")).unwrap();
    fs::write(v.p(".cmkfs-dir/.cmkfs.dirid"), b"inner").unwrap();
    let check = |v: &TestVolume| {
        let mut got: Vec<String> = fs::read_dir(v.mnt())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        let mut want: Vec<String> = names
            .iter()
            .map(|s| s.to_string())
            .chain([".cmkfs-dir".to_string()])
            .collect();
        want.sort();
        assert_eq!(got, want);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(
                fs::read_to_string(v.p(n)).unwrap(),
                format!("content {i}"),
                "content of {n:?}"
            );
        }
        assert_eq!(fs::read(v.p(".cmkfs-dir/.cmkfs.dirid")).unwrap(), b"inner");
    };
    check(&v);
    v.remount();
    check(&v);
    // the real metadata was not disturbed
    assert!(v.backing().join(".cmkfs/volume.json").is_file());
    assert_eq!(
        fs::metadata(v.backing().join(".cmkfs.dirid"))
            .unwrap()
            .len(),
        cmkfs::format::DIRID_LEN as u64
    );
}
