//! No plaintext (content, names, symlink targets, xattr values) reaches the backing directory.

mod common;

use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const CONTENT_MARKER: &[u8] = b"CMKFS-PLAINTEXT-MARKER-7d1f";
const NAME_MARKER: &str = "cmkfsnamemarker93ab";
const LINK_MARKER: &str = "CMKFS-LINK-MARKER-51c0";
const XATTR_MARKER: &[u8] = b"CMKFS-XATTR-MARKER-e2a9";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Case-insensitive search too: base64 of a name must not be the name.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let h = hay.to_ascii_lowercase();
    contains(&h, &needle.to_ascii_lowercase())
}

fn xattrs_of(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = cstr(p);
    let mut buf = vec![0u8; 65536];
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Vec::new();
    }
    buf.truncate(r as usize);
    let mut out = Vec::new();
    for name in buf.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let n = std::ffi::CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        let r =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if r >= 0 {
            val.truncate(r as usize);
            out.push((name.to_vec(), val));
        }
    }
    out
}

/// Every marker we must not find, with what it is.
fn markers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("content", CONTENT_MARKER.to_vec()),
        ("name", NAME_MARKER.as_bytes().to_vec()),
        ("symlink target", LINK_MARKER.as_bytes().to_vec()),
        ("xattr value", XATTR_MARKER.to_vec()),
    ]
}

fn scan_backing(backing: &Path) -> Vec<String> {
    let mut leaks = Vec::new();
    let mut check = |what: &str, where_: &Path, bytes: &[u8]| {
        for (kind, m) in markers() {
            if contains_ci(bytes, &m) {
                leaks.push(format!("{kind} marker in {what} of {}", where_.display()));
            }
        }
    };
    let entries = walk(backing);
    assert!(!entries.is_empty());
    for p in &entries {
        check("name", p, p.file_name().unwrap().as_bytes());
        let m = fs::symlink_metadata(p).unwrap();
        if m.file_type().is_symlink() {
            check(
                "symlink target",
                p,
                fs::read_link(p).unwrap().as_os_str().as_bytes(),
            );
        } else if m.is_file() {
            check("content", p, &fs::read(p).unwrap());
        }
        for (n, val) in xattrs_of(p) {
            check("xattr name", p, &n);
            check("xattr value", p, &val);
        }
    }
    check(
        "root xattrs",
        backing,
        &xattrs_of(backing)
            .into_iter()
            .flat_map(|(a, b)| [a, b].concat())
            .collect::<Vec<u8>>(),
    );
    leaks
}

