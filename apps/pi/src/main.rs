//! Parallel pi: computes pi to `DIGITS` decimal places with Machin's formula
//! `pi = 16 atan(1/5) - 4 atan(1/239)` in big fixed-point integers, once
//! with 1 thread, once with 2, ... up to `MAX_THREADS` (default: one per
//! core), checks every result digit by digit against a stored reference,
//! checks that all runs produced bit-identical numbers, and prints each
//! run's time and the speed-up over one thread.
//!
//! Usage: `pi [DIGITS] [MAX_THREADS]` (DIGITS at most 3000, default 1000).
//!
//! Integer arithmetic only: the kernel target is soft-float. Every term of
//! the series is the exact floor `floor(m 10^P / (x^(2k+1) (2k+1)))`
//! (`floor(floor(a/b)/c) = floor(a/(bc))`, so the order in which the
//! divisions are chained does not matter), hence the sum, and so the
//! result, does not depend on how the terms are split over threads.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod reference;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write as _;

use hermit::time::{Duration, Instant};
use hermit::{println, thread};

hermit::entry!(main);

/// Each limb holds 9 decimal digits.
const BASE: u64 = 1_000_000_000;
/// Digits per limb.
const LIMB_DIGITS: usize = 9;
/// Largest divisor [`Fixed::div_assign`] accepts: `(d - 1) * BASE + (BASE
/// - 1)` must fit in a `u64`.
const MAX_DIVISOR: u64 = u64::MAX / BASE;
/// Extra limbs beyond the digits asked for: each of the ~0.9 terms per
/// digit is truncated by less than one unit of the last limb (times 16), so
/// 18 guard digits keep the error far below the digits that are shown.
const GUARD_LIMBS: usize = 2;
/// Default number of decimal places.
const DEFAULT_DIGITS: usize = 1000;

/// A non-negative fixed-point number: `limbs[0]` is the integer part, the
/// rest are base-10^9 fraction limbs, most significant first.
#[derive(Clone, PartialEq, Eq)]
struct Fixed {
    limbs: Vec<u32>,
    /// Index of the first limb that may be non-zero (all before it are 0):
    /// the powers of 1/x shrink, and skipping their leading zeros halves
    /// the work.
    lead: usize,
}

impl Fixed {
    /// `value` with `fraction` zero fraction limbs.
    fn new(value: u32, fraction: usize) -> Self {
        let mut limbs = vec![0; fraction + 1];
        limbs[0] = value;
        Self { limbs, lead: 0 }
    }

    fn is_zero(&self) -> bool {
        self.lead >= self.limbs.len()
    }

    /// `self = floor(self / d)`, for `1 <= d <= MAX_DIVISOR`.
    fn div_assign(&mut self, d: u64) {
        let mut rem = 0u64;
        for limb in &mut self.limbs[self.lead..] {
            let cur = rem * BASE + u64::from(*limb);
            // The quotient is below BASE because rem < d.
            *limb = (cur / d) as u32;
            rem = cur % d;
        }
        while self.lead < self.limbs.len() && self.limbs[self.lead] == 0 {
            self.lead += 1;
        }
    }

    /// `self = floor(self / x^e)`, in as few passes as the divisor limit
    /// allows.
    fn div_pow_assign(&mut self, x: u64, mut e: u32) {
        while e > 0 && !self.is_zero() {
            let mut d = 1u64;
            while e > 0 && d * x <= MAX_DIVISOR {
                d *= x;
                e -= 1;
            }
            self.div_assign(d);
        }
    }

