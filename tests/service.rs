//! Running as a service: the systemd unit (verify, no mount namespacing), Type=notify
//! readiness and stop through the unit's own ExecStart, the fstab/mount.fuse3 path, the
//! control socket (true counters, other users refused) and config-file errors.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestVolume, bin, is_mounted, run, run_ok};

fn unit_text() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/cmkfs@.service"))
        .unwrap()
}

/// Directives that give a service its own mount namespace (its FUSE mount would be invisible).
const NAMESPACING: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "ProtectHostname",
    "PrivateUsers",
    "RootDirectory",
    "RootImage",
    "MountFlags",
    "MountAPIVFS",
    "PrivateIPC",
    "NetworkNamespacePath",
];

#[test]
fn unit_sets_no_mount_namespacing_option() {
    for line in unit_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
    {
        if let Some((key, _)) = line.split_once('=') {
            assert!(
                !NAMESPACING.contains(&key.trim()),
                "unit sets {key}, which creates a mount namespace"
            );
        }
    }
    let text = unit_text();
    for needed in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "LimitCORE=0",
        "CapabilityBoundingSet=",
        "LoadCredential=",
        "Restart=on-failure",
        "SystemCallFilter=@system-service @mount",
    ] {
        assert!(text.contains(needed), "unit lacks {needed}");
    }
}

#[test]
fn systemd_analyze_verify_passes() {
    if !common::have_program("systemd-analyze") {
        eprintln!("systemd-analyze not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("cmkfs@ci.service");
    fs::write(&unit, unit_text().replace("/usr/bin/cmkfs", bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("cmkfs@"),
        "systemd-analyze verify failed:\n{text}"
    );
}

/// Collects notify datagrams on a socket of the test's own.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// Waits for a datagram containing `what`; returns it.
    fn wait_for(&self, what: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(what) {
                    return Some(msg);
                }
            }
        }
        None
    }
}

