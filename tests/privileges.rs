//! Set-user-ID and set-group-ID bits after writes, truncates, fallocates and chowns, by root
//! and by an unprivileged user, compared with the same steps on a plain directory (the VFS's
//! rules are the oracle). cmkfs negotiates FUSE_HANDLE_KILLPRIV_V2, under which the kernel
//! leaves clearing these bits to the filesystem.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug)]
enum Actor {
    Root,
    Nobody,
    /// uid 65534 with gid 0: in the group of root's files.
    NobodyInRootGroup,
}

/// Runs `sh -c script` with the file as `$1`, as `who`.
fn run_as(who: Actor, script: &str, file: &Path) -> Outcome {
    let mut c = match who {
        Actor::Root => Command::new("sh"),
        Actor::Nobody => setpriv(65534, 65534),
        Actor::NobodyInRootGroup => setpriv(65534, 0),
    };
    if !matches!(who, Actor::Root) {
        c.arg("sh");
    }
    run(c.args(["-c", script, "sh"]).arg(file))
}

fn perm(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn set_id_bits_follow_the_vfs_rules() {
    for p in ["setpriv", "truncate", "fallocate"] {
        if !have_program(p) {
            eprintln!("SKIPPED: {p} is not installed");
            return;
        }
    }
    let v = TestVolume::with_opts(&["allow_other", "default_permissions"]);
    assert!(
        v.log_contents().contains("killpriv_v2=true"),
        "FUSE_HANDLE_KILLPRIV_V2 was not negotiated, so this would test the kernel: {}",
        v.log_contents()
    );
    fs::set_permissions(v.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(v.mnt(), fs::Permissions::from_mode(0o777)).unwrap();
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o777)).unwrap();

    let write = "printf x >> \"$1\"";
    let truncate = "truncate -s 1 \"$1\"";
    let fallocate = "fallocate -l 65536 \"$1\"";
    let chown = "chown 65534 \"$1\"";
    // (what, who, mode before, mode after on ext4/tmpfs)
    let cases: &[(&str, Actor, u32, u32)] = &[
        (write, Actor::Nobody, 0o4777, 0o777),
        (write, Actor::Nobody, 0o6777, 0o777),
        (write, Actor::Nobody, 0o2777, 0o777),
        (write, Actor::Nobody, 0o2767, 0o767),
        (write, Actor::NobodyInRootGroup, 0o2767, 0o2767),
        (write, Actor::NobodyInRootGroup, 0o6777, 0o777),
        (write, Actor::Nobody, 0o777, 0o777),
        (write, Actor::Root, 0o6777, 0o6777),
        (truncate, Actor::Nobody, 0o4777, 0o777),
        (truncate, Actor::Nobody, 0o6767, 0o767),
        (truncate, Actor::NobodyInRootGroup, 0o6767, 0o2767),
        (truncate, Actor::Root, 0o4777, 0o4777),
        (fallocate, Actor::Nobody, 0o4777, 0o777),
        (fallocate, Actor::Root, 0o4777, 0o4777),
        (chown, Actor::Root, 0o4755, 0o755),
        (chown, Actor::Root, 0o2755, 0o755),
        (chown, Actor::Root, 0o2745, 0o2745),
    ];
    for (i, &(what, who, before, after)) in cases.iter().enumerate() {
        for dir in [plain.as_path(), v.mnt().as_path()] {
            let f = dir.join(format!("f{i}"));
            fs::write(&f, b"content").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(before)).unwrap();
            assert_eq!(perm(&f), before, "chmod {before:o} on {f:?}");
            let o = run_as(who, what, &f);
            assert!(o.success(), "{what} as {who:?} on {f:?}: {o:?}");
            assert_eq!(
                perm(&f),
                after,
                "{what} as {who:?} on a {before:o} file in {dir:?}: mode {:o}, expected {after:o}",
                perm(&f)
            );
        }
        // The content survived (and the write landed) on the mount.
        let on_mount = fs::read(v.p(&format!("f{i}"))).unwrap();
        let on_plain = fs::read(plain.join(format!("f{i}"))).unwrap();
        assert_eq!(on_mount, on_plain, "content after {what} as {who:?}");
    }
}

/// `security.capability` is still removed by the kernel on the first write, also by root.
#[test]
fn a_write_removes_file_capabilities() {
    if !have_program("python3") {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let v = TestVolume::new();
    let plain = v.root().join("plain");
    fs::create_dir(&plain).unwrap();
    // VFS_CAP_REVISION_2, no flags: permitted CAP_NET_BIND_SERVICE (bit 10), inheritable none.
    let set_and_write = r#"
import os, sys
p = sys.argv[1]
cap = (0x02000000).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)
open(p, "wb").write(b"binary")
os.setxattr(p, "security.capability", cap)
assert "security.capability" in os.listxattr(p), os.listxattr(p)
with open(p, "ab") as f:
    f.write(b"!")
print(" ".join(sorted(os.listxattr(p))) or "-")
"#;
    for dir in [plain.as_path(), v.mnt().as_path()] {
        let f = dir.join("tool");
        let o = run(Command::new("python3").args(["-c", set_and_write]).arg(&f));
        assert!(o.success(), "{f:?}: {o:?}");
        assert_eq!(o.stdout.trim(), "-", "xattrs left on {f:?} after a write");
        assert_eq!(fs::read(&f).unwrap(), b"binary!");
    }
}
