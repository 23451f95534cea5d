//! Thread benchmarks written once and run both as a hermit guest app
//! (`apps/bench-threads`) and as a native Linux program (`hermit-bench
//! native-threads`), so that the two columns of `hermit-bench threads`
//! measure exactly the same code.
//!
//! The benchmarks reach threads, futexes, the mutex, the clock and the
//! console only through [`Platform`]; allocation goes through the global
//! allocator of whoever links this crate. Each benchmark runs a number of
//! repetitions and reports the median, in nanoseconds and in TSC cycles per
//! operation, as lines of the form `bench <name> <value> <unit>` (see
//! [`report`], which also parses them on the host).
//!
//! This crate is not a general benchmark harness: no warm-up heuristics, no
//! outlier rejection beyond the median, no statistics past min/median.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod report;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What a platform (the hermit kernel, or Linux with std) provides to the
/// benchmarks.
pub trait Platform: 'static {
    /// Owns a spawned thread until [`Platform::join`].
    type Handle;
    /// A mutex-protected counter: the platform's ordinary blocking mutex.
    type Counter: Counter;

    /// Monotonic time in nanoseconds.
    fn now_ns() -> u64;
    /// The time-stamp counter (`rdtsc`).
    fn cycles() -> u64;
    /// Number of cores threads may run on.
    fn cores() -> usize;
    /// Starts a thread running `f`, on core `core` if given (0-based).
    fn spawn(core: Option<usize>, f: Box<dyn FnOnce() + Send>) -> Result<Self::Handle, String>;
    /// Waits for a thread started by [`Platform::spawn`].
    fn join(handle: Self::Handle) -> Result<(), String>;
    /// Lets another ready thread on this core run.
    fn yield_now();
    /// Sleeps while `*word == expected`; returns true if the thread really
    /// slept and was woken (false: the value had already changed).
    fn futex_wait(word: &AtomicU32, expected: u32) -> bool;
    /// Wakes up to `n` threads sleeping on `word`.
    fn futex_wake(word: &AtomicU32, n: u32);
    /// Prints one line of output (without its newline).
    fn print(line: fmt::Arguments<'_>);
}

/// A counter behind the platform's blocking mutex.
pub trait Counter: Send + Sync + 'static {
    /// A counter at 0.
    fn new() -> Self;
    /// Locks the mutex, increments the counter, unlocks.
    fn increment(&self);
    /// The counter's value.
    fn get(&self) -> u64;
}

/// Why a benchmark run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A command-line argument was not understood.
    Usage(String),
    /// The platform could not start or join a thread.
    Thread(String),
    /// A benchmark's own consistency check failed (e.g. lost increments).
    Check(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) => write!(f, "usage: {m}"),
            Self::Thread(m) => write!(f, "thread error: {m}"),
            Self::Check(m) => write!(f, "check failed: {m}"),
        }
    }
}

/// The benchmarks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    /// Spawn a thread that returns at once and join it.
    SpawnJoin,
    /// Two threads on core 0 yielding to each other; per yield.
    Yield,
    /// Futex wake to the woken thread running, both threads on core 0.
    FutexSameCore,
    /// Futex wake to the woken thread running, waker on core 1.
    FutexCrossCore,
    /// Lock, increment, unlock with no other thread around.
    MutexUncontended,
    /// One thread per core (at least 2), each doing lock, increment,
    /// unlock; wall time per operation of one thread.
    MutexContended,
    /// Allocate and free 64 bytes, one thread.
    Alloc64,
    /// Allocate and free 4 KiB, one thread.
    Alloc4k,
    /// Allocate and free 64 bytes, one thread per core at once; wall time
    /// per operation of one thread.
    Alloc64Mt,
    /// Allocate and free 4 KiB, one thread per core at once.
    Alloc4kMt,
}

impl Bench {
    /// Every benchmark.
    pub const ALL: [Bench; 10] = [
        Self::SpawnJoin,
        Self::Yield,
        Self::FutexSameCore,
        Self::FutexCrossCore,
        Self::MutexUncontended,
        Self::MutexContended,
        Self::Alloc64,
        Self::Alloc4k,
        Self::Alloc64Mt,
        Self::Alloc4kMt,
    ];

