//! A counting semaphore on a futex word.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{Futex, WaitResult, deadline_after};

/// The error of [`Semaphore::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreError {
    /// The count is already `u32::MAX`.
    Overflow,
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow => f.write_str("semaphore count would exceed u32::MAX"),
        }
    }
}

impl core::error::Error for SemaphoreError {}

/// A counting semaphore. The count is the futex word; a separate count of
/// sleepers lets [`Semaphore::release`] skip the futex wake when nobody sleeps.
pub struct Semaphore<F> {
    count: AtomicU32,
    sleepers: AtomicU32,
    _futex: PhantomData<fn() -> F>,
}

impl<F> fmt::Debug for Semaphore<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl<F: Futex> Semaphore<F> {
    /// A semaphore with `permits` available.
    pub const fn new(permits: u32) -> Self {
        Self {
            count: AtomicU32::new(permits),
            sleepers: AtomicU32::new(0),
            _futex: PhantomData,
        }
    }

    /// Permits available now (a snapshot).
    pub fn available(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is available.
    pub fn try_acquire(&self) -> bool {
        let mut count = self.count.load(Ordering::Relaxed);
        while count > 0 {
            match self.count.compare_exchange_weak(
                count,
                count - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => count = now,
            }
        }
        false
    }

    /// Takes a permit, sleeping until one is available.
    pub fn acquire(&self) {
        self.acquire_inner(None);
    }

    /// Takes a permit unless none becomes available before `deadline_ns`
    /// (monotonic, the futex's clock); returns whether it was taken.
    pub fn acquire_until(&self, deadline_ns: u64) -> bool {
        self.acquire_inner(Some(deadline_ns))
    }

    /// Takes a permit unless none becomes available within `timeout_ns`;
    /// returns whether it was taken.
    pub fn acquire_timeout(&self, timeout_ns: u64) -> bool {
        self.acquire_inner(Some(deadline_after::<F>(timeout_ns)))
    }

    fn acquire_inner(&self, deadline_ns: Option<u64>) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            // SeqCst pairs with `release`: either it sees us as a sleeper and
            // wakes, or our futex wait sees its new count and returns at once.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let result = F::wait(&self.count, 0, deadline_ns);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if result == WaitResult::TimedOut {
                return self.try_acquire();
            }
        }
    }

    /// Returns a permit, waking one sleeper if any.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let mut count = self.count.load(Ordering::Relaxed);
        loop {
            let next = count.checked_add(1).ok_or(SemaphoreError::Overflow)?;
            match self
                .count
                .compare_exchange_weak(count, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => count = now,
            }
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            F::wake(&self.count, 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    use super::*;
    use crate::sync::test_futex::{TestFutex, calls, deadlock_guard};

    type S = Semaphore<TestFutex>;

    #[test]
    fn bound_never_exceeded() {
        deadlock_guard(bound_never_exceeded_body);
    }

    fn bound_never_exceeded_body() {
        const PERMITS: u32 = 3;
        let sem = S::new(PERMITS);
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..2_000 {
                        sem.acquire();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        if i % 16 == 0 {
                            thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        sem.release().unwrap();
                    }
                });
            }
        });
        let max = max.load(Ordering::SeqCst);
        assert!(max <= PERMITS as usize, "{max} holders at once");
        assert!(
            max >= 2,
            "threads never overlapped (max {max}): test proves nothing"
        );
        assert_eq!(sem.available(), PERMITS);
    }

    #[test]
    fn try_acquire_and_overflow() {
        let sem = S::new(1);
        let before = calls();
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        sem.release().unwrap();
        assert_eq!(calls(), before, "no sleeper, so no futex call");
        let full = S::new(u32::MAX);
        assert_eq!(full.release(), Err(SemaphoreError::Overflow));
        assert_eq!(full.available(), u32::MAX);
    }

    #[test]
    fn acquire_timeout_times_out_then_succeeds() {
        deadlock_guard(acquire_timeout_times_out_then_succeeds_body);
    }

    fn acquire_timeout_times_out_then_succeeds_body() {
        let sem = S::new(0);
        let start = TestFutex::now_ns();
        assert!(!sem.acquire_timeout(20_000_000));
        assert!(TestFutex::now_ns() - start >= 20_000_000);
        thread::scope(|s| {
            s.spawn(|| {
                thread::sleep(std::time::Duration::from_millis(10));
                sem.release().unwrap();
            });
            assert!(sem.acquire_timeout(10_000_000_000));
        });
        assert_eq!(sem.available(), 0);
    }
}
