//! `hermit-bench threads [--runs N] [--cpus N] [--tcg] [-- BENCH ARGS...]`:
//! the `thread-bench` benchmarks natively, under uhyve and under QEMU (KVM,
//! and TCG with `--tcg`), interleaved run by run, as one table per unit
//! (ns and TSC cycles per operation): the median over the runs of each
//! run's median over its repetitions.
//!
//! Builds nothing itself. Build first with
//! `cargo build --release -p uhyve -p proxy -p pvh-loader -p hermit-bench && cargo build --release -p bench-threads`
//! (the app asks for hermit's `smp` feature, so it builds on its own).
//! A hypervisor that cannot run here gets a column of `-` and a line that
//! says why; a run that fails marks its column the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thread_bench::Bench;
use thread_bench::report::Line;

use crate::target_dir;

/// What went wrong before any figure could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ThreadsError {
    /// A bad command-line argument.
    #[error("{0}")]
    Usage(String),
    /// An image or tool is not built.
    #[error(
        "{0} is missing; build with `cargo build --release -p uhyve -p proxy -p pvh-loader -p hermit-bench && cargo build --release -p bench-threads`"
    )]
    Missing(PathBuf),
    /// Cannot find our own executable (for the native column).
    #[error("cannot find the hermit-bench executable: {0}")]
    SelfExe(std::io::Error),
    /// Every case failed: nothing to show.
    #[error("no case produced figures")]
    NothingMeasured,
}

const USAGE: &str = "usage: hermit-bench threads [--runs N] [--cpus N] [--tcg] [-- BENCH ARGS...]";

/// The figures of one run: (benchmark, unit) -> value, and skipped
/// benchmarks with their reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunOutput {
    /// Figures by (benchmark name, unit).
    pub figures: BTreeMap<(String, String), f64>,
    /// Benchmarks the program skipped, with the reason.
    pub skipped: BTreeMap<String, String>,
}

/// Reads the report lines of one run's standard output; other lines are
/// ignored.
pub fn parse_output(stdout: &str) -> RunOutput {
    let mut out = RunOutput::default();
    for line in stdout.lines() {
        match Line::parse(line) {
            Some(Line::Bench { name, value, unit }) => {
                out.figures.insert((name, unit), value);
            }
            Some(Line::Skip { name, reason }) => {
                out.skipped.insert(name, reason);
            }
            Some(Line::Info(_)) | None => {}
        }
    }
    out
}

/// One column of the table: a way of running the benchmarks and what it
/// measured over all runs.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column heading.
    pub name: String,
    /// Why this column has no figures (unavailable, or a run failed).
    pub unavailable: Option<String>,
    /// Every successful run's figures.
    pub runs: Vec<RunOutput>,
    /// Runs that failed (hung, crashed), with why; their figures are lost
    /// but the other runs still count.
    pub failures: Vec<String>,
}

impl Column {
    /// The median over the runs of `bench`'s figure in `unit`.
    pub fn median(&self, bench: &str, unit: &str) -> Option<f64> {
        if self.unavailable.is_some() {
            return None;
        }
        let key = (bench.to_string(), unit.to_string());
        let mut values: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.figures.get(&key).copied())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(thread_bench::median(&mut values))
        }
    }

    fn skip_reason(&self, bench: &str) -> Option<&str> {
        self.runs
            .iter()
            .find_map(|r| r.skipped.get(bench).map(String::as_str))
    }
}

