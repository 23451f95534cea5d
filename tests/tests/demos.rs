//! Demo app boot tests, on uhyve and QEMU:
//! - `test-malloc-mt`: threads allocate, pattern-check and free blocks of
//!   16 B .. 64 KiB and hand some to another thread; on 1 and 2 vCPUs it
//!   must find no corruption and leave the heap where it started, and with
//!   `corrupt` (a byte flipped on purpose) it must fail.
//! - `pi`: Machin's formula over 1..=N threads (N = vCPUs) must print the
//!   right digits, the same number for every thread count, and a speed-up
//!   line (its value is not checked: timing is the benchmark's business).

use boot_tests::{Hypervisor, Output, proxy, require};

/// The first 300 decimal places of pi, from an independent source.
const PI_300: &str = "3.\
    1415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679\
    8214808651328230664709384460955058223172535940812848111745028410270193852110555964462294895493038196\
    4428810975665933446128475648233786783165271201909145648566923460348610454326648213393607260249141273";

fn run(hv: Hypervisor, app: &str, cpus: usize, args: &[&str]) -> Output {
    let n = cpus.to_string();
    proxy(hv, app, args, &[("HERMIT_CPUS", n.as_str())])
}

fn malloc_mt(hv: Hypervisor, cpus: usize, args: &[&str]) {
    if !require(hv, &format!("test-malloc-mt {args:?} on {cpus} CPUs")) {
        return;
    }
    let out = run(hv, "test-malloc-mt", cpus, args);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(!out.stdout.contains("FAILED"), "{out:?}");
    assert!(out.stdout.contains(": no leak\n"), "{out:?}");
    assert!(out.stdout.contains("test-malloc-mt: ok\n"), "{out:?}");
    // With two or more threads every handed-on block is freed by a thread
    // that did not allocate it (the app checks the counts agree).
    let handed = out
        .stdout
        .lines()
        .find_map(|l| l.split_once(" blocks handed on through inboxes, "))
        .and_then(|(head, tail)| {
            let n: usize = head.rsplit(' ').next()?.parse().ok()?;
            let m: usize = tail.split(' ').next()?.parse().ok()?;
            Some((n, m))
        });
    let Some((handed, foreign)) = handed else {
        panic!("no hand-over line: {out:?}");
    };
    assert!(handed > 0, "no block was handed on: {out:?}");
    assert_eq!(handed, foreign, "{out:?}");
}

fn malloc_mt_detects_corruption(hv: Hypervisor) {
    if !require(hv, "test-malloc-mt corrupt") {
        return;
    }
    let out = run(hv, "test-malloc-mt", 1, &["1", "200", "corrupt"]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stdout.contains("corrupted at offset"), "{out:?}");
    assert!(out.stdout.contains("FAILED: 1 faulty block(s)"), "{out:?}");
}

fn pi(hv: Hypervisor, cpus: usize) {
    if !require(hv, &format!("pi on {cpus} CPUs")) {
        return;
    }
    let out = run(hv, "pi", cpus, &["300"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let shown = format!(
        "pi = {}...{}\n",
        &PI_300[..52],
        &PI_300[PI_300.len() - 10..]
    );
    assert!(out.stdout.contains(&shown), "expected {shown:?}: {out:?}");
    let mut checksums = Vec::new();
    for threads in 1..=cpus {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("pi: threads={threads} time=")))
            .unwrap_or_else(|| panic!("no line for {threads} thread(s): {out:?}"));
        assert!(line.contains(" digits ok "), "{line}: {out:?}");
        let sum = line.rsplit("checksum=").next().map(str::to_owned);
        checksums.push(sum);
    }
    assert!(
        checksums.windows(2).all(|w| w[0] == w[1]),
        "results differ between thread counts: {out:?}"
    );
    if cpus > 1 {
        assert!(
            out.stdout
                .contains(&format!("pi: speed-up with {cpus} threads: ")),
            "{out:?}"
        );
    }
    assert!(
        out.stdout
            .contains(&format!("pi: all {cpus} result(s) correct and identical\n")),
        "{out:?}"
    );
}

fn pi_rejects_bad_arguments(hv: Hypervisor) {
    if !require(hv, "pi with bad arguments") {
        return;
    }
    for args in [&["5000"][..], &["many"], &["10", "0"]] {
        let out = run(hv, "pi", 1, args);
        assert_eq!(out.status, Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.contains("usage: pi"), "{args:?}: {out:?}");
    }
}

macro_rules! per_hypervisor {
    ($hv:ident) => {
        #[test]
        fn malloc_mt_1_cpu_2_threads() {
            super::malloc_mt(boot_tests::Hypervisor::$hv, 1, &["2", "600"]);
        }
        #[test]
        fn malloc_mt_2_cpus() {
            super::malloc_mt(boot_tests::Hypervisor::$hv, 2, &["2", "600"]);
        }
        #[test]
        fn malloc_mt_detects_corruption() {
            super::malloc_mt_detects_corruption(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn pi_1_cpu() {
            super::pi(boot_tests::Hypervisor::$hv, 1);
        }
        #[test]
        fn pi_2_cpus() {
            super::pi(boot_tests::Hypervisor::$hv, 2);
        }
        #[test]
        fn pi_rejects_bad_arguments() {
            super::pi_rejects_bad_arguments(boot_tests::Hypervisor::$hv);
        }
    };
}

mod uhyve {
    per_hypervisor!(Uhyve);
}

mod qemu {
    per_hypervisor!(Qemu);
}
