//! STREAM (McCalpin): sustainable memory bandwidth of four simple vector
//! kernels over `f64` arrays, as in `stream.c`:
//!
//! | name | kernel | bytes moved per element |
//! | --- | --- | --- |
//! | `stream-copy` | `c[j] = a[j]` | 16 |
//! | `stream-scale` | `b[j] = s * c[j]` | 16 |
//! | `stream-add` | `c[j] = a[j] + b[j]` | 24 |
//! | `stream-triad` | `a[j] = b[j] + s * c[j]` | 24 |
//!
//! Each kernel runs `--ntimes` times; the first pass is not counted (it
//! warms caches and TLBs), the best of the rest is reported in MB/s
//! (10^6 bytes per second, like `stream.c`). The results are checked
//! against the same recurrence computed on scalars, as `stream.c` does.
//!
//! Guest builds use soft float (see [`FLOAT`]): the target
//! `x86_64-unknown-none` disables SSE for compiled code, so the guest's
//! figures measure software floating point, not memory.
//!
//! The copy is written `a[j] + 0.0` so that the compiler keeps it a loop:
//! as a plain copy it becomes a `memcpy` call, whose implementation differs
//! between glibc and the guest, and the figure would compare memcpys rather
//! than the same code. The addition costs nothing next to the memory access.

use alloc::vec::Vec;
use core::hint::black_box;

use crate::{Error, Platform, info, number, report};

/// How this build does `f64` arithmetic: `x86_64-unknown-none` (the guest
/// apps' target) is a soft-float target, so there every addition and
/// multiplication is a call into compiler-builtins, not an SSE2 instruction.
/// The figure compares what the same source compiles to on each side; this
/// says why they differ.
pub const FLOAT: &str = if cfg!(target_feature = "sse2") {
    "sse2"
} else {
    "soft-float"
};

/// The scale factor of `stream.c`.
const SCALAR: f64 = 3.0;

/// Settings of `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Elements per array (three arrays of `f64`).
    pub elements: usize,
    /// Passes over the four kernels (at least 2: the first is not counted).
    pub ntimes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            elements: 10_000_000,
            ntimes: 10,
        }
    }
}

impl Config {
    /// Parses the arguments after `stream`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut cfg = Config::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--elements" => cfg.elements = number(arg, it.next(), 1 << 32)? as usize,
                "--ntimes" => {
                    cfg.ntimes = number(arg, it.next(), 1000)? as u32;
                    if cfg.ntimes < 2 {
                        return Err(Error::Usage(
                            "--ntimes must be at least 2 (the first pass is not counted)".into(),
                        ));
                    }
                }
                other => {
                    return Err(Error::Usage(alloc::format!(
                        "unknown stream argument {other:?}; {}",
                        crate::USAGE
                    )));
                }
            }
        }
        Ok(cfg)
    }
}

/// The four kernels, in the order they run.
pub const KERNELS: [&str; 4] = ["stream-copy", "stream-scale", "stream-add", "stream-triad"];
/// Arrays each kernel reads and writes.
const ARRAYS_TOUCHED: [usize; 4] = [2, 2, 3, 3];

fn array(n: usize, value: f64) -> Result<Vec<f64>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::Memory(alloc::format!(
            "three arrays of {n} f64 ({} MiB each)",
            n * 8 / (1024 * 1024)
        ))
    })?;
    v.resize(n, value);
    Ok(v)
}

fn copy(c: &mut [f64], a: &[f64]) {
    for (c, a) in c.iter_mut().zip(a) {
        *c = *a + 0.0;
    }
}

fn scale(b: &mut [f64], c: &[f64], s: f64) {
    for (b, c) in b.iter_mut().zip(c) {
        *b = s * *c;
    }
}

fn add(c: &mut [f64], a: &[f64], b: &[f64]) {
    for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
        *c = *a + *b;
    }
}

fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = *b + s * *c;
    }
}

/// The best time (ns) of each kernel over the counted passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    /// Per kernel: the best (smallest) time.
    pub best_ns: [u64; 4],
}

