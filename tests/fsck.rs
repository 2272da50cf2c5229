//! `cmkfs fsck` on real volumes: created with `cmkfs init`, filled through a FUSE mount,
//! unmounted, then damaged in the backing directory. Asserts on exit codes, the human report,
//! the `--json` document and (for `--quarantine`) on what moved and what did not.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BS: u64 = 4096;
const SEALED: u64 = 4096 + 28;
const HEADER: u64 = 32;
/// Backing length of a 5-block file.
const VICTIM_LEN: u64 = HEADER + 5 * SEALED;
/// A name long enough for a `.L` entry with a `.N` side file.
const LONG: &str = "a-very-long-file-name-that-does-not-fit-into-two-hundred-and-fifty-five-bytes-once-encrypted-and-encoded-as-base64url-so-it-gets-a-side-file-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmkfs")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs cmkfs with a timeout; output goes to files (a daemonizing mount keeps pipes open).
fn cmkfs(args: &[&std::ffi::OsStr]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (op, ep) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&op).unwrap())
        .stderr(fs::File::create(&ep).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("cmkfs {args:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&op).unwrap_or_default(),
        stderr: fs::read_to_string(&ep).unwrap_or_default(),
    }
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(AsRef::<std::ffi::OsStr>::as_ref(&$a)),*] };
}

fn is_mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == p)
}

/// A volume in a temp dir: `backing/`, `mnt/`, `key`.
struct Vol {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Vol {
    fn new() -> Vol {
        let dir = tempfile::Builder::new()
            .prefix("cmkfs-fsck-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let v = Vol {
            dir,
            mounted: false,
        };
        let o = cmkfs(args!["init", v.backing(), "--service-key", v.key()]);
        assert_eq!(o.code, 0, "init: {}", o.stderr);
        v
    }
    fn backing(&self) -> PathBuf {
        self.dir.path().join("backing")
    }
    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key")
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }
    fn mount(&mut self) {
        let o = cmkfs(args![
            "mount",
            self.backing(),
            self.mnt(),
            "--service-key",
            self.key()
        ]);
        assert_eq!(o.code, 0, "mount: {}", o.stderr);
        assert!(is_mounted(&self.mnt()));
        self.mounted = true;
    }
    fn umount(&mut self) {
        let o = cmkfs(args!["umount", self.mnt()]);
        assert_eq!(o.code, 0, "umount: {}", o.stderr);
        self.mounted = false;
    }
    fn fsck(&self, extra: &[&str]) -> Out {
        let mut a: Vec<std::ffi::OsString> = vec![
            "fsck".into(),
            self.backing().into(),
            "--service-key".into(),
            self.key().into(),
        ];
        a.extend(extra.iter().map(|s| s.into()));
        let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        cmkfs(&refs)
    }
    fn fsck_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut e = vec!["--json"];
        e.extend_from_slice(extra);
        let o = self.fsck(&e);
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|err| {
            panic!(
                "fsck --json printed no JSON ({err}):\n{}\nstderr: {}",
                o.stdout, o.stderr
            )
        });
        assert_eq!(v["exit_code"].as_i64(), Some(o.code as i64), "{v}");
        (o.code, v)
    }
}

