//! `hermit-bench boot [--runs N] [--tcg]`: wall time of hello from process
//! start to exit under uhyve (directly and through the proxy) and QEMU,
//! next to a native static Linux hello, interleaved, as medians.
//!
//! Figures, not pass/fail: speed goals are judged by reading them, never by
//! timed tests. Build first with
//! `cargo build --release -p uhyve -p proxy -p pvh-loader -p hello`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::target_dir;

/// A C hello world, built statically on the host as the native baseline.
const NATIVE_HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { puts(\"Hello World!!!\"); return 0; }\n";

/// One way of running hello, and what it measured.
#[derive(Debug)]
pub struct BootCase {
    /// Name for tables.
    pub name: &'static str,
    /// Short key for JSON and plots.
    pub key: &'static str,
    /// Why this case has no figures (cannot run here, or a run failed).
    pub unavailable: Option<String>,
    /// Wall time of every measured run.
    pub times: Vec<Duration>,
    command: Option<Command>,
}

impl BootCase {
    /// The median time, if the case ran.
    pub fn median(&self) -> Option<Duration> {
        let mut t = self.times.clone();
        if t.is_empty() {
            return None;
        }
        Some(median(&mut t))
    }
}

/// What [`measure`] found.
#[derive(Debug)]
pub struct BootResult {
    /// The hello image.
    pub image: PathBuf,
    /// Its size in bytes.
    pub image_bytes: u64,
    /// Measured runs per case.
    pub runs: usize,
    /// Every case, the native baseline first.
    pub cases: Vec<BootCase>,
}

pub(crate) fn existing(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing; build with `cargo build --release -p uhyve -p proxy -p pvh-loader -p hello`",
            path.display()
        ))
    }
}

/// Builds the native static C hello in a fresh temporary directory (the
/// caller removes the directory).
pub(crate) fn native_hello() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("hermit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("hello.c");
    let bin = dir.join("hello-native");
    std::fs::write(&src, NATIVE_HELLO_C).map_err(|e| e.to_string())?;
    let ok = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(bin)
    } else {
        Err("cannot build the native baseline: `cc -static` failed".into())
    }
}

/// Every case runs with an environment of just `PATH`: hello prints its
/// environment, and the size of the caller's would otherwise decide the
/// figure.
pub(crate) fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

fn time_once(cmd: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    if !out.status.success() || !String::from_utf8_lossy(&out.stdout).starts_with("Hello World!!!")
    {
        return Err(format!("{cmd:?} failed: {:?}", out.status));
    }
    Ok(elapsed)
}

/// Milliseconds as `f64`.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Why QEMU cannot run here, if it cannot.
pub(crate) fn qemu_unavailable() -> Option<String> {
    match Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into()),
    }
}

fn case(
    name: &'static str,
    key: &'static str,
    command: Command,
    unavailable: Option<String>,
) -> BootCase {
    BootCase {
        name,
        key,
        command: unavailable.is_none().then_some(command),
        unavailable,
        times: Vec::new(),
    }
}

/// Times hello from process start to exit in every case, `runs` times,
/// interleaved, after one warm-up run each. A case that cannot run here,
/// or fails, keeps the reason instead of figures.
pub fn measure(runs: usize, tcg: bool) -> Result<BootResult, String> {
    let target = target_dir();
    let uhyve = existing(target.join("release/uhyve"))?;
    let proxy = existing(target.join("release/proxy"))?;
    let hello = existing(target.join("x86_64-unknown-none/release/hello"))?;
    let native = native_hello()?;
    let kvm = uhyve::kvm_available().err();
    let qemu = qemu_unavailable();

    let mut cases = vec![case(
        "native Linux (static C)",
        "native",
        command(&native),
        None,
    )];
    let mut c = command(&uhyve);
    c.arg(&hello);
    cases.push(case("uhyve", "uhyve", c, kvm.clone()));
    let mut c = command(&proxy);
    c.arg(&hello).env("HERMIT_ISLE", "uhyve");
    cases.push(case("proxy, uhyve", "proxy-uhyve", c, kvm.clone()));
    // On kvm_pvm hosts the kernel runs natively by default; the emulated
    // kernel is the comparison (elsewhere the option changes nothing).
    let mut c = command(&uhyve);
    c.arg("--no-native").arg(&hello);
    cases.push(case(
        "uhyve --no-native (emulated kernel)",
        "uhyve-emulated",
        c,
        kvm.clone(),
    ));
    let mut c = command(&proxy);
    c.arg(&hello)
        .env("HERMIT_ISLE", "qemu")
        .env("HERMIT_KVM", "1");
    cases.push(case(
        "proxy, QEMU + KVM",
        "proxy-qemu-kvm",
        c,
        qemu.clone().or(kvm),
    ));
    if tcg {
        let mut c = command(&proxy);
        c.arg(&hello)
            .env("HERMIT_ISLE", "qemu")
            .env("HERMIT_KVM", "0");
        cases.push(case("proxy, QEMU TCG", "proxy-qemu-tcg", c, qemu));
    }
    // Run 0 is the warm-up (page cache); then interleaved measured runs so
    // that machine noise hits every case alike.
    for run in 0..=runs {
        for case in &mut cases {
            let Some(cmd) = case.command.as_mut() else {
                continue;
            };
            match time_once(cmd) {
                Ok(t) if run > 0 => case.times.push(t),
                Ok(_) => {}
                Err(e) => {
                    case.unavailable = Some(e);
                    case.command = None;
                    case.times.clear();
                }
            }
        }
    }
    if let Some(dir) = native.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let image_bytes = std::fs::metadata(&hello).map_err(|e| e.to_string())?.len();
    Ok(BootResult {
        image: hello,
        image_bytes,
        runs,
        cases,
    })
}

/// Runs the boot benchmark and prints its table.
pub fn boot(runs: usize, tcg: bool) -> Result<(), String> {
    let r = measure(runs, tcg)?;
    println!(
        "hello, process start to exit, {runs} interleaved runs each (wall clock, ms; environment: PATH only)"
    );
    println!(
        "image: {} ({} bytes, {:.1} KiB)",
        r.image.display(),
        r.image_bytes,
        r.image_bytes as f64 / 1024.0
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "case", "median", "min", "max", "x native"
    );
    let native_median = r.cases[0].median().ok_or("the native hello failed")?;
    for case in &r.cases {
        let (Some(med), Some(min), Some(max)) = (
            case.median(),
            case.times.iter().min(),
            case.times.iter().max(),
        ) else {
            println!(
                "{:<30} {:>9} ({})",
                case.name,
                "-",
                case.unavailable.as_deref().unwrap_or("no runs")
            );
            continue;
        };
        println!(
            "{:<30} {:>9.3} {:>9.3} {:>9.3} {:>9.1}",
            case.name,
            ms(med),
            ms(*min),
            ms(*max),
            med.as_secs_f64() / native_median.as_secs_f64()
        );
    }
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
