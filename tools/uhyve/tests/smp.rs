//! SMP tests: tiny guests whose boot CPU starts application processors
//! with the StartCpu hypercall; hostile StartCpu parameters; how a VM with
//! several vCPUs ends; IPIs between vCPUs; pinning.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::smp::*;
use common::{Guest, Reg, config, skip_without_kvm};
use hermit_interface::hypercall::{Nr, errno};

fn uhyve_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uhyve"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn counting(n: u64, extra: &[&str]) {
    let image = counting_guest(n).write(&format!("smp-count-{n}-{}", extra.len()));
    let cpus = n.to_string();
    let mut args = vec!["--mem", "64M", "--cpus", &cpus];
    args.extend_from_slice(extra);
    args.push(image.to_str().unwrap());
    let out = uhyve_cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let sum = n * (n - 1) / 2;
    assert_eq!(out.status.code(), Some(sum as i32), "{n} CPUs: {stderr}");
    assert_eq!(out.stdout.len() as u64, REC_SIZE * n, "{stderr}");
    for (cpu, rec) in out.stdout.chunks(REC_SIZE as usize).enumerate() {
        let field = |i: usize| u64::from_le_bytes(rec[8 * i..8 * i + 8].try_into().unwrap());
        let cpu = cpu as u64;
        assert_eq!(field(0), cpu, "RSI of CPU {cpu}");
        if cpu > 0 {
            assert_eq!(field(1), 0x100 * cpu, "RDI - RSP of CPU {cpu}");
        }
        assert_eq!(field(2), cpu, "CPUID.1 APIC ID of CPU {cpu}");
        assert_eq!(field(3), cpu, "CPUID.0xB x2APIC ID of CPU {cpu}");
    }
}

#[test]
fn two_cpus_count() {
    if skip_without_kvm("two_cpus_count") {
        return;
    }
    counting(2, &[]);
}

#[test]
fn four_cpus_count_on_fewer_host_cores() {
    if skip_without_kvm("four_cpus_count_on_fewer_host_cores") {
        return;
    }
    counting(4, &[]);
}

#[test]
fn pinned_cpus_count() {
    if skip_without_kvm("pinned_cpus_count") {
        return;
    }
    let cores = uhyve::cpus::host_cores().unwrap();
    let list: Vec<String> = cores.iter().take(2).map(usize::to_string).collect();
    if list.len() < 2 {
        eprintln!("SKIPPED: pinned_cpus_count: this process may use only one host core");
        return;
    }
    counting(2, &["--pin", &list.join(",")]);
}

#[test]
fn missing_host_cores_are_skipped_with_a_warning() {
    if skip_without_kvm("missing_host_cores_are_skipped_with_a_warning") {
        return;
    }
    let cores = uhyve::cpus::host_cores().unwrap();
    let absent = (0..1000).find(|c| !cores.contains(c)).unwrap();
    let image = counting_guest(2).write("smp-pin-missing");
    let pin = format!("{},{absent}", cores[0]);
    let out = uhyve_cli(&["--mem", "64M", "--pin", &pin, image.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "uhyve: warning: host core(s) {absent} not available"
        )),
        "{stderr}"
    );
}

#[test]
fn pin_list_must_match_the_cpu_count() {
    let image = Guest::new().write("smp-pin-count");
    let mut c = config(image);
    c.cpus = 2;
    c.pin = Some(vec![0]);
    let err = uhyve::run(&c).unwrap_err();
    assert!(
        matches!(err, uhyve::Error::PinCount { cores: 1, cpus: 2 }),
        "{err}"
    );
    c.pin = Some(vec![0, 0]);
    assert!(matches!(uhyve::run(&c), Err(uhyve::Error::DuplicatePin(0))));
}

/// A 2-CPU guest that makes one StartCpu call with these fields and exits
/// with its result.
fn hostile(name: &str, cpu: u32, entry: Val, stack: Val, cr3: Val) -> uhyve::Outcome {
    let mut g = Guest::new();
    start_cpu(&mut g, start_block(1), cpu, entry, stack, Val::Raw(0), cr3);
    g.lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
    g.pad_to(AP_ENTRY);
    halt_forever(&mut g);
    let mut c = config(g.write(name));
    c.cpus = 2;
    uhyve::run(&c).unwrap()
}

