//! The output format of the benchmark program, written by the guest (and
//! the native build) and read back by `hermit-bench threads`:
//!
//! ```text
//! info cores=2 reps=5
//! bench spawn-join 1234.5 ns
//! bench spawn-join 3456.0 cycles
//! skip futex-wake-cross-core needs 2 cores, have 1
//! ```
//!
//! Any other line (kernel messages, for example) is not a report line.

use alloc::string::String;
use core::fmt;

/// One report line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `info <free text>`: how the run was set up.
    Info(String),
    /// `bench <name> <value> <unit>`: one figure.
    Bench {
        /// Benchmark name (no whitespace).
        name: String,
        /// The median over the repetitions.
        value: f64,
        /// `ns` or `cycles` (per operation).
        unit: String,
    },
    /// `skip <name> <reason>`: a benchmark that could not run here.
    Skip {
        /// Benchmark name.
        name: String,
        /// Why, for a person.
        reason: String,
    },
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Info(text) => write!(f, "info {text}"),
            Self::Bench { name, value, unit } => write!(f, "bench {name} {value:.1} {unit}"),
            Self::Skip { name, reason } => write!(f, "skip {name} {reason}"),
        }
    }
}

impl Line {
    /// Parses one line; `None` if it is not a well-formed report line.
    pub fn parse(line: &str) -> Option<Line> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_once(' ')?;
        match kind {
            "info" => Some(Line::Info(rest.into())),
            "bench" => {
                let mut words = rest.split(' ');
                let name = words.next().filter(|n| !n.is_empty())?;
                let value: f64 = words.next()?.parse().ok().filter(|v: &f64| v.is_finite())?;
                let unit = words.next().filter(|u| !u.is_empty())?;
                if words.next().is_some() {
                    return None;
                }
                Some(Line::Bench {
                    name: name.into(),
                    value,
                    unit: unit.into(),
                })
            }
            "skip" => {
                let (name, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                if name.is_empty() {
                    return None;
                }
                Some(Line::Skip {
                    name: name.into(),
                    reason: reason.into(),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_round_trip() {
        let l = Line::Bench {
            name: "spawn-join".into(),
            value: 1234.25,
            unit: "ns".into(),
        };
        let text = alloc::format!("{l}");
        assert_eq!(text, "bench spawn-join 1234.2 ns");
        assert_eq!(
            Line::parse(&text),
            Some(Line::Bench {
                name: "spawn-join".into(),
                value: 1234.2,
                unit: "ns".into()
            })
        );
    }

    #[test]
    fn skip_and_info_parse() {
        assert_eq!(
            Line::parse("skip futex-wake-cross-core needs 2 cores, have 1\n"),
            Some(Line::Skip {
                name: "futex-wake-cross-core".into(),
                reason: "needs 2 cores, have 1".into()
            })
        );
        assert_eq!(
            Line::parse("info cores=2 reps=5"),
            Some(Line::Info("cores=2 reps=5".into()))
        );
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for bad in [
            "",
            "bench",
            "bench x",
            "bench x 12",
            "bench x abc ns",
            "bench x NaN ns",
            "bench x 1 ns extra",
            "bench  1 ns",
            "benchmark x 1 ns",
            "[kernel] bench x 1 ns",
            "skip ",
        ] {
            assert_eq!(Line::parse(bad), None, "{bad:?}");
        }
    }
}
