//! Thread boot tests: `thr_hello` on 1, 2 and 4 vCPUs (a thread on every
//! core), the `threads` app's checks (spawn/join, mutex, condvar,
//! semaphore, preemption, sleep accuracy) on 1 and 2 vCPUs, a 10,000-thread
//! stress run that must leave no task and no heap byte behind, and a check
//! that a sleeping VM does not burn host CPU.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boot_tests::{Hypervisor, built, proxy, require, run_with_limit};

fn thr_hello(hv: Hypervisor, cpus: usize) {
    if !require(hv, &format!("thr_hello on {cpus} CPUs")) {
        return;
    }
    let n = cpus.to_string();
    let out = proxy(hv, "thr_hello", &[], &[("HERMIT_CPUS", n.as_str())]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let threads = 2 * cpus;
    assert!(
        out.stdout
            .contains(&format!("starts {threads} threads on {cpus} core(s)")),
        "{out:?}"
    );
    for i in 0..threads {
        assert!(
            out.stdout
                .contains(&format!("Hello from thread {i} on core {} ", i % cpus)),
            "thread {i} should run on core {}: {out:?}",
            i % cpus
        );
    }
    let sum: usize = (0..threads).sum();
    assert!(
        out.stdout.contains(&format!(
            "joined {threads} threads, sum of their results {sum}"
        )),
        "{out:?}"
    );
}

fn checks(hv: Hypervisor, cpus: usize, names: &[&str]) {
    if !require(hv, &format!("threads {names:?} on {cpus} CPUs")) {
        return;
    }
    let n = cpus.to_string();
    let out = proxy(hv, "threads", names, &[("HERMIT_CPUS", n.as_str())]);
    for name in names {
        assert!(
            out.stdout.contains(&format!("{name}: ok\n")),
            "check {name} on {cpus} CPUs: {out:?}"
        );
    }
    assert_eq!(out.status, Some(0), "{out:?}");
}

const CHECKS: &[&str] = &[
    "spawn-join",
    "mutex",
    "condvar",
    "semaphore",
    "preempt",
    "sleep",
    "yield",
];

macro_rules! per_hypervisor {
    ($hv:ident) => {
        #[test]
        fn thr_hello_1_cpu() {
            super::thr_hello(boot_tests::Hypervisor::$hv, 1);
        }
        #[test]
        fn thr_hello_2_cpus() {
            super::thr_hello(boot_tests::Hypervisor::$hv, 2);
        }
        #[test]
        fn thr_hello_4_cpus() {
            super::thr_hello(boot_tests::Hypervisor::$hv, 4);
        }
        #[test]
        fn checks_1_cpu() {
            super::checks(boot_tests::Hypervisor::$hv, 1, super::CHECKS);
        }
        #[test]
        fn checks_2_cpus() {
            super::checks(boot_tests::Hypervisor::$hv, 2, super::CHECKS);
        }
        #[test]
        fn stress_10000_threads() {
            super::stress(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn stack_overflow_hits_the_guard_page() {
            super::stack_overflow(boot_tests::Hypervisor::$hv);
        }
        #[test]
        fn sleeping_vm_halts() {
            super::sleeping_vm_halts(boot_tests::Hypervisor::$hv);
        }
    };
}

mod uhyve {
    per_hypervisor!(Uhyve);
}

mod qemu {
    per_hypervisor!(Qemu);
}

/// 10,000 threads spawned and joined leave no task and no heap memory
/// behind. Each costs milliseconds on this host (every kernel instruction
/// is emulated), so this run gets a longer limit than the others.
fn stress(hv: Hypervisor) {
    if !require(hv, "stress_10000_threads") {
        return;
    }
    let built = built();
    let mut cmd = Command::new(&built.proxy);
    cmd.arg(built.app("threads"))
        .arg("stress")
        .env("HERMIT_ISLE", hv.isle());
    let out = run_with_limit(cmd, Duration::from_secs(600));
    assert!(out.stdout.contains("stress: ok\n"), "{out:?}");
    assert_eq!(out.status, Some(0), "{out:?}");
}

/// `threads idle`: a thread sleeps one second while main is blocked
/// joining it. Blocked and sleeping threads do not spin and the idle loop
/// halts the CPU, so the whole run (boot included) must use far less host
/// CPU time than its wall time.
fn sleeping_vm_halts(hv: Hypervisor) {
    if !require(hv, "sleeping_vm_halts") {
        return;
    }
    let built = built();
    let mut cmd = Command::new(&built.proxy);
    cmd.arg(built.app("threads"))
        .arg("idle")
        .env("HERMIT_ISLE", hv.isle())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("start the proxy");
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing only into the two locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    let cpu = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let used = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    eprintln!(
        "sleeping_vm_halts on {}: wall {wall:?}, host CPU {used:?}",
        hv.isle()
    );
    assert!(
        wall >= Duration::from_secs(1),
        "slept less than 1 s: {wall:?}"
    );
    assert!(
        used < wall / 2,
        "the VM used {used:?} of CPU in {wall:?}: the idle core does not halt"
    );
    drop(child);
}

/// A thread that overflows its stack ends the VM with a CPU-exception
/// status and a message naming the overflow, instead of corrupting memory.
fn stack_overflow(hv: Hypervisor) {
    if !require(hv, "stack_overflow_hits_the_guard_page") {
        return;
    }
    let out = proxy(hv, "panic", &["stack-overflow"], &[]);
    assert!(
        matches!(out.status, Some(136) | Some(142)),
        "double fault (136) or page fault (142) expected: {out:?}"
    );
    assert!(out.stderr.contains("overflowed its stack"), "{out:?}");
}
