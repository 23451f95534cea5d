//! A futex-based mutex: Drepper's three states (unlocked, locked, contended).

// The data cell needs `unsafe` to hand out references; it is confined to the
// guard's Deref impls and the Sync impl below.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;

use super::Futex;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and someone may sleep on the word: unlock must wake.
const CONTENDED: u32 = 2;

/// How many exponential-backoff rounds a locker spins (about 200 pause
/// instructions in all) before it sleeps on the futex.
const SPIN_ROUNDS: u32 = 8;

/// A lock without data, locked and unlocked by hand (for a C-like API such
/// as pthread mutexes). Uncontended lock and unlock are one atomic operation
/// each and never call the futex.
pub struct RawMutex<F> {
    state: AtomicU32,
    _futex: PhantomData<fn() -> F>,
}

impl<F> fmt::Debug for RawMutex<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl<F: Futex> Default for RawMutex<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Futex> RawMutex<F> {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(UNLOCKED),
            _futex: PhantomData,
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, spinning briefly and then sleeping while it is held.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    /// Takes the lock unless it stays held until `deadline_ns` (monotonic, the
    /// futex's clock); returns whether it was taken.
    pub fn lock_until(&self, deadline_ns: u64) -> bool {
        self.try_lock() || self.lock_slow(Some(deadline_ns))
    }

    #[cold]
    fn lock_contended(&self) {
        self.lock_slow(None);
    }

    fn lock_slow(&self, deadline_ns: Option<u64>) -> bool {
        let backoff = Backoff::new();
        for _ in 0..SPIN_ROUNDS {
            match self.state.load(Ordering::Relaxed) {
                UNLOCKED if self.try_lock() => return true,
                // Others already sleep: queue up behind them rather than spin.
                CONTENDED => break,
                _ => backoff.spin(),
            }
        }
        // From here on the lock is taken in the CONTENDED state, since we
        // cannot know whether other sleepers remain.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            if F::wait(&self.state, CONTENDED, deadline_ns) == super::WaitResult::TimedOut {
                return self
                    .state
                    .compare_exchange(UNLOCKED, CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
            }
        }
        true
    }

    /// Releases the lock, waking one sleeper if there may be any.
    ///
    /// Calling this without holding the lock breaks the mutual exclusion the
    /// caller relies on (it cannot break this crate's memory safety: a
    /// [`Mutex`] never exposes its raw lock).
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            F::wake(&self.state, 1);
        }
    }

    /// Whether the lock is held (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

/// Mutual exclusion around a `T`, sleeping through the [`Futex`] `F` when
/// contended.
pub struct Mutex<F, T: ?Sized> {
    raw: RawMutex<F>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one thread at a time (only
// through a guard that exists while `raw` is held), so sharing the mutex only
// ever moves `T` between threads: `T: Send` suffices, as for std's Mutex.
unsafe impl<F, T: ?Sized + Send> Sync for Mutex<F, T> {}

impl<F: Futex, T> Mutex<F, T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<F: Futex, T: ?Sized> Mutex<F, T> {
    /// Locks, sleeping while another holder has the lock.
    pub fn lock(&self) -> MutexGuard<'_, F, T> {
        self.raw.lock();
        MutexGuard::new(self)
    }

    /// Locks if the lock is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, F, T>> {
        self.raw.try_lock().then(|| MutexGuard::new(self))
    }

    /// Locks unless the lock stays held until `deadline_ns`.
    pub fn lock_until(&self, deadline_ns: u64) -> Option<MutexGuard<'_, F, T>> {
        self.raw
            .lock_until(deadline_ns)
            .then(|| MutexGuard::new(self))
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

impl<F: Futex, T: Default> Default for Mutex<F, T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<F: Futex, T: ?Sized + fmt::Debug> fmt::Debug for Mutex<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
///
/// `PhantomData<&mut T>` makes the guard `Send` only if `T: Send` and `Sync`
/// only if `T: Sync`, as if it were the `&mut T` it stands for.
pub struct MutexGuard<'a, F: Futex, T: ?Sized> {
    mutex: &'a Mutex<F, T>,
    _data: PhantomData<&'a mut T>,
}

impl<'a, F: Futex, T: ?Sized> MutexGuard<'a, F, T> {
    fn new(mutex: &'a Mutex<F, T>) -> Self {
        Self {
            mutex,
            _data: PhantomData,
        }
    }

    /// Unlocks and returns the mutex, so a condition variable can relock it.
    pub(crate) fn unlock(self) -> &'a Mutex<F, T> {
        let mutex = self.mutex;
        drop(self);
        mutex
    }
}

impl<F: Futex, T: ?Sized> Deref for MutexGuard<'_, F, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a guard exists only while its holder owns the lock, so no
        // `&mut T` exists elsewhere; the borrow is tied to the guard.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<F: Futex, T: ?Sized> DerefMut for MutexGuard<'_, F, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference derived from this guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<F: Futex, T: ?Sized> Drop for MutexGuard<'_, F, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

impl<F: Futex, T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::thread;

    use super::*;
    use crate::sync::test_futex::{TestFutex, calls, deadlock_guard};

    /// A counter whose increments are not atomic: a read, a yield point, and a
    /// write, so two unsynchronised holders lose updates.
    struct Racy(Cell<u64>);

    #[test]
    fn mutual_exclusion_under_contention() {
        deadlock_guard(mutual_exclusion_under_contention_body);
    }

    fn mutual_exclusion_under_contention_body() {
        const THREADS: u64 = 8;
        const ITERS: u64 = 10_000;
        let m = Arc::new(Mutex::<TestFutex, _>::new(Racy(Cell::new(0))));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || {
                    for i in 0..ITERS {
                        let guard = m.lock();
                        let v = guard.0.get();
                        if i % 64 == 0 {
                            thread::yield_now();
                        }
                        guard.0.set(v + 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(m.lock().0.get(), THREADS * ITERS);
        assert!(!m.is_locked());
    }

    #[test]
    fn uncontended_makes_no_futex_call() {
        let m = Mutex::<TestFutex, u32>::new(1);
        let before = calls();
        for _ in 0..100 {
            *m.lock() += 1;
        }
        assert_eq!(calls(), before);
        assert_eq!(m.into_inner(), 101);
    }

    #[test]
    fn try_lock_and_timeout() {
        deadlock_guard(try_lock_and_timeout_body);
    }

    fn try_lock_and_timeout_body() {
        let m = Mutex::<TestFutex, u32>::new(0);
        let guard = m.lock();
        assert!(m.try_lock().is_none());
        thread::scope(|s| {
            s.spawn(|| {
                let deadline = TestFutex::now_ns() + 20_000_000;
                assert!(m.lock_until(deadline).is_none());
                assert!(TestFutex::now_ns() >= deadline);
            });
        });
        drop(guard);
        assert!(m.try_lock().is_some());
        let deadline = TestFutex::now_ns() + 1_000_000;
        assert!(m.lock_until(deadline).is_some());
    }

    #[test]
    fn raw_mutex_by_hand() {
        deadlock_guard(raw_mutex_by_hand_body);
    }

    fn raw_mutex_by_hand_body() {
        let raw = Arc::new(RawMutex::<TestFutex>::new());
        raw.lock();
        assert!(!raw.try_lock());
        let r2 = Arc::clone(&raw);
        let t = thread::spawn(move || {
            r2.lock();
            r2.unlock();
        });
        thread::sleep(std::time::Duration::from_millis(10));
        raw.unlock();
        t.join().unwrap();
        assert!(!raw.is_locked());
    }
}
