//! `hermit-bench all [--quick|--full] [--out DIR] [--runs N] [--tcg]
//! [--only LIST]`: every benchmark of issue 7 (boot, threads, basic,
//! hourglass, STREAM, footprint) and the file I/O of issue 4 natively, under uhyve and under QEMU (KVM,
//! and TCG with `--tcg`), several interleaved runs each; prints one table of
//! medians and ratios per benchmark and writes `DIR/results.json` and SVG
//! plots (default DIR: `bench-out/`).
//!
//! Builds nothing itself (see [`BUILD`]). A hypervisor that cannot run
//! here gets a column of `-` and a line saying why; a run that fails or
//! hangs costs only its own figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::threads::{Column, parse_output, run_case};
use crate::{boot, footprint, svg, target_dir};

/// What to build before `all` (host tools and kernel images in separate
/// commands: cargo unifies features across one command, and the host side
/// turns on `std` in crates the kernel shares).
pub const BUILD: &str = "cargo build --release -p uhyve -p proxy -p hermit-bench && cargo build --release -p pvh-loader -p hello -p benchmarks && cargo build --release -p bench-threads && cargo build --release -p netio -p httpd";

const USAGE: &str =
    "usage: hermit-bench all [--quick|--full] [--out DIR] [--runs N] [--tcg] [--only LIST]";

/// Every part of the suite, in the order it runs.
pub const PARTS: [&str; 11] = [
    "boot",
    "threads",
    "basic",
    "hourglass",
    "stream",
    "stream-large",
    "stream-sse",
    "stream-sse-large",
    "fileio",
    "netio",
    "footprint",
];

/// Where guests see the `fileio` directory (`HERMIT_MOUNT=DIR:/bench`).
const FILEIO_GUEST_DIR: &str = "/bench";

/// The host directory `fileio` writes into, natively and (mapped) from the
/// guests: one per `hermit-bench` process, created by [`main`] and removed
/// when it is done.
fn fileio_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hermit-bench-fileio-{}", std::process::id()))
}

/// What issue 4 asks of `fileio`, per figure: (name, unit, the largest
/// guest/native ratio that meets the goal, or the smallest when
/// `at_least`).
const FILEIO_GOALS: [(&str, &str, f64, bool); 5] = [
    ("fileio-write-1", "cycles", 2.0, false),
    ("fileio-write", "MB/s", 0.9, true),
    ("fileio-read", "MB/s", 0.9, true),
    ("fileio-write-large", "MB/s", 0.9, true),
    ("fileio-read-large", "MB/s", 0.9, true),
];

/// How VM exits per file call come about, per guest platform; the rows
/// `fileio-exits-*` measure them (see [`fileio_exits`]).
const FILEIO_EXITS: [(&str, &str); 3] = [
    (
        "uhyve",
        "calls go through a queue in guest memory that a uhyve thread polls (no exit while \
         it is awake, one `FsKick` exit for a call after it went to sleep; data moves in \
         guest memory directly); counted by KVM for vCPU 0 (rows fileio-*exits*, \
         differences between runs)",
    ),
    (
        "qemu-kvm",
        "one virtio console request per call (a queue notify, the reply's interrupt), \
         at most 64 KiB each; not counted: KVM serves a vCPU's statistics only to the \
         process that created it, and debugfs's kvm files refuse reads here",
    ),
    ("qemu-tcg", "none: TCG has no VM exits"),
];

/// The runs [`fileio_exits`] compares: (MiB written and read, small calls
/// of each of the three kinds).
const EXIT_RUNS: [(u32, u32); 3] = [(1, 50), (1, 550), (9, 50)];

/// VM exits per file call under uhyve, counted by KVM for vCPU 0
/// (`hermit-bench uhyve-exits`, [`crate::exits`]): three guest runs that
/// differ only in the number of small calls or in the file size, so that
/// boot, open, close and removal cancel out. Figures per call:
/// `fileio-exits-1` (all exits, per 1-byte call), `fileio-exits-64k` (per
/// 64 KiB sequential `write` or `read`), and the same for the guest
/// instructions KVM emulated (`fileio-emulated-*`: on this host's KVM,
/// every CPL 0 instruction). Added to the uhyve column of `p`, once
/// per run; a failure is one line on stderr and no figure. QEMU's exits
/// cannot be counted this way (see [`crate::exits`]).
fn fileio_exits(p: &mut Program, runs: usize) {
    let Some(col) = p
        .columns
        .iter_mut()
        .find(|c| c.name == "uhyve" && c.unavailable.is_none())
    else {
        return;
    };
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let image = target_dir()
        .join(p.image_target)
        .join("release")
        .join(p.image);
    let mount = format!("{}:{FILEIO_GUEST_DIR}", fileio_dir().display());
    for run in 0..runs {
        eprint!("fileio exits {}/{runs} on uhyve ... ", run + 1);
        let mut counts = Vec::new();
        for (mib, small) in EXIT_RUNS {
            let mut c = Command::new(&me);
            c.args(["uhyve-exits", "--mount", &mount])
                .arg(&image)
                .args(["fileio", FILEIO_GUEST_DIR, "--total-mib"])
                .arg(mib.to_string())
                .args(["--chunk-kib", "64", "--large-kib", "0", "--small"])
                .arg(small.to_string())
                .args(["--reps", "1"]);
            match run_case(&mut c, p.limit) {
                Ok(stdout) => counts.push(crate::exits::parse(&stdout)),
                Err(e) => {
                    eprintln!("failed: {e}");
                    break;
                }
            }
        }
        let [a, b, c] = counts.as_slice() else {
            continue;
        };
        let diff = |x: &BTreeMap<String, u64>, key: &str| -> Option<f64> {
            Some(*x.get(key)? as f64 - *a.get(key)? as f64)
        };
        let small_calls = 3.0 * f64::from(EXIT_RUNS[1].1 - EXIT_RUNS[0].1);
        let big_calls = 2.0 * f64::from((EXIT_RUNS[2].0 - EXIT_RUNS[0].0) * 1024 / 64);
        let figures = [
            (
                "fileio-exits-1",
                "exits",
                diff(b, "exits").map(|d| d / small_calls),
            ),
            (
                "fileio-exits-64k",
                "exits",
                diff(c, "exits").map(|d| d / big_calls),
            ),
            (
                "fileio-emulated-1",
                "insns",
                diff(b, "insn_emulation").map(|d| d / small_calls),
            ),
            (
                "fileio-emulated-64k",
                "insns",
                diff(c, "insn_emulation").map(|d| d / big_calls),
            ),
        ];
        eprintln!(
            "{} exits per 1-byte call, {} per 64 KiB call",
            figures[0].2.map_or("-".into(), figure),
            figures[1].2.map_or("-".into(), figure)
        );
        if col.runs.len() <= run {
            col.runs.push(Default::default());
        }
        for (name, unit, v) in figures {
            if let Some(v) = v {
                col.runs[run].figures.insert((name.into(), unit.into()), v);
            }
        }
    }
}

