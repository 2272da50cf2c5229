//! Full disk: the backing directory lives on a small tmpfs made by the test
//! (`mount -t tmpfs -o size=16m tmpfs DIR`). Writes must fail with `ENOSPC`, nothing already
//! stored may be damaged (checksums unchanged, also after a remount), a key-store update
//! (`cmkfs key rotate MOUNTPOINT --data-key`) either succeeds or fails cleanly leaving the old
//! state usable, and once files are deleted, writes work again (at once, although deleted files
//! are freed on a background thread). The tmpfs is unmounted at the end.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A `TestVolume` whose backing directory is a 16 MiB tmpfs.
struct SmallDisk {
    v: Option<TestVolume>,
    tmpfs: PathBuf,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        Self::with_env(size, &[])
    }

    /// The same, with extra environment for the daemon.
    fn with_env(size: &str, env: &[(&str, &str)]) -> SmallDisk {
        let mut v = TestVolume::init_only();
        v.env = env
            .iter()
            .map(|(k, x)| (k.to_string(), x.to_string()))
            .collect();
        // Move the fresh volume onto a tmpfs mounted over the backing directory.
        let saved = v.root().join("saved-backing");
        run_ok(Command::new("cp").arg("-a").arg(v.backing()).arg(&saved));
        let tmpfs = v.backing();
        run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(&tmpfs),
        );
        let mut d = SmallDisk { v: Some(v), tmpfs };
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg("-T")
                .arg(&saved)
                .arg(&d.tmpfs),
        );
        d.v_mut().mount();
        d
    }
    fn v(&self) -> &TestVolume {
        self.v.as_ref().unwrap()
    }
    fn v_mut(&mut self) -> &mut TestVolume {
        self.v.as_mut().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(v) = self.v.as_mut()
            && (v.is_mounted() || is_mounted(&v.mnt()))
        {
            let _ = run(cmkfs().arg("umount").arg(v.mnt()));
            force_unmount(&v.mnt());
            v.forget_mounted();
        }
        let _ = Command::new("umount").arg(&self.tmpfs).status();
        if is_mounted(&self.tmpfs) {
            let _ = Command::new("umount").arg("-l").arg(&self.tmpfs).status();
        }
        drop(self.v.take());
    }
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Writes `chunk`-sized pieces to `path` until a write fails; returns (bytes acknowledged, errno).
fn fill(path: &Path, chunk: usize, rng: &mut Rng) -> (u64, i32, Vec<u8>) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut written = Vec::new();
    loop {
        let data = rng.bytes(chunk);
        match f.write(&data) {
            Ok(n) => written.extend_from_slice(&data[..n]),
            Err(e) => return (written.len() as u64, errno_of(&e), written),
        }
        assert!(
            written.len() < 64 << 20,
            "wrote 64 MiB to a 16 MiB tmpfs without ENOSPC"
        );
    }
}

