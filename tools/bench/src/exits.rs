//! Counting the VM exits of a uhyve guest run with no change to uhyve:
//! `hermit-bench uhyve-exits [--mount HOST:GUEST] IMAGE [ARGS...]` runs
//! the image with the uhyve library in this process while a watcher thread
//! finds vCPU 0's fd (`/proc/self/fd/N` -> `anon_inode:kvm-vcpu:0`),
//! duplicates it and asks KVM for the vCPU's binary statistics
//! (`KVM_GET_STATS_FD`). The statistics fd keeps the counters readable
//! after the VM is gone, so they are read once the run is over and cover
//! it whole (boot included; callers take differences between runs). The
//! counters are printed as `vcpu-stat NAME VALUE` lines after the guest's
//! output.
//!
//! KVM answers vCPU ioctls only from the process that created the VM
//! (`EIO` otherwise), so QEMU's exits cannot be counted from outside this
//! way; debugfs's `kvm/` files would, but on this host they refuse reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `KVM_GET_STATS_FD`: `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xae_ce;

/// The counters we read, by KVM's names.
pub const COUNTERS: [&str; 6] = [
    "exits",
    "io_exits",
    "mmio_exits",
    "irq_exits",
    "halt_exits",
    "insn_emulation",
];

/// Why exits could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum ExitsError {
    /// A bad command-line argument.
    #[error("{0}")]
    Usage(String),
    /// uhyve could not start the VM.
    #[error("{0}")]
    Uhyve(String),
    /// No vCPU showed up while the VM ran.
    #[error("no KVM vCPU found in this process ({0})")]
    NoVcpu(&'static str),
    /// A system call on the way failed.
    #[error("{0}: {1}")]
    Sys(&'static str, std::io::Error),
    /// The statistics did not have the expected shape.
    #[error("KVM statistics: {0}")]
    Stats(String),
}

/// A duplicate of this process's fd of vCPU 0, if it has one now.
fn find_vcpu() -> Option<OwnedFd> {
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    let is_vcpu = |fd: i32| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|t| t.to_str() == Some("anon_inode:kvm-vcpu:0"))
    };
    for e in fds.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if !is_vcpu(fd) {
            continue;
        }
        // SAFETY: F_DUPFD_CLOEXEC only duplicates `fd` (or fails with -1 if
        // it was closed meanwhile); no memory is passed.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            continue;
        }
        // SAFETY: `dup` is a new fd that nothing else owns.
        let dup = unsafe { OwnedFd::from_raw_fd(dup) };
        // The number may have been reused between the look and the dup.
        if is_vcpu(std::os::fd::AsRawFd::as_raw_fd(&dup)) {
            return Some(dup);
        }
    }
    None
}

