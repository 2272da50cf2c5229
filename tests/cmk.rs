//! Customer-managed keys against the Key Vault emulator (real REST API over TLS, real Azure
//! SDK client inside the daemon), mounting for real: revocation (disable, delete, deny
//! access) gives EKEYREVOKED on open handles and new opens with no plaintext from the page
//! cache; re-enabling restores access; outages keep cached keys serving; rotation then
//! disabling the old version keeps data readable; one unwrap per data key.

mod common;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kv::KvVolume;
use common::{bin, is_mounted, run, run_ok};
use kv_emulator::{Emulator, Fault};

/// A volume bound to the emulator's key `kek`.
struct CmkVolume(KvVolume);

impl std::ops::Deref for CmkVolume {
    type Target = KvVolume;
    fn deref(&self) -> &KvVolume {
        &self.0
    }
}

impl std::ops::DerefMut for CmkVolume {
    fn deref_mut(&mut self) -> &mut KvVolume {
        &mut self.0
    }
}

impl CmkVolume {
    fn new() -> Self {
        Self::with_interval(3600)
    }

    /// A volume bound to the emulator's key `kek`, mounted with the given check interval.
    fn with_interval(interval: u64) -> Self {
        let (v, stdout) = KvVolume::init("cmkfs-cmk-", |v| {
            v.emu.create_rsa_key("kek");
            let mut flags = vec!["--cmk".to_string(), v.key_url("kek")];
            flags.extend(v.kv_args());
            flags
        });
        assert!(stdout.contains("Customer-managed key"), "{stdout}");
        let mut v = CmkVolume(v);
        v.mount_with(&["--revocation-check-interval", &interval.to_string()]);
        v
    }

