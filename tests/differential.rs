//! Differential test: the same random operations on the mount and on a plain directory must
//! give the same reads, sizes and final contents, also after a remount.
//!
//! Replay a failure with `CMKFS_SEED=<seed printed on stderr> cargo test --test differential`.
//! `CMKFS_OPS` overrides the number of operations.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const NFILES: usize = 4;
const MAX_FILE: u64 = 2 << 20;
const MAX_IO: u64 = 300 << 10;
const BS: u64 = 4096;

struct SeedGuard(u64);
impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("differential test failed with CMKFS_SEED={}", self.0);
        }
    }
}

fn open(p: &Path, trunc: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(trunc)
        .open(p)
        .unwrap()
}

/// Opens a mount file, with O_DIRECT if `direct` (every read and write then reaches the daemon
/// instead of the page cache).
fn open_mnt(p: &Path, trunc: bool, direct: bool) -> File {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(trunc);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(p)
        .unwrap_or_else(|e| panic!("open {} (O_DIRECT: {direct}): {e}", p.display()))
}

fn pread(f: &File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// An offset: anywhere, or close to a block boundary, or close to the current end.
fn offset(rng: &mut Rng, size: u64) -> u64 {
    match rng.below(10) {
        0..=3 => rng.below(MAX_FILE),
        4..=6 => {
            let b = rng.below(MAX_FILE / BS) * BS;
            (b + rng.below(64)).saturating_sub(32)
        }
        _ => (size + rng.below(2 * BS)).saturating_sub(BS).min(MAX_FILE),
    }
}

fn length(rng: &mut Rng) -> u64 {
    match rng.below(20) {
        0..=9 => rng.range(1, 5000),
        10..=16 => rng.range(1, 64 << 10),
        17 => BS * rng.range(1, 8),
        _ => rng.range(1, MAX_IO),
    }
}

struct Pair {
    mnt: PathBuf,
    plain: PathBuf,
    fm: File,
    fp: File,
}

fn compare_full(pairs: &[Pair], when: &str) {
    for (i, p) in pairs.iter().enumerate() {
        let a = fs::read(&p.mnt).unwrap_or_else(|e| panic!("{when}: read mount file {i}: {e}"));
        let b = fs::read(&p.plain).unwrap();
        assert_bytes_eq(&a, &b, &format!("{when}: file {i}"));
        assert_eq!(
            fs::metadata(&p.mnt).unwrap().len(),
            b.len() as u64,
            "{when}: size of file {i}"
        );
    }
}

fn run_ops(
    v: &TestVolume,
    plain_root: &Path,
    rng: &mut Rng,
    nops: usize,
    direct: bool,
) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = (0..NFILES)
        .map(|i| {
            let mnt = v.p(&format!("f{i}"));
            let plain = plain_root.join(format!("f{i}"));
            Pair {
                fm: open_mnt(&mnt, true, direct),
                fp: open(&plain, true),
                mnt,
                plain,
            }
        })
        .collect();
    let mut counts = [0usize; 6];
    for op in 0..nops {
        let i = rng.below(NFILES as u64) as usize;
        let size = pairs[i].fp.metadata().unwrap().len();
        let kind = match rng.below(100) {
            0..=44 => 0,  // pwrite
            45..=79 => 1, // pread
            80..=89 => 2, // ftruncate
            90..=95 => 3, // fstat size
            96..=98 => 4, // reopen
            _ => 5,       // reopen with O_TRUNC
        };
        counts[kind] += 1;
        let p = &mut pairs[i];
        match kind {
            0 => {
                let off = offset(rng, size);
                let len = length(rng).min(MAX_FILE + MAX_IO - off) as usize;
                let data = rng.bytes(len);
                p.fp.write_all_at(&data, off).unwrap();
                p.fm.write_all_at(&data, off).unwrap_or_else(|e| {
                    panic!("op {op}: pwrite file {i} off {off} len {len}: {e}")
                });
            }
            1 => {
                let off = if rng.chance(80) && size > 0 {
                    rng.below(size)
                } else {
                    offset(rng, size)
                };
                let len = length(rng) as usize;
                let want = pread(&p.fp, off, len).unwrap();
                let got = pread(&p.fm, off, len)
                    .unwrap_or_else(|e| panic!("op {op}: pread file {i} off {off} len {len}: {e}"));
                assert_bytes_eq(
                    &got,
                    &want,
                    &format!("op {op}: pread file {i} off {off} len {len} (size {size})"),
                );
            }
            2 => {
                let new = match rng.below(4) {
                    0 => rng.below(size + 1),
                    1 => rng.below(MAX_FILE),
                    2 => rng.below(MAX_FILE / BS) * BS,
                    _ => size + rng.below(3 * BS),
                };
                p.fp.set_len(new).unwrap();
                p.fm.set_len(new)
                    .unwrap_or_else(|e| panic!("op {op}: ftruncate file {i} {size} -> {new}: {e}"));
            }
            3 => {
                let got = p.fm.metadata().unwrap().len();
                assert_eq!(got, size, "op {op}: fstat size of file {i}");
                let got = fs::metadata(&p.mnt).unwrap().len();
                assert_eq!(got, size, "op {op}: stat size of file {i}");
            }
            4 | 5 => {
                let trunc = kind == 5;
                if rng.chance(50) {
                    p.fm.sync_all()
                        .unwrap_or_else(|e| panic!("op {op}: fsync file {i}: {e}"));
                }
                p.fm = open_mnt(&p.mnt, trunc, direct);
                p.fp = open(&p.plain, trunc);
            }
            _ => unreachable!(),
        }
        if op % 1000 == 999 {
            compare_full(&pairs, &format!("after op {op}"));
        }
    }
    eprintln!(
        "ops: pwrite {} pread {} ftruncate {} stat {} reopen {} reopen+trunc {}",
        counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]
    );
    pairs
}