    /// `self += floor(src / d)`, for `1 <= d <= MAX_DIVISOR` and numbers of
    /// the same length; the quotient goes through `scratch`.
    fn add_quotient(&mut self, src: &Fixed, d: u64, scratch: &mut Vec<u32>) {
        scratch.clear();
        let mut rem = 0u64;
        for &limb in &src.limbs[src.lead..] {
            let cur = rem * BASE + u64::from(limb);
            scratch.push((cur / d) as u32);
            rem = cur % d;
        }
        let mut carry = 0u32;
        for (acc, &q) in self.limbs[src.lead..].iter_mut().zip(scratch.iter()).rev() {
            let sum = *acc + q + carry;
            (*acc, carry) = if sum >= BASE as u32 {
                (sum - BASE as u32, 1)
            } else {
                (sum, 0)
            };
        }
        for acc in self.limbs[..src.lead].iter_mut().rev() {
            if carry == 0 {
                break;
            }
            let sum = *acc + carry;
            (*acc, carry) = if sum >= BASE as u32 {
                (sum - BASE as u32, 1)
            } else {
                (sum, 0)
            };
        }
        self.lead = self.lead.min(src.lead.saturating_sub(1));
    }

    /// `self += other` (same length).
    fn add_assign(&mut self, other: &Fixed) {
        let mut carry = 0u32;
        for (a, &b) in self.limbs.iter_mut().zip(&other.limbs).rev() {
            let sum = *a + b + carry;
            (*a, carry) = if sum >= BASE as u32 {
                (sum - BASE as u32, 1)
            } else {
                (sum, 0)
            };
        }
        self.lead = 0;
    }

    /// `self -= other` (same length, `self >= other`).
    fn sub_assign(&mut self, other: &Fixed) {
        let mut borrow = 0u32;
        for (a, &b) in self.limbs.iter_mut().zip(&other.limbs).rev() {
            let sub = b + borrow;
            (*a, borrow) = if *a >= sub {
                (*a - sub, 0)
            } else {
                (*a + BASE as u32 - sub, 1)
            };
        }
        self.lead = 0;
    }

    /// The decimal digits, integer part first, without a point.
    fn digits(&self) -> String {
        let mut s = String::with_capacity(self.limbs.len() * LIMB_DIGITS);
        let _ = write!(s, "{}", self.limbs[0]);
        for limb in &self.limbs[1..] {
            let _ = write!(s, "{limb:09}");
        }
        s
    }

