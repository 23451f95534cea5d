//! Blocking synchronisation for threads: [`Mutex`], [`Condvar`],
//! [`Semaphore`] (futex-based, sleeping when contended) and [`SpinLock`].

use crate::sched::KernelFutex;

pub use sched::sync::{SpinLock, SpinLockGuard, WaitResult};

/// A mutual-exclusion lock whose waiters sleep.
pub type Mutex<T> = sched::sync::Mutex<KernelFutex, T>;
/// The guard of a [`Mutex`].
pub type MutexGuard<'a, T> = sched::sync::MutexGuard<'a, KernelFutex, T>;
/// A condition variable used with [`Mutex`].
pub type Condvar = sched::sync::Condvar<KernelFutex>;
/// A counting semaphore.
pub type Semaphore = sched::sync::Semaphore<KernelFutex>;
/// A mutex without data, for C-like lock/unlock.
pub type RawMutex = sched::sync::RawMutex<KernelFutex>;

/// Futex operations on a 32-bit word, for runtimes built on hermit.
pub mod futex {
    use core::sync::atomic::AtomicU32;

    use sched::sync::Futex as _;

    use super::{KernelFutex, WaitResult};

    /// Sleeps while `*word == expected`, until woken or until the monotonic
    /// time `deadline_ns` (see [`crate::time::monotonic_ns`]).
    pub fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) -> WaitResult {
        KernelFutex::wait(word, expected, deadline_ns)
    }

    /// Wakes up to `n` threads waiting on `word`; returns how many woke.
    pub fn wake(word: &AtomicU32, n: u32) -> u32 {
        KernelFutex::wake(word, n)
    }
}
