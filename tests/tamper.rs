//! Tampering with the backing files while unmounted must give EIO on the damaged range (never
//! wrong data), leave undamaged earlier blocks readable, log the block, and keep the daemon up.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BS: usize = 4096;
const SEALED: u64 = 4096 + 28;
const HEADER: u64 = 32;
const NBLOCKS: usize = 5;

fn block_off(i: u64) -> u64 {
    HEADER + i * SEALED
}

struct Setup {
    v: TestVolume,
    data: Vec<u8>,
    /// Backing file of `d/victim`.
    victim: PathBuf,
    /// Backing file of `e/other` (same size, other content).
    other: PathBuf,
    other_data: Vec<u8>,
}

/// A volume with `d/victim` and `e/other`, 5 full blocks each, unmounted.
fn setup(seed: u64) -> Setup {
    let mut v = TestVolume::new();
    let mut rng = Rng::new(seed);
    let data = rng.bytes(NBLOCKS * BS);
    let other_data = rng.bytes(NBLOCKS * BS);
    fs::create_dir(v.p("d")).unwrap();
    fs::write(v.p("d/victim"), &data).unwrap();
    fs::write(v.p("d/good"), b"an undamaged file").unwrap();
    let d = new_entry(&v.backing(), &[]);
    fs::create_dir(v.p("e")).unwrap();
    fs::write(v.p("e/other"), &other_data).unwrap();
    let e = new_entry(&v.backing(), std::slice::from_ref(&d));
    v.umount();
    // d holds two files; find the victim by its length (the other is short)
    let victim = visible_entries(&d)
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 1000)
        .expect("backing file of d/victim");
    let others = visible_entries(&e);
    assert_eq!(
        others.len(),
        1,
        "e should hold one backing file: {others:?}"
    );
    let other = others[0].clone();
    for p in [&victim, &other] {
        assert_eq!(
            fs::metadata(p).unwrap().len(),
            HEADER + NBLOCKS as u64 * SEALED,
            "backing length of a {}-block file ({})",
            NBLOCKS,
            p.display()
        );
    }
    Setup {
        v,
        data,
        victim,
        other,
        other_data,
    }
}

