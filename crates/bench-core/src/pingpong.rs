//! RCCE ping-pong (the seed's `RCCE_pingpong`): two UEs bounce messages of
//! doubling size through iRCCE; rank 0 reports the one-way time and the
//! bandwidth of every size, and a plain memcpy of the same size on the same
//! platform for scale.
//!
//! The same code runs between two isles (`apps/rcce-pingpong`) and between
//! two Linux processes over a shared mapping (`hermit-bench isles`), so the
//! columns compare the same exchange. Rank 0 first sends the schedule to
//! rank 1, so only rank 0's arguments matter. Every echoed message is
//! checked, so a broken exchange fails instead of printing a fast figure.

use alloc::vec;
use alloc::vec::Vec;

use hermit_ircce::{Ircce, Notify, Region};

pub use crate::Host;
use crate::{Error, info, number, report};

/// Usage of the `pingpong` arguments.
pub const USAGE: &str = "pingpong [--max BYTES] [--runs N]";

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest message (sizes run 1, 2, 4, ... up to it).
    pub max: u64,
    /// Batches per size; each figure is the median batch.
    pub runs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max: 64 << 20,
            runs: 5,
        }
    }
}

impl Config {
    /// Parses `[--max BYTES] [--runs N]`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut cfg = Config::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            match flag {
                "--max" => cfg.max = number(flag, it.next(), 1 << 30)?,
                "--runs" => cfg.runs = number(flag, it.next(), 101)?,
                other => {
                    return Err(Error::Usage(alloc::format!(
                        "unknown argument {other:?}; {USAGE}"
                    )));
                }
            }
        }
        Ok(cfg)
    }

    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.max.to_le_bytes());
        out[8..].copy_from_slice(&self.runs.to_le_bytes());
        out
    }

    fn decode(raw: &[u8; 16]) -> Result<Config, Error> {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&raw[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let cfg = Config {
            max: word(0),
            runs: word(8),
        };
        if cfg.max == 0 || cfg.max > 1 << 30 || cfg.runs == 0 || cfg.runs > 101 {
            return Err(Error::Check(alloc::format!(
                "pingpong: rank 0 sent an impossible schedule {cfg:?}"
            )));
        }
        Ok(cfg)
    }
}

/// Round trips per batch for `size`-byte messages: many for small ones,
/// a few for large ones, so each batch moves roughly the same bytes.
pub fn rounds(size: u64) -> u64 {
    ((4u64 << 20) / size.max(1)).clamp(2, 200)
}

/// The message sizes: powers of two up to `max`, and `max` itself.
pub fn sizes(max: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (0..=30)
        .map(|k| 1u64 << k)
        .take_while(|&s| s < max)
        .collect();
    out.push(max);
    out
}

fn ircce_err(e: hermit_ircce::Error) -> Error {
    Error::Check(alloc::format!("iRCCE: {e}"))
}

/// Byte `i` of the message rank 0 sends in round `round`.
fn pattern(i: usize, round: u64) -> u8 {
    (i as u64).wrapping_mul(31).wrapping_add(round) as u8
}

/// Runs the ping-pong as `ue`'s rank (0 measures and prints, 1 echoes).
pub fn run<P: Host, R: Region, N: Notify>(ue: &Ircce<R, N>, cfg: &Config) -> Result<(), Error> {
    if ue.num_ues() < 2 {
        return Err(Error::Usage("pingpong needs at least 2 UEs".into()));
    }
    match ue.ue() {
        0 => ping::<P, R, N>(ue, cfg),
        1 => echo(ue),
        // Ranks past 1 have nothing to do.
        _ => Ok(()),
    }
}

