//! Hypervisor tests: tiny hand-assembled guests exercise each hypercall,
//! hostile parameters and abnormal endings through `uhyve::run`.

mod common;

use common::{Guest, Reg, config, skip_without_kvm};
use hermit_interface::LOG_RING_MAGIC;
use hermit_interface::hypercall::{Nr, errno};

const EXIT: u64 = 0x2000;
const WRITE: u64 = 0x2010;
const LOGREG: u64 = 0x2040;
const MSG: u64 = 0x2100;
const RING: u64 = 0x2200;

/// Fills the Write block: fd, len, and buf (a relocated pointer to `buf`
/// if `relocate`, else the raw value).
fn write_block(g: &mut Guest, fd: i32, buf: u64, relocate: bool, len: u64) {
    g.data(WRITE, &fd.to_le_bytes());
    if relocate {
        g.pointer(WRITE + 8, buf);
    } else {
        g.data(WRITE + 8, &buf.to_le_bytes());
    }
    g.data(WRITE + 16, &len.to_le_bytes());
    g.data(WRITE + 24, &0x5555u64.to_le_bytes());
}

/// Issues the Write hypercall, then exits with its result field.
fn exit_with_write_result(g: &mut Guest) {
    g.hypercall(Nr::Write, WRITE)
        .load(Reg::Rcx, Reg::Rax, 24)
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
}

fn run(name: &str, g: &Guest) -> uhyve::Outcome {
    uhyve::run(&config(g.write(name))).unwrap()
}

#[test]
fn hi_and_exit_7() {
    if skip_without_kvm("hi_and_exit_7") {
        return;
    }
    let mut g = Guest::new();
    g.data(MSG, b"hi\n");
    write_block(&mut g, 1, MSG, true, 3);
    g.hypercall(Nr::Write, WRITE).exit(EXIT, 7);
    let outcome = run("hi", &g);
    assert_eq!(outcome.abnormal, None);
    assert_eq!(outcome.status, 7);
    assert!(outcome.kernel_log.is_empty());
}

#[test]
fn write_results() {
    if skip_without_kvm("write_results") {
        return;
    }
    let mem = config("x".into()).mem_size;
    let cases: [(&str, i32, u64, bool, u64, i64); 7] = [
        ("bytes", 2, MSG, true, 3, 3),
        ("empty", 1, MSG, true, 0, 0),
        ("badfd", 7, MSG, true, 3, -errno::EBADF),
        ("beyond", 1, mem - 1, false, 16, -errno::EFAULT),
        ("overflow", 1, MSG, true, u64::MAX, -errno::EFAULT),
        ("wrap", 1, u64::MAX - 1, false, 4, -errno::EFAULT),
        ("hole", 1, 3 << 30, false, 1, -errno::EFAULT),
    ];
    for (name, fd, buf, relocate, len, expected) in cases {
        let mut g = Guest::new();
        g.data(MSG, b"hi\n");
        write_block(&mut g, fd, buf, relocate, len);
        exit_with_write_result(&mut g);
        let outcome = run(name, &g);
        assert_eq!(outcome.abnormal, None, "{name}");
        assert_eq!(i64::from(outcome.status), expected, "{name}");
    }
}

#[test]
fn parameter_blocks_outside_memory_end_the_vm() {
    if skip_without_kvm("parameter_blocks_outside_memory_end_the_vm") {
        return;
    }
    for (name, nr, addr) in [
        ("exit-far", Nr::Exit, 0xffff_f000u64),
        ("write-far", Nr::Write, 0xffff_f000),
        ("write-edge", Nr::Write, (64 << 20) - 8),
        ("log-far", Nr::LogRegister, 0xc000_0000),
    ] {
        let mut g = Guest::new();
        g.mov_imm(Reg::Rax, addr).out(nr.port()).exit(EXIT, 0);
        let outcome = run(name, &g);
        let reason = outcome.abnormal.expect(name);
        assert!(reason.contains("outside guest memory"), "{name}: {reason}");
        assert_eq!(outcome.status, 1);
    }
}

#[test]
fn unknown_ports_are_ignored_and_narrow_hypercalls_rejected() {
    if skip_without_kvm("unknown_ports_are_ignored_and_narrow_hypercalls_rejected") {
        return;
    }
    let mut g = Guest::new();
    g.mov_imm(Reg::Rax, 0x1234)
        .out(0x5ff)
        .out(0x80)
        .out(0x4ff)
        .out8(0x3f8)
        .exit(EXIT, 5);
    let outcome = run("ports", &g);
    assert_eq!((outcome.status, outcome.abnormal), (5, None));

    let mut g = Guest::new();
    g.lea(Reg::Rax, EXIT).out8(Nr::Exit.port()).hlt();
    let outcome = run("narrow", &g);
    assert!(outcome.abnormal.unwrap().contains("32-bit out"));
}

#[test]
fn boot_registers_and_boot_info() {
    if skip_without_kvm("boot_registers_and_boot_info") {
        return;
    }
    // Exit with the low 32 bits of the BootInfo magic that RDI points to.
    let mut g = Guest::new();
    g.load(Reg::Rcx, Reg::Rdi, 0)
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
    let outcome = run("magic", &g);
    assert_eq!(outcome.abnormal, None);
    assert_eq!(
        outcome.status as u32,
        hermit_interface::BOOT_INFO_MAGIC as u32
    );
}

