//! The daemon's process lifecycle: validate everything before mounting, daemonize (the
//! parent returns once the mount answers), harden the process (no core dumps), mount with
//! fuser, serve on several threads, and unmount cleanly on SIGTERM/SIGINT.

use std::fs::OpenOptions as FileOptions;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use crate::cli::{MountArgs, MountOptions};
use crate::fs::CmkFs;
use crate::keys::{ServiceKey, default_service_key_path};
use crate::runtime::{pid_file, runtime_dir};
use crate::volume::{OpenOptions, Volume};

/// Everything the daemon needs once the volume is open.
struct DaemonPlan {
    backing: PathBuf,
    mountpoint: PathBuf,
    options: MountOptions,
    threads: usize,
    log_file: Option<PathBuf>,
}

pub fn mount(a: MountArgs) -> Result<(), String> {
    let options = MountOptions::parse(&a.options)?;
    let backing = std::path::absolute(&a.backing).map_err(|e| format!("{}: {e}", a.backing.display()))?;
    let mountpoint = std::path::absolute(&a.mountpoint).map_err(|e| format!("{}: {e}", a.mountpoint.display()))?;
    if !mountpoint.is_dir() {
        return Err(format!("mountpoint {} does not exist or is not a directory", mountpoint.display()));
    }
    if !backing.is_dir() {
        return Err(format!("backing directory {} does not exist or is not a directory", backing.display()));
    }
    let config = Volume::read_config(&backing).map_err(|e| e.to_string())?;
    let key_path = a
        .service_key
        .clone()
        .or(options.service_key.clone())
        .unwrap_or_else(|| default_service_key_path(&config.volume_id));
    let service_key = ServiceKey::load(&key_path).map_err(|e| e.to_string())?;
    let open = OpenOptions {
        read_only: options.read_only,
        cache_capacity: a.cache_capacity,
        cache_max_age: Duration::from_secs(a.cache_max_age),
    };
    let volume = Volume::open(&backing, service_key, &open).map_err(|e| e.to_string())?;
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(2);
    let log_file = a.log_file.clone().or(options.log_file.clone()).map(|p| std::path::absolute(&p).unwrap_or(p));
    let plan = DaemonPlan { backing, mountpoint, threads, log_file, options };
    if a.foreground {
        init_logging(plan.log_file.as_deref(), false)?;
        serve(volume, &plan, None)
    } else {
        daemonize(volume, plan)
    }
}

/// Forks; the parent waits until the child reports the mount ready (or why it failed).
fn daemonize(volume: Volume, plan: DaemonPlan) -> Result<(), String> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: no other threads exist yet in this process, so fork is sound.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(wr);
            // One line: "OK" or "ERR <why>"; the child keeps the pipe open while it serves.
            let mut msg = String::new();
            let mut byte = [0u8; 1];
            let mut pipe = std::fs::File::from(rd);
            while let Ok(1) = pipe.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                msg.push(byte[0] as char);
            }
            match msg.strip_prefix("OK") {
                Some(_) => Ok(()),
                None if msg.is_empty() => Err("the daemon exited before the mount was ready (see its log)".into()),
                None => Err(msg.trim().trim_start_matches("ERR ").to_string()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
            redirect_stdio(plan.log_file.as_deref());
            let code = match init_logging(plan.log_file.as_deref(), true).and_then(|_| serve(volume, &plan, Some(&wr))) {
                Ok(()) => 0,
                Err(msg) => {
                    tracing::error!("{msg}");
                    let _ = (&std::fs::File::from(wr)).write_all(format!("ERR {msg}\n").as_bytes());
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

fn redirect_stdio(log_file: Option<&Path>) {
    let null = FileOptions::new().read(true).write(true).open("/dev/null");
    let err_target = log_file.and_then(|p| FileOptions::new().create(true).append(true).open(p).ok());
    if let Ok(null) = null {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        match &err_target {
            Some(f) => {
                let _ = nix::unistd::dup2_stderr(f);
            }
            None => {
                let _ = nix::unistd::dup2_stderr(&null);
            }
        }
    }
}

fn init_logging(log_file: Option<&Path>, _background: bool) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = match log_file {
        Some(p) => {
            let f = FileOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    result.map_err(|e| format!("logging: {e}"))
}

/// No core dumps, no ptrace by other users, permissive umask (modes come from requests),
/// and room for many open backing files.
fn harden_process() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn fuse_config(plan: &DaemonPlan) -> Config {
    let o = &plan.options;
    let mut c = Config::default();
    c.mount_options.push(MountOption::FSName(o.fsname.clone().unwrap_or_else(|| plan.backing.display().to_string())));
    c.mount_options.push(MountOption::Subtype("cmkfs".into()));
    if o.read_only {
        c.mount_options.push(MountOption::RO);
    }
    if o.default_permissions {
        c.mount_options.push(MountOption::DefaultPermissions);
    }
    for f in &o.kernel_flags {
        c.mount_options.push(match f.as_str() {
            "nosuid" => MountOption::NoSuid,
            "suid" => MountOption::Suid,
            "nodev" => MountOption::NoDev,
            "dev" => MountOption::Dev,
            "noexec" => MountOption::NoExec,
            "exec" => MountOption::Exec,
            "atime" => MountOption::Atime,
            "noatime" => MountOption::NoAtime,
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            other => MountOption::CUSTOM(other.to_string()),
        });
    }
    c.acl = if o.allow_other {
        SessionACL::All
    } else if o.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(plan.threads);
    c.clone_fd = true;
    c
}

fn serve(volume: Volume, plan: &DaemonPlan, ready: Option<&OwnedFd>) -> Result<(), String> {
    harden_process();
    let signals = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]);
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    let volume = Arc::new(volume);
    let fs = CmkFs::new(volume.clone(), Duration::from_secs(1)).map_err(|e| format!("cannot open the volume root: {e}"))?;
    let mut session = Session::new(fs, &plan.mountpoint, &fuse_config(plan))
        .map_err(|e| format!("cannot mount {} on {}: {e}", plan.backing.display(), plan.mountpoint.display()))?;
    let pid_path = pid_file(&plan.mountpoint);
    let _ = std::fs::create_dir_all(runtime_dir());
    let _ = std::fs::write(&pid_path, format!("{}\n", std::process::id()));
    let mut unmounter = session.unmount_callable();
    let mountpoint = plan.mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("received {sig:?}, unmounting {}", mountpoint.display());
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount failed ({e}); detaching lazily, open files keep being served");
                    let _ = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    tracing::info!(
        backing = %plan.backing.display(),
        mountpoint = %plan.mountpoint.display(),
        threads = plan.threads,
        "mounted"
    );
    if let Some(fd) = ready {
        // SAFETY: fd is the write end of the readiness pipe, owned by the caller.
        let _ = nix::unistd::write(fd, b"OK\n");
        let _ = fd.as_raw_fd();
    }
    let result = session.run();
    let _ = std::fs::remove_file(&pid_path);
    let stats = volume.keys().cache().flush();
    tracing::info!(flushed_keys = stats, "unmounted, data keys zeroized");
    result.map_err(|e| format!("FUSE session ended with an error: {e}"))
}