    /// FNV-1a over the limbs (guard limbs included), to show that runs
    /// agree bit for bit.
    fn checksum(&self) -> u64 {
        self.limbs.iter().fold(0xcbf2_9ce4_8422_2325, |h, &l| {
            (h ^ u64::from(l)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

/// What one thread contributes: the sums of its positive and negative
/// terms.
struct Partial {
    pos: Fixed,
    neg: Fixed,
}

/// Adds the terms `k = first, first + step, ...` of
/// `m atan(1/x) = m sum_k (-1)^k / ((2k+1) x^(2k+1))` to `part`.
fn atan_terms(part: &mut Partial, m: u32, x: u64, first: u32, step: u32, scratch: &mut Vec<u32>) {
    let fraction = part.pos.limbs.len() - 1;
    // power = floor(m / x^(2k+1)) at k = first.
    let mut power = Fixed::new(m, fraction);
    power.div_pow_assign(x, 2 * first + 1);
    let mut k = first;
    while !power.is_zero() {
        let acc = if k.is_multiple_of(2) {
            &mut part.pos
        } else {
            &mut part.neg
        };
        acc.add_quotient(&power, u64::from(2 * k + 1), scratch);
        power.div_pow_assign(x, 2 * step);
        k += step;
    }
}

/// Thread `index` of `threads`: every `threads`-th term of both series,
/// interleaved so that the cheap late terms are spread evenly.
fn worker(fraction: usize, index: u32, threads: u32) -> Partial {
    let mut part = Partial {
        pos: Fixed::new(0, fraction),
        neg: Fixed::new(0, fraction),
    };
    let mut scratch = Vec::with_capacity(fraction + 1);
    atan_terms(&mut part, 16, 5, index, threads, &mut scratch);
    // -4 atan(1/239): swap the signs by swapping the accumulators.
    core::mem::swap(&mut part.pos, &mut part.neg);
    atan_terms(&mut part, 4, 239, index, threads, &mut scratch);
    core::mem::swap(&mut part.pos, &mut part.neg);
    part
}

/// Why a run failed.
enum Error {
    Spawn(thread::SpawnError),
    Usage(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            Self::Usage(what) => write!(f, "{what}; usage: pi [DIGITS<=3000] [MAX_THREADS]"),
        }
    }
}

/// Computes pi with `threads` threads spread over `cores` cores.
fn compute(digits: usize, threads: usize, cores: usize) -> Result<Fixed, Error> {
    let fraction = digits.div_ceil(LIMB_DIGITS) + GUARD_LIMBS;
    let t = u32::try_from(threads).map_err(|_| Error::Usage("too many threads"))?;
    let handles = (0..t)
        .map(|i| {
            thread::Builder::new()
                .core(i as usize % cores)
                .spawn(move || worker(fraction, i, t))
                .map_err(Error::Spawn)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut pos = Fixed::new(0, fraction);
    let mut neg = Fixed::new(0, fraction);
    for h in handles {
        let part = h.join();
        pos.add_assign(&part.pos);
        neg.add_assign(&part.neg);
    }
    pos.sub_assign(&neg);
    Ok(pos)
}

fn parse_arg(arg: Option<&str>, default: usize, what: &'static str) -> Result<usize, Error> {
    match arg {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Usage(what)),
        },
    }
}

/// `d` as milliseconds with one decimal.
struct Millis(Duration);

impl core::fmt::Display for Millis {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let us = self.0.as_micros();
        write!(f, "{}.{} ms", us / 1000, us % 1000 / 100)
    }
}

fn main() -> i32 {
    match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            println!("pi: {e}");
            2
        }
    }
}

fn run() -> Result<bool, Error> {
    let mut args = hermit::env::args().skip(1);
    let digits = parse_arg(
        args.next(),
        DEFAULT_DIGITS,
        "DIGITS must be a positive number",
    )?;
    if digits + 1 > reference::PI_DIGITS.len() {
        return Err(Error::Usage("DIGITS is larger than the stored reference"));
    }
    let cores = thread::available_parallelism();
    let max_threads = parse_arg(args.next(), cores, "MAX_THREADS must be a positive number")?;
    println!(
        "pi: {digits} digits with Machin's formula on 1..={max_threads} thread(s), {cores} core(s)"
    );
    let want = &reference::PI_DIGITS[..digits + 1];
    let mut ok = true;
    let mut first: Option<(Fixed, Duration)> = None;
    for threads in 1..=max_threads {
        let start = Instant::now();
        let value = compute(digits, threads, cores)?;
        let took = start.elapsed();
        let all = value.digits();
        let got = all.get(..digits + 1).unwrap_or(&all);
        let verdict = match got.bytes().zip(want.bytes()).position(|(a, b)| a != b) {
            None if got.len() == want.len() => "digits ok",
            None => {
                ok = false;
                "too few digits"
            }
            Some(at) => {
                ok = false;
                println!("pi: threads={threads}: first wrong digit at decimal place {at}");
                "DIGITS WRONG"
            }
        };
        println!(
            "pi: threads={threads} time={} {verdict} checksum={:#018x}",
            Millis(took),
            value.checksum()
        );
        match &first {
            None => {
                println!(
                    "pi = {}.{}...{}",
                    &got[..1],
                    &got[1..got.len().min(51)],
                    &got[got.len().saturating_sub(10)..]
                );
                first = Some((value, took));
            }
            Some((one, t1)) => {
                if *one != value {
                    ok = false;
                    println!("pi: threads={threads}: result differs from the 1-thread result");
                }
                let speedup = t1.as_micros() * 100 / took.as_micros().max(1);
                println!(
                    "pi: speed-up with {threads} threads: {}.{:02}x",
                    speedup / 100,
                    speedup % 100
                );
            }
        }
    }
    if ok {
        println!("pi: all {max_threads} result(s) correct and identical");
    }
    Ok(ok)
}
