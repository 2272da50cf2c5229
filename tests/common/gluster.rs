//! Two "hosts" on one distributed filesystem: a single-node GlusterFS volume mounted twice
//! through its FUSE client (`scripts/gluster.sh up`), one cmkfs daemon per mount, each with its
//! own mountpoint, log, audit log and control socket. Where GlusterFS cannot be started, both
//! hosts use one local directory instead, and the test says so on stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{cmkfs, force_unmount, run, run_ok};

/// The two GlusterFS mounts (or twice one local directory, announced), brought up once per
/// test binary.
pub fn two_hosts_dirs() -> (PathBuf, PathBuf) {
    static UP: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    UP.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gluster.sh");
        let o = run(Command::new(script).arg("up"));
        if o.success() {
            return (
                PathBuf::from("/mnt/cmkfs-gluster-a"),
                PathBuf::from("/mnt/cmkfs-gluster-b"),
            );
        }
        let local = std::env::temp_dir().join("cmkfs-shared-fallback");
        fs::create_dir_all(&local).unwrap();
        eprintln!(
            "NOTE: GlusterFS could not be started ({}); the shared tests run two daemons over one local directory ({}) instead",
            o.stderr.trim(),
            local.display()
        );
        (local.clone(), local)
    })
    .clone()
}

/// One daemon of a shared volume.
pub struct Host {
    pub backing: PathBuf,
    pub mnt: PathBuf,
    pub log: PathBuf,
    pub audit: PathBuf,
    pub extra: Vec<String>,
    pub mounted: bool,
}

impl Host {
    pub fn mount_cmd(&self, key: &Path) -> Command {
        let mut c = cmkfs();
        c.arg("mount")
            .arg(&self.backing)
            .arg(&self.mnt)
            .arg("--service-key")
            .arg(key)
            .arg("--log-file")
            .arg(&self.log)
            .arg("--audit-log")
            .arg(&self.audit)
            .args(&self.extra);
        c
    }
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A volume whose backing directory is reached through two mounts of one distributed
/// filesystem, with a daemon on each.
pub struct SharedVolume {
    pub local: tempfile::TempDir,
    pub hosts: [Host; 2],
    pub name: String,
}

impl SharedVolume {
    /// `cmkfs init` with `init_args` (e.g. `--shared`) on host A's view; nothing mounted.
    pub fn init(name: &str, init_args: &[String]) -> SharedVolume {
        let (a, b) = two_hosts_dirs();
        let dir = format!("{name}-{}", std::process::id());
        let _ = fs::remove_dir_all(a.join(&dir));
        fs::create_dir_all(a.join(&dir)).unwrap();
        let local = tempfile::tempdir().unwrap();
        let host = |base: &Path, tag: &str| {
            let mnt = local.path().join(format!("mnt-{tag}"));
            fs::create_dir(&mnt).unwrap();
            Host {
                backing: base.join(&dir),
                mnt,
                log: local.path().join(format!("log-{tag}")),
                audit: local.path().join(format!("audit-{tag}")),
                extra: Vec::new(),
                mounted: false,
            }
        };
        let hosts = [host(&a, "a"), host(&b, "b")];
        let v = SharedVolume {
            hosts,
            name: dir,
            local,
        };
        run_ok(
            cmkfs()
                .arg("init")
                .arg(&v.hosts[0].backing)
                .arg("--service-key")
                .arg(v.key())
                .arg("--audit-log")
                .arg(&v.hosts[0].audit)
                .args(init_args),
        );
        v
    }

    pub fn key(&self) -> PathBuf {
        self.local.path().join("key")
    }

    pub fn mount(&mut self, i: usize) {
        run_ok(&mut self.hosts[i].mount_cmd(&self.key()));
        self.hosts[i].mounted = true;
    }

    pub fn umount(&mut self, i: usize) {
        run_ok(cmkfs().arg("umount").arg(&self.hosts[i].mnt));
        self.hosts[i].mounted = false;
    }
}

impl Drop for SharedVolume {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if h.mounted {
                let _ = run(cmkfs().arg("umount").arg(&h.mnt));
                force_unmount(&h.mnt);
            }
        }
        if std::thread::panicking() {
            for (h, tag) in self.hosts.iter().zip(["A", "B"]) {
                let log = h.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "---- host {tag} daemon log tail ----\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let _ = fs::remove_dir_all(&self.hosts[0].backing);
    }
}
