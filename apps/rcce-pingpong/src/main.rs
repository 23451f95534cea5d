//! RCCE ping-pong between two isles (the seed's `RCCE_pingpong`): every
//! isle runs this same image; isle 0 sends messages of doubling size to
//! isle 1, which echoes them, and prints one-way latency and bandwidth per
//! size as `bench <name> <value> <unit>` lines (`bench_core::pingpong`).
//!
//! ```text
//! rcce-pingpong [--max BYTES] [--runs N]
//! ```
//!
//! Only isle 0's arguments matter (it sends the schedule to isle 1).
//! Start it on two isles, e.g. `HERMIT_ISLE=0` and `HERMIT_ISLE=1` with the
//! proxy (uhyve), or two `hermit_qemu` runs sharing one region file. Not
//! started as an isle it prints one line and exits with status 2; a bad
//! argument exits 2, a failed exchange 1.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bench_core::fileio::FileSystem;
use bench_core::{Error, Platform, pingpong};
use hermit::{eprintln, isle, println};

hermit::entry!(main);

/// Two UEs: the pinger and the echo.
const UES: u32 = 2;

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let config = match pingpong::Config::parse(args.iter().copied()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rcce-pingpong: {e}");
            return 2;
        }
    };
    let ue = match isle::ircce(isle::Config::new(UES)) {
        Ok(ue) => ue,
        Err(isle::IsleError::NotAnIsle) => {
            eprintln!("rcce-pingpong: not started as an isle (HERMIT_ISLE=0 and HERMIT_ISLE=1)");
            return 2;
        }
        Err(e) => {
            eprintln!("rcce-pingpong: {e}");
            return 1;
        }
    };
    println!(
        "rcce-pingpong: isle {} of {UES} ({})",
        ue.ue(),
        if isle::has_doorbells() {
            "doorbells"
        } else {
            "polling"
        }
    );
    match pingpong::run::<Hermit, _, _>(&ue, &config) {
        Ok(()) => {
            println!("rcce-pingpong: isle {} done", ue.ue());
            0
        }
        Err(e @ Error::Usage(_)) => {
            eprintln!("rcce-pingpong: {e}");
            2
        }
        Err(e) => {
            eprintln!("rcce-pingpong: {e}");
            1
        }
    }
}

/// The hermit kernel as a benchmark platform (only the clock and printing
/// matter to the ping-pong).
struct Hermit;

impl Platform for Hermit {
    const KERNEL_CALL: &'static str = "hermit::thread::current_id";
    const WRITE_SINK: &'static str = "none";
    const MEMORY_NOTE: &'static str = "heap";
    const FILE_CALLS: &'static str = "none";
    type Fs = NoFiles;

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
        false
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}

/// The ping-pong uses no files.
struct NoFiles;

impl FileSystem for NoFiles {
    type File = ();

    fn create(_: &str) -> Result<(), String> {
        Err("rcce-pingpong has no files".into())
    }

    fn open(_: &str) -> Result<(), String> {
        Err("rcce-pingpong has no files".into())
    }

    fn write(_: &mut (), _: &[u8]) -> Result<usize, String> {
        Err("rcce-pingpong has no files".into())
    }

    fn read(_: &mut (), _: &mut [u8]) -> Result<usize, String> {
        Err("rcce-pingpong has no files".into())
    }

    fn write_at(_: &mut (), _: &[u8], _: u64) -> Result<usize, String> {
        Err("rcce-pingpong has no files".into())
    }

    fn read_at(_: &mut (), _: &mut [u8], _: u64) -> Result<usize, String> {
        Err("rcce-pingpong has no files".into())
    }

    fn remove(_: &str) -> Result<(), String> {
        Err("rcce-pingpong has no files".into())
    }
}
