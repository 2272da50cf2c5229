//! overlayfs with its upper and work directories on cmkfs (a container's writable layer kept
//! encrypted): a real `mount -t overlay`, copy-up of a modified lower file, deletion of a lower
//! file (whiteout), rename of a lower directory (redirect), a file created and removed, then
//! the overlay unmounted, cmkfs remounted and the overlay mounted again: the same view, the
//! same as with the upper layer on a plain directory, and no overlayfs warning in the kernel
//! log (no "upper fs does not support tmpfile" or the like).

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn lower_tree(lower: &Path) {
    fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
    fs::write(lower.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(lower.join("etc/conf.d/app"), b"level=1\n").unwrap();
    fs::write(lower.join("etc/conf.d/other"), b"other\n").unwrap();
    fs::create_dir_all(lower.join("usr/lib")).unwrap();
    fs::write(lower.join("usr/lib/big"), vec![7u8; 300_000]).unwrap();
    fs::write(lower.join("usr/lib/gone"), b"to be deleted").unwrap();
    fs::set_permissions(lower.join("usr/lib/big"), fs::Permissions::from_mode(0o755)).unwrap();
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, at: &Path) {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=on",
        lower.display(),
        upper.display(),
        work.display()
    );
    let o = run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(&opts)
        .arg(at));
    assert!(o.success(), "mount -t overlay -o {opts}: {}", o.stderr);
}

fn umount(at: &Path) {
    let o = run(Command::new("umount").arg(at));
    assert!(o.success(), "umount {}: {}", at.display(), o.stderr);
}

/// What a program sees in the overlay: every path with its type, mode and content digest.
fn view(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(root)
        .into_iter()
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                "dir".to_string()
            } else {
                sha256_hex(&fs::read(&p).unwrap())[..12].to_string()
            };
            format!("{rel} {:o} {what}", m.mode())
        })
        .collect();
    v.sort();
    v
}

/// The changes a container makes to its root filesystem.
fn changes(ov: &Path) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(ov.join("etc/hosts"))
        .unwrap();
    f.write_all(b"10.0.0.2 db\n").unwrap();
    drop(f);
    fs::remove_file(ov.join("usr/lib/gone")).unwrap();
    fs::rename(ov.join("etc/conf.d"), ov.join("etc/conf.new")).unwrap();
    fs::write(ov.join("etc/conf.new/app"), b"level=2\n").unwrap();
    fs::write(ov.join("tmp-file"), b"short-lived").unwrap();
    fs::remove_file(ov.join("tmp-file")).unwrap();
    fs::create_dir(ov.join("var")).unwrap();
    fs::write(ov.join("var/state"), b"kept").unwrap();
    fs::set_permissions(ov.join("usr/lib/big"), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Kernel log lines from overlayfs since `marker` was written.
fn overlay_messages_since(marker: &str) -> Vec<String> {
    let out = run(&mut Command::new("dmesg"));
    let log = out.stdout;
    let tail = match log.rfind(marker) {
        Some(i) => &log[i..],
        None => log.as_str(),
    };
    tail.lines()
        .filter(|l| l.contains("overlayfs"))
        .map(str::to_string)
        .collect()
}

fn overlay_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| s.contains("overlay"))
        .unwrap_or(false)
        || run(Command::new("modprobe").arg("overlay")).success()
}

#[test]
fn overlay_upper_on_cmkfs_keeps_its_view_across_remounts_without_warnings() {
    if !overlay_available() {
        panic!("overlayfs is not available in this kernel (modprobe overlay failed)");
    }
    let top = tempfile::tempdir().unwrap();
    let lower = top.path().join("lower");
    lower_tree(&lower);

    // Oracle: the upper layer on a plain directory.
    let plain_ov = top.path().join("plain-ov");
    let plain_upper = top.path().join("plain-upper");
    let plain_work = top.path().join("plain-work");
    for d in [&plain_ov, &plain_upper, &plain_work] {
        fs::create_dir(d).unwrap();
    }
    mount_overlay(&lower, &plain_upper, &plain_work, &plain_ov);
    let plain_guard = scopeguard(&plain_ov);
    changes(&plain_ov);
    let want = view(&plain_ov);
    umount(&plain_ov);
    drop(plain_guard);

    let mut v = TestVolume::new();
    let (upper, work) = (v.p("layer/upper"), v.p("layer/work"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let ov: PathBuf = top.path().join("ov");
    fs::create_dir(&ov).unwrap();
    let marker = format!("cmkfs-overlay-test-{}", std::process::id());
    fs::write("/dev/kmsg", format!("{marker}\n")).unwrap();
    mount_overlay(&lower, &upper, &work, &ov);
    let guard = scopeguard(&ov);
    changes(&ov);
    assert_eq!(
        view(&ov),
        want,
        "overlay view with the upper layer on cmkfs"
    );
    umount(&ov);

    // The upper layer is what overlayfs made of it: copy-up, whiteout, redirect.
    let whiteout = fs::symlink_metadata(upper.join("usr/lib/gone")).unwrap();
    assert_eq!(
        (whiteout.mode() & libc::S_IFMT, whiteout.rdev()),
        (libc::S_IFCHR, 0)
    );
    let redirect = xattr(&upper.join("etc/conf.new"), "trusted.overlay.redirect");
    assert!(
        redirect.is_some(),
        "renamed lower directory has no redirect"
    );
    assert!(!upper.join("tmp-file").exists());

    v.remount();
    mount_overlay(&lower, &upper, &work, &ov);
    assert_eq!(view(&ov), want, "overlay view after remounting cmkfs");
    umount(&ov);
    drop(guard);
    let msgs = overlay_messages_since(&marker);
    assert!(msgs.is_empty(), "overlayfs warned: {msgs:#?}");
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (c, n) = (cstr(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

/// Unmounts the overlay if the test fails while it is mounted (before cmkfs goes).
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}
fn scopeguard(p: &Path) -> Unmount {
    Unmount(p.to_path_buf())
}
