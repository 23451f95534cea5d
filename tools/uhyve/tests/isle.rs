//! Isles: a tiny guest run as an isle shares the region with a host-side
//! isle, rings its doorbell and gets its own doorbell as an interrupt;
//! the real `hello` runs as an isle and leaves its kernel log behind;
//! SIGTERM stops an isle VM cleanly.

mod common;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Guest, Reg, config, skip_without_kvm};
use hermit_interface::hypercall::Nr;
use hermit_interface::{BootInfo, LOG_RING_MAGIC, isle};
use hermit_ircce::Region as _;
use hermit_isles::{IsleDir, IsleState, IsleStatus, REGION_MIN};

const LOGREG: u64 = 0x2040;
const RING: u64 = 0x2200;

/// A fresh isle directory, removed when dropped.
struct TempDir(IsleDir);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "uhyve-isle-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(IsleDir::new(path))
    }

    fn isle(&self, index: u32) -> uhyve::IsleConfig {
        uhyve::IsleConfig {
            index,
            dir: self.0.path().to_owned(),
            size: None,
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.path());
    }
}

/// `mov rax, node; out` to the Doorbell port.
fn ring(g: &mut Guest, node: u64) {
    g.mov_imm(Reg::Rax, node).out(Nr::Doorbell.port());
}

#[test]
fn isle_shares_the_region_and_rings_doorbells() {
    if skip_without_kvm("isle_shares_the_region_and_rings_doorbells") {
        return;
    }
    let dir = TempDir::new("region");
    // The host plays isle 1 and starts the session.
    let host = dir.0.join(1, Some(REGION_MIN)).unwrap();
    let host_bell = host.doorbell().unwrap();
    let shared = host.map().unwrap();

    let info = std::mem::offset_of!(BootInfo, isle) as u64;
    let mut g = Guest::new();
    // Copy BootInfo.isle (RDI points to the boot info) to the region at
    // 16..40, store a marker at 8.
    g.mov(Reg::Rsi, Reg::Rdi)
        .mov_imm(Reg::Rax, info)
        .add(Reg::Rsi, Reg::Rax)
        .mov_imm(Reg::Rbx, isle::REGION_GPA)
        .load(Reg::Rcx, Reg::Rsi, 0)
        .store(Reg::Rbx, 16, Reg::Rcx)
        .load(Reg::Rcx, Reg::Rsi, 8)
        .store(Reg::Rbx, 24, Reg::Rcx)
        .load(Reg::Rcx, Reg::Rsi, 16)
        .store(Reg::Rbx, 32, Reg::Rcx)
        .mov_imm(Reg::Rcx, 0x1234_5678)
        .store(Reg::Rbx, 8, Reg::Rcx);
    // A kernel log ring holding "isle log\n".
    g.pointer(LOGREG, RING)
        .data(RING, &LOG_RING_MAGIC.to_le_bytes())
        .data(RING + 8, &64u64.to_le_bytes())
        .data(RING + 16, &9u64.to_le_bytes())
        .data(RING + 24, b"isle log\n")
        .hypercall(Nr::LogRegister, LOGREG);
    ring(&mut g, 1);
    // Nodes that do not run, and nonsense: ignored.
    ring(&mut g, 5);
    ring(&mut g, u64::from(isle::HOST_NODE));
    ring(&mut g, 1000);
    // Software-enable the local APIC (SVR), ring ourselves, wait: the
    // doorbell vector arrives with no IDT, so the guest triple-faults. A
    // guest that is never interrupted halts forever (the test gives up).
    g.mov_imm(Reg::Rbx, 0xfee0_00f0)
        .store32_imm(Reg::Rbx, 0x1ff);
    ring(&mut g, 0);
    g.sti().hlt();

    let mut c = config(g.write("isle-region"));
    c.isle = Some(dir.isle(0));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(uhyve::run(&c)));
    assert!(
        host_bell.wait(Duration::from_secs(60)).unwrap(),
        "the guest's ring reached the host's isle 1"
    );
    let outcome = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the doorbell interrupt never reached the guest")
        .unwrap();
    let reason = outcome.abnormal.unwrap_or_default();
    assert!(reason.contains("triple fault"), "{reason}");

    let region = shared.region();
    assert_eq!(region.load_u64(8), 0x1234_5678, "the guest's store");
    assert_eq!(region.load_u64(16), isle::REGION_GPA);
    assert_eq!(region.load_u64(24), REGION_MIN);
    assert_eq!(
        region.load_u64(32),
        u64::from(isle::FLAG_DOORBELL) << 32,
        "index 0, doorbell flag"
    );
    assert_eq!(std::fs::read(dir.0.log_path(0)).unwrap(), b"isle log\n");
    assert_eq!(outcome.kernel_log, b"isle log\n");
    // Isle 0 was left: its number is free, its doorbell gone.
    assert!(dir.0.status().unwrap().contains(&IsleStatus {
        index: 0,
        state: IsleState::Stopped
    }));
    assert!(!host.ring(0));
    drop(dir.0.join(0, None).unwrap());
}

