//! Real programs on the mount: tar, git, sqlite3, cp -a, an editor-style atomic save.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

macro_rules! require {
    ($prog:expr) => {
        if !have_program($prog) {
            eprintln!("SKIPPED: `{}` is not installed", $prog);
            return;
        }
    };
}

/// Builds a tree of `n` files with random sizes/content (and some dirs, a symlink, modes and
/// mtimes) under `root`; returns relative path -> sha256.
fn make_tree(root: &Path, n: usize, seed: u64) -> BTreeMap<PathBuf, String> {
    let mut rng = Rng::new(seed);
    let mut out = BTreeMap::new();
    for i in 0..n {
        let depth = rng.below(4);
        let mut rel = PathBuf::new();
        for d in 0..depth {
            rel.push(format!("dir{}_{}", d, rng.below(5)));
        }
        rel.push(format!("file_{i}.bin"));
        let size = match rng.below(10) {
            0 => 0,
            1..=5 => rng.below(5000),
            6..=8 => rng.below(70_000),
            _ => rng.below(600_000),
        } as usize;
        let data = rng.bytes(size);
        let p = root.join(&rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &data).unwrap();
        let mode = [0o644, 0o600, 0o755, 0o640][rng.below(4) as usize];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        let ts = [
            libc::timespec {
                tv_sec: 1_400_000_000 + rng.below(1 << 28) as i64,
                tv_nsec: rng.below(1_000_000_000) as i64,
            },
            libc::timespec {
                tv_sec: 1_400_000_000 + rng.below(1 << 28) as i64,
                tv_nsec: rng.below(1_000_000_000) as i64,
            },
        ];
        let c = cstr(&p);
        cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) }).unwrap();
        out.insert(rel, sha256_hex(&data));
    }
    std::os::unix::fs::symlink("file_0.bin", root.join("a_symlink")).unwrap();
    out
}

fn hash_tree(root: &Path, want: &BTreeMap<PathBuf, String>) {
    for (rel, h) in want {
        let got =
            fs::read(root.join(rel)).unwrap_or_else(|e| panic!("read {}: {e}", rel.display()));
        assert_eq!(&sha256_hex(&got), h, "sha256 of {}", rel.display());
    }
}

#[test]
fn tar_round_trip() {
    require!("tar");
    let v = TestVolume::new();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("tree");
    fs::create_dir(&src).unwrap();
    let want = make_tree(&src, 200, 11);
    // tar from outside into the mount
    let archive = v.p("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(src_dir.path())
            .arg("tree"),
    );
    // extract on the mount
    fs::create_dir(v.p("out")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(&archive)
            .arg("-C")
            .arg(v.p("out")),
    );
    hash_tree(&v.p("out/tree"), &want);
    assert_eq!(
        fs::read_link(v.p("out/tree/a_symlink"))
            .unwrap()
            .to_str()
            .unwrap(),
        "file_0.bin"
    );
    // tar's own compare mode: content, modes, mtimes, sizes
    let o = run(Command::new("tar")
        .arg("--compare")
        .arg("-f")
        .arg(&archive)
        .arg("-C")
        .arg(v.p("out")));
    assert!(
        o.success(),
        "tar --compare found differences:\n{}{}",
        o.stdout,
        o.stderr
    );
    // and an archive made on the mount from the mount extracts identically outside
    let archive2 = v.p("tree2.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive2)
            .arg("-C")
            .arg(v.p("out"))
            .arg("tree"),
    );
    let out2 = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive2)
            .arg("-C")
            .arg(out2.path()),
    );
    hash_tree(&out2.path().join("tree"), &want);
}

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    c
}

#[test]
fn git_init_commit_fsck() {
    require!("git");
    let mut v = TestVolume::new();
    let repo = v.p("repo");
    fs::create_dir(&repo).unwrap();
    run_ok(git(&repo).args(["init", "-q", "-b", "main"]));
    let tree = make_tree(&repo, 60, 12);
    let mut files = tree.keys();
    let (changed, removed) = (files.next().unwrap().clone(), files.next().unwrap().clone());
    run_ok(git(&repo).args(["add", "-A"]));
    run_ok(git(&repo).args(["commit", "-q", "-m", "first"]));
    fs::write(repo.join(&changed), b"changed\n").unwrap();
    fs::remove_file(repo.join(&removed)).unwrap();
    run_ok(git(&repo).args(["commit", "-q", "-a", "-m", "second"]));
    run_ok(git(&repo).args(["gc", "-q"]));
    run_ok(git(&repo).args(["fsck", "--full", "--strict"]));
    let st = run_ok(git(&repo).args(["status", "--porcelain"]));
    assert_eq!(st.stdout.trim(), "", "worktree not clean");
    let log = run_ok(git(&repo).args(["log", "--format=%s"]));
    assert_eq!(log.stdout.lines().collect::<Vec<_>>(), ["second", "first"]);
    v.remount();
    run_ok(git(&repo).args(["fsck", "--full", "--strict"]));
    let st = run_ok(git(&repo).args(["status", "--porcelain"]));
    assert_eq!(st.stdout.trim(), "", "worktree not clean after remount");
    // clone from the mount to outside and compare a file
    let out = tempfile::tempdir().unwrap();
    run_ok(git(out.path()).arg("clone").arg("-q").arg(&repo).arg("c"));
    assert_eq!(
        fs::read(out.path().join("c").join(&changed)).unwrap(),
        b"changed\n"
    );
    assert!(!out.path().join("c").join(&removed).exists());
}