#[test]
fn full_disk_gives_enospc_damages_nothing_and_recovers() {
    let mut d = SmallDisk::new("16m");
    let mut rng = Rng::new(seed_from_env(0xE05C));
    // Earlier files, fsync'd, with checksums.
    let mut earlier = Vec::new();
    for i in 0..12 {
        let len = rng.range(0, 300 * 1024) as usize;
        let data = rng.bytes(len);
        let p = d.v().p(&format!("earlier-{i}"));
        let mut f = File::create(&p).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        earlier.push((p, sha256_hex(&data)));
    }
    fs::create_dir(d.v().p("dir")).unwrap();
    let check_earlier = |what: &str, earlier: &[(PathBuf, String)]| {
        for (p, sum) in earlier {
            let got = fs::read(p).unwrap_or_else(|e| panic!("{what}: read {}: {e}", p.display()));
            assert_eq!(&sha256_hex(&got), sum, "{what}: {} changed", p.display());
        }
    };

    // Fill the disk: the write fails with ENOSPC, never EIO or a short success.
    let (filled, err, _) = fill(&d.v().p("filler"), 256 * 1024, &mut rng);
    assert_eq!(
        err,
        libc::ENOSPC,
        "filling the disk failed with errno {err}, not ENOSPC"
    );
    eprintln!("filled {filled} bytes before ENOSPC");
    assert!(filled > 8 << 20, "only {filled} bytes fit on 16 MiB");

    // More ways to need space: a second file, a mkdir, a long name.
    // The failed write of the filler was rolled back (its reserved space freed), so a smaller
    // file may still fit; if it does, it must read back intact.
    let r = fs::write(d.v().p("one-more"), vec![1u8; 64 * 1024]);
    assert!(
        r.is_ok() || errno(&r) == Some(libc::ENOSPC),
        "write of a new file on a full disk: {r:?}"
    );
    if r.is_ok() {
        assert_eq!(fs::read(d.v().p("one-more")).unwrap(), vec![1u8; 64 * 1024]);
    }
    let r = fs::create_dir(d.v().p("newdir"));
    assert!(
        r.is_ok() || errno(&r) == Some(libc::ENOSPC),
        "mkdir on a full disk: {r:?}"
    );
    let long = d.v().p(&"L".repeat(240));
    let r = fs::write(&long, b"x");
    assert!(
        r.is_ok() || errno(&r) == Some(libc::ENOSPC),
        "long-name create on a full disk: {r:?}"
    );
    // Whatever failed, the tree still lists.
    for e in fs::read_dir(d.v().mnt()).unwrap() {
        e.unwrap();
    }
    check_earlier("disk full", &earlier);

    // A key-store update on a full disk: succeeds, or fails cleanly.
    // (Two sealed copies: the best valid one is what counts; neither may be left damaged.)
    let meta = d.v().backing().join(".cmkfs");
    let load_ks = || {
        for n in [1, 2] {
            let st =
                cmkfs::meta_copies::read_copy(&meta, cmkfs::meta_copies::Record::KeyStore, n, None);
            assert!(
                !matches!(st, cmkfs::meta_copies::CopyState::Damaged(_)),
                "key-store copy {n} damaged on a full disk: {st:?}"
            );
        }
        cmkfs::meta_copies::load(&meta, cmkfs::meta_copies::Record::KeyStore, None, false)
            .expect("a valid key-store copy on a full disk")
            .content
    };
    let ks_before = load_ks();
    let o = run(cmkfs()
        .arg("key")
        .arg("rotate")
        .arg(d.v().mnt())
        .arg("--data-key"));
    let ks_after = load_ks();
    let ks = cmkfs::format::KeyStore::parse(&ks_after)
        .expect("keystore.json parses after rotate on a full disk");
    if o.success() {
        eprintln!(
            "key rotate on a full disk: succeeded ({} data keys)",
            ks.data_keys.len()
        );
    } else {
        let err = o.stderr.trim();
        eprintln!("key rotate on a full disk: failed: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("cmkfs: "), "{err:?}");
        assert_eq!(ks_after, ks_before, "a failed rotate changed keystore.json");
    }
    let leftovers: Vec<_> = fs::read_dir(d.v().backing().join(".cmkfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in .cmkfs: {leftovers:?}"
    );
    // The mount still works with whatever key is current.
    check_earlier("after rotate", &earlier);

    // Delete the filler: space is back, writes work again (also with the new key, if any).
    fs::remove_file(d.v().p("filler")).unwrap();
    let _ = fs::remove_file(d.v().p("one-more"));
    let again = rng.bytes(2 << 20);
    fs::write(d.v().p("dir/after"), &again).expect("write after freeing space");
    assert_eq!(fs::read(d.v().p("dir/after")).unwrap(), again);
    let o = run(cmkfs()
        .arg("key")
        .arg("rotate")
        .arg(d.v().mnt())
        .arg("--data-key"));
    assert!(o.success(), "key rotate once space is back: {}", o.stderr);
    fs::write(d.v().p("dir/after-rotate"), b"new key").unwrap();

    // Remount: every checksum unchanged.
    d.v_mut().remount();
    check_earlier("after remount", &earlier);
    assert_eq!(fs::read(d.v().p("dir/after")).unwrap(), again);
    assert_eq!(fs::read(d.v().p("dir/after-rotate")).unwrap(), b"new key");
}

/// ENOSPC in the middle of an append or an in-place rewrite must not damage the blocks that
/// were stored before it: the file keeps reading back what was acknowledged, before and after
/// a remount. Exercises a file ending on a block boundary (its final block is re-sealed as
/// non-final before new blocks are added) and one ending mid-block (its final block grows).
#[test]
fn enospc_during_append_does_not_damage_stored_blocks() {
    let mut d = SmallDisk::new("16m");
    let mut rng = Rng::new(seed_from_env(0xE05D));
    let sizes = [8192usize, 5000, 4096 * 3 + 1];
    let mut files = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let data = rng.bytes(*n);
        let p = d.v().p(&format!("victim-{i}"));
        let f = File::create(&p).unwrap();
        f.write_all_at(&data, 0).unwrap();
        f.sync_all().unwrap();
        files.push((p, data));
    }
    let (_, err, _) = fill(&d.v().p("filler"), 1 << 20, &mut rng);
    assert_eq!(err, libc::ENOSPC);
    // Squeeze out the slack: small writes until even they fail.
    let (_, err, _) = fill(&d.v().p("filler2"), 4096, &mut rng);
    assert_eq!(err, libc::ENOSPC);
    let mut acked = Vec::new();
    for (p, data) in &files {
        let f = OpenOptions::new().write(true).open(p).unwrap();
        let extra = rng.bytes(64 * 1024);
        let r = f.write_all_at(&extra, data.len() as u64);
        let mut want = data.clone();
        match &r {
            Ok(()) => want.extend_from_slice(&extra),
            Err(e) => assert_eq!(
                errno_of(e),
                libc::ENOSPC,
                "append to {} on a full disk: {e}",
                p.display()
            ),
        }
        acked.push(want);
    }
    let mut problems = Vec::new();
    for ((p, _), want) in files.iter().zip(&acked) {
        match fs::read(p) {
            Ok(got) if got.starts_with(want) => {}
            Ok(got) => problems.push(format!(
                "{} (same mount): {} bytes, want {} (prefix differs)",
                p.display(),
                got.len(),
                want.len()
            )),
            Err(e) => problems.push(format!("{} (same mount): {e}", p.display())),
        }
    }
    fs::remove_file(d.v().p("filler")).unwrap();
    fs::remove_file(d.v().p("filler2")).unwrap();
    d.v_mut().remount();
    for ((p, _), want) in files.iter().zip(&acked) {
        match fs::read(p) {
            Ok(got) if &got == want => {}
            Ok(got) => problems.push(format!(
                "{} (after remount): {} bytes, want {}",
                p.display(),
                got.len(),
                want.len()
            )),
            Err(e) => problems.push(format!("{} (after remount): {e}", p.display())),
        }
    }
    assert!(
        problems.is_empty(),
        "stored blocks damaged by ENOSPC: {problems:#?}\nlog:\n{}",
        d.v().log_contents()
    );
}

/// Bytes the backing tmpfs has available, as the mount reports them.
fn available(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    s.blocks_available() as u64 * s.fragment_size() as u64
}

/// Writes 1 MiB files until the disk is full; returns them (the one cut short is removed).
fn fill_with_files(d: &SmallDisk, tag: &str, rng: &mut Rng) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in 0.. {
        let p = d.v().p(&format!("{tag}-{i}"));
        match fs::write(&p, rng.bytes(1 << 20)) {
            Ok(()) => files.push(p),
            Err(e) => {
                assert_eq!(errno_of(&e), libc::ENOSPC, "filling failed with {e}");
                let _ = fs::remove_file(&p);
                return files;
            }
        }
        assert!(i < 64, "wrote 64 MiB to a 16 MiB tmpfs without ENOSPC");
    }
    unreachable!()
}

