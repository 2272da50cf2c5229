//! The fips build and the FIPS name scheme through real mounts, in both builds
//! (`cargo test --test fips` and `cargo test --features fips --test fips`):
//!
//! - `cmkfs --version`, `status [--json]` and the `MountStarted` audit record name the crypto
//!   module, its version and FIPS mode;
//! - `fips = "required"` (config key, `--fips required`, `-o fips=required`) refuses to mount,
//!   with one line, in the default build, and mounts in the fips build;
//! - a volume with the FIPS name scheme (`init --fips`, or any init of the fips build) mounts,
//!   writes and reads like a plain directory, and survives a remount;
//! - across builds: with `CMKFS_OTHER_BUILD=/path/to/the/other/cmkfs` a volume made by either
//!   build is mounted by the other and reads the same tree (.ci/run sets it; without it that
//!   test says so and checks nothing).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{force_unmount, is_mounted, run, run_ok};

const FIPS_BUILD: bool = cfg!(feature = "fips");
const FIPS_NAMES: &str = "HMAC-SHA256-SIV-AES-256-CTR";
const SIV_NAMES: &str = "AES-256-GCM-SIV";

/// A volume in a temp dir driven by any cmkfs binary (the test's own or the other build's).
struct Vol {
    dir: tempfile::TempDir,
}

