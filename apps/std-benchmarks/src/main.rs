//! The single-threaded benchmarks of `bench-core` (`basic`, `hourglass`,
//! `stream`, `fileio`) as a plain Rust std program, printed as
//! `bench <name> <value> <unit>` lines like `apps/benchmarks`.
//!
//! `apps/benchmarks` is a `no_std` image for `x86_64-unknown-none`, whose
//! `f64` arithmetic is soft float: its STREAM measures library calls, not
//! memory. Built for the stock `x86_64-unknown-hermit` target (SSE
//! floats), this program measures STREAM as a Linux process does:
//!
//! ```text
//! cd apps/std-benchmarks && cargo build --release --target x86_64-unknown-hermit
//! target/release/proxy target/x86_64-unknown-hermit/release/std-benchmarks stream
//! ```
//!
//! `hermit-bench all` runs it as `stream-sse` next to the native figures.
//! Exit status 2 for a bad argument, 1 when a benchmark fails.

// On hermit the kernel is a library this binary links.
#[cfg(target_os = "hermit")]
use hermit as _;

use std::fmt;
use std::io::Write as _;

use bench_core::fileio::StdFs;
use bench_core::{Command, Error, Platform};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result =
        Command::parse(args.iter().map(String::as_str)).and_then(|c| bench_core::run::<Std>(&c));
    let status = match result {
        Ok(()) => 0,
        Err(e @ Error::Usage(_)) => {
            eprintln!("std-benchmarks: {e}");
            2
        }
        Err(e) => {
            eprintln!("std-benchmarks: {e}");
            1
        }
    };
    std::process::exit(status);
}

/// Rust std (on hermit: the kernel's `sys_*` calls) as a benchmark platform.
struct Std;

impl Platform for Std {
    const KERNEL_CALL: &'static str = "std::process::id";
    const WRITE_SINK: &'static str = "std::io::sink";
    const MEMORY_NOTE: &'static str = "std-System-allocator";
    const FILE_CALLS: &'static str = "std::fs";
    type Fs = StdFs;

    fn now_ns() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cycles() -> u64 {
        // SAFETY: `rdtsc` only reads the time-stamp counter; neither Linux
        // nor the hermit kernel sets CR4.TSD, so it cannot fault.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn tsc_khz() -> u64 {
        0
    }

    fn kernel_call() -> u64 {
        u64::from(std::process::id())
    }

    fn yield_now() {
        std::thread::yield_now();
    }

    fn write_byte() -> bool {
        std::io::sink().write_all(b"x").is_ok()
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}
