//! Deferred release of deleted backing files. When the last name of a file goes, the backing
//! filesystem frees its blocks and inode inside `unlink(2)` (ext4 on our test disk: ~75 µs of
//! the ~80 µs an unlink takes), and a FUSE UNLINK (or a RENAME over a file) would wait for it.
//! Instead the volume holds an `O_PATH` descriptor of the file across the unlink or rename and
//! hands it here: a background thread closes it, and that close does the freeing while the
//! next request is served.
//!
//! Bounded (files and bytes, so at most a fraction of a second of freeing is ever pending), and
//! `drain` waits for everything handed over: the volume drains before statfs, before retrying an
//! operation that found the disk full, and on unmount, so freed space is there wherever that
//! matters. A killed daemon loses nothing: the kernel closes the descriptors and frees the files.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Most files pending at once (also kept under a quarter of the descriptor limit).
const MAX_FILES: usize = 1024;
/// Most bytes pending at once.
const MAX_BYTES: u64 = 256 << 20;

pub(super) struct Reaper {
    shared: Arc<Shared>,
    max_files: usize,
    /// The release thread and the process that started it: started on first use, so a volume
    /// opened before the daemon forks gets its thread in the daemon.
    thread: Mutex<Option<(u32, JoinHandle<()>)>>,
}

struct Shared {
    state: Mutex<State>,
    /// Debug builds only: how long each release is held back (`CMKFS_TEST_RELEASE_DELAY_MS`),
    /// so tests can show that statfs and a full disk wait for pending releases.
    delay: Option<std::time::Duration>,
    /// Signalled when work arrives or on stop.
    work: Condvar,
    /// Signalled when the queue has run empty.
    idle: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(OwnedFd, u64)>,
    /// A descriptor taken off the queue and being closed.
    closing: bool,
    /// Releases announced by a [`ReleaseHold`] and not yet handed over.
    held: usize,
    bytes: u64,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn busy(&self) -> bool {
        !self.queue.is_empty() || self.closing || self.held > 0
    }
}

/// A release on its way: taken where a removed file leaves the place `drain`'s callers look
/// for it (the inode table) and dropped once it is handed over, so that `drain` does not
/// return in between.
pub struct ReleaseHold(Arc<Shared>);

impl Drop for ReleaseHold {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.held = st.held.saturating_sub(1);
        if !st.busy() {
            self.0.idle.notify_all();
        }
    }
}

impl Reaper {
    pub(super) fn new() -> Reaper {
        let fd_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Reaper {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                delay: test_delay(),
                work: Condvar::new(),
                idle: Condvar::new(),
            }),
            max_files: MAX_FILES.min((fd_limit / 4) as usize),
            thread: Mutex::new(None),
        }
    }

    /// Whether this process has a release thread (starting it if needed).
    fn running(&self) -> bool {
        let mut t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        match t.take() {
            Some((owner, h)) if owner == pid => {
                *t = Some((owner, h));
                return true;
            }
            // Started before a fork: that thread does not exist in this process.
            Some((_, h)) => {
                std::mem::forget(h);
                self.shared.lock().closing = false;
            }
            None => {}
        }
        let shared = self.shared.clone();
        match std::thread::Builder::new()
            .name("release".into())
            .spawn(move || release_loop(&shared))
        {
            Ok(h) => {
                *t = Some((pid, h));
                true
            }
            Err(e) => {
                tracing::warn!(
                    "cannot start the release thread ({e}); this delete frees its space at once"
                );
                false
            }
        }
    }

    /// Hands over the last reference to a deleted file of `bytes` allocated bytes; closes it
    /// at once when the release thread is missing or already holds its fill.
    pub(super) fn release(&self, fd: OwnedFd, bytes: u64) {
        if !self.running() {
            return;
        }
        let mut st = self.shared.lock();
        if st.stop || st.queue.len() >= self.max_files || st.bytes + bytes > MAX_BYTES {
            drop(st);
            drop(fd);
            return;
        }
        st.bytes += bytes;
        st.queue.push_back((fd, bytes));
        self.shared.work.notify_one();
    }

    /// Announces a release that is about to be handed over (see [`ReleaseHold`]).
    pub(super) fn hold(&self) -> ReleaseHold {
        self.shared.lock().held += 1;
        ReleaseHold(self.shared.clone())
    }

    /// Waits until every file handed over (or held) is released; returns whether any was
    /// pending.
    pub(super) fn drain(&self) -> bool {
        if !self.shared.lock().queue.is_empty() && !self.running() {
            // No thread to do it: release here.
            let mut st = self.shared.lock();
            st.queue.clear();
            st.bytes = 0;
        }
        let mut st = self.shared.lock();
        let pending = st.busy();
        while st.busy() {
            st = self.shared.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        pending
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        let t = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match t {
            Some((owner, h)) if owner == std::process::id() => {
                let _ = h.join();
            }
            Some((_, h)) => std::mem::forget(h),
            None => {}
        }
    }
}

fn test_delay() -> Option<std::time::Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms = std::env::var("CMKFS_TEST_RELEASE_DELAY_MS").ok()?;
    ms.parse().ok().map(std::time::Duration::from_millis)
}

/// Closes queued descriptors until stopped, finishing the queue first.
fn release_loop(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        let Some((fd, bytes)) = st.queue.pop_front() else {
            if !st.busy() {
                shared.idle.notify_all();
            }
            if st.stop {
                return;
            }
            st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        st.closing = true;
        drop(st);
        if let Some(d) = shared.delay {
            std::thread::sleep(d);
        }
        drop(fd);
        st = shared.lock();
        st.closing = false;
        st.bytes -= bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe's write end to hand over, and a check that it was closed (the read end sees EOF).
    fn pipe() -> (OwnedFd, impl Fn() -> bool) {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            &rx,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        (tx, move || nix::unistd::read(&rx, &mut [0u8; 1]) == Ok(0))
    }

    #[test]
    fn drain_waits_until_every_descriptor_is_closed() {
        let r = Reaper::new();
        assert!(!r.drain(), "nothing was pending");
        let mut closed = Vec::new();
        for _ in 0..50 {
            let (fd, is_closed) = pipe();
            closed.push(is_closed);
            r.release(fd, 4096);
        }
        assert!(r.drain() || closed.iter().all(|c| c()));
        assert!(
            closed.iter().all(|c| c()),
            "a handed-over fd is still open after drain"
        );
        assert_eq!(r.shared.lock().bytes, 0);
    }

    #[test]
    fn drain_waits_for_a_held_release() {
        let r = std::sync::Arc::new(Reaper::new());
        let (fd, is_closed) = pipe();
        let hold = r.hold();
        let r2 = r.clone();
        let drained = std::thread::spawn(move || r2.drain());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !drained.is_finished(),
            "drain returned while a release was held"
        );
        r.release(fd, 4096);
        drop(hold);
        assert!(drained.join().unwrap());
        assert!(is_closed());
    }

    #[test]
    fn over_the_byte_bound_the_release_happens_at_once() {
        let r = Reaper::new();
        let (fd, is_closed) = pipe();
        r.release(fd, MAX_BYTES + 1);
        assert!(is_closed());
        assert!(!r.drain());
    }

    #[test]
    fn drop_releases_what_is_queued() {
        let r = Reaper::new();
        let (fd, is_closed) = pipe();
        r.release(fd, 1);
        drop(r);
        assert!(is_closed());
    }
}
