//! The iRCCE demo for isles: pi as the integral of `4 / (1 + x^2)` over
//! `[0, 1]` (midpoint rule), the steps split round-robin over the isles.
//!
//! ```text
//! ircce-pi [UES] [STEPS]
//! ```
//!
//! `UES` (default 4) isles run this same image, isle `n` as UE `n`. UE 0's
//! `STEPS` (default 10000) reaches the others by `bcast`; every UE
//! integrates its share, a `reduce` brings the sum to UE 0 and an
//! `allreduce` lets every UE check that all steps were done once; barriers
//! frame the computation. UE 0 prints pi and its error, every UE one line
//! with its rank. Exit status 2 for bad arguments or when not started as
//! an isle, 1 when iRCCE fails or a check does not hold.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use hermit::isle::{self, ReduceOp};
use hermit::{eprintln, println};

hermit::entry!(main);

const DEFAULT_UES: u32 = 4;
const DEFAULT_STEPS: u64 = 10_000;
const MAX_STEPS: u64 = 1 << 40;
/// Largest acceptable error for the step count (the midpoint rule's error
/// is about `1 / (6 STEPS^2)`; soft-float rounding adds a little).
fn tolerance(steps: u64) -> f64 {
    let s = steps as f64;
    1.0 / (s * s) + 1e-12
}

/// Why the demo failed, with its exit status.
enum Failure {
    Usage(alloc::string::String),
    Run(alloc::string::String),
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            eprintln!("ircce-pi: {m}");
            2
        }
        Err(Failure::Run(m)) => {
            eprintln!("ircce-pi: {m}");
            1
        }
    }
}

fn arg<T: core::str::FromStr>(args: &[&str], i: usize, default: T) -> Result<T, Failure> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            Failure::Usage(alloc::format!(
                "argument {:?} is not a number; usage: ircce-pi [UES] [STEPS]",
                s
            ))
        }),
    }
}

fn run() -> Result<(), Failure> {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let ues: u32 = arg(&args, 0, DEFAULT_UES)?;
    let steps: u64 = arg(&args, 1, DEFAULT_STEPS)?;
    if ues == 0 || ues > isle::MAX_ISLES {
        return Err(Failure::Usage(alloc::format!(
            "UES must be 1..={}",
            isle::MAX_ISLES
        )));
    }
    if steps == 0 || steps > MAX_STEPS {
        return Err(Failure::Usage(alloc::format!(
            "STEPS must be 1..={MAX_STEPS}"
        )));
    }
    let Some(rank) = isle::id() else {
        return Err(Failure::Usage(
            "not started as an isle (run isles 0..UES-1, e.g. HERMIT_ISLE=<n>)".into(),
        ));
    };
    if rank >= ues {
        return Err(Failure::Usage(alloc::format!(
            "isle {rank} has no part in a {ues}-UE run"
        )));
    }
    let fail =
        |what: &str, e: isle::hermit_ircce::Error| Failure::Run(alloc::format!("{what}: {e}"));
    let ue =
        isle::ircce(isle::Config::new(ues)).map_err(|e| Failure::Run(alloc::format!("{e}")))?;
    let me = ue.ue();
    let n = ue.num_ues();

    ue.barrier();
    // UE 0 decides the step count for everybody.
    let mut wire = steps.to_le_bytes();
    ue.bcast(&mut wire, 0).map_err(|e| fail("bcast", e))?;
    let steps = u64::from_le_bytes(wire);
    if steps == 0 || steps > MAX_STEPS {
        return Err(Failure::Run(alloc::format!(
            "UE 0 broadcast an impossible step count {steps}"
        )));
    }

    let start = hermit::time::monotonic_ns();
    let h = 1.0 / steps as f64;
    let mut partial = 0.0f64;
    let mut done: i64 = 0;
    let mut i = me as u64;
    while i < steps {
        let x = (i as f64 + 0.5) * h;
        partial += 4.0 / (1.0 + x * x);
        done += 1;
        i += n as u64;
    }
    partial *= h;
    let elapsed_us = (hermit::time::monotonic_ns() - start) / 1000;

    let mut pi = [0.0f64];
    ue.reduce(ReduceOp::Sum, &[partial], &mut pi, 0)
        .map_err(|e| fail("reduce", e))?;
    let mut total = [0i64];
    ue.allreduce(ReduceOp::Sum, &[done], &mut total)
        .map_err(|e| fail("allreduce", e))?;
    ue.barrier();

    println!(
        "ircce-pi: rank {me} of {n}: {done} steps, partial sum {partial:.12}, {elapsed_us} us"
    );
    if total[0] != steps as i64 {
        return Err(Failure::Run(alloc::format!(
            "the UEs did {} steps together, not {steps}",
            total[0]
        )));
    }
    if me == 0 {
        let error = pi[0] - core::f64::consts::PI;
        println!(
            "ircce-pi: pi = {:.12} with {steps} steps on {n} UEs, error {error:.3e}",
            pi[0]
        );
        if error.abs() > tolerance(steps) {
            return Err(Failure::Run(alloc::format!(
                "error {error:e} is larger than {:e}",
                tolerance(steps)
            )));
        }
    }
    Ok(())
}
