//! The single-threaded benchmarks of issue 7, written once and run both as a
//! hermit guest app (`apps/benchmarks`) and as a native Linux program
//! (`hermit-bench native`), so that every column of `hermit-bench all`
//! measures the same code:
//!
//! - [`basic`]: the cost of a kernel call, a yield, malloc/free, fresh
//!   zeroed memory and its first touch, a 1-byte write (the seed's
//!   `basic.c`);
//! - [`hourglass`]: gaps in a tight `rdtsc` loop, i.e. OS noise (the seed's
//!   `hg.c`);
//! - [`stream`]: STREAM copy, scale, add and triad bandwidth;
//! - [`fileio`]: sequential file write/read throughput and the cost of one
//!   small file call (issue 4), through [`fileio::FileSystem`];
//! - [`pingpong`]: iRCCE latency and bandwidth between two UEs (issue 8),
//!   between isles or between Linux processes.
//!
//! Everything platform-specific (clocks, the kernel entry, yield, the
//! write) goes through [`Platform`]; memory comes from the global allocator
//! of whoever links this crate. Results are printed as the report lines of
//! [`thread_bench::report`] (`bench <name> <value> <unit>`), which the host
//! parses back.
//!
//! Not here: threads (see `thread-bench`), boot time and image footprint
//! (measured by the host tool, `tools/bench`), statistics past the median
//! or the best of N.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![feature(allocator_api)]

extern crate alloc;

pub mod basic;
pub mod fileio;
pub mod hourglass;
pub mod pingpong;
pub mod stream;

use alloc::string::String;
use core::fmt;

pub use thread_bench::report::Line;

/// What a platform (the hermit kernel, or Linux with std) provides.
pub trait Platform: 'static {
    /// What [`Platform::kernel_call`] calls, for the report.
    const KERNEL_CALL: &'static str;
    /// Where [`Platform::write_byte`] writes, for the report.
    const WRITE_SINK: &'static str;
    /// How zeroed memory from the allocator gets its frames, for the report.
    const MEMORY_NOTE: &'static str;
    /// Where a file call goes (e.g. "hypercall" or "syscall"), for the report.
    const FILE_CALLS: &'static str;
    /// The platform's files, for [`fileio`].
    type Fs: fileio::FileSystem;

    /// Monotonic time in nanoseconds.
    fn now_ns() -> u64;
    /// The time-stamp counter (`rdtsc`).
    fn cycles() -> u64;
    /// The TSC frequency in kHz (0 if unknown).
    fn tsc_khz() -> u64;
    /// The cheapest call into the kernel there is; returns its result so the
    /// call cannot be optimised away.
    fn kernel_call() -> u64;
    /// Gives up the CPU with no other thread ready.
    fn yield_now();
    /// Writes one byte to a sink the host discards; false if it failed.
    fn write_byte() -> bool;
    /// Prints one line of output (without its newline).
    fn print(line: fmt::Arguments<'_>);
}

/// Why a benchmark run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A command-line argument was not understood.
    Usage(String),
    /// Not enough memory for the requested sizes.
    Memory(String),
    /// A benchmark's own check failed (wrong STREAM results, a failed write).
    Check(String),
    /// A file operation failed (`fileio`).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) => write!(f, "usage: {m}"),
            Self::Memory(m) => write!(f, "out of memory: {m}"),
            Self::Check(m) => write!(f, "check failed: {m}"),
            Self::Io(m) => write!(f, "file error: {m}"),
        }
    }
}

/// The argument syntax, for messages.
pub const USAGE: &str = "basic [--reps N] [--iters N] [--touch-mib N] [BENCH...] | \
    hourglass [--ms N] [--threshold CYCLES] | stream [--elements N] [--ntimes N] | \
    fileio DIR [--total-mib N] [--chunk-kib N] [--large-kib N] [--small N] [--reps N]";

/// A parsed command line: which benchmark, with what settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `basic ...`.
    Basic(basic::Config),
    /// `hourglass ...`.
    Hourglass(hourglass::Config),
    /// `stream ...`.
    Stream(stream::Config),
    /// `fileio DIR ...`.
    FileIo(fileio::Config),
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Command, Error> {
        let mut it = args.into_iter();
        match it.next() {
            Some("basic") => basic::Config::parse(it).map(Command::Basic),
            Some("hourglass") => hourglass::Config::parse(it).map(Command::Hourglass),
            Some("stream") => stream::Config::parse(it).map(Command::Stream),
            Some("fileio") => fileio::Config::parse(it).map(Command::FileIo),
            Some(other) => Err(Error::Usage(alloc::format!(
                "unknown benchmark {other:?}; {USAGE}"
            ))),
            None => Err(Error::Usage(USAGE.into())),
        }
    }
}

