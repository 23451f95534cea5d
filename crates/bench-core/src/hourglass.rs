//! The seed's hourglass (`hg.c`): a tight loop that reads the TSC for a set
//! time and records the gap between consecutive reads. The smallest gap is
//! the loop itself; larger ones are time the program lost to something
//! else (interrupts, the hypervisor, other tasks): OS noise.
//!
//! Reported (all gaps in TSC cycles):
//!
//! | name | meaning |
//! | --- | --- |
//! | `hourglass-loops` | loop iterations (gaps) measured |
//! | `hourglass-min`, `-avg`, `-max` | smallest, mean, largest gap |
//! | `hourglass-threshold` | gaps above this count as noise (default: 4 to 8 times the median gap of a warm-up, a power of 2) |
//! | `hourglass-above` | gaps above the threshold |
//! | `hourglass-noise` | share of the time spent in those gaps, in parts per million |
//! | `hourglass-hist-K` | gaps in `[2^K, 2^(K+1))` cycles (unit `gaps`; only non-empty buckets) |

use crate::{Error, Platform, info, number, report};

/// Settings of `hourglass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long the loop runs, in milliseconds.
    pub ms: u64,
    /// Gaps above this many cycles are noise; `None`: from a warm-up.
    pub threshold: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ms: 1000,
            threshold: None,
        }
    }
}

impl Config {
    /// Parses the arguments after `hourglass`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut cfg = Config::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--ms" => cfg.ms = number(arg, it.next(), 3_600_000)?,
                "--threshold" => cfg.threshold = Some(number(arg, it.next(), u64::MAX >> 1)?),
                other => {
                    return Err(Error::Usage(alloc::format!(
                        "unknown hourglass argument {other:?}; {}",
                        crate::USAGE
                    )));
                }
            }
        }
        Ok(cfg)
    }
}

/// Log2 buckets: bucket `k` holds gaps in `[2^k, 2^(k+1))`; a gap of 0 goes
/// to bucket 0.
pub const BUCKETS: usize = 64;

/// What one loop measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaps {
    /// Number of gaps.
    pub loops: u64,
    /// Smallest gap.
    pub min: u64,
    /// Largest gap.
    pub max: u64,
    /// Sum of all gaps (the loop's length in cycles).
    pub total: u64,
    /// Gaps above the threshold.
    pub above: u64,
    /// Sum of the gaps above the threshold.
    pub above_total: u64,
    /// Histogram of every gap by log2 bucket.
    pub histogram: [u64; BUCKETS],
}

/// The log2 bucket of `gap`.
pub fn bucket(gap: u64) -> usize {
    (63 - (gap | 1).leading_zeros()) as usize
}

/// Reads the TSC until `ticks` cycles have passed (or, if `max_loops` is
/// given, that many gaps were taken), recording every gap.
fn measure<P: Platform>(ticks: u64, max_loops: Option<u64>, threshold: u64) -> Gaps {
    let mut g = Gaps {
        loops: 0,
        min: u64::MAX,
        max: 0,
        total: 0,
        above: 0,
        above_total: 0,
        histogram: [0; BUCKETS],
    };
    let limit = max_loops.unwrap_or(u64::MAX);
    let start = P::cycles();
    let end = start.saturating_add(ticks);
    let mut prev = start;
    loop {
        let now = P::cycles();
        let gap = now.wrapping_sub(prev);
        prev = now;
        g.histogram[bucket(gap)] += 1;
        g.min = g.min.min(gap);
        g.max = g.max.max(gap);
        if gap > threshold {
            g.above += 1;
            g.above_total += gap;
        }
        g.loops += 1;
        if now >= end || g.loops >= limit {
            break;
        }
    }
    g.total = prev.wrapping_sub(start);
    g
}

/// 4 to 8 times a typical gap: `2^(k+3)`, `k` the bucket of the median gap
/// of a warm-up. The smallest gap would do on quiet hardware, but where the
/// loop itself is emulated its cost varies too much for that.
fn default_threshold(warm: &Gaps) -> u64 {
    let half = warm.loops.div_ceil(2);
    let mut seen = 0;
    let k = warm
        .histogram
        .iter()
        .position(|&n| {
            seen += n;
            seen >= half
        })
        .unwrap_or(0);
    1u64.checked_shl(k as u32 + 3).unwrap_or(u64::MAX)
}

