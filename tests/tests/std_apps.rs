//! Unmodified Rust std applications (`apps/std-hello`, `apps/std-threads`)
//! built for hermit with `-Zbuild-std` and natively from the same source:
//! the hermit image runs through the proxy on uhyve and QEMU and must
//! print what the Linux program prints and exit with the same status
//! (argv[0] and timings are not printed by the apps, so outputs compare
//! byte for byte).

use std::process::Command;
use std::time::Duration;

use boot_tests::{Hypervisor, Output, built_std, proxy_image, require, run_with_input};

fn native(app: &str, args: &[&str], env: &[(&str, &str)], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(built_std().native(app));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, input.map(<[u8]>::to_vec), Duration::from_secs(60))
}

fn hermit(
    hv: Hypervisor,
    app: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Output {
    proxy_image(hv, &built_std().hermit(app), args, env, input)
}

fn hello(hv: Hypervisor) {
    if !require(hv, "std-hello") {
        return;
    }
    let args = ["first", "with space", "ünïcode"];
    let env = [("STD_HELLO_GREETING", "hi=there"), ("STD_HELLO_EXIT", "3")];
    let guest = hermit(hv, "std-hello", &args, &env, None);
    let host = native("std-hello", &args, &env, None);
    assert_eq!(host.status, Some(3), "native: {host:?}");
    assert_eq!(guest.status, Some(3), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");
    assert!(guest.stdout.contains("argv[2] = with space\n"), "{guest:?}");
    assert!(
        guest.stdout.contains("env STD_HELLO_GREETING = hi=there\n"),
        "{guest:?}"
    );
    assert!(
        guest.stdout.contains("two pi is about 6.28319\n"),
        "{guest:?}"
    );
    assert!(guest.stderr.contains("this goes to stderr\n"), "{guest:?}");
}

fn hello_default_status(hv: Hypervisor) {
    if !require(hv, "std-hello exit status 0") {
        return;
    }
    let guest = hermit(hv, "std-hello", &[], &[], None);
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert!(
        guest.stdout.starts_with("Hello from Rust std!\nargc = 1\n"),
        "{guest:?}"
    );
}

fn stdin(hv: Hypervisor) {
    if !require(hv, "std-hello cat") {
        return;
    }
    let input = b"line one\nline two, longer than the first\n\nlast line without newline";
    let guest = hermit(hv, "std-hello", &["cat"], &[], Some(input));
    let host = native("std-hello", &["cat"], &[], Some(input));
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");
    assert!(guest.stdout.contains("copied 67 bytes"), "{guest:?}");
}

fn panic(hv: Hypervisor) {
    if !require(hv, "std-hello panic") {
        return;
    }
    let guest = hermit(hv, "std-hello", &["panic"], &[], None);
    let host = native("std-hello", &["panic"], &[], None);
    // panic = "abort": Linux kills the native program with SIGABRT; the
    // guest reports the same as status 134 (128 + SIGABRT).
    assert_eq!(host.status, None, "native: {host:?}");
    assert_eq!(guest.status, Some(134), "{guest:?}");
    assert!(
        guest.stderr.contains("std-hello was asked to panic"),
        "{guest:?}"
    );
    assert!(
        host.stderr.contains("std-hello was asked to panic"),
        "{host:?}"
    );
}

fn threads(hv: Hypervisor, cpus: &str) {
    if !require(hv, &format!("std-threads on {cpus} CPU(s)")) {
        return;
    }
    let guest = hermit(hv, "std-threads", &[], &[("HERMIT_CPUS", cpus)], None);
    let host = native("std-threads", &[], &[], None);
    assert_eq!(host.status, Some(0), "native: {host:?}");
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");
    assert!(guest.stdout.ends_with("0 failure(s)\n"), "{guest:?}");
}

#[test]
fn std_hello_uhyve() {
    hello(Hypervisor::Uhyve);
    hello_default_status(Hypervisor::Uhyve);
}

#[test]
fn std_hello_qemu() {
    hello(Hypervisor::Qemu);
    hello_default_status(Hypervisor::Qemu);
}

#[test]
fn std_stdin_uhyve() {
    stdin(Hypervisor::Uhyve);
}

#[test]
fn std_stdin_qemu() {
    stdin(Hypervisor::Qemu);
}

#[test]
fn std_panic_uhyve() {
    panic(Hypervisor::Uhyve);
}

#[test]
fn std_panic_qemu() {
    panic(Hypervisor::Qemu);
}

#[test]
fn std_threads_uhyve() {
    threads(Hypervisor::Uhyve, "1");
    threads(Hypervisor::Uhyve, "2");
}

#[test]
fn std_threads_qemu() {
    threads(Hypervisor::Qemu, "1");
    threads(Hypervisor::Qemu, "2");
}

fn sys_check(hv: Hypervisor) {
    if !require(hv, "std-hello sys-check") {
        return;
    }
    let guest = hermit(hv, "std-hello", &["sys-check"], &[], None);
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert!(!guest.stdout.contains("FAILED"), "{guest:?}");
    assert!(
        guest
            .stdout
            .contains("ok: futex_wait(1 ms relative) = -ETIMEDOUT\n"),
        "{guest:?}"
    );
    assert!(
        guest.stdout.contains("sys-check: 0 failure(s)\n"),
        "{guest:?}"
    );
}

#[test]
fn std_sys_check_uhyve() {
    sys_check(Hypervisor::Uhyve);
}

#[test]
fn std_sys_check_qemu() {
    sys_check(Hypervisor::Qemu);
}