#[test]
fn hostile_start_cpu_calls_get_an_errno() {
    if skip_without_kvm("hostile_start_cpu_calls_get_an_errno") {
        return;
    }
    let mem = config("x".into()).mem_size;
    let entry = Val::Link(AP_ENTRY);
    let stack = Val::Link(stack_top(1));
    let cr3 = Val::Cr3Plus(0);
    let einval = -errno::EINVAL;
    let efault = -errno::EFAULT;
    let cases: [(&str, u32, Val, Val, Val, i64); 13] = [
        ("cpu0", 0, entry, stack, cr3, einval),
        ("cpu-count", 2, entry, stack, cr3, einval),
        ("cpu-max", u32::MAX, entry, stack, cr3, einval),
        ("entry-hole", 1, Val::Raw(0xc000_0000), stack, cr3, efault),
        ("entry-far", 1, Val::Raw(1 << 45), stack, cr3, efault),
        ("entry-end", 1, Val::Raw(mem), stack, cr3, efault),
        (
            "stack-misaligned",
            1,
            entry,
            Val::Link(stack_top(1) + 8),
            cr3,
            einval,
        ),
        (
            "stack-outside",
            1,
            entry,
            Val::Raw(mem + 0x1000),
            cr3,
            efault,
        ),
        ("stack-zero", 1, entry, Val::Raw(0), cr3, efault),
        ("stack-max", 1, entry, Val::Raw(u64::MAX - 15), cr3, efault),
        ("cr3-misaligned", 1, entry, stack, Val::Cr3Plus(8), einval),
        ("cr3-outside", 1, entry, stack, Val::Raw(mem), efault),
        ("cr3-hole", 1, entry, stack, Val::Raw(0xc000_0000), efault),
    ];
    for (name, cpu, entry, stack, cr3, expected) in cases {
        let outcome = hostile(name, cpu, entry, stack, cr3);
        assert_eq!(outcome.abnormal, None, "{name}");
        assert_eq!(i64::from(outcome.status), expected, "{name}");
    }
    // The same call with valid values succeeds (and the halted AP does not
    // keep the VM alive).
    let outcome = hostile("valid", 1, entry, stack, cr3);
    assert_eq!((outcome.status, outcome.abnormal), (0, None));
}

#[test]
fn a_cpu_starts_only_once() {
    if skip_without_kvm("a_cpu_starts_only_once") {
        return;
    }
    let mut g = Guest::new();
    start_ap(&mut g, 1);
    start_cpu(
        &mut g,
        start_block(2),
        1,
        Val::Link(AP_ENTRY),
        Val::Link(stack_top(2)),
        Val::Raw(0),
        Val::Cr3Plus(0),
    );
    g.lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
    fail_block(&mut g);
    g.pad_to(AP_ENTRY);
    halt_forever(&mut g);
    let mut c = config(g.write("twice"));
    c.cpus = 2;
    let outcome = uhyve::run(&c).unwrap();
    assert_eq!(outcome.abnormal, None);
    assert_eq!(i64::from(outcome.status), -errno::EINVAL);
}

#[test]
fn start_cpu_block_outside_memory_ends_the_vm() {
    if skip_without_kvm("start_cpu_block_outside_memory_ends_the_vm") {
        return;
    }
    let mut g = Guest::new();
    g.mov_imm(Reg::Rax, 0xffff_f000)
        .out(Nr::StartCpu.port())
        .exit(EXIT, 0);
    let mut c = config(g.write("start-far"));
    c.cpus = 2;
    let outcome = uhyve::run(&c).unwrap();
    let reason = outcome.abnormal.expect("a bad block is abnormal");
    assert!(reason.contains("outside guest memory"), "{reason}");
}