/// Runs `cmd`, printing report lines through [`Platform::print`].
pub fn run<P: Platform>(cmd: &Command) -> Result<(), Error> {
    match cmd {
        Command::Basic(c) => basic::run::<P>(c),
        Command::Hourglass(c) => hourglass::run::<P>(c),
        Command::Stream(c) => stream::run::<P>(c),
        Command::FileIo(c) => fileio::run::<P>(c),
    }
}

/// What printing a report needs of a platform: a clock and a printer.
/// Every [`Platform`] is one; an app that runs only the ping-pong
/// ([`pingpong`]) implements just this.
pub trait Host {
    /// Monotonic time in nanoseconds.
    fn now_ns() -> u64;
    /// Prints one line.
    fn print(line: fmt::Arguments<'_>);
}

impl<P: Platform> Host for P {
    fn now_ns() -> u64 {
        <P as Platform>::now_ns()
    }

    fn print(line: fmt::Arguments<'_>) {
        <P as Platform>::print(line)
    }
}

/// Prints `bench <name> <value> <unit>` (the [`Line::Bench`] format, with
/// four decimals below 100 so that tiny guest rates keep their digits).
fn report<P: Host>(name: &str, value: f64, unit: &str) {
    if value.abs() >= 100.0 {
        P::print(format_args!("bench {name} {value:.1} {unit}"));
    } else {
        P::print(format_args!("bench {name} {value:.4} {unit}"));
    }
}

/// Prints `info <text>`.
fn info<P: Host>(text: fmt::Arguments<'_>) {
    P::print(format_args!("info {text}"));
}

/// Reads the number after `flag`: positive, at most `max`.
fn number(flag: &str, value: Option<&str>, max: u64) -> Result<u64, Error> {
    value
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0 && n <= max)
        .ok_or_else(|| Error::Usage(alloc::format!("{flag} takes a number from 1 to {max}")))
}

#[cfg(test)]
pub(crate) mod fake {
    //! A std platform that records what it prints, for the unit tests.
    use super::Platform;
    use std::cell::RefCell;
    use std::fmt;
    use std::time::Instant;

    thread_local! {
        static OUT: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// Prints into a per-test-thread buffer.
    pub struct Fake;

    /// Takes what this thread printed so far.
    pub fn take_output() -> Vec<String> {
        OUT.with(|o| std::mem::take(&mut *o.borrow_mut()))
    }

    fn start() -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    impl Platform for Fake {
        const KERNEL_CALL: &'static str = "fake";
        const WRITE_SINK: &'static str = "nowhere";
        const MEMORY_NOTE: &'static str = "std";
        const FILE_CALLS: &'static str = "std::fs";
        type Fs = crate::fileio::StdFs;
        fn now_ns() -> u64 {
            start().elapsed().as_nanos() as u64
        }
        fn cycles() -> u64 {
            // A fake 1 GHz counter: one cycle per nanosecond.
            Self::now_ns()
        }
        fn tsc_khz() -> u64 {
            1_000_000
        }
        fn kernel_call() -> u64 {
            std::process::id().into()
        }
        fn yield_now() {
            std::thread::yield_now();
        }
        fn write_byte() -> bool {
            true
        }
        fn print(line: fmt::Arguments<'_>) {
            OUT.with(|o| o.borrow_mut().push(line.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert!(matches!(Command::parse(["basic"]), Ok(Command::Basic(_))));
        assert!(matches!(
            Command::parse(["hourglass", "--ms", "5"]),
            Ok(Command::Hourglass(_))
        ));
        assert!(matches!(
            Command::parse(["stream", "--elements", "1000"]),
            Ok(Command::Stream(_))
        ));
        assert!(matches!(
            Command::parse(["fileio", "/bench"]),
            Ok(Command::FileIo(_))
        ));
        assert!(matches!(Command::parse([]), Err(Error::Usage(_))));
        assert!(matches!(Command::parse(["nope"]), Err(Error::Usage(_))));
    }

    #[test]
    fn report_lines_parse_back_with_their_digits() {
        report::<fake::Fake>("a", 0.123456, "MB/s");
        report::<fake::Fake>("b", 123456.78, "ns");
        let out = fake::take_output();
        assert_eq!(out, ["bench a 0.1235 MB/s", "bench b 123456.8 ns"]);
        for l in &out {
            assert!(matches!(Line::parse(l), Some(Line::Bench { .. })), "{l}");
        }
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(number("--x", Some("7"), 10), Ok(7));
        for bad in [None, Some("0"), Some("11"), Some("-1"), Some("x")] {
            assert!(number("--x", bad, 10).is_err(), "{bad:?}");
        }
    }
}
