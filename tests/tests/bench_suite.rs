//! Smoke tests of the benchmark suite (issue 7): the `benchmarks` app
//! prints every expected `bench` line with tiny sizes under uhyve and QEMU,
//! and `hermit-bench all --quick` prints every table and writes
//! `results.json` (with every benchmark's key) and the SVG plots; the file
//! I/O benchmark (issue 4) runs in a mapped host directory and cleans up
//! after itself. Figures are never judged: speed is read from the output,
//! not asserted.

use std::process::Command;
use std::time::Duration;

use boot_tests::{Hypervisor, built, proxy, require, run_with_limit, target_dir, workspace};

/// The value of `bench <name> <value> <unit>` in `stdout`, if present.
fn figure(stdout: &str, name: &str, unit: &str) -> Option<f64> {
    stdout.lines().find_map(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w.as_slice() {
            ["bench", n, v, u] if *n == name && *u == unit => v.parse().ok(),
            _ => None,
        }
    })
}

fn expect(stdout: &str, name: &str, unit: &str) -> f64 {
    let v = figure(stdout, name, unit)
        .unwrap_or_else(|| panic!("no `bench {name} .. {unit}` line:\n{stdout}"));
    assert!(v.is_finite() && v >= 0.0, "{name}: {v} {unit}");
    v
}

fn basic(hv: Hypervisor) {
    if !require(hv, "benchmarks basic") {
        return;
    }
    let args = ["basic", "--reps", "1", "--iters", "3", "--touch-mib", "1"];
    let out = proxy(hv, "benchmarks", &args, &[]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("kernel-call=hermit::thread::current_id"),
        "{out:?}"
    );
    for name in [
        "kernel-call",
        "yield",
        "malloc-free",
        "alloc-zeroed",
        "first-touch",
        "write-1",
    ] {
        expect(&out.stdout, name, "ns");
        expect(&out.stdout, name, "cycles");
    }
    // write-1 really wrote its three bytes to stderr.
    assert!(out.stderr.contains("..."), "{out:?}");
}

fn hourglass(hv: Hypervisor) {
    if !require(hv, "benchmarks hourglass") {
        return;
    }
    let out = proxy(hv, "benchmarks", &["hourglass", "--ms", "20"], &[]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let loops = expect(&out.stdout, "hourglass-loops", "count");
    let min = expect(&out.stdout, "hourglass-min", "cycles");
    let avg = expect(&out.stdout, "hourglass-avg", "cycles");
    let max = expect(&out.stdout, "hourglass-max", "cycles");
    expect(&out.stdout, "hourglass-threshold", "cycles");
    expect(&out.stdout, "hourglass-above", "count");
    expect(&out.stdout, "hourglass-noise", "ppm");
    assert!(loops >= 1.0 && min <= avg && avg <= max, "{out:?}");
    // The histogram's buckets add up to the loop count.
    let total: f64 = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("bench hourglass-hist-"))
        .filter_map(|l| l.split(' ').nth(1)?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, loops, "{out:?}");
}

fn stream(hv: Hypervisor) {
    if !require(hv, "benchmarks stream") {
        return;
    }
    let args = ["stream", "--elements", "200", "--ntimes", "2"];
    let out = proxy(hv, "benchmarks", &args, &[]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("info stream elements=200 "), "{out:?}");
    for k in ["stream-copy", "stream-scale", "stream-add", "stream-triad"] {
        assert!(expect(&out.stdout, k, "MB/s") > 0.0, "{out:?}");
    }
}

/// Too little memory for the STREAM arrays is a clean failure (status 1),
/// not a crash.
fn stream_out_of_memory(hv: Hypervisor) {
    if !require(hv, "benchmarks stream out of memory") {
        return;
    }
    let args = ["stream", "--elements", "100000000", "--ntimes", "2"];
    let out = proxy(hv, "benchmarks", &args, &[("HERMIT_MEM", "64M")]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stderr.contains("out of memory"), "{out:?}");
}

fn bad_argument(hv: Hypervisor) {
    if !require(hv, "benchmarks bad argument") {
        return;
    }
    for args in [&["nope"][..], &["stream", "--ntimes", "1"], &[]] {
        let out = proxy(hv, "benchmarks", args, &[]);
        assert_eq!(out.status, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains("usage"), "{out:?}");
        assert!(!out.stdout.contains("bench "), "{out:?}");
    }
}

/// A fresh host directory for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-suite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a temp dir");
    dir
}

