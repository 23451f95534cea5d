//! `hermit-bench`: benchmarks that print figures, hermit images under uhyve
//! and QEMU next to native Linux programs.
//!
//! - `hermit-bench boot [--runs N] [--tcg]`: boot time of hello ([`boot`]).
//! - `hermit-bench threads [--runs N] [--cpus N] [--tcg] [-- BENCH ARGS...]`:
//!   thread, futex, mutex and allocator figures ([`threads`]).
//! - `hermit-bench native-threads [--cpus N] [BENCH ARGS...]`: the native
//!   build of the thread benchmarks alone ([`native`]); `threads` runs it.
//! - `hermit-bench all [--quick|--full] [--out DIR] [--runs N] [--tcg]
//!   [--only LIST]`: the whole suite (boot, threads, basic, hourglass,
//!   STREAM, file I/O, netio, footprint) with tables, `results.json` and SVG plots ([`suite`]).
//! - `hermit-bench native [--cpu N] basic|hourglass|stream|fileio [ARGS...]`: the
//!   native build of the `bench-core` benchmarks ([`native_core`]); `all`
//!   runs it.
//! - `hermit-bench isles [--max BYTES] [--runs N]`: iRCCE ping-pong between
//!   two isles next to two Linux processes ([`isles`]);
//!   `native-pingpong` is one Linux UE of it.
//! - `hermit-bench uhyve-exits [--mount HOST:GUEST] IMAGE [ARGS...]`: runs
//!   an image under uhyve in this process and prints vCPU 0's KVM exit
//!   counters ([`exits`]); `all` uses it for `fileio`.
//!
//! Figures, not pass/fail: speed goals are judged by reading them, never by
//! timed tests.

use std::path::{Path, PathBuf};

mod boot;
mod exits;
mod footprint;
mod isles;
mod native;
mod native_core;
mod netio;
mod suite;
mod svg;
mod threads;

const USAGE: &str = "usage: hermit-bench boot [--runs N] [--tcg]\n       \
    hermit-bench threads [--runs N] [--cpus N] [--tcg] [-- BENCH ARGS...]\n       \
    hermit-bench all [--quick|--full] [--out DIR] [--runs N] [--tcg] [--only LIST]\n       \
    hermit-bench native-threads [--cpus N] [BENCH ARGS...]\n       \
    hermit-bench native [--cpu N] basic|hourglass|stream|fileio [ARGS...]\n       \
    hermit-bench isles [--max BYTES] [--runs N]\n       \
    hermit-bench uhyve-exits [--mount HOST:GUEST] IMAGE [ARGS...]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("boot") => boot_main(rest),
        Some("threads") => threads::main(rest).map_err(|e| e.to_string()),
        Some("native-threads") => native::main(rest),
        Some("all") => suite::main(rest).map_err(|e| e.to_string()),
        Some("native") => native_core::main(rest),
        Some("isles") => isles::main(rest),
        Some("native-pingpong") => isles::native_pingpong(rest),
        Some("uhyve-exits") => match exits::main(rest) {
            Ok(status) => std::process::exit(status),
            Err(e) => Err(e.to_string()),
        },
        _ => Err(USAGE.into()),
    };
    if let Err(e) = result {
        fail(&e);
    }
}

fn boot_main(args: &[String]) -> Result<(), String> {
    let mut runs = 20usize;
    let mut tcg = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs takes a positive number")?
            }
            "--tcg" => tcg = true,
            _ => return Err(USAGE.into()),
        }
    }
    boot::boot(runs, tcg)
}

fn fail(message: &str) -> ! {
    eprintln!("hermit-bench: {message}");
    std::process::exit(2)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else the workspace's).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