/// Why `all` could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A bad command-line argument.
    #[error("{0}")]
    Usage(String),
    /// An image or tool is not built.
    #[error("{0} is missing; build with `{BUILD}`")]
    Missing(PathBuf),
    /// Cannot find our own executable (for the native column).
    #[error("cannot find the hermit-bench executable: {0}")]
    SelfExe(std::io::Error),
    /// Cannot write the results.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    /// Boot or footprint could not start (missing tools).
    #[error("{0}")]
    Setup(String),
}

/// Quick (CI smoke test, well under a minute) or full (for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tiny sizes, two runs.
    Quick,
    /// Real sizes, three runs.
    Full,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
        }
    }
}

/// Parsed `all` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Quick or full.
    pub mode: Mode,
    /// Output directory.
    pub out: PathBuf,
    /// Interleaved runs of every program (boot: more, it is cheap).
    pub runs: usize,
    /// Also QEMU with TCG.
    pub tcg: bool,
    /// Parts to run.
    pub only: Vec<&'static str>,
}

/// Parses the arguments after `all`.
pub fn parse_options(args: &[String]) -> Result<Options, SuiteError> {
    let mut mode = Mode::Quick;
    let mut out = PathBuf::from("bench-out");
    let mut runs = None;
    let mut tcg = false;
    let mut only: Vec<&'static str> = PARTS.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => mode = Mode::Quick,
            "--full" => mode = Mode::Full,
            "--tcg" => tcg = true,
            "--out" => {
                out = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| SuiteError::Usage("--out takes a directory".into()))?
            }
            "--runs" => {
                runs = Some(
                    it.next()
                        .and_then(|v| v.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| {
                            SuiteError::Usage("--runs takes a positive number".into())
                        })?,
                )
            }
            "--only" => {
                let list = it
                    .next()
                    .ok_or_else(|| SuiteError::Usage("--only takes a list".into()))?;
                only = Vec::new();
                for name in list.split(',') {
                    let part = PARTS.iter().find(|p| **p == name).ok_or_else(|| {
                        SuiteError::Usage(format!(
                            "--only: unknown part {name:?}; parts: {}",
                            PARTS.join(",")
                        ))
                    })?;
                    only.push(part);
                }
            }
            _ => return Err(SuiteError::Usage(USAGE.into())),
        }
    }
    let runs = runs.unwrap_or(match mode {
        Mode::Quick => 2,
        Mode::Full => 3,
    });
    Ok(Options {
        mode,
        out,
        runs,
        tcg,
        only,
    })
}

/// A guest platform: how the proxy is told to use it.
struct Guest {
    key: &'static str,
    env: Vec<(&'static str, &'static str)>,
    unavailable: Option<String>,
}

fn guests(tcg: bool) -> Vec<Guest> {
    let kvm = uhyve::kvm_available().err();
    let qemu = boot::qemu_unavailable();
    let mut g = vec![
        Guest {
            key: "uhyve",
            env: vec![("HERMIT_ISLE", "uhyve")],
            unavailable: kvm.clone(),
        },
        Guest {
            key: "qemu-kvm",
            env: vec![("HERMIT_ISLE", "qemu"), ("HERMIT_KVM", "1")],
            unavailable: qemu.clone().or(kvm),
        },
    ];
    if tcg {
        g.push(Guest {
            key: "qemu-tcg",
            env: vec![("HERMIT_ISLE", "qemu"), ("HERMIT_KVM", "0")],
            unavailable: qemu,
        });
    }
    g
}

/// The target `no_std` images are built for.
const NO_STD_TARGET: &str = "x86_64-unknown-none";
/// The stock target of Rust std images (SSE floats).
const STD_TARGET: &str = "x86_64-unknown-hermit";
/// How to build `apps/std-benchmarks` for [`STD_TARGET`].
pub(crate) const STD_BENCHMARKS_BUILD: &str =
    "(cd apps/std-benchmarks && cargo build --release --target x86_64-unknown-hermit)";

