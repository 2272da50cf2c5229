//! The daemon's lifecycle: resolve settings (flags, `-o`, config file), validate everything
//! before mounting, daemonize (the starter returns once the mount answers), mount with
//! fuser, report readiness (pipe and systemd), serve the control socket, and unmount
//! cleanly on SIGTERM/SIGINT.

mod control_impl;
mod control_scopes;
mod fips;
mod key_events;
mod metrics_server;
mod notify;
mod process;
mod settings;
mod shared_watch;

pub use settings::MountSettings;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use crate::cli::MountArgs;
use crate::control::ControlServer;
use crate::fs::{CmkFs, FsStats, KernelCaches};
use crate::keys::RevocationWatcher;
use crate::keys::{ServiceKey, default_service_key_path};
use crate::runtime::{control_socket, named_socket, pid_file, runtime_dir};
use crate::volume::{OpenOptions, Volume, lock_backing, lock_backing_shared};

use control_impl::DaemonControl;
use key_events::KeyEvents;
use metrics_server::{MetricsServer, ScrapeSource};
use notify::notify;
pub use process::LogTarget;
use process::{LogSetup, ReadyPipe, daemonize, harden_process, init_logging};

pub fn mount(a: MountArgs) -> Result<(), String> {
    let s = MountSettings::resolve(&a)?;
    // Before anything touches the volume: a fips build that cannot enter FIPS mode, or a
    // `fips = "required"` mount on the default build, stops here with one line.
    fips::check_crypto_module(s.fips)?;
    // Before any thread exists (lease renewer, Key Vault runtime): every thread inherits the
    // mask, so SIGTERM/SIGINT/SIGHUP reach only the signal thread's sigwait and never kill
    // the daemon with the mount left behind.
    stop_signals()
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    clear_stale_mount(&s.mountpoint)?;
    if !s.mountpoint.is_dir() {
        return Err(format!(
            "mountpoint {} does not exist or is not a directory",
            s.mountpoint.display()
        ));
    }
    if !s.backing.is_dir() {
        return Err(format!(
            "backing directory {} does not exist or is not a directory",
            s.backing.display()
        ));
    }
    check_mountpoint(&s)?;
    let config = Volume::read_config(&s.backing).map_err(|e| e.to_string())?;
    let mut lock = if config.shared {
        lock_backing_shared(&s.backing, &s.mountpoint)
    } else {
        lock_backing(&s.backing, &s.mountpoint, s.options.read_only)
    }
    .map_err(|e| e.to_string())?;
    let key_path = s
        .service_key
        .clone()
        .unwrap_or_else(|| default_service_key_path(&config.volume_id));
    let service_key = ServiceKey::load(&key_path).map_err(|e| e.to_string())?;
    let cmk = match Volume::read_cmk_url(&s.backing).map_err(|e| e.to_string())? {
        Some(url) => Some(s.key_vault.connect(&url)? as Arc<dyn crate::keys::CustomerKey>),
        None => None,
    };
    let audit_path = s
        .audit_log
        .clone()
        .unwrap_or_else(crate::audit::default_audit_log_path);
    let audit =
        Arc::new(crate::audit::AuditLog::open(&audit_path).map_err(|e| format!("audit log: {e}"))?);
    let open = OpenOptions {
        read_only: s.options.read_only,
        cache_capacity: s.cache_capacity,
        cache_max_age: s.cache_max_age,
        cmk,
        audit: audit.clone(),
        repair_metadata: false,
        connector: Some(Arc::new(s.key_vault.clone())),
        ignore_scope_locks: false,
    };
    let volume = Volume::open(&s.backing, service_key, &open).map_err(|e| e.to_string())?;
    volume.set_atime_policy(s.options.atime, !s.options.nodiratime);
    let log_setup = LogSetup {
        target: s.log_target,
        log_file: s.log_file.as_deref(),
        level: s.log_level.as_deref(),
        volume_id: &config.volume_id,
        mountpoint: &s.mountpoint,
        backing: &s.backing,
    };
    if s.foreground {
        init_logging(&log_setup)?;
        log_metadata_findings(&volume);
        lock.keep_renewing();
        let result = serve(volume, &s, ReadyPipe::none());
        drop(lock);
        return result;
    }
    match daemonize(s.log_file.as_deref())? {
        None => {
            // The daemon holds the lock and its lease now.
            lock.hand_over();
            Ok(())
        }
        Some(mut pipe) => {
            lock.renew();
            if let Err(msg) = init_logging(&log_setup) {
                pipe.failed(&msg);
                std::process::exit(1);
            }
            log_metadata_findings(&volume);
            lock.keep_renewing();
            let result = serve(volume, &s, pipe);
            if let Err(msg) = &result {
                tracing::error!("{msg}");
            }
            drop(lock);
            std::process::exit(if result.is_ok() { 0 } else { 1 });
        }
    }
}