/// `fileio` in a mapped host directory prints every figure and leaves the
/// directory as it found it.
fn fileio(hv: Hypervisor) {
    if !require(hv, "benchmarks fileio") {
        return;
    }
    let dir = temp_dir(&format!("fileio-{}", hv.isle()));
    let mount = format!("{}:/bench", dir.display());
    let args = [
        "fileio",
        "/bench",
        "--total-mib",
        "1",
        "--chunk-kib",
        "64",
        "--small",
        "5",
        "--reps",
        "1",
    ];
    let out = proxy(hv, "benchmarks", &args, &[("HERMIT_MOUNT", &mount)]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("info fileio file=/bench/hermit-bench-fileio.dat total-mib=1 "),
        "{out:?}"
    );
    for name in [
        "fileio-write",
        "fileio-read",
        "fileio-write-large",
        "fileio-read-large",
    ] {
        assert!(expect(&out.stdout, name, "MB/s") > 0.0, "{out:?}");
    }
    for name in ["fileio-write-1", "fileio-pwrite-1", "fileio-pread-1"] {
        assert!(expect(&out.stdout, name, "cycles") > 0.0, "{out:?}");
        expect(&out.stdout, name, "ns");
    }
    let left: Vec<_> = std::fs::read_dir(&dir).expect("read_dir").collect();
    assert!(left.is_empty(), "fileio left files behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory the guest cannot reach is a clean failure (status 1).
fn fileio_unmapped(hv: Hypervisor) {
    if !require(hv, "benchmarks fileio unmapped") {
        return;
    }
    let out = proxy(hv, "benchmarks", &["fileio", "/not-mapped"], &[]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("file error: creating /not-mapped/"),
        "{out:?}"
    );
}

macro_rules! per_hypervisor {
    ($hv:ident) => {
        #[test]
        fn basic() {
            super::basic(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn hourglass() {
            super::hourglass(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn stream() {
            super::stream(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn stream_out_of_memory() {
            super::stream_out_of_memory(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn fileio() {
            super::fileio(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn fileio_unmapped() {
            super::fileio_unmapped(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn bad_argument() {
            super::bad_argument(boot_tests::Hypervisor::$hv);
        }
    };
}

mod uhyve {
    per_hypervisor!(Uhyve);
}

mod qemu {
    per_hypervisor!(Qemu);
}

/// `hermit-bench all --quick`: every table on stdout, every benchmark in
/// `results.json`, the plots on disk. Runs whatever hypervisors exist here
/// (a missing one is a column of `-`), so it never skips.
#[test]
fn suite_quick() {
    build_hermit_bench();
    let out_dir = std::env::temp_dir().join(format!("bench-suite-{}", std::process::id()));
    let mut cmd = Command::new(target_dir().join("release/hermit-bench"));
    cmd.args(["all", "--quick", "--runs", "1", "--out"])
        .arg(&out_dir);
    let out = run_with_limit(cmd, Duration::from_secs(300));
    assert_eq!(out.status, Some(0), "{out:?}");
    for heading in [
        "## boot:",
        "## threads:",
        "## basic:",
        "## hourglass:",
        "## stream:",
        "## stream-sse:",
        "## fileio:",
        "## netio:",
        "| netio-recv-32768 (MB/s) ",
        "(goal >= 3 Gbit/s: ",
        "## footprint",
        "| kernel-call (ns) ",
        "| hourglass-max (cycles) ",
        "| stream-triad (MB/s) ",
        "| yield (ns) ",
        "smallest HERMIT_MEM for hello, uhyve",
    ] {
        assert!(
            out.stdout.contains(heading),
            "no {heading:?}:\n{}",
            out.stdout
        );
    }
    let json = std::fs::read_to_string(out_dir.join("results.json")).expect("results.json");
    for key in [
        "\"mode\": \"quick\"",
        "\"machine\"",
        "\"platforms\"",
        "\"benchmarks\"",
        "\"boot\"",
        "\"threads\"",
        "\"basic\"",
        "\"hourglass\"",
        "\"stream\"",
        "\"fileio\"",
        "\"netio\"",
        "\"footprint\"",
        "\"hello_image_bytes\"",
        "\"min_hermit_mem_mib\"",
        "\"kernel-call ns\"",
        "\"hourglass-max cycles\"",
        "\"stream-triad MB/s\"",
        "\"native\"",
        "\"median\"",
    ] {
        assert!(json.contains(key), "results.json has no {key}:\n{json}");
    }
    for svg in ["boot", "threads", "basic", "hourglass", "stream"] {
        let text = std::fs::read_to_string(out_dir.join(format!("{svg}.svg")))
            .unwrap_or_else(|e| panic!("{svg}.svg: {e}"));
        assert!(text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"));
    }
    assert!(
        out_dir.join(".gitignore").exists(),
        "no .gitignore in the output"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The guest images and `hermit-bench` itself.
fn build_hermit_bench() {
    built();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace())
        .args(["build", "--release", "-p", "hermit-bench"])
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "building hermit-bench failed");
    // STREAM with SSE floats: a std image for the stock target.
    let status = Command::new(&cargo)
        .current_dir(workspace().join("apps/std-benchmarks"))
        .args(["build", "--release", "--target", "x86_64-unknown-hermit"])
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "building std-benchmarks failed");
}

/// `hermit-bench all --quick --only fileio`: the fileio table with a
/// native figure in every row, the goal and exit lines, its part of
/// `results.json` and its plot; the host directory is gone afterwards.
/// Guests that cannot run here are columns of `-` (said on stdout), so
/// the test still checks the native column and the output's shape.
#[test]
fn suite_quick_fileio() {
    build_hermit_bench();
    let out_dir = std::env::temp_dir().join(format!("bench-suite-fileio-{}", std::process::id()));
    let mut cmd = Command::new(target_dir().join("release/hermit-bench"));
    cmd.args(["all", "--quick", "--runs", "1", "--only", "fileio", "--out"])
        .arg(&out_dir);
    let out = run_with_limit(cmd, Duration::from_secs(300));
    assert_eq!(out.status, Some(0), "{out:?}");
    let stdout = &out.stdout;
    for heading in [
        "## fileio: file I/O in a host directory",
        "goals (issue 4): a 1-byte write within 2x of native",
        "VM exits per file call:",
    ] {
        assert!(stdout.contains(heading), "no {heading:?}:\n{stdout}");
    }
    for row in [
        "fileio-write (MB/s)",
        "fileio-read (MB/s)",
        "fileio-write-large (MB/s)",
        "fileio-read-large (MB/s)",
        "fileio-write-1 (cycles)",
        "fileio-pwrite-1 (cycles)",
        "fileio-pread-1 (cycles)",
        "fileio-write-1 (ns)",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {row} ")))
            .unwrap_or_else(|| panic!("no row {row}:\n{stdout}"));
        let native: f64 = line
            .split('|')
            .nth(2)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("no native figure in {line:?}"));
        assert!(native > 0.0, "{line}");
    }
    if boot_tests::Hypervisor::Uhyve.unavailable().is_none() {
        assert!(stdout.contains("uhyve: fileio-write-1 "), "{stdout}");
        assert!(
            stdout.contains("uhyve: calls go through a queue in guest memory"),
            "{stdout}"
        );
        // KVM's own count of exits and emulated instructions per call
        // (differences between runs, so noise can make them negative). The
        // file-call queue keeps 1-byte calls well below the one exit per
        // call that the plain Fs hypercall costs.
        for (row, below) in [
            ("fileio-exits-1 (exits)", 0.5),
            ("fileio-emulated-1 (insns)", f64::INFINITY),
        ] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("| {row} ")))
                .unwrap_or_else(|| panic!("no row {row}:\n{stdout}"));
            let uhyve: f64 = line
                .split('|')
                .nth(3)
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or_else(|| panic!("no uhyve figure in {line:?}"));
            assert!(uhyve.is_finite() && uhyve < below, "{line}");
        }
    } else {
        eprintln!("SKIPPED: suite_quick_fileio: uhyve column (no usable /dev/kvm)");
    }
    let dir = stdout
        .split("host directory (")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("the fileio heading names its directory");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was not removed");
    let json = std::fs::read_to_string(out_dir.join("results.json")).expect("results.json");
    for key in [
        "\"fileio\"",
        "\"fileio-write MB/s\"",
        "\"fileio-write-1 cycles\"",
        "\"goals\"",
        "\"exits_per_call\"",
    ] {
        assert!(json.contains(key), "results.json has no {key}:\n{json}");
    }
    if boot_tests::Hypervisor::Uhyve.unavailable().is_none() {
        assert!(json.contains("\"fileio-exits-1 exits\""), "{json}");
    }
    let svg = std::fs::read_to_string(out_dir.join("fileio.svg")).expect("fileio.svg");
    assert!(svg.starts_with("<svg "), "{svg}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