fn read_range(p: &Path, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = File::open(p)?;
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

fn read_block(v: &TestVolume, i: usize) -> std::io::Result<Vec<u8>> {
    read_range(&v.p("d/victim"), (i * BS) as u64, BS)
}

fn patch(p: &Path, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn read_at(p: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(p).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

/// True if `line` says "block N" with N exactly `n`.
fn mentions_block(line: &str, n: usize) -> bool {
    let pat = format!("block {n}");
    line.match_indices(&pat)
        .any(|(i, _)| !line[i + pat.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[track_caller]
fn assert_eio(r: std::io::Result<Vec<u8>>, what: &str) {
    match r {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EIO),
            "{what}: expected EIO, got {e}"
        ),
        Ok(d) => panic!(
            "{what}: expected EIO, but the read returned {} bytes",
            d.len()
        ),
    }
}

/// Remounts and checks: block 0 (if `block0_ok`) reads correctly, `bad` blocks give EIO, the
/// whole file gives EIO, the log names `log_block` and the file, and the daemon still serves.
fn check(s: &mut Setup, bad: &[usize], block0_ok: bool, log_block: usize) {
    s.v.mount();
    if block0_ok {
        let b0 = read_block(&s.v, 0).expect("block 0 before the damage must stay readable");
        assert_bytes_eq(&b0, &s.data[..BS], "block 0");
    }
    for &b in bad {
        assert_eio(read_block(&s.v, b), &format!("read of damaged block {b}"));
        // also an unaligned read straddling into the damaged block
        if b > 0 {
            assert_eio(
                read_range(&s.v.p("d/victim"), (b * BS - 10) as u64, 20),
                &format!("read into block {b}"),
            );
        }
    }
    assert_eio(
        fs::read(s.v.p("d/victim")),
        "read of the whole damaged file",
    );
    let name = s.victim.file_name().unwrap().to_str().unwrap().to_string();
    let line = s.v.wait_log_line(|l| {
        mentions_block(l, log_block) && (l.contains("victim") || l.contains(&name))
    });
    assert!(
        line.is_some(),
        "no log line mentioning \"block {log_block}\" and the file (d/victim or {name}); log:\n{}",
        s.v.log_contents()
    );
    eprintln!("log line: {}", line.unwrap());
    // the daemon keeps serving
    assert_eq!(fs::read(s.v.p("d/good")).unwrap(), b"an undamaged file");
    assert_bytes_eq(
        &fs::read(s.v.p("e/other")).unwrap(),
        &s.other_data,
        "other file",
    );
    fs::write(s.v.p("d/new"), b"still serving").unwrap();
    assert_eq!(fs::read(s.v.p("d/new")).unwrap(), b"still serving");
    assert!(is_mounted(&s.v.mnt()), "daemon died");
}

#[test]
fn untampered_reads_fine() {
    let mut s = setup(1);
    s.v.mount();
    assert_bytes_eq(
        &fs::read(s.v.p("d/victim")).unwrap(),
        &s.data,
        "untampered victim",
    );
    assert_bytes_eq(
        &fs::read(s.v.p("e/other")).unwrap(),
        &s.other_data,
        "untampered other",
    );
}

#[test]
fn flipped_byte_in_block_1() {
    let mut s = setup(2);
    let off = block_off(1) + 12 + 100; // inside the ciphertext of block 1
    let mut b = read_at(&s.victim, off, 1);
    b[0] ^= 0x01;
    patch(&s.victim, off, &b);
    check(&mut s, &[1], true, 1);
    // blocks after the damage are independent and still correct
    for i in 2..NBLOCKS {
        let got = read_block(&s.v, i)
            .unwrap_or_else(|e| panic!("block {i} after a damaged block 1: {e}"));
        assert_bytes_eq(&got, &s.data[i * BS..(i + 1) * BS], &format!("block {i}"));
    }
}

#[test]
fn flipped_byte_in_nonce_and_tag() {
    let mut s = setup(3);
    // nonce of block 2, tag of block 3
    for off in [block_off(2) + 3, block_off(4) - 5] {
        let mut b = read_at(&s.victim, off, 1);
        b[0] ^= 0x80;
        patch(&s.victim, off, &b);
    }
    check(&mut s, &[2, 3], true, 2);
}

#[test]
fn swapped_blocks_1_and_2() {
    let mut s = setup(4);
    let b1 = read_at(&s.victim, block_off(1), SEALED as usize);
    let b2 = read_at(&s.victim, block_off(2), SEALED as usize);
    patch(&s.victim, block_off(1), &b2);
    patch(&s.victim, block_off(2), &b1);
    check(&mut s, &[1, 2], true, 1);
}

#[test]
fn block_copied_from_other_file() {
    let mut s = setup(5);
    let b1 = read_at(&s.other, block_off(1), SEALED as usize);
    patch(&s.victim, block_off(1), &b1);
    check(&mut s, &[1], true, 1);
    let b2 = read_block(&s.v, 2).expect("block 2 untouched");
    assert_bytes_eq(&b2, &s.data[2 * BS..3 * BS], "block 2");
}

#[test]
fn truncated_at_block_boundary() {
    let mut s = setup(6);
    // drop the last block: block 3 becomes the final block but was sealed as non-final
    OpenOptions::new()
        .write(true)
        .open(&s.victim)
        .unwrap()
        .set_len(block_off(4))
        .unwrap();
    check(&mut s, &[3], true, 3);
}

#[test]
fn truncated_mid_block() {
    let mut s = setup(7);
    OpenOptions::new()
        .write(true)
        .open(&s.victim)
        .unwrap()
        .set_len(block_off(4) + 2000)
        .unwrap();
    check(&mut s, &[4], true, 4);
    let b3 = read_block(&s.v, 3).expect("block 3 untouched");
    assert_bytes_eq(&b3, &s.data[3 * BS..4 * BS], "block 3");
}

#[test]
fn appended_copy_of_block_0() {
    let mut s = setup(8);
    let b0 = read_at(&s.victim, block_off(0), SEALED as usize);
    let mut f = OpenOptions::new().append(true).open(&s.victim).unwrap();
    f.write_all(&b0).unwrap();
    drop(f);
    // block 4 was sealed as final and no longer is; block 5 is block 0 at the wrong index
    check(&mut s, &[4, 5], true, 4);
    assert!(
        s.v.log_contents().lines().any(|l| mentions_block(l, 5)),
        "no log line mentions block 5:\n{}",
        s.v.log_contents()
    );
}

#[test]
fn appended_garbage_bytes() {
    let mut s = setup(9);
    let mut f = OpenOptions::new().append(true).open(&s.victim).unwrap();
    f.write_all(&Rng::new(99).bytes(100)).unwrap();
    drop(f);
    check(&mut s, &[4, 5], true, 4);
}

#[test]
fn flipped_file_id_in_header() {
    let mut s = setup(10);
    let off = 16 + 5; // inside the file id
    let mut b = read_at(&s.victim, off, 1);
    b[0] ^= 0x40;
    patch(&s.victim, off, &b);
    check(&mut s, &[0, 1, 4], false, 0);
}

#[test]
fn damaged_file_does_not_poison_the_cache_of_good_reads() {
    // read the file once while intact (page cache warm), then tamper while unmounted: the
    // remount must not serve anything stale and must still detect the damage.
    let mut s = setup(11);
    s.v.mount();
    assert_bytes_eq(
        &fs::read(s.v.p("d/victim")).unwrap(),
        &s.data,
        "before tamper",
    );
    s.v.umount();
    let off = block_off(2) + 50;
    let mut b = read_at(&s.victim, off, 1);
    b[0] ^= 0xff;
    patch(&s.victim, off, &b);
    check(&mut s, &[2], true, 2);
}

#[test]
fn corrupted_names_do_not_break_listing() {
    let mut v = TestVolume::new();
    fs::create_dir(v.p("dir")).unwrap();
    let names = ["alpha", "beta", "gamma", "delta", "epsilon"];
    for n in names {
        fs::write(v.p(&format!("dir/{n}")), n.as_bytes()).unwrap();
    }
    let bdir = new_entry(&v.backing(), &[]);
    v.umount();
    let entries = visible_entries(&bdir);
    assert_eq!(entries.len(), names.len());
    // 1: valid base64url that does not decrypt; 2: not base64 at all; 3: a name cut short
    fs::rename(
        &entries[0],
        bdir.join("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn"),
    )
    .unwrap();
    fs::rename(&entries[1], bdir.join("!!not*base64~~")).unwrap();
    let cut = entries[2].file_name().unwrap().to_str().unwrap();
    fs::rename(&entries[2], bdir.join(&cut[..cut.len() - 3])).unwrap();
    // and a stray foreign file in the root
    fs::write(v.backing().join("zzzz"), b"foreign").unwrap();
    v.mount();
    let listed: Vec<String> = fs::read_dir(v.p("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // the two intact entries are listed, the three corrupted ones are not (or listed under
    // some non-plaintext name we cannot predict: we only require the intact ones to be there)
    let intact: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| listed.iter().any(|l| l == n))
        .collect();
    assert_eq!(
        intact.len(),
        2,
        "expected exactly two intact names listed, got {listed:?}"
    );
    for n in &intact {
        assert_eq!(fs::read(v.p(&format!("dir/{n}"))).unwrap(), n.as_bytes());
    }
    // root listing still works
    let root: Vec<String> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        root.contains(&"dir".to_string()),
        "root listing lost dir: {root:?}"
    );
    // the daemon keeps serving: create, list, read
    fs::write(v.p("dir/new"), b"new").unwrap();
    assert_eq!(fs::read(v.p("dir/new")).unwrap(), b"new");
    assert!(
        fs::read_dir(v.p("dir"))
            .unwrap()
            .any(|e| e.unwrap().file_name() == "new")
    );
    assert!(is_mounted(&v.mnt()), "daemon died");
    v.umount();
}

#[test]
fn corrupted_dirid_does_not_crash() {
    let mut v = TestVolume::new();
    fs::create_dir(v.p("dir")).unwrap();
    fs::write(v.p("dir/inside"), b"inside").unwrap();
    let bdir = new_entry(&v.backing(), &[]);
    fs::write(v.p("outside"), b"outside").unwrap();
    v.umount();
    let dirid = bdir.join(".cmkfs.dirid");
    let len = fs::metadata(&dirid).unwrap().len() as usize;
    let mut perms = fs::metadata(&dirid).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    fs::set_permissions(&dirid, perms).unwrap();
    fs::write(&dirid, Rng::new(5).bytes(len)).unwrap();
    v.mount();
    // the damaged directory may fail (EIO) or list nothing it cannot decrypt, but it must never
    // show a wrong name, and everything else keeps working
    match fs::read_dir(v.p("dir")) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => assert_eq!(
                        e.file_name(),
                        "inside",
                        "wrong name listed in a dir with a damaged id"
                    ),
                    Err(e) => assert_eq!(
                        e.raw_os_error(),
                        Some(libc::EIO),
                        "readdir entry error: {e}"
                    ),
                }
            }
        }
        // EIO would be more telling, but ENOENT (the directory cannot be resolved) is accepted
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENOENT)),
            "opendir of damaged dir: {e}"
        ),
    }
    match fs::read(v.p("dir/inside")) {
        Ok(d) => assert_eq!(d, b"inside", "wrong data through a damaged dir"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENOENT)),
            "read through damaged dir: {e}"
        ),
    }
    assert_eq!(fs::read(v.p("outside")).unwrap(), b"outside");
    fs::write(v.p("after"), b"after").unwrap();
    assert_eq!(fs::read(v.p("after")).unwrap(), b"after");
    assert!(is_mounted(&v.mnt()), "daemon died");
}

#[test]
fn header_only_and_short_backing_files() {
    // A backing file cut inside the header or to the bare header must not yield data or crash.
    let mut s = setup(12);
    OpenOptions::new()
        .write(true)
        .open(&s.victim)
        .unwrap()
        .set_len(20)
        .unwrap();
    s.v.mount();
    match fs::read(s.v.p("d/victim")) {
        Ok(d) => assert!(
            d.is_empty(),
            "a file cut inside its header returned {} bytes",
            d.len()
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
    }
    assert_eq!(fs::read(s.v.p("d/good")).unwrap(), b"an undamaged file");
    s.v.umount();
    OpenOptions::new()
        .write(true)
        .open(&s.other)
        .unwrap()
        .set_len(HEADER)
        .unwrap();
    s.v.mount();
    match fs::read(s.v.p("e/other")) {
        Ok(d) => assert!(
            d.is_empty(),
            "a header-only file returned {} bytes",
            d.len()
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
    }
    assert!(is_mounted(&s.v.mnt()), "daemon died");
}
