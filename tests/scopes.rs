//! Key scopes (`cmkfs scope ...`), mounting for real, with the Key Vault emulator for the
//! scopes' own customer-managed keys: revoking one scope's key refuses that scope alone while
//! the other scope and the volume root keep serving; lock and unlock; EXDEV across scope
//! boundaries (so `mv` copies under the target scope's key, checked on disk); nested, root and
//! non-empty scopes refused; per-scope rotation and re-encryption; 100 scopes with their own
//! keys and one watcher; the audit chain verifies after all of it.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::kv::KvVolume;
use common::{TestVolume, bin, errno, run, run_ok, walk};

/// A volume (service key only at its root) mounted with Key Vault settings for the
/// emulator, so that scopes can have their own customer-managed keys.
struct ScopedVolume {
    v: KvVolume,
    /// More mount flags.
    extra: Vec<String>,
}

impl std::ops::Deref for ScopedVolume {
    type Target = KvVolume;
    fn deref(&self) -> &KvVolume {
        &self.v
    }
}

impl ScopedVolume {
    fn new(check_interval: u64) -> Self {
        Self::with_flags(check_interval, &[])
    }

    fn with_flags(check_interval: u64, extra: &[&str]) -> Self {
        let (v, _) = KvVolume::init("cmkfs-scopes-", |_| Vec::new());
        let mut v = ScopedVolume {
            v,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        v.mount(check_interval);
        v
    }

    fn mount(&mut self, check_interval: u64) {
        let mut flags = vec![
            "--revocation-check-interval".to_string(),
            check_interval.to_string(),
        ];
        flags.extend(self.extra.iter().cloned());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.v.mount_with(&flags);
    }

    fn umount(&mut self) {
        self.v.umount();
    }

    /// `cmkfs scope create DIR --cmk URL` (or --service-key-only); the scope number.
    fn create_scope(&self, rel: &str, cmk: Option<&str>) -> u64 {
        fs::create_dir(self.p(rel)).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["scope", "create"]).arg(self.p(rel)).arg("--json");
        match cmk {
            Some(name) => cmd.arg("--cmk").arg(self.key_url(name)),
            None => cmd.arg("--service-key-only"),
        };
        let out = run_ok(&mut cmd);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["scope"].as_u64().unwrap()
    }

    fn scope_list(&self) -> Vec<serde_json::Value> {
        let out = run_ok(
            Command::new(bin())
                .args(["scope", "list"])
                .arg(self.mnt())
                .arg("--json"),
        );
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["scopes"].as_array().unwrap().clone()
    }

    fn scope_state(&self, scope: u64) -> String {
        self.scope_list()
            .iter()
            .find(|s| s["scope"] == scope)
            .map(|s| s["state"].as_str().unwrap_or("?").to_string())
            .unwrap_or_default()
    }
}

fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// How many backing files name each (data-key scope, epoch) in their header.
fn header_counts(backing: &Path) -> std::collections::HashMap<(u32, u32), usize> {
    let mut out = std::collections::HashMap::new();
    for p in walk(backing) {
        if p.to_string_lossy().contains("/.cmkfs/") {
            continue;
        }
        let Ok(b) = fs::read(&p) else { continue };
        if b.len() >= 32 && &b[..4] == b"CMKF" {
            let scope = u32::from_le_bytes(b[8..12].try_into().unwrap());
            let epoch = u32::from_le_bytes(b[12..16].try_into().unwrap());
            *out.entry((scope, epoch)).or_insert(0) += 1;
        }
    }
    out
}

/// Files whose header names key scope `scope` (any epoch).
fn files_in_scope(backing: &Path, scope: u32) -> usize {
    header_counts(backing)
        .iter()
        .filter(|((s, _), _)| *s == scope)
        .map(|(_, n)| n)
        .sum()
}