    fn key_check(&self) -> serde_json::Value {
        let out = run_ok(
            Command::new(bin())
                .args(["key", "check"])
                .arg(self.mnt())
                .arg("--json"),
        );
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn cmk_state(&self) -> String {
        self.key_check()["keys"][1]["state"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }
}

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

const SECRET: &[u8] = b"top secret payload that must vanish from every cache on revocation";

fn write_secret(v: &CmkVolume) -> Vec<u8> {
    let data: Vec<u8> = SECRET.iter().cycle().take(100_000).copied().collect();
    fs::write(v.p("secret.bin"), &data).unwrap();
    data
}

/// Revocation by `revoke`, then `restore`: open handles and new opens get EKEYREVOKED, the
/// page cache gives nothing back, and access returns without a remount.
fn revoke_and_restore(revoke: impl Fn(&Emulator), restore: impl Fn(&Emulator), why: &str) {
    let v = CmkVolume::new();
    let data = write_secret(&v);
    // Read it (fills the page cache) and keep a handle open.
    let mut held = File::open(v.p("secret.bin")).unwrap();
    let mut buf = Vec::new();
    held.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, data);
    assert_eq!(v.cmk_state(), "enabled");

    revoke(&v.emu);
    assert_eq!(v.cmk_state(), "revoked", "{why} must revoke");
    // The open handle: EKEYREVOKED, not cached plaintext.
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut again = vec![0u8; 4096];
    assert_eq!(
        errno_of(held.read(&mut again)),
        Some(libc::EKEYREVOKED),
        "{why}: read through an open handle"
    );
    assert_eq!(
        errno_of(held.read_at(&mut again, 8192)),
        Some(libc::EKEYREVOKED),
        "{why}: pread through an open handle"
    );
    // New opens and new files.
    assert_eq!(
        errno_of(File::open(v.p("secret.bin"))),
        Some(libc::EKEYREVOKED),
        "{why}: new open"
    );
    assert_eq!(
        errno_of(fs::write(v.p("new.txt"), b"x")),
        Some(libc::EKEYREVOKED),
        "{why}: create"
    );
    let log = v.log();
    assert!(log.contains("revoked"), "log must say revoked: {log}");

    restore(&v.emu);
    assert_eq!(v.cmk_state(), "enabled", "{why}: restored");
    assert_eq!(
        fs::read(v.p("secret.bin")).unwrap(),
        data,
        "{why}: readable again without remount"
    );
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut after = Vec::new();
    held.read_to_end(&mut after).unwrap();
    assert_eq!(after, data, "{why}: the old handle works again");
    fs::write(v.p("new.txt"), b"after restore").unwrap();
    assert!(v.log().contains("access restored"));
}

#[test]
fn disabled_key_revokes_and_enabling_restores() {
    revoke_and_restore(
        |e| e.disable_key("kek").unwrap(),
        |e| e.enable_key("kek").unwrap(),
        "disabled key",
    );
}

#[test]
fn deleted_key_revokes_and_recovery_restores() {
    revoke_and_restore(
        |e| e.delete_key("kek").unwrap(),
        |e| e.recover_key("kek").unwrap(),
        "deleted key",
    );
}

#[test]
fn denied_access_revokes_and_regranting_restores() {
    revoke_and_restore(|e| e.deny_all(), |e| e.restore_access(), "access denied");
}

#[test]
fn watcher_detects_revocation_within_one_interval() {
    let v = CmkVolume::with_interval(1);
    let data = write_secret(&v);
    let mut held = File::open(v.p("secret.bin")).unwrap();
    let mut buf = Vec::new();
    held.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, data);
    v.emu.disable_key("kek").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        held.seek(SeekFrom::Start(0)).unwrap();
        let mut b = vec![0u8; 1024];
        match held.read(&mut b) {
            Err(e) if e.raw_os_error() == Some(libc::EKEYREVOKED) => break,
            Ok(_) => assert_eq!(&b[..SECRET.len()], SECRET),
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(Instant::now() < deadline, "not revoked within the interval");
        std::thread::sleep(Duration::from_millis(100));
    }
    v.emu.enable_key("kek").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read(v.p("secret.bin")).ok().as_deref() != Some(&data[..]) {
        assert!(
            Instant::now() < deadline,
            "not restored within the interval"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn outage_is_not_revocation() {
    let mut v = CmkVolume::new();
    let data = write_secret(&v);
    v.emu.inject_failure(Fault::ServiceUnavailable, None);
    assert_eq!(v.cmk_state(), "unreachable");
    assert_eq!(
        fs::read(v.p("secret.bin")).unwrap(),
        data,
        "cached key keeps serving during a 503 outage"
    );
    fs::write(v.p("during-outage.txt"), b"still writable").unwrap();
    v.emu.clear_failures();
    v.emu.stop(); // dead port
    assert_eq!(v.cmk_state(), "unreachable");
    assert_eq!(
        fs::read(v.p("secret.bin")).unwrap(),
        data,
        "cached key keeps serving with the vault down"
    );
    let log = v.log();
    assert!(log.contains("Key Vault unreachable"), "{log}");
    assert!(
        !log.contains("revoked:"),
        "an outage must not be logged as revocation: {log}"
    );
    // Without the cached key, access fails with EIO (not EKEYREVOKED) while the vault is down.
    run_ok(Command::new(bin()).args(["cache", "flush"]).arg(v.mnt()));
    assert_eq!(errno_of(fs::read(v.p("secret.bin"))), Some(libc::EIO));
    v.umount();
}

#[test]
fn rotation_then_disabling_the_old_version_keeps_data_readable() {
    let v = CmkVolume::new();
    let data = write_secret(&v);
    let old = v.emu.latest_version("kek").unwrap();
    let new_kid = v.emu.rotate_key("kek").unwrap();
    let out = run_ok(
        Command::new(bin())
            .args(["key", "rotate"])
            .arg(v.mnt())
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // The daemon's watcher may have seen the new version first and re-wrapped already (then
    // the request finds nothing left to do): either way one re-wrap, to the new version.
    let by_request = r["rewrapped"].as_u64().unwrap();
    let by_watcher = v
        .log()
        .contains("data keys re-wrapped to the newest key version");
    assert!(by_request == 1 || (by_request == 0 && by_watcher), "{r}");
    assert_eq!(r["versions_in_use"][0].as_str().unwrap(), new_kid);
    let store = common::read_record(&v.backing(), cmkfs::meta_copies::Record::KeyStore).to_string();
    assert!(
        store.contains(&new_kid) && !store.contains(&format!("/{old}\"")),
        "key store not re-wrapped: {store}"
    );
    v.emu.disable_version("kek", &old).unwrap();
    assert_eq!(v.cmk_state(), "enabled");
    run_ok(Command::new(bin()).args(["cache", "flush"]).arg(v.mnt()));
    assert_eq!(fs::read(v.p("secret.bin")).unwrap(), data);
}

#[test]
fn one_unwrap_per_data_key_not_per_file() {
    let mut v = CmkVolume::new();
    for i in 0..1000 {
        fs::write(v.p(&format!("f{i:04}")), format!("file {i}")).unwrap();
    }
    v.umount();
    v.emu.reset_counters();
    v.mount_with(&[]);
    for i in 0..1000 {
        assert_eq!(
            fs::read_to_string(v.p(&format!("f{i:04}"))).unwrap(),
            format!("file {i}")
        );
    }
    assert_eq!(
        v.emu.count("unwrapkey"),
        1,
        "opening 1,000 files must cost one unwrap"
    );
}

#[test]
fn wrong_or_missing_credentials_fail_before_mounting() {
    let mut v = CmkVolume::new();
    v.umount();
    let out = run(Command::new(bin())
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert!(!out.success());
    assert!(out.stderr.contains("--azure-credential"), "{}", out.stderr);
    v.emu.disable_key("kek").unwrap();
    let out = run(Command::new(bin())
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key())
        .args(v.kv_args()));
    assert!(!out.success());
    assert!(
        out.stderr.contains("revoked") || out.stderr.contains("disabled"),
        "{}",
        out.stderr
    );
    assert!(!is_mounted(&v.mnt()));
    assert!(
        !out.stderr.contains("test-token"),
        "the token must not leak: {}",
        out.stderr
    );
}

/// Key Vault flags for the emulator: a token file and its CA written into `dir`.
fn emulator_flags(emu: &Emulator, dir: &Path) -> Vec<String> {
    emu.write_ca_file(dir.join("ca.pem")).unwrap();
    fs::write(dir.join("token"), "t").unwrap();
    vec![
        "--azure-credential".to_string(),
        format!("access-token-file:{}", dir.join("token").display()),
        "--ca-file".into(),
        dir.join("ca.pem").display().to_string(),
        "--no-verify-challenge-resource".into(),
    ]
}

#[test]
fn set_cmk_and_remove_cmk_rewrap_without_reencrypting() {
    let emu = Emulator::start();
    emu.create_rsa_key("other");
    let mut v = common::TestVolume::new();
    fs::write(v.p("doc.txt"), b"protected later").unwrap();
    v.umount();
    let ciphertext_before: Vec<Vec<u8>> = v
        .backing_files()
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".cmkfs"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let kv = emulator_flags(&emu, dir.path());
    let url = format!("{}keys/other", emu.url());
    run_ok(
        Command::new(bin())
            .args(["key", "set-cmk"])
            .arg(v.backing())
            .arg("--cmk")
            .arg(&url)
            .arg("--service-key")
            .arg(v.key())
            .args(&kv),
    );
    let store = common::read_record(&v.backing(), cmkfs::meta_copies::Record::KeyStore);
    assert_eq!(store["cmk"].as_str().unwrap(), url);
    let chain = store["data_keys"][0]["wrapped_by"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "service key then CMK: {store}");
    assert_eq!(chain[0]["type"], "service");
    assert_eq!(chain[1]["type"], "cmk");
    assert!(
        chain[1]["key_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{url}/")),
        "versioned key id"
    );
    // Without the Key Vault flags the volume no longer mounts; with them it does.
    let out = run(Command::new(bin())
        .arg("mount")
        .arg(v.backing())
        .arg(v.mnt())
        .arg("--service-key")
        .arg(v.key()));
    assert!(
        !out.success() && out.stderr.contains(&url),
        "{}",
        out.stderr
    );
    run_ok(
        Command::new(bin())
            .arg("mount")
            .arg(v.backing())
            .arg(v.mnt())
            .arg("--service-key")
            .arg(v.key())
            .args(&kv),
    );
    assert_eq!(
        fs::read(v.mnt().join("doc.txt")).unwrap(),
        b"protected later"
    );
    run_ok(Command::new(bin()).arg("umount").arg(v.mnt()));
    run_ok(
        Command::new(bin())
            .args(["key", "remove-cmk"])
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .args(&kv),
    );
    let store = common::read_record(&v.backing(), cmkfs::meta_copies::Record::KeyStore);
    assert!(
        store.get("cmk").is_none()
            && store["data_keys"][0]["wrapped_by"]
                .as_array()
                .unwrap()
                .len()
                == 1
    );
    v.mount();
    assert_eq!(fs::read(v.p("doc.txt")).unwrap(), b"protected later");
    v.umount();
    let ciphertext_after: Vec<Vec<u8>> = v
        .backing_files()
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".cmkfs"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(ciphertext_before, ciphertext_after, "no data re-encrypted");
}

#[test]
fn every_key_event_is_audited_and_the_chain_verifies() {
    let mut v = CmkVolume::new();
    let data = write_secret(&v);
    v.emu.disable_key("kek").unwrap();
    assert_eq!(v.cmk_state(), "revoked");
    for _ in 0..20 {
        assert_eq!(
            errno_of(File::open(v.p("secret.bin"))),
            Some(libc::EKEYREVOKED)
        );
    }
    v.emu.enable_key("kek").unwrap();
    assert_eq!(v.cmk_state(), "enabled");
    assert_eq!(fs::read(v.p("secret.bin")).unwrap(), data);
    run_ok(Command::new(bin()).args(["cache", "flush"]).arg(v.mnt()));
    v.emu.rotate_key("kek").unwrap();
    run_ok(Command::new(bin()).args(["key", "rotate"]).arg(v.mnt()));
    v.umount();

    let log = fs::read_to_string(v.audit_log()).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = records.iter().map(|r| r["op"].as_str().unwrap()).collect();
    for op in [
        "KeyWrap",
        "KeyUnwrap",
        "MountStarted",
        "RevocationDetected",
        "AccessDenied",
        "AccessRestored",
        "CacheFlush",
        "KeyRotate",
        "MountStopped",
    ] {
        assert!(ops.contains(&op), "no {op} record in {ops:?}");
    }
    let cmk_unwrap = records
        .iter()
        .find(|r| r["op"] == "KeyUnwrap" && r["key_id"].as_str().unwrap().contains("/keys/kek/"))
        .expect("an unwrap under the CMK");
    assert!(
        cmk_unwrap["key_id"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .len()
            == 32,
        "key id with version"
    );
    assert!(cmk_unwrap["duration_ms"].as_f64().is_some());
    assert!(
        cmk_unwrap["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "client request id recorded: {cmk_unwrap}"
    );
    let denial = records.iter().find(|r| r["op"] == "AccessDenied").unwrap();
    assert_eq!(denial["uid"], 0);
    assert!(denial["pid"].as_u64().is_some());
    let denials = ops.iter().filter(|o| **o == "AccessDenied").count();
    assert!(
        denials < 20,
        "denials are rate-limited per file ({denials} records for 20 denials)"
    );
    assert!(!log.contains("test-token"), "no secrets in the audit log");

    run_ok(
        Command::new(bin())
            .args(["audit", "verify"])
            .arg(v.audit_log()),
    );
    // Edit one record: verify fails and names the line.
    let edited = log.replacen(
        "\"op\":\"RevocationDetected\"",
        "\"op\":\"AccessRestored\"",
        1,
    );
    assert_ne!(edited, log);
    fs::write(v.audit_log(), edited).unwrap();
    let out = run(Command::new(bin())
        .args(["audit", "verify"])
        .arg(v.audit_log()));
    assert!(!out.success(), "verify must fail after an edit");
    assert!(
        out.stdout.contains("line") || out.stderr.contains("line"),
        "{} {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn managed_hsm_oct_key_wraps_with_a256kw() {
    let emu = Emulator::start();
    emu.create_oct_key("hsmkey");
    let dir = tempfile::tempdir().unwrap();
    let mut kv = emulator_flags(&emu, dir.path());
    kv.extend([
        "--audit-log".to_string(),
        dir.path().join("audit.log").display().to_string(),
    ]);
    let (backing, key, mnt) = (
        dir.path().join("b"),
        dir.path().join("k"),
        dir.path().join("m"),
    );
    fs::create_dir(&mnt).unwrap();
    let url = format!("{}keys/hsmkey", emu.url());
    run_ok(
        Command::new(bin())
            .arg("init")
            .arg(&backing)
            .arg("--service-key")
            .arg(&key)
            .arg("--cmk")
            .arg(&url)
            .args(&kv),
    );
    let store = common::read_record(&backing, cmkfs::meta_copies::Record::KeyStore);
    assert_eq!(
        store["data_keys"][0]["wrapped_by"][1]["algorithm"], "A256KW",
        "{store}"
    );
    run_ok(
        Command::new(bin())
            .arg("mount")
            .arg(&backing)
            .arg(&mnt)
            .arg("--service-key")
            .arg(&key)
            .args(&kv),
    );
    fs::write(mnt.join("f"), b"under an HSM key").unwrap();
    emu.disable_key("hsmkey").unwrap();
    let out = run(Command::new(bin()).args(["key", "check"]).arg(&mnt));
    let denied = errno_of(fs::read(mnt.join("f")));
    emu.enable_key("hsmkey").unwrap();
    run_ok(Command::new(bin()).args(["key", "check"]).arg(&mnt));
    let back = fs::read(mnt.join("f"));
    run_ok(Command::new(bin()).arg("umount").arg(&mnt));
    assert!(out.stdout.contains("revoked"), "{}", out.stdout);
    assert_eq!(denied, Some(libc::EKEYREVOKED));
    assert_eq!(back.unwrap(), b"under an HSM key");
}
