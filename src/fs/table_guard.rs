//! Guards on the inode table that know which thread holds it. The space listener (a full
//! disk or statfs wants the removed files the table keeps) runs inside volume calls, some of
//! them made while the request's thread holds the table: such a thread must not wait for it,
//! every other one should, briefly, rather than skip freeing what the caller is waiting for.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::{RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

thread_local! {
    /// How many table guards this thread holds.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// A read or write guard of the inode table, counted for its thread while it lives.
pub(super) struct Held<G>(G);

impl<G> Held<G> {
    pub(super) fn new(guard: G) -> Held<G> {
        HELD.with(|h| h.set(h.get() + 1));
        Held(guard)
    }
}

impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.0
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.0
    }
}

/// How long the space listener waits for a table another thread holds. Requests hold it for
/// microseconds; the bound only keeps a lock-order surprise from turning into a hang.
const WAIT: Duration = Duration::from_secs(2);

/// The table for writing, unless this thread holds it already or it stays busy past [`WAIT`].
pub(super) fn write_unless_held_here<T>(lock: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    if HELD.with(|h| h.get()) > 0 {
        return None;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match lock.try_write() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                tracing::debug!("inode table busy: removed files it keeps are freed later");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_holding_the_table_is_not_made_to_wait_for_it() {
        let lock = RwLock::new(0);
        let g = Held::new(lock.read().unwrap());
        assert!(write_unless_held_here(&lock).is_none());
        drop(g);
        assert!(write_unless_held_here(&lock).is_some());
    }

    #[test]
    fn another_threads_brief_hold_is_waited_for() {
        let lock = std::sync::Arc::new(RwLock::new(0));
        let g = lock.write().unwrap();
        let l2 = lock.clone();
        let t = std::thread::spawn(move || write_unless_held_here(&l2).map(|mut g| *g += 1));
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        assert_eq!(t.join().unwrap(), Some(()));
        assert_eq!(*lock.read().unwrap(), 1);
    }
}