/// A reader/writer loop on `dirs` until `stop`: every round writes a file and reads it back;
/// counts rounds and failures.
fn busy_loop(
    dirs: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for d in &dirs {
                let data = format!("round {i} in {}", d.display()).repeat(100);
                let p = d.join(format!("loop-{}", i % 4));
                let r = fs::write(&p, &data).and_then(|()| fs::read(&p));
                match r {
                    Ok(back) if back == data.as_bytes() => {}
                    Ok(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        seen.push(format!("{}: wrong content", p.display()));
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        seen.push(format!("{}: {e}", p.display()));
                    }
                }
            }
            rounds.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        seen
    })
}

#[test]
fn revoking_one_scope_leaves_the_other_and_the_root_serving() {
    let mut v = ScopedVolume::new(1);
    v.emu.create_rsa_key("customer-a");
    v.emu.create_rsa_key("customer-b");
    let a = v.create_scope("a", Some("customer-a"));
    let b = v.create_scope("b", Some("customer-b"));
    assert_ne!(a, b);
    fs::create_dir(v.p("a/docs")).unwrap();
    let secret = b"customer A's contract".repeat(500);
    fs::write(v.p("a/docs/contract.txt"), &secret).unwrap();
    fs::write(v.p("b/report.txt"), b"customer B's report").unwrap();
    fs::write(v.p("root.txt"), b"the operator's file").unwrap();
    assert_eq!(files_in_scope(&v.backing(), a as u32), 1);
    assert_eq!(files_in_scope(&v.backing(), b as u32), 1);
    assert_eq!(files_in_scope(&v.backing(), 0), 1);
    // A handle kept open in A, its pages in the page cache.
    let mut held = File::open(v.p("a/docs/contract.txt")).unwrap();
    let mut buf = Vec::new();
    held.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, secret);

    // B and the root keep a read/write loop going throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let worker = busy_loop(
        vec![v.p("b"), v.mnt()],
        stop.clone(),
        rounds.clone(),
        failures.clone(),
    );

    v.emu.disable_key("customer-a").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || errno(&File::open(
            v.p("a/docs/contract.txt")
        )) == Some(libc::EKEYREVOKED)),
        "scope A must be refused within one check interval"
    );
    use std::os::unix::fs::FileExt;
    let mut again = vec![0u8; 4096];
    assert_eq!(
        errno(&held.read_at(&mut again, 0)),
        Some(libc::EKEYREVOKED),
        "open handle, page cache dropped"
    );
    assert_eq!(
        errno(&fs::write(v.p("a/new.txt"), b"x")),
        Some(libc::EKEYREVOKED),
        "new file in A"
    );
    assert_eq!(v.scope_state(a), "revoked");
    assert_eq!(v.scope_state(b), "usable");
    let before = rounds.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(10), || rounds.load(Ordering::Relaxed)
            >= before + 5),
        "B and the root keep serving while A is revoked"
    );

    v.emu.enable_key("customer-a").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || fs::read(
            v.p("a/docs/contract.txt")
        )
        .is_ok_and(|d| d == secret)),
        "A restored without a remount"
    );
    assert_eq!(held.read_at(&mut again, 0).unwrap(), 4096);
    assert_eq!(&again[..], &secret[..4096]);
    stop.store(true, Ordering::Relaxed);
    let seen = worker.join().unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "B and the root never failed: {seen:?}"
    );
    assert!(rounds.load(Ordering::Relaxed) > 0);
    drop(held);

    // Lock and unlock B on demand (A and the root unaffected).
    run_ok(Command::new(bin()).args(["scope", "lock"]).arg(v.p("b")));
    assert_eq!(
        errno(&fs::read(v.p("b/report.txt"))),
        Some(libc::EKEYREVOKED)
    );
    assert_eq!(errno(&fs::read_dir(v.p("b"))), Some(libc::EKEYREVOKED));
    assert_eq!(v.scope_state(b), "locked");
    assert_eq!(fs::read(v.p("a/docs/contract.txt")).unwrap(), secret);
    assert_eq!(fs::read(v.p("root.txt")).unwrap(), b"the operator's file");
    // Locked survives a remount.
    v.umount();
    v.mount(1);
    assert_eq!(
        errno(&fs::read(v.p("b/report.txt"))),
        Some(libc::EKEYREVOKED)
    );
    run_ok(Command::new(bin()).args(["scope", "unlock"]).arg(v.p("b")));
    assert_eq!(
        fs::read(v.p("b/report.txt")).unwrap(),
        b"customer B's report"
    );

    // mv across the boundary: EXDEV inside, so mv copies under the target scope's key.
    fs::create_dir_all(v.p("a/tree/sub")).unwrap();
    fs::write(v.p("a/tree/sub/deep.txt"), b"deep in A").unwrap();
    fs::write(v.p("a/moving.txt"), b"moving to B").unwrap();
    assert_eq!(
        errno(&fs::rename(v.p("a/moving.txt"), v.p("b/moving.txt"))),
        Some(libc::EXDEV)
    );
    assert_eq!(
        errno(&fs::hard_link(v.p("a/moving.txt"), v.p("b/linked.txt"))),
        Some(libc::EXDEV)
    );
    let in_a = files_in_scope(&v.backing(), a as u32);
    let in_b = files_in_scope(&v.backing(), b as u32);
    for src in ["a/moving.txt", "a/tree"] {
        let out = run(Command::new("mv").arg(v.p(src)).arg(v.p("b/")));
        assert!(out.success(), "mv {src}: {}", out.stderr);
    }
    assert_eq!(fs::read(v.p("b/moving.txt")).unwrap(), b"moving to B");
    assert_eq!(fs::read(v.p("b/tree/sub/deep.txt")).unwrap(), b"deep in A");
    assert!(!v.p("a/tree").exists() && !v.p("a/moving.txt").exists());
    // On disk: the two files left scope A's key and are now under scope B's.
    assert_eq!(files_in_scope(&v.backing(), a as u32), in_a - 2);
    assert_eq!(files_in_scope(&v.backing(), b as u32), in_b + 2);

    // A's data keys move to another customer-managed key (no data re-encrypted): A's files
    // then no longer depend on the first key.
    v.emu.create_rsa_key("customer-a2");
    run_ok(
        Command::new(bin())
            .args(["key", "set-cmk"])
            .arg(v.p("a"))
            .arg("--cmk")
            .arg(v.key_url("customer-a2")),
    );
    let listed = v.scope_list();
    let sa = listed.iter().find(|s| s["scope"] == a).unwrap();
    assert_eq!(sa["cmk"], v.key_url("customer-a2").as_str(), "{sa}");
    v.emu.disable_key("customer-a").unwrap();
    run_ok(Command::new(bin()).args(["cache", "flush"]).arg(v.mnt()));
    assert_eq!(fs::read(v.p("a/docs/contract.txt")).unwrap(), secret);
    v.emu.enable_key("customer-a").unwrap();

    // Every event is audited with its scope, and the chain verifies.
    let audit = fs::read_to_string(v.audit_log()).unwrap();
    for op in [
        "ScopeCreate",
        "RevocationDetected",
        "AccessRestored",
        "ScopeLock",
        "ScopeUnlock",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"op\":\"{op}\"")) && l.contains("\"scope\":")),
            "{op} audited with its scope"
        );
    }
    v.umount();
    run_ok(
        Command::new(bin())
            .args(["audit", "verify"])
            .arg(v.audit_log()),
    );
}

