//! Concurrent access: parallel writers on disjoint regions of one file with parallel readers,
//! and parallel writers of separate files. Exact bytes are checked.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

/// Region of writer `t`: deliberately not block aligned so neighbours share blocks.
fn region(t: usize, region_len: usize) -> (u64, usize) {
    ((t * region_len) as u64, region_len)
}

/// The final content of writer `t`'s region: deterministic.
fn region_data(t: usize, len: usize) -> Vec<u8> {
    Rng::new(1000 + t as u64).bytes(len)
}

#[test]
fn disjoint_writers_and_readers_on_one_file() {
    let mut v = TestVolume::new();
    let p = v.p("shared");
    const WRITERS: usize = 8;
    const READERS: usize = 4;
    const REGION: usize = 100_000 + 123; // not a multiple of 4096
    let total = WRITERS * REGION;
    File::create(&p).unwrap().set_len(total as u64).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(WRITERS + READERS));
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let (p, barrier) = (p.clone(), barrier.clone());
        writers.push(std::thread::spawn(move || {
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            let (off, len) = region(t, REGION);
            let data = region_data(t, len);
            let mut rng = Rng::new(t as u64);
            barrier.wait();
            // several passes: random chunks first (garbage), then the final data in random-sized pieces
            for _ in 0..3 {
                let mut pos = 0;
                while pos < len {
                    let n = (rng.range(1, 9000) as usize).min(len - pos);
                    f.write_all_at(&rng.bytes(n), off + pos as u64).unwrap();
                    pos += n;
                }
            }
            let mut pos = 0;
            while pos < len {
                let n = (rng.range(1, 9000) as usize).min(len - pos);
                f.write_all_at(&data[pos..pos + n], off + pos as u64)
                    .unwrap();
                pos += n;
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (p, stop, barrier) = (p.clone(), stop.clone(), barrier.clone());
        readers.push(std::thread::spawn(move || {
            let f = File::open(&p).unwrap();
            let mut rng = Rng::new(500 + r as u64);
            let mut reads = 0u64;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) || reads < 10 {
                let off = rng.below(total as u64);
                let len = rng.range(1, 20_000) as usize;
                let mut buf = vec![0u8; len];
                let n = f
                    .read_at(&mut buf, off)
                    .unwrap_or_else(|e| panic!("reader {r}: read at {off}: {e}"));
                // the size never changes during the run: reads are full up to EOF
                let want = len.min(total - off as usize);
                assert!(
                    n > 0 && n <= want,
                    "reader {r}: short read {n} of {want} at {off}"
                );
                reads += 1;
            }
            reads
        }));
    }
    for w in writers {
        w.join().expect("writer panicked");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let n = r.join().expect("reader panicked");
        assert!(n >= 10);
    }
    let check = |content: &[u8], when: &str| {
        assert_eq!(content.len(), total, "{when}: size");
        for t in 0..WRITERS {
            let (off, len) = region(t, REGION);
            assert_bytes_eq(
                &content[off as usize..off as usize + len],
                &region_data(t, len),
                &format!("{when}: region {t}"),
            );
        }
    };
    check(&fs::read(&p).unwrap(), "after join");
    v.remount();
    check(&fs::read(&p).unwrap(), "after remount");
}

#[test]
fn parallel_writers_of_own_files() {
    let mut v = TestVolume::new();
    const THREADS: usize = 8;
    const FILES: usize = 50;
    let sizes = |t: usize| -> Vec<usize> {
        let mut rng = Rng::new(9000 + t as u64);
        (0..FILES)
            .map(|_| match rng.below(4) {
                0 => rng.below(100) as usize,
                1 => rng.below(5000) as usize,
                2 => rng.below(50_000) as usize,
                _ => rng.below(400_000) as usize,
            })
            .collect()
    };
    let content =
        |t: usize, i: usize, size: usize| Rng::new(((t as u64) << 32) | i as u64).bytes(size);
    let barrier = Arc::new(Barrier::new(THREADS));
    let mut hs = Vec::new();
    for t in 0..THREADS {
        let (root, barrier) = (v.mnt(), barrier.clone());
        let sizes = sizes(t);
        hs.push(std::thread::spawn(move || {
            let dir = root.join(format!("t{t}"));
            fs::create_dir(&dir).unwrap();
            barrier.wait();
            for (i, &size) in sizes.iter().enumerate() {
                let p = dir.join(format!("f{i}"));
                fs::write(&p, content(t, i, size))
                    .unwrap_or_else(|e| panic!("thread {t} write f{i}: {e}"));
                // read back immediately and the previous one again
                assert_bytes_eq(
                    &fs::read(&p).unwrap(),
                    &content(t, i, size),
                    &format!("thread {t} f{i}"),
                );
                if i > 0 {
                    let q = dir.join(format!("f{}", i - 1));
                    assert_bytes_eq(
                        &fs::read(&q).unwrap(),
                        &content(t, i - 1, sizes[i - 1]),
                        &format!("thread {t} f{}", i - 1),
                    );
                }
            }
            // also a shared directory: every thread creates files in it
            for i in 0..20 {
                fs::write(root.join(format!("common-{t}-{i}")), format!("{t}/{i}")).unwrap();
            }
        }));
    }
    for h in hs {
        h.join().expect("thread panicked");
    }
    let verify = |v: &TestVolume, when: &str| {
        for t in 0..THREADS {
            let sizes = sizes(t);
            let mut names: Vec<String> = fs::read_dir(v.p(&format!("t{t}")))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            let mut want: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();
            want.sort();
            assert_eq!(names, want, "{when}: listing of t{t}");
            for (i, &size) in sizes.iter().enumerate() {
                let got = fs::read(v.p(&format!("t{t}/f{i}"))).unwrap();
                assert_bytes_eq(&got, &content(t, i, size), &format!("{when}: t{t}/f{i}"));
            }
            for i in 0..20 {
                assert_eq!(
                    fs::read_to_string(v.p(&format!("common-{t}-{i}"))).unwrap(),
                    format!("{t}/{i}")
                );
            }
        }
        assert_eq!(
            fs::read_dir(v.mnt()).unwrap().count(),
            THREADS + THREADS * 20,
            "{when}: root entries"
        );
    };
    verify(&v, "after join");
    v.remount();
    verify(&v, "after remount");
}

#[test]
fn concurrent_appends() {
    // O_APPEND writers from several threads: no lost or torn records.
    let v = TestVolume::new();
    let p = v.p("log");
    File::create(&p).unwrap();
    const THREADS: usize = 6;
    const RECS: usize = 300;
    let mut hs = Vec::new();
    for t in 0..THREADS {
        let p = p.clone();
        hs.push(std::thread::spawn(move || {
            let f = OpenOptions::new().append(true).open(&p).unwrap();
            for i in 0..RECS {
                let rec = format!("[{t:02}:{i:05}:{}]\n", "z".repeat((t * 7 + i) % 50));
                std::io::Write::write_all(&mut &f, rec.as_bytes()).unwrap();
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let s = fs::read_to_string(&p).unwrap();
    let mut lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), THREADS * RECS, "record count");
    lines.sort();
    let mut want: Vec<String> = (0..THREADS)
        .flat_map(|t| {
            (0..RECS).map(move |i| format!("[{t:02}:{i:05}:{}]", "z".repeat((t * 7 + i) % 50)))
        })
        .collect();
    want.sort();
    assert_eq!(lines, want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn namespace_churn_with_concurrent_listing() {
    // Threads create, write, rename, read and unlink files in one directory while others list
    // it: no operation may fail, and the final listing is exact.
    let v = TestVolume::new();
    let dir = v.p("churn");
    fs::create_dir(&dir).unwrap();
    const WORKERS: usize = 6;
    const ROUNDS: usize = 150;
    let stop = Arc::new(AtomicBool::new(false));
    let mut listers = Vec::new();
    for _ in 0..2 {
        let (dir, stop) = (dir.clone(), stop.clone());
        listers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for e in fs::read_dir(&dir).expect("readdir during churn") {
                    let name = e
                        .expect("readdir entry during churn")
                        .file_name()
                        .into_string()
                        .unwrap();
                    assert!(name.starts_with('w'), "unexpected name listed: {name:?}");
                }
                n += 1;
            }
            n
        }));
    }
    let mut workers = Vec::new();
    for t in 0..WORKERS {
        let dir = dir.clone();
        workers.push(std::thread::spawn(move || {
            for i in 0..ROUNDS {
                let a = dir.join(format!("w{t}-{i}"));
                let b = dir.join(format!("w{t}-{i}-renamed"));
                let body = format!("{t}:{i}").repeat(1 + i % 300);
                fs::write(&a, &body).unwrap_or_else(|e| panic!("write {}: {e}", a.display()));
                fs::rename(&a, &b).unwrap_or_else(|e| panic!("rename {}: {e}", a.display()));
                assert_eq!(fs::read_to_string(&b).unwrap(), body);
                if i % 3 != 0 {
                    fs::remove_file(&b).unwrap_or_else(|e| panic!("unlink {}: {e}", b.display()));
                }
            }
        }));
    }
    for w in workers {
        w.join().expect("worker panicked");
    }
    stop.store(true, Ordering::Relaxed);
    for l in listers {
        l.join().expect("lister panicked");
    }
    let mut got: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..WORKERS)
        .flat_map(|t| {
            (0..ROUNDS)
                .filter(|i| i % 3 == 0)
                .map(move |i| format!("w{t}-{i}-renamed"))
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    for name in &want {
        let parts: Vec<usize> = name[1..]
            .trim_end_matches("-renamed")
            .split('-')
            .map(|s| s.parse().unwrap())
            .collect();
        let (t, i) = (parts[0], parts[1]);
        assert_eq!(
            fs::read_to_string(dir.join(name)).unwrap(),
            format!("{t}:{i}").repeat(1 + i % 300)
        );
    }
}

fn open_direct(p: &std::path::Path, write: bool) -> File {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(p)
        .unwrap()
}

#[test]
fn direct_readers_never_see_torn_blocks() {
    // O_DIRECT sends every read and write to the daemon. Readers racing a writer on the same
    // blocks must never get EIO (a half-written ciphertext block) and every block they get must
    // be one whole version: all bytes equal, since each write fills whole blocks with one value.
    let v = TestVolume::new();
    let p = v.p("racy");
    const BLOCKS: usize = 8;
    const BS: usize = 4096;
    fs::write(&p, vec![0u8; BLOCKS * BS]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let f = open_direct(&p, true);
            let mut rng = Rng::new(31);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let first = rng.below(BLOCKS as u64) as usize;
                let count = (rng.range(1, 3) as usize).min(BLOCKS - first);
                let val = (n % 250) as u8 + 1;
                f.write_all_at(&vec![val; count * BS], (first * BS) as u64)
                    .expect("direct write");
                n += 1;
            }
            n
        })
    };
    let mut readers = Vec::new();
    for r in 0..3 {
        let p = p.clone();
        readers.push(std::thread::spawn(move || {
            let f = open_direct(&p, false);
            let mut rng = Rng::new(40 + r);
            for k in 0..1500 {
                let first = rng.below(BLOCKS as u64) as usize;
                let count = (rng.range(1, 3) as usize).min(BLOCKS - first);
                let mut buf = vec![0u8; count * BS];
                let n = f
                    .read_at(&mut buf, (first * BS) as u64)
                    .unwrap_or_else(|e| {
                        panic!("reader {r} read {k} (blocks {first}+{count}) failed: {e}")
                    });
                assert_eq!(n, buf.len(), "reader {r}: short read");
                for (b, blk) in buf.chunks(BS).enumerate() {
                    assert!(
                        blk.iter().all(|&x| x == blk[0]),
                        "reader {r}: torn block {} in read {k}",
                        first + b
                    );
                }
            }
        }));
    }
    let mut failed = None;
    for r in readers {
        if let Err(e) = r.join() {
            failed = Some(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer panicked");
    if let Some(e) = failed {
        std::panic::resume_unwind(e);
    }
    assert!(
        writes > 10,
        "writer made too little progress ({writes} writes)"
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), (BLOCKS * BS) as u64);
}