impl Vol {
    fn init(bin: &str, extra: &[&str]) -> Vol {
        let dir = tempfile::Builder::new()
            .prefix("cmkfs-fips-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let v = Vol { dir };
        run_ok(
            Command::new(bin)
                .arg("init")
                .arg(v.backing())
                .arg("--service-key")
                .arg(v.path("key"))
                .arg("--audit-log")
                .arg(v.path("audit.log"))
                .args(extra),
        );
        v
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn backing(&self) -> PathBuf {
        self.path("backing")
    }
    fn mnt(&self) -> PathBuf {
        self.path("mnt")
    }
    fn name_cipher(&self) -> String {
        let v = common::read_record(&self.backing(), cmkfs::meta_copies::Record::VolumeConfig);
        v["name_cipher"].as_str().unwrap_or_default().to_string()
    }
    fn mount_cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("RUST_LOG", "info")
            .arg("mount")
            .arg(self.backing())
            .arg(self.mnt())
            .arg("--service-key")
            .arg(self.path("key"))
            .arg("--log-file")
            .arg(self.path("log"))
            .arg("--audit-log")
            .arg(self.path("audit.log"));
        c
    }
    fn mount(&self, bin: &str) {
        run_ok(&mut self.mount_cmd(bin));
        assert!(is_mounted(&self.mnt()), "not mounted");
    }
    fn umount(&self, bin: &str) {
        let o = run(Command::new(bin).arg("umount").arg(self.mnt()));
        if !o.success() {
            force_unmount(&self.mnt());
            panic!("umount failed: {}", o.stderr);
        }
    }
}

impl Drop for Vol {
    fn drop(&mut self) {
        force_unmount(&self.mnt());
    }
}

/// A tree with what name encryption must handle: short and 255-byte names, nested
/// directories, equal names in different directories, files of block-boundary sizes, a symlink.
fn populate(root: &Path) {
    let long = "L".repeat(200) + &"é".repeat(27); // 254 bytes
    fs::create_dir_all(root.join("docs/nested/deeper")).unwrap();
    fs::create_dir(root.join(&long)).unwrap();
    for (i, size) in [0usize, 1, 4095, 4096, 4097, 70_000]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7) as u8).collect();
        fs::write(root.join(format!("file-{size}.bin")), &data).unwrap();
        fs::write(
            root.join("docs/nested").join(format!("n{i}")),
            &data[..size / 2],
        )
        .unwrap();
    }
    fs::write(root.join("docs/same-name"), b"docs").unwrap();
    fs::write(root.join("docs/nested/same-name"), b"nested").unwrap();
    fs::write(root.join(&long).join(&long), b"long in long").unwrap();
    fs::write(root.join("docs/nested/deeper/x y z.txt"), b"spaces").unwrap();
    symlink("docs/nested/deeper/x y z.txt", root.join("link")).unwrap();
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.insert(rel, Entry::Dir);
                stack.push(p);
            } else {
                out.insert(rel, Entry::File(fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn oracle() -> (tempfile::TempDir, BTreeMap<PathBuf, Entry>) {
    let plain = tempfile::tempdir().unwrap();
    populate(plain.path());
    let s = snapshot(plain.path());
    (plain, s)
}

/// No backing entry name reveals a plaintext name.
fn assert_names_hidden(v: &Vol) {
    for p in common::backing_files(&v.backing()) {
        let n = p.to_string_lossy();
        for word in ["docs", "nested", "same-name", "file-", "LLLL", "x y z"] {
            assert!(!n.contains(word), "backing name {n} shows {word}");
        }
    }
}

fn wait_for(path: &Path, what: &str) -> String {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never contained {what}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn version_names_the_module_and_fips_mode() {
    let o = run_ok(Command::new(common::bin()).arg("--version"));
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("cmkfs "), "{}", o.stdout);
    if FIPS_BUILD {
        assert!(
            lines.contains(&"FIPS mode: on")
                && o.stdout.contains("crypto module: AWS-LC FIPS ")
                && o.stdout.contains("fips build"),
            "{}",
            o.stdout
        );
    } else {
        assert!(
            lines.contains(&"FIPS mode: off") && o.stdout.contains("crypto module: AWS-LC "),
            "{}",
            o.stdout
        );
    }
}

/// The FIPS-scheme volume against a plain directory, before and after a remount, and the
/// status and audit record of its mount.
#[test]
fn fips_name_scheme_volume_reads_like_a_plain_directory() {
    let bin = common::bin();
    let v = Vol::init(bin, &["--fips"]);
    assert_eq!(v.name_cipher(), FIPS_NAMES);
    v.mount(bin);
    populate(&v.mnt());
    let (_plain, expect) = oracle();
    assert_eq!(snapshot(&v.mnt()), expect);

    let st = run_ok(Command::new(bin).args(["status", "--json"]).arg(v.mnt()));
    let j: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(j["name_cipher"], FIPS_NAMES, "{}", st.stdout);
    assert_eq!(j["crypto_module"]["fips_mode"], FIPS_BUILD, "{}", st.stdout);
    let module = j["crypto_module"]["module"].as_str().unwrap_or_default();
    assert_eq!(module, if FIPS_BUILD { "AWS-LC FIPS" } else { "AWS-LC" });
    assert!(
        !j["crypto_module"]["version"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let human = run_ok(Command::new(bin).arg("status").arg(v.mnt()));
    let want = if FIPS_BUILD {
        "FIPS mode: on"
    } else {
        "FIPS mode: off"
    };
    assert!(human.stdout.contains(want), "{}", human.stdout);
    let audit = wait_for(&v.path("audit.log"), "MountStarted");
    let started = audit
        .lines()
        .find(|l| l.contains("MountStarted"))
        .unwrap_or_default();
    assert!(
        started.contains(&format!("{module} ")) && started.contains(want),
        "{started}"
    );

    v.umount(bin);
    assert_names_hidden(&v);
    v.mount(bin);
    assert_eq!(snapshot(&v.mnt()), expect);
    v.umount(bin);
}

/// Without `--fips`, init picks the build's scheme: GCM-SIV in the default build, the FIPS
/// scheme in the fips build.
#[test]
fn init_picks_the_builds_name_scheme() {
    let bin = common::bin();
    let v = Vol::init(bin, &[]);
    assert_eq!(
        v.name_cipher(),
        if FIPS_BUILD { FIPS_NAMES } else { SIV_NAMES }
    );
    let o = run_ok(
        Command::new(bin)
            .arg("init")
            .arg(v.path("b2"))
            .arg("--service-key")
            .arg(v.path("k2"))
            .arg("--audit-log")
            .arg(v.path("audit.log"))
            .arg("--fips"),
    );
    assert!(o.stdout.contains(FIPS_NAMES), "{}", o.stdout);
}

/// `fips = "required"` in its three spellings: one line and no mount in the default build.
#[cfg(not(feature = "fips"))]
#[test]
fn fips_required_refuses_to_mount_in_the_default_build() {
    let bin = common::bin();
    let v = Vol::init(bin, &[]);
    fs::write(v.path("cmkfs.toml"), "fips = \"required\"\n").unwrap();
    let config = v.path("cmkfs.toml");
    let variants: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["--fips".into(), "required".into()],
        vec!["-o".into(), "fips=required".into()],
        vec!["--config".into(), config.into_os_string()],
    ];
    for extra in variants {
        let o = run(v.mount_cmd(bin).args(&extra));
        assert!(!o.success(), "{extra:?}: mounted");
        assert!(!is_mounted(&v.mnt()), "{extra:?}: mounted");
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{extra:?}: {}", o.stderr);
        assert!(
            lines[0].starts_with("cmkfs: refusing to mount:") && lines[0].contains("FIPS"),
            "{extra:?}: {}",
            lines[0]
        );
    }
    // `auto` (the default) mounts.
    run_ok(v.mount_cmd(bin).args(["--fips", "auto"]));
    assert!(is_mounted(&v.mnt()));
    v.umount(bin);
}

/// The fips build mounts with `fips = "required"`.
#[cfg(feature = "fips")]
#[test]
fn fips_required_mounts_in_the_fips_build() {
    let bin = common::bin();
    let v = Vol::init(bin, &[]);
    run_ok(v.mount_cmd(bin).args(["-o", "fips=required"]));
    assert!(is_mounted(&v.mnt()));
    fs::write(v.mnt().join("f"), b"x").unwrap();
    v.umount(bin);
}

/// A volume made by one build mounts in the other with the same content, both ways, and for
/// both name schemes where the writer can make them.
#[test]
fn volumes_cross_between_builds() {
    let Ok(other) = std::env::var("CMKFS_OTHER_BUILD") else {
        eprintln!("CMKFS_OTHER_BUILD is not set: the cross-build check did not run");
        return;
    };
    let me = common::bin();
    let other_is_fips = !FIPS_BUILD;
    let out = run_ok(Command::new(&other).arg("--version")).stdout;
    assert_eq!(
        out.contains("FIPS mode: on"),
        other_is_fips,
        "CMKFS_OTHER_BUILD={other} is not the other build:\n{out}"
    );
    let (_plain, expect) = oracle();
    // (writer, init flags, reader)
    let cases: Vec<(&str, &[&str], &str)> = vec![
        (me, &[], other.as_str()),
        (other.as_str(), &[], me),
        (me, &["--fips"], other.as_str()),
        (other.as_str(), &["--fips"], me),
    ];
    for (writer, flags, reader) in cases {
        let v = Vol::init(writer, flags);
        v.mount(writer);
        populate(&v.mnt());
        v.umount(writer);
        v.mount(reader);
        assert_eq!(
            snapshot(&v.mnt()),
            expect,
            "written by {writer} {flags:?} ({}), read by {reader}",
            v.name_cipher()
        );
        // The reader writes too, and the writer reads it back.
        fs::write(v.mnt().join("docs/from-reader"), b"reader").unwrap();
        v.umount(reader);
        v.mount(writer);
        assert_eq!(
            fs::read(v.mnt().join("docs/from-reader")).unwrap(),
            b"reader"
        );
        v.umount(writer);
    }
}
