//! Doorbells between UEs or isles: the [`Notify`] trait, a pure-polling
//! fallback and (feature `std`) a Condvar-backed host implementation.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::time::Duration;

/// Rings and waits for doorbells, one per UE (or isle).
///
/// The protocols spin on a flag first and only then announce that they are
/// going to sleep (a flag in the region) and call [`Notify::wait`]; a writer
/// rings the owner's doorbell only when that flag is set, so a busy receiver
/// costs its peers no doorbells. `wait` may return early or spuriously: the
/// callers always re-check their condition, and the timeout bounds the cost
/// of a doorbell that raced the sleep announcement.
pub trait Notify {
    /// Rings the doorbell of `target`.
    fn ring(&self, target: usize);
    /// Blocks `me` until its doorbell rang (consuming it) or about `timeout`
    /// passed; may return spuriously.
    fn wait(&self, me: usize, timeout: Duration);
    /// How many `spin_loop` rounds a waiter polls its condition before it
    /// announces sleep and calls [`Notify::wait`]. Short by default, right
    /// where UEs share cores; longer pays where each UE owns a core and a
    /// doorbell costs much more than the spin (isles on a hypervisor).
    fn spins_before_sleep(&self) -> u32 {
        DEFAULT_SPINS_BEFORE_SLEEP
    }
}

/// [`Notify::spins_before_sleep`]'s default: about 50 µs of `pause`s on
/// the development host.
pub const DEFAULT_SPINS_BEFORE_SLEEP: u32 = 2000;

impl<N: Notify + ?Sized> Notify for &N {
    fn ring(&self, target: usize) {
        (**self).ring(target)
    }
    fn wait(&self, me: usize, timeout: Duration) {
        (**self).wait(me, timeout)
    }
    fn spins_before_sleep(&self) -> u32 {
        (**self).spins_before_sleep()
    }
}

impl<N: Notify + ?Sized> Notify for Arc<N> {
    fn ring(&self, target: usize) {
        (**self).ring(target)
    }
    fn wait(&self, me: usize, timeout: Duration) {
        (**self).wait(me, timeout)
    }
    fn spins_before_sleep(&self) -> u32 {
        (**self).spins_before_sleep()
    }
}

impl<N: Notify + ?Sized> Notify for Box<N> {
    fn ring(&self, target: usize) {
        (**self).ring(target)
    }
    fn wait(&self, me: usize, timeout: Duration) {
        (**self).wait(me, timeout)
    }
    fn spins_before_sleep(&self) -> u32 {
        (**self).spins_before_sleep()
    }
}

/// No doorbells at all: `ring` does nothing and `wait` spins briefly, so
/// every waiter polls. Right when each UE owns a core; wasteful otherwise.
/// Note that a spin is short, so [`crate::header::attach`]'s wait for a
/// concurrent formatter (counted in `wait` calls) lasts milliseconds only.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollNotify;

/// Spin iterations one [`PollNotify::wait`] call lasts.
const POLL_SPINS: u32 = 256;

impl Notify for PollNotify {
    fn ring(&self, _target: usize) {}

    fn wait(&self, _me: usize, _timeout: Duration) {
        for _ in 0..POLL_SPINS {
            core::hint::spin_loop();
        }
    }
}

/// Host doorbells for threads: one eventfd-like pending bit per target behind
/// a mutex and condition variable, so a ring that arrives before the wait is
/// not lost.
#[cfg(any(test, feature = "std"))]
#[derive(Debug)]
pub struct CondvarNotify {
    bells: alloc::vec::Vec<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    rings: core::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "std"))]
impl CondvarNotify {
    /// Doorbells for `targets` UEs or isles.
    pub fn new(targets: usize) -> Self {
        Self {
            bells: (0..targets).map(|_| Default::default()).collect(),
            rings: core::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times any doorbell was rung (to check that busy peers are
    /// not rung needlessly).
    pub fn rings(&self) -> u64 {
        self.rings.load(core::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(any(test, feature = "std"))]
impl Notify for CondvarNotify {
    fn ring(&self, target: usize) {
        self.rings
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        if let Some((pending, bell)) = self.bells.get(target) {
            // A poisoned lock only means another test thread panicked.
            let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
            *pending = true;
            bell.notify_all();
        }
    }

    fn wait(&self, me: usize, timeout: Duration) {
        let Some((pending, bell)) = self.bells.get(me) else {
            return;
        };
        let mut guard = pending.lock().unwrap_or_else(|e| e.into_inner());
        if !*guard {
            guard = bell
                .wait_timeout(guard, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *guard = false;
    }
}
