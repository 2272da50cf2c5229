//! `cmkfs umount`: unmount, then wait for the daemon to finish and exit.

use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::runtime::pid_file;

use super::UmountArgs;

pub fn run(a: UmountArgs) -> Result<(), String> {
    let mp = &a.mountpoint;
    let pid = std::fs::read_to_string(pid_file(mp))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let flags = if a.lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    // A file closed just before may still hold the mount until the daemon has answered its
    // RELEASE: retry a busy unmount for a moment before giving up.
    let mut result = umount2(mp, flags);
    let deadline = Instant::now() + Duration::from_secs(3);
    while result == Err(nix::errno::Errno::EBUSY) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        result = umount2(mp, flags);
    }
    match result {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => {
            let mut cmd = std::process::Command::new("fusermount3");
            cmd.arg("-u");
            if a.lazy {
                cmd.arg("-z");
            }
            let st = cmd
                .arg(mp)
                .status()
                .map_err(|e| format!("cannot run fusermount3: {e}"))?;
            if !st.success() {
                return Err(format!("fusermount3 -u {} failed", mp.display()));
            }
        }
        Err(nix::errno::Errno::EBUSY) => {
            return Err(format!(
                "{} is busy (files are open or a process has it as its working directory); close them or use --lazy",
                mp.display()
            ));
        }
        Err(nix::errno::Errno::EINVAL) => return Err(format!("{} is not mounted", mp.display())),
        Err(e) => return Err(format!("cannot unmount {}: {e}", mp.display())),
    }
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(60);
        while kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid) {
            if Instant::now() > deadline {
                return Err(format!(
                    "unmounted, but the daemon (pid {pid}) has not exited after 60 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// A daemon that exited but was not yet reaped counts as gone.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(true)
}
