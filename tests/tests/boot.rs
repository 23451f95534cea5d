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

/// Whether this host's KVM is `kvm_pvm`, where `HERMIT_NATIVE=1` makes the
/// kernel run natively (elsewhere the option changes nothing).
fn kvm_pvm_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// `HERMIT_NATIVE=1`: hello, an exception report and the heap work the
/// same natively; the kernel log says whether it ran natively.
#[test]
fn native_mode_runs_interrupt_free_apps() {
    let hv = Hypervisor::Uhyve;
    if !require(hv, "native_mode_runs_interrupt_free_apps") {
        return;
    }
    let native = [("HERMIT_NATIVE", "1")];
    let out = proxy(hv, "hello", &["native"], &native);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
    assert!(out.stdout.contains("argv[1] = native"), "{out:?}");

    let out = proxy(
        hv,
        "hello",
        &[],
        &[("HERMIT_NATIVE", "1"), ("HERMIT_VERBOSE", "1")],
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let said_native = out.stderr.contains("(native on kvm_pvm, no interrupts)");
    assert_eq!(said_native, kvm_pvm_host(), "{out:?}");
    if !kvm_pvm_host() {
        eprintln!(
            "note: native_mode_runs_interrupt_free_apps: not a kvm_pvm host, so this ran emulated"
        );
    }

    let out = proxy(hv, "panic", &["page-fault"], &native);
    assert_eq!(out.status, Some(128 + 14), "{out:?}");
    assert!(
        out.stderr.contains("CPU exception 14 (page fault)"),
        "{out:?}"
    );

    let out = proxy(
        hv,
        "heap-check",
        &["16"],
        &[("HERMIT_NATIVE", "1"), ("HERMIT_MEM", "64M")],
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("heap ok: "), "{out:?}");
}

/// An app that enables interrupts stops with a clear message natively
/// (instead of faulting on its first timer interrupt), and runs normally
/// where native mode is not available.
#[test]
fn native_mode_refuses_interrupts_clearly() {
    let hv = Hypervisor::Uhyve;
    if !require(hv, "native_mode_refuses_interrupts_clearly") {
        return;
    }
    let out = proxy(hv, "threads", &["spawn-join"], &[("HERMIT_NATIVE", "1")]);
    if kvm_pvm_host() {
        assert_eq!(out.status, Some(101), "{out:?}");
        assert!(
            out.stderr.contains("this application enables interrupts"),
            "{out:?}"
        );
        assert!(out.stderr.contains("without native=on"), "{out:?}");
    } else {
        assert_eq!(out.status, Some(0), "{out:?}");
        assert!(out.stdout.contains("spawn-join: ok"), "{out:?}");
    }
}
