//! `hermit-bench boot [--runs N] [--tcg]`: wall time of hello from process
//! start to exit under uhyve (directly and through the proxy) and QEMU,
//! next to a native static Linux hello, interleaved, as medians.
//!
//! Figures, not pass/fail: speed goals are judged by reading them, never by
//! timed tests. Build first with
//! `cargo build --release -p uhyve -p proxy -p pvh-loader -p hello`.

use std::path::{Path, PathBuf};

use crate::target_dir;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A C hello world, built statically on the host as the native baseline.
const NATIVE_HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { puts(\"Hello World!!!\"); return 0; }\n";

struct Case {
    name: &'static str,
    command: Command,
    times: Vec<Duration>,
}

fn existing(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing; build with `cargo build --release -p uhyve -p proxy -p pvh-loader -p hello`",
            path.display()
        ))
    }
}

fn native_hello() -> Result<PathBuf, String> {
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
fn command(program: &Path) -> Command {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the boot benchmark and prints its table.
pub fn boot(runs: usize, tcg: bool) -> Result<(), String> {
    let target = target_dir();
    let uhyve = existing(target.join("release/uhyve"))?;
    let proxy = existing(target.join("release/proxy"))?;
    let hello = existing(target.join("x86_64-unknown-none/release/hello"))?;
    let native = native_hello()?;

    let mut cases = vec![Case {
        name: "native Linux (static C)",
        command: command(&native),
        times: vec![],
    }];
    let mut c = command(&uhyve);
    c.arg(&hello);
    cases.push(Case {
        name: "uhyve",
        command: c,
        times: vec![],
    });
    let mut c = command(&proxy);
    c.arg(&hello).env("HERMIT_ISLE", "uhyve");
    cases.push(Case {
        name: "proxy, uhyve",
        command: c,
        times: vec![],
    });
    let mut c = command(&proxy);
    c.arg(&hello)
        .env("HERMIT_ISLE", "qemu")
        .env("HERMIT_KVM", "1");
    cases.push(Case {
        name: "proxy, QEMU (KVM if usable)",
        command: c,
        times: vec![],
    });
    if tcg {
        let mut c = command(&proxy);
        c.arg(&hello)
            .env("HERMIT_ISLE", "qemu")
            .env("HERMIT_KVM", "0");
        cases.push(Case {
            name: "proxy, QEMU TCG",
            command: c,
            times: vec![],
        });
    }
    // One warm-up run each (page cache), then interleaved measured runs so
    // that machine noise hits every case alike.
    for case in &mut cases {
        time_once(&mut case.command)?;
    }
    for _ in 0..runs {
        for case in &mut cases {
            let t = time_once(&mut case.command)?;
            case.times.push(t);
        }
    }
    let size = std::fs::metadata(&hello).map_err(|e| e.to_string())?.len();
    println!(
        "hello, process start to exit, {runs} interleaved runs each (wall clock, ms; environment: PATH only)"
    );
    println!(
        "image: {} ({} bytes, {:.1} KiB)",
        hello.display(),
        size,
        size as f64 / 1024.0
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "case", "median", "min", "max", "x native"
    );
    let native_median = median(&mut cases[0].times.clone());
    for case in &mut cases {
        let mut t = case.times.clone();
        let med = median(&mut t);
        println!(
            "{:<30} {:>9.3} {:>9.3} {:>9.3} {:>9.1}",
            case.name,
            ms(med),
            ms(t[0]),
            ms(*t.last().expect("runs > 0")),
            med.as_secs_f64() / native_median.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(native.parent().expect("temp dir"));
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
