//! Multi-kernel isles launched like a user does, through the proxy:
//! `HERMIT_ISLE=<n>` (uhyve, doorbells) and `HERMIT_ISLE=qemu:<n>` (QEMU,
//! ivshmem, polling), each test in a private `HERMIT_ISLE_DIR`.
//! - two uhyve isles exchange iRCCE messages (`rcce-pingpong`);
//! - four uhyve isles run the collectives of `ircce-pi`; two QEMU isles
//!   do the same through the proxy;
//! - killing one isle leaves the other running to a correct end, frees its
//!   number (and its iRCCE rank) for a new isle, and `isles status` shows
//!   it stopped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use boot_tests::{Hypervisor, built, require};
use hermit_isles::{IsleDir, IsleState};

/// A private isle directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        Self(
            hermit_isles::shm_dir()
                .join(format!("hermit-test-isles-{name}-{}", std::process::id())),
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `app` through the proxy as isle `isle` (e.g. "0" or "qemu:1")
/// on host core `core`.
fn start(dir: &Dir, isle: &str, core: usize, app: &str, args: &[&str]) -> Child {
    let b = built();
    let cores = boot_tests_cores();
    let mut cmd = Command::new(&b.proxy);
    cmd.arg(b.app(app))
        .args(args)
        .env("HERMIT_ISLE", isle)
        .env("HERMIT_ISLE_DIR", &dir.0)
        .env("HERMIT_MEM", "64M")
        .env("HERMIT_LOG_LEVEL", "info")
        .env("HERMIT_KVM", "0")
        .env("HERMIT_CPUS", cores[core % cores.len()].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start the proxy")
}

/// The host cores this process may use.
fn boot_tests_cores() -> Vec<usize> {
    uhyve::cpus::host_cores().unwrap_or_else(|| vec![0])
}

/// Waits for `child` (killing it after `limit`); (status, stdout, stderr).
fn finish(child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return;
            }
        }
        // SAFETY: kills the proxy this test started, which hung.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait for the proxy");
    let _ = killer.join();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn pingpong_between_two_uhyve_isles() {
    if !require(Hypervisor::Uhyve, "pingpong_between_two_uhyve_isles") {
        return;
    }
    let dir = Dir::new("pingpong");
    let args = ["--max", "2048", "--runs", "1"];
    let one = start(&dir, "1", 1, "rcce-pingpong", &args);
    let zero = start(&dir, "0", 0, "rcce-pingpong", &args);
    let (s0, out0, err0) = finish(zero, LIMIT);
    let (s1, out1, err1) = finish(one, LIMIT);
    assert_eq!(
        (s0, s1),
        (Some(0), Some(0)),
        "{out0}{err0}\n---\n{out1}{err1}"
    );
    assert!(
        out0.contains("rcce-pingpong: isle 0 of 2 (doorbells)"),
        "{out0}"
    );
    assert!(
        out1.contains("rcce-pingpong: isle 1 of 2 (doorbells)"),
        "{out1}"
    );
    let mut size = 1;
    while size <= 2048 {
        let line = format!("bench pingpong-bw-{size}B ");
        let v: f64 = out0
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {line}: {out0}"));
        assert!(v > 0.0, "{line}{v}");
        size *= 2;
    }
    // Both isles left: their numbers are free, their logs stay readable.
    let isles = IsleDir::new(&dir.0);
    for s in isles.status().expect("status") {
        assert_eq!(s.state, IsleState::Stopped, "{s:?}");
    }
    let log = std::fs::read_to_string(isles.log_path(0)).expect("isle 0's log");
    assert!(
        log.contains("isle: shared region at 0xd0000000"),
        "isle 0's kernel log: {log}"
    );
}

fn pi_on_isles(name: &str, isles: &[&str]) {
    let dir = Dir::new(name);
    let ues = isles.len().to_string();
    let children: Vec<Child> = isles
        .iter()
        .enumerate()
        .map(|(i, isle)| start(&dir, isle, i, "ircce-pi", &[&ues, "400"]))
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| finish(c, LIMIT)).collect();
    for (rank, (status, out, err)) in outs.iter().enumerate() {
        assert_eq!(*status, Some(0), "isle {rank}: {out}{err}");
        assert!(
            out.contains(&format!("ircce-pi: rank {rank} of {ues}: ")),
            "isle {rank}: {out}"
        );
    }
    let pi = outs[0]
        .1
        .lines()
        .find(|l| l.starts_with("ircce-pi: pi = 3.14159"))
        .unwrap_or_else(|| panic!("no pi from rank 0: {outs:?}"));
    assert!(pi.contains(&format!("on {ues} UEs")), "{pi}");
}

#[test]
fn ircce_pi_on_four_uhyve_isles() {
    if !require(Hypervisor::Uhyve, "ircce_pi_on_four_uhyve_isles") {
        return;
    }
    pi_on_isles("pi-uhyve", &["0", "1", "2", "3"]);
}

#[test]
fn ircce_pi_on_two_qemu_isles_through_the_proxy() {
    if !require(
        Hypervisor::Qemu,
        "ircce_pi_on_two_qemu_isles_through_the_proxy",
    ) {
        return;
    }
    pi_on_isles("pi-qemu", &["qemu:0", "qemu:1"]);
}

#[test]
fn killing_an_isle_leaves_the_others_running() {
    if !require(
        Hypervisor::Uhyve,
        "killing_an_isle_leaves_the_others_running",
    ) {
        return;
    }
    let dir = Dir::new("kill");
    let isles = IsleDir::new(&dir.0);
    // Two isles busy for a few seconds each, however fast their CPUs run
    // (natively on kvm_pvm, pi of 1500 digits took milliseconds).
    let survivor = start(&dir, "0", 0, "clock", &["4000"]);
    let mut victim = start(&dir, "1", 1, "clock", &["4000"]);
    let start_time = Instant::now();
    let running = |i: u32| {
        isles
            .status()
            .ok()
            .and_then(|s| s.into_iter().find(|s| s.index == i))
            .is_some_and(|s| matches!(s.state, IsleState::Running { .. }))
    };
    while !(running(0) && running(1)) {
        assert!(
            start_time.elapsed() < Duration::from_secs(60),
            "isles did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    victim.kill().expect("SIGKILL isle 1's proxy");
    let _ = victim.wait();
    assert!(!running(1), "a killed isle's number must be free");
    assert!(running(0), "isle 0 must survive isle 1's death");
    // Isle 1's number can be taken again at once, in the same session.
    let again = start(&dir, "1", 1, "hello", &[]);
    let (s, out, err) = finish(again, LIMIT);
    assert_eq!(s, Some(0), "{out}{err}");
    assert!(out.contains("Hello"), "{out}");
    let (s, out, err) = finish(survivor, LIMIT);
    assert_eq!(s, Some(0), "{out}{err}");
    assert!(out.contains("spin_requested_ns: 4000000000"), "{out}");
    assert!(out.contains("spin_measured_ns: "), "{out}");
}
