//! Boot tests: the demo apps, run through the proxy under uhyve and QEMU,
//! checked on output and exit status. A hypervisor that cannot run here is
//! reported as `SKIPPED: <test>: <reason>`.

use boot_tests::{Hypervisor, built, proxy, require};

fn hello_prints_args_and_env(hv: Hypervisor) {
    if !require(hv, "hello_prints_args_and_env") {
        return;
    }
    let out = proxy(
        hv,
        "hello",
        &["first", "with space"],
        &[("HERMIT_TEST_MARKER", "a=b c")],
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"Hello World!!!"), "{out:?}");
    let image = built().app("hello");
    assert!(
        lines.contains(&format!("argv[0] = {}", image.display()).as_str()),
        "{out:?}"
    );
    assert!(lines.contains(&"argv[1] = first"), "{out:?}");
    assert!(lines.contains(&"argv[2] = with space"), "{out:?}");
    assert!(!out.stdout.contains("argv[3]"), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("envp[") && l.ends_with("] = HERMIT_TEST_MARKER=a=b c")),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "unexpected stderr: {out:?}");
}

fn panic_gives_message_and_status_101(hv: Hypervisor) {
    if !require(hv, "panic_gives_message_and_status_101") {
        return;
    }
    let out = proxy(hv, "panic", &[], &[]);
    assert_eq!(out.status, Some(101), "{out:?}");
    assert!(
        out.stderr.contains("panicked at apps/panic/src/main.rs"),
        "{out:?}"
    );
    assert!(out.stderr.contains("this app panics on purpose"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

fn page_fault_gives_diagnostic(hv: Hypervisor) {
    if !require(hv, "page_fault_gives_diagnostic") {
        return;
    }
    let out = proxy(hv, "panic", &["page-fault"], &[]);
    assert_eq!(out.status, Some(128 + 14), "{out:?}");
    assert!(
        out.stderr.contains("CPU exception 14 (page fault)"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("cr2 0x00007fffdeadb000 (read, page not present)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("rip 0x"), "{out:?}");
    assert!(!out.stdout.contains("read "), "{out:?}");
    let out = proxy(hv, "panic", &["null"], &[]);
    assert_eq!(out.status, Some(128 + 14), "{out:?}");
    assert!(
        out.stderr
            .contains("cr2 0x0000000000000000 (read, page not present)"),
        "{out:?}"
    );
}

fn exit_status_reaches_the_host(hv: Hypervisor) {
    if !require(hv, "exit_status_reaches_the_host") {
        return;
    }
    // 200 does not fit isa-debug-exit's 7 bits: QEMU needs the exit record.
    for status in [0, 3, 42, 127, 200, 255] {
        let out = proxy(hv, "exit-status", &[&status.to_string()], &[]);
        assert_eq!(out.status, Some(status), "{out:?}");
    }
    let out = proxy(hv, "exit-status", &["not-a-number"], &[]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr, "usage: exit-status [STATUS]\n", "{out:?}");
}

fn verbose_prints_kernel_log(hv: Hypervisor) {
    if !require(hv, "verbose_prints_kernel_log") {
        return;
    }
    let out = proxy(hv, "hello", &[], &[("HERMIT_VERBOSE", "1")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
    assert!(out.stderr.contains("--- kernel log"), "{out:?}");
    assert!(
        out.stderr.contains("application exited with status 0"),
        "{out:?}"
    );
    // Without HERMIT_VERBOSE the log stays hidden.
    let quiet = proxy(hv, "hello", &[], &[("HERMIT_LOG_LEVEL", "debug")]);
    assert!(!quiet.stderr.contains("kernel log"), "{quiet:?}");
}

fn small_memory_is_enough(hv: Hypervisor) {
    if !require(hv, "small_memory_is_enough") {
        return;
    }
    let out = proxy(hv, "hello", &[], &[("HERMIT_MEM", "16M")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
}

macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod uhyve {
            $(#[test] fn $test() { super::$test(boot_tests::Hypervisor::Uhyve) })*
        }
        mod qemu {
            $(#[test] fn $test() { super::$test(boot_tests::Hypervisor::Qemu) })*
        }
    };
}

on_both!(
    hello_prints_args_and_env,
    panic_gives_message_and_status_101,
    page_fault_gives_diagnostic,
    exit_status_reaches_the_host,
    verbose_prints_kernel_log,
    small_memory_is_enough,
);

fn heap_allocates_and_reports_exhaustion(hv: Hypervisor) {
    if !require(hv, "heap_allocates_and_reports_exhaustion") {
        return;
    }
    let out = proxy(hv, "heap-check", &["16"], &[("HERMIT_MEM", "64M")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("heap ok: "), "{out:?}");
    // 64 MiB blocks cannot fit into a 32 MiB VM.
    let out = proxy(hv, "heap-check", &["64"], &[("HERMIT_MEM", "32M")]);
    assert_eq!(out.status, Some(101), "{out:?}");
    assert!(out.stderr.contains("memory allocation of"), "{out:?}");
}

mod heap {
    #[test]
    fn uhyve() {
        super::heap_allocates_and_reports_exhaustion(boot_tests::Hypervisor::Uhyve)
    }
    #[test]
    fn qemu() {
        super::heap_allocates_and_reports_exhaustion(boot_tests::Hypervisor::Qemu)
    }
}

/// Whether this host's KVM is `kvm_pvm`, where the kernel runs natively
/// by default (elsewhere `HERMIT_NATIVE` changes nothing).
fn kvm_pvm_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// The kernel runs natively by default on `kvm_pvm`, and `HERMIT_NATIVE=0`
/// keeps it emulated; the kernel log says which. Hello, an exception
/// report and the heap behave the same either way.
#[test]
fn native_mode_is_the_default_and_can_be_switched_off() {
    let hv = Hypervisor::Uhyve;
    if !require(hv, "native_mode_is_the_default_and_can_be_switched_off") {
        return;
    }
    for (value, native) in [(None, kvm_pvm_host()), (Some("0"), false)] {
        let mut env = vec![("HERMIT_VERBOSE", "1")];
        env.extend(value.map(|v| ("HERMIT_NATIVE", v)));
        let out = proxy(hv, "hello", &["native"], &env);
        assert_eq!(out.status, Some(0), "{out:?}");
        assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
        assert!(out.stdout.contains("argv[1] = native"), "{out:?}");
        assert_eq!(
            out.stderr.contains("(native on kvm_pvm)"),
            native,
            "HERMIT_NATIVE={value:?}: {out:?}"
        );

        let env: Vec<_> = value.map(|v| ("HERMIT_NATIVE", v)).into_iter().collect();
        let out = proxy(hv, "panic", &["page-fault"], &env);
        assert_eq!(out.status, Some(128 + 14), "{out:?}");
        assert!(
            out.stderr.contains("CPU exception 14 (page fault)"),
            "{out:?}"
        );

        let mut env = vec![("HERMIT_MEM", "64M")];
        env.extend(value.map(|v| ("HERMIT_NATIVE", v)));
        let out = proxy(hv, "heap-check", &["16"], &env);
        assert_eq!(out.status, Some(0), "{out:?}");
        assert!(out.stdout.starts_with("heap ok: "), "{out:?}");
    }
    if !kvm_pvm_host() {
        eprintln!(
            "note: native_mode_is_the_default_and_can_be_switched_off: not a kvm_pvm host, so \
             both runs were emulated"
        );
    }
}

/// QEMU's TCG accepts the registration `wrmsr` without acting on it; the
/// kernel must notice (it still runs at CPL 0) and keep masking interrupts
/// with `cli`, or every critical section races with the interrupts.
#[test]
fn tcg_is_never_taken_for_native() {
    let hv = Hypervisor::Qemu;
    if !require(hv, "tcg_is_never_taken_for_native") {
        return;
    }
    let env = [("HERMIT_KVM", "0"), ("HERMIT_VERBOSE", "1")];
    let out = proxy(hv, "hello", &[], &env);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stderr.contains("hermit kernel on Qemu"), "{out:?}");
    assert!(!out.stderr.contains("(native on kvm_pvm)"), "{out:?}");
}

/// Timer interrupts, preemption, sleeping and thread wake-ups work in both
/// modes on two CPUs (natively the interrupts come through the hypervisor's
/// IDT delivery and the virtual interrupt flag).
#[test]
fn interrupts_work_natively_and_emulated() {
    let hv = Hypervisor::Uhyve;
    if !require(hv, "interrupts_work_natively_and_emulated") {
        return;
    }
    for native in ["1", "0"] {
        let out = proxy(
            hv,
            "threads",
            &["sleep", "preempt", "spawn-join", "condvar"],
            &[("HERMIT_NATIVE", native), ("HERMIT_CPUS", "2")],
        );
        assert_eq!(out.status, Some(0), "HERMIT_NATIVE={native}: {out:?}");
        for check in ["sleep", "preempt", "spawn-join", "condvar"] {
            assert!(
                out.stdout.contains(&format!("{check}: ok")),
                "HERMIT_NATIVE={native}: {out:?}"
            );
        }
    }
}