fn ping<P: Host, R: Region, N: Notify>(ue: &Ircce<R, N>, cfg: &Config) -> Result<(), Error> {
    ue.send(&cfg.encode(), 1).map_err(ircce_err)?;
    info::<P>(format_args!(
        "pingpong ues={} max={} runs={}",
        ue.num_ues(),
        cfg.max,
        cfg.runs
    ));
    let len = usize::try_from(cfg.max).map_err(|_| Error::Usage("--max too large".into()))?;
    let mut out = vec![0u8; len];
    let mut back = vec![0u8; len];
    for size in sizes(cfg.max) {
        let n = size as usize;
        let rounds = rounds(size);
        let mut batches = Vec::with_capacity(cfg.runs as usize);
        for run in 0..cfg.runs {
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = pattern(i, run);
            }
            let start = P::now_ns();
            for _ in 0..rounds {
                ue.send(&out[..n], 1).map_err(ircce_err)?;
                ue.recv(&mut back[..n], 1).map_err(ircce_err)?;
            }
            batches.push((P::now_ns() - start) as f64 / rounds as f64);
            if back[..n] != out[..n] {
                return Err(Error::Check(alloc::format!(
                    "pingpong: the {size}-byte echo differs from what was sent"
                )));
            }
        }
        batches.sort_by(f64::total_cmp);
        let round_trip_ns = batches[batches.len() / 2];
        let one_way_us = round_trip_ns / 2.0 / 1e3;
        report::<P>(&alloc::format!("pingpong-{size}B"), one_way_us, "us");
        report::<P>(
            &alloc::format!("pingpong-bw-{size}B"),
            size as f64 / (round_trip_ns / 2.0) * 1e3,
            "MB/s",
        );
        if size >= 64 * 1024 {
            report::<P>(
                &alloc::format!("memcpy-{size}B"),
                memcpy_rate::<P>(&out[..n], &mut back[..n]),
                "MB/s",
            );
        }
    }
    Ok(())
}

fn echo<R: Region, N: Notify>(ue: &Ircce<R, N>) -> Result<(), Error> {
    let mut raw = [0u8; 16];
    ue.recv(&mut raw, 0).map_err(ircce_err)?;
    let cfg = Config::decode(&raw)?;
    let len = usize::try_from(cfg.max).map_err(|_| Error::Usage("--max too large".into()))?;
    let mut buf = vec![0u8; len];
    for size in sizes(cfg.max) {
        let n = size as usize;
        for _ in 0..cfg.runs * rounds(size) {
            ue.recv(&mut buf[..n], 0).map_err(ircce_err)?;
            ue.send(&buf[..n], 0).map_err(ircce_err)?;
        }
    }
    Ok(())
}

/// MB/s of copying `src` into `dst` on this platform (median of 5).
fn memcpy_rate<P: Host>(src: &[u8], dst: &mut [u8]) -> f64 {
    let reps = ((16u64 << 20) / src.len() as u64).clamp(1, 64);
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let start = P::now_ns();
            for _ in 0..reps {
                dst.copy_from_slice(core::hint::black_box(src));
                core::hint::black_box(&mut *dst);
            }
            let ns = (P::now_ns() - start).max(1) as f64;
            (reps * src.len() as u64) as f64 / ns * 1e3
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, take_output};
    use hermit_ircce::{AtomicRegion, Config as IrcceConfig, PollNotify};
    use std::sync::Arc;

    #[test]
    fn sizes_and_rounds() {
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(5), [1, 2, 4, 5]);
        assert_eq!(sizes(8), [1, 2, 4, 8]);
        assert_eq!(rounds(1), 200);
        assert_eq!(rounds(64 << 20), 2);
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(Config::parse([]).unwrap(), Config::default());
        let c = Config::parse(["--max", "4096", "--runs", "3"]).unwrap();
        assert_eq!((c.max, c.runs), (4096, 3));
        assert!(Config::parse(["--max", "0"]).is_err());
        assert!(Config::parse(["--runs"]).is_err());
        assert!(Config::parse(["--bogus"]).is_err());
        assert!(Config::decode(&[0u8; 16]).is_err());
    }

    #[test]
    fn two_ues_report_every_size() {
        let region = Arc::new(AtomicRegion::new(1 << 20));
        let config = IrcceConfig::new(2);
        let r1 = Arc::clone(&region);
        let echo = std::thread::spawn(move || {
            let ue = Ircce::init(r1, PollNotify, 1, config).unwrap();
            run::<Fake, _, _>(&ue, &Config::default()).unwrap();
        });
        let ue = Ircce::init(region, PollNotify, 0, config).unwrap();
        let cfg = Config {
            max: 100_000,
            runs: 3,
        };
        run::<Fake, _, _>(&ue, &cfg).unwrap();
        echo.join().unwrap();
        let out = take_output();
        assert!(
            out[0].starts_with("info pingpong ues=2 max=100000"),
            "{out:?}"
        );
        for size in sizes(cfg.max) {
            let line = out
                .iter()
                .find(|l| l.starts_with(&format!("bench pingpong-bw-{size}B ")))
                .unwrap_or_else(|| panic!("no bandwidth for {size}: {out:?}"));
            let value: f64 = line.split(' ').nth(2).unwrap().parse().unwrap();
            assert!(value > 0.0, "{line}");
        }
        assert!(out.iter().any(|l| l.starts_with("bench memcpy-65536B ")));
    }
}
