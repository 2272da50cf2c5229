//! An fsx-style random operation test (after xfstests' fsx, written anew): one file on the
//! mount and one in a plain directory get the same random writes, truncates (down and up),
//! hole punches, zero ranges, preallocations, fsyncs, reopens and reads; every read and,
//! periodically, the whole file must be identical. `CMKFS_FSX_OPS` (default 100,000) sets the
//! number of operations, `CMKFS_SEED` the seed.

mod common;

use common::*;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Largest size most operations work within (fsx's default is 256 KiB).
const MAX_LEN: u64 = 1 << 20;
/// Occasionally a truncate goes this far up (a hole of up to 64 MiB: no space, no crypto).
const FAR_LEN: u64 = 64 << 20;

fn read_all(f: &File) -> Vec<u8> {
    let len = f.metadata().unwrap().len() as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn fsx_random_operations_match_a_plain_file() {
    let ops: u64 = std::env::var("CMKFS_FSX_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let seed = seed_from_env(20261205);
    let mut rng = Rng::new(seed);
    let v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let (mp, op_) = (v.p("fsx"), plain.path().join("fsx"));
    let (mut m, mut o) = (open_rw(&mp), open_rw(&op_));
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let mut counts = [0u64; 9];
    let mut log: Vec<String> = Vec::new();
    for i in 0..ops {
        let size = o.metadata().unwrap().len();
        let bound = size.clamp(4096, MAX_LEN);
        let off = rng.below(bound + 4096);
        let len = if rng.chance(80) {
            rng.range(1, 16 * 1024)
        } else {
            rng.range(1, 256 * 1024)
        };
        let kind = rng.below(100);
        let what = match kind {
            0..=29 => {
                let d = rng.bytes(len as usize);
                m.write_all_at(&d, off).unwrap();
                o.write_all_at(&d, off).unwrap();
                counts[0] += 1;
                format!("write {off} {len}")
            }
            30..=54 => {
                let mut a = vec![0u8; len as usize];
                let mut b = vec![0u8; len as usize];
                let na = m.read_at(&mut a, off).unwrap();
                let nb = o.read_at(&mut b, off).unwrap();
                counts[1] += 1;
                if na != nb || a[..na] != b[..nb] {
                    panic!(
                        "op {i}: read {off} {len}: got {na} bytes, want {nb}, first difference at {:?}\nlast ops:\n{}",
                        a.iter().zip(&b).position(|(x, y)| x != y),
                        log.join("\n")
                    );
                }
                format!("read {off} {len}")
            }
            55..=62 => {
                let to = if rng.chance(5) {
                    rng.below(FAR_LEN)
                } else {
                    rng.below(MAX_LEN)
                };
                m.set_len(to).unwrap();
                o.set_len(to).unwrap();
                counts[2] += 1;
                format!("truncate {to}")
            }
            63..=72 => {
                let mode = libc::FALLOC_FL_PUNCH_HOLE | keep;
                fallocate(&m, mode, off, len).unwrap();
                fallocate(&o, mode, off, len).unwrap();
                counts[3] += 1;
                format!("punch {off} {len}")
            }
            73..=82 => {
                let mode = libc::FALLOC_FL_ZERO_RANGE | if rng.chance(50) { keep } else { 0 };
                fallocate(&m, mode, off, len).unwrap();
                fallocate(&o, mode, off, len).unwrap();
                counts[4] += 1;
                format!("zero range {off} {len} mode {mode:#x}")
            }
            83..=87 => {
                let mode = if rng.chance(50) { keep } else { 0 };
                fallocate(&m, mode, off, len).unwrap();
                fallocate(&o, mode, off, len).unwrap();
                counts[5] += 1;
                format!("fallocate {off} {len} mode {mode:#x}")
            }
            88..=91 => {
                m.sync_data().unwrap();
                counts[6] += 1;
                "fdatasync".into()
            }
            92..=95 => {
                drop(m);
                drop(o);
                m = open_rw(&mp);
                o = open_rw(&op_);
                counts[7] += 1;
                "close and reopen".into()
            }
            _ => {
                let a = read_all(&m);
                let b = read_all(&o);
                counts[8] += 1;
                if a != b {
                    panic!(
                        "op {i}: whole file: {} bytes, want {}, first difference at {:?}\nlast ops:\n{}",
                        a.len(),
                        b.len(),
                        a.iter().zip(&b).position(|(x, y)| x != y),
                        log.join("\n")
                    );
                }
                "compare all".into()
            }
        };
        log.push(format!("{i}: {what}"));
        if log.len() > 20 {
            log.remove(0);
        }
        assert_eq!(
            m.metadata().unwrap().len(),
            o.metadata().unwrap().len(),
            "op {i}: size after {what}"
        );
    }
    assert_bytes_eq(&read_all(&m), &read_all(&o), "at the end");
    eprintln!(
        "fsx: {ops} ops: {} writes, {} reads, {} truncates, {} punches, {} zero ranges, {} fallocates, {} fdatasyncs, {} reopens, {} full compares",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8]
    );
}