#[test]
fn exec_start_notifies_ready_after_a_served_read_and_stops_cleanly_on_sigterm() {
    let mut v = TestVolume::init_only();
    // Store a file first, so "the mount serves a read" can be checked at READY time.
    v.mount();
    fs::write(v.p("before.txt"), b"stored before the service started").unwrap();
    v.umount();

    let dir = v.root();
    let creds = dir.join("creds");
    fs::create_dir(&creds).unwrap();
    fs::copy(v.key(), creds.join("service-key")).unwrap();
    let config = dir.join("svc.toml");
    fs::write(
        &config,
        format!(
            "name = \"svc-test-{}\"\nbacking = \"{}\"\nmountpoint = \"{}\"\nservice_key_credential = \"service-key\"\nlog_file = \"{}\"\n",
            std::process::id(),
            v.backing().display(),
            v.mnt().display(),
            v.log_path().display()
        ),
    )
    .unwrap();
    // The unit's own ExecStart, with the test binary and config substituted.
    let exec = unit_text()
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .replace("/usr/bin/cmkfs", bin())
        .replace("/etc/cmkfs/%i.toml", config.to_str().unwrap());
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let notify = NotifySocket::new(dir);
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = notify.wait_for("READY=1", Duration::from_secs(20));
    let ready = match ready {
        Some(r) => r,
        None => {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "no READY=1 from the daemon; stderr: {err}; log: {}",
                v.log_contents()
            );
        }
    };
    // At READY=1 the mount is there and serves reads.
    assert!(is_mounted(&v.mnt()), "READY=1 before the mount exists");
    assert_eq!(
        fs::read(v.mnt().join("before.txt")).unwrap(),
        b"stored before the service started"
    );
    assert!(ready.contains("STATUS=mounted"), "ready message: {ready}");
    assert!(v.log_contents().contains("mounted and serving"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        notify
            .wait_for("STOPPING=1", Duration::from_secs(20))
            .is_some(),
        "no STOPPING=1 after SIGTERM"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(!is_mounted(&v.mnt()), "still mounted after SIGTERM");
    assert!(v.log_contents().contains("data keys zeroized"));
}

#[test]
fn fstab_style_mount_through_mount_fuse3() {
    if !Path::new("/sbin/mount.fuse3").exists() && !Path::new("/usr/sbin/mount.fuse3").exists() {
        eprintln!("mount.fuse3 (fuse3) not installed; skipping");
        return;
    }
    // mount(8) runs helpers with a sanitized PATH: put cmkfs where it looks.
    let link = Path::new("/usr/local/bin/cmkfs");
    let created = if link.exists() {
        false
    } else {
        std::os::unix::fs::symlink(bin(), link).unwrap();
        true
    };
    let v = TestVolume::init_only();
    let out = Command::new("mount")
        .args(["-t", "fuse.cmkfs"])
        .arg(v.backing())
        .arg(v.mnt())
        .arg("-o")
        .arg(format!(
            "service_key={},log_file={},nofail,x-systemd.requires=local-fs.target",
            v.key().display(),
            v.log_path().display()
        ))
        .output()
        .unwrap();
    let mounted = is_mounted(&v.mnt());
    let works = mounted
        && fs::write(v.mnt().join("f"), b"via fstab").is_ok()
        && fs::read(v.mnt().join("f")).ok().as_deref() == Some(&b"via fstab"[..]);
    let um = Command::new("umount").arg(v.mnt()).output().unwrap();
    if created {
        let _ = fs::remove_file(link);
    }
    assert!(
        out.status.success(),
        "mount -t fuse.cmkfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(works, "mounted: {mounted}; log: {}", v.log_contents());
    assert!(
        um.status.success(),
        "umount failed: {}",
        String::from_utf8_lossy(&um.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(&v.mnt()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_mounted(&v.mnt()));
}

fn status_json(mnt: &Path) -> serde_json::Value {
    let out = run_ok(Command::new(bin()).arg("status").arg(mnt).arg("--json"));
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn control_socket_status_counters_are_true() {
    let v = TestVolume::new();
    let before = status_json(&v.mnt());
    assert_eq!(before["mountpoint"], serde_json::json!(v.mnt()));
    assert_eq!(before["open_files"], 0);
    assert_eq!(before["key_scopes"][0]["protection"], "service-managed key");
    let data = vec![7u8; 100_000];
    fs::write(v.p("f"), &data).unwrap();
    // Writes leave their pages cached (and kept across opens): drop them so the read below
    // reaches the daemon.
    fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
    assert_eq!(fs::read(v.p("f")).unwrap(), data);
    let held = fs::File::open(v.p("f")).unwrap();
    let n = |j: &serde_json::Value, k: &str| j[k].as_u64().unwrap();
    // The kernel sends the RELEASE of the read's descriptor after close() has returned, so
    // the daemon may count it for a moment longer: wait (bounded) for it to settle.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let s = status_json(&v.mnt());
        if n(&s, "open_files") == 1 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        n(&after, "bytes_written") >= n(&before, "bytes_written") + 100_000,
        "{after}"
    );
    assert!(
        n(&after, "bytes_read") >= n(&before, "bytes_read") + 100_000,
        "{after}"
    );
    assert_eq!(n(&after, "open_files"), 1, "one file held open: {after}");
    assert!(after["cache"]["hits"].as_u64().unwrap() > before["cache"]["hits"].as_u64().unwrap());
    drop(held);
    // Human output names the same things.
    let human = run_ok(Command::new(bin()).arg("status").arg(v.mnt())).stdout;
    assert!(
        human.contains("key cache:")
            && human.contains("open files:")
            && human.contains("bytes written"),
        "{human}"
    );
    // Flush empties the cache; rotation starts epoch 1 and new files still work.
    let flushed: serde_json::Value = serde_json::from_str(
        &run_ok(
            Command::new(bin())
                .args(["cache", "flush"])
                .arg(v.mnt())
                .arg("--json"),
        )
        .stdout,
    )
    .unwrap();
    assert!(flushed["flushed"].as_u64().unwrap() >= 1);
    assert_eq!(status_json(&v.mnt())["cache"]["entries"], 0);
    run_ok(
        Command::new(bin())
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--data-key"),
    );
    assert_eq!(status_json(&v.mnt())["key_scopes"][0]["current_epoch"], 1);
    fs::write(v.p("g"), b"new epoch").unwrap();
    assert_eq!(fs::read(v.p("g")).unwrap(), b"new epoch");
    assert_eq!(fs::read(v.p("f")).unwrap(), data);
    run_ok(Command::new(bin()).args(["key", "check"]).arg(v.mnt()));
}

#[test]
fn control_socket_refuses_other_users() {
    let v = TestVolume::new();
    let sock = cmkfs::runtime::control_socket(&v.mnt());
    let mode = fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    // Through the file mode: nobody cannot even connect.
    let as_nobody = run(Command::new(bin())
        .arg("status")
        .arg(v.mnt())
        .uid(65534)
        .gid(65534));
    assert!(!as_nobody.success());
    // Through SO_PEERCRED: even with the mode opened up, the daemon refuses another uid.
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let sock2 = sock.clone();
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::setgid(65534);
            libc::setuid(65534);
        }
        let mut s = UnixStream::connect(&sock2).unwrap();
        s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let ok = answer.contains("\"ok\":false") && answer.contains("permission denied");
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(child, &mut status, 0) };
    tx.send(libc::WEXITSTATUS(status)).unwrap();
    assert_eq!(rx.recv().unwrap(), 0, "the daemon answered another uid");
    // Root still gets an answer.
    assert_eq!(
        status_json(&v.mnt())["volume_id"].as_str().unwrap().len(),
        32
    );
}

#[test]
fn config_errors_name_the_key() {
    let v = TestVolume::init_only();
    let cfg = v.root().join("bad.toml");
    fs::write(
        &cfg,
        format!(
            "backing = \"{}\"\nmountpoint = \"{}\"\ncach_capacity = 5\n",
            v.backing().display(),
            v.mnt().display()
        ),
    )
    .unwrap();
    let out = run(Command::new(bin())
        .args(["mount", "--config"])
        .arg(&cfg)
        .arg("--service-key")
        .arg(v.key()));
    assert!(!out.success());
    assert!(
        out.stderr.contains("cach_capacity")
            && out.stderr.contains("line 3")
            && out.stderr.contains("bad.toml"),
        "{}",
        out.stderr
    );
    fs::write(
        &cfg,
        format!(
            "backing = \"{}\"\nthreads = \"lots\"\n",
            v.backing().display()
        ),
    )
    .unwrap();
    let out = run(Command::new(bin()).args(["mount", "--config"]).arg(&cfg));
    assert!(!out.success());
    assert!(
        out.stderr.contains("threads") && out.stderr.contains("line 2"),
        "{}",
        out.stderr
    );
    assert!(!is_mounted(&v.mnt()));
    // A good config mounts, and a flag overrides it (-o ro).
    fs::write(
        &cfg,
        format!(
            "backing = \"{}\"\nmountpoint = \"{}\"\nservice_key = \"{}\"\n",
            v.backing().display(),
            v.mnt().display(),
            v.key().display()
        ),
    )
    .unwrap();
    run_ok(
        Command::new(bin())
            .args(["mount", "--config"])
            .arg(&cfg)
            .args(["-o", "ro"]),
    );
    let err = fs::write(v.mnt().join("x"), b"x").unwrap_err();
    run_ok(Command::new(bin()).arg("umount").arg(v.mnt()));
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn install_script_is_idempotent_and_uninstalls() {
    let dest = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    for _ in 0..2 {
        run_ok(
            Command::new(&script)
                .arg("--destdir")
                .arg(dest.path())
                .arg("--binary")
                .arg(bin()),
        );
    }
    for f in [
        "usr/local/bin/cmkfs",
        "etc/systemd/system/cmkfs@.service",
        "sbin/mount.fuse.cmkfs",
        "usr/local/share/man/man8/cmkfs.8",
        "usr/local/share/man/man8/cmkfs-mount.8",
        "usr/local/share/bash-completion/completions/cmkfs",
    ] {
        assert!(dest.path().join(f).exists(), "{f} not installed");
    }
    run_ok(
        Command::new(&script)
            .arg("--destdir")
            .arg(dest.path())
            .arg("--uninstall"),
    );
    assert!(!dest.path().join("usr/local/bin/cmkfs").exists());
    assert!(
        !dest
            .path()
            .join("usr/local/share/man/man8/cmkfs-mount.8")
            .exists()
    );
}