/// Logs the damaged metadata copies found (and repaired) while the volume was opened, which
/// happened before logging was set up.
fn log_metadata_findings(volume: &Volume) {
    for ev in volume.metadata_events() {
        tracing::warn!("{}", ev.message);
    }
}

/// A FUSE mount whose daemon died (SIGKILL, crash) answers ENOTCONN: detach it so the volume
/// can be mounted again at once, and say so.
fn clear_stale_mount(mountpoint: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|err| {
                format!(
                    "{} is a stale FUSE mount (its daemon is gone) and cannot be detached: {err}; run `umount -l {}`",
                    mountpoint.display(),
                    mountpoint.display()
                )
            })?;
            eprintln!(
                "cmkfs: detached a stale mount at {} (its daemon had died)",
                mountpoint.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The mountpoint must not be a mount already, and must be empty unless `-o nonempty`.
fn check_mountpoint(s: &MountSettings) -> Result<(), String> {
    let mp = s
        .mountpoint
        .canonicalize()
        .map_err(|e| format!("mountpoint {}: {e}", s.mountpoint.display()))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let mut f = line.split(' ');
        if let Some(point) = f.nth(4)
            && unescape_mount_path(point) == mp.as_os_str().as_encoded_bytes()
        {
            let source = line
                .split(" - ")
                .nth(1)
                .map(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            return Err(format!(
                "{} is already a mount point ({source}); unmount it first",
                mp.display()
            ));
        }
    }
    if !s.options.nonempty {
        let busy = std::fs::read_dir(&mp)
            .map_err(|e| format!("mountpoint {}: {e}", mp.display()))?
            .next()
            .is_some();
        if busy {
            return Err(format!(
                "mountpoint {} is not empty (its files would be hidden); use -o nonempty to mount anyway",
                mp.display()
            ));
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount_path(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn fuse_config(s: &MountSettings) -> Config {
    let o = &s.options;
    let mut c = Config::default();
    c.mount_options.push(MountOption::FSName(
        o.fsname
            .clone()
            .unwrap_or_else(|| s.backing.display().to_string()),
    ));
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
    c.n_threads = Some(s.threads);
    c.clone_fd = true;
    c
}

/// Sets the read-ahead of the mount's backing device info (best effort: needs root).
fn set_read_ahead(mountpoint: &std::path::Path, kb: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    match std::fs::write(&path, kb.to_string()) {
        Ok(()) => tracing::debug!("read-ahead set to {kb} KiB ({path})"),
        Err(e) => tracing::debug!("cannot set read-ahead ({path}): {e}"),
    }
}

/// How long the kernel may cache attributes and entries: this daemon is the only writer of
/// the backing directory, and revocation invalidates explicitly.
const ATTR_TTL: Duration = Duration::from_secs(5);
/// On a shared volume: the default delay within which other hosts' changes are seen.
const SHARED_ATTR_TTL_MS: u64 = 1000;

/// How long the kernel keeps attributes and names: bounded by `shared_timeout_ms` on a shared
/// volume (other hosts change them), `ATTR_TTL` otherwise.
fn attr_ttl(volume: &Volume, s: &MountSettings) -> Duration {
    if !volume.shared() {
        return ATTR_TTL;
    }
    if s.options.writeback_cache {
        tracing::warn!(
            "writeback_cache is off on a shared volume (other hosts would not see cached writes)"
        );
    }
    Duration::from_millis(s.options.shared_timeout_ms.unwrap_or(SHARED_ATTR_TTL_MS))
}

/// Removes the runtime files of a mount when the daemon stops.
struct RuntimeFiles {
    pid: std::path::PathBuf,
}

impl Drop for RuntimeFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid);
    }
}

fn status_line(volume: &Volume, stats: &FsStats) -> String {
    let c = volume.keys().cache().stats();
    let keys = match (volume.keys().cmk(), volume.keys().revoked_reason()) {
        (None, _) => "service-managed key ok".to_string(),
        (Some(c), None) => format!("customer-managed key {} ok", c.key_url()),
        (Some(c), Some(r)) => format!("customer-managed key {} REVOKED ({r})", c.key_url()),
    };
    format!(
        "STATUS=mounted; keys: {keys}; cache {} keys ({} hits, {} misses); {} open files",
        c.entries,
        c.hits,
        c.misses,
        stats.open_files.load(Ordering::Relaxed)
    )
}

/// The signals that unmount and stop the daemon; blocked in every thread, taken by sigwait.
pub(crate) fn stop_signals() -> SigSet {
    SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP])
}

