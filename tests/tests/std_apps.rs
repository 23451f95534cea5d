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

/// A fresh, empty host directory.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hermit-std-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// std::fs in a mapped host directory and in the guest's /tmp: the same
/// lines as the Linux program in a host directory, and nothing left over.
fn files(hv: Hypervisor) {
    if !require(hv, "std-fs") {
        return;
    }
    let host_dir = scratch(&format!("fs-native-{}", hv.isle()));
    let host = native("std-fs", &[host_dir.to_str().unwrap()], &[], None);
    assert_eq!(host.status, Some(0), "native: {host:?}");
    assert!(host.stdout.contains("json round trip: true\n"), "{host:?}");

    let mapped = scratch(&format!("fs-mapped-{}", hv.isle()));
    let mount = format!("{}:/data", mapped.display());
    let guest = hermit(hv, "std-fs", &["/data"], &[("HERMIT_MOUNT", &mount)], None);
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");
    let left: Vec<_> = std::fs::read_dir(&mapped).unwrap().collect();
    assert!(left.is_empty(), "the guest left {left:?} behind");

    let guest = hermit(hv, "std-fs", &["/tmp"], &[], None);
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");

    // A directory that does not exist: the same error as natively.
    let guest = hermit(hv, "std-fs", &["/nonexistent"], &[], None);
    let host = native("std-fs", &["/nonexistent"], &[], None);
    assert_eq!(guest.status, Some(1), "{guest:?}");
    assert_eq!(host.status, Some(1), "{host:?}");
    assert_eq!(guest.stderr.trim_end(), host.stderr.trim_end(), "{guest:?}");
    let _ = std::fs::remove_dir_all(host_dir);
    let _ = std::fs::remove_dir_all(mapped);
}

#[test]
fn std_fs_uhyve() {
    files(Hypervisor::Uhyve);
}

#[test]
fn std_fs_qemu() {
    files(Hypervisor::Qemu);
}

/// A free TCP port on the host's 127.0.0.1 (free when this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GETs `path` from 127.0.0.1:`port`, retrying while the server starts;
/// the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply)
        })();
        match attempt {
            Ok(reply) if !reply.is_empty() => {
                let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
                let status = head.lines().next().unwrap_or("").to_owned();
                return (status, body.to_owned());
            }
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("GET {path} from port {port}: {other:?}"),
        }
    }
}

/// std::net::TcpListener in the guest, reached through HERMIT_APP_PORT:
/// the same answers as the Linux program.
fn http(hv: Hypervisor) {
    if !require(hv, "std-http") {
        return;
    }
    let paths = ["/", "/echo/hermit", "/missing"];
    let serve = |port: u16, guest: bool| {
        let port_s = port.to_string();
        let count = paths.len().to_string();
        std::thread::spawn(move || {
            if guest {
                hermit(
                    hv,
                    "std-http",
                    &[&port_s, &count],
                    &[("HERMIT_APP_PORT", &port_s)],
                    None,
                )
            } else {
                native("std-http", &[&port_s, &count], &[], None)
            }
        })
    };
    let host_port = free_port();
    let host = serve(host_port, false);
    let host_answers: Vec<_> = paths.iter().map(|p| get(host_port, p)).collect();
    let host = host.join().unwrap();
    assert_eq!(host.status, Some(0), "native: {host:?}");

    let guest_port = free_port();
    let guest = serve(guest_port, true);
    let guest_answers: Vec<_> = paths.iter().map(|p| get(guest_port, p)).collect();
    let guest = guest.join().unwrap();
    assert_eq!(guest.status, Some(0), "{guest:?}");
    assert_eq!(guest_answers, host_answers, "{guest:?}");
    assert_eq!(guest_answers[1].1, "hermit");
    assert!(guest_answers[2].0.contains("404"), "{guest_answers:?}");
    let strip = |s: &str| s.replace(&guest_port.to_string(), "PORT");
    assert_eq!(
        strip(&guest.stdout),
        host.stdout.replace(&host_port.to_string(), "PORT"),
        "{guest:?}"
    );
}

#[test]
fn std_http_uhyve() {
    http(Hypervisor::Uhyve);
}

#[test]
fn std_http_qemu() {
    http(Hypervisor::Qemu);
}

/// The stock `x86_64-unknown-hermit` target (SSE floats, red zone) builds
/// the same app, and the image runs where SSE instructions are executed
/// rather than emulated: under QEMU's TCG. (On this host's software KVM
/// the first SSE instruction that runs emulated at CPL 0 ends the VM;
/// uhyve starts the guest natively, see `stock_target_on_uhyve`.)
#[test]
fn std_hello_stock_target_on_qemu_tcg() {
    if !require(
        Hypervisor::Qemu,
        "std-hello for x86_64-unknown-hermit on TCG",
    ) {
        return;
    }
    let image = stock_target_image("std-hello");
    let args = ["stock", "target"];
    let env = [("STD_HELLO_EXIT", "3"), ("HERMIT_KVM", "0")];
    let guest = proxy_image(Hypervisor::Qemu, &image, &args, &env, None);
    let host = native("std-hello", &args, &env[..1], None);
    assert_eq!(guest.status, Some(3), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");
}

/// Builds std app `app` for the stock `x86_64-unknown-hermit` target (SSE
/// floats, red zone) and returns its image.
fn stock_target_image(app: &str) -> std::path::PathBuf {
    built_std();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = boot_tests::target_dir().join("std-apps");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(boot_tests::workspace().join("apps").join(app))
        .env("CARGO_TARGET_DIR", &dir)
        .args(["build", "--release", "--target", "x86_64-unknown-hermit"]);
    boot_tests::cargo_build(cmd, &format!("{app} for x86_64-unknown-hermit"));
    dir.join("x86_64-unknown-hermit/release").join(app)
}

/// Images built for the stock target run under uhyve too, on one and two
/// CPUs, and print what the Linux programs do: on a hardware KVM the
/// kernel's SSE code simply runs; on this host's software KVM uhyve
/// registers every vCPU for native execution before it starts, so no SSE
/// instruction is ever emulated.
#[test]
fn stock_target_on_uhyve() {
    if !require(
        Hypervisor::Uhyve,
        "std apps for x86_64-unknown-hermit on uhyve",
    ) {
        return;
    }
    let image = stock_target_image("std-hello");
    let args = ["stock", "target"];
    let env = [("STD_HELLO_EXIT", "3")];
    let guest = proxy_image(Hypervisor::Uhyve, &image, &args, &env, None);
    let host = native("std-hello", &args, &env, None);
    assert_eq!(guest.status, Some(3), "{guest:?}");
    assert_eq!(guest.stdout, host.stdout, "{guest:?}");

    let image = stock_target_image("std-threads");
    let host = native("std-threads", &[], &[], None);
    for cpus in ["1", "2"] {
        let guest = proxy_image(
            Hypervisor::Uhyve,
            &image,
            &[],
            &[("HERMIT_CPUS", cpus)],
            None,
        );
        assert_eq!(guest.status, Some(0), "{cpus} CPU(s): {guest:?}");
        assert_eq!(guest.stdout, host.stdout, "{cpus} CPU(s): {guest:?}");
    }
}