fn sql(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "sqlite3 failed: {}\nscript: {script}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn sqlite_transactions() {
    require!("sqlite3");
    let mut v = TestVolume::new();
    let db = v.p("test.db");
    for mode in ["delete", "wal"] {
        let db = db.with_extension(mode);
        sql(
            &db,
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);"
            ),
        );
        let mut s = String::from("BEGIN;\n");
        for i in 0..1000 {
            s.push_str(&format!(
                "INSERT INTO t(v, b) VALUES ('row {i}', randomblob({}));\n",
                (i * 37) % 3000
            ));
        }
        s.push_str("COMMIT;\n");
        sql(&db, &s);
        assert_eq!(sql(&db, "SELECT count(*) FROM t;"), "1000");
        // a rolled-back transaction leaves nothing
        sql(
            &db,
            "BEGIN; DELETE FROM t WHERE id % 2 = 0; INSERT INTO t(v) VALUES ('x'); ROLLBACK;",
        );
        assert_eq!(sql(&db, "SELECT count(*) FROM t;"), "1000");
        sql(
            &db,
            "BEGIN; DELETE FROM t WHERE id % 3 = 0; UPDATE t SET v = v || '!' WHERE id < 100; COMMIT;",
        );
        assert_eq!(sql(&db, "SELECT count(*) FROM t;"), "667");
        assert_eq!(sql(&db, "SELECT count(*) FROM t WHERE v LIKE '%!';"), "66");
        assert_eq!(sql(&db, "PRAGMA integrity_check;"), "ok");
        sql(&db, "VACUUM;");
        assert_eq!(sql(&db, "PRAGMA integrity_check;"), "ok");
    }
    v.remount();
    for mode in ["delete", "wal"] {
        let db = db.with_extension(mode);
        assert_eq!(
            sql(&db, "PRAGMA integrity_check;"),
            "ok",
            "{mode} after remount"
        );
        assert_eq!(
            sql(&db, "SELECT count(*) FROM t;"),
            "667",
            "{mode} after remount"
        );
        assert_eq!(sql(&db, "SELECT v FROM t WHERE id = 1;"), "row 0!");
    }
}

#[test]
fn cp_a_preserves_modes_and_mtimes() {
    require!("cp");
    let mut v = TestVolume::new();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("tree");
    fs::create_dir(&src).unwrap();
    let want = make_tree(&src, 80, 13);
    fs::set_permissions(
        src.join("a_symlink").parent().unwrap(),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(v.p("copy")));
    let check = |v: &TestVolume| {
        hash_tree(&v.p("copy"), &want);
        for p in walk(&src) {
            let rel = p.strip_prefix(&src).unwrap();
            let (a, b) = (
                fs::symlink_metadata(&p).unwrap(),
                fs::symlink_metadata(v.p("copy").join(rel)).unwrap(),
            );
            assert_eq!(a.mode(), b.mode(), "mode of {}", rel.display());
            assert_eq!(a.uid(), b.uid(), "uid of {}", rel.display());
            if !a.is_dir() {
                assert_eq!(a.len(), b.len(), "size of {}", rel.display());
            }
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "mtime of {}",
                rel.display()
            );
        }
        let top = fs::metadata(v.p("copy")).unwrap();
        assert_eq!(top.mode() & 0o7777, 0o750);
    };
    check(&v);
    v.remount();
    check(&v);
}

#[test]
fn editor_style_atomic_save() {
    let mut v = TestVolume::new();
    let doc = v.p("doc.txt");
    let old = "old content\n".repeat(1000);
    fs::write(&doc, &old).unwrap();
    for round in 0..5 {
        let new = format!("new content round {round}\n").repeat(100 + round * 300);
        let tmp = v.p(".doc.txt.swp");
        {
            let mut f = fs::File::create(&tmp).unwrap();
            f.write_all(new.as_bytes()).unwrap();
            f.sync_all().unwrap();
        }
        // a reader holding the old file open keeps seeing the old content
        let held = fs::File::open(&doc).unwrap();
        let held_before = fs::read_to_string(&doc).unwrap();
        fs::rename(&tmp, &doc).unwrap();
        fs::File::open(v.mnt()).unwrap().sync_all().ok();
        assert_eq!(fs::read_to_string(&doc).unwrap(), new, "round {round}");
        assert_eq!(errno(&fs::metadata(&tmp)), Some(libc::ENOENT));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut &held, &mut s).unwrap();
        assert_eq!(
            s, held_before,
            "open descriptor of the replaced file changed content"
        );
    }
    let names: Vec<String> = fs::read_dir(v.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["doc.txt"]);
    v.remount();
    let s = fs::read_to_string(&doc).unwrap();
    assert_eq!(s, "new content round 4\n".repeat(1300));
    assert!(!s.contains("old content"));
    // only one file's worth of data is in the backing dir (old file gone)
    let files: Vec<_> = visible_entries(&v.backing());
    assert_eq!(files.len(), 1, "backing has leftovers: {files:?}");
}