#[test]
fn faults_end_the_vm_abnormally() {
    if skip_without_kvm("faults_end_the_vm_abnormally") {
        return;
    }
    let mut g = Guest::new();
    g.ud2();
    let outcome = run("ud2", &g);
    let reason = outcome.abnormal.expect("ud2 must not look like an exit");
    assert_eq!(outcome.status, 1);
    eprintln!("ud2 ended the VM with: {reason}");

    // A jump far outside RAM.
    let mut g = Guest::new();
    g.mov_imm(Reg::Rax, 0x7fff_0000_0000).raw(&[0xff, 0xe0]); // jmp rax
    let outcome = run("wild-jump", &g);
    assert!(outcome.abnormal.is_some());
}

#[test]
fn log_ring_is_returned() {
    if skip_without_kvm("log_ring_is_returned") {
        return;
    }
    let mut g = Guest::new();
    g.pointer(LOGREG, RING)
        .data(RING, &LOG_RING_MAGIC.to_le_bytes())
        .data(RING + 8, &16u64.to_le_bytes())
        .data(RING + 16, &20u64.to_le_bytes())
        .data(RING + 24, b"0123456789abcdef")
        .hypercall(Nr::LogRegister, LOGREG)
        .exit(EXIT, 0);
    let outcome = run("log", &g);
    assert_eq!(outcome.abnormal, None);
    assert_eq!(outcome.kernel_log, b"456789abcdef0123");

    // A ring registered at a bogus address is reported, not read.
    let mut g = Guest::new();
    g.data(LOGREG, &(1u64 << 45).to_le_bytes())
        .hypercall(Nr::LogRegister, LOGREG)
        .ud2();
    let outcome = run("badlog", &g);
    assert!(outcome.abnormal.is_some());
    let log = String::from_utf8(outcome.kernel_log).unwrap();
    assert!(log.contains("cannot read the kernel log ring"), "{log}");
}

#[test]
fn setup_errors_are_typed() {
    let mut g = Guest::new();
    g.exit(EXIT, 0);
    let image = g.write("setup");
    let mut c = config(image.clone());
    c.cpus = 65;
    let err = uhyve::run(&c).unwrap_err();
    assert!(matches!(err, uhyve::Error::TooManyCpus(65)), "{err}");
    assert!(err.to_string().contains("at most 64"), "{err}");
    c.cpus = 0;
    assert!(matches!(uhyve::run(&c), Err(uhyve::Error::NoCpus)));

    let mut c = config(image);
    c.mem_size = 1 << 20;
    let err = uhyve::run(&c).unwrap_err();
    assert!(matches!(err, uhyve::Error::MemoryTooSmall { .. }), "{err}");

    let c = config("/nonexistent/hermit-image".into());
    let err = uhyve::run(&c).unwrap_err();
    assert!(matches!(err, uhyve::Error::ImageRead { .. }), "{err}");

    let text = std::env::temp_dir().join(format!("uhyve-text-{}", std::process::id()));
    std::fs::write(&text, "#!/bin/sh\n").unwrap();
    let err = uhyve::run(&config(text.clone())).unwrap_err();
    assert!(err.to_string().ends_with(": not an ELF file"), "{err}");
    let _ = std::fs::remove_file(text);
}

#[test]
fn local_apic_is_in_the_kernel() {
    if skip_without_kvm("local_apic_is_in_the_kernel") {
        return;
    }
    // Read the xAPIC version register at 0xfee00030: KVM's in-kernel LAPIC
    // answers 0x14 in the low byte; without one the read would reach
    // uhyve's MMIO handler and return all ones.
    let mut g = Guest::new();
    g.mov_imm(Reg::Rbx, 0xfee0_0030)
        .raw(&[0x8b, 0x0b]) // mov ecx, [rbx]
        .raw(&[0x81, 0xe1, 0xff, 0, 0, 0]) // and ecx, 0xff
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
    let outcome = run("lapic", &g);
    assert_eq!((outcome.status, outcome.abnormal), (0x14, None));
}

#[test]
fn halting_with_interrupts_disabled_ends_the_vm() {
    if skip_without_kvm("halting_with_interrupts_disabled_ends_the_vm") {
        return;
    }
    let mut g = Guest::new();
    g.raw(&[0xfa]).hlt(); // cli; hlt
    let start = std::time::Instant::now();
    let outcome = run("cli-hlt", &g);
    let reason = outcome.abnormal.expect("a dead halt is abnormal");
    assert!(
        reason.contains("halted with interrupts disabled"),
        "{reason}"
    );
    assert_eq!(outcome.status, 1);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn long_running_guests_survive_the_halt_checks() {
    if skip_without_kvm("long_running_guests_survive_the_halt_checks") {
        return;
    }
    // Long enough (ring-0 code may be emulated: ~0.5 us per instruction on
    // kvm_pvm) to be kicked by the halt-check timer several times.
    let mut g = Guest::new();
    g.mov_imm(Reg::Rcx, 400_000)
        .raw(&[0x48, 0xff, 0xc9, 0x75, 0xfb]) // dec rcx; jnz -5
        .exit(EXIT, 3);
    let outcome = run("long", &g);
    assert_eq!((outcome.status, outcome.abnormal), (3, None));
}
