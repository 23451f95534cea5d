//! Footprint: the size of the hello image, and the smallest guest memory
//! (`HERMIT_MEM`, whole MiB, found by bisection) with which hello still
//! prints `Hello World!!!` and exits 0, per hypervisor; next to the size
//! and peak resident memory of a static native C hello.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::boot::{command, existing, native_hello};
use crate::target_dir;

/// The largest guest memory tried, in MiB.
pub const MAX_MIB: u32 = 64;

/// What the footprint benchmark found.
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    /// Size of the hello image in bytes.
    pub image_bytes: u64,
    /// Size of the static native C hello in bytes (`None`: no `cc -static`).
    pub native_bytes: Option<u64>,
    /// Peak resident set of the native hello in KiB.
    pub native_max_rss_kib: Option<u64>,
    /// Per hypervisor (key, smallest working MiB or why there is none).
    pub min_mem_mib: Vec<(String, Result<u32, String>)>,
}

/// Whether hello runs with `mib` MiB of guest memory under the proxy with
/// `env`: prints its greeting and exits 0 within 10 s (a guest that hangs
/// for lack of memory counts as not running).
fn hello_runs(proxy: &Path, hello: &Path, env: &[(&str, &str)], mib: u32) -> bool {
    let mut cmd = command(proxy);
    cmd.arg(hello).env("HERMIT_MEM", format!("{mib}M"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::threads::run_case(&mut cmd, Duration::from_secs(10))
        .is_ok_and(|stdout| stdout.starts_with("Hello World!!!"))
}

/// The smallest `n` in `1..=max` for which `works(n)`, assuming that
/// everything above a working size works too; `None` if `max` fails.
pub fn bisect(max: u32, mut works: impl FnMut(u32) -> bool) -> Option<u32> {
    if !works(max) {
        return None;
    }
    // Invariant: `hi` works; `lo` is 0 or fails.
    let (mut lo, mut hi) = (0, max);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if works(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Runs `program`, returning its peak resident set in KiB (from `wait4`).
fn max_rss_kib(program: &Path) -> Option<u64> {
    let child = Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = libc::pid_t::try_from(child.id()).ok()?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child (std never waits for it: we
    // drop `child` without calling wait); status and usage are live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    drop(child);
    (r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
        .then(|| u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

/// A hypervisor to bisect the guest memory on.
pub struct Hypervisor<'a> {
    /// Key for tables and JSON.
    pub key: &'a str,
    /// The proxy's environment that selects it.
    pub env: Vec<(&'a str, &'a str)>,
    /// Why it cannot run here, if it cannot.
    pub unavailable: Option<String>,
}

/// Measures the footprint.
pub fn measure(hypervisors: &[Hypervisor<'_>]) -> Result<Footprint, String> {
    let target = target_dir();
    let proxy = existing(target.join("release/proxy"))?;
    let hello = existing(target.join("x86_64-unknown-none/release/hello"))?;
    let image_bytes = std::fs::metadata(&hello).map_err(|e| e.to_string())?.len();
    let (native_bytes, native_max_rss_kib) = match native_hello() {
        Ok(bin) => {
            let bytes = std::fs::metadata(&bin).ok().map(|m| m.len());
            let rss = max_rss_kib(&bin);
            if let Some(dir) = bin.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            (bytes, rss)
        }
        Err(e) => {
            eprintln!("footprint: {e}");
            (None, None)
        }
    };
    let mut min_mem_mib = Vec::new();
    for Hypervisor {
        key,
        env,
        unavailable,
    } in hypervisors
    {
        let found = match unavailable {
            Some(why) => Err(why.clone()),
            None => bisect(MAX_MIB, |mib| hello_runs(&proxy, &hello, env, mib))
                .ok_or_else(|| format!("hello does not run even with {MAX_MIB} MiB")),
        };
        min_mem_mib.push((key.to_string(), found));
    }
    Ok(Footprint {
        image_bytes,
        native_bytes,
        native_max_rss_kib,
        min_mem_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisect_finds_the_smallest_working_size() {
        for threshold in 1..=64 {
            let mut calls = 0;
            let got = bisect(64, |n| {
                calls += 1;
                n >= threshold
            });
            assert_eq!(got, Some(threshold));
            assert!(calls <= 8, "{calls} calls for {threshold}");
        }
        assert_eq!(bisect(64, |_| false), None);
        assert_eq!(bisect(1, |_| true), Some(1));
    }
}
