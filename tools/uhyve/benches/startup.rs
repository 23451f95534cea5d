//! Start-up and execution-speed figures for uhyve (prints, never asserts):
//! wall time of the `uhyve` binary from spawn to exit for a tiny guest, for
//! `hello` if it has been built, and the cost of guest instructions in ring 0
//! versus ring 3 (on `kvm_pvm` hosts ring-0 code of a stock guest is
//! emulated instruction by instruction).
//!
//! Run with `cargo bench -p uhyve`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guest, Reg};
use hermit_interface::hypercall::Nr;

/// Median and minimum wall time of `runs` runs of uhyve with `args`.
fn time(runs: usize, args: &[&str]) -> Option<(Duration, Duration)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_uhyve"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .ok()?;
        times.push(start.elapsed());
        // A guest killed by a signal (no status) counts as a failed run.
        status.code()?;
    }
    times.sort();
    Some((times[runs / 2], times[0]))
}

fn report(what: &str, runs: usize, args: &[&str]) {
    match time(runs, args) {
        Some((median, min)) => println!(
            "{what:<48} median {:>9.3} ms   min {:>9.3} ms   ({runs} runs)",
            median.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3
        ),
        None => println!("{what:<48} failed to run"),
    }
}

/// A guest that runs `dec rcx; jnz` `n` times, in ring 3 if `user`.
fn looper(n: u64, user: bool) -> Guest {
    let mut g = Guest::new();
    if user {
        // Own GDT with ring-3 code (0x18) and data (0x20), user bit on the
        // page-table entries covering the low 4 MiB, then iretq with IOPL 3
        // so the Exit `out` is allowed.
        let gdt = [
            0u64,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00af_fb00_0000_ffff,
            0x00cf_f300_0000_ffff,
        ];
        for (i, d) in gdt.iter().enumerate() {
            g.data(0x2400 + 8 * i as u64, &d.to_le_bytes());
        }
        g.data(0x2480, &39u16.to_le_bytes()).pointer(0x2482, 0x2400);
        for table_entry in [0x2000u64, 0x3000, 0x4000, 0x4008] {
            g.mov_imm(Reg::Rax, table_entry)
                .raw(&[0x48, 0x83, 0x08, 0x04]); // or qword [rax], 4
        }
        g.raw(&[0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8]) // mov rax, cr3; mov cr3, rax
            .lea(Reg::Rax, 0x2480)
            .raw(&[0x0f, 0x01, 0x10]) // lgdt [rax]
            .raw(&[0x48, 0x89, 0xe0]) // mov rax, rsp
            .raw(&[0x6a, 0x23, 0x50, 0x68, 0x02, 0x30, 0, 0, 0x6a, 0x1b]) // ss, rsp, rflags, cs
            .lea(Reg::Rax, 0x1800)
            .raw(&[0x50, 0x48, 0xcf]); // push rax; iretq
        while g.here() < 0x1800 {
            g.raw(&[0x90]);
        }
    }
    g.mov_imm(Reg::Rcx, n.max(1))
        .raw(&[0x48, 0xff, 0xc9, 0x75, 0xfb]) // dec rcx; jnz -5
        .exit(0x2000, 0);
    g
}

fn main() {
    if let Err(reason) = uhyve::kvm_available() {
        println!("SKIPPED: uhyve benchmarks: {reason}");
        return;
    }
    let mut hi = Guest::new();
    hi.data(0x2100, b"hi\n")
        .data(0x2010, &1i32.to_le_bytes())
        .pointer(0x2018, 0x2100)
        .data(0x2020, &3u64.to_le_bytes())
        .hypercall(Nr::Write, 0x2010)
        .exit(0x2000, 0);
    let hi = hi.write("bench-hi");
    let hi = hi.to_str().unwrap_or_default();
    report("tiny guest (Write + Exit), --mem 2G", 100, &[hi]);
    report(
        "tiny guest (Write + Exit), --mem 64M",
        100,
        &["--mem", "64M", hi],
    );

    // The workspace's target dir, or CARGO_TARGET_DIR if set.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let hello = target.join("x86_64-unknown-none/release/hello");
    match hello.to_str() {
        Some(h) if hello.exists() => report("hello (x86_64-unknown-none/release/hello)", 10, &[h]),
        _ => println!("hello: not built (cargo build --release -p hello), skipped"),
    }

    for (user, ring) in [(false, "ring 0"), (true, "ring 3")] {
        for n in [1u64, 100_000] {
            let image = looper(n, user).write(&format!("bench-loop-{ring}-{n}"));
            let what = format!("{n} x (dec; jnz) in {ring}");
            report(
                &what,
                5,
                &["--mem", "64M", image.to_str().unwrap_or_default()],
            );
        }
    }
}
