//! `hermit-bench native-threads [--cpus N] [BENCH ARGS...]`: the
//! `thread-bench` benchmarks as a native Linux program, the baseline column
//! of `hermit-bench threads`.
//!
//! Threads are std threads pinned with `sched_setaffinity` when a benchmark
//! asks for a core; the futex is Linux's (`FUTEX_WAIT_PRIVATE` /
//! `FUTEX_WAKE_PRIVATE`), the mutex `std::sync::Mutex` (itself futex-based),
//! the allocator glibc's malloc.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use thread_bench::{Config, Counter, Platform};

/// Linux with std as a benchmark platform.
pub struct Linux;

/// The CPUs this process may run on, in order; logical core `i` is the
/// `i`-th of them.
fn cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        let cpus = allowed().unwrap_or_default();
        if cpus.is_empty() { vec![0] } else { cpus }
    })
}

/// The CPUs the calling thread may run on now.
pub(crate) fn allowed() -> std::io::Result<Vec<usize>> {
    let set = affinity()?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the size of the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

fn affinity() -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into
    // our local set.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r == 0 {
        Ok(set)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pins the calling thread (pid 0: the caller) to the given CPUs.
pub(crate) fn pin(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU numbers come from sched_getaffinity, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: reads `size_of::<cpu_set_t>()` bytes of our local set.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A counter behind `std::sync::Mutex`.
pub struct StdCounter(Mutex<u64>);

impl Counter for StdCounter {
    fn new() -> Self {
        StdCounter(Mutex::new(0))
    }

    fn increment(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn get(&self) -> u64 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Platform for Linux {
    type Handle = std::thread::JoinHandle<()>;
    type Counter = StdCounter;

    fn now_ns() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cycles() -> u64 {
        // SAFETY: `rdtsc` only reads the time-stamp counter, which Linux
        // lets user space read.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn cores() -> usize {
        cpus().len()
    }

    fn spawn(core: Option<usize>, f: Box<dyn FnOnce() + Send>) -> Result<Self::Handle, String> {
        let cpu = match core {
            Some(i) => Some(
                *cpus()
                    .get(i)
                    .ok_or_else(|| format!("no core {i} (have {})", cpus().len()))?,
            ),
            None => None,
        };
        std::thread::Builder::new()
            .spawn(move || {
                if let Some(cpu) = cpu
                    && let Err(e) = pin(&[cpu])
                {
                    eprintln!("hermit-bench: cannot pin a thread to CPU {cpu}: {e}");
                }
                f();
            })
            .map_err(|e| e.to_string())
    }

    fn join(handle: Self::Handle) -> Result<(), String> {
        handle
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())
    }

    fn yield_now() {
        std::thread::yield_now();
    }

    fn futex_wait(word: &AtomicU32, expected: u32) -> bool {
        // SAFETY: `word` is a live, aligned 32-bit atomic for the whole
        // call; no timeout and no second address are passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                std::ptr::null::<libc::timespec>(),
            )
        };
        // 0: woken (or a spurious wake-up, which the caller's loop absorbs);
        // -1 with EAGAIN: the value had changed, so it never slept.
        r == 0 && word.load(Ordering::Acquire) != expected
    }

    fn futex_wake(word: &AtomicU32, n: u32) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is live.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                n,
            )
        };
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}

/// Runs the benchmarks natively: `args` are `[--cpus N] [BENCH ARGS...]`;
/// `--cpus N` restricts the process to the first N CPUs it may use, like
/// `HERMIT_CPUS` does for a guest.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut rest: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--cpus" {
            let n: usize = it
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or("--cpus takes a positive number")?;
            let all = allowed().map_err(|e| format!("cannot read the CPU affinity: {e}"))?;
            if n > all.len() {
                return Err(format!(
                    "--cpus {n}: this process may use {} CPUs",
                    all.len()
                ));
            }
            pin(&all[..n]).map_err(|e| format!("cannot restrict to {n} CPUs: {e}"))?;
            // Logical cores follow the restricted set from now on: no
            // thread has been started, so `cpus()` is still unread.
        } else {
            rest.push(a);
        }
    }
    let cfg = Config::parse(rest).map_err(|e| e.to_string())?;
    thread_bench::run::<Linux>(&cfg).map_err(|e| e.to_string())
}
