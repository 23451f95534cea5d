//! Smoke test of the thread benchmark app: with tiny repetition counts it
//! runs every benchmark and prints a `bench <name> <value> <unit>` line in
//! ns and in cycles for each (the cross-core one is skipped, with a
//! reason, on one CPU). Figures are not judged: speed is read from
//! `hermit-bench threads`, never asserted.

use boot_tests::{Hypervisor, proxy, require};

/// Every benchmark the app must report.
const BENCHES: &[&str] = &[
    "spawn-join",
    "yield",
    "futex-wake-same-core",
    "futex-wake-cross-core",
    "mutex-uncontended",
    "mutex-contended",
    "alloc-64",
    "alloc-4k",
    "alloc-64-mt",
    "alloc-4k-mt",
];

/// A `bench` line's value if `line` is `bench <name> <number> <unit>`.
fn figure(stdout: &str, name: &str, unit: &str) -> Option<f64> {
    stdout.lines().find_map(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w.as_slice() {
            ["bench", n, v, u] if *n == name && *u == unit => v.parse().ok(),
            _ => None,
        }
    })
}

fn smoke(hv: Hypervisor, cpus: usize) {
    if !require(hv, &format!("bench-threads on {cpus} CPUs")) {
        return;
    }
    let n = cpus.to_string();
    let out = proxy(
        hv,
        "bench-threads",
        &["--reps", "1", "--iters", "3"],
        &[("HERMIT_CPUS", n.as_str())],
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!("info cores={cpus} reps=1\n")),
        "{out:?}"
    );
    for name in BENCHES {
        if cpus == 1 && *name == "futex-wake-cross-core" {
            assert!(
                out.stdout
                    .contains("skip futex-wake-cross-core needs 2 cores, have 1\n"),
                "{out:?}"
            );
            assert_eq!(figure(&out.stdout, name, "ns"), None, "{out:?}");
            continue;
        }
        for unit in ["ns", "cycles"] {
            let v = figure(&out.stdout, name, unit)
                .unwrap_or_else(|| panic!("no `bench {name} .. {unit}` line: {out:?}"));
            assert!(v.is_finite() && v >= 0.0, "{name}: {v} {unit}: {out:?}");
        }
    }
}

/// A bad argument is one clear line and exit status 2.
fn bad_argument(hv: Hypervisor) {
    if !require(hv, "bench-threads bad argument") {
        return;
    }
    let out = proxy(hv, "bench-threads", &["no-such-bench"], &[]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("unknown benchmark"), "{out:?}");
    assert!(!out.stdout.contains("bench "), "{out:?}");
}

macro_rules! per_hypervisor {
    ($hv:ident) => {
        #[test]
        fn smoke_1_cpu() {
            super::smoke(boot_tests::Hypervisor::$hv, 1);
        }
        #[test]
        fn smoke_2_cpus() {
            super::smoke(boot_tests::Hypervisor::$hv, 2);
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
