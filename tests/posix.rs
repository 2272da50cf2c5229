//! POSIX semantics on a mounted volume, checked on content and errno.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

const BS: usize = 4096;

fn pwrite(f: &File, off: u64, data: &[u8]) {
    f.write_all_at(data, off)
        .unwrap_or_else(|e| panic!("pwrite at {off} len {}: {e}", data.len()));
}

fn pread(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], off + done as u64).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

#[test]
fn create_write_read_append_trunc_excl() {
    let v = TestVolume::new();
    let p = v.p("f");
    {
        let mut f = File::create(&p).unwrap();
        f.write_all(b"hello ").unwrap();
        f.write_all(b"world").unwrap();
    }
    assert_eq!(fs::read(&p).unwrap(), b"hello world");
    // O_APPEND: writes go to the end even after a seek
    {
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"!!").unwrap();
    }
    assert_eq!(fs::read(&p).unwrap(), b"hello world!!");
    // read via seek
    {
        let mut f = File::open(&p).unwrap();
        f.seek(SeekFrom::Start(6)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "world!!");
    }
    // O_TRUNC
    {
        let f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);
    }
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);
    assert_eq!(fs::read(&p).unwrap(), b"");
    // O_EXCL
    let r = OpenOptions::new().write(true).create_new(true).open(&p);
    assert_eq!(errno(&r), Some(libc::EEXIST), "O_EXCL on existing file");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(v.p("g"))
        .unwrap();
    // O_TRUNC on a big file then write smaller content: no stale tail
    fs::write(&p, vec![7u8; 3 * BS + 5]).unwrap();
    fs::write(&p, b"short").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"short");
    // open non-existing file without O_CREAT
    assert_eq!(errno(&File::open(v.p("nope"))), Some(libc::ENOENT));
}

#[test]
fn pread_pwrite_across_block_boundaries() {
    let mut v = TestVolume::new();
    let p = v.p("f");
    let mut rng = Rng::new(1);
    let mut model = rng.bytes(10_000);
    fs::write(&p, &model).unwrap();
    let f = rw(&p);
    let cases: &[(u64, usize)] = &[
        (4090, 20),
        (0, 1),
        (4095, 1),
        (4096, 1),
        (8191, 2),
        (4097, 4096),
        (9990, 10),
        (9999, 5),
        (3, 12_000),
    ];
    for &(off, len) in cases {
        let data = rng.bytes(len);
        pwrite(&f, off, &data);
        let end = off as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[off as usize..end].copy_from_slice(&data);
        assert_eq!(
            pread(&f, off, len),
            data,
            "pread after pwrite at {off} len {len}"
        );
        assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
    }
    // odd reads
    for &(off, len) in &[(4090u64, 20usize), (1, 8191), (4096, 4096), (11_990, 100)] {
        let end = (off as usize + len).min(model.len());
        assert_eq!(
            pread(&f, off, len),
            model[off as usize..end],
            "pread at {off} len {len}"
        );
    }
    // far write leaves a hole of zeros
    pwrite(&f, 1_000_000, b"tail!");
    model.resize(1_000_000, 0);
    model.extend_from_slice(b"tail!");
    assert_eq!(f.metadata().unwrap().len(), 1_000_005);
    assert_eq!(pread(&f, 500_000, 10), vec![0u8; 10]);
    assert_eq!(pread(&f, 999_998, 100), b"\0\0tail!".to_vec());
    // reading past EOF gives 0 bytes
    assert_eq!(pread(&f, 2_000_000, 10), Vec::<u8>::new());
    drop(f);
    assert_bytes_eq(&fs::read(&p).unwrap(), &model, "whole file");
    v.remount();
    assert_bytes_eq(&fs::read(&p).unwrap(), &model, "whole file after remount");
}