#[test]
fn scope_boundaries_rotation_and_offline_listing() {
    let mut v = TestVolume::new();
    let scope = |rel: &str, extra: &[&str]| {
        run(Command::new(bin())
            .args(["scope", "create"])
            .arg(v.p(rel))
            .args(extra))
    };
    fs::create_dir(v.p("cust")).unwrap();
    fs::create_dir(v.p("full")).unwrap();
    fs::write(v.p("full/f"), b"x").unwrap();
    // One of --cmk / --service-key-only is required.
    assert!(!scope("cust", &[]).success());
    let out = scope("full", &["--service-key-only"]);
    assert!(
        !out.success() && out.stderr.contains("empty"),
        "{}",
        out.stderr
    );
    let out = run(Command::new(bin())
        .args(["scope", "create"])
        .arg(v.mnt())
        .arg("--service-key-only"));
    assert!(
        !out.success() && out.stderr.contains("root"),
        "{}",
        out.stderr
    );
    assert!(scope("cust", &["--service-key-only"]).success());
    fs::create_dir(v.p("cust/inner")).unwrap();
    let out = scope("cust/inner", &["--service-key-only"]);
    assert!(
        !out.success() && out.stderr.contains("nested"),
        "{}",
        out.stderr
    );

    fs::write(v.p("cust/a.txt"), b"in the scope").unwrap();
    let long = "n".repeat(200);
    fs::write(v.p(&format!("cust/{long}")), b"long name").unwrap();
    std::os::unix::fs::symlink("a.txt", v.p("cust/link")).unwrap();
    assert_eq!(fs::read_link(v.p("cust/link")).unwrap(), Path::new("a.txt"));
    // The scope root moves within its parent's scope, never into another scope.
    fs::rename(v.p("cust"), v.p("customer")).unwrap();
    fs::create_dir(v.p("other")).unwrap();
    assert!(scope("other", &["--service-key-only"]).success());
    fs::write(v.p("other/x.txt"), b"in the other scope").unwrap();
    assert_eq!(
        errno(&fs::rename(v.p("customer"), v.p("other/customer"))),
        Some(libc::EXDEV)
    );
    assert_eq!(
        errno(&fs::remove_dir(v.p("customer"))),
        Some(libc::ENOTEMPTY)
    );

    // Per-scope rotation: new files of that scope take the new epoch; the root keeps its.
    run_ok(
        Command::new(bin())
            .args(["key", "rotate"])
            .arg(v.p("customer"))
            .arg("--data-key"),
    );
    fs::write(v.p("customer/after.txt"), b"new epoch").unwrap();
    fs::write(v.p("root-after.txt"), b"root epoch").unwrap();
    let counts = header_counts(&v.backing());
    let s = (1..10)
        .find(|s| counts.contains_key(&(*s, 1)))
        .expect("a file of the rotated scope on epoch 1");
    assert_eq!(counts.get(&(s, 1)), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&(s, 0)), Some(&2), "{counts:?}");
    assert_eq!(
        counts.get(&(0, 1)),
        None,
        "the root keeps its epoch: {counts:?}"
    );
    // Re-encrypting the scope moves its old files to the new epoch, and nothing else.
    let root_files = counts.get(&(0, 0)).copied();
    let out = run_ok(
        Command::new(bin())
            .arg("reencrypt")
            .arg(v.p("customer"))
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(r["reencrypted"].as_u64().unwrap() >= 2, "{r}");
    let counts = header_counts(&v.backing());
    assert_eq!(counts.get(&(s, 1)), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&(s, 0)), None, "{counts:?}");
    assert_eq!(counts.get(&(0, 0)).copied(), root_files, "{counts:?}");
    assert_eq!(fs::read(v.p("customer/a.txt")).unwrap(), b"in the scope");
    assert_eq!(
        fs::read(v.p(&format!("customer/{long}"))).unwrap(),
        b"long name"
    );
    assert_eq!(
        fs::read_link(v.p("customer/link")).unwrap(),
        Path::new("a.txt")
    );

    // Locked state and listing, online and offline.
    run_ok(
        Command::new(bin())
            .args(["scope", "lock"])
            .arg(v.p("other")),
    );
    // Re-encrypting the whole volume skips the locked scope and says so.
    let out = run_ok(
        Command::new(bin())
            .arg("reencrypt")
            .arg(v.mnt())
            .arg("--json"),
    );
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(r["skipped"].to_string().contains("/other/"), "{r}");
    let out = run_ok(Command::new(bin()).args(["scope", "list"]).arg(v.mnt()));
    assert!(
        out.stdout.contains("/customer") && out.stdout.contains("locked"),
        "{}",
        out.stdout
    );
    v.umount();
    let out = run_ok(
        Command::new(bin())
            .args(["scope", "list"])
            .arg(v.backing())
            .arg("--service-key")
            .arg(v.key())
            .arg("--json"),
    );
    let l: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let scopes = l["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 3, "{l}");
    let customer = scopes.iter().find(|x| x["root"] == "/customer").unwrap();
    assert_eq!(customer["files"], 3, "{customer}");
    assert_eq!(customer["epochs"], serde_json::json!([0, 1]));
    assert!(
        scopes
            .iter()
            .any(|x| x["root"] == "/other" && x["state"] == "locked")
    );
    let out = run(Command::new(bin())
        .arg("fsck")
        .arg(v.backing())
        .arg("--service-key")
        .arg(v.key()));
    assert!(out.success(), "fsck: {}{}", out.stdout, out.stderr);
}