/// A benchmark program run on every platform.
struct Program {
    name: &'static str,
    /// One line for the table heading.
    about: String,
    image: &'static str,
    /// The image's target (its directory under the target directory).
    image_target: &'static str,
    /// How to build the image when a missing one is not an error (the
    /// program's guest columns then say so); `None`: it must exist.
    build_hint: Option<&'static str>,
    native_args: Vec<String>,
    guest_args: Vec<String>,
    guest_env: Vec<(&'static str, String)>,
    /// Platforms it cannot run on, with why.
    excluded: Vec<(&'static str, String)>,
    limit: Duration,
    /// Figures for the table, in order: (name, unit).
    rows: Vec<(String, &'static str)>,
    columns: Vec<Column>,
    commands: Vec<Option<Command>>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The host CPU single-CPU benchmarks are pinned to (the last one this
/// process may use) as an index into the allowed set, and its number.
fn pinned_cpu() -> (usize, usize) {
    let all = crate::native::allowed().unwrap_or_default();
    match all.last() {
        Some(&cpu) => (all.len() - 1, cpu),
        None => (0, 0),
    }
}

fn programs(o: &Options) -> Vec<Program> {
    let quick = o.mode == Mode::Quick;
    let (cpu_index, cpu) = pinned_cpu();
    let pin_native = vec!["native".to_string(), "--cpu".into(), cpu_index.to_string()];
    let pin_guest = vec![("HERMIT_CPUS", format!("{cpu}-{cpu}"))];
    let limit = Duration::from_secs(if quick { 60 } else { 300 });
    let thread_cpus = crate::native::allowed().map_or(1, |a| a.len().clamp(1, 2));
    let mut list = Vec::new();

    let thread_args = if quick {
        strings(&["--reps", "1", "--iters", "5"])
    } else {
        Vec::new()
    };
    let mut native = strings(&["native-threads", "--cpus"]);
    native.push(thread_cpus.to_string());
    native.extend(thread_args.clone());
    list.push(Program {
        name: "threads",
        about: format!(
            "thread-bench, {thread_cpus} CPU(s), ns per operation{}",
            if quick { " (quick: 5 iterations)" } else { "" }
        ),
        image: "bench-threads",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: native,
        guest_args: thread_args,
        guest_env: vec![("HERMIT_CPUS", thread_cpus.to_string())],
        excluded: Vec::new(),
        limit,
        rows: thread_bench::Bench::ALL
            .iter()
            .map(|b| (b.name().to_string(), "ns"))
            .collect(),
        columns: Vec::new(),
        commands: Vec::new(),
    });

    let basic_args = if quick {
        strings(&["basic", "--reps", "3", "--iters", "100", "--touch-mib", "1"])
    } else {
        strings(&[
            "basic",
            "--reps",
            "5",
            "--iters",
            "1000",
            "--touch-mib",
            "16",
        ])
    };
    let mut rows = Vec::new();
    for unit in ["ns", "cycles"] {
        for b in bench_core::basic::Bench::ALL {
            for f in b.figures() {
                rows.push((f.to_string(), unit));
            }
        }
    }
    list.push(Program {
        name: "basic",
        about: "basic (per operation; alloc-zeroed and first-touch per 4 KiB page), 1 CPU, pinned"
            .into(),
        image: "benchmarks",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: [pin_native.clone(), basic_args.clone()].concat(),
        guest_args: basic_args,
        guest_env: pin_guest.clone(),
        excluded: Vec::new(),
        limit,
        rows,
        columns: Vec::new(),
        commands: Vec::new(),
    });

    let ms = if quick { "200" } else { "5000" };
    let hg_args = strings(&["hourglass", "--ms", ms]);
    list.push(Program {
        name: "hourglass",
        about: format!("hourglass, {ms} ms tight rdtsc loop, 1 CPU, pinned; gaps in TSC cycles"),
        image: "benchmarks",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: [pin_native.clone(), hg_args.clone()].concat(),
        guest_args: hg_args,
        guest_env: pin_guest.clone(),
        excluded: Vec::new(),
        limit,
        rows: vec![
            ("hourglass-loops".into(), "count"),
            ("hourglass-min".into(), "cycles"),
            ("hourglass-avg".into(), "cycles"),
            ("hourglass-max".into(), "cycles"),
            ("hourglass-threshold".into(), "cycles"),
            ("hourglass-above".into(), "count"),
            ("hourglass-noise".into(), "ppm"),
        ],
        columns: Vec::new(),
        commands: Vec::new(),
    });

    let stream_rows: Vec<(String, &'static str)> = bench_core::stream::KERNELS
        .iter()
        .map(|k| (k.to_string(), "MB/s"))
        .collect();
    let (elements, ntimes) = if quick { ("2000", "2") } else { ("10000", "3") };
    let stream_args = strings(&["stream", "--elements", elements, "--ntimes", ntimes]);
    list.push(Program {
        name: "stream",
        about: format!(
            "STREAM, small arrays ({elements} f64 each: in cache), best of {} passes, MB/s",
            ntimes.parse::<u32>().unwrap_or(2) - 1
        ),
        image: "benchmarks",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: [pin_native.clone(), stream_args.clone()].concat(),
        guest_args: stream_args,
        guest_env: pin_guest.clone(),
        excluded: Vec::new(),
        limit,
        rows: stream_rows.clone(),
        columns: Vec::new(),
        commands: Vec::new(),
    });

    if !quick {
        let large = strings(&["stream", "--elements", "10000000", "--ntimes", "10"]);
        let mut env = pin_guest.clone();
        env.push(("HERMIT_MEM", "1G".into()));
        list.push(Program {
            name: "stream-large",
            about: "STREAM, 3 arrays of 10,000,000 f64 (76 MiB each, beyond the caches), best of 9 passes, MB/s".into(),
            image: "benchmarks",
            image_target: NO_STD_TARGET,
            build_hint: None,
            native_args: [pin_native.clone(), large.clone()].concat(),
            guest_args: large,
            guest_env: env,
            excluded: Vec::new(),
            limit,
            rows: stream_rows.clone(),
            columns: Vec::new(),
            commands: Vec::new(),
        });
    }

    // The same STREAM in a Rust std image for the stock target, whose f64
    // code uses SSE like the native build's: memory bandwidth rather than
    // soft-float library calls.
    let sse_excluded = vec![(
        "qemu-kvm",
        "under QEMU the PVH loader and the kernel's first instructions run emulated on this host's \
         KVM, which cannot emulate SSE (uhyve starts the guest natively)"
            .to_string(),
    )];
    let sse_sizes: &[(&str, &str, &str, &str)] = if quick {
        &[("stream-sse", elements, ntimes, "in cache")]
    } else {
        &[
            ("stream-sse", elements, ntimes, "in cache"),
            (
                "stream-sse-large",
                "10000000",
                "10",
                "76 MiB each, beyond the caches",
            ),
        ]
    };
    for &(name, elements, ntimes, what) in sse_sizes {
        let args = strings(&["stream", "--elements", elements, "--ntimes", ntimes]);
        let mut env = pin_guest.clone();
        env.push(("HERMIT_MEM", "1G".into()));
        list.push(Program {
            name,
            about: format!(
                "STREAM with SSE floats (std-benchmarks for {STD_TARGET}), 3 arrays of {elements} f64 \
                 ({what}), best of {} passes, MB/s",
                ntimes.parse::<u32>().unwrap_or(2) - 1
            ),
            image: "std-benchmarks",
            image_target: STD_TARGET,
            build_hint: Some(STD_BENCHMARKS_BUILD),
            native_args: [pin_native.clone(), args.clone()].concat(),
            guest_args: args,
            guest_env: env,
            excluded: sse_excluded.clone(),
            limit,
            rows: stream_rows.clone(),
            columns: Vec::new(),
            commands: Vec::new(),
        });
    }
    let (total, small, reps) = if quick {
        ("8", "100", "1")
    } else {
        ("64", "1000", "3")
    };
    let fileio_opts = strings(&[
        "--total-mib",
        total,
        "--chunk-kib",
        "64",
        "--large-kib",
        "1024",
        "--small",
        small,
        "--reps",
        reps,
    ]);
    let dir = fileio_dir();
    let mut env = pin_guest;
    env.push((
        "HERMIT_MOUNT",
        format!("{}:{FILEIO_GUEST_DIR}", dir.display()),
    ));
    list.push(Program {
        name: "fileio",
        about: format!(
            "file I/O in a host directory ({}; guests: HERMIT_MOUNT), {total} MiB in 64 KiB \
             calls (-large: 1 MiB calls) into a page-aligned buffer, MB/s median of {reps}; \
             1-byte calls: median cycles of {small} x {reps}, 1 CPU, pinned",
            dir.display()
        ),
        image: "benchmarks",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: [
            pin_native,
            vec!["fileio".into(), dir.display().to_string()],
            fileio_opts.clone(),
        ]
        .concat(),
        guest_args: [vec!["fileio".into(), FILEIO_GUEST_DIR.into()], fileio_opts].concat(),
        guest_env: env,
        excluded: Vec::new(),
        limit,
        rows: bench_core::fileio::THROUGHPUT
            .iter()
            .map(|n| (n.to_string(), "MB/s"))
            .chain(["cycles", "ns"].into_iter().flat_map(|u| {
                bench_core::fileio::SMALL
                    .iter()
                    .map(move |n| (n.to_string(), u))
            }))
            .chain(
                [
                    ("fileio-exits-1", "exits"),
                    ("fileio-exits-64k", "exits"),
                    ("fileio-emulated-1", "insns"),
                    ("fileio-emulated-64k", "insns"),
                ]
                .into_iter()
                .map(|(n, u)| (n.to_string(), u)),
            )
            .collect(),
        columns: Vec::new(),
        commands: Vec::new(),
    });
    list.retain(|p| o.only.contains(&p.name));
    list
}

/// One line per guest column: each of [`FILEIO_GOALS`] as the ratio to
/// native and whether it meets the goal.
pub fn fileio_goals(columns: &[Column]) -> Vec<String> {
    let Some(native) = columns.first() else {
        return Vec::new();
    };
    columns
        .iter()
        .skip(1)
        .filter(|c| c.unavailable.is_none())
        .map(|c| {
            let parts: Vec<String> = FILEIO_GOALS
                .iter()
                .map(|&(name, unit, goal, at_least)| {
                    let op = if at_least { ">=" } else { "<=" };
                    match (native.median(name, unit), c.median(name, unit)) {
                        (Some(b), Some(v)) if b > 0.0 => {
                            let r = v / b;
                            let met = if at_least { r >= goal } else { r <= goal };
                            format!(
                                "{name} {}x native (goal {op} {goal}x: {})",
                                figure(r),
                                if met { "met" } else { "not met" }
                            )
                        }
                        _ => format!("{name}: no figure"),
                    }
                })
                .collect();
            format!("{}: {}", c.name, parts.join("; "))
        })
        .collect()
}

fn existing(path: PathBuf) -> Result<PathBuf, SuiteError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(SuiteError::Missing(path))
    }
}

fn column(name: &str, unavailable: Option<String>) -> Column {
    Column {
        name: name.into(),
        unavailable,
        runs: Vec::new(),
        failures: Vec::new(),
    }
}

/// Sets up the columns and commands of every program.
fn prepare(programs: &mut [Program], guests: &[Guest]) -> Result<(), SuiteError> {
    let target = target_dir();
    let me = std::env::current_exe().map_err(SuiteError::SelfExe)?;
    let proxy = existing(target.join("release/proxy"))?;
    for p in programs {
        let path = target.join(p.image_target).join("release").join(p.image);
        let (image, missing) = match (existing(path), p.build_hint) {
            (Ok(image), _) => (image, None),
            (Err(_), Some(hint)) => (PathBuf::new(), Some(format!("not built: {hint}"))),
            (Err(e), None) => return Err(e),
        };
        let mut native = Command::new(&me);
        native.args(&p.native_args);
        p.columns.push(column("native", None));
        p.commands.push(Some(native));
        for g in guests {
            let excluded = p
                .excluded
                .iter()
                .find(|(k, _)| *k == g.key)
                .map(|(_, why)| why.clone());
            let unavailable = g.unavailable.clone().or(excluded).or(missing.clone());
            let command = unavailable.is_none().then(|| {
                let mut c = Command::new(&proxy);
                c.arg(&image).args(&p.guest_args);
                for (k, v) in &g.env {
                    c.env(k, v);
                }
                for (k, v) in &p.guest_env {
                    c.env(k, v);
                }
                c
            });
            p.columns.push(column(g.key, unavailable));
            p.commands.push(command);
        }
    }
    Ok(())
}

/// Runs every program `runs` times, interleaved: run 1 of every program on
/// every platform, then run 2, and so on.
fn run_programs(programs: &mut [Program], runs: usize) {
    for run in 1..=runs {
        for p in programs.iter_mut() {
            for (col, cmd) in p.columns.iter_mut().zip(&mut p.commands) {
                let Some(c) = cmd.as_mut() else {
                    continue;
                };
                eprint!("run {run}/{runs}: {} on {} ... ", p.name, col.name);
                let start = Instant::now();
                match run_case(c, p.limit) {
                    Ok(stdout) => {
                        eprintln!("{:.1} s", start.elapsed().as_secs_f64());
                        col.runs.push(parse_output(&stdout));
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        col.failures.push(format!("run {run}: {e}"));
                        if col.failures.len() >= 2 {
                            *cmd = None;
                        }
                    }
                }
            }
        }
    }
    for p in programs {
        for c in &mut p.columns {
            if c.unavailable.is_none() && c.runs.is_empty() {
                c.unavailable = Some("every run failed".into());
            }
        }
    }
}

/// Formats a figure with about three significant digits.
fn figure(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A Markdown table: the first row is the heading; numeric columns (all
/// but the first) are right-aligned.
pub fn markdown(rows: &[Vec<String>]) -> String {
    let Some(head) = rows.first() else {
        return String::new();
    };
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i == 0 {
                let _ = write!(out, " {cell:<w$} |");
            } else {
                let _ = write!(out, " {cell:>w$} |");
            }
        }
        out.push('\n');
        if n == 0 {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let dashes = "-".repeat((*w).max(3));
                if i == 0 {
                    let _ = write!(out, " {dashes} |");
                } else {
                    let _ = write!(out, " {}: |", &dashes[1..]);
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The rows of a program's table: its figures (and those of any other
/// benchmark measured, except histogram buckets) with one column per platform and the ratio of
/// each guest to native.
pub fn program_table(rows: &[(String, &str)], columns: &[Column]) -> Vec<Vec<String>> {
    let mut head = vec!["figure".to_string()];
    head.extend(columns.iter().map(|c| c.name.clone()));
    head.extend(columns.iter().skip(1).map(|c| format!("{}/native", c.name)));
    let mut table = vec![head];
    let mut all: Vec<(String, String)> = rows
        .iter()
        .map(|(n, u)| (n.clone(), u.to_string()))
        .collect();
    for c in columns {
        for r in &c.runs {
            for key in r.figures.keys() {
                let listed = all.iter().any(|(n, _)| *n == key.0);
                if !listed && !key.0.starts_with("hourglass-hist-") {
                    all.push(key.clone());
                }
            }
        }
    }
    for (name, unit) in &all {
        let cells: Vec<Option<f64>> = columns.iter().map(|c| c.median(name, unit)).collect();
        if cells.iter().all(Option::is_none) {
            continue;
        }
        let mut row = vec![format!("{name} ({unit})")];
        row.extend(cells.iter().map(|v| v.map_or("-".into(), figure)));
        let base = cells.first().copied().flatten();
        for v in cells.iter().skip(1) {
            row.push(match (base, v) {
                (Some(b), Some(v)) if b > 0.0 => format!("{}x", figure(v / b)),
                _ => "-".into(),
            });
        }
        table.push(row);
    }
    table
}

fn program_json(p: &Program) -> Value {
    let mut figures: BTreeMap<String, Value> = BTreeMap::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for c in &p.columns {
        for r in &c.runs {
            for k in r.figures.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    for (name, unit) in &keys {
        let mut per = serde_json::Map::new();
        for c in &p.columns {
            let runs: Vec<f64> = c
                .runs
                .iter()
                .filter_map(|r| r.figures.get(&(name.clone(), unit.clone())).copied())
                .collect();
            if let Some(m) = c.median(name, unit) {
                per.insert(c.name.clone(), json!({ "median": m, "runs": runs }));
            }
        }
        figures.insert(
            format!("{name} {unit}"),
            json!({ "name": name, "unit": unit, "platforms": per }),
        );
    }
    let platforms: serde_json::Map<String, Value> = p
        .columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({
                    "available": c.unavailable.is_none(),
                    "reason": c.unavailable,
                    "runs": c.runs.len(),
                    "failures": c.failures,
                }),
            )
        })
        .collect();
    json!({
        "about": p.about,
        "native_args": p.native_args,
        "guest_image": p.image,
        "guest_args": p.guest_args,
        "guest_env": p.guest_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "platforms": platforms,
        "figures": figures,
    })
}

fn boot_table(r: &boot::BootResult) -> Vec<Vec<String>> {
    let mut t = vec![strings(&["case", "median (ms)", "min", "max", "x native"])];
    let base = r.cases.first().and_then(boot::BootCase::median);
    for c in &r.cases {
        match (c.median(), c.times.iter().min(), c.times.iter().max()) {
            (Some(m), Some(lo), Some(hi)) => t.push(vec![
                c.name.to_string(),
                format!("{:.3}", boot::ms(m)),
                format!("{:.3}", boot::ms(*lo)),
                format!("{:.3}", boot::ms(*hi)),
                base.map_or("-".into(), |b| {
                    format!("{}x", figure(m.as_secs_f64() / b.as_secs_f64()))
                }),
            ]),
            _ => t.push(vec![
                c.name.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
    }
    t
}

fn boot_json(r: &boot::BootResult) -> Value {
    let cases: serde_json::Map<String, Value> = r
        .cases
        .iter()
        .map(|c| {
            let runs: Vec<f64> = c.times.iter().map(|t| boot::ms(*t)).collect();
            (
                c.key.to_string(),
                json!({
                    "name": c.name,
                    "available": c.unavailable.is_none(),
                    "reason": c.unavailable,
                    "median_ms": c.median().map(boot::ms),
                    "runs_ms": runs,
                }),
            )
        })
        .collect();
    json!({
        "image": r.image.display().to_string(),
        "image_bytes": r.image_bytes,
        "runs": r.runs,
        "cases": cases,
    })
}

fn footprint_table(f: &footprint::Footprint) -> Vec<Vec<String>> {
    let mut t = vec![strings(&["figure", "value"])];
    t.push(vec![
        "hello image".into(),
        format!(
            "{} bytes ({:.1} KiB)",
            f.image_bytes,
            f.image_bytes as f64 / 1024.0
        ),
    ]);
    if let Some(b) = f.native_bytes {
        t.push(vec![
            "native static C hello".into(),
            format!("{b} bytes ({:.1} KiB)", b as f64 / 1024.0),
        ]);
    }
    if let Some(k) = f.native_max_rss_kib {
        t.push(vec!["native hello peak RSS".into(), format!("{k} KiB")]);
    }
    for (key, found) in &f.min_mem_mib {
        t.push(vec![
            format!("smallest HERMIT_MEM for hello, {key}"),
            match found {
                Ok(m) => format!("{m} MiB"),
                Err(e) => format!("- ({e})"),
            },
        ]);
    }
    t
}

fn footprint_json(f: &footprint::Footprint) -> Value {
    let min: serde_json::Map<String, Value> = f
        .min_mem_mib
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    Ok(m) => json!({ "mib": m }),
                    Err(e) => json!({ "mib": null, "reason": e }),
                },
            )
        })
        .collect();
    json!({
        "hello_image_bytes": f.image_bytes,
        "native_hello_bytes": f.native_bytes,
        "native_hello_max_rss_kib": f.native_max_rss_kib,
        "max_mib_tried": footprint::MAX_MIB,
        "min_hermit_mem_mib": min,
    })
}

/// The hourglass histogram of a column: per bucket, the sum over runs.
fn histogram(c: &Column) -> Vec<u64> {
    let mut h = vec![0u64; bench_core::hourglass::BUCKETS];
    for r in &c.runs {
        for ((name, unit), v) in &r.figures {
            if unit != "gaps" {
                continue;
            }
            if let Some(k) = name
                .strip_prefix("hourglass-hist-")
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|&k| k < h.len())
            {
                h[k] += *v as u64;
            }
        }
    }
    h
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, SuiteError> {
    std::fs::write(&path, text).map_err(|e| SuiteError::Write(path.clone(), e))?;
    Ok(path)
}

/// Plots of the program benchmarks; returns the files written.
fn plots(
    out: &Path,
    programs: &[Program],
    boot: Option<&boot::BootResult>,
) -> Result<Vec<PathBuf>, SuiteError> {
    let mut files = Vec::new();
    if let Some(b) = boot {
        let groups: Vec<svg::Group> = b
            .cases
            .iter()
            .map(|c| (c.name.to_string(), vec![c.median().map(boot::ms)]))
            .collect();
        files.push(write(
            out.join("boot.svg"),
            &svg::bars(
                "hello, process start to exit (median)",
                "ms",
                &["median".into()],
                &groups,
            ),
        )?);
    }
    for p in programs {
        let series: Vec<String> = p.columns.iter().map(|c| c.name.clone()).collect();
        if p.name == "hourglass" {
            let panels: Vec<(String, Vec<u64>)> = p
                .columns
                .iter()
                .filter(|c| !c.runs.is_empty())
                .map(|c| (c.name.clone(), histogram(c)))
                .collect();
            files.push(write(
                out.join("hourglass.svg"),
                &svg::histograms(&format!("{} (all runs)", p.about), &panels),
            )?);
            continue;
        }
        let unit = match p.name {
            "stream" | "stream-large" | "stream-sse" | "stream-sse-large" | "netio" => "MB/s",
            _ => "ns",
        };
        let groups: Vec<svg::Group> = p
            .rows
            .iter()
            .filter(|(_, u)| *u == unit)
            .map(|(name, u)| {
                (
                    name.clone(),
                    p.columns.iter().map(|c| c.median(name, u)).collect(),
                )
            })
            .collect();
        files.push(write(
            out.join(format!("{}.svg", p.name)),
            &svg::bars(&p.about, unit, &series, &groups),
        )?);
    }
    Ok(files)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu,
        "linux": kernel,
        "kvm": uhyve::kvm_available().err().map_or("usable".to_string(), |e| format!("unusable: {e}")),
        "qemu": boot::qemu_unavailable().unwrap_or_else(|| "installed".into()),
    })
}

/// Runs the `netio` part ([`crate::netio`]) and wraps its columns as a
/// program, so that tables, JSON and plots treat it like the others.
fn netio_program(o: &Options, guests: &[Guest]) -> Result<Program, SuiteError> {
    use crate::netio::{Amount, Built, Platform};
    let target = target_dir();
    let built = Built {
        proxy: existing(target.join("release/proxy"))?,
        netio: existing(target.join("x86_64-unknown-none/release/netio"))?,
        httpd: existing(target.join("x86_64-unknown-none/release/httpd"))?,
    };
    let quick = o.mode == Mode::Quick;
    // Guests move less than the host's loopback: every packet crosses the
    // guest's stack, the virtual card and the host's user-mode network. 64
    // MiB keeps the connection's start (slow start, the first wake-ups) a
    // small part of the time at the large sizes.
    let (native, guest) = if quick {
        (
            Amount {
                base: 1 << 20,
                calls: 16_384,
            },
            Amount {
                base: 1 << 20,
                calls: 16_384,
            },
        )
    } else {
        (
            Amount {
                base: 256 << 20,
                calls: 1 << 20,
            },
            Amount {
                base: 64 << 20,
                calls: 131_072,
            },
        )
    };
    let platforms: Vec<Platform<'_>> = guests
        .iter()
        .map(|g| Platform {
            key: g.key,
            env: g.env.clone(),
            unavailable: g.unavailable.clone(),
            amount: guest,
        })
        .collect();
    let columns = crate::netio::measure(&built, native, &platforms, o.runs);
    let amount = |a: Amount| format!("{} KiB, at most {} calls", a.base >> 10, a.calls);
    Ok(Program {
        name: "netio",
        about: format!(
            "TCP throughput per message size, guest (or native thread) as server, host client; \
             per size and direction native {}, guests {}; http-get: GET / from httpd",
            amount(native),
            amount(guest)
        ),
        image: "netio",
        image_target: NO_STD_TARGET,
        build_hint: None,
        native_args: Vec::new(),
        guest_args: Vec::new(),
        guest_env: Vec::new(),
        excluded: Vec::new(),
        limit: Duration::from_secs(600),
        rows: crate::netio::rows(),
        columns,
        commands: Vec::new(),
    })
}

/// `hermit-bench all ...`.
pub fn main(args: &[String]) -> Result<(), SuiteError> {
    let o = parse_options(args)?;
    let started = Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::create_dir_all(&o.out).map_err(|e| SuiteError::Write(o.out.clone(), e))?;
    // Results are machine-specific: keep them out of git wherever they land.
    let ignore = o.out.join(".gitignore");
    if !ignore.exists() {
        write(ignore, "*\n")?;
    }
    let guests = guests(o.tcg);
    for g in &guests {
        if let Some(why) = &g.unavailable {
            eprintln!("{}: skipped: {why}", g.key);
        }
    }
    let mut programs = programs(&o);
    prepare(&mut programs, &guests)?;
    let fileio = programs.iter().any(|p| p.name == "fileio").then(fileio_dir);
    if let Some(dir) = &fileio {
        std::fs::create_dir_all(dir).map_err(|e| SuiteError::Write(dir.clone(), e))?;
    }

    let boot = if o.only.contains(&"boot") {
        eprintln!("boot: hello, {} runs per case ...", o.runs * 5);
        Some(boot::measure(o.runs * 5, o.tcg).map_err(SuiteError::Setup)?)
    } else {
        None
    };
    run_programs(&mut programs, o.runs);
    if let Some(p) = programs.iter_mut().find(|p| p.name == "fileio") {
        fileio_exits(p, o.runs);
    }
    if let Some(dir) = &fileio
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        eprintln!("fileio: cannot remove {}: {e}", dir.display());
    }
    if o.only.contains(&"netio") {
        programs.push(netio_program(&o, &guests)?);
    }
    let footprint = if o.only.contains(&"footprint") {
        eprintln!("footprint: bisecting HERMIT_MEM ...");
        let hvs: Vec<footprint::Hypervisor<'_>> = guests
            .iter()
            .map(|g| footprint::Hypervisor {
                key: g.key,
                env: g.env.clone(),
                unavailable: g.unavailable.clone(),
            })
            .collect();
        Some(footprint::measure(&hvs).map_err(SuiteError::Setup)?)
    } else {
        None
    };

    println!(
        "hermit-bench all --{}: {} interleaved runs per program; medians over runs",
        o.mode.name(),
        o.runs
    );
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        println!(
            "this host's KVM is kvm_pvm: the guest kernel runs natively at hardware CPL 3 \
             (HERMIT_NATIVE=0 would emulate it instruction by instruction)"
        );
    }
    if let Some(b) = &boot {
        println!(
            "\n## boot: hello ({} bytes), process start to exit, {} runs\n",
            b.image_bytes, b.runs
        );
        print!("{}", markdown(&boot_table(b)));
        for c in &b.cases {
            if let Some(why) = &c.unavailable {
                println!("{}: {why}", c.name);
            }
        }
    }
    for p in &programs {
        println!("\n## {}: {}\n", p.name, p.about);
        print!("{}", markdown(&program_table(&p.rows, &p.columns)));
        for c in &p.columns {
            if let Some(why) = &c.unavailable {
                println!("{}: skipped: {why}", c.name);
            }
            for f in &c.failures {
                println!("{}: failed {f}", c.name);
            }
        }
        if p.name == "netio" {
            println!("\ngoal (issue 5): >= 3 Gbit/s with 32 KiB messages on uhyve");
            for line in crate::netio::goals(&p.columns) {
                println!("{line}");
            }
        }
        if p.name == "fileio" {
            println!(
                "\ngoals (issue 4): a 1-byte write within 2x of native, sequential I/O within 10%"
            );
            for line in fileio_goals(&p.columns) {
                println!("{line}");
            }
            println!("\nVM exits per file call:");
            for (key, how) in FILEIO_EXITS {
                if p.columns.iter().any(|c| c.name == key) {
                    println!("{key}: {how}");
                }
            }
        }
    }
    if let Some(f) = &footprint {
        println!("\n## footprint\n");
        print!("{}", markdown(&footprint_table(f)));
    }
    let skipped: Vec<&str> = PARTS
        .iter()
        .copied()
        .filter(|p| {
            !o.only.contains(p)
                || (matches!(*p, "stream-large" | "stream-sse-large") && o.mode == Mode::Quick)
        })
        .collect();
    if !skipped.is_empty() {
        println!("\nnot run: {}", skipped.join(", "));
    }

    let mut benchmarks = serde_json::Map::new();
    if let Some(b) = &boot {
        benchmarks.insert("boot".into(), boot_json(b));
    }
    for p in &programs {
        let mut v = program_json(p);
        if p.name == "netio" {
            v["goals"] = json!(crate::netio::goals(&p.columns));
        }
        if p.name == "fileio" {
            v["goals"] = json!(fileio_goals(&p.columns));
            v["exits_per_call"] = FILEIO_EXITS
                .iter()
                .filter(|(k, _)| p.columns.iter().any(|c| c.name == *k))
                .map(|(k, how)| (k.to_string(), json!(how)))
                .collect::<serde_json::Map<String, Value>>()
                .into();
        }
        benchmarks.insert(p.name.into(), v);
    }
    if let Some(f) = &footprint {
        benchmarks.insert("footprint".into(), footprint_json(f));
    }
    let platforms: Vec<Value> = std::iter::once(json!({"name": "native", "available": true}))
        .chain(guests.iter().map(|g| {
            json!({"name": g.key, "available": g.unavailable.is_none(), "reason": g.unavailable})
        }))
        .collect();
    let report = json!({
        "mode": o.mode.name(),
        "runs": o.runs,
        "started_unix": unix,
        "seconds": started.elapsed().as_secs_f64(),
        "machine": machine(),
        "platforms": platforms,
        "not_run": skipped,
        "benchmarks": benchmarks,
    });
    let text =
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let mut files = vec![write(o.out.join("results.json"), &text)?];
    files.extend(plots(&o.out, &programs, boot.as_ref())?);
    println!();
    for f in files {
        println!("wrote {}", f.display());
    }
    println!("{:.1} s in all", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::RunOutput;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse() {
        let o = parse_options(&args(&[
            "--full",
            "--out",
            "x",
            "--tcg",
            "--only",
            "basic,stream",
        ]))
        .unwrap();
        assert_eq!(o.mode, Mode::Full);
        assert_eq!(o.out, PathBuf::from("x"));
        assert_eq!(o.runs, 3);
        assert!(o.tcg);
        assert_eq!(o.only, vec!["basic", "stream"]);
        let q = parse_options(&[]).unwrap();
        assert_eq!(
            (q.mode, q.runs, q.only.len()),
            (Mode::Quick, 2, PARTS.len())
        );
        assert!(parse_options(&args(&["--only", "nope"])).is_err());
        assert!(parse_options(&args(&["--runs", "0"])).is_err());
        assert!(parse_options(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn programs_follow_the_mode() {
        let quick = programs(&parse_options(&[]).unwrap());
        let names: Vec<&str> = quick.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "threads",
                "basic",
                "hourglass",
                "stream",
                "stream-sse",
                "fileio"
            ]
        );
        // The std image for the stock target: QEMU with KVM cannot run it
        // on this kind of host, and a missing image is not an error.
        let sse = quick.iter().find(|p| p.name == "stream-sse").unwrap();
        assert_eq!(
            (sse.image_target, sse.build_hint.is_some()),
            (STD_TARGET, true)
        );
        assert_eq!(sse.excluded.len(), 1);
        assert_eq!(sse.excluded[0].0, "qemu-kvm");
        let fileio = quick.iter().find(|p| p.name == "fileio").unwrap();
        let dir = fileio_dir().display().to_string();
        assert!(
            fileio.native_args.contains(&dir),
            "{:?}",
            fileio.native_args
        );
        assert_eq!(fileio.guest_args[..2], ["fileio", FILEIO_GUEST_DIR]);
        assert!(
            fileio
                .guest_env
                .contains(&("HERMIT_MOUNT", format!("{dir}:{FILEIO_GUEST_DIR}"))),
            "{:?}",
            fileio.guest_env
        );
        let full = programs(&parse_options(&args(&["--full"])).unwrap());
        let names: Vec<&str> = full.iter().map(|p| p.name).collect();
        assert!(names.contains(&"stream-sse-large"), "{names:?}");
        let large = full.iter().find(|p| p.name == "stream-large").unwrap();
        // Guest code runs natively on kvm_pvm now: every column measures it.
        assert!(large.excluded.is_empty(), "{:?}", large.excluded);
        for p in &full {
            assert!(
                p.native_args[0] == "native" || p.native_args[0] == "native-threads",
                "{:?}",
                p.native_args
            );
        }
    }

    fn col(name: &str, figures: &[(&str, &str, f64)]) -> Column {
        let mut r = RunOutput::default();
        for (n, u, v) in figures {
            r.figures.insert((n.to_string(), u.to_string()), *v);
        }
        Column {
            name: name.into(),
            unavailable: None,
            runs: vec![r],
            failures: Vec::new(),
        }
    }

    #[test]
    fn tables_show_medians_ratios_and_dashes() {
        let cols = vec![
            col(
                "native",
                &[("yield", "ns", 100.0), ("hourglass-hist-5", "gaps", 9.0)],
            ),
            col("uhyve", &[("yield", "ns", 25000.0)]),
            Column {
                unavailable: Some("no KVM".into()),
                ..col("qemu-kvm", &[])
            },
        ];
        let t = program_table(&[("yield".into(), "ns"), ("write-1".into(), "ns")], &cols);
        assert_eq!(
            t[0],
            [
                "figure",
                "native",
                "uhyve",
                "qemu-kvm",
                "uhyve/native",
                "qemu-kvm/native"
            ]
        );
        assert_eq!(t[1], ["yield (ns)", "100", "25000", "-", "250x", "-"]);
        // No figure anywhere: no row; histogram buckets stay out of tables.
        assert_eq!(t.len(), 2);
        let md = markdown(&t);
        assert!(md.lines().nth(1).unwrap().starts_with("| ---"), "{md}");
        assert!(md.contains("|   250x |") || md.contains(" 250x |"), "{md}");
        assert_eq!(histogram(&cols[0])[5], 9);
    }

    #[test]
    fn fileio_goals_compare_with_native() {
        let cols = vec![
            col(
                "native",
                &[
                    ("fileio-write-1", "cycles", 1000.0),
                    ("fileio-write", "MB/s", 1000.0),
                    ("fileio-read", "MB/s", 1000.0),
                    ("fileio-read-large", "MB/s", 1000.0),
                ],
            ),
            col(
                "uhyve",
                &[
                    ("fileio-write-1", "cycles", 1500.0),
                    ("fileio-write", "MB/s", 950.0),
                    ("fileio-read", "MB/s", 500.0),
                    ("fileio-read-large", "MB/s", 990.0),
                ],
            ),
            Column {
                unavailable: Some("no KVM".into()),
                ..col("qemu-kvm", &[])
            },
        ];
        let lines = fileio_goals(&cols);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert!(l.starts_with("uhyve: "), "{l}");
        assert!(
            l.contains("fileio-write-1 1.50x native (goal <= 2x: met)"),
            "{l}"
        );
        assert!(
            l.contains("fileio-write 0.95x native (goal >= 0.9x: met)"),
            "{l}"
        );
        assert!(
            l.contains("fileio-read 0.50x native (goal >= 0.9x: not met)"),
            "{l}"
        );
        assert!(
            l.contains("fileio-read-large 0.99x native (goal >= 0.9x: met)"),
            "{l}"
        );
        assert!(l.contains("fileio-write-large: no figure"), "{l}");
    }
}
