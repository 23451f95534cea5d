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

use alloc::vec::Vec;
use core::fmt;

use bench_core::{Error, pingpong};
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

/// The hermit kernel's clock and console, all the ping-pong needs.
struct Hermit;

impl pingpong::Host for Hermit {
    fn now_ns() -> u64 {
        hermit::time::monotonic_ns()
    }

    fn print(line: fmt::Arguments<'_>) {
        println!("{line}");
    }
}
