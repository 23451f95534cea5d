//! `hermit-bench native [--cpu N] basic|hourglass|stream|fileio [ARGS...]`: the
//! `bench-core` benchmarks as a native Linux program, the baseline column
//! of `hermit-bench all`.
//!
//! The kernel call is `getpid` through `syscall(2)` (glibc's `getpid()`
//! wrapper has cached the pid in some versions, which would measure no
//! kernel entry at all); the write is `write(2)` of one byte to stderr,
//! which the runner drains like a guest's; memory comes from glibc malloc,
//! which maps large regions lazily (the mmap threshold is pinned at
//! 128 KiB, so that every repetition gets fresh pages); files are
//! `std::fs::File` (one `write(2)`/`read(2)`/`pwrite(2)`/`pread(2)` per
//! call).

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bench_core::fileio::StdFs;
use bench_core::{Command, Platform};

/// Linux with std as a `bench-core` platform.
pub struct LinuxCore;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter, which Linux lets
    // user space read.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC frequency, measured once against the monotonic clock over 50 ms.
fn tsc_khz() -> u64 {
    static KHZ: OnceLock<u64> = OnceLock::new();
    *KHZ.get_or_init(|| {
        let t0 = Instant::now();
        let c0 = rdtsc();
        while t0.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        let c1 = rdtsc();
        let ns = t0.elapsed().as_nanos().max(1);
        u64::try_from(u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns).unwrap_or(0)
    })
}

impl Platform for LinuxCore {
    const KERNEL_CALL: &'static str = "syscall(SYS_getpid)";
    const WRITE_SINK: &'static str = "stderr(write(2))";
    const MEMORY_NOTE: &'static str =
        "glibc-malloc,large-regions-mmap-ed,pages-mapped-on-first-touch";
    const FILE_CALLS: &'static str = "std::fs::File(one-system-call-per-call)";
    type Fs = StdFs;

    fn now_ns() -> u64 {
        u64::try_from(start().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cycles() -> u64 {
        rdtsc()
    }

    fn tsc_khz() -> u64 {
        tsc_khz()
    }

    fn kernel_call() -> u64 {
        // SAFETY: getpid takes no arguments and cannot fail.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        pid as u64
    }

    fn yield_now() {
        // SAFETY: sched_yield takes no arguments.
        unsafe { libc::sched_yield() };
    }

    fn write_byte() -> bool {
        // SAFETY: writes one byte from a static buffer to fd 2.
        let n = unsafe { libc::write(2, b".".as_ptr().cast(), 1) };
        n == 1
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}

/// Runs one `bench-core` benchmark natively: `args` are
/// `[--cpu N] basic|hourglass|stream|fileio [ARGS...]`; `--cpu N` pins the process
/// to the N-th CPU it may use (0-based), as a pinned single-vCPU guest is.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut rest: &[String] = args;
    if rest.first().map(String::as_str) == Some("--cpu") {
        let n: usize = rest
            .get(1)
            .and_then(|v| v.parse().ok())
            .ok_or("--cpu takes a CPU index")?;
        let all =
            crate::native::allowed().map_err(|e| format!("cannot read the CPU affinity: {e}"))?;
        let cpu = *all
            .get(n)
            .ok_or_else(|| format!("--cpu {n}: this process may use {} CPUs", all.len()))?;
        crate::native::pin(&[cpu]).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
        rest = &rest[2..];
    }
    let cmd = Command::parse(rest.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    // A fixed mmap threshold: glibc otherwise raises it after the first
    // large free, and every later first-touch region would come from the
    // already-touched heap instead of fresh pages.
    // SAFETY: mallopt only changes malloc's tuning; no allocation is live
    // that depends on the threshold.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    start();
    let result = bench_core::run::<LinuxCore>(&cmd).map_err(|e| e.to_string());
    // End the line of write-1's dots.
    eprintln!();
    result
}
