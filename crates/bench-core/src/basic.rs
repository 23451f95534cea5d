//! The seed's `basic.c`: what the simplest services of the OS cost, per
//! operation, in ns and TSC cycles (median over repetitions).
//!
//! | name | one operation |
//! | --- | --- |
//! | `kernel-call` | [`Platform::kernel_call`] (Linux: `getpid` by system call) |
//! | `yield` | [`Platform::yield_now`] with no other thread ready |
//! | `malloc-free` | allocate and free 64 bytes |
//! | `alloc-zeroed` | per 4 KiB page: allocate a zeroed region of `--touch-mib` MiB |
//! | `first-touch` | per 4 KiB page: the first write to that region |
//! | `write-1` | [`Platform::write_byte`] |
//!
//! `alloc-zeroed` and `first-touch` belong together: Linux maps fresh
//! pages lazily (cheap allocation, a page fault on first touch), a kernel
//! that maps its heap eagerly pays at allocation (zeroing) instead.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;

use crate::{Error, Platform, info, number, report};

const PAGE: usize = 4096;

/// One basic benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    /// The cheapest kernel entry.
    KernelCall,
    /// A yield with nothing else to run.
    Yield,
    /// malloc and free of 64 bytes.
    MallocFree,
    /// A fresh zeroed region, and the first write to each of its pages.
    FirstTouch,
    /// A 1-byte write.
    Write1,
}

impl Bench {
    /// Every benchmark, in the order they run.
    pub const ALL: [Bench; 5] = [
        Self::KernelCall,
        Self::Yield,
        Self::MallocFree,
        Self::FirstTouch,
        Self::Write1,
    ];