#[test]
fn truncate_up_down_ftruncate_fallocate() {
    let mut v = TestVolume::new();
    let p = v.p("t");
    let mut rng = Rng::new(2);
    let data = rng.bytes(3 * BS + 100);
    fs::write(&p, &data).unwrap();
    let f = rw(&p);
    // down, mid-block
    f.set_len(5000).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 5000);
    assert_bytes_eq(
        &fs::read(&p).unwrap(),
        &data[..5000],
        "after ftruncate down",
    );
    // up: the old bytes beyond 5000 must not come back
    f.set_len(20_000).unwrap();
    let got = fs::read(&p).unwrap();
    assert_eq!(got.len(), 20_000);
    assert_bytes_eq(&got[..5000], &data[..5000], "prefix after truncate up");
    assert!(
        got[5000..].iter().all(|&b| b == 0),
        "truncate up did not read zeros"
    );
    // path truncate() down to a block boundary, then up by one
    let c = cstr(&p);
    cvt(unsafe { libc::truncate(c.as_ptr(), BS as libc::off_t) }).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), BS as u64);
    cvt(unsafe { libc::truncate(c.as_ptr(), BS as libc::off_t + 1) }).unwrap();
    let got = fs::read(&p).unwrap();
    assert_bytes_eq(&got[..BS], &data[..BS], "after truncate to block boundary");
    assert_eq!(got[BS], 0);
    // to zero and back
    f.set_len(0).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"");
    f.set_len(10).unwrap();
    assert_eq!(fs::read(&p).unwrap(), vec![0u8; 10]);
    // fallocate grows the file with zeros, keeps data
    pwrite(&f, 0, b"abc");
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 100_000) }).expect("fallocate(mode 0)");
    assert_eq!(f.metadata().unwrap().len(), 100_000, "size after fallocate");
    let got = fs::read(&p).unwrap();
    assert_eq!(&got[..3], b"abc");
    assert!(
        got[3..].iter().all(|&b| b == 0),
        "fallocate region not zero"
    );
    // FALLOC_FL_KEEP_SIZE must not change the size if supported
    let r = cvt(unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 200_000) });
    if r.is_ok() {
        assert_eq!(
            f.metadata().unwrap().len(),
            100_000,
            "KEEP_SIZE changed size"
        );
    } else {
        eprintln!("fallocate KEEP_SIZE: {r:?} (not required)");
    }
    drop(f);
    v.remount();
    let got = fs::read(&p).unwrap();
    assert_eq!(got.len(), 100_000);
    assert_eq!(&got[..3], b"abc");
    assert!(got[3..].iter().all(|&b| b == 0));
}

#[test]
fn mkdir_rmdir_unlink() {
    let v = TestVolume::new();
    fs::create_dir(v.p("d")).unwrap();
    assert_eq!(errno(&fs::create_dir(v.p("d"))), Some(libc::EEXIST));
    fs::write(v.p("d/f"), b"x").unwrap();
    assert_eq!(
        errno(&fs::remove_dir(v.p("d"))),
        Some(libc::ENOTEMPTY),
        "rmdir non-empty"
    );
    assert_eq!(errno(&fs::remove_dir(v.p("d/f"))), Some(libc::ENOTDIR));
    assert_eq!(errno(&fs::remove_file(v.p("d"))), Some(libc::EISDIR));
    fs::remove_file(v.p("d/f")).unwrap();
    assert_eq!(
        errno(&fs::metadata(v.p("d/f"))),
        Some(libc::ENOENT),
        "stat after unlink"
    );
    assert_eq!(
        errno(&File::open(v.p("d/f"))),
        Some(libc::ENOENT),
        "open after unlink"
    );
    assert_eq!(errno(&fs::remove_file(v.p("d/f"))), Some(libc::ENOENT));
    fs::remove_dir(v.p("d")).unwrap();
    assert_eq!(errno(&fs::metadata(v.p("d"))), Some(libc::ENOENT));
    // nested dirs and recreation with the same name
    fs::create_dir_all(v.p("a/b/c/d")).unwrap();
    fs::write(v.p("a/b/c/d/f"), b"deep").unwrap();
    fs::remove_dir_all(v.p("a")).unwrap();
    fs::create_dir_all(v.p("a/b")).unwrap();
    assert_eq!(
        fs::read_dir(v.p("a/b")).unwrap().count(),
        0,
        "recreated dir not empty"
    );
    // unlink while open: data still readable through the descriptor
    fs::write(v.p("open"), b"still here").unwrap();
    let mut f = File::open(v.p("open")).unwrap();
    fs::remove_file(v.p("open")).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
}

