//! Blocking primitives written once against the [`Futex`] trait.
//!
//! The kernel implements [`Futex`] (wait on a word, wake waiters, read the
//! clock); [`Mutex`], [`Condvar`] and [`Semaphore`] then work unchanged in
//! the kernel, in a pthread layer, and on the host with a fake futex.
//! [`SpinLock`] needs no futex. All fast paths are a single atomic operation
//! and make no futex call.
//!
//! The trait has static methods, so a `Mutex<F, T>` is one `AtomicU32` plus
//! the data: no pointer to a kernel object, and `const fn new`.

mod condvar;
mod mutex;
mod semaphore;
mod spin;
#[cfg(test)]
pub(crate) mod test_futex;

use core::sync::atomic::AtomicU32;

pub use condvar::Condvar;
pub use mutex::{Mutex, MutexGuard, RawMutex};
pub use semaphore::{Semaphore, SemaphoreError};
pub use spin::{RawSpinLock, SpinLock, SpinLockGuard};

/// How a [`Futex::wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// A [`Futex::wake`] on the word woke the waiter (or the wake-up was
    /// spurious: callers always re-check their condition).
    Woken,
    /// The deadline passed.
    TimedOut,
    /// The word did not hold the expected value, so the caller did not sleep.
    ValueChanged,
}

/// What the primitives need from the kernel: futex wait/wake on a 32-bit
/// word, and a monotonic clock.
///
/// Deadlines are absolute (monotonic nanoseconds, the clock of
/// [`Futex::now_ns`]) rather than relative: a primitive that retries after a
/// spurious wake-up passes the same deadline again instead of recomputing a
/// shrinking timeout, and the scheduler's timer queue takes deadlines anyway.
pub trait Futex {
    /// If `word` still holds `expected` (checked atomically with respect to
    /// [`Futex::wake`] on the same word, with a sequentially consistent load),
    /// sleep until woken or until `deadline_ns` passes (`None`: no timeout).
    /// A deadline already past returns [`WaitResult::TimedOut`] at once unless
    /// the value differs.
    fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) -> WaitResult;

    /// Wake up to `n` waiters on `word` (`u32::MAX`: all); returns how many
    /// were woken.
    fn wake(word: &AtomicU32, n: u32) -> u32;

    /// The monotonic clock deadlines refer to, in nanoseconds.
    fn now_ns() -> u64;
}

/// The absolute deadline `timeout_ns` from now.
fn deadline_after<F: Futex>(timeout_ns: u64) -> u64 {
    F::now_ns().saturating_add(timeout_ns)
}
