//! The single-threaded benchmarks of `bench-core` on hermit, printed as
//! `bench <name> <value> <unit>` lines for `hermit-bench all`:
//!
//! ```text
//! benchmarks basic [--reps N] [--iters N] [--touch-mib N] [BENCH...]
//! benchmarks hourglass [--ms N] [--threshold CYCLES]
//! benchmarks stream [--elements N] [--ntimes N]
//! benchmarks fileio DIR [--total-mib N] [--chunk-kib N] [--large-kib N] [--small N] [--reps N]
//! ```
//!
//! `fileio` needs DIR to be a host directory mapped with `HERMIT_MOUNT`
//! (e.g. `HERMIT_MOUNT=/tmp/x:/bench`, DIR `/bench`) to measure host file
//! I/O; on `/tmp` it measures the in-memory file system.
//!
//! Exit status 2 for a bad argument, 1 when a benchmark fails (out of
//! memory, a failed check, a file error). Built without `smp`: one CPU is all these need.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use alloc::string::{String, ToString};
use bench_core::fileio::FileSystem;
use bench_core::{Command, Error, Platform};
use hermit::console::{self, Stream};
use hermit::fs::File;
use hermit::{eprintln, println};

hermit::entry!(main);

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let result = Command::parse(args.iter().copied()).and_then(|c| bench_core::run::<Hermit>(&c));
    match result {
        Ok(()) => 0,
        Err(e @ Error::Usage(_)) => {
            eprintln!("benchmarks: {e}");
            2
        }
        Err(e) => {
            eprintln!("benchmarks: {e}");
            1
        }
    }
}

/// The hermit kernel as a benchmark platform.
struct Hermit;

impl Platform for Hermit {
    const KERNEL_CALL: &'static str = "hermit::thread::current_id";
    const WRITE_SINK: &'static str = "stderr(console-hypercall-or-serial)";
    const MEMORY_NOTE: &'static str = "heap-frames-mapped-at-boot,zeroed-at-allocation";
    const FILE_CALLS: &'static str =
        "hermit::fs(uhyve:polled-call-queue,qemu:one-virtio-console-request-per-call)";
    type Fs = HermitFs;

    fn now_ns() -> u64 {
        hermit::time::monotonic_ns()
    }

    fn cycles() -> u64 {
        // SAFETY: `rdtsc` only reads the time-stamp counter; the kernel
        // leaves CR4.TSD clear, so it cannot fault.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn tsc_khz() -> u64 {
        hermit::time::tsc_khz()
    }

    fn kernel_call() -> u64 {
        u64::from(hermit::thread::current_id())
    }

    fn yield_now() {
        hermit::thread::yield_now();
    }

    fn write_byte() -> bool {
        console::write(Stream::Stderr, b".") == 1
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}

/// `hermit::fs` as the benchmark's files.
struct HermitFs;

impl FileSystem for HermitFs {
    type File = File;

    fn create(path: &str) -> Result<File, String> {
        use hermit::fs::OpenFlags;
        let flags = OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::TRUNC;
        File::open_with(path, flags, 0o644).map_err(|e| e.to_string())
    }

    fn open(path: &str) -> Result<File, String> {
        File::open(path).map_err(|e| e.to_string())
    }

    fn write(file: &mut File, buf: &[u8]) -> Result<usize, String> {
        file.write(buf).map_err(|e| e.to_string())
    }

    fn read(file: &mut File, buf: &mut [u8]) -> Result<usize, String> {
        file.read(buf).map_err(|e| e.to_string())
    }

    fn write_at(file: &mut File, buf: &[u8], offset: u64) -> Result<usize, String> {
        file.write_at(buf, offset).map_err(|e| e.to_string())
    }

    fn read_at(file: &mut File, buf: &mut [u8], offset: u64) -> Result<usize, String> {
        file.read_at(buf, offset).map_err(|e| e.to_string())
    }

    fn remove(path: &str) -> Result<(), String> {
        hermit::fs::remove_file(path).map_err(|e| e.to_string())
    }
}