#[test]
fn random_ops_match_plain_directory() {
    let seed = seed_from_env(0x5eed_cafe);
    let _g = SeedGuard(seed);
    let nops = std::env::var("CMKFS_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let mut rng = Rng::new(seed);
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let pairs = run_ops(&v, plain.path(), &mut rng, nops, false);
    compare_full(&pairs, "end");
    drop(pairs);
    v.remount();
    let pairs: Vec<Pair> = (0..NFILES)
        .map(|i| {
            let mnt = v.p(&format!("f{i}"));
            let plain = plain.path().join(format!("f{i}"));
            Pair {
                fm: open(&mnt, false),
                fp: open(&plain, false),
                mnt,
                plain,
            }
        })
        .collect();
    compare_full(&pairs, "after remount");
    // a few random reads after remount too
    for k in 0..200 {
        let i = rng.below(NFILES as u64) as usize;
        let size = pairs[i].fp.metadata().unwrap().len();
        let off = rng.below(size + 1);
        let len = length(&mut rng) as usize;
        let want = pread(&pairs[i].fp, off, len).unwrap();
        let got = pread(&pairs[i].fm, off, len).unwrap();
        assert_bytes_eq(
            &got,
            &want,
            &format!("read {k} after remount: file {i} off {off} len {len}"),
        );
    }
}

#[test]
fn direct_io_ops_match_plain_directory() {
    // Same operations through O_DIRECT descriptors: no page cache between us and the daemon.
    let seed = seed_from_env(0xd1_7ec7);
    let _g = SeedGuard(seed);
    let mut rng = Rng::new(seed);
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let pairs = run_ops(&v, plain.path(), &mut rng, 2000, true);
    compare_full(&pairs, "end (O_DIRECT)");
    drop(pairs);
    v.remount();
    let pairs: Vec<Pair> = (0..NFILES)
        .map(|i| {
            let mnt = v.p(&format!("f{i}"));
            let plain = plain.path().join(format!("f{i}"));
            Pair {
                fm: open_mnt(&mnt, false, true),
                fp: open(&plain, false),
                mnt,
                plain,
            }
        })
        .collect();
    compare_full(&pairs, "after remount (O_DIRECT)");
}

#[test]
fn small_unaligned_ops_match_plain_directory() {
    // Many tiny writes and truncates around block boundaries in a small file: hits the
    // read-modify-write and partial last block paths often.
    let seed = seed_from_env(77);
    let _g = SeedGuard(seed);
    let mut rng = Rng::new(seed);
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let (pm, pp) = (v.p("small"), plain.path().join("small"));
    let (fm, fp) = (open(&pm, true), open(&pp, true));
    for op in 0..3000 {
        let size = fp.metadata().unwrap().len();
        let near = rng.below(6) * BS;
        let off = (near + rng.below(40)).saturating_sub(20);
        match rng.below(10) {
            0..=5 => {
                let n = rng.range(1, 50) as usize;
                let data = rng.bytes(n);
                fp.write_all_at(&data, off).unwrap();
                fm.write_all_at(&data, off)
                    .unwrap_or_else(|e| panic!("op {op}: pwrite {off}: {e}"));
            }
            6..=7 => {
                fp.set_len(off).unwrap();
                fm.set_len(off)
                    .unwrap_or_else(|e| panic!("op {op}: ftruncate {size} -> {off}: {e}"));
            }
            _ => {
                let len = rng.range(1, 9000) as usize;
                let want = pread(&fp, off, len).unwrap();
                let got =
                    pread(&fm, off, len).unwrap_or_else(|e| panic!("op {op}: pread {off}: {e}"));
                assert_bytes_eq(
                    &got,
                    &want,
                    &format!("op {op}: pread off {off} len {len} size {size}"),
                );
            }
        }
    }
    drop((fm, fp));
    assert_bytes_eq(&fs::read(&pm).unwrap(), &fs::read(&pp).unwrap(), "final");
    v.remount();
    assert_bytes_eq(
        &fs::read(&pm).unwrap(),
        &fs::read(&pp).unwrap(),
        "after remount",
    );
}

#[test]
fn mixed_cached_and_direct_descriptors() {
    // Two descriptors on one mount file, one through the page cache and one O_DIRECT, used in
    // random order: each must see the other's writes and truncates at once.
    let seed = seed_from_env(0x3_1eed);
    let _g = SeedGuard(seed);
    let mut rng = Rng::new(seed);
    let v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let (pm, pp) = (v.p("mixed"), plain.path().join("mixed"));
    let fp = open(&pp, true);
    let fms = [open_mnt(&pm, true, false), open_mnt(&pm, false, true)];
    for op in 0..2000 {
        let size = fp.metadata().unwrap().len();
        let which = rng.below(2) as usize;
        let fm = &fms[which];
        match rng.below(10) {
            0..=3 => {
                let off = offset(&mut rng, size).min(1 << 20);
                let len = (length(&mut rng) as usize).min(100_000);
                let data = rng.bytes(len);
                fp.write_all_at(&data, off).unwrap();
                fm.write_all_at(&data, off)
                    .unwrap_or_else(|e| panic!("op {op}: pwrite fd {which} off {off}: {e}"));
            }
            4..=7 => {
                let off = if size > 0 { rng.below(size) } else { 0 };
                let len = (length(&mut rng) as usize).min(100_000);
                let want = pread(&fp, off, len).unwrap();
                let got = pread(fm, off, len)
                    .unwrap_or_else(|e| panic!("op {op}: pread fd {which} off {off}: {e}"));
                assert_bytes_eq(
                    &got,
                    &want,
                    &format!("op {op}: pread via fd {which} off {off} len {len} size {size}"),
                );
            }
            8 => {
                let new = rng.below(1 << 20);
                fp.set_len(new).unwrap();
                fm.set_len(new)
                    .unwrap_or_else(|e| panic!("op {op}: ftruncate fd {which} -> {new}: {e}"));
            }
            _ => {
                assert_eq!(
                    fm.metadata().unwrap().len(),
                    size,
                    "op {op}: fstat size via fd {which}"
                );
            }
        }
    }
    drop(fms);
    assert_bytes_eq(
        &fs::read(&pm).unwrap(),
        &fs::read(&pp).unwrap(),
        "final mixed content",
    );
}