/// Runs the kernels; returns the best times after checking the results.
pub fn measure<P: Platform>(cfg: &Config) -> Result<Times, Error> {
    let n = cfg.elements;
    let mut a = array(n, 1.0)?;
    let mut b = array(n, 2.0)?;
    let mut c = array(n, 0.0)?;
    for x in &mut a {
        *x *= 2.0;
    }
    let mut best = [u64::MAX; 4];
    for pass in 0..cfg.ntimes {
        let mut times = [0u64; 4];
        for (k, t) in times.iter_mut().enumerate() {
            let start = P::now_ns();
            match k {
                0 => copy(&mut c, &a),
                1 => scale(&mut b, &c, SCALAR),
                2 => add(&mut c, &a, &b),
                _ => triad(&mut a, &b, &c, SCALAR),
            }
            black_box((&mut a, &mut b, &mut c));
            *t = P::now_ns().saturating_sub(start).max(1);
        }
        if pass > 0 {
            for (b, t) in best.iter_mut().zip(times) {
                *b = (*b).min(t);
            }
        }
    }
    check(&a, &b, &c, cfg.ntimes)?;
    Ok(Times { best_ns: best })
}

/// Compares every element with the scalar recurrence, as `stream.c`'s
/// `checkSTREAMresults` does (relative error 1e-13 for `f64`).
fn check(a: &[f64], b: &[f64], c: &[f64], ntimes: u32) -> Result<(), Error> {
    let (mut aj, mut bj, mut cj) = (2.0f64, 2.0f64, 0.0f64);
    for _ in 0..ntimes {
        cj = aj;
        bj = SCALAR * cj;
        cj = aj + bj;
        aj = bj + SCALAR * cj;
    }
    for (name, arr, want) in [("a", a, aj), ("b", b, bj), ("c", c, cj)] {
        if let Some((j, got)) = arr
            .iter()
            .enumerate()
            .find(|(_, v)| ((**v - want) / want).abs() > 1e-13)
        {
            return Err(Error::Check(alloc::format!(
                "stream: {name}[{j}] = {got}, expected {want}"
            )));
        }
    }
    Ok(())
}

/// Runs STREAM with `cfg` and prints the best rate of each kernel.
pub fn run<P: Platform>(cfg: &Config) -> Result<(), Error> {
    info::<P>(format_args!(
        "stream elements={} array-mib={:.1} total-mib={:.1} ntimes={} float={}",
        cfg.elements,
        cfg.elements as f64 * 8.0 / 1048576.0,
        cfg.elements as f64 * 24.0 / 1048576.0,
        cfg.ntimes,
        FLOAT
    ));
    let times = measure::<P>(cfg)?;
    for ((name, arrays), ns) in KERNELS.iter().zip(ARRAYS_TOUCHED).zip(times.best_ns) {
        let bytes = (arrays * 8 * cfg.elements) as f64;
        // bytes / ns = GB/s; x 1000 = MB/s.
        report::<P>(name, bytes / ns as f64 * 1000.0, "MB/s");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, take_output};

    #[test]
    fn results_check_and_rates_print() {
        run::<Fake>(&Config::parse(["--elements", "10000", "--ntimes", "3"]).unwrap()).unwrap();
        let out = take_output();
        assert_eq!(
            out[0],
            "info stream elements=10000 array-mib=0.1 total-mib=0.2 ntimes=3 float=sse2"
        );
        for k in KERNELS {
            let line = out
                .iter()
                .filter_map(|l| crate::Line::parse(l))
                .find(|l| matches!(l, crate::Line::Bench { name, .. } if name == k));
            assert!(
                matches!(&line, Some(crate::Line::Bench { unit, value, .. }) if unit == "MB/s" && *value > 0.0),
                "{k}: {out:?}"
            );
        }
    }

    #[test]
    fn a_wrong_element_is_caught() {
        let mut a = alloc::vec![0.0; 4];
        let mut b = alloc::vec![0.0; 4];
        let mut c = alloc::vec![0.0; 4];
        a.iter_mut().for_each(|x| *x = 2.0);
        for _ in 0..2 {
            copy(&mut c, &a);
            scale(&mut b, &c, SCALAR);
            add(&mut c, &a, &b);
            triad(&mut a, &b, &c, SCALAR);
        }
        assert_eq!(check(&a, &b, &c, 2), Ok(()));
        b[3] += 1.0;
        assert!(matches!(check(&a, &b, &c, 2), Err(Error::Check(m)) if m.contains("b[3]")));
        assert!(check(&a, &b, &c, 3).is_err());
    }

    #[test]
    fn config_rules() {
        assert!(Config::parse(["--ntimes", "1"]).is_err());
        assert!(Config::parse(["--elements", "0"]).is_err());
        assert!(Config::parse(["--x"]).is_err());
        assert_eq!(Config::parse([]).unwrap(), Config::default());
    }
}