#[test]
fn readdir_5000_files() {
    let mut v = TestVolume::new();
    fs::create_dir(v.p("many")).unwrap();
    let mut want: Vec<String> = (0..5000)
        .map(|i| format!("file-{i:05}-{}", "x".repeat(i % 40)))
        .collect();
    for n in &want {
        File::create(v.p("many").join(n)).unwrap();
    }
    want.sort();
    let list = |v: &TestVolume| {
        let mut got: Vec<String> = fs::read_dir(v.p("many"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        got
    };
    assert_eq!(list(&v), want);
    v.remount();
    assert_eq!(list(&v), want, "after remount");
}

#[test]
fn rename_semantics() {
    let mut v = TestVolume::new();
    fs::write(v.p("a"), b"AAA").unwrap();
    fs::write(v.p("b"), b"BBBBBB").unwrap();
    fs::rename(v.p("a"), v.p("b")).unwrap();
    assert_eq!(errno(&fs::metadata(v.p("a"))), Some(libc::ENOENT));
    assert_eq!(fs::read(v.p("b")).unwrap(), b"AAA");
    // across directories, file and directory with content
    fs::create_dir_all(v.p("d1/sub")).unwrap();
    fs::create_dir(v.p("d2")).unwrap();
    fs::write(v.p("d1/sub/inner"), b"inner").unwrap();
    fs::rename(v.p("b"), v.p("d1/moved")).unwrap();
    fs::rename(v.p("d1/moved"), v.p("d2/moved2")).unwrap();
    fs::rename(v.p("d1/sub"), v.p("d2/sub2")).unwrap();
    assert_eq!(fs::read(v.p("d2/moved2")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.p("d2/sub2/inner")).unwrap(), b"inner");
    assert_eq!(errno(&fs::metadata(v.p("d1/sub"))), Some(libc::ENOENT));
    // rename dir over a non-empty dir fails
    fs::create_dir(v.p("e1")).unwrap();
    fs::create_dir(v.p("e2")).unwrap();
    fs::write(v.p("e2/x"), b"x").unwrap();
    let r = fs::rename(v.p("e1"), v.p("e2"));
    assert!(
        matches!(errno(&r), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)),
        "rename over non-empty dir: {r:?}"
    );
    v.remount();
    assert_eq!(fs::read(v.p("d2/moved2")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.p("d2/sub2/inner")).unwrap(), b"inner");
    assert_eq!(fs::read_dir(v.p("d1")).unwrap().count(), 0);
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<libc::c_long> {
    let (a, b) = (cstr(from), cstr(to));
    cvt_l(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    })
}

#[test]
fn renameat2_noreplace_and_exchange() {
    let mut v = TestVolume::new();
    fs::write(v.p("a"), b"content a").unwrap();
    fs::create_dir(v.p("d")).unwrap();
    fs::write(v.p("d/b"), b"content b, longer").unwrap();
    // RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2. EINVAL here would mean the daemon answered
    // FUSE_RENAME2 with ENOSYS (the kernel supports both flags for FUSE), so it is a failure.
    let r = renameat2(&v.p("a"), &v.p("d/b"), 1);
    assert_eq!(
        errno(&r),
        Some(libc::EEXIST),
        "RENAME_NOREPLACE onto existing: {r:?}"
    );
    assert_eq!(fs::read(v.p("a")).unwrap(), b"content a");
    assert_eq!(fs::read(v.p("d/b")).unwrap(), b"content b, longer");
    renameat2(&v.p("a"), &v.p("d/c"), 1).expect("RENAME_NOREPLACE onto free name");
    assert_eq!(fs::read(v.p("d/c")).unwrap(), b"content a");
    fs::rename(v.p("d/c"), v.p("a")).unwrap();
    renameat2(&v.p("a"), &v.p("d/b"), 2).expect("RENAME_EXCHANGE");
    assert_eq!(fs::read(v.p("a")).unwrap(), b"content b, longer");
    assert_eq!(fs::read(v.p("d/b")).unwrap(), b"content a");
    // exchange a file and a directory
    fs::create_dir(v.p("dir")).unwrap();
    fs::write(v.p("dir/in"), b"in").unwrap();
    renameat2(&v.p("a"), &v.p("dir"), 2).expect("RENAME_EXCHANGE file<->dir");
    assert_eq!(fs::read(v.p("dir")).unwrap(), b"content b, longer");
    assert_eq!(fs::read(v.p("a/in")).unwrap(), b"in");
    let r = renameat2(&v.p("a"), &v.p("missing"), 2);
    assert_eq!(
        errno(&r),
        Some(libc::ENOENT),
        "RENAME_EXCHANGE with missing target"
    );
    v.remount();
    assert_eq!(fs::read(v.p("dir")).unwrap(), b"content b, longer");
    assert_eq!(fs::read(v.p("a/in")).unwrap(), b"in");
    assert_eq!(fs::read(v.p("d/b")).unwrap(), b"content a");
}

#[test]
fn hard_links() {
    let mut v = TestVolume::new();
    fs::write(v.p("orig"), b"shared").unwrap();
    fs::create_dir(v.p("sub")).unwrap();
    fs::hard_link(v.p("orig"), v.p("link")).unwrap();
    fs::hard_link(v.p("orig"), v.p("sub/link2")).unwrap();
    let (m1, m2, m3) = (
        fs::metadata(v.p("orig")).unwrap(),
        fs::metadata(v.p("link")).unwrap(),
        fs::metadata(v.p("sub/link2")).unwrap(),
    );
    assert_eq!(m1.nlink(), 3, "nlink after two links");
    assert_eq!(m1.ino(), m2.ino(), "same inode");
    assert_eq!(m1.ino(), m3.ino(), "same inode across dirs");
    // content shared: write via one name, read via the others
    {
        let f = OpenOptions::new().write(true).open(v.p("link")).unwrap();
        pwrite(&f, 0, b"SHARED and more");
    }
    assert_eq!(fs::read(v.p("orig")).unwrap(), b"SHARED and more");
    assert_eq!(fs::read(v.p("sub/link2")).unwrap(), b"SHARED and more");
    fs::remove_file(v.p("sub/link2")).unwrap();
    assert_eq!(fs::metadata(v.p("orig")).unwrap().nlink(), 2);
    assert_eq!(
        errno(&fs::hard_link(v.p("sub"), v.p("dirlink"))),
        Some(libc::EPERM),
        "link to a directory"
    );
    v.remount();
    let (m1, m2) = (
        fs::metadata(v.p("orig")).unwrap(),
        fs::metadata(v.p("link")).unwrap(),
    );
    assert_eq!(m1.nlink(), 2, "nlink after remount");
    assert_eq!(m1.ino(), m2.ino(), "same inode after remount");
    assert_eq!(fs::read(v.p("link")).unwrap(), b"SHARED and more");
    fs::remove_file(v.p("orig")).unwrap();
    assert_eq!(fs::metadata(v.p("link")).unwrap().nlink(), 1);
    assert_eq!(fs::read(v.p("link")).unwrap(), b"SHARED and more");
}

#[test]
fn symlinks() {
    let mut v = TestVolume::new();
    let long: String = (0..1000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect::<String>();
    let long = format!("/{}", &long[1..]);
    assert_eq!(long.len(), 1000);
    let targets = [
        "target",
        "../up/and/über/ünïcode",
        "/abs/path with spaces",
        &long,
    ];
    for (i, t) in targets.iter().enumerate() {
        std::os::unix::fs::symlink(t, v.p(&format!("l{i}"))).unwrap();
    }
    fs::write(v.p("target"), b"via link").unwrap();
    let check = |v: &TestVolume| {
        for (i, t) in targets.iter().enumerate() {
            let p = v.p(&format!("l{i}"));
            assert_eq!(
                fs::read_link(&p).unwrap().as_os_str().as_bytes(),
                t.as_bytes(),
                "readlink l{i}"
            );
            let m = fs::symlink_metadata(&p).unwrap();
            assert!(m.file_type().is_symlink());
            assert_eq!(m.len(), t.len() as u64, "symlink st_size");
        }
        assert_eq!(fs::read(v.p("l0")).unwrap(), b"via link");
    };
    check(&v);
    assert_eq!(
        errno(&std::os::unix::fs::symlink("x", v.p("l0"))),
        Some(libc::EEXIST)
    );
    v.remount();
    check(&v);
}

#[test]
fn chmod_chown_utimens() {
    let mut v = TestVolume::new();
    let p = v.p("f");
    fs::write(&p, b"x").unwrap();
    fs::create_dir(v.p("d")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(v.p("d"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 987_654_321,
        },
        libc::timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 123_456_789,
        },
    ];
    let c = cstr(&p);
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }).unwrap();
    let check = |v: &TestVolume| {
        let m = fs::metadata(v.p("f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640, "file mode");
        assert_eq!(
            fs::metadata(v.p("d")).unwrap().mode() & 0o7777,
            0o711,
            "dir mode"
        );
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "owner");
        assert_eq!(
            (m.atime(), m.atime_nsec()),
            (1_500_000_000, 987_654_321),
            "atime"
        );
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            (1_600_000_000, 123_456_789),
            "mtime"
        );
    };
    check(&v);
    v.remount();
    check(&v);
    // writing updates mtime to about now
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    fs::write(v.p("f"), b"changed").unwrap();
    let m = fs::metadata(v.p("f")).unwrap();
    assert!(
        m.mtime() >= before - 2,
        "mtime not updated by write: {}",
        m.mtime()
    );
}

