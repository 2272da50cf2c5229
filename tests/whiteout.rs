//! Whiteouts as on ext4: `renameat2(RENAME_WHITEOUT)` leaves a 0/0 character device at the
//! old name, and `mknod` of a 0/0 character device makes one; both are listed entries with
//! encrypted names that can be removed, for short and long (hashed backing) names alike.
//! Compared with the same steps in a plain directory.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn mknod_whiteout(p: &Path) -> std::io::Result<()> {
    let c = cstr(p);
    // SAFETY: plain syscall with a valid NUL-terminated path.
    cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) }).map(|_| ())
}

/// Name, type and rdev of every entry of `dir`, sorted.
fn listing(dir: &Path) -> Vec<(String, bool, u64)> {
    let mut v: Vec<(String, bool, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.file_type().is_char_device(),
                m.rdev(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The same steps in `root` (a mount or a plain directory); returns what was observed.
fn steps(root: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let long = "w".repeat(200);
    let d = root.join("d");
    fs::create_dir(&d).unwrap();
    for name in ["short", long.as_str()] {
        fs::write(d.join(name), b"lower").unwrap();
        renameat2(
            &d.join(name),
            &d.join(format!("{}-moved", &name[..5])),
            libc::RENAME_WHITEOUT,
        )
        .unwrap();
    }
    mknod_whiteout(&d.join(format!("{}-mknod", "m".repeat(200)))).unwrap();
    mknod_whiteout(&d.join("m-short")).unwrap();
    seen.push(format!("{:?}", listing(&d)));
    // Whiteouts are removable; then the directory is empty and goes.
    for (name, is_chr, _) in listing(&d) {
        if is_chr {
            fs::remove_file(d.join(&name)).unwrap();
        }
    }
    seen.push(format!("{:?}", listing(&d)));
    for (name, _, _) in listing(&d) {
        fs::remove_file(d.join(name)).unwrap();
    }
    fs::remove_dir(&d).unwrap();
    seen.push(format!("{}", d.exists()));
    seen
}

#[test]
fn whiteouts_are_listed_and_removable_like_on_ext4() {
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let want = steps(plain.path());
    assert_eq!(steps(&v.mnt()), want);
    // And across a remount, with a whiteout left in place.
    let long = "z".repeat(200);
    fs::write(v.p(&long), b"x").unwrap();
    renameat2(&v.p(&long), &v.p("elsewhere"), libc::RENAME_WHITEOUT).unwrap();
    v.remount();
    let l = listing(&v.mnt());
    assert!(l.contains(&(long.clone(), true, 0)), "{l:?}");
    fs::remove_file(v.p(&long)).unwrap();
    assert_eq!(listing(&v.mnt()), vec![("elsewhere".to_string(), false, 0)]);
}