/// A 2-CPU guest: the boot CPU starts AP 1 at `ap` (code emitted at
/// [`AP_ENTRY`]) and then runs `bsp`.
fn two_cpu_guest(
    name: &str,
    bsp: impl FnOnce(&mut Guest),
    ap: impl FnOnce(&mut Guest),
) -> uhyve::Outcome {
    let mut g = Guest::new();
    start_ap(&mut g, 1);
    bsp(&mut g);
    fail_block(&mut g);
    g.pad_to(AP_ENTRY);
    ap(&mut g);
    let mut c = config(g.write(name));
    c.cpus = 2;
    let start = Instant::now();
    let outcome = uhyve::run(&c).unwrap();
    // A hang guard, not a speed check: a VM that waits for a stuck vCPU
    // would never return at all.
    assert!(start.elapsed() < Duration::from_secs(30), "{name}");
    outcome
}

#[test]
fn stuck_aps_do_not_keep_the_vm_alive() {
    if skip_without_kvm("stuck_aps_do_not_keep_the_vm_alive") {
        return;
    }
    let exit9 = |g: &mut Guest| {
        g.exit(EXIT, 9);
    };
    let outcome = two_cpu_guest("ap-cli-hlt", exit9, halt_forever);
    assert_eq!((outcome.status, outcome.abnormal), (9, None));
    let outcome = two_cpu_guest("ap-spin", exit9, spin_forever);
    assert_eq!((outcome.status, outcome.abnormal), (9, None));
    // An AP that waits with interrupts enabled.
    let outcome = two_cpu_guest("ap-sti-hlt", exit9, |g| {
        g.sti();
        let top = g.here();
        g.hlt().jmp(top);
    });
    assert_eq!((outcome.status, outcome.abnormal), (9, None));
}

#[test]
fn an_ap_ends_the_vm() {
    if skip_without_kvm("an_ap_ends_the_vm") {
        return;
    }
    let outcome = two_cpu_guest("ap-exit", spin_forever, |g| {
        g.exit(AP_EXIT, 5);
    });
    assert_eq!((outcome.status, outcome.abnormal), (5, None));
    // The boot CPU waits in a dead halt while the AP works and exits:
    // one dead vCPU is not a dead VM.
    let outcome = two_cpu_guest("ap-exit-late", halt_forever, |g| {
        g.mov_imm(Reg::Rcx, 400_000)
            .raw(&[0x48, 0xff, 0xc9, 0x75, 0xfb]) // dec rcx; jnz -5
            .exit(AP_EXIT, 6);
    });
    assert_eq!((outcome.status, outcome.abnormal), (6, None));
    let outcome = two_cpu_guest("ap-ud2", spin_forever, |g| {
        g.ud2();
    });
    let reason = outcome.abnormal.expect("a fault is abnormal");
    assert!(reason.starts_with("vCPU 1: "), "{reason}");
    assert_eq!(outcome.status, 1);
}

#[test]
fn all_cpus_halted_with_interrupts_disabled_end_the_vm() {
    if skip_without_kvm("all_cpus_halted_with_interrupts_disabled_end_the_vm") {
        return;
    }
    let outcome = two_cpu_guest("all-dead", halt_forever, halt_forever);
    let reason = outcome.abnormal.expect("a dead VM is abnormal");
    assert!(
        reason.contains("all 2 started vCPUs halted with interrupts disabled"),
        "{reason}"
    );
    assert_eq!(outcome.status, 1);
}