/// Deleted files are freed on a background thread, yet their space is usable at once: statfs
/// right after `rm` counts it, and a write that finds the disk full while files are still being
/// freed waits for them and succeeds. The daemon holds each release back 200 ms here (the
/// debug-build knob `CMKFS_TEST_RELEASE_DELAY_MS`), so without those waits both checks fail.
#[test]
fn space_of_deleted_files_is_usable_at_once() {
    let d = SmallDisk::with_env("16m", &[("CMKFS_TEST_RELEASE_DELAY_MS", "200")]);
    let mut rng = Rng::new(seed_from_env(0xF4EE));
    let mnt = d.v().mnt();

    let files = fill_with_files(&d, "a", &mut rng);
    assert!(files.len() >= 8, "only {} MiB fitted", files.len());
    // A file replaced by a rename is freed the same way.
    let full = available(&mnt);
    fs::write(d.v().p("small"), b"x").unwrap();
    fs::rename(d.v().p("small"), &files[0]).unwrap();
    let freed = available(&mnt).saturating_sub(full);
    assert!(
        freed >= 1 << 20,
        "statfs right after renaming over a 1 MiB file shows {freed} bytes freed"
    );
    let full = available(&mnt);
    for p in &files {
        fs::remove_file(p).unwrap();
    }
    let freed = available(&mnt) - full;
    assert!(
        freed >= (files.len() as u64 - 1) * (1 << 20),
        "statfs right after deleting {} MiB shows only {freed} bytes freed",
        files.len()
    );

    let files = fill_with_files(&d, "b", &mut rng);
    for p in &files {
        fs::remove_file(p).unwrap();
    }
    // No statfs in between: the releases are still pending when this write finds the disk full.
    let data = rng.bytes((files.len() - 1) << 20);
    fs::write(d.v().p("after-delete"), &data).unwrap_or_else(|e| {
        panic!(
            "writing {} MiB right after deleting {} MiB: {e}",
            data.len() >> 20,
            files.len()
        )
    });
    assert_eq!(
        sha256_hex(&fs::read(d.v().p("after-delete")).unwrap()),
        sha256_hex(&data)
    );
}
