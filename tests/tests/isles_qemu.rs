//! Multi-kernel isles under QEMU: several QEMU VMs share one region file
//! through `ivshmem-plain` (`hermit_qemu::IsleConfig`), each is one isle
//! of the same image, and they talk iRCCE through `hermit::isle`:
//! `rcce-pingpong` on two isles and `ircce-pi` (barrier, bcast, reduce,
//! allreduce) on several.
//!
//! Runs under QEMU's TCG, which is faster than this host's software KVM
//! for kernel code; there are no doorbells under QEMU, so the isles poll
//! (sleeping 1 ms between looks once a wait gets long).

use std::path::{Path, PathBuf};
use std::time::Duration;

use boot_tests::{Hypervisor, built, require};
use hermit_qemu::{Config, IsleConfig, Outcome, Streams};

/// The region: the iRCCE part needs 1 MiB past the 8 MiB mmnif part.
const REGION_SIZE: u64 = 16 << 20;

/// A zeroed region file, removed when dropped.
struct RegionFile(PathBuf);

impl RegionFile {
    fn new(name: &str) -> Self {
        let path =
            hermit_isles::shm_dir().join(format!("hermit-isles-{name}-{}", std::process::id()));
        let file = std::fs::File::create(&path).expect("create the region file");
        file.set_len(REGION_SIZE).expect("size the region file");
        Self(path)
    }
}

impl Drop for RegionFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one isle printed and how it ended.
#[derive(Debug)]
struct IsleRun {
    outcome: Outcome,
    stdout: String,
    stderr: String,
}

/// Runs isles `0..count` of `app` with `args` at once on one region.
fn run_isles(app: &str, args: &[&str], count: u32, region: &Path) -> Vec<IsleRun> {
    let b = built();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..count)
            .map(|index| {
                let mut config = Config::new(b.app(app), b.app("pvh-loader"));
                config.args.extend(args.iter().map(|a| a.to_string()));
                config.mem_size = 64 << 20;
                config.kvm = false;
                config.isle = Some(IsleConfig {
                    index,
                    region: region.to_path_buf(),
                    size: REGION_SIZE,
                });
                s.spawn(move || {
                    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                    let outcome = hermit_qemu::run_with(
                        &config,
                        Streams {
                            stdout: &mut stdout,
                            stderr: &mut stderr,
                            timeout: Some(Duration::from_secs(240)),
                        },
                    )
                    .expect("QEMU runs");
                    IsleRun {
                        outcome,
                        stdout: String::from_utf8_lossy(&stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&stderr).into_owned(),
                    }
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("isle thread"))
            .collect()
    })
}

fn assert_ok(runs: &[IsleRun]) {
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(
            (r.outcome.status, &r.outcome.abnormal),
            (0, &None),
            "isle {i} failed, stderr {:?}: {r:?}\nkernel log:\n{}",
            r.stderr,
            String::from_utf8_lossy(&r.outcome.kernel_log)
        );
    }
}

/// The value of report line `bench <name> <value> <unit>`.
fn figure(out: &str, name: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("bench") && w.next() == Some(name))
            .then(|| w.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

#[test]
fn pingpong_between_two_qemu_isles() {
    if !require(Hypervisor::Qemu, "pingpong_between_two_qemu_isles") {
        return;
    }
    let region = RegionFile::new("pingpong");
    // Up to 64 KiB: several chunks per message (the two-UE channel's
    // halves hold 16 KiB each).
    let max = 65536u64;
    let runs = run_isles(
        "rcce-pingpong",
        &["--max", &max.to_string(), "--runs", "3"],
        2,
        &region.0,
    );
    assert_ok(&runs);
    let out = &runs[0].stdout;
    assert!(
        out.contains("rcce-pingpong: isle 0 of 2 (polling)"),
        "{runs:?}"
    );
    assert!(
        runs[1].stdout.contains("rcce-pingpong: isle 1 of 2"),
        "{runs:?}"
    );
    let mut size = 1;
    while size <= max {
        for name in [format!("pingpong-{size}B"), format!("pingpong-bw-{size}B")] {
            let v = figure(out, &name).unwrap_or_else(|| panic!("no {name}: {out}"));
            assert!(v > 0.0, "{name} = {v}: {out}");
        }
        size *= 2;
    }
    assert!(
        figure(out, "memcpy-65536B").is_some_and(|v| v > 0.0),
        "{out}"
    );
    println!("{out}");
}

#[test]
fn ircce_pi_on_qemu_isles() {
    if !require(Hypervisor::Qemu, "ircce_pi_on_qemu_isles") {
        return;
    }
    let region = RegionFile::new("pi");
    let ues = 4;
    let runs = run_isles("ircce-pi", &[&ues.to_string(), "2000"], ues, &region.0);
    assert_ok(&runs);
    for (rank, r) in runs.iter().enumerate() {
        assert!(
            r.stdout
                .contains(&format!("ircce-pi: rank {rank} of {ues}: ")),
            "{runs:?}"
        );
    }
    let pi_line = runs[0]
        .stdout
        .lines()
        .find(|l| l.starts_with("ircce-pi: pi = 3.14159"))
        .unwrap_or_else(|| panic!("no pi from rank 0: {runs:?}"));
    assert!(pi_line.contains("with 2000 steps on 4 UEs"), "{pi_line}");
    println!("{pi_line}");
}

#[test]
fn not_an_isle_is_one_line_and_status_2() {
    if !require(Hypervisor::Qemu, "not_an_isle_is_one_line_and_status_2") {
        return;
    }
    let out = boot_tests::proxy(Hypervisor::Qemu, "rcce-pingpong", &[], &[]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "rcce-pingpong: not started as an isle (HERMIT_ISLE=0 and HERMIT_ISLE=1)"
    );
}