    /// The name used on the command line and in `bench` lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SpawnJoin => "spawn-join",
            Self::Yield => "yield",
            Self::FutexSameCore => "futex-wake-same-core",
            Self::FutexCrossCore => "futex-wake-cross-core",
            Self::MutexUncontended => "mutex-uncontended",
            Self::MutexContended => "mutex-contended",
            Self::Alloc64 => "alloc-64",
            Self::Alloc4k => "alloc-4k",
            Self::Alloc64Mt => "alloc-64-mt",
            Self::Alloc4kMt => "alloc-4k-mt",
        }
    }

    /// Looks a benchmark up by name.
    pub fn from_name(name: &str) -> Option<Bench> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Operations per repetition when `--iters` is not given: small enough
    /// for a guest whose kernel code is emulated instruction by instruction
    /// (`HERMIT_NATIVE=0` on the development host).
    pub const fn default_iters(self) -> u32 {
        match self {
            Self::SpawnJoin => 100,
            Self::Yield => 500,
            Self::FutexSameCore | Self::FutexCrossCore => 100,
            Self::MutexUncontended => 2000,
            Self::MutexContended => 500,
            Self::Alloc64 | Self::Alloc4k | Self::Alloc64Mt | Self::Alloc4kMt => 500,
        }
    }

    /// Cores the benchmark needs.
    pub const fn min_cores(self) -> usize {
        match self {
            Self::FutexCrossCore => 2,
            _ => 1,
        }
    }
}

/// Parsed command line of the benchmark program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Repetitions per benchmark (the median is reported).
    pub reps: u32,
    /// Operations per repetition; `None`: each benchmark's default.
    pub iters: Option<u32>,
    /// Benchmarks to run, in order.
    pub benches: Vec<Bench>,
}

/// The argument syntax, for messages.
pub const USAGE: &str = "[--reps N] [--iters N] [BENCH...] (no BENCH or `all`: every benchmark)";

impl Config {
    /// Parses the arguments after the program name.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut cfg = Config {
            reps: 5,
            iters: None,
            benches: Vec::new(),
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let number = |v: Option<&str>| {
                v.and_then(|v| v.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::Usage(alloc::format!("{arg} takes a positive number")))
            };
            match arg {
                "--reps" => cfg.reps = number(it.next())?,
                "--iters" => cfg.iters = Some(number(it.next())?),
                "all" => cfg.benches.extend(Bench::ALL),
                name => match Bench::from_name(name) {
                    Some(b) => cfg.benches.push(b),
                    None => {
                        return Err(Error::Usage(alloc::format!(
                            "unknown benchmark {name:?}; {USAGE}"
                        )));
                    }
                },
            }
        }
        if cfg.benches.is_empty() {
            cfg.benches.extend(Bench::ALL);
        }
        Ok(cfg)
    }
}

/// A point in time on both clocks.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    ns: u64,
    cycles: u64,
}

impl Stamp {
    fn now<P: Platform>() -> Self {
        Stamp {
            ns: P::now_ns(),
            cycles: P::cycles(),
        }
    }
}

/// One measurement: cost per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerOp {
    /// Nanoseconds per operation.
    pub ns: f64,
    /// TSC cycles per operation.
    pub cycles: f64,
}

impl PerOp {
    fn between(start: Stamp, end: Stamp, ops: u64) -> Self {
        let ops = ops.max(1) as f64;
        PerOp {
            ns: end.ns.saturating_sub(start.ns) as f64 / ops,
            cycles: end.cycles.saturating_sub(start.cycles) as f64 / ops,
        }
    }
}

/// The median of `values` (upper median for an even count); 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs the benchmarks of `cfg`, printing `bench` lines through
/// [`Platform::print`]; stops at the first failure.
pub fn run<P: Platform>(cfg: &Config) -> Result<(), Error> {
    let cores = P::cores();
    P::print(format_args!(
        "{}",
        report::Line::Info(alloc::format!("cores={cores} reps={}", cfg.reps))
    ));
    for &bench in &cfg.benches {
        if cores < bench.min_cores() {
            let reason = alloc::format!("needs {} cores, have {cores}", bench.min_cores());
            P::print(format_args!(
                "{}",
                report::Line::Skip {
                    name: bench.name().into(),
                    reason
                }
            ));
            continue;
        }
        let iters = cfg.iters.unwrap_or(bench.default_iters());
        let mut ns = Vec::new();
        let mut cycles = Vec::new();
        for _ in 0..cfg.reps {
            let r = run_one::<P>(bench, iters, cores)?;
            ns.push(r.ns);
            cycles.push(r.cycles);
        }
        for (value, unit) in [(median(&mut ns), "ns"), (median(&mut cycles), "cycles")] {
            P::print(format_args!(
                "{}",
                report::Line::Bench {
                    name: bench.name().into(),
                    value,
                    unit: unit.into()
                }
            ));
        }
    }
    Ok(())
}