impl Drop for Vol {
    fn drop(&mut self) {
        if self.mounted || is_mounted(&self.mnt()) {
            let _ = cmkfs(args!["umount", self.mnt()]);
            if is_mounted(&self.mnt()) {
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(self.mnt())
                    .status();
            }
        }
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut x = (seed as u32).wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The backing directory of plaintext `d/`, and the backing files of its entries, found by
/// shape: `victim` (5 blocks), `good` (small), the long name (a `.L` entry), `link`.
struct Layout {
    d: PathBuf,
    victim: PathBuf,
    good: PathBuf,
    long: PathBuf,
    long_side: PathBuf,
    link: PathBuf,
}

/// A mounted-then-unmounted volume with `/top.txt`, `/d/victim` (5 full blocks), `/d/good`,
/// `/d/<LONG>`, `/d/link -> /some/target`, `/d/sub/deep.txt`.
fn populated() -> (Vol, Layout) {
    let mut v = Vol::new();
    v.mount();
    fs::write(v.p("top.txt"), b"top level file").unwrap();
    fs::create_dir(v.p("d")).unwrap();
    fs::write(v.p("d/victim"), pattern(1, 5 * BS as usize)).unwrap();
    fs::write(v.p("d/good"), b"an undamaged file").unwrap();
    fs::write(v.p(&format!("d/{LONG}")), pattern(2, 3 * BS as usize + 17)).unwrap();
    std::os::unix::fs::symlink("/some/target", v.p("d/link")).unwrap();
    fs::create_dir(v.p("d/sub")).unwrap();
    fs::write(v.p("d/sub/deep.txt"), b"deep").unwrap();
    v.umount();
    let b = v.backing();
    let d = fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("backing dir of d");
    let entries: Vec<PathBuf> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    let victim = entries
        .iter()
        .find(|p| p.symlink_metadata().unwrap().len() == VICTIM_LEN)
        .unwrap()
        .clone();
    let long = entries
        .iter()
        .find(|p| name(p).starts_with(".L"))
        .unwrap()
        .clone();
    let long_side = entries
        .iter()
        .find(|p| name(p).starts_with(".N"))
        .unwrap()
        .clone();
    let link = entries
        .iter()
        .find(|p| p.symlink_metadata().unwrap().file_type().is_symlink())
        .unwrap()
        .clone();
    let good = entries
        .iter()
        .find(|p| {
            let m = p.symlink_metadata().unwrap();
            m.is_file() && !name(p).starts_with('.') && m.len() == HEADER + 17 + 28
        })
        .unwrap()
        .clone();
    (
        v,
        Layout {
            d,
            victim,
            good,
            long,
            long_side,
            link,
        },
    )
}

fn flip_byte(p: &Path, off: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, off).unwrap();
}

/// Every path under `root` with its type, mode, inode and content (symlink target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.ends_with(".cmkfs/mount.lock") {
                continue; // lock state of the mount (and of fsck --quarantine), not data
            }
            let m = p.symlink_metadata().unwrap();
            let content = if m.is_file() {
                fs::read(&p).unwrap()
            } else if m.file_type().is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                (m.mode(), m.ino(), content),
            );
        }
    }
    out
}

fn rel(v: &Vol, p: &Path) -> String {
    p.strip_prefix(v.backing())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn problems(j: &Value) -> &Vec<Value> {
    j["problems"].as_array().expect("problems array")
}

fn find_problem<'a>(j: &'a Value, code: &str, backing_path: &str) -> &'a Value {
    problems(j)
        .iter()
        .find(|p| p["code"] == code && p["backing_path"] == backing_path)
        .unwrap_or_else(|| {
            panic!(
                "no {code} problem for {backing_path} in:\n{:#}",
                j["problems"]
            )
        })
}

#[test]
fn clean_volume_is_clean_and_fsck_writes_nothing() {
    let (mut v, _) = populated();
    let before = snapshot(&v.backing());
    let o = v.fsck(&[]);
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("clean"), "{}", o.stdout);
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(j["clean"], true, "{j:#}");
    assert!(problems(&j).is_empty());
    let s = &j["summary"];
    assert_eq!(s["files"], 5, "{s}"); // top.txt, victim, good, long, deep.txt
    assert_eq!(s["dirs"], 3, "{s}"); // root, d, d/sub
    assert_eq!(s["symlinks"], 1, "{s}");
    assert_eq!(s["blocks_checked"], 1 + 5 + 1 + 4 + 1, "{s}");
    assert_eq!(s["bad_blocks"], 0);
    let keys = j["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["unwraps"], true);
    assert_eq!(keys[0]["current"], true);
    assert_eq!(keys[0]["wrapped_by"][0]["type"], "service");
    // 3 directory ids, 5 file headers, 1 symlink target.
    assert_eq!(keys[0]["used_by"], 3 + 5 + 1, "{keys:?}");
    assert_eq!(
        snapshot(&v.backing()),
        before,
        "fsck must not change the backing directory"
    );

    // A mounted volume is checked read-only, while in use; --quarantine is refused.
    v.mount();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 0, "{j:#}");
    let q = v.dir.path().join("q");
    let o = v.fsck(&["--quarantine", q.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("already mounted") && o.stderr.contains("unmount"),
        "{}",
        o.stderr
    );
    assert!(!q.exists(), "nothing is created when the check cannot run");
    assert_eq!(fs::read(v.p("d/good")).unwrap(), b"an undamaged file");
    v.umount();
    assert_eq!(snapshot(&v.backing()), before);
}

