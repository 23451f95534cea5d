//! The thread benchmarks (`thread-bench`) on hermit: spawn/join, yield,
//! futex wake latency, mutex and allocator figures, printed as
//! `bench <name> <value> <unit>` lines for `hermit-bench threads`.
//!
//! Usage: `bench-threads [--reps N] [--iters N] [BENCH...]`; exit status 2
//! for a bad argument, 1 when a benchmark fails its own check.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::AtomicU32;

use hermit::sync::{Mutex, WaitResult, futex};
use hermit::{eprintln, println, thread};
use thread_bench::{Config, Counter, Error, Platform};

hermit::entry!(main);

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let cfg = match Config::parse(args.iter().copied()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("bench-threads: {e}");
            return 2;
        }
    };
    match thread_bench::run::<Hermit>(&cfg) {
        Ok(()) => 0,
        Err(e @ Error::Usage(_)) => {
            eprintln!("bench-threads: {e}");
            2
        }
        Err(e) => {
            eprintln!("bench-threads: {e}");
            1
        }
    }
}

/// The hermit kernel as a benchmark platform.
struct Hermit;

/// A counter behind `hermit::sync::Mutex`.
struct HermitCounter(Mutex<u64>);

impl Counter for HermitCounter {
    fn new() -> Self {
        HermitCounter(Mutex::new(0))
    }

    fn increment(&self) {
        *self.0.lock() += 1;
    }

    fn get(&self) -> u64 {
        *self.0.lock()
    }
}

impl Platform for Hermit {
    type Handle = thread::JoinHandle<()>;
    type Counter = HermitCounter;

    fn now_ns() -> u64 {
        hermit::time::monotonic_ns()
    }

    fn cycles() -> u64 {
        // SAFETY: `rdtsc` only reads the time-stamp counter; the kernel
        // leaves CR4.TSD clear, so it cannot fault.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn cores() -> usize {
        thread::available_parallelism()
    }

    fn spawn(core: Option<usize>, f: Box<dyn FnOnce() + Send>) -> Result<Self::Handle, String> {
        let builder = match core {
            Some(c) => thread::Builder::new().core(c),
            None => thread::Builder::new(),
        };
        builder.spawn(f).map_err(|e| e.to_string())
    }

    fn join(handle: Self::Handle) -> Result<(), String> {
        handle.join();
        Ok(())
    }

    fn yield_now() {
        thread::yield_now();
    }

    fn futex_wait(word: &AtomicU32, expected: u32) -> bool {
        matches!(futex::wait(word, expected, None), WaitResult::Woken)
    }

    fn futex_wake(word: &AtomicU32, n: u32) {
        futex::wake(word, n);
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}
