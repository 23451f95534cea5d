//! A futex condition variable: a sequence counter that notifiers bump.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{Futex, MutexGuard, WaitResult, deadline_after};

/// Waits for a condition protected by a [`Mutex`](super::Mutex).
///
/// A waiter reads the sequence counter while it still holds the mutex,
/// unlocks, and sleeps only if the counter is unchanged; a notifier bumps it
/// (after changing the condition under the mutex) and wakes. So a
/// notification between unlock and sleep is never lost. Wake-ups can be
/// spurious: wait in a loop, or use [`Condvar::wait_while`].
pub struct Condvar<F> {
    seq: AtomicU32,
    _futex: PhantomData<fn() -> F>,
}

impl<F> fmt::Debug for Condvar<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl<F: Futex> Default for Condvar<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Futex> Condvar<F> {
    /// A condition variable nobody waits on.
    pub const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            _futex: PhantomData,
        }
    }

    /// Unlocks `guard`'s mutex, sleeps until notified (or spuriously), and
    /// locks it again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, F, T>) -> MutexGuard<'a, F, T> {
        self.wait_inner(guard, None).0
    }

    /// Like [`Condvar::wait`] with a deadline (monotonic ns of the futex's
    /// clock). The flag is `true` if the wait timed out.
    pub fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, F, T>,
        deadline_ns: u64,
    ) -> (MutexGuard<'a, F, T>, bool) {
        self.wait_inner(guard, Some(deadline_ns))
    }

    /// Like [`Condvar::wait`] for at most `timeout_ns` nanoseconds. The flag
    /// is `true` if the wait timed out.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, F, T>,
        timeout_ns: u64,
    ) -> (MutexGuard<'a, F, T>, bool) {
        self.wait_inner(guard, Some(deadline_after::<F>(timeout_ns)))
    }

    /// Waits while `condition` holds.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, F, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, F, T> {
        while condition(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Waits while `condition` holds, at most `timeout_ns` nanoseconds in all.
    /// The flag is `true` if it gave up with the condition still holding.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, F, T>,
        timeout_ns: u64,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, F, T>, bool) {
        let deadline = deadline_after::<F>(timeout_ns);
        while condition(&mut guard) {
            let (g, timed_out) = self.wait_until(guard, deadline);
            guard = g;
            if timed_out {
                let still = condition(&mut guard);
                return (guard, still);
            }
        }
        (guard, false)
    }

    fn wait_inner<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, F, T>,
        deadline_ns: Option<u64>,
    ) -> (MutexGuard<'a, F, T>, bool) {
        // Read while the mutex is held: a notifier that changes the condition
        // after we unlock must also bump the counter, and then F::wait sees it.
        let seq = self.seq.load(Ordering::Relaxed);
        let mutex = guard.unlock();
        let result = F::wait(&self.seq, seq, deadline_ns);
        (mutex.lock(), result == WaitResult::TimedOut)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        F::wake(&self.seq, 1);
    }

    /// Wakes all waiters.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        F::wake(&self.seq, u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::thread;

    use super::*;
    use crate::sync::Mutex;
    use crate::sync::test_futex::{TestFutex, deadlock_guard};

    type M<T> = Mutex<TestFutex, T>;
    type C = Condvar<TestFutex>;

    /// A bounded buffer with two condition variables: every item arrives
    /// exactly once and the bound holds.
    #[test]
    fn producer_consumer() {
        deadlock_guard(producer_consumer_body);
    }

    fn producer_consumer_body() {
        const ITEMS: u32 = 5_000;
        const CAP: usize = 4;
        let queue = M::new(VecDeque::new());
        let not_empty = C::new();
        let not_full = C::new();
        let put = |item: Option<u32>| {
            let mut q = not_full.wait_while(queue.lock(), |q| q.len() >= CAP);
            q.push_back(item);
            assert!(q.len() <= CAP);
            drop(q);
            not_empty.notify_one();
        };
        let mut received = thread::scope(|s| {
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        loop {
                            let mut q = not_empty.wait_while(queue.lock(), |q| q.is_empty());
                            let item = q.pop_front().unwrap();
                            drop(q);
                            not_full.notify_one();
                            match item {
                                Some(v) => got.push(v),
                                None => return got,
                            }
                        }
                    })
                })
                .collect();
            let producers: Vec<_> = (0..2u32)
                .map(|p| {
                    s.spawn(move || {
                        for i in 0..ITEMS {
                            put(Some(p * ITEMS + i));
                        }
                    })
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            put(None);
            put(None);
            consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect::<Vec<_>>()
        });
        received.sort_unstable();
        assert_eq!(received, (0..2 * ITEMS).collect::<Vec<_>>());
    }

    #[test]
    fn every_item_delivered_once() {
        deadlock_guard(every_item_delivered_once_body);
    }

    fn every_item_delivered_once_body() {
        const ITEMS: u32 = 20_000;
        let state = M::new((VecDeque::new(), false));
        let cv = C::new();
        let got = thread::scope(|s| {
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        loop {
                            let mut g =
                                cv.wait_while(state.lock(), |(q, done)| q.is_empty() && !*done);
                            match g.0.pop_front() {
                                Some(v) => got.push(v),
                                None => return got,
                            }
                        }
                    })
                })
                .collect();
            for i in 0..ITEMS {
                state.lock().0.push_back(i);
                cv.notify_one();
            }
            state.lock().1 = true;
            cv.notify_all();
            consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect::<Vec<_>>()
        });
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
    }

    #[test]
    fn timeout_reports_timed_out() {
        let m = M::new(false);
        let cv = C::new();
        let start = TestFutex::now_ns();
        let (guard, timed_out) = cv.wait_timeout(m.lock(), 20_000_000);
        assert!(timed_out);
        assert!(TestFutex::now_ns() - start >= 20_000_000);
        drop(guard);
        let (guard, timed_out) = cv.wait_timeout_while(m.lock(), 5_000_000, |ready| !*ready);
        assert!(timed_out && !*guard);
    }

    #[test]
    fn notify_wakes_timed_waiter() {
        deadlock_guard(notify_wakes_timed_waiter_body);
    }

    fn notify_wakes_timed_waiter_body() {
        let m = M::new(false);
        let cv = C::new();
        thread::scope(|s| {
            s.spawn(|| {
                thread::sleep(std::time::Duration::from_millis(10));
                *m.lock() = true;
                cv.notify_all();
            });
            let (guard, timed_out) =
                cv.wait_timeout_while(m.lock(), 10_000_000_000, |ready| !*ready);
            assert!(!timed_out && *guard);
        });
    }
}