#[test]
fn isle_setup_errors_are_one_line() {
    let dir = TempDir::new("busy");
    let holder = dir.0.join(2, Some(REGION_MIN)).unwrap();
    let mut g = Guest::new();
    g.exit(0x2000, 0);
    let mut c = config(g.write("isle-busy"));
    c.isle = Some(dir.isle(2));
    let err = uhyve::run(&c).unwrap_err();
    assert!(matches!(err, uhyve::Error::Isle(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("isle 2 is already running (pid {})", std::process::id())
    );
    c.isle = Some(uhyve::IsleConfig {
        size: Some(2 * REGION_MIN),
        ..dir.isle(3)
    });
    let err = uhyve::run(&c).unwrap_err().to_string();
    assert!(
        err.contains("share a region of 9 MiB, not the 18 MiB"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    drop(holder);
}

fn uhyve_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_uhyve"))
}

#[test]
fn hello_runs_as_an_isle_and_leaves_its_log() {
    if skip_without_kvm("hello_runs_as_an_isle_and_leaves_its_log") {
        return;
    }
    let dir = TempDir::new("hello");
    let image = boot_tests::built().app("hello");
    let out = Command::new(uhyve_bin())
        .args([
            "--mem",
            "64M",
            "--log-level",
            "info",
            "--verbose",
            "--isle",
            "0",
        ])
        .arg("--isle-dir")
        .arg(dir.0.path())
        .arg(&image)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Hello World!!!"), "{stdout}");
    let log = std::fs::read_to_string(dir.0.log_path(0)).unwrap();
    assert!(!log.is_empty(), "isle0/log is empty; stderr:\n{stderr}");
    // `--verbose` printed the whole ring at the end; the file has the same
    // text, copied while the VM ran and at its end.
    assert!(
        stderr.contains(log.trim_end()),
        "log:\n{log}\nstderr:\n{stderr}"
    );
    assert_eq!(dir.0.region_len(), Some(isle::REGION_DEFAULT));
    assert_eq!(
        dir.0.status().unwrap(),
        [IsleStatus {
            index: 0,
            state: IsleState::Stopped
        }],
        "the lock was released"
    );
}

#[test]
fn sigterm_stops_an_isle_cleanly() {
    if skip_without_kvm("sigterm_stops_an_isle_cleanly") {
        return;
    }
    let dir = TempDir::new("term");
    // A guest that registers a log ring and then waits forever with
    // interrupts enabled (nothing ends it but the signal).
    let mut g = Guest::new();
    g.pointer(LOGREG, RING)
        .data(RING, &LOG_RING_MAGIC.to_le_bytes())
        .data(RING + 8, &64u64.to_le_bytes())
        .data(RING + 16, &6u64.to_le_bytes())
        .data(RING + 24, b"alive\n")
        .hypercall(Nr::LogRegister, LOGREG)
        .sti()
        .hlt();
    let image = g.write("isle-term");
    let mut child = Command::new(uhyve_bin())
        .args(["--mem", "64M", "--isle", "4"])
        .arg("--isle-dir")
        .arg(dir.0.path())
        .arg(&image)
        .env_clear()
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Running, and the periodic copy has the log.
    let start = Instant::now();
    while std::fs::read(dir.0.log_path(4)).ok().as_deref() != Some(b"alive\n") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the isle never copied its log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dir.0.stop(4).unwrap(), child.id());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert_eq!(std::fs::read(dir.0.log_path(4)).unwrap(), b"alive\n");
    assert!(matches!(
        dir.0.stop(4),
        Err(hermit_isles::Error::NotRunning(4))
    ));
    assert!(!dir.0.doorbell_path(4).unwrap().exists(), "left cleanly");
}
