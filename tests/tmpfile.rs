//! `O_TMPFILE` as on ext4: an unnamed encrypted file that `linkat` can name (short and long
//! names, through `/proc/self/fd` and `AT_EMPTY_PATH`), that `O_EXCL` keeps unlinkable, and
//! that leaves nothing in the backing directory when closed unnamed or when the daemon is
//! killed (fsck --repair cleans its hole map). Compared with the same steps in a plain
//! directory.

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn open_tmpfile(dir: &Path, extra: libc::c_int, mode: u32) -> std::io::Result<fs::File> {
    let c = cstr(dir);
    // SAFETY: plain syscall with a valid NUL-terminated path; the fd is owned by the File.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC | extra,
            mode,
        )
    })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { fs::File::from_raw_fd(fd) })
}

/// `linkat` of the open file `f` to `to`, as programs do it without privileges.
fn link_by_proc(f: &fs::File, to: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    let to = cstr(to);
    // SAFETY: plain syscall with valid NUL-terminated paths.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(|_| ())
}

/// `linkat(fd, "", ..., AT_EMPTY_PATH)` (needs CAP_DAC_READ_SEARCH; the tests run as root).
fn link_empty_path(f: &fs::File, to: &Path) -> std::io::Result<()> {
    let to = cstr(to);
    // SAFETY: plain syscall with valid NUL-terminated strings.
    cvt(unsafe {
        libc::linkat(
            f.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The same steps in `root` (a mount or a plain directory); returns what was observed.
fn steps(root: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let d = root.join("d");
    fs::create_dir(&d).unwrap();
    let long = "t".repeat(220);

    // Written, read back through the same descriptor, unnamed: nlink 0, not listed.
    let mut f = open_tmpfile(&d, 0, 0o640).unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    f.write_all(&data).unwrap();
    let m = f.metadata().unwrap();
    seen.push(format!(
        "unnamed: nlink {} size {} mode {:o} listed {:?}",
        m.nlink(),
        m.len(),
        m.permissions().mode() & 0o7777,
        names(&d)
    ));
    let mut back = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    seen.push(format!("read back equal: {}", back == data));

    // Named twice (a long name too); a taken name gives EEXIST.
    link_by_proc(&f, &d.join("first")).unwrap();
    link_by_proc(&f, &d.join(&long)).unwrap();
    seen.push(format!(
        "link over an existing name: {:?}",
        errno(&link_by_proc(&f, &d.join("first")))
    ));
    f.write_all_at(b"after-link", 3).unwrap();
    drop(f);
    let mut want = data.clone();
    want[3..13].copy_from_slice(b"after-link");
    seen.push(format!(
        "named: nlink {} first equal {} long equal {} listed {:?}",
        fs::metadata(d.join("first")).unwrap().nlink(),
        fs::read(d.join("first")).unwrap() == want,
        fs::read(d.join(&long)).unwrap() == want,
        names(&d).iter().map(|n| n.len()).collect::<Vec<_>>()
    ));

    // AT_EMPTY_PATH, a sparse tmpfile.
    let f = open_tmpfile(&d, 0, 0o600).unwrap();
    f.write_all_at(b"tail", 1 << 20).unwrap();
    link_empty_path(&f, &d.join("sparse")).unwrap();
    drop(f);
    let s = fs::read(d.join("sparse")).unwrap();
    seen.push(format!(
        "sparse: len {} zeros {} tail {:?}",
        s.len(),
        s[..1 << 20].iter().all(|b| *b == 0),
        String::from_utf8_lossy(&s[1 << 20..])
    ));

    // O_EXCL: never linkable. Closed unnamed: gone.
    let f = open_tmpfile(&d, libc::O_EXCL, 0o600).unwrap();
    f.write_all_at(b"secret", 0).unwrap();
    seen.push(format!(
        "O_EXCL link: {:?}",
        errno(&link_by_proc(&f, &d.join("excl")))
    ));
    drop(f);
    let f = open_tmpfile(&d, 0, 0o600).unwrap();
    f.write_all_at(b"dropped", 1 << 20).unwrap();
    f.sync_all().unwrap();
    drop(f);
    seen.push(format!("finally listed: {:?}", names(&d).len()));

    // O_TMPFILE on a file is ENOTDIR; write access is needed (EINVAL without it).
    seen.push(format!(
        "on a file: {:?}",
        errno(&open_tmpfile(&d.join("first"), 0, 0o600))
    ));
    let c = cstr(&d);
    // SAFETY: plain syscall with a valid NUL-terminated path.
    let r = cvt(unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDONLY, 0o600) });
    seen.push(format!("read-only: {:?}", errno(&r)));
    seen
}

#[test]
fn tmpfile_is_unnamed_linkable_and_gone_when_closed_like_on_ext4() {
    let mut v = TestVolume::new();
    let plain = tempfile::tempdir().unwrap();
    let want = steps(plain.path());
    let before = v.backing_files().len();
    assert_eq!(steps(&v.mnt()), want);
    // The directory's id file, "first", the long name (its entry and its side file) and
    // "sparse" with its hole map (one map: the sparse tmpfile closed unnamed took its own).
    // The kernel sends RELEASE of the last unnamed tmpfile after close() has returned, so its
    // hole map may still be there for a moment: wait for it to go (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut after: Vec<PathBuf> = v.backing_files();
    while after.len() > before + 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        after = v.backing_files();
    }
    assert_eq!(
        after.len(),
        before + 6,
        "backing files beyond the named ones: {after:#?}"
    );
    let maps = after
        .iter()
        .filter(|p| p.to_string_lossy().contains("/.cmkfs/holes/"))
        .count();
    assert_eq!(maps, 1, "hole maps: {after:#?}");
    v.remount();
    let d = v.p("d");
    let mut want = (0..20_000u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>();
    want[3..13].copy_from_slice(b"after-link");
    assert_eq!(fs::read(d.join("first")).unwrap(), want);
    assert_eq!(fs::read(d.join("t".repeat(220))).unwrap(), want);
    let s = fs::read(d.join("sparse")).unwrap();
    assert_eq!(&s[1 << 20..], b"tail");
    assert!(s[..1 << 20].iter().all(|b| *b == 0));
    assert!(
        fs::metadata(d.join("sparse")).unwrap().blocks() < 64,
        "the linked tmpfile kept its hole"
    );
}

#[test]
fn tmpfile_inherits_default_acl_and_setgid_group_like_create() {
    // allow_other turns on default_permissions and, with it, POSIX ACLs.
    let v = TestVolume::with_opts(&["allow_other"]);
    let plain = tempfile::tempdir().unwrap();
    let acls = have_program("setfacl") && have_program("getfacl");
    let mut seen = Vec::new();
    for root in [plain.path().to_path_buf(), v.mnt()] {
        let d = root.join("g");
        fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, None, Some(4242)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
        if acls {
            run_ok(
                Command::new("setfacl")
                    .args(["-d", "-m", "u:nobody:rw,g::r,o::-"])
                    .arg(&d),
            );
        }
        let f = open_tmpfile(&d, 0, 0o666).unwrap();
        assert_eq!(
            f.metadata().unwrap().gid(),
            4242,
            "{}: setgid directory",
            d.display()
        );
        link_by_proc(&f, &d.join("x")).unwrap();
        let m = fs::metadata(d.join("x")).unwrap();
        let acl = if acls {
            run_ok(Command::new("getfacl").arg("-cn").arg(d.join("x"))).stdout
        } else {
            String::new()
        };
        seen.push(format!("gid {} mode {:o} acl {acl}", m.gid(), m.mode()));
    }
    assert_eq!(seen[1], seen[0], "O_TMPFILE on cmkfs vs a plain directory");
    if acls {
        assert!(seen[1].contains("user:65534:rw-"), "{}", seen[1]);
    } else {
        eprintln!("setfacl/getfacl missing: default ACL inheritance not checked");
    }
}

#[test]
fn tmpfile_of_a_killed_daemon_leaves_nothing_that_fsck_repair_does_not_clean() {
    let mut v = TestVolume::new();
    fs::write(v.p("kept"), b"kept").unwrap();
    let before = v.backing_files();
    let f = open_tmpfile(&v.mnt(), 0, 0o600).unwrap();
    // Sparse and synced: its hole map is on disk.
    f.write_all_at(b"data", 1 << 20).unwrap();
    f.sync_all().unwrap();
    let st = run_ok(cmkfs().arg("status").arg(v.mnt()).arg("--json"));
    let status: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let pid = status["pid"].as_u64().expect("status --json has the pid") as i32;
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    drop(f);
    let start = std::time::Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    force_unmount(&v.mnt());
    v.forget_mounted();
    // No backing entry for it; its hole map is the one leftover, and --repair removes it.
    let left: Vec<PathBuf> = v
        .backing_files()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        left.iter().all(|p| p.to_string_lossy().contains("/holes/")),
        "left behind: {left:#?}"
    );
    let o = run(cmkfs()
        .arg("fsck")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.key())
        .arg("--repair"));
    assert!(o.success(), "fsck --repair: {}{}", o.stdout, o.stderr);
    let left: Vec<PathBuf> = v
        .backing_files()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(left.is_empty(), "left after fsck --repair: {left:#?}");
    let o = run(cmkfs()
        .arg("fsck")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.key()));
    assert!(o.success(), "fsck after repair: {}{}", o.stdout, o.stderr);
    v.mount();
    assert_eq!(fs::read(v.p("kept")).unwrap(), b"kept");
}