#[test]
fn fifo_statfs_fsync() {
    let v = TestVolume::new();
    let c = cstr(&v.p("fifo"));
    cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }).expect("mkfifo");
    let m = fs::symlink_metadata(v.p("fifo")).unwrap();
    assert!(m.file_type().is_fifo(), "not a fifo: {:?}", m.file_type());
    assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFIFO);

    let root = cstr(&v.mnt());
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::statfs(root.as_ptr(), &mut st) }).expect("statfs");
    assert!(st.f_bsize > 0, "f_bsize is zero");
    assert!(st.f_blocks > 0, "f_blocks is zero");

    let mut f = File::create(v.p("s")).unwrap();
    f.write_all(&vec![1u8; 10_000]).unwrap();
    f.sync_all().expect("fsync");
    f.write_all(b"more").unwrap();
    f.sync_data().expect("fdatasync");
    drop(f);
    let d = File::open(v.mnt()).unwrap();
    let _ = d.sync_all(); // fsync on a directory: allowed to be a no-op
    assert_eq!(fs::metadata(v.p("s")).unwrap().len(), 10_004);
}

fn setxattr(p: &Path, name: &str, val: &[u8]) -> std::io::Result<libc::c_int> {
    let (c, n) = (cstr(p), std::ffi::CString::new(name).unwrap());
    cvt(unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), val.as_ptr().cast(), val.len(), 0) })
}

fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (c, n) = (cstr(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn listxattr(p: &Path) -> Vec<String> {
    let c = cstr(p);
    let mut buf = vec![0u8; 65536];
    let r = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    let mut v: Vec<String> = buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn xattrs() {
    let mut v = TestVolume::new();
    let p = v.p("f");
    fs::write(&p, b"x").unwrap();
    fs::create_dir(v.p("d")).unwrap();
    setxattr(&p, "user.one", b"value one").unwrap();
    setxattr(&p, "user.two", &[0u8, 1, 2, 255]).unwrap();
    setxattr(&v.p("d"), "user.dir", b"on a dir").unwrap();
    assert_eq!(getxattr(&p, "user.one").unwrap(), b"value one");
    assert_eq!(getxattr(&p, "user.two").unwrap(), vec![0u8, 1, 2, 255]);
    assert_eq!(getxattr(&v.p("d"), "user.dir").unwrap(), b"on a dir");
    let names: Vec<String> = listxattr(&p)
        .into_iter()
        .filter(|n| n.starts_with("user."))
        .collect();
    assert_eq!(names, ["user.one", "user.two"]);
    setxattr(&p, "user.one", b"replaced").unwrap();
    assert_eq!(getxattr(&p, "user.one").unwrap(), b"replaced");
    v.remount();
    assert_eq!(
        getxattr(&p, "user.one").unwrap(),
        b"replaced",
        "after remount"
    );
    assert_eq!(
        getxattr(&v.p("d"), "user.dir").unwrap(),
        b"on a dir",
        "dir xattr after remount"
    );
    let (c, n) = (cstr(&p), std::ffi::CString::new("user.one").unwrap());
    cvt(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) }).expect("removexattr");
    assert_eq!(
        errno(&getxattr(&p, "user.one")),
        Some(libc::ENODATA),
        "getxattr after remove"
    );
    assert_eq!(
        errno(&getxattr(&p, "user.never")),
        Some(libc::ENODATA),
        "getxattr of unknown name"
    );
    let names: Vec<String> = listxattr(&p)
        .into_iter()
        .filter(|n| n.starts_with("user."))
        .collect();
    assert_eq!(names, ["user.two"]);
    // size queries, ERANGE, XATTR_CREATE / XATTR_REPLACE, a large value
    let (c, n2) = (cstr(&p), std::ffi::CString::new("user.two").unwrap());
    let need = unsafe { libc::getxattr(c.as_ptr(), n2.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(need, 4, "getxattr size query");
    let mut small = [0u8; 2];
    let r = cvt_l(
        unsafe { libc::getxattr(c.as_ptr(), n2.as_ptr(), small.as_mut_ptr().cast(), 2) }
            as libc::c_long,
    );
    assert_eq!(
        errno(&r),
        Some(libc::ERANGE),
        "getxattr into a too small buffer"
    );
    let need = unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(
        need >= "user.two\0".len() as isize,
        "listxattr size query: {need}"
    );
    let flag = |name: &str, val: &[u8], flags: libc::c_int| {
        let n = std::ffi::CString::new(name).unwrap();
        cvt(unsafe {
            libc::setxattr(
                c.as_ptr(),
                n.as_ptr(),
                val.as_ptr().cast(),
                val.len(),
                flags,
            )
        })
    };
    assert_eq!(
        errno(&flag("user.two", b"x", libc::XATTR_CREATE)),
        Some(libc::EEXIST),
        "XATTR_CREATE on existing"
    );
    assert_eq!(
        errno(&flag("user.none", b"x", libc::XATTR_REPLACE)),
        Some(libc::ENODATA),
        "XATTR_REPLACE on missing"
    );
    flag("user.two", b"replaced", libc::XATTR_REPLACE).unwrap();
    // values live in the backing file's xattrs, so the backing filesystem's limit applies
    // (ext4 without ea_inode: about 4 KB per inode in total); 1500 bytes fits everywhere
    let big = Rng::new(6).bytes(1500);
    flag("user.big", &big, 0).unwrap();
    assert_eq!(getxattr(&p, "user.two").unwrap(), b"replaced");
    assert_bytes_eq(
        &getxattr(&p, "user.big").unwrap(),
        &big,
        "1500-byte xattr value",
    );
    v.remount();
    assert_bytes_eq(
        &getxattr(&p, "user.big").unwrap(),
        &big,
        "1500-byte xattr value after remount",
    );
}

#[test]
fn copy_file_range_copies_plaintext() {
    let mut v = TestVolume::new();
    let data = Rng::new(7).bytes(3 * BS + 777);
    fs::write(v.p("src"), &data).unwrap();
    let src = File::open(v.p("src")).unwrap();
    let dst = rw(&v.p("dst"));
    let (mut off_in, mut off_out): (libc::loff_t, libc::loff_t) = (100, 5000);
    let mut left = data.len() - 100;
    while left > 0 {
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        };
        assert!(
            n > 0,
            "copy_file_range: {} ({n})",
            std::io::Error::last_os_error()
        );
        left -= n as usize;
    }
    drop((src, dst));
    let mut want = vec![0u8; 5000];
    want.extend_from_slice(&data[100..]);
    assert_bytes_eq(
        &fs::read(v.p("dst")).unwrap(),
        &want,
        "copy_file_range result",
    );
    v.remount();
    assert_bytes_eq(
        &fs::read(v.p("dst")).unwrap(),
        &want,
        "copy_file_range result after remount",
    );
}

#[test]
fn long_names() {
    let mut v = TestVolume::new();
    let n255 = "n".repeat(255);
    let n255b = format!("{}é", "m".repeat(253)); // 255 bytes, multi-byte tail
    assert_eq!(n255b.len(), 255);
    fs::write(v.p(&n255), b"long name content").unwrap();
    let names: Vec<String> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, std::slice::from_ref(&n255));
    assert_eq!(fs::read(v.p(&n255)).unwrap(), b"long name content");
    fs::rename(v.p(&n255), v.p(&n255b)).unwrap();
    assert_eq!(errno(&fs::metadata(v.p(&n255))), Some(libc::ENOENT));
    assert_eq!(fs::read(v.p(&n255b)).unwrap(), b"long name content");
    fs::create_dir(v.p(&n255)).unwrap();
    fs::write(v.p(&n255).join(&n255), b"nested").unwrap();
    let n256 = "o".repeat(256);
    assert_eq!(
        errno(&fs::write(v.p(&n256), b"x")),
        Some(libc::ENAMETOOLONG),
        "create 256-byte name"
    );
    assert_eq!(
        errno(&fs::create_dir(v.p(&n256))),
        Some(libc::ENAMETOOLONG),
        "mkdir 256-byte name"
    );
    assert_eq!(
        errno(&fs::rename(v.p(&n255b), v.p(&n256))),
        Some(libc::ENAMETOOLONG),
        "rename to 256-byte name"
    );
    v.remount();
    let mut names: Vec<String> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec![n255.clone(), n255b.clone()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(fs::read(v.p(&n255b)).unwrap(), b"long name content");
    assert_eq!(fs::read(v.p(&n255).join(&n255)).unwrap(), b"nested");
    fs::remove_file(v.p(&n255b)).unwrap();
    assert_eq!(errno(&fs::metadata(v.p(&n255b))), Some(libc::ENOENT));
}

#[test]
fn shared_writable_mmap() {
    let mut v = TestVolume::new();
    let p = v.p("m");
    let len = 3 * BS + 100;
    let mut model = Rng::new(3).bytes(len);
    fs::write(&p, &model).unwrap();
    {
        let f = rw(&p);
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap MAP_SHARED: {}",
            std::io::Error::last_os_error()
        );
        let map = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
        assert_bytes_eq(map, &model, "mapped content");
        for (off, b) in [
            (0usize, 0xAAu8),
            (4095, 0xBB),
            (4096, 0xCC),
            (len - 1, 0xDD),
        ] {
            map[off] = b;
            model[off] = b;
        }
        map[5000..5100].copy_from_slice(&[0xEE; 100]);
        model[5000..5100].copy_from_slice(&[0xEE; 100]);
        cvt(unsafe { libc::msync(ptr, len, libc::MS_SYNC) }).expect("msync");
        cvt(unsafe { libc::munmap(ptr, len) }).expect("munmap");
    }
    assert_bytes_eq(&fs::read(&p).unwrap(), &model, "read() after munmap");
    v.remount();
    assert_bytes_eq(&fs::read(&p).unwrap(), &model, "after remount");
}

#[test]
fn stat_sizes_and_inodes() {
    let v = TestVolume::new();
    for size in [0usize, 1, 4095, 4096, 4097, 10_000, 100_000] {
        let p = v.p(&format!("s{size}"));
        fs::write(&p, vec![9u8; size]).unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.len(), size as u64, "st_size");
        assert!(
            m.blocks() >= (size as u64).div_ceil(512),
            "st_blocks {} too small for size {size}",
            m.blocks()
        );
        assert!(
            m.blocks() <= (size as u64).div_ceil(512) * 2 + 64,
            "st_blocks {} implausible for size {size}",
            m.blocks()
        );
        let m2 = fs::metadata(&p).unwrap();
        assert_eq!(m.ino(), m2.ino(), "inode not stable");
        assert!(m.file_type().is_file());
    }
    let mut inos: Vec<u64> = (0..5)
        .map(|i| {
            fs::metadata(v.p(&format!("s{}", [0, 1, 4095, 4096, 4097][i])))
                .unwrap()
                .ino()
        })
        .collect();
    inos.sort();
    inos.dedup();
    assert_eq!(inos.len(), 5, "distinct files share inode numbers");
    let d = fs::metadata(v.mnt()).unwrap();
    assert!(d.is_dir());
}

#[test]
fn large_sequential_file() {
    let mut v = TestVolume::new();
    let p = v.p("big");
    let mut rng = Rng::new(4);
    let chunk_sizes = [1 << 20, 65_536, 4096, 131_072 + 7];
    let mut want = Vec::with_capacity(64 << 20);
    {
        let mut f = File::create(&p).unwrap();
        let mut i = 0;
        while want.len() < (64 << 20) {
            let c = rng.bytes(chunk_sizes[i % chunk_sizes.len()]);
            f.write_all(&c).unwrap();
            want.extend_from_slice(&c);
            i += 1;
        }
    }
    let h = sha256_hex(&want);
    assert_eq!(fs::metadata(&p).unwrap().len(), want.len() as u64);
    assert_eq!(
        sha256_hex(&fs::read(&p).unwrap()),
        h,
        "content of the 64 MiB file"
    );
    v.remount();
    assert_eq!(
        sha256_hex(&fs::read(&p).unwrap()),
        h,
        "content after remount"
    );
}
