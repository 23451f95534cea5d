//! A test-and-test-and-set spin lock.

// The data cell needs `unsafe` to hand out references; it is confined to the
// guard's Deref impls and the Sync impl below.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crossbeam_utils::Backoff;

/// A spin lock without data, locked and unlocked by hand.
///
/// Waiters spin on a plain load (no cache-line ping-pong) with exponential
/// backoff and retry the swap only when the lock looks free. It never
/// sleeps, so it suits short sections such as the scheduler's own state; the
/// kernel disables interrupts around it where a handler may take it too.
#[derive(Debug, Default)]
pub struct RawSpinLock {
    locked: AtomicBool,
}

impl RawSpinLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        !self.locked.load(Ordering::Relaxed) && !self.locked.swap(true, Ordering::Acquire)
    }

    /// Takes the lock, spinning while it is held.
    #[inline]
    pub fn lock(&self) {
        while self.locked.swap(true, Ordering::Acquire) {
            let backoff = Backoff::new();
            while self.locked.load(Ordering::Relaxed) {
                backoff.snooze();
            }
        }
    }

    /// Releases the lock. Calling this without holding it breaks the caller's
    /// mutual exclusion (not this crate's memory safety: a [`SpinLock`] never
    /// exposes its raw lock).
    #[inline]
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Whether the lock is held (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// Mutual exclusion around a `T` by spinning.
pub struct SpinLock<T: ?Sized> {
    raw: RawSpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: only the holder of `raw` reaches `data` (through a guard), so
// sharing the lock only moves `T` between threads: `T: Send` suffices.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            raw: RawSpinLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> SpinLock<T> {
    /// Locks, spinning while another holder has the lock.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        self.raw.lock();
        SpinLockGuard::new(self)
    }

    /// Locks if the lock is free.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        self.raw.try_lock().then(|| SpinLockGuard::new(self))
    }

    /// The data through an exclusive reference (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether the lock is held (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SpinLock");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Access to a [`SpinLock`]'s data; unlocks when dropped. `Send`/`Sync`
/// follow `&mut T`, as for [`MutexGuard`](super::MutexGuard).
pub struct SpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
    _data: PhantomData<&'a mut T>,
}

impl<'a, T: ?Sized> SpinLockGuard<'a, T> {
    fn new(lock: &'a SpinLock<T>) -> Self {
        Self {
            lock,
            _data: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a guard exists only while its holder owns the lock, so no
        // `&mut T` exists elsewhere; the borrow is tied to the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference derived from this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SpinLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::thread;

    use super::*;
    use crate::sync::test_futex::deadlock_guard;

    #[test]
    fn exclusion_under_contention() {
        deadlock_guard(exclusion_under_contention_body);
    }

    fn exclusion_under_contention_body() {
        const THREADS: u64 = 4;
        const ITERS: u64 = 20_000;
        let lock = SpinLock::new(Cell::new(0u64));
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for i in 0..ITERS {
                        let guard = lock.lock();
                        let v = guard.get();
                        if i % 256 == 0 {
                            thread::yield_now();
                        }
                        guard.set(v + 1);
                    }
                });
            }
        });
        assert_eq!(lock.into_inner().get(), THREADS * ITERS);
    }

    #[test]
    fn try_lock_fails_while_held() {
        let lock = SpinLock::new(5);
        let guard = lock.lock();
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        thread::scope(|s| {
            s.spawn(|| assert!(lock.try_lock().is_none()));
        });
        drop(guard);
        assert_eq!(*lock.try_lock().unwrap(), 5);
        assert!(!lock.is_locked());
    }
}