    /// The name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::KernelCall => "kernel-call",
            Self::Yield => "yield",
            Self::MallocFree => "malloc-free",
            Self::FirstTouch => "first-touch",
            Self::Write1 => "write-1",
        }
    }

    /// The figures (names of `bench` lines) this benchmark reports.
    pub const fn figures(self) -> &'static [&'static str] {
        match self {
            Self::FirstTouch => &["alloc-zeroed", "first-touch"],
            Self::KernelCall => &["kernel-call"],
            Self::Yield => &["yield"],
            Self::MallocFree => &["malloc-free"],
            Self::Write1 => &["write-1"],
        }
    }

    fn from_name(name: &str) -> Option<Bench> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Settings of `basic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Repetitions (the median is reported).
    pub reps: u32,
    /// Operations per repetition (not for `first-touch`).
    pub iters: u32,
    /// Size of the first-touch region in MiB.
    pub touch_mib: u32,
    /// Benchmarks to run, in order.
    pub benches: Vec<Bench>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reps: 5,
            iters: 1000,
            touch_mib: 16,
            benches: Bench::ALL.to_vec(),
        }
    }
}

impl Config {
    /// Parses the arguments after `basic`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut cfg = Config {
            benches: Vec::new(),
            ..Config::default()
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--reps" => cfg.reps = number(arg, it.next(), 1000)? as u32,
                "--iters" => cfg.iters = number(arg, it.next(), 100_000_000)? as u32,
                "--touch-mib" => cfg.touch_mib = number(arg, it.next(), 64 * 1024)? as u32,
                "all" => cfg.benches.extend(Bench::ALL),
                name => match Bench::from_name(name) {
                    Some(b) => cfg.benches.push(b),
                    None => {
                        return Err(Error::Usage(alloc::format!(
                            "unknown basic benchmark {name:?}; {}",
                            crate::USAGE
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
#[derive(Clone, Copy)]
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

    /// (ns, cycles) per operation from `self` to `end`.
    fn per_op(self, end: Stamp, ops: u64) -> (f64, f64) {
        let ops = ops.max(1) as f64;
        (
            end.ns.saturating_sub(self.ns) as f64 / ops,
            end.cycles.saturating_sub(self.cycles) as f64 / ops,
        )
    }
}

/// Runs the benchmarks of `cfg`.
pub fn run<P: Platform>(cfg: &Config) -> Result<(), Error> {
    info::<P>(format_args!(
        "basic reps={} iters={} touch-mib={} kernel-call={} write-1={} memory={}",
        cfg.reps,
        cfg.iters,
        cfg.touch_mib,
        P::KERNEL_CALL,
        P::WRITE_SINK,
        P::MEMORY_NOTE
    ));
    for &bench in &cfg.benches {
        let figures = bench.figures();
        // samples[figure] = [(ns, cycles) per repetition]
        let mut samples: Vec<(Vec<f64>, Vec<f64>)> =
            figures.iter().map(|_| (Vec::new(), Vec::new())).collect();
        for _ in 0..cfg.reps {
            let one = run_one::<P>(bench, cfg)?;
            for (s, (ns, cycles)) in samples.iter_mut().zip(one) {
                s.0.push(ns);
                s.1.push(cycles);
            }
        }
        for (name, (ns, cycles)) in figures.iter().zip(&mut samples) {
            report::<P>(name, thread_bench::median(ns), "ns");
            report::<P>(name, thread_bench::median(cycles), "cycles");
        }
    }
    Ok(())
}

/// One repetition: (ns, cycles) per operation for each of `bench.figures()`.
fn run_one<P: Platform>(bench: Bench, cfg: &Config) -> Result<Vec<(f64, f64)>, Error> {
    let iters = u64::from(cfg.iters);
    match bench {
        Bench::KernelCall => {
            let start = Stamp::now::<P>();
            for _ in 0..iters {
                black_box(P::kernel_call());
            }
            Ok(alloc::vec![start.per_op(Stamp::now::<P>(), iters)])
        }
        Bench::Yield => {
            let start = Stamp::now::<P>();
            for _ in 0..iters {
                P::yield_now();
            }
            Ok(alloc::vec![start.per_op(Stamp::now::<P>(), iters)])
        }
        Bench::MallocFree => {
            let start = Stamp::now::<P>();
            for _ in 0..iters {
                let v: Vec<u8> = Vec::with_capacity(black_box(64));
                black_box(v.as_ptr());
                drop(black_box(v));
            }
            Ok(alloc::vec![start.per_op(Stamp::now::<P>(), iters)])
        }
        Bench::FirstTouch => first_touch::<P>(cfg.touch_mib),
        Bench::Write1 => {
            let start = Stamp::now::<P>();
            for _ in 0..iters {
                if !P::write_byte() {
                    return Err(Error::Check(alloc::format!(
                        "write-1: a 1-byte write to {} failed",
                        P::WRITE_SINK
                    )));
                }
            }
            Ok(alloc::vec![start.per_op(Stamp::now::<P>(), iters)])
        }
    }
}

/// Allocates a zeroed region and writes one byte into each of its pages:
/// (allocation, first touch), each per page.
fn first_touch<P: Platform>(mib: u32) -> Result<Vec<(f64, f64)>, Error> {
    let bytes = mib as usize * 1024 * 1024;
    let pages = (bytes / PAGE) as u64;
    let start = Stamp::now::<P>();
    let mut region = Box::<[u8]>::try_new_zeroed_slice(bytes)
        .map_err(|_| Error::Memory(alloc::format!("a zeroed region of {mib} MiB")))?;
    let allocated = Stamp::now::<P>();
    for page in region.chunks_mut(PAGE) {
        page[0].write(1);
    }
    black_box(&mut region);
    let touched = Stamp::now::<P>();
    drop(region);
    Ok(alloc::vec![
        start.per_op(allocated, pages),
        allocated.per_op(touched, pages),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, take_output};

    #[test]
    fn config_parses() {
        let c =
            Config::parse(["--reps", "2", "--iters", "9", "--touch-mib", "3", "yield"]).unwrap();
        assert_eq!(
            c,
            Config {
                reps: 2,
                iters: 9,
                touch_mib: 3,
                benches: alloc::vec![Bench::Yield]
            }
        );
        assert_eq!(Config::parse([]).unwrap().benches, Bench::ALL.to_vec());
        assert!(Config::parse(["bogus"]).is_err());
        assert!(Config::parse(["--reps", "0"]).is_err());
        assert!(Config::parse(["--touch-mib"]).is_err());
    }

    #[test]
    fn every_figure_is_printed_in_both_units() {
        let cfg = Config::parse(["--reps", "2", "--iters", "10", "--touch-mib", "1"]).unwrap();
        run::<Fake>(&cfg).unwrap();
        let out = take_output();
        assert!(out[0].starts_with("info basic reps=2 iters=10 touch-mib=1 kernel-call=fake"));
        for b in Bench::ALL {
            for name in b.figures() {
                for unit in ["ns", "cycles"] {
                    let found = out.iter().filter_map(|l| crate::Line::parse(l)).any(|l| {
                        matches!(&l, crate::Line::Bench { name: n, unit: u, value }
                            if n == name && u == unit && *value >= 0.0)
                    });
                    assert!(found, "no {unit} line for {name}: {out:?}");
                }
            }
        }
    }
}