#[test]
fn a_hundred_scopes_with_their_own_keys_and_one_watcher() {
    // The data-key cache is one LRU for every scope, bounded by --cache-capacity.
    let v = ScopedVolume::with_flags(2, &["--cache-capacity", "16"]);
    const N: usize = 100;
    for i in 0..N {
        v.emu.create_oct_key(&format!("cust{i}"));
    }
    for i in 0..N {
        let s = v.create_scope(&format!("c{i}"), Some(&format!("cust{i}")));
        fs::write(
            v.p(&format!("c{i}/data")),
            format!("customer {i} (scope {s})"),
        )
        .unwrap();
    }
    let list = v.scope_list();
    assert_eq!(list.len(), N + 1);
    assert!(list.iter().all(|s| s["state"] == "usable"), "{list:?}");
    // Revoke one among the hundred: it alone is refused.
    v.emu.disable_key("cust42").unwrap();
    assert!(
        eventually(Duration::from_secs(15), || errno(&fs::read(
            v.p("c42/data")
        )) == Some(libc::EKEYREVOKED)),
        "scope of cust42 refused within the check interval"
    );
    for i in (0..N).filter(|i| *i != 42) {
        let d = fs::read_to_string(v.p(&format!("c{i}/data"))).unwrap();
        assert!(d.starts_with(&format!("customer {i} ")), "{d}");
    }
    // One watcher thread checks keys in use; its request rate is reported and bounded by
    // the keys (at most a few requests per key and round).
    let watcher = || {
        let out = run_ok(
            Command::new(bin())
                .args(["scope", "list"])
                .arg(v.mnt())
                .arg("--json"),
        );
        let l: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        l["watcher"].clone()
    };
    // A round that started after every scope existed (and nothing else ran meanwhile).
    let mut w = watcher();
    assert!(
        eventually(Duration::from_secs(15), || {
            w = watcher();
            // Only keys whose data keys are cached (at most the cache's 16, plus the
            // revoked one) are checked, at most 3 requests each (the round also counts
            // unwraps that ran meanwhile, so wait for a quiet one).
            let checked = w["keys_checked"].as_u64().unwrap_or(u64::MAX);
            let requests = w["requests"].as_u64().unwrap_or(u64::MAX);
            w["keys_known"] == N as u64 && checked <= 17 && requests <= 3 * checked.max(1)
        }),
        "{w}"
    );
    let threads = fs::read_dir(format!("/proc/{}/task", daemon_pid(&v.mnt())))
        .unwrap()
        .count();
    assert!(threads < 40, "{threads} threads for {N} scopes' keys");
    let out = run_ok(Command::new(bin()).arg("status").arg(v.mnt()).arg("--json"));
    let st: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let cached = st["cache"]["entries"].as_u64().unwrap();
    assert!((1..=16).contains(&cached), "cache entries {cached}");
    v.emu.enable_key("cust42").unwrap();
    assert!(eventually(Duration::from_secs(15), || fs::read(
        v.p("c42/data")
    )
    .is_ok()));
}

/// The pid of the daemon serving `mnt`.
fn daemon_pid(mnt: &Path) -> u64 {
    let out = run_ok(Command::new(bin()).arg("status").arg(mnt).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["pid"].as_u64().expect("status has the daemon pid")
}
