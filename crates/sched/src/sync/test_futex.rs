//! A futex for host tests: one global table of wait tokens behind a std
//! mutex, one std condition variable, deadlines honoured.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Futex, WaitResult};

/// The test [`Futex`].
pub(crate) struct TestFutex;

type Table = HashMap<usize, VecDeque<Arc<AtomicBool>>>;

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
static WAKEUP: Condvar = Condvar::new();

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Futex calls (wait or wake) made by this thread so far.
pub(crate) fn calls() -> u64 {
    CALLS.with(Cell::get)
}

fn count_call() {
    CALLS.with(|c| c.set(c.get() + 1));
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn addr(word: &AtomicU32) -> usize {
    std::ptr::from_ref(word) as usize
}

impl Futex for TestFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) -> WaitResult {
        count_call();
        let mut guard = TABLE.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return WaitResult::ValueChanged;
        }
        let token = Arc::new(AtomicBool::new(false));
        guard
            .get_or_insert_with(HashMap::new)
            .entry(addr(word))
            .or_default()
            .push_back(Arc::clone(&token));
        loop {
            if token.load(Ordering::SeqCst) {
                return WaitResult::Woken;
            }
            match deadline_ns {
                None => guard = WAKEUP.wait(guard).unwrap(),
                Some(deadline) => {
                    let now = Self::now_ns();
                    if now >= deadline {
                        let table = guard.as_mut().unwrap();
                        let queue = table.get_mut(&addr(word)).unwrap();
                        queue.retain(|t| !Arc::ptr_eq(t, &token));
                        if queue.is_empty() {
                            table.remove(&addr(word));
                        }
                        return WaitResult::TimedOut;
                    }
                    guard = WAKEUP
                        .wait_timeout(guard, Duration::from_nanos(deadline - now))
                        .unwrap()
                        .0;
                }
            }
        }
    }

    fn wake(word: &AtomicU32, n: u32) -> u32 {
        count_call();
        let mut guard = TABLE.lock().unwrap();
        let Some(table) = guard.as_mut() else {
            return 0;
        };
        let Some(queue) = table.get_mut(&addr(word)) else {
            return 0;
        };
        let mut woken = 0;
        while woken < n {
            let Some(token) = queue.pop_front() else {
                break;
            };
            token.store(true, Ordering::SeqCst);
            woken += 1;
        }
        if queue.is_empty() {
            table.remove(&addr(word));
        }
        drop(guard);
        if woken > 0 {
            WAKEUP.notify_all();
        }
        woken
    }

    fn now_ns() -> u64 {
        u64::try_from(epoch().elapsed().as_nanos()).unwrap()
    }
}

/// Runs `f` on its own thread and fails the test if it has not finished
/// after two minutes, so a lost wake-up shows up as a failure, not a hung
/// test run. (A deadlock guard, not a speed check.)
pub(crate) fn deadlock_guard<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        // The receiver may be gone after a timeout; nothing to do then.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // `f` panicked: surface its panic.
            match worker.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("worker ended without sending"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("deadlock: the test did not finish within 120 s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_futex_semantics() {
        let word = AtomicU32::new(1);
        assert_eq!(TestFutex::wait(&word, 0, None), WaitResult::ValueChanged);
        let deadline = TestFutex::now_ns() + 5_000_000;
        assert_eq!(
            TestFutex::wait(&word, 1, Some(deadline)),
            WaitResult::TimedOut
        );
        assert!(TestFutex::now_ns() >= deadline);
        assert_eq!(TestFutex::wake(&word, 1), 0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| TestFutex::wait(&word, 1, None));
            while TestFutex::wake(&word, u32::MAX) == 0 {
                std::thread::yield_now();
            }
            assert_eq!(waiter.join().unwrap(), WaitResult::Woken);
        });
    }
}
