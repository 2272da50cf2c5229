//! POSIX ACLs through a real mount with `allow_other` (which implies `default_permissions`,
//! under which cmkfs negotiates FUSE_POSIX_ACL): the same script runs in a plain directory on
//! the same disk (the oracle) and in the mount, and every line it prints must be the same:
//! `getfacl` output, modes, and what user `nobody` may read and write. Then the tools that
//! copy ACLs (`cp -a`, `rsync -aAX`, `tar --acls`), special files, and mounts without ACLs.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools_present(names: &[&str]) -> bool {
    for p in names {
        if !have_program(p) {
            eprintln!("SKIPPED: {p} is not installed (Debian packages acl, rsync, tar)");
            return false;
        }
    }
    true
}

/// A volume mounted with `allow_other` and a plain oracle directory beside it, both open to
/// every user.
fn setup() -> (TestVolume, PathBuf) {
    let v = TestVolume::with_opts(&["allow_other"]);
    assert!(
        v.log_contents().contains("posix_acl=true"),
        "FUSE_POSIX_ACL was not negotiated: {}",
        v.log_contents()
    );
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(v.mnt(), fs::Permissions::from_mode(0o777)).unwrap();
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o777)).unwrap();
    (v, plain)
}

/// Runs `sh -c script` in `dir` as root with umask 022; returns stdout and stderr, with the
/// directory's path replaced by `DIR`.
fn transcript(script: &str, dir: &Path) -> String {
    let o = run(Command::new("sh")
        .args([
            "-c",
            &format!("umask 022; cd \"$1\" || exit 99\n{script}"),
            "sh",
        ])
        .arg(dir));
    format!("{}{}", o.stdout, o.stderr).replace(&dir.display().to_string(), "DIR")
}

const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups --";

/// Every line is compared with ext4's; the lines name what they show.
fn enforcement_script() -> String {
    format!(
        r#"
echo secret > f; chmod 600 f
{NOBODY} cat f >/dev/null 2>&1; echo "nobody reads 0600 file: $?"
setfacl -m u:nobody:r f; echo "setfacl: $?"
getfacl -cn f; stat -c 'mode %A' f
{NOBODY} cat f; echo "nobody reads with ACL entry: $?"
{NOBODY} sh -c 'echo x >> f' 2>/dev/null; echo "nobody writes: $?"
chmod 600 f; echo "chmod 600 masks the entry:"; getfacl -cn f
{NOBODY} cat f >/dev/null 2>&1; echo "nobody reads after chmod 600: $?"
chmod 640 f; getfacl -cn f; stat -c 'mode %A' f
{NOBODY} cat f; echo "nobody reads after chmod 640: $?"
setfacl -m u:nobody:rw,m::rw f; stat -c 'mode %A' f
{NOBODY} sh -c 'echo more >> f'; echo "nobody appends: $?"; cat f
echo "equivalent ACL sets the mode only:"
touch e; setfacl -m u::rwx,g::r,o::- e; stat -c 'mode %A' e; getfacl -cn e
echo "setfacl -b:"; setfacl -b f; getfacl -cn f; stat -c 'mode %A' f
echo "default ACL:"
mkdir d; setfacl -d -m u:nobody:rwx,g::rx,o::- d; getfacl -cn d
touch d/new; getfacl -cn d/new; stat -c 'mode %A' d/new
{NOBODY} sh -c 'echo hello > d/new'; echo "nobody writes inherited file: $?"
( umask 077; touch d/masked ); stat -c 'umask ignored under default ACL %A' d/masked
mkdir d/sub; getfacl -cn d/sub; stat -c 'mode %A' d/sub
mkdir -m 700 d/sub/deeper; getfacl -cn d/sub/deeper
{NOBODY} sh -c 'echo made > d/sub/byn'; echo "nobody creates in inherited dir: $?"
stat -c '%u %g %A' d/sub/byn; getfacl -cn d/sub/byn
ln -s new d/link; stat -c 'symlink %A' d/link
setfacl -k d; touch d/after; getfacl -cn d/after
echo "umask without default ACL:"; ( umask 027; touch plainfile; mkdir plaindir ); stat -c '%A' plainfile plaindir
echo "ACL on directory access:"
mkdir priv; chmod 700 priv; echo in > priv/x; chmod 644 priv/x
{NOBODY} cat priv/x 2>/dev/null; echo "nobody through 0700 dir: $?"
setfacl -m u:nobody:x priv; {NOBODY} cat priv/x; echo "with x entry: $?"
{NOBODY} ls priv >/dev/null 2>&1; echo "nobody lists: $?"
echo "set-group-ID after an ACL change by a non-member:"
touch sg; chown nobody:root sg; chmod 2775 sg; stat -c '%A' sg
{NOBODY} setfacl -m u:daemon:r sg; echo "setfacl by owner: $?"; stat -c '%A' sg
touch sg2; chmod 2775 sg2; setfacl -m u:daemon:r sg2; stat -c 'root keeps it %A' sg2
"#
    )
}