/// Runs the hourglass loop of `cfg`.
pub fn run<P: Platform>(cfg: &Config) -> Result<(), Error> {
    let khz = P::tsc_khz();
    if khz == 0 {
        return Err(Error::Check(
            "hourglass: the TSC frequency is unknown".into(),
        ));
    }
    let threshold = match cfg.threshold {
        Some(t) => t,
        None => default_threshold(&measure::<P>(u64::MAX, Some(1000), u64::MAX)),
    };
    let ticks = u64::try_from(u128::from(cfg.ms) * u128::from(khz)).unwrap_or(u64::MAX);
    info::<P>(format_args!(
        "hourglass ms={} tsc-khz={khz} threshold={threshold}",
        cfg.ms
    ));
    let g = measure::<P>(ticks, None, threshold);
    report::<P>("hourglass-loops", g.loops as f64, "count");
    report::<P>("hourglass-min", g.min as f64, "cycles");
    report::<P>(
        "hourglass-avg",
        g.total as f64 / g.loops.max(1) as f64,
        "cycles",
    );
    report::<P>("hourglass-max", g.max as f64, "cycles");
    report::<P>("hourglass-threshold", threshold as f64, "cycles");
    report::<P>("hourglass-above", g.above as f64, "count");
    report::<P>(
        "hourglass-noise",
        g.above_total as f64 * 1e6 / g.total.max(1) as f64,
        "ppm",
    );
    for (k, &n) in g.histogram.iter().enumerate() {
        if n > 0 {
            report::<P>(&alloc::format!("hourglass-hist-{k}"), n as f64, "gaps");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, take_output};

    #[test]
    fn buckets_are_log2() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 1);
        assert_eq!(bucket(1024), 10);
        assert_eq!(bucket(u64::MAX), 63);
    }

    #[test]
    fn gaps_add_up() {
        let g = measure::<Fake>(2_000_000, None, 0);
        assert!(g.loops > 0);
        assert_eq!(g.histogram.iter().sum::<u64>(), g.loops);
        assert!(g.min <= g.max);
        assert!(g.total >= 2_000_000, "{g:?}");
        // Threshold 0: every non-zero gap is above it.
        assert!(g.above_total <= g.total);
        let capped = measure::<Fake>(u64::MAX, Some(50), u64::MAX);
        assert_eq!(capped.loops, 50);
        assert_eq!(capped.above, 0);
    }

    #[test]
    fn threshold_follows_the_median_gap() {
        let mut g = measure::<Fake>(0, Some(1), u64::MAX);
        g.histogram = [0; BUCKETS];
        g.histogram[5] = 60;
        g.histogram[20] = 40;
        g.loops = 100;
        assert_eq!(default_threshold(&g), 256);
        g.histogram[5] = 40;
        g.histogram[20] = 60;
        assert_eq!(default_threshold(&g), 1 << 23);
    }

    #[test]
    fn run_prints_every_line() {
        run::<Fake>(&Config::parse(["--ms", "3"]).unwrap()).unwrap();
        let out = take_output();
        assert!(out[0].starts_with("info hourglass ms=3 tsc-khz=1000000 threshold="));
        for (name, unit) in [
            ("hourglass-loops", "count"),
            ("hourglass-min", "cycles"),
            ("hourglass-avg", "cycles"),
            ("hourglass-max", "cycles"),
            ("hourglass-threshold", "cycles"),
            ("hourglass-above", "count"),
            ("hourglass-noise", "ppm"),
        ] {
            let prefix = alloc::format!("bench {name} ");
            let line = out.iter().find(|l| l.starts_with(&prefix));
            assert!(
                line.is_some_and(|l| l.ends_with(&alloc::format!(" {unit}"))),
                "{name}: {out:?}"
            );
        }
        assert!(out.iter().any(|l| l.starts_with("bench hourglass-hist-")));
    }

    #[test]
    fn config_parses() {
        assert_eq!(
            Config::parse(["--ms", "200", "--threshold", "500"]).unwrap(),
            Config {
                ms: 200,
                threshold: Some(500)
            }
        );
        assert!(Config::parse(["--ms", "0"]).is_err());
        assert!(Config::parse(["--bogus"]).is_err());
    }
}