/// One repetition of `bench` with `iters` operations.
pub fn run_one<P: Platform>(bench: Bench, iters: u32, cores: usize) -> Result<PerOp, Error> {
    let threads = cores.max(2);
    match bench {
        Bench::SpawnJoin => spawn_join::<P>(iters),
        Bench::Yield => yield_pingpong::<P>(iters),
        Bench::FutexSameCore => futex_wake::<P>(iters, 0),
        Bench::FutexCrossCore => futex_wake::<P>(iters, 1),
        Bench::MutexUncontended => mutex_uncontended::<P>(iters),
        Bench::MutexContended => mutex_contended::<P>(iters, threads),
        Bench::Alloc64 => Ok(alloc_free::<P>(iters, 64)),
        Bench::Alloc4k => Ok(alloc_free::<P>(iters, 4096)),
        Bench::Alloc64Mt => alloc_parallel::<P>(iters, 64, cores),
        Bench::Alloc4kMt => alloc_parallel::<P>(iters, 4096, cores),
    }
}

fn spawn<P: Platform>(
    core: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<P::Handle, Error> {
    P::spawn(core, Box::new(f)).map_err(Error::Thread)
}

fn join<P: Platform>(h: P::Handle) -> Result<(), Error> {
    P::join(h).map_err(Error::Thread)
}

fn spawn_join<P: Platform>(iters: u32) -> Result<PerOp, Error> {
    let start = Stamp::now::<P>();
    for _ in 0..iters {
        let h = spawn::<P>(None, || {})?;
        join::<P>(h)?;
    }
    Ok(PerOp::between(start, Stamp::now::<P>(), iters.into()))
}

/// Start and end stamps of the threads of one repetition.
#[derive(Default)]
struct Span {
    start_ns: AtomicU64,
    start_cycles: AtomicU64,
    end_ns: AtomicU64,
    end_cycles: AtomicU64,
}

impl Span {
    fn new() -> Self {
        Span {
            start_ns: AtomicU64::new(u64::MAX),
            start_cycles: AtomicU64::new(u64::MAX),
            ..Default::default()
        }
    }

    fn started(&self, s: Stamp) {
        self.start_ns.fetch_min(s.ns, Ordering::Relaxed);
        self.start_cycles.fetch_min(s.cycles, Ordering::Relaxed);
    }

    fn ended(&self, s: Stamp) {
        self.end_ns.fetch_max(s.ns, Ordering::Relaxed);
        self.end_cycles.fetch_max(s.cycles, Ordering::Relaxed);
    }

    /// From the first thread's start to the last one's end, per `ops`.
    fn per_op(&self, ops: u64) -> PerOp {
        let start = Stamp {
            ns: self.start_ns.load(Ordering::Relaxed),
            cycles: self.start_cycles.load(Ordering::Relaxed),
        };
        let end = Stamp {
            ns: self.end_ns.load(Ordering::Relaxed),
            cycles: self.end_cycles.load(Ordering::Relaxed),
        };
        PerOp::between(start, end, ops)
    }
}

/// Runs `body` on `n` threads (on `core` if given, else anywhere) that
/// start together: each waits, yielding, until all have arrived, then
/// stamps its start and runs. Returns the span of all of them.
fn together<P: Platform>(
    n: usize,
    core: Option<usize>,
    body: impl Fn() + Send + Sync + 'static,
) -> Result<Arc<Span>, Error> {
    let span = Arc::new(Span::new());
    let arrived = Arc::new(AtomicU32::new(0));
    let body = Arc::new(body);
    let total = u32::try_from(n).unwrap_or(u32::MAX);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (span, arrived, body) = (span.clone(), arrived.clone(), body.clone());
        handles.push(spawn::<P>(core, move || {
            arrived.fetch_add(1, Ordering::SeqCst);
            while arrived.load(Ordering::SeqCst) < total {
                P::yield_now();
            }
            span.started(Stamp::now::<P>());
            body();
            span.ended(Stamp::now::<P>());
        })?);
    }
    for h in handles {
        join::<P>(h)?;
    }
    Ok(span)
}

fn yield_pingpong<P: Platform>(iters: u32) -> Result<PerOp, Error> {
    let span = together::<P>(2, Some(0), move || {
        for _ in 0..iters {
            P::yield_now();
        }
    })?;
    Ok(span.per_op(2 * u64::from(iters)))
}