/// Returns early with `Err(msg)`, telling the starting process why first.
macro_rules! or_report {
    ($ready:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(msg) => {
                let msg: String = msg;
                $ready.failed(&msg);
                return Err(msg);
            }
        }
    };
}

fn serve(volume: Volume, s: &MountSettings, mut ready: ReadyPipe) -> Result<(), String> {
    harden_process();
    fips::warn_on_legacy_names(&volume.config().name_cipher);
    let signals = stop_signals();
    let volume = Arc::new(volume);
    let ttl = attr_ttl(&volume, s);
    let stats = Arc::new(FsStats::default());
    let fs = or_report!(
        ready,
        CmkFs::new(volume.clone(), ttl, stats.clone())
            .map(|f| f.with_writeback_cache(s.options.writeback_cache && !volume.shared()))
            .map(|f| f.with_posix_acl(s.options.default_permissions))
            .map_err(|e| format!("cannot open the volume root: {e}"))
    );
    let inode_handle = fs.inode_handle();
    let events = Arc::new(KeyEvents {
        volume: volume.clone(),
        kernel: std::sync::OnceLock::new(),
    });
    let watcher = RevocationWatcher::new(volume.keys_arc(), events.clone());
    let mut session = or_report!(
        ready,
        Session::new(fs, &s.mountpoint, &fuse_config(s)).map_err(|e| format!(
            "cannot mount {} on {}: {e}",
            s.backing.display(),
            s.mountpoint.display()
        ))
    );
    let _ = events
        .kernel
        .set(KernelCaches::new(session.notifier(), inode_handle));
    // Always: a key scope with its own customer-managed key can be made at any time.
    or_report!(
        ready,
        watcher
            .spawn(s.revocation_check_interval)
            .map_err(|e| format!("cannot start the revocation watcher: {e}"))
    );
    if volume.shared() {
        let every = ttl.max(Duration::from_millis(100));
        or_report!(
            ready,
            shared_watch::spawn(volume.clone(), events.clone(), every)
                .map_err(|e| format!("cannot start the key-store watcher: {e}"))
        );
    }
    let _ = std::fs::create_dir_all(runtime_dir());
    let runtime = RuntimeFiles {
        pid: pid_file(&s.mountpoint),
    };
    let _ = crate::atomic_file::write_volatile(
        &runtime.pid,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    );
    let handler = Arc::new(DaemonControl {
        volume: volume.clone(),
        stats: stats.clone(),
        mountpoint: s.mountpoint.clone(),
        name: s.name.clone(),
        started: Instant::now(),
        watcher: watcher.clone(),
        events: events.clone(),
    });
    let aliases = s.name.iter().map(|n| named_socket(n)).collect();
    let control = or_report!(
        ready,
        ControlServer::start(&control_socket(&s.mountpoint), aliases, handler).map_err(
            |e| format!(
                "cannot create the control socket {}: {e}",
                control_socket(&s.mountpoint).display()
            )
        )
    );

    let scrape = Arc::new(ScrapeSource {
        volume: volume.clone(),
        stats: stats.clone(),
        mountpoint: s.mountpoint.clone(),
        started: Instant::now(),
    });
    let mut metrics = Vec::new();
    for endpoint in &s.metrics {
        metrics.push(or_report!(
            ready,
            MetricsServer::start(endpoint, scrape.clone())
                .map_err(|e| format!("cannot serve metrics at {endpoint}: {e}"))
        ));
    }

    let mut unmounter = session.unmount_callable();
    let mountpoint = s.mountpoint.clone();
    let signal_thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                notify("STOPPING=1\nSTATUS=unmounting");
                tracing::info!("received {sig:?}, unmounting {}", mountpoint.display());
                // A file closed just before may still hold the mount until its RELEASE is
                // served: retry briefly before detaching lazily.
                let mut result = unmounter.unmount();
                for _ in 0..40 {
                    match &result {
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                            std::thread::sleep(Duration::from_millis(50));
                            result = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::empty()).map_err(std::io::Error::from);
                        }
                        _ => break,
                    }
                }
                if let Err(e) = result {
                    tracing::warn!("unmount failed ({e}); detaching lazily, open files keep being served until closed");
                    let _ = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"));
    or_report!(ready, signal_thread);

    // Readiness: only once the mount answers a request served by the session loop. The
    // MountStarted record follows the report (its fdatasync is not on the mount command's
    // path); `started` closes once it is written or the mount never served, and MountStopped
    // waits for that, so the two stay in order.
    let mountpoint = s.mountpoint.clone();
    let (vol2, stats2) = (volume.clone(), stats.clone());
    let threads = s.threads;
    let read_ahead_kb = s.options.read_ahead_kb.unwrap_or(1024);
    let audit = volume.keys().audit().clone();
    let started_event = crate::audit::AuditEvent::new(
        crate::audit::AuditOp::MountStarted,
        volume.config().volume_id.clone(),
        crate::audit::AuditResult::Ok,
    )
    .detail(format!(
        "{} on {}; crypto module {}; names {}",
        s.backing.display(),
        s.mountpoint.display(),
        crate::crypto::module_info().summary(),
        volume.config().name_cipher
    ));
    let (started, started_recorded) = std::sync::mpsc::channel::<()>();
    let ready_audit = audit.clone();
    std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || {
            // Read the root through the mount; drop the directory handle before going on.
            let served = std::fs::read_dir(&mountpoint).and_then(|mut d| d.next().transpose().map(|_| ()));
            match served {
                Ok(()) => {
                    set_read_ahead(&mountpoint, read_ahead_kb);
                    tracing::info!(mountpoint = %mountpoint.display(), threads, "mounted and serving");
                    ready.ready();
                    notify(&format!("READY=1\n{}", status_line(&vol2, &stats2)));
                    ready_audit.record(started_event);
                    drop(started);
                    if std::env::var_os("NOTIFY_SOCKET").is_some() {
                        loop {
                            std::thread::sleep(Duration::from_secs(10));
                            notify(&status_line(&vol2, &stats2));
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("the mount at {} does not answer: {e}", mountpoint.display());
                    tracing::error!("{msg}");
                    ready.failed(&msg);
                }
            }
        })
        .map_err(|e| format!("cannot start the readiness thread: {e}"))?;

    let result = session.run();
    // Returns once the ready thread wrote MountStarted or gave up (the sender is gone); the
    // timeout only guards against a readiness check stuck on a dead connection.
    let _ = started_recorded.recv_timeout(Duration::from_secs(10));
    drop(control);
    drop(metrics);
    drop(runtime);
    let flushed = volume.keys().cache().flush();
    audit.flush_denials();
    audit.record(
        crate::audit::AuditEvent::new(
            crate::audit::AuditOp::MountStopped,
            volume.config().volume_id.clone(),
            crate::audit::AuditResult::Ok,
        )
        .detail(format!("{flushed} cached data keys zeroized")),
    );
    tracing::info!(flushed_keys = flushed, "unmounted; data keys zeroized");
    result.map_err(|e| format!("FUSE session ended with an error: {e}"))
}
