//! A volume in its own temporary directory next to a Key Vault emulator (real REST API over
//! TLS): the emulator's CA and a token file are written beside the volume, and every `cmkfs`
//! command that reaches Key Vault gets the same flags (`kv_args`).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use kv_emulator::Emulator;

use super::{bin, force_unmount, is_mounted, run, run_ok};

pub struct KvVolume {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub mounted: bool,
}

impl KvVolume {
    /// A fresh emulator and directory, then `cmkfs init` with the flags `setup` returns
    /// (it may create keys in the emulator first); returns the volume and init's stdout.
    pub fn init(prefix: &str, setup: impl FnOnce(&KvVolume) -> Vec<String>) -> (KvVolume, String) {
        let emu = Emulator::start();
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        emu.write_ca_file(dir.path().join("ca.pem")).unwrap();
        fs::write(dir.path().join("token"), "test-token\n").unwrap();
        let v = KvVolume {
            emu,
            dir,
            mounted: false,
        };
        let extra = setup(&v);
        let out = run_ok(
            Command::new(bin())
                .arg("init")
                .arg(v.backing())
                .arg("--service-key")
                .arg(v.key())
                .arg("--audit-log")
                .arg(v.audit_log())
                .args(extra),
        );
        (v, out.stdout)
    }

    pub fn backing(&self) -> PathBuf {
        self.dir.path().join("backing")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("service.key")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
    /// The versionless URL of the emulator's key `name`.
    pub fn key_url(&self, name: &str) -> String {
        format!("{}keys/{name}", self.emu.url())
    }
    pub fn kv_args(&self) -> Vec<String> {
        vec![
            "--azure-credential".into(),
            format!(
                "access-token-file:{}",
                self.dir.path().join("token").display()
            ),
            "--ca-file".into(),
            self.dir.path().join("ca.pem").display().to_string(),
            "--no-verify-challenge-resource".into(),
            "--key-vault-timeout".into(),
            "5".into(),
        ]
    }

    /// Mounts with the Key Vault flags and `extra`; the log goes to `log()`.
    pub fn mount_with(&mut self, extra: &[&str]) {
        let out = run(Command::new(bin())
            .arg("mount")
            .arg(self.backing())
            .arg(self.mnt())
            .arg("--service-key")
            .arg(self.key())
            .arg("--log-file")
            .arg(self.dir.path().join("log"))
            .arg("--audit-log")
            .arg(self.audit_log())
            .args(self.kv_args())
            .args(extra)
            .env("RUST_LOG", "info"));
        assert!(
            out.success(),
            "mount failed: {}\nlog: {}",
            out.stderr,
            self.log()
        );
        self.mounted = true;
    }

    pub fn umount(&mut self) {
        run_ok(Command::new(bin()).arg("umount").arg(self.mnt()));
        self.mounted = false;
    }
}

impl Drop for KvVolume {
    fn drop(&mut self) {
        if self.mounted && is_mounted(&self.mnt()) {
            let _ = Command::new(bin()).arg("umount").arg(self.mnt()).output();
            if is_mounted(&self.mnt()) {
                force_unmount(&self.mnt());
            }
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
    }
}