#[test]
fn ipis_reach_other_cpus() {
    if skip_without_kvm("ipis_reach_other_cpus") {
        return;
    }
    let gate = IDT + 16 * VECTOR;
    let outcome = two_cpu_guest(
        "ipi",
        |g| {
            // IDT gate for VECTOR -> HANDLER, IDTR, lidt.
            g.data(gate + 2, &0x08u16.to_le_bytes())
                .data(gate + 5, &[0x8e])
                .data(IDTR, &((16 * VECTOR + 15) as u16).to_le_bytes());
            g.lea(Reg::Rbx, gate)
                .lea(Reg::Rax, HANDLER)
                .raw(&[0x66, 0x89, 0x03]) // mov [rbx], ax
                .shr(Reg::Rax, 16)
                .raw(&[0x66, 0x89, 0x43, 0x06]) // mov [rbx+6], ax
                .shr(Reg::Rax, 16)
                .raw(&[0x89, 0x43, 0x08]) // mov [rbx+8], eax
                .lea(Reg::Rbx, IDTR)
                .lea(Reg::Rcx, IDT)
                .store(Reg::Rbx, 2, Reg::Rcx);
            // Tell the AP the IDT is ready, wait until it listens, send
            // the IPI (ICR: destination APIC ID 1, fixed, VECTOR), wait for
            // the handler to run there.
            g.lea(Reg::Rbx, GOT).lock_inc(Reg::Rbx); // GOT = 1: IDT ready
            wait_for(g, READY, 1);
            g.mov_imm(Reg::Rbx, 0xfee0_0310)
                .store32_imm(Reg::Rbx, 1 << 24)
                .mov_imm(Reg::Rbx, 0xfee0_0300)
                .store32_imm(Reg::Rbx, 0x4000 | VECTOR as u32);
            wait_for(g, GOT, 2);
            g.exit(EXIT, 42);
        },
        |g| {
            wait_for(g, GOT, 1);
            g.lea(Reg::Rbx, IDTR).raw(&[0x0f, 0x01, 0x1b]); // lidt [rbx]
            // Software-enable the local APIC (spurious vector register).
            g.mov_imm(Reg::Rbx, 0xfee0_00f0)
                .store32_imm(Reg::Rbx, 0x1ff);
            g.lea(Reg::Rbx, READY).lock_inc(Reg::Rbx).sti();
            let top = g.here();
            g.hlt().jmp(top);
            // The handler: count, EOI, return.
            g.pad_to(HANDLER)
                .push(Reg::Rbx)
                .lea(Reg::Rbx, GOT)
                .lock_inc(Reg::Rbx)
                .mov_imm(Reg::Rbx, 0xfee0_00b0)
                .store32_imm(Reg::Rbx, 0)
                .pop(Reg::Rbx)
                .raw(&[0x48, 0xcf]); // iretq
        },
    );
    assert_eq!((outcome.status, outcome.abnormal), (42, None));
}

#[test]
fn ap_time_stamp_counters_run_with_the_boot_cpu() {
    if skip_without_kvm("ap_time_stamp_counters_run_with_the_boot_cpu") {
        return;
    }
    // TSC of the boot CPU before StartCpu (T0), of the AP at its entry (T1)
    // and of the boot CPU after the AP reported (T2): T0 <= T1 <= T2.
    const T: u64 = 0x2080;
    let mut g = Guest::new();
    g.rdtsc().lea(Reg::Rbx, T).store(Reg::Rbx, 0, Reg::Rax);
    start_ap(&mut g, 1);
    wait_for(&mut g, COUNTER, 1);
    g.rdtsc().lea(Reg::Rbx, T).store(Reg::Rbx, 16, Reg::Rax);
    g.data(WRITE, &1i32.to_le_bytes())
        .pointer(WRITE + 8, T)
        .data(WRITE + 16, &24u64.to_le_bytes())
        .hypercall(Nr::Write, WRITE)
        .exit(EXIT, 0);
    fail_block(&mut g);
    g.pad_to(AP_ENTRY)
        .rdtsc()
        .lea(Reg::Rbx, T)
        .store(Reg::Rbx, 8, Reg::Rax)
        .lea(Reg::Rbx, COUNTER)
        .lock_inc(Reg::Rbx);
    halt_forever(&mut g);
    let image = g.write("tsc");
    let out = uhyve_cli(&["--mem", "64M", "--cpus", "2", image.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: Vec<u64> = out
        .stdout
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(t.len(), 3);
    assert!(
        t[0] <= t[1] && t[1] <= t[2],
        "T0 {} T1 {} T2 {}",
        t[0],
        t[1],
        t[2]
    );
}
