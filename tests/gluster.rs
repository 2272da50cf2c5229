//! cmkfs on GlusterFS, whose FUSE client refuses every `renameat2` with flags (EINVAL,
//! gluster#3907): directories are created, trees unpacked, and applications'
//! `RENAME_NOREPLACE`, `RENAME_EXCHANGE` and `RENAME_WHITEOUT` behave as on ext4 (compared with
//! a plain directory), through the emulation that the daemon announces once in its log.
//!
//! Uses a single-node GlusterFS volume on this machine (`scripts/gluster.sh up`). Where
//! GlusterFS cannot be started the test says so and fails, unless `CMKFS_ALLOW_NO_GLUSTER=1`,
//! which turns it into a loud skip.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The first GlusterFS mount, brought up once for this test binary.
fn gluster() -> Option<PathBuf> {
    static UP: OnceLock<Option<PathBuf>> = OnceLock::new();
    UP.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gluster.sh");
        let o = run(Command::new(script).arg("up"));
        if o.success() {
            Some(PathBuf::from("/mnt/cmkfs-gluster-a"))
        } else {
            let why = format!("GlusterFS could not be started: {}", o.stderr.trim());
            if std::env::var_os("CMKFS_ALLOW_NO_GLUSTER").is_some() {
                eprintln!("SKIPPED (CMKFS_ALLOW_NO_GLUSTER): {why}");
                None
            } else {
                panic!("{why}");
            }
        }
    })
    .clone()
}

/// A volume whose backing directory is on GlusterFS, mounted on a local directory.
struct GlusterVolume {
    local: tempfile::TempDir,
    backing: PathBuf,
    mounted: bool,
}

impl GlusterVolume {
    fn new(gluster: &Path, name: &str) -> Self {
        let backing = gluster.join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&backing);
        fs::create_dir_all(&backing).unwrap();
        let local = tempfile::tempdir().unwrap();
        fs::create_dir(local.path().join("mnt")).unwrap();
        let v = GlusterVolume {
            local,
            backing,
            mounted: false,
        };
        run_ok(
            cmkfs()
                .arg("init")
                .arg(&v.backing)
                .arg("--service-key")
                .arg(v.key()),
        );
        v
    }
    fn key(&self) -> PathBuf {
        self.local.path().join("key")
    }
    fn mnt(&self) -> PathBuf {
        self.local.path().join("mnt")
    }
    fn log(&self) -> String {
        fs::read_to_string(self.local.path().join("log")).unwrap_or_default()
    }
    fn mount(&mut self) {
        run_ok(
            cmkfs()
                .arg("mount")
                .arg(&self.backing)
                .arg(self.mnt())
                .arg("--service-key")
                .arg(self.key())
                .arg("--log-file")
                .arg(self.local.path().join("log")),
        );
        self.mounted = true;
    }
    fn umount(&mut self) {
        run_ok(cmkfs().arg("umount").arg(self.mnt()));
        self.mounted = false;
    }
}

impl Drop for GlusterVolume {
    fn drop(&mut self) {
        if self.mounted {
            let _ = run(cmkfs().arg("umount").arg(self.mnt()));
            force_unmount(&self.mnt());
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.backing);
    }
}

/// Every entry under `root` with its type and content digest, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(root)
        .into_iter()
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.is_dir() {
                format!("{rel}/")
            } else if m.file_type().is_file() {
                format!("{rel} {}", &sha256_hex(&fs::read(&p).unwrap())[..12])
            } else {
                format!("{rel} {:?}", m.file_type())
            }
        })
        .collect();
    v.sort();
    v
}

/// Directory-heavy work and every `renameat2` flag, in `root`; returns what was observed.
fn steps(root: &Path, src_tree: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let long = "n".repeat(200);
    fs::create_dir_all(root.join("a/b/c").join(&long)).unwrap();
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' -cf - . | tar -C '{}' -xf -",
        src_tree.display(),
        root.join("a/b").display()
    )));
    seen.push(format!("tar: {}", o.success()));
    let noreplace = libc::RENAME_NOREPLACE;
    fs::write(root.join("x"), b"x").unwrap();
    fs::write(root.join("y"), b"y").unwrap();
    seen.push(format!(
        "noreplace onto a file: {:?}",
        errno(&renameat2(&root.join("x"), &root.join("y"), noreplace))
    ));
    seen.push(format!(
        "noreplace onto a directory: {:?}",
        errno(&renameat2(&root.join("x"), &root.join("a"), noreplace))
    ));
    renameat2(&root.join("x"), &root.join(&long), noreplace).unwrap();
    renameat2(&root.join(&long), &root.join("y"), libc::RENAME_EXCHANGE).unwrap();
    seen.push(format!(
        "exchanged: {:?} {:?}",
        fs::read(root.join("y")).unwrap(),
        fs::read(root.join(&long)).unwrap()
    ));
    renameat2(&root.join("a/b/c"), &root.join("y"), libc::RENAME_EXCHANGE).unwrap();
    seen.push(format!(
        "dir and file exchanged: {} {}",
        root.join("y").is_dir(),
        root.join("a/b/c").is_file()
    ));
    seen.push(format!(
        "exchange with a missing name: {:?}",
        errno(&renameat2(
            &root.join("y"),
            &root.join("missing"),
            libc::RENAME_EXCHANGE
        ))
    ));
    seen.push(format!(
        "a directory into itself: {:?}",
        errno(&renameat2(
            &root.join("a"),
            &root.join("a/b/inside"),
            noreplace
        ))
    ));
    renameat2(&root.join(&long), &root.join("w"), libc::RENAME_WHITEOUT).unwrap();
    seen.push(format!("after whiteout: {:?}", tree(root).len()));
    fs::remove_file(root.join(&long)).unwrap();
    seen.push(format!("{:?}", tree(root)));
    seen
}

#[test]
fn directories_and_rename_flags_work_on_glusterfs_as_on_ext4() {
    let Some(g) = gluster() else { return };
    let src = tempfile::tempdir().unwrap();
    for d in 0..8 {
        let dir = src.path().join(format!("d{d}/sub"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..6 {
            fs::write(
                dir.join(format!("f{f}")),
                format!("{d}/{f}").repeat(d * 300 + f),
            )
            .unwrap();
        }
    }
    let plain = tempfile::tempdir().unwrap();
    let want = steps(plain.path(), src.path());

    let mut v = GlusterVolume::new(&g, "flags");
    v.mount();
    assert_eq!(steps(&v.mnt(), src.path()), want);
    let warned = v
        .log()
        .lines()
        .filter(|l| l.contains("refuses renameat2 flags"))
        .count();
    assert_eq!(warned, 1, "the emulation is announced once:\n{}", v.log());
    let before = tree(&v.mnt());
    v.umount();
    let o = run(cmkfs()
        .arg("fsck")
        .arg(&v.backing)
        .arg("--service-key")
        .arg(v.key()));
    assert!(o.success(), "fsck: {}{}", o.stdout, o.stderr);
    v.mount();
    assert_eq!(tree(&v.mnt()), before, "after a remount");
}