/// The statistics fd of a vCPU fd.
fn stats_fd(vcpu: &OwnedFd) -> Result<File, ExitsError> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(vcpu);
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1;
    // `raw` is a live vCPU fd we own a duplicate of.
    let fd = unsafe { libc::ioctl(raw, KVM_GET_STATS_FD, 0) };
    if fd < 0 {
        return Err(ExitsError::Sys(
            "KVM_GET_STATS_FD",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a new fd that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the counters of [`COUNTERS`] from a binary statistics fd (the
/// layout of `struct kvm_stats_header` and `struct kvm_stats_desc`).
fn read_stats(stats: &File) -> Result<BTreeMap<&'static str, u64>, ExitsError> {
    let bad = |m: &str| ExitsError::Stats(m.to_string());
    let read = |off: u64, len: usize| -> Result<Vec<u8>, ExitsError> {
        let mut b = vec![0u8; len];
        stats
            .read_exact_at(&mut b, off)
            .map_err(|e| ExitsError::Sys("reading the statistics", e))?;
        Ok(b)
    };
    let h = read(0, 24)?;
    let field = |i: usize| u32_at(&h, i * 4).ok_or_else(|| bad("short header"));
    let (name_size, count, desc_off, data_off) = (field(1)?, field(2)?, field(4)?, field(5)?);
    if count > 4096 || name_size > 4096 {
        return Err(bad("implausible header"));
    }
    let desc_len = 16 + name_size as usize;
    let descs = read(u64::from(desc_off), desc_len * count as usize)?;
    let mut out = BTreeMap::new();
    for d in descs.chunks_exact(desc_len) {
        let name_bytes = &d[16..];
        let end = name_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_bytes.len());
        let Ok(name) = std::str::from_utf8(&name_bytes[..end]) else {
            continue;
        };
        let Some(&key) = COUNTERS.iter().find(|c| **c == name) else {
            continue;
        };
        let offset = u32_at(d, 8).ok_or_else(|| bad("short descriptor"))?;
        let v = read(u64::from(data_off) + u64::from(offset), 8)?;
        let value = u64::from_le_bytes(v.try_into().map_err(|_| bad("short value"))?);
        out.insert(key, value);
    }
    if !out.contains_key("exits") {
        return Err(bad("no `exits` counter"));
    }
    Ok(out)
}

/// Watches this process for vCPU 0 until `stop` is set: its statistics
/// fd, once found.
fn watch(stop: &AtomicBool) -> Result<File, ExitsError> {
    loop {
        if let Some(vcpu) = find_vcpu() {
            return stats_fd(&vcpu);
        }
        if stop.load(Ordering::SeqCst) {
            return Err(ExitsError::NoVcpu("the run ended first"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

const USAGE: &str = "usage: hermit-bench uhyve-exits [--mount HOST:GUEST] IMAGE [ARGS...]";

/// `hermit-bench uhyve-exits [--mount HOST:GUEST] IMAGE [ARGS...]`: runs
/// IMAGE on one vCPU (1 GiB, no pinning, empty environment) and prints its
/// counters; the exit status is the guest's.
pub fn main(args: &[String]) -> Result<i32, ExitsError> {
    let mut mounts = Vec::new();
    let mut rest = args;
    while rest.first().map(String::as_str) == Some("--mount") {
        let spec = rest.get(1).ok_or_else(|| ExitsError::Usage(USAGE.into()))?;
        mounts.push(
            hermit_hostfs::Mount::parse(spec)
                .map_err(|e| ExitsError::Usage(format!("--mount {spec}: {e}")))?,
        );
        rest = &rest[2..];
    }
    let image = rest
        .first()
        .ok_or_else(|| ExitsError::Usage(USAGE.into()))?;
    let config = uhyve::Config {
        image: image.into(),
        args: rest.to_vec(),
        env: Vec::new(),
        mem_size: 1 << 30,
        cpus: 1,
        pin: None,
        cmdline: String::new(),
        mounts,
        profile: None,
        isle: None,
    };
    let stop = AtomicBool::new(false);
    let (outcome, stats) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(&stop));
        let outcome = uhyve::run(&config);
        stop.store(true, Ordering::SeqCst);
        let stats = watcher
            .join()
            .unwrap_or(Err(ExitsError::NoVcpu("the watcher panicked")));
        (outcome, stats)
    });
    let outcome = outcome.map_err(|e| ExitsError::Uhyve(e.to_string()))?;
    if let Some(why) = &outcome.abnormal {
        eprintln!("hermit-bench uhyve-exits: the guest ended abnormally: {why}");
    }
    for (name, value) in read_stats(&stats?)? {
        println!("vcpu-stat {name} {value}");
    }
    Ok(outcome.status)
}

/// The `vcpu-stat` lines of a `uhyve-exits` run's output.
pub fn parse(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("vcpu-stat"), Some(n), Some(v), None) => {
                    Some((n.to_string(), v.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let m = parse("bench x 1 ns\nvcpu-stat exits 12\nvcpu-stat io_exits x\nvcpu-stat a 1 2\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m["exits"], 12);
    }

    #[test]
    fn no_vcpu_here() {
        assert!(find_vcpu().is_none());
        let stop = AtomicBool::new(true);
        assert!(matches!(watch(&stop), Err(ExitsError::NoVcpu(_))));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for a in [
            &[][..],
            &["--mount"],
            &["--mount", "/nonexistent-dir-x:/b", "img"],
        ] {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            assert!(matches!(main(&a), Err(ExitsError::Usage(_))), "{a:?}");
        }
    }
}
