//! Host micro-benchmarks of the scheduler's hot paths and the uncontended
//! locks. Prints the median of several runs in ns per operation; asserts
//! nothing about speed.
//!
//! `cargo bench -p sched` (release profile).

use std::hint::black_box;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sched::sync::{Futex, Mutex, SpinLock, WaitResult};
use sched::{CoreScheduler, FutexTable, Priority};

const RUNS: usize = 11;
const ITERS: u64 = 1_000_000;

/// A futex that never sleeps (waits are spurious wake-ups): enough for
/// uncontended measurements, where the futex is never called.
struct SpinFutex;

impl Futex for SpinFutex {
    fn wait(_word: &AtomicU32, _expected: u32, _deadline_ns: Option<u64>) -> WaitResult {
        std::thread::yield_now();
        WaitResult::Woken
    }

    fn wake(_word: &AtomicU32, _n: u32) -> u32 {
        0
    }

    fn now_ns() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Median over `RUNS` runs of `ITERS` calls of `op`, in ns per call.
fn median_ns(mut op: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..ITERS {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / ITERS as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[RUNS / 2]
}

fn report(name: &str, ns: f64) {
    println!("{name:<56} {ns:>8.1} ns");
}

fn scheduler<T: Clone>(tasks: impl IntoIterator<Item = T>) -> CoreScheduler<T> {
    let mut core = CoreScheduler::new();
    for t in tasks {
        core.add_ready(t, Priority::NORMAL);
    }
    core.yield_current(0);
    core
}

fn main() {
    println!("sched micro-benchmarks: median of {RUNS} runs x {ITERS} iterations");

    for n in [2u32, 64] {
        let mut core = scheduler(0..n);
        report(
            &format!("yield_current, {n} tasks (u32 handles)"),
            median_ns(|i| {
                black_box(core.yield_current(i));
            }),
        );
    }

    let mut core = scheduler((0..2).map(Arc::new));
    report(
        "yield_current, 2 tasks (Arc handles)",
        median_ns(|i| {
            black_box(core.yield_current(i));
        }),
    );

    let mut core = scheduler(0..2u32);
    report(
        "block_current + add_ready (2 tasks)",
        median_ns(|i| {
            let (&blocked, prio) = core.current().expect("a task runs");
            black_box(core.block_current(i));
            core.add_ready(blocked, prio);
        }),
    );

    let mut core = scheduler(0..2u32);
    report(
        "sleep_current + wake_sleeper (2 tasks)",
        median_ns(|i| {
            let (key, next) = core.sleep_current(i, i + 1_000).expect("a task runs");
            black_box(next);
            core.wake_sleeper(key);
        }),
    );

    let mut core = scheduler(0..2u32);
    report(
        "sleep_current + tick expiring it (2 tasks)",
        median_ns(|i| {
            let now = 2 * i;
            let (_, next) = core.sleep_current(now, now + 1).expect("a task runs");
            black_box(next);
            black_box(core.tick(now + 1, |t| {
                black_box(t);
            }));
        }),
    );

    let mut table = FutexTable::new();
    report(
        "FutexTable enqueue + wake(1)",
        median_ns(|i| {
            let addr = 0x1000 + ((i as usize) & 7) * 4;
            table.enqueue(addr, i);
            table.wake(addr, 1, &mut |t| {
                black_box(t);
            });
        }),
    );

    let mutex = Mutex::<SpinFutex, u64>::new(0);
    report(
        "Mutex lock + unlock, uncontended",
        median_ns(|_| {
            *black_box(&mutex).lock() += 1;
        }),
    );

    let spin = SpinLock::new(0u64);
    report(
        "SpinLock lock + unlock, uncontended",
        median_ns(|_| {
            *black_box(&spin).lock() += 1;
        }),
    );

    let std_mutex = std::sync::Mutex::new(0u64);
    report(
        "std::sync::Mutex lock + unlock, uncontended (reference)",
        median_ns(|_| {
            *black_box(&std_mutex).lock().expect("not poisoned") += 1;
        }),
    );
}
