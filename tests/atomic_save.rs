//! The atomic-save pattern (write a temp file, fsync, rename it over the real name) against
//! readers that open and read the real name in a loop: every read must see one whole version
//! (its checksum matches) and no open may fail. A FUSE inode stays bound to its backing file,
//! so an open of an inode whose name was renamed over never reads the file that replaced it.

mod common;

use common::*;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Version `n` of the file: a header line with the length and checksum of the body, then the
/// body (its size varies with `n`, so a mix of versions or a cut shows).
fn version(n: u64) -> Vec<u8> {
    let mut rng = Rng::new(n);
    let body = rng.bytes(1000 + (n % 7) as usize * 3000);
    let mut out = format!("v{n} {} {}\n", body.len(), sha256_hex(&body)).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Whether `data` is one whole version.
fn whole(data: &[u8]) -> bool {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..nl]).into_owned();
    let parts: Vec<&str> = head.split(' ').collect();
    let body = &data[nl + 1..];
    parts.len() == 3 && parts[1] == body.len().to_string() && parts[2] == sha256_hex(body)
}

#[test]
fn atomic_save_gives_readers_whole_versions_only() {
    let v = TestVolume::new();
    let dir = v.mnt();
    fs::write(dir.join("config.json"), version(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let saves = Arc::new(AtomicU64::new(0));
    let writer = {
        let (dir, stop, saves) = (dir.clone(), stop.clone(), saves.clone());
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                let tmp = dir.join(format!("config.json.tmp{}", n % 3));
                let mut f = File::create(&tmp).unwrap();
                f.write_all(&version(n)).unwrap();
                f.sync_all().unwrap();
                drop(f);
                fs::rename(&tmp, dir.join("config.json")).unwrap();
                saves.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut reads, mut torn, mut errors) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let mut data = Vec::new();
                    match File::open(dir.join("config.json"))
                        .and_then(|mut f| f.read_to_end(&mut data))
                    {
                        Ok(_) if whole(&data) => {}
                        Ok(_) => {
                            if torn < 5 {
                                let nl = data.iter().position(|&b| b == b'\n').unwrap_or(0).min(80);
                                eprintln!(
                                    "torn read: {} bytes, head {:?}",
                                    data.len(),
                                    String::from_utf8_lossy(&data[..nl])
                                );
                            }
                            torn += 1
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            errors.push(e.to_string())
                        }
                    }
                    reads += 1;
                }
                (reads, torn, errors)
            })
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let (mut reads, mut torn, mut errors) = (0, 0, Vec::new());
    for r in readers {
        let (a, b, c) = r.join().unwrap();
        reads += a;
        torn += b;
        errors.extend(c);
    }
    eprintln!(
        "atomic save: {} saves, {reads} reads, {torn} torn, {} errors in {:?}",
        saves.load(Ordering::Relaxed),
        errors.len(),
        t.elapsed()
    );
    assert!(saves.load(Ordering::Relaxed) > 100, "the writer barely ran");
    assert!(reads > 1000, "the readers barely ran");
    assert_eq!(torn, 0, "reads that saw no whole version");
    assert!(
        errors.is_empty(),
        "failed opens or reads: {:?}",
        &errors[..errors.len().min(5)]
    );
}