/// Shared state of the futex wake benchmark.
struct FutexPair {
    /// The waiter sleeps on it until it reaches the round number.
    word: AtomicU32,
    /// The last round the waiter has finished.
    ack: AtomicU32,
    /// When the waker stored the round number (just before waking).
    sent_ns: AtomicU64,
    sent_cycles: AtomicU64,
    /// Median wake-to-run latency the waiter measured.
    result_ns: AtomicU64,
    result_cycles: AtomicU64,
    /// Rounds in which the waiter really slept (only those are measured).
    slept: AtomicU32,
}

/// The waiter (on core 0) sleeps on a futex; the waker (on `waker_core`)
/// stamps the time, stores and wakes. The waiter stamps when it runs again.
/// Only rounds in which the waiter really slept count: before each round
/// the waker lets the waiter reach its sleep (by yielding when they share a
/// core, by waiting a little on its own core).
fn futex_wake<P: Platform>(iters: u32, waker_core: usize) -> Result<PerOp, Error> {
    let pair = Arc::new(FutexPair {
        word: AtomicU32::new(0),
        ack: AtomicU32::new(0),
        sent_ns: AtomicU64::new(0),
        sent_cycles: AtomicU64::new(0),
        result_ns: AtomicU64::new(0),
        result_cycles: AtomicU64::new(0),
        slept: AtomicU32::new(0),
    });
    let waiter = {
        let pair = pair.clone();
        spawn::<P>(Some(0), move || {
            let mut ns = Vec::with_capacity(iters as usize);
            let mut cycles = Vec::with_capacity(iters as usize);
            for round in 1..=iters {
                let mut slept = false;
                while pair.word.load(Ordering::Acquire) != round {
                    slept |= P::futex_wait(&pair.word, round - 1);
                }
                let now = Stamp::now::<P>();
                if slept {
                    let sent_ns = pair.sent_ns.load(Ordering::Relaxed);
                    let sent_cycles = pair.sent_cycles.load(Ordering::Relaxed);
                    ns.push(now.ns.saturating_sub(sent_ns) as f64);
                    cycles.push(now.cycles.saturating_sub(sent_cycles) as f64);
                    pair.slept.fetch_add(1, Ordering::Relaxed);
                }
                pair.ack.store(round, Ordering::Release);
                P::futex_wake(&pair.ack, 1);
            }
            pair.result_ns
                .store(median(&mut ns) as u64, Ordering::Relaxed);
            pair.result_cycles
                .store(median(&mut cycles) as u64, Ordering::Relaxed);
        })?
    };
    let waker = {
        let pair = pair.clone();
        spawn::<P>(Some(waker_core), move || {
            let mut gap_ns = 10_000u64;
            for round in 1..=iters {
                while pair.ack.load(Ordering::Acquire) != round - 1 {
                    P::futex_wait(&pair.ack, pair.ack.load(Ordering::Acquire));
                }
                if waker_core == 0 {
                    P::yield_now();
                } else {
                    let until = P::now_ns().saturating_add(gap_ns);
                    while P::now_ns() < until {
                        core::hint::spin_loop();
                    }
                }
                let s = Stamp::now::<P>();
                pair.sent_ns.store(s.ns, Ordering::Relaxed);
                pair.sent_cycles.store(s.cycles, Ordering::Relaxed);
                pair.word.store(round, Ordering::Release);
                P::futex_wake(&pair.word, 1);
                // Give the next round room for the waiter to fall asleep:
                // a few times what the last round took.
                gap_ns = gap_ns.max((P::now_ns().saturating_sub(s.ns)).saturating_mul(4));
            }
        })?
    };
    join::<P>(waker)?;
    join::<P>(waiter)?;
    if pair.slept.load(Ordering::Relaxed) == 0 {
        return Err(Error::Check(
            "futex wake: the waiter never slept, nothing was measured".into(),
        ));
    }
    Ok(PerOp {
        ns: pair.result_ns.load(Ordering::Relaxed) as f64,
        cycles: pair.result_cycles.load(Ordering::Relaxed) as f64,
    })
}

fn mutex_uncontended<P: Platform>(iters: u32) -> Result<PerOp, Error> {
    let counter = P::Counter::new();
    let start = Stamp::now::<P>();
    for _ in 0..iters {
        black_box(&counter).increment();
    }
    let end = Stamp::now::<P>();
    check_count(counter.get(), u64::from(iters))?;
    Ok(PerOp::between(start, end, iters.into()))
}

fn mutex_contended<P: Platform>(iters: u32, threads: usize) -> Result<PerOp, Error> {
    let counter = Arc::new(P::Counter::new());
    let c = counter.clone();
    let span = together::<P>(threads, None, move || {
        for _ in 0..iters {
            c.increment();
        }
    })?;
    check_count(counter.get(), u64::from(iters) * threads as u64)?;
    Ok(span.per_op(iters.into()))
}

