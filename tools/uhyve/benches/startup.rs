//! Start-up and execution-speed figures for uhyve (prints, never asserts):
//! wall time of the `uhyve` binary from spawn to exit for a tiny guest, for
//! `hello` if it has been built, and the cost of guest instructions in ring 0
//! versus ring 3 (on `kvm_pvm` hosts ring-0 code of a stock guest is
//! emulated instruction by instruction), and what SMP costs at boot: tiny
//! guests whose boot CPU starts 0, 1 or 3 application processors and waits
//! for them, and the host cost of creating one vCPU.
//!
//! Run with `cargo bench -p uhyve`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guest, Reg};
use hermit_interface::hypercall::Nr;

/// Median and minimum wall time of `runs` runs of uhyve with `args`;
/// `None` if a run did not end with status `expected`.
fn time(runs: usize, args: &[&str], expected: i32) -> Option<(Duration, Duration)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_uhyve"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        times.push(start.elapsed());
        // A guest that failed (or was killed: no status) measures nothing.
        if status.code()? != expected {
            return None;
        }
    }
    times.sort();
    Some((times[runs / 2], times[0]))
}

fn report(what: &str, runs: usize, args: &[&str], expected: i32) {
    match time(runs, args, expected) {
        Some((median, min)) => println!(
            "{what:<48} median {:>9.3} ms   min {:>9.3} ms   ({runs} runs)",
            median.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3
        ),
        None => println!("{what:<48} failed (the guest did not exit with {expected})"),
    }
}

/// A guest that runs `dec rcx; jnz` `n` times, in ring 3 if `user` (then it
/// ends with a deliberate fault, status 1).
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
        .raw(&[0x48, 0xff, 0xc9, 0x75, 0xfb]); // dec rcx; jnz -5
    if user {
        // On kvm_pvm, RFLAGS.IOPL reads 0 at CPL 3 even after an iretq
        // with IOPL 3, so the Exit `out` would fault; end with a fault
        // everywhere instead (no IDT: triple fault, status 1).
        g.ud2();
    } else {
        g.exit(0x2000, 0);
    }
    g
}

/// Median host time of what an eagerly created extra vCPU would cost every
/// boot (`KVM_CREATE_VCPU` + `KVM_SET_CPUID2`), in a VM with a split irqchip
/// like uhyve's.
fn vcpu_creation(runs: usize) -> Result<Duration, kvm_ioctls::Error> {
    use kvm_bindings::{KVM_CAP_SPLIT_IRQCHIP, KVM_MAX_CPUID_ENTRIES, kvm_enable_cap};
    let kvm = kvm_ioctls::Kvm::new()?;
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let vm = kvm.create_vm()?;
        let mut split = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        split.args[0] = 24;
        vm.enable_cap(&split)?;
        let _bsp = vm.create_vcpu(0)?;
        let start = Instant::now();
        let ap = vm.create_vcpu(1)?;
        ap.set_cpuid2(&cpuid)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[runs / 2])
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
    report("tiny guest (Write + Exit), --mem 2G", 100, &[hi], 0);
    report(
        "tiny guest (Write + Exit), --mem 64M",
        100,
        &["--mem", "64M", hi],
        0,
    );

    // SMP at boot: the boot CPU starts CPUs 1..n (each its own stack), each
    // increments a counter, the boot CPU waits for them and exits.
    for n in [1u64, 2, 4] {
        let image = common::smp::counting_guest(n).write(&format!("bench-smp-{n}"));
        let cpus = n.to_string();
        report(
            &format!("{n} vCPU(s) started and counted, --mem 64M"),
            30,
            &[
                "--mem",
                "64M",
                "--cpus",
                &cpus,
                image.to_str().unwrap_or_default(),
            ],
            (n * (n - 1) / 2) as i32,
        );
    }
    report(
        "tiny guest (Write + Exit), --cpus 4 (none started)",
        30,
        &["--mem", "64M", "--cpus", "4", hi],
        0,
    );
    match vcpu_creation(30) {
        Ok(t) => println!(
            "{:<48} median {:>9.3} ms",
            "host cost of one more vCPU (create + CPUID)",
            t.as_secs_f64() * 1e3
        ),
        Err(e) => println!("vCPU creation: failed: {e}"),
    }

    // The workspace's target dir, or CARGO_TARGET_DIR if set.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let hello = target.join("x86_64-unknown-none/release/hello");
    match hello.to_str() {
        Some(h) if hello.exists() => {
            report("hello (x86_64-unknown-none/release/hello)", 10, &[h], 0)
        }
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
                i32::from(user),
            );
        }
    }
}
