//! Sparse files (format 2): holes cost no backing space and no crypto, `SEEK_DATA`/`SEEK_HOLE`
//! report them, punch hole and zero range free space, and holes are authenticated: zeroing or
//! punching the ciphertext of a data block still gives EIO. Every behaviour is compared with a
//! plain directory on the same disk (the oracle) where it can be.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BS: u64 = 4096;
const SEALED: u64 = BS + 28;
const HEADER: u64 = 32;
const TIB: u64 = 1 << 40;

/// Bytes allocated under `dir` (st_blocks of every entry, like `du`).
fn allocated(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn seek(f: &File, off: u64, whence: i32) -> std::io::Result<u64> {
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// The backing file of the only regular file the volume holds.
fn only_backing_file(v: &TestVolume) -> PathBuf {
    let files: Vec<PathBuf> = v
        .backing_files()
        .into_iter()
        .filter(|p| p.is_file() && !p.to_string_lossy().contains("/.cmkfs"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn truncate_to_a_tebibyte_is_instant_and_takes_no_space() {
    let v = TestVolume::new();
    let before = allocated(&v.backing());
    let t = Instant::now();
    let f = open_rw(&v.p("big"));
    f.set_len(TIB).unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "truncate -s 1T took {took:?}"
    );
    assert!(
        allocated(&v.backing()) - before < 1 << 20,
        "truncate -s 1T used {} bytes of backing space",
        allocated(&v.backing()) - before
    );
    let m = fs::metadata(v.p("big")).unwrap();
    assert_eq!(m.len(), TIB);
    assert!(
        m.blocks() < 64,
        "st_blocks {} for an empty sparse file",
        m.blocks()
    );
    // Reads anywhere are zeros: start, middle, the partial end.
    for off in [0, TIB / 2 + 123, TIB - 5000] {
        let mut buf = vec![1u8; 8192];
        let n = f.read_at(&mut buf, off).unwrap();
        assert_eq!(n as u64, 8192.min(TIB - off));
        assert!(buf[..n].iter().all(|&b| b == 0), "non-zero at {off}");
    }
    assert_eq!(seek(&f, 0, libc::SEEK_HOLE).unwrap(), 0);
    assert_eq!(errno(&seek(&f, 0, libc::SEEK_DATA)), Some(libc::ENXIO));
    // Shrinking back keeps working, and growing by a few bytes too.
    f.set_len(10).unwrap();
    f.set_len(5000).unwrap();
    let mut buf = vec![1u8; 5000];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn write_at_a_tebibyte_offset_is_instant_and_takes_no_space() {
    let v = TestVolume::new();
    let before = allocated(&v.backing());
    let data = Rng::new(7).bytes(4096);
    let t = Instant::now();
    let f = open_rw(&v.p("far"));
    f.write_all_at(&data, TIB).unwrap();
    f.sync_all().unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "write at 1 TiB took {took:?}"
    );
    assert!(allocated(&v.backing()) - before < 1 << 20);
    assert_eq!(fs::metadata(v.p("far")).unwrap().len(), TIB + 4096);
    let mut back = vec![0u8; 4096];
    f.read_exact_at(&mut back, TIB).unwrap();
    assert_bytes_eq(&back, &data, "block at 1 TiB");
    assert_eq!(seek(&f, 0, libc::SEEK_DATA).unwrap(), TIB);
    assert_eq!(seek(&f, 0, libc::SEEK_HOLE).unwrap(), 0);
    assert_eq!(seek(&f, TIB, libc::SEEK_HOLE).unwrap(), TIB + 4096);
    assert_eq!(
        errno(&seek(&f, TIB + 4096, libc::SEEK_DATA)),
        Some(libc::ENXIO)
    );
    // After a remount (the map comes from disk) the same.
    drop(f);
    let mut v = v;
    v.remount();
    let f = open_rw(&v.p("far"));
    f.read_exact_at(&mut back, TIB).unwrap();
    assert_bytes_eq(&back, &data, "block at 1 TiB after remount");
    let mut zeros = vec![1u8; 4096];
    f.read_exact_at(&mut zeros, TIB - 4096).unwrap();
    assert!(zeros.iter().all(|&b| b == 0));
    assert_eq!(seek(&f, 0, libc::SEEK_DATA).unwrap(), TIB);
}

#[test]
fn truncate_beyond_the_maximum_size_is_efbig_and_changes_nothing() {
    let v = TestVolume::new();
    fs::write(v.p("f"), b"keep me").unwrap();
    let huge = 999_999_999_999_999u64;
    let f = open_rw(&v.p("f"));
    let e = f.set_len(huge).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "ftruncate: {e}");
    let c = cstr(&v.p("f"));
    let r = cvt(unsafe { libc::truncate(c.as_ptr(), huge as libc::off_t) });
    assert_eq!(errno(&r), Some(libc::EFBIG), "truncate");
    assert_eq!(fs::read(v.p("f")).unwrap(), b"keep me");
    // The oracle (ext4 here) says the same.
    let plain = tempfile::tempdir().unwrap();
    let o = open_rw(&plain.path().join("f"));
    assert_eq!(
        o.set_len(huge).unwrap_err().raw_os_error(),
        Some(libc::EFBIG)
    );
}

/// The same operations on the mount and on a plain file: contents, SEEK_DATA/SEEK_HOLE at
/// block granularity, and space freed by punching.
#[test]
fn punch_hole_and_zero_range_match_a_plain_file() {
    let v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let m = open_rw(&v.p("f"));
    let o = open_rw(&plain.path().join("f"));
    let data = Rng::new(11).bytes(64 * BS as usize);
    for f in [&m, &o] {
        f.write_all_at(&data, 0).unwrap();
        f.sync_all().unwrap();
    }
    let full = allocated(&v.backing());
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let punch = libc::FALLOC_FL_PUNCH_HOLE | keep;
    let zero = libc::FALLOC_FL_ZERO_RANGE;
    let apply = |ops: &[(i32, u64, u64)]| {
        for &(mode, off, len) in ops {
            for f in [&m, &o] {
                fallocate(f, mode, off, len).unwrap();
            }
            let a = fs::read(v.p("f")).unwrap();
            let b = fs::read(plain.path().join("f")).unwrap();
            assert_bytes_eq(&a, &b, &format!("after fallocate({mode:#x}, {off}, {len})"));
        }
    };
    // Punching: whole blocks, unaligned edges, to past the end.
    apply(&[
        (punch, 8 * BS, 16 * BS),
        (punch, 30 * BS + 100, 3 * BS),
        (punch, 60 * BS, 100 * BS),
    ]);
    // Holes at block granularity: the data and hole offsets agree with a plain file (ext4
    // answers in 4 KiB pages, which are our blocks here).
    for start in (0..64 * BS).step_by(BS as usize / 2) {
        for whence in [libc::SEEK_DATA, libc::SEEK_HOLE] {
            let a = seek(&m, start, whence).map_err(|e| e.raw_os_error());
            let b = seek(&o, start, whence).map_err(|e| e.raw_os_error());
            assert_eq!(a, b, "lseek({start}, {whence})");
        }
    }
    // Zero range: inside two blocks, whole blocks (ext4 keeps those allocated as unwritten
    // extents, cmkfs makes them holes), and growing the file.
    apply(&[
        (zero, 40 * BS + 7, 5000),
        (zero | keep, 50 * BS, 4 * BS),
        (zero, 70 * BS, 2 * BS),
    ]);
    assert_eq!(seek(&m, 50 * BS, libc::SEEK_HOLE).unwrap(), 50 * BS);
    assert_eq!(seek(&m, 50 * BS, libc::SEEK_DATA).unwrap(), 54 * BS);
    assert_eq!(
        seek(&m, 60 * BS, libc::SEEK_DATA).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENXIO))
    );
    m.sync_all().unwrap();
    let punched = allocated(&v.backing());
    assert!(
        full - punched >= 16 * BS,
        "punching ~30 blocks freed only {} bytes",
        full - punched
    );
    // The same after a remount, with the map read from disk.
    drop(m);
    let mut v = v;
    v.remount();
    let a = fs::read(v.p("f")).unwrap();
    let b = fs::read(plain.path().join("f")).unwrap();
    assert_bytes_eq(&a, &b, "after remount");
}

#[test]
fn writes_into_holes_fill_them_and_survive_a_remount() {
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let size = 256 * 1024 * 1024u64;
    {
        let m = open_rw(&v.p("f"));
        let o = open_rw(&plain.path().join("f"));
        m.set_len(size).unwrap();
        o.set_len(size).unwrap();
        for _ in 0..200 {
            let off = rng.below(size - 10_000);
            let n = rng.range(1, 9000) as usize;
            let d = rng.bytes(n);
            m.write_all_at(&d, off).unwrap();
            o.write_all_at(&d, off).unwrap();
        }
    }
    let cmp = |v: &TestVolume| {
        let m = File::open(v.p("f")).unwrap();
        let o = File::open(plain.path().join("f")).unwrap();
        let mut a = vec![0u8; 1 << 20];
        let mut b = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < size {
            m.read_exact_at(&mut a, off).unwrap();
            o.read_exact_at(&mut b, off).unwrap();
            assert_bytes_eq(&a, &b, &format!("MiB at {off}"));
            off += 1 << 20;
        }
    };
    cmp(&v);
    assert!(
        allocated(&v.backing()) < 8 << 20,
        "200 small writes took more than 8 MiB"
    );
    v.remount();
    cmp(&v);
}

/// Unmounted, an attacker zeroes or punches the ciphertext of data blocks, or damages the hole
/// map: data blocks give EIO, never zeros; holes still read as zeros only with a valid map.
#[test]
fn zeroed_or_punched_data_blocks_are_eio_not_zeros() {
    let mut v = TestVolume::new();
    let data = Rng::new(3).bytes(8 * BS as usize);
    {
        let f = open_rw(&v.p("f"));
        f.write_all_at(&data, 0).unwrap();
        f.set_len(32 * BS).unwrap(); // blocks 8.. are holes
    }
    v.umount();
    let b = only_backing_file(&v);
    let bf = OpenOptions::new().read(true).write(true).open(&b).unwrap();
    // Zero block 2, punch block 5.
    bf.write_all_at(&vec![0u8; SEALED as usize], HEADER + 2 * SEALED)
        .unwrap();
    fallocate(
        &bf,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        HEADER + 5 * SEALED,
        SEALED,
    )
    .unwrap();
    drop(bf);
    v.mount();
    let f = File::open(v.p("f")).unwrap();
    let mut buf = vec![0u8; BS as usize];
    for blk in [2u64, 5] {
        let r = f.read_exact_at(&mut buf, blk * BS);
        assert_eq!(errno(&r), Some(libc::EIO), "block {blk}");
    }
    for blk in [0u64, 1, 3, 4, 6, 7] {
        f.read_exact_at(&mut buf, blk * BS).unwrap();
        assert_bytes_eq(
            &buf,
            &data[(blk * BS) as usize..((blk + 1) * BS) as usize],
            "untouched block",
        );
    }
    f.read_exact_at(&mut buf, 20 * BS).unwrap();
    assert!(buf.iter().all(|&x| x == 0), "a hole reads as zeros");
    let log = v.log_contents();
    assert!(
        log.contains("block 2 is all zeros") && log.contains("block 5 is all zeros"),
        "log names the blocks: {log}"
    );
    drop(f);
    // A damaged map: holes can no longer be vouched for (EIO), data still reads.
    v.umount();
    let maps: Vec<PathBuf> = fs::read_dir(v.backing().join(".cmkfs/holes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(maps.len(), 1, "{maps:?}");
    let mut m = fs::read(&maps[0]).unwrap();
    let last = m.len() - 1;
    m[last] ^= 1;
    fs::write(&maps[0], &m).unwrap();
    v.mount();
    let f = File::open(v.p("f")).unwrap();
    assert_eq!(
        errno(&f.read_exact_at(&mut buf, 20 * BS)),
        Some(libc::EIO),
        "hole with a damaged map"
    );
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_bytes_eq(&buf, &data[..BS as usize], "data with a damaged map");
    // Removing the map is no way around it either.
    drop(f);
    v.umount();
    fs::remove_file(&maps[0]).unwrap();
    v.mount();
    let f = File::open(v.p("f")).unwrap();
    assert_eq!(errno(&f.read_exact_at(&mut buf, 20 * BS)), Some(libc::EIO));
}

#[test]
fn reencrypt_keeps_holes() {
    let mut v = TestVolume::new();
    let data = Rng::new(9).bytes(3 * BS as usize);
    {
        let f = open_rw(&v.p("f"));
        f.write_all_at(&data, 1 << 30).unwrap();
    }
    let before = allocated(&v.backing());
    run_ok(cmkfs().args(["key", "rotate", "--data-key"]).arg(v.mnt()));
    run_ok(cmkfs().arg("reencrypt").arg(v.mnt()));
    assert!(
        allocated(&v.backing()) < before + (1 << 20),
        "re-encryption filled the holes"
    );
    v.remount();
    let f = File::open(v.p("f")).unwrap();
    let mut back = vec![0u8; data.len()];
    f.read_exact_at(&mut back, 1 << 30).unwrap();
    assert_bytes_eq(&back, &data, "data after reencrypt");
    let mut z = vec![1u8; 8192];
    f.read_exact_at(&mut z, 1 << 29).unwrap();
    assert!(z.iter().all(|&b| b == 0));
    assert_eq!(seek(&f, 0, libc::SEEK_DATA).unwrap(), 1 << 30);
    // One map, under the new key.
    let maps = fs::read_dir(v.backing().join(".cmkfs/holes"))
        .unwrap()
        .count();
    assert_eq!(maps, 1);
}

#[test]
fn deleting_or_replacing_a_sparse_file_removes_its_hole_map() {
    let v = TestVolume::new();
    let maps = || {
        fs::read_dir(v.backing().join(".cmkfs/holes"))
            .map(|d| {
                d.filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
            })
            .unwrap_or(0)
    };
    // The kernel sends RELEASE after close returns: wait (bounded) for the count to settle.
    let wait_maps = |want: usize, what: &str| {
        let t = Instant::now();
        while maps() != want && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(maps(), want, "{what}");
    };
    for name in ["a", "b", "c"] {
        open_rw(&v.p(name)).write_all_at(b"x", 1 << 30).unwrap();
    }
    wait_maps(3, "three sparse files");
    fs::remove_file(v.p("a")).unwrap();
    wait_maps(2, "unlink");
    fs::write(v.p("d"), b"dense").unwrap();
    fs::rename(v.p("d"), v.p("b")).unwrap();
    wait_maps(1, "rename over");
    // A hard link keeps the map; the last name takes it.
    fs::hard_link(v.p("c"), v.p("c2")).unwrap();
    fs::remove_file(v.p("c")).unwrap();
    wait_maps(1, "one link left");
    let mut z = vec![1u8; 4096];
    File::open(v.p("c2"))
        .unwrap()
        .read_exact_at(&mut z, 4096)
        .unwrap();
    assert!(z.iter().all(|&b| b == 0));
    fs::remove_file(v.p("c2")).unwrap();
    wait_maps(0, "last link");
    // Deleted while open: the holes still read as zeros; the map goes with the last close.
    let e = open_rw(&v.p("e"));
    e.write_all_at(b"x", 1 << 30).unwrap();
    fs::remove_file(v.p("e")).unwrap();
    let mut z = vec![1u8; 4096];
    e.read_exact_at(&mut z, 4096).unwrap();
    assert!(z.iter().all(|&b| b == 0));
    assert_eq!(maps(), 1, "still open");
    drop(e);
    wait_maps(0, "after the last close");
}

/// `cp` finds the holes (SEEK_DATA/SEEK_HOLE) and keeps them; `du` sees the allocation.
#[test]
fn cp_keeps_a_sparse_file_sparse() {
    let v = TestVolume::new();
    let data = Rng::new(21).bytes(3 * BS as usize);
    {
        let f = open_rw(&v.p("src"));
        f.set_len(1 << 30).unwrap();
        f.write_all_at(&data, 512 << 20).unwrap();
    }
    let before = allocated(&v.backing());
    let t = Instant::now();
    run_ok(
        std::process::Command::new("cp")
            .arg("--sparse=auto")
            .arg(v.p("src"))
            .arg(v.p("dst")),
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cp of a 1 GiB file with 12 KiB of data took {:?}",
        t.elapsed()
    );
    assert!(
        allocated(&v.backing()) - before < 1 << 20,
        "the copy took {} bytes",
        allocated(&v.backing()) - before
    );
    let f = File::open(v.p("dst")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 30);
    assert!(
        f.metadata().unwrap().blocks() < 256,
        "st_blocks of the copy"
    );
    let mut back = vec![0u8; data.len()];
    f.read_exact_at(&mut back, 512 << 20).unwrap();
    assert_bytes_eq(&back, &data, "copied data");
    assert_eq!(seek(&f, 0, libc::SEEK_DATA).unwrap(), 512 << 20);
}

/// fsck reads sparse files through their maps (no false alarm) and reports a hole map that
/// belongs to no file, and a zeroed data block.
#[test]
fn fsck_knows_hole_maps() {
    let mut v = TestVolume::new();
    {
        let f = open_rw(&v.p("sparse"));
        f.set_len(64 * BS).unwrap();
        f.write_all_at(&Rng::new(1).bytes(BS as usize), 10 * BS)
            .unwrap();
    }
    v.umount();
    let fsck = |v: &TestVolume| {
        let o = run(cmkfs()
            .arg("fsck")
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .arg("--json"));
        let j: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("fsck --json: {e}: {}\n{}", o.stdout, o.stderr));
        (o.status.code(), j)
    };
    let (code, j) = fsck(&v);
    assert_eq!(code, Some(0), "clean sparse volume: {j}");
    let holes = v.backing().join(".cmkfs/holes");
    let map = fs::read_dir(&holes)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::copy(&map, holes.join(format!("{}-0-0", "ab".repeat(16)))).unwrap();
    let (code, j) = fsck(&v);
    assert_eq!(code, Some(1), "{j}");
    assert!(
        j.to_string()
            .contains("hole map of a file that no longer exists"),
        "{j}"
    );
    // Temp files of interrupted metadata and map writes: reported, and removed by --repair,
    // with the orphan map (every file was read, so no file's map is mistaken for one).
    fs::write(holes.join(".tmp.0123456789abcdef"), b"partial").unwrap();
    fs::write(v.backing().join(".cmkfs/.tmp.keystore.json.77"), b"partial").unwrap();
    let (code, j) = fsck(&v);
    assert_eq!(code, Some(1), "{j}");
    let o = run(cmkfs()
        .arg("fsck")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.key())
        .arg("--repair"));
    assert!(
        o.stdout
            .contains("repaired: removed .cmkfs/.tmp.keystore.json.77"),
        "{}",
        o.stdout
    );
    assert!(!holes.join(".tmp.0123456789abcdef").exists());
    assert!(!v.backing().join(".cmkfs/.tmp.keystore.json.77").exists());
    assert!(
        o.stdout
            .contains("hole map of a file that no longer exists"),
        "{}",
        o.stdout
    );
    let (code, j) = fsck(&v);
    assert_eq!(code, Some(0), "clean after --repair: {j}");
    // The live file's map stayed: its hole still reads as zeros.
    assert!(map.exists(), "the live file's map was kept");
}

/// After a crash the stored hole map may still list blocks written since it was stored (the
/// map is rewritten on fsync and close). Such a block is data: truncating onto it, growing past
/// it or zeroing part of it must treat it as data (re-seal it as the final block, keep it).
#[test]
fn a_stale_hole_map_after_a_crash_never_hides_data() {
    let mut v = TestVolume::new();
    let data = Rng::new(8).bytes(3 * BS as usize);
    {
        let f = open_rw(&v.p("f"));
        f.set_len(64 * BS).unwrap(); // the map, on disk: blocks 0..64 are holes
        f.sync_all().unwrap();
    }
    let f = open_rw(&v.p("f"));
    f.write_all_at(&data, 10 * BS).unwrap(); // blocks 10..13: data, map on disk not rewritten
    // SIGKILL the daemon while the file is open: the map is not stored again.
    let st = run_ok(cmkfs().arg("status").arg(v.mnt()).arg("--json"));
    let pid = serde_json::from_str::<serde_json::Value>(&st.stdout).unwrap()["pid"]
        .as_u64()
        .unwrap();
    run_ok(
        std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string()),
    );
    drop(f);
    force_unmount(&v.mnt());
    v.forget_mounted();
    v.mount();
    let read = |v: &TestVolume, off: u64, len: usize| {
        let mut b = vec![0u8; len];
        File::open(v.p("f"))
            .unwrap()
            .read_exact_at(&mut b, off)
            .unwrap();
        b
    };
    assert_bytes_eq(
        &read(&v, 10 * BS, 3 * BS as usize),
        &data,
        "data after the crash",
    );
    // Zero part of block 11 and cut the file inside block 12 (a middle block becomes final).
    let f = open_rw(&v.p("f"));
    fallocate(
        &f,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        11 * BS + 100,
        50,
    )
    .unwrap();
    f.set_len(12 * BS + 7).unwrap();
    drop(f);
    let mut want = data[..(2 * BS + 7) as usize].to_vec();
    want[(BS + 100) as usize..(BS + 150) as usize].fill(0);
    assert_bytes_eq(
        &read(&v, 10 * BS, want.len()),
        &want,
        "after zero range and truncate",
    );
    // Growing past it again keeps it.
    open_rw(&v.p("f")).set_len(40 * BS).unwrap();
    v.remount();
    assert_bytes_eq(
        &read(&v, 10 * BS, want.len()),
        &want,
        "after growing and a remount",
    );
    assert!(read(&v, 13 * BS, BS as usize).iter().all(|&b| b == 0));
}
