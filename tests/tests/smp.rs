//! SMP boot tests: the `cpus` app (kernel feature `smp`) with 1, 2 and 4
//! vCPUs prints how many CPUs came online and exits 0 only if all did.
//! Under QEMU the kernel starts the APs itself (ACPI MADT, INIT-SIPI); under
//! uhyve through the `StartCpu` hypercall.

use boot_tests::{Hypervisor, Output, proxy, require};

/// Runs `cpus` with `n` vCPUs and the kernel log on stderr.
fn run_cpus(hv: Hypervisor, n: usize) -> Output {
    let count = n.to_string();
    proxy(
        hv,
        "cpus",
        &[],
        &[("HERMIT_CPUS", count.as_str()), ("HERMIT_VERBOSE", "1")],
    )
}

fn cpus_come_online(hv: Hypervisor, n: usize) {
    let test = format!("cpus_come_online({n})");
    if !require(hv, &test) {
        return;
    }
    let out = run_cpus(hv, n);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!("cpus online: {n}\n")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("cpus total: {n}\n")),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!("{n} CPUs online")),
        "the kernel logs the count: {out:?}"
    );
    assert!(
        !out.stderr.contains("WARN"),
        "no bring-up warnings: {out:?}"
    );
}

macro_rules! cpus_tests {
    ($($name:ident = $n:literal),* $(,)?) => {
        mod qemu {
            $(#[test] fn $name() { super::cpus_come_online(boot_tests::Hypervisor::Qemu, $n) })*
        }
        mod uhyve {
            $(#[test] fn $name() { super::cpus_come_online(boot_tests::Hypervisor::Uhyve, $n) })*
        }
    };
}

cpus_tests!(one_cpu = 1, two_cpus = 2, four_cpus = 4);

/// An image built without feature `smp` stays on one CPU however many the
/// VM has, and still runs.
#[test]
fn without_smp_feature_hello_runs_on_many_cpus() {
    if !require(
        Hypervisor::Qemu,
        "without_smp_feature_hello_runs_on_many_cpus",
    ) {
        return;
    }
    let out = proxy(Hypervisor::Qemu, "hello", &[], &[("HERMIT_CPUS", "4")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
}
