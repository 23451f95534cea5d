//! `qemu-run [--tcg] [--runs N] [--cmdline S] [--env K=V]... IMAGE [ARGS...]`: boots IMAGE under QEMU with
//! `hermit-qemu`, prints its output and exit status, and with `--runs N`
//! the median wall time of N boots.

use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut kvm = true;
    let mut runs = 1usize;
    let mut cmdline = String::new();
    let mut env = Vec::new();
    while let Some(flag) = args.first().filter(|a| a.starts_with("--")).cloned() {
        args.remove(0);
        match flag.as_str() {
            "--tcg" => kvm = false,
            "--runs" if !args.is_empty() => runs = args.remove(0).parse().unwrap_or(1).max(1),
            "--cmdline" if !args.is_empty() => cmdline = args.remove(0),
            "--env" if !args.is_empty() => env.push(args.remove(0)),
            _ => return usage(),
        }
    }
    if args.is_empty() {
        return usage();
    }
    let loader = match hermit_qemu::find_loader(None) {
        Ok(l) => l,
        Err(e) => fail(&e.to_string()),
    };
    let mut config = hermit_qemu::Config::new(&args[0], loader);
    config.args = args.clone();
    config.kvm = kvm;
    config.cmdline = cmdline;
    config.env = env;
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        match hermit_qemu::run(&config) {
            Ok(outcome) => last = Some(outcome),
            Err(e) => fail(&e.to_string()),
        }
        times.push(start.elapsed());
    }
    let outcome = last.expect("at least one run");
    eprintln!(
        "--- kernel log ---\n{}",
        String::from_utf8_lossy(&outcome.kernel_log)
    );
    eprintln!(
        "status {} accel {} abnormal {:?}",
        outcome.status, outcome.accel, outcome.abnormal
    );
    if runs > 1 {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "{runs} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
            ms(times[runs / 2]),
            ms(times[0]),
            ms(times[runs - 1])
        );
    }
    std::process::exit(outcome.status);
}

fn usage() {
    fail("usage: qemu-run [--tcg] [--runs N] [--cmdline S] [--env K=V]... IMAGE [ARGS...]");
}

fn fail(message: &str) -> ! {
    eprintln!("qemu-run: {message}");
    std::process::exit(2);
}