fn check_count(got: u64, want: u64) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Check(alloc::format!(
            "mutex counter is {got}, expected {want}: increments were lost"
        )))
    }
}

/// Allocates and frees `size` bytes `iters` times (never touching them,
/// so the figure is the allocator's alone).
fn alloc_loop(iters: u32, size: usize) {
    for _ in 0..iters {
        let v: Vec<u8> = Vec::with_capacity(black_box(size));
        black_box(v.as_ptr());
        drop(black_box(v));
    }
}

fn alloc_free<P: Platform>(iters: u32, size: usize) -> PerOp {
    let start = Stamp::now::<P>();
    alloc_loop(iters, size);
    PerOp::between(start, Stamp::now::<P>(), iters.into())
}

fn alloc_parallel<P: Platform>(iters: u32, size: usize, threads: usize) -> Result<PerOp, Error> {
    let span = together::<P>(threads, None, move || alloc_loop(iters, size))?;
    Ok(span.per_op(iters.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A std platform with a yielding fake futex: enough to run every
    /// benchmark on the host and check what it prints.
    struct Fake;

    static OUT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct FakeCounter(Mutex<u64>);

    impl Counter for FakeCounter {
        fn new() -> Self {
            FakeCounter(Mutex::new(0))
        }
        fn increment(&self) {
            *self.0.lock().expect("poisoned") += 1;
        }
        fn get(&self) -> u64 {
            *self.0.lock().expect("poisoned")
        }
    }

    impl Platform for Fake {
        type Handle = std::thread::JoinHandle<()>;
        type Counter = FakeCounter;
        fn now_ns() -> u64 {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as u64
        }
        fn cycles() -> u64 {
            Self::now_ns() * 3
        }
        fn cores() -> usize {
            2
        }
        fn spawn(
            _core: Option<usize>,
            f: Box<dyn FnOnce() + Send>,
        ) -> Result<Self::Handle, String> {
            std::thread::Builder::new()
                .spawn(f)
                .map_err(|e| e.to_string())
        }
        fn join(handle: Self::Handle) -> Result<(), String> {
            handle.join().map_err(|_| "panicked".to_string())
        }
        fn yield_now() {
            std::thread::yield_now();
        }
        fn futex_wait(word: &AtomicU32, expected: u32) -> bool {
            if word.load(Ordering::SeqCst) != expected {
                return false;
            }
            while word.load(Ordering::SeqCst) == expected {
                std::thread::yield_now();
            }
            true
        }
        fn futex_wake(_word: &AtomicU32, _n: u32) {}
        fn print(line: fmt::Arguments<'_>) {
            OUT.lock().expect("poisoned").push(line.to_string());
        }
    }

    #[test]
    fn config_parses_names_and_numbers() {
        let c = Config::parse(["--reps", "3", "yield", "--iters", "7", "alloc-4k"]).unwrap();
        assert_eq!(c.reps, 3);
        assert_eq!(c.iters, Some(7));
        assert_eq!(c.benches, vec![Bench::Yield, Bench::Alloc4k]);
        assert_eq!(Config::parse([]).unwrap().benches, Bench::ALL.to_vec());
        assert_eq!(Config::parse(["all"]).unwrap().benches, Bench::ALL.to_vec());
        assert!(matches!(Config::parse(["nope"]), Err(Error::Usage(_))));
        assert!(matches!(
            Config::parse(["--reps", "0"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(Config::parse(["--iters"]), Err(Error::Usage(_))));
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for b in Bench::ALL {
            assert_eq!(Bench::from_name(b.name()), Some(b));
            assert!(!b.name().contains(' '));
        }
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&mut [4.0, 1.0]), 4.0);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn every_benchmark_prints_both_units() {
        let cfg = Config::parse(["--reps", "2", "--iters", "20"]).unwrap();
        run::<Fake>(&cfg).unwrap();
        let out = OUT.lock().unwrap().clone();
        assert_eq!(out[0], "info cores=2 reps=2");
        for b in Bench::ALL {
            for unit in ["ns", "cycles"] {
                let found = out.iter().filter_map(|l| report::Line::parse(l)).any(|l| {
                    matches!(&l, report::Line::Bench { name, unit: u, value }
                        if name == b.name() && u == unit && *value >= 0.0)
                });
                assert!(found, "no {unit} line for {}: {out:?}", b.name());
            }
        }
    }
}