#[test]
fn no_plaintext_in_backing() {
    let mut v = TestVolume::new();
    let mut rng = Rng::new(7);
    // content: marker repeated many times, aligned and unaligned, plus a file of only markers
    let mut content = Vec::new();
    for i in 0..2000 {
        content.extend_from_slice(CONTENT_MARKER);
        content.extend_from_slice(&rng.bytes(i % 7));
    }
    fs::write(v.p("plain.txt"), &content).unwrap();
    fs::write(v.p("only"), CONTENT_MARKER.repeat(10)).unwrap();
    fs::write(v.p("tiny"), CONTENT_MARKER).unwrap();
    // names: file and dir named with the marker, short and long (long-name side files)
    let long_name = format!("{}{}", NAME_MARKER, "-".repeat(200));
    fs::create_dir(v.p(NAME_MARKER)).unwrap();
    fs::write(
        v.p(NAME_MARKER).join(format!("{NAME_MARKER}.txt")),
        &content,
    )
    .unwrap();
    fs::write(v.p(&long_name), b"long").unwrap();
    fs::create_dir(v.p(NAME_MARKER).join(&long_name)).unwrap();
    fs::write(v.p(NAME_MARKER).join(&long_name).join("f"), CONTENT_MARKER).unwrap();
    // symlink target with a marker (short and long)
    std::os::unix::fs::symlink(LINK_MARKER, v.p("link1")).unwrap();
    std::os::unix::fs::symlink(format!("{}/{}", LINK_MARKER, "x".repeat(500)), v.p("link2"))
        .unwrap();
    // xattr value with a marker
    let c = cstr(&v.p("plain.txt"));
    let n = std::ffi::CString::new("user.secret").unwrap();
    cvt(unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            XATTR_MARKER.as_ptr().cast(),
            XATTR_MARKER.len(),
            0,
        )
    })
    .expect("setxattr");
    let c = cstr(&v.p(NAME_MARKER));
    cvt(unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            XATTR_MARKER.as_ptr().cast(),
            XATTR_MARKER.len(),
            0,
        )
    })
    .expect("setxattr on dir");
    // mmap-written and pwrite-patched content too
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(v.p("patched"))
            .unwrap();
        f.write_all_at(&vec![0u8; 20_000], 0).unwrap();
        f.write_all_at(CONTENT_MARKER, 4090).unwrap();
        f.write_all_at(CONTENT_MARKER, 12_345).unwrap();
        f.sync_all().unwrap();
    }
    // check that everything is readable through the mount first
    assert_eq!(fs::read(v.p("plain.txt")).unwrap(), content);
    assert_eq!(
        fs::read_link(v.p("link1")).unwrap().to_str().unwrap(),
        LINK_MARKER
    );

    // while mounted (data may only be in backing files once flushed: fsync above, plus umount)
    let leaks = scan_backing(&v.backing());
    assert!(
        leaks.is_empty(),
        "plaintext leaks while mounted:\n{}",
        leaks.join("\n")
    );
    v.umount();
    let leaks = scan_backing(&v.backing());
    assert!(
        leaks.is_empty(),
        "plaintext leaks after umount:\n{}",
        leaks.join("\n")
    );

    // sanity: the scanner does find markers when they are there
    let probe = v.root().join("probe");
    fs::create_dir(&probe).unwrap();
    fs::write(
        probe.join("x"),
        [b"abc".as_slice(), CONTENT_MARKER].concat(),
    )
    .unwrap();
    assert!(!scan_backing(&probe).is_empty(), "scanner self-test failed");

    // the log must not contain the plaintext names or content either
    let log = v.log_contents();
    assert!(
        !contains(log.as_bytes(), CONTENT_MARKER),
        "content marker in log"
    );
    assert!(
        !contains(log.as_bytes(), XATTR_MARKER),
        "xattr value in log"
    );

    v.mount();
    assert_eq!(fs::read(v.p("plain.txt")).unwrap(), content);
}

#[test]
fn same_content_different_ciphertext() {
    // Two files with identical plaintext must not have identical ciphertext (random file id /
    // nonces), and rewriting a file must change its ciphertext.
    let mut v = TestVolume::new();
    let data = CONTENT_MARKER.repeat(500);
    fs::create_dir(v.p("a")).unwrap();
    let dir_a = new_entry(&v.backing(), &[]);
    fs::create_dir(v.p("b")).unwrap();
    let dir_b = new_entry(&v.backing(), std::slice::from_ref(&dir_a));
    fs::write(v.p("a/f"), &data).unwrap();
    fs::write(v.p("b/f"), &data).unwrap();
    v.umount();
    let fa = visible_entries(&dir_a);
    let fb = visible_entries(&dir_b);
    assert_eq!((fa.len(), fb.len()), (1, 1));
    // same plaintext name in different dirs encrypts differently
    assert_ne!(
        fa[0].file_name(),
        fb[0].file_name(),
        "same name in two dirs gave the same backing name"
    );
    let (ca, cb) = (fs::read(&fa[0]).unwrap(), fs::read(&fb[0]).unwrap());
    assert_eq!(ca.len(), cb.len());
    assert_eq!(
        ca.len(),
        32 + data.len().div_ceil(4096) * 28 + data.len(),
        "ciphertext length formula"
    );
    assert!(ca != cb, "identical ciphertext for identical plaintext");
    assert!(
        ca[32..] != cb[32..],
        "identical blocks for identical plaintext"
    );
    v.mount();
    fs::write(v.p("a/f"), &data).unwrap();
    v.umount();
    let ca2 = fs::read(&fa[0]).unwrap();
    assert!(
        ca2.len() == ca.len(),
        "rewritten file has another length: {} vs {}",
        ca2.len(),
        ca.len()
    );
    assert!(
        ca[32..4156] != ca2[32..4156],
        "rewriting the same data reused the same nonce/ciphertext"
    );
}
