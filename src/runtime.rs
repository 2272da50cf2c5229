//! Per-mount runtime files (pid file, control socket) under `/run/cmkfs` (root) or
//! `$XDG_RUNTIME_DIR/cmkfs`.

use std::path::{Path, PathBuf};

pub fn runtime_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/cmkfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("cmkfs"),
        None => PathBuf::from(format!("/tmp/cmkfs-{}", nix::unistd::geteuid())),
    }
}

/// A short stable id for a mountpoint (its canonical path hashed).
pub fn mount_id(mountpoint: &Path) -> String {
    let canon = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_path_buf());
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canon.as_os_str().as_encoded_bytes(),
    );
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn pid_file(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.pid", mount_id(mountpoint)))
}

/// The control socket of the mount at `mountpoint`.
pub fn control_socket(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.sock", mount_id(mountpoint)))
}

/// The alias of a named instance's control socket (`/run/cmkfs/NAME.sock`).
pub fn named_socket(name: &str) -> PathBuf {
    runtime_dir().join(format!("{name}.sock"))
}