#[test]
fn flipped_byte_in_block_1_is_reported_with_path_and_block() {
    let (v, l) = populated();
    flip_byte(&l.victim, HEADER + SEALED + 100);
    let o = v.fsck(&[]);
    assert_eq!(o.code, 1, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains("/d/victim"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(line.contains("block 1 ") && line.contains("of 5"), "{line}");
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(j["clean"], false);
    let p = find_problem(&j, "bad_blocks", &rel(&v, &l.victim));
    assert_eq!(p["path"], "/d/victim");
    assert_eq!(p["blocks"], serde_json::json!([1]));
    assert_eq!(
        problems(&j).len(),
        1,
        "only the victim is damaged: {:#}",
        j["problems"]
    );
    assert_eq!(j["summary"]["bad_blocks"], 1);
}

#[test]
fn corrupted_name_is_reported() {
    let (v, l) = populated();
    // Another valid base64url name of the same length: does not decrypt.
    let name = l.good.file_name().unwrap().to_str().unwrap().to_string();
    let mut chars: Vec<char> = name.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let renamed = l.d.join(chars.into_iter().collect::<String>());
    fs::rename(&l.good, &renamed).unwrap();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    let p = find_problem(&j, "name", &rel(&v, &renamed));
    assert!(p["path"].is_null(), "{p}");
    assert!(
        p["message"].as_str().unwrap().contains("does not decrypt"),
        "{p}"
    );
    // Its content is still checked (and fine).
    assert_eq!(j["summary"]["bad_blocks"], 0);
    let o = v.fsck(&[]);
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains(&rel(&v, &renamed)), "{}", o.stdout);
}

#[test]
fn deleted_side_file_is_reported() {
    let (v, l) = populated();
    fs::remove_file(&l.long_side).unwrap();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    let p = find_problem(&j, "missing_side_file", &rel(&v, &l.long));
    assert!(p["message"].as_str().unwrap().contains(".N"), "{p}");
    assert_eq!(problems(&j).len(), 1, "{:#}", j["problems"]);
}

#[test]
fn orphan_side_file_and_leftovers_are_reported() {
    let (v, l) = populated();
    // A side file without its entry: move the entry away (outside the volume).
    fs::rename(&l.long, v.dir.path().join("long-entry")).unwrap();
    fs::create_dir(v.backing().join(".tmp.mkdir.x")).unwrap();
    fs::write(l.d.join(".tmp.mkdir.y"), b"").unwrap();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    let p = find_problem(&j, "orphan", ".tmp.mkdir.x");
    assert!(p["message"].as_str().unwrap().contains("orphan"), "{p}");
    find_problem(&j, "orphan", &format!("{}/.tmp.mkdir.y", rel(&v, &l.d)));
    find_problem(&j, "orphan_side_file", &rel(&v, &l.long_side));
    let o = v.fsck(&[]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.contains(".tmp.mkdir.x") && l.contains("orphan")),
        "{}",
        o.stdout
    );
    // Reported, never removed.
    assert!(v.backing().join(".tmp.mkdir.x").is_dir());
    assert!(l.long_side.exists());
}

#[test]
fn damaged_header_length_and_symlink_are_reported() {
    let (v, l) = populated();
    flip_byte(&l.good, 0); // magic
    let f = fs::OpenOptions::new().write(true).open(&l.long).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - (17 + 28) + 10).unwrap(); // tail of 10 bytes: invalid
    fs::remove_file(&l.link).unwrap();
    std::os::unix::fs::symlink(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &l.link,
    )
    .unwrap();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    find_problem(&j, "header", &rel(&v, &l.good));
    let p = find_problem(&j, "length", &rel(&v, &l.long));
    assert_eq!(p["path"], format!("/d/{LONG}"));
    assert_eq!(p["blocks"], serde_json::json!([3]));
    find_problem(&j, "symlink", &rel(&v, &l.link));
}