#[test]
fn acls_behave_as_on_ext4_and_are_enforced() {
    if !tools_present(&["setfacl", "getfacl", "setpriv"]) {
        return;
    }
    let (v, plain) = setup();
    let script = enforcement_script();
    let want = transcript(&script, &plain);
    // The oracle itself must show ACLs at work, or the comparison proves nothing.
    assert!(
        want.contains("nobody reads with ACL entry: 0")
            && want.contains("nobody reads 0600 file: 1")
            && want.contains("user:65534:rwx"),
        "oracle transcript unexpected:\n{want}"
    );
    let got = transcript(&script, &v.mnt());
    if std::env::var_os("ACL_TEST_PRINT").is_some() {
        eprintln!("{got}");
    }
    assert_eq!(got, want, "cmkfs differs from ext4");
    // The ACLs are stored encrypted: no ACL xattr in the backing tree.
    let o = run(Command::new("getfacl")
        .args(["-R", "-s", "-p", "-n"])
        .arg(v.backing()));
    assert!(
        o.stdout.trim().is_empty(),
        "backing files carry plain ACLs:\n{}",
        o.stdout
    );
}

#[test]
fn acls_survive_remount_and_tools_copy_them() {
    if !tools_present(&["setfacl", "getfacl", "setpriv", "rsync", "tar", "cp"]) {
        return;
    }
    let (mut v, plain) = setup();
    let src = plain.join("src");
    let make = r#"mkdir src src/d; echo a > src/a; echo b > src/d/b
setfacl -m u:nobody:rw,g:daemon:r src/a
setfacl -m u:nobody:rx src/d; setfacl -d -m u:nobody:rwx,g:daemon:rx src/d
chmod 640 src/d/b; setfacl -m u:65533:r src/d/b"#;
    assert_eq!(transcript(make, &plain), "");
    let acls = |dir: &Path| transcript("getfacl -R -n -p src | LC_ALL=C sort", dir);
    let want = acls(&plain);
    assert!(want.contains("user:65534:rw-"), "{want}");

    // cp -a into the mount, then the ACLs again after a remount (nothing cached).
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(v.mnt()));
    assert_eq!(acls(&v.mnt()), want, "cp -a");
    v.remount();
    assert_eq!(acls(&v.mnt()), want, "after remount");

    // rsync -aAX out of the mount and back in.
    let out = plain.join("out");
    fs::create_dir(&out).unwrap();
    run_ok(
        Command::new("rsync")
            .args(["-aAX"])
            .arg(v.p("src"))
            .arg(&out),
    );
    assert_eq!(acls(&out), want, "rsync -aAX out of cmkfs");
    fs::create_dir(v.p("r")).unwrap();
    run_ok(Command::new("rsync").args(["-aAX"]).arg(&src).arg(v.p("r")));
    assert_eq!(acls(&v.p("r")), want, "rsync -aAX into cmkfs");

    // tar --acls through the mount.
    let archive = plain.join("a.tar");
    run_ok(
        Command::new("tar")
            .args(["--acls", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(v.mnt())
            .arg("src"),
    );
    fs::create_dir(v.p("t")).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--acls", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(v.p("t")),
    );
    assert_eq!(acls(&v.p("t")), want, "tar --acls");
}

#[test]
fn special_files_refuse_acls_with_eopnotsupp_and_cp_a_works() {
    if !tools_present(&["setfacl", "getfacl", "cp"]) {
        return;
    }
    let (v, plain) = setup();
    let fifo = plain.join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    run_ok(Command::new("cp").arg("-a").arg(&fifo).arg(v.p("fifo")));
    assert!(fs::symlink_metadata(v.p("fifo")).is_ok());
    // A FIFO cannot hold an ACL here: EOPNOTSUPP (never EPERM), reading one gives the mode.
    let c = cstr(&v.p("fifo"));
    let name = c"system.posix_acl_access";
    let val = [
        2u8, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 4, 0,
        255, 255, 255, 255,
    ];
    // SAFETY: valid NUL-terminated strings and buffer.
    let r = cvt(unsafe {
        libc::lsetxattr(c.as_ptr(), name.as_ptr(), val.as_ptr().cast(), val.len(), 0)
    });
    assert_eq!(errno(&r), Some(libc::EOPNOTSUPP), "{r:?}");
    let o = run(Command::new("getfacl").args(["-cn"]).arg(v.p("fifo")));
    assert!(o.success() && o.stdout.contains("user::rw-"), "{o:?}");
    // A default ACL on a file is refused as on ext4.
    fs::write(v.p("f"), b"x").unwrap();
    let c = cstr(&v.p("f"));
    // SAFETY: as above.
    let r = cvt(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"system.posix_acl_default".as_ptr(),
            val.as_ptr().cast(),
            val.len(),
            0,
        )
    });
    assert_eq!(errno(&r), Some(libc::EACCES), "{r:?}");
    // A malformed ACL is refused.
    // SAFETY: as above.
    let r = cvt(unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), val.as_ptr().cast(), 12, 0) });
    assert_eq!(errno(&r), Some(libc::EINVAL), "{r:?}");
}

#[test]
fn without_default_permissions_acls_are_not_supported() {
    if !tools_present(&["setfacl", "cp"]) {
        return;
    }
    let v = TestVolume::new();
    assert!(
        v.log_contents().contains("posix_acl=false"),
        "{}",
        v.log_contents()
    );
    fs::write(v.p("f"), b"x").unwrap();
    let o = run(Command::new("setfacl")
        .args(["-m", "u:nobody:r"])
        .arg(v.p("f")));
    assert!(
        !o.success() && o.stderr.contains("Operation not supported"),
        "{o:?}"
    );
    let fifo = v.root().join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    run_ok(Command::new("cp").arg("-a").arg(&fifo).arg(v.p("fifo")));
    // The kernel applies the umask itself then.
    let o = run(Command::new("sh")
        .args(["-c", "umask 027; touch \"$1/u\"; stat -c %a \"$1/u\"", "sh"])
        .arg(v.mnt()));
    assert_eq!(o.stdout.trim(), "640");
}