/// Formats a figure with three significant digits or whole units.
fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table for `unit`: benchmark | one column per case | ratio of
/// `columns[ratio_of]` to `columns[0]` (the native baseline).
pub fn render_table(columns: &[Column], unit: &str, ratio_of: usize) -> String {
    let mut names: Vec<String> = Bench::ALL.iter().map(|b| b.name().to_string()).collect();
    for c in columns {
        for r in &c.runs {
            for (name, _) in r.figures.keys() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    let ratio_heading = match (columns.first(), columns.get(ratio_of)) {
        (Some(base), Some(other)) => format!("{}/{}", other.name, base.name),
        _ => "ratio".to_string(),
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut heading = vec![format!("benchmark ({unit}/op)")];
    heading.extend(columns.iter().map(|c| c.name.clone()));
    heading.push(ratio_heading);
    rows.push(heading);
    for name in &names {
        let cells: Vec<Option<f64>> = columns.iter().map(|c| c.median(name, unit)).collect();
        let any_skip = columns.iter().any(|c| c.skip_reason(name).is_some());
        if cells.iter().all(Option::is_none) && !any_skip {
            continue;
        }
        let mut row = vec![name.clone()];
        for (c, v) in columns.iter().zip(&cells) {
            row.push(match (v, c.skip_reason(name)) {
                (Some(v), _) => figure(*v),
                (None, Some(_)) => "skip".into(),
                (None, None) => "-".into(),
            });
        }
        row.push(
            match (
                cells.first().copied().flatten(),
                cells.get(ratio_of).copied().flatten(),
            ) {
                (Some(base), Some(v)) if base > 0.0 => format!("{}x", figure(v / base)),
                _ => "-".into(),
            },
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[0]);
            } else {
                let _ = write!(line, " | {cell:>w$}", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if n == 0 {
            let total = line.trim_end().len();
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// A case: how to start one run.
struct Case {
    column: Column,
    command: Option<Command>,
}

fn existing(path: PathBuf) -> Result<PathBuf, ThreadsError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(ThreadsError::Missing(path))
    }
}

/// Runs `cmd` to its end (killed after `limit`), returning its stdout or
/// why it failed.
pub(crate) fn run_case(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for the run: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("exited with {status}: {last}"))
    }
}

/// Parsed `threads` arguments.
#[derive(Debug, PartialEq)]
struct Options {
    runs: usize,
    cpus: usize,
    tcg: bool,
    bench_args: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options, ThreadsError> {
    let mut o = Options {
        runs: 5,
        cpus: 2,
        tcg: false,
        bench_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |flag: &str| {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| ThreadsError::Usage(format!("{flag} takes a positive number")))
        };
        match a.as_str() {
            "--runs" => o.runs = number("--runs")?,
            "--cpus" => o.cpus = number("--cpus")?,
            "--tcg" => o.tcg = true,
            "--" => {
                o.bench_args = it.cloned().collect();
                break;
            }
            _ => return Err(ThreadsError::Usage(USAGE.into())),
        }
    }
    thread_bench::Config::parse(o.bench_args.iter().map(String::as_str))
        .map_err(|e| ThreadsError::Usage(e.to_string()))?;
    Ok(o)
}

fn guest_case(
    name: &str,
    proxy: &Path,
    image: &Path,
    o: &Options,
    env: &[(&str, &str)],
    unavailable: Option<String>,
) -> Case {
    let command = unavailable.is_none().then(|| {
        let mut c = Command::new(proxy);
        c.arg(image)
            .args(&o.bench_args)
            .env("HERMIT_CPUS", o.cpus.to_string());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    });
    Case {
        column: Column {
            name: name.into(),
            unavailable,
            runs: Vec::new(),
            failures: Vec::new(),
        },
        command,
    }
}

/// `hermit-bench threads ...`.
pub fn main(args: &[String]) -> Result<(), ThreadsError> {
    let o = parse_options(args)?;
    let target = target_dir();
    let proxy = existing(target.join("release/proxy"))?;
    existing(target.join("release/uhyve"))?;
    existing(target.join("x86_64-unknown-none/release/pvh-loader"))?;
    let image = existing(target.join("x86_64-unknown-none/release/bench-threads"))?;
    let me = std::env::current_exe().map_err(ThreadsError::SelfExe)?;

    let mut native = Command::new(&me);
    native
        .arg("native-threads")
        .arg("--cpus")
        .arg(o.cpus.to_string())
        .args(&o.bench_args);
    let kvm = uhyve::kvm_available().err();
    let qemu = crate::boot::qemu_unavailable();
    let mut cases = vec![
        Case {
            column: Column {
                name: "native".into(),
                unavailable: None,
                runs: Vec::new(),
                failures: Vec::new(),
            },
            command: Some(native),
        },
        guest_case(
            "uhyve",
            &proxy,
            &image,
            &o,
            &[("HERMIT_ISLE", "uhyve")],
            kvm.clone(),
        ),
        guest_case(
            "qemu-kvm",
            &proxy,
            &image,
            &o,
            &[("HERMIT_ISLE", "qemu"), ("HERMIT_KVM", "1")],
            qemu.clone().or(kvm),
        ),
    ];
    if o.tcg {
        cases.push(guest_case(
            "qemu-tcg",
            &proxy,
            &image,
            &o,
            &[("HERMIT_ISLE", "qemu"), ("HERMIT_KVM", "0")],
            qemu,
        ));
    }
    // A guest run takes about a minute here; a hung guest must not stall
    // the other columns for long.
    let limit = Duration::from_secs(300);
    for run in 1..=o.runs {
        for case in &mut cases {
            let Some(cmd) = case.command.as_mut() else {
                continue;
            };
            eprint!("run {run}/{}: {} ... ", o.runs, case.column.name);
            let start = Instant::now();
            match run_case(cmd, limit) {
                Ok(stdout) => {
                    eprintln!("{:.1} s", start.elapsed().as_secs_f64());
                    case.column.runs.push(parse_output(&stdout));
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    case.column.failures.push(format!("run {run}: {e}"));
                    // A hypervisor that keeps failing is not worth the wait.
                    if case.column.failures.len() >= 2 {
                        case.command = None;
                    }
                }
            }
        }
    }
    let mut columns: Vec<Column> = cases.into_iter().map(|c| c.column).collect();
    for c in &mut columns {
        if c.unavailable.is_none() && c.runs.is_empty() {
            c.unavailable = Some("every run failed".into());
        }
    }
    if columns.iter().all(|c| c.unavailable.is_some()) {
        return Err(ThreadsError::NothingMeasured);
    }
    println!(
        "thread benchmarks, {} CPU(s), {} interleaved runs each; median over runs of each run's median",
        o.cpus, o.runs
    );
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        println!(
            "this host's KVM is kvm_pvm: the guest kernel runs natively at hardware CPL 3; \
             every interrupt and privileged instruction goes through the host"
        );
    }
    for unit in ["ns", "cycles"] {
        println!();
        print!("{}", render_table(&columns, unit, 1));
    }
    for c in &columns {
        if let Some(why) = &c.unavailable {
            println!("{}: skipped: {why}", c.name);
        }
        for f in &c.failures {
            println!("{}: failed {f}", c.name);
        }
    }
    let mut skips: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    for c in &columns {
        for r in c.runs.first().into_iter() {
            for (b, why) in &r.skipped {
                skips.entry(b).or_insert((why, Vec::new())).1.push(&c.name);
            }
        }
    }
    for (b, (why, cols)) in skips {
        println!("{b}: skipped in {}: {why}", cols.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = "[kernel] booting\ninfo cores=1 reps=3\n\
        bench spawn-join 2000000.0 ns\nbench spawn-join 5000000.0 cycles\n\
        bench yield 300000.0 ns\nskip futex-wake-cross-core needs 2 cores, have 1\n\
        bench broken\n";

    #[test]
    fn output_parsing_keeps_report_lines_only() {
        let r = parse_output(GUEST);
        assert_eq!(r.figures.len(), 3);
        assert_eq!(
            r.figures.get(&("spawn-join".into(), "ns".into())),
            Some(&2_000_000.0)
        );
        assert_eq!(
            r.figures.get(&("yield".into(), "ns".into())),
            Some(&300_000.0)
        );
        assert_eq!(
            r.skipped.get("futex-wake-cross-core").map(String::as_str),
            Some("needs 2 cores, have 1")
        );
    }

    fn column(name: &str, outputs: &[&str]) -> Column {
        Column {
            name: name.into(),
            unavailable: None,
            runs: outputs.iter().map(|o| parse_output(o)).collect(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn table_has_medians_ratios_and_gaps() {
        let native = column(
            "native",
            &[
                "bench spawn-join 10000.0 ns\nbench yield 300.0 ns\nbench futex-wake-cross-core 5.0 ns\n",
                "bench spawn-join 20000.0 ns\nbench yield 100.0 ns\nbench futex-wake-cross-core 7.0 ns\n",
                "bench spawn-join 30000.0 ns\nbench yield 200.0 ns\nbench futex-wake-cross-core 6.0 ns\n",
            ],
        );
        let uhyve = column("uhyve", &[GUEST]);
        let qemu = Column {
            name: "qemu-kvm".into(),
            unavailable: Some("no qemu".into()),
            runs: vec![],
            failures: vec![],
        };
        let t = render_table(&[native, uhyve, qemu], "ns", 1);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("benchmark (ns/op)"), "{t}");
        assert!(lines[0].ends_with("uhyve/native"), "{t}");
        assert!(lines[1].chars().all(|c| c == '-'), "{t}");
        let row = |name: &str| {
            let line = lines
                .iter()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row {name}: {t}"));
            line.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("spawn-join"),
            ["spawn-join", "20000", "2000000", "-", "100x"]
        );
        assert_eq!(row("yield"), ["yield", "200", "300000", "-", "1500x"]);
        assert_eq!(
            row("futex-wake-cross-core"),
            ["futex-wake-cross-core", "6.00", "skip", "-", "-"]
        );
        // Benchmarks nobody measured get no row.
        assert!(!t.contains("alloc-64"), "{t}");
    }

    #[test]
    fn options_parse_and_reject() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_options(&args(&[
            "--runs", "3", "--cpus", "1", "--tcg", "--", "yield",
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                runs: 3,
                cpus: 1,
                tcg: true,
                bench_args: vec!["yield".into()]
            }
        );
        assert!(parse_options(&args(&["--runs", "0"])).is_err());
        assert!(parse_options(&args(&["--bogus"])).is_err());
        assert!(parse_options(&args(&["--", "no-such-bench"])).is_err());
    }
}