#[test]
fn wrong_key_or_no_volume_cannot_be_checked() {
    let (v, _) = populated();
    let other = Vol::new();
    let o = cmkfs(args!["fsck", v.backing(), "--service-key", other.key()]);
    assert_eq!(o.code, 2, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("not the key of this volume"),
        "{}",
        o.stderr
    );
    let o = cmkfs(args![
        "fsck",
        v.backing(),
        "--service-key",
        other.key(),
        "--json"
    ]);
    assert_eq!(o.code, 2);
    let j: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(j["exit_code"], 2);
    assert!(j["error"].as_str().unwrap().contains("not the key"), "{j}");
    let o = cmkfs(args![
        "fsck",
        v.dir.path().join("nowhere"),
        "--service-key",
        v.key()
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    // A key store record that no longer unwraps (the current key must: open fails).
    // (Both copies, sealed with valid checksums: the record itself is wrong.)
    let meta = v.backing().join(".cmkfs");
    let ks =
        cmkfs::meta_copies::load(&meta, cmkfs::meta_copies::Record::KeyStore, None, false).unwrap();
    let mut store: Value = serde_json::from_slice(&ks.content).unwrap();
    store["data_keys"][0]["wrapped"] =
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==".into();
    cmkfs::meta_copies::save(
        &meta,
        cmkfs::meta_copies::Record::KeyStore,
        ks.volume_id.as_deref().unwrap(),
        &serde_json::to_vec(&store).unwrap(),
    )
    .unwrap();
    assert_eq!(v.fsck(&[]).code, 2);
}

#[test]
fn quarantine_moves_only_the_damaged_files() {
    let (mut v, l) = populated();
    flip_byte(&l.victim, HEADER + SEALED + 7);
    flip_byte(&l.long, HEADER + 2 * SEALED + 5); // block 2 of the long-named file
    let q = v.dir.path().join("quarantine");
    let before = snapshot(&v.backing());

    // Without --quarantine nothing moves.
    assert_eq!(v.fsck(&[]).code, 1);
    assert_eq!(snapshot(&v.backing()), before);
    // DIR inside BACKING is refused before anything happens.
    let inside = v.backing().join("q");
    let o = v.fsck(&["--quarantine", inside.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(!inside.exists());
    assert_eq!(snapshot(&v.backing()), before);

    let (code, j) = v.fsck_json(&["--quarantine", q.to_str().unwrap()]);
    assert_eq!(code, 1, "problems were found (and dealt with): {j:#}");
    let moved = j["quarantine"]["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 2, "{:#}", j["quarantine"]);
    assert!(j["quarantine"]["errors"].as_array().unwrap().is_empty());

    // Exactly the damaged files (and the long name's side file) left the backing directory.
    let after = snapshot(&v.backing());
    let gone: Vec<&PathBuf> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let mut expect = vec![rel(&v, &l.victim), rel(&v, &l.long), rel(&v, &l.long_side)];
    expect.sort();
    let mut gone_s: Vec<String> = gone
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    gone_s.sort();
    assert_eq!(gone_s, expect);
    for (k, val) in &after {
        assert_eq!(before.get(k), Some(val), "{} changed", k.display());
    }

    // They sit in DIR at their backing paths, unchanged, with a note.
    for (src, plain, block) in [
        (&l.victim, "/d/victim", 1),
        (&l.long, &*format!("/d/{LONG}"), 2),
    ] {
        let r = rel(&v, src);
        let dst = q.join(&r);
        assert_eq!(fs::read(&dst).unwrap(), before[Path::new(&r)].2, "{r}");
        let note: Value =
            serde_json::from_slice(&fs::read(q.join(format!("{r}.json"))).unwrap()).unwrap();
        assert_eq!(note["path"], plain);
        assert_eq!(note["bad_blocks"], serde_json::json!([block]));
        assert_eq!(note["backing_path"], r);
    }
    assert_eq!(
        fs::read(q.join(rel(&v, &l.long_side))).unwrap(),
        before[Path::new(&rel(&v, &l.long_side))].2
    );

    // The rest is clean and mounts with its content.
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["clean"], true);
    v.mount();
    assert_eq!(fs::read(v.p("top.txt")).unwrap(), b"top level file");
    assert_eq!(fs::read(v.p("d/good")).unwrap(), b"an undamaged file");
    assert_eq!(fs::read(v.p("d/sub/deep.txt")).unwrap(), b"deep");
    assert_eq!(
        fs::read_link(v.p("d/link")).unwrap(),
        Path::new("/some/target")
    );
    let mut names: Vec<String> = fs::read_dir(v.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["good", "link", "sub"]);
    v.umount();

    // The quarantine directory is itself a volume with the same key: the readable blocks of
    // the damaged files can be salvaged from it.
    let o = cmkfs(args!["fsck", q, "--service-key", v.key(), "--json"]);
    let jq: Value = serde_json::from_str(&o.stdout).unwrap();
    find_problem(&jq, "bad_blocks", &rel(&v, &l.victim));
    assert_eq!(
        find_problem(&jq, "bad_blocks", &rel(&v, &l.long))["path"],
        format!("/d/{LONG}")
    );
}

#[test]
fn quarantine_across_filesystems_copies_then_removes() {
    let shm = Path::new("/dev/shm");
    let same_fs =
        |a: &Path, b: &Path| fs::metadata(a).unwrap().dev() == fs::metadata(b).unwrap().dev();
    let (v, l) = populated();
    if !shm.is_dir() || same_fs(shm, &v.backing()) {
        eprintln!("skipped: no second filesystem at /dev/shm");
        return;
    }
    flip_byte(&l.victim, HEADER + 4 * SEALED + 1);
    let content = fs::read(&l.victim).unwrap();
    let mode = fs::metadata(&l.victim).unwrap().mode();
    let q = tempfile::Builder::new()
        .prefix("cmkfs-fsck-q-")
        .tempdir_in(shm)
        .unwrap();
    let qd = q.path().join("q");
    let (code, j) = v.fsck_json(&["--quarantine", qd.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        j["quarantine"]["moved"].as_array().unwrap().len(),
        1,
        "{j:#}"
    );
    assert!(!l.victim.exists());
    let dst = qd.join(rel(&v, &l.victim));
    assert_eq!(fs::read(&dst).unwrap(), content);
    assert_eq!(fs::metadata(&dst).unwrap().mode(), mode);
    assert_eq!(v.fsck(&[]).code, 0);
}

#[test]
fn directory_ids_and_key_references_are_checked() {
    let (v, l) = populated();
    let sub = fs::read_dir(&l.d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.symlink_metadata().unwrap().is_dir())
        .expect("backing dir of d/sub");
    // d/sub loses its directory id (both copies: the file and the xattr): its names cannot be
    // decrypted, its content is still checked.
    fs::rename(sub.join(".cmkfs.dirid"), v.dir.path().join("dirid")).unwrap();
    let c = std::ffi::CString::new(sub.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::removexattr(c.as_ptr(), c"user.cmkfs.dirid".as_ptr()) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    // /top.txt's header names a data key (epoch 7) that is not in the key store.
    let top = fs::read_dir(v.backing())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let f = fs::OpenOptions::new().write(true).open(&top).unwrap();
    f.write_all_at(&7u32.to_le_bytes(), 12).unwrap();
    let (code, j) = v.fsck_json(&[]);
    assert_eq!(code, 1);
    let p = find_problem(&j, "dir_id", &rel(&v, &sub));
    assert_eq!(p["path"], "/d/sub");
    assert!(p["message"].as_str().unwrap().contains("missing"), "{p}");
    let p = find_problem(&j, "key_missing", &rel(&v, &top));
    assert_eq!(p["path"], "/top.txt");
    assert_eq!(p["key"], serde_json::json!({ "scope": 0, "epoch": 7 }));
    assert_eq!(problems(&j).len(), 2, "{:#}", j["problems"]);
    assert_eq!(
        j["summary"]["files"], 5,
        "deep.txt is still counted and checked"
    );
}
