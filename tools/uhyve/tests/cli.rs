//! Tests of the `uhyve` binary: user mistakes give one `uhyve: ...` line
//! and a non-zero status; guests' output and status pass through.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Guest, Reg, skip_without_kvm};
use hermit_interface::hypercall::Nr;
use hermit_interface::{LOG_RING_MAGIC, MemoryKind, Platform};

fn uhyve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uhyve"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

/// Asserts a failed run with exactly one `uhyve: ` line on stderr that
/// contains `text`.
fn assert_one_line_error(out: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("uhyve: "), "{stderr}");
    assert!(stderr.contains(text), "expected {text:?} in {stderr}");
}

#[test]
fn help() {
    let out = uhyve(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Usage: uhyve [OPTIONS] IMAGE [ARGS...]"));
    assert!(stdout.contains("--mem SIZE"));
}

#[test]
fn bad_arguments() {
    assert_one_line_error(&uhyve(&[]), "missing IMAGE");
    assert_one_line_error(
        &uhyve(&["--mem", "lots", "x"]),
        "invalid --mem value 'lots'",
    );
    assert_one_line_error(&uhyve(&["--mem=12Q", "x"]), "invalid --mem value '12Q'");
    assert_one_line_error(&uhyve(&["--cpus", "-1", "x"]), "invalid --cpus");
    assert_one_line_error(&uhyve(&["--log-level", "loud", "x"]), "invalid --log-level");
    assert_one_line_error(
        &uhyve(&["--frobnicate", "x"]),
        "unknown option '--frobnicate'",
    );
}

#[test]
fn bad_images() {
    let missing = uhyve(&["/nonexistent/app"]);
    assert_one_line_error(&missing, "cannot read /nonexistent/app");

    let dir = std::env::temp_dir().join(format!("uhyve-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("script");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    let out = uhyve(&[text.to_str().unwrap()]);
    assert_one_line_error(&out, "not an ELF file");

    let mut elf = Guest::new().elf();
    elf[18] = 40; // EM_ARM
    let arm = dir.join("arm");
    std::fs::write(&arm, elf).unwrap();
    assert_one_line_error(&uhyve(&[arm.to_str().unwrap()]), "not an x86_64 image");

    let ok = Guest::new().write("cli-ok");
    let ok = ok.to_str().unwrap();
    assert_one_line_error(
        &uhyve(&["--cpus", "65", ok]),
        "65 CPUs requested, but uhyve supports at most 64",
    );
    assert_one_line_error(&uhyve(&["--pin", "3-1", ok]), "invalid --pin list '3-1'");
    assert_one_line_error(
        &uhyve(&["--cpus", "3", "--pin", "0,1", ok]),
        "2 host cores listed for pinning, but the VM has 3 CPUs",
    );
    assert_one_line_error(&uhyve(&["--cpus", "0", ok]), "at least one CPU");
    assert_one_line_error(&uhyve(&["--mem", "1M", ok]), "too small");
    assert_one_line_error(&uhyve(&["--mem", "2T", ok]), "too many");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn guest_output_and_status_pass_through() {
    if skip_without_kvm("guest_output_and_status_pass_through") {
        return;
    }
    let mut g = Guest::new();
    g.data(0x2100, b"hi\n")
        .data(0x2010, &1i32.to_le_bytes())
        .pointer(0x2018, 0x2100)
        .data(0x2020, &3u64.to_le_bytes())
        .hypercall(Nr::Write, 0x2010)
        .data(0x2110, b"oops\n")
        .data(0x2030, &2i32.to_le_bytes())
        .pointer(0x2038, 0x2110)
        .data(0x2040, &5u64.to_le_bytes())
        .hypercall(Nr::Write, 0x2030)
        .exit(0x2000, 7);
    let image = g.write("cli-hi");
    let out = uhyve(&["--mem", "64M", image.to_str().unwrap()]);
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn verbose_prints_the_kernel_log_and_abnormal_ends_are_reported() {
    if skip_without_kvm("verbose_prints_the_kernel_log_and_abnormal_ends_are_reported") {
        return;
    }
    let mut g = Guest::new();
    g.pointer(0x2040, 0x2200)
        .data(0x2200, &LOG_RING_MAGIC.to_le_bytes())
        .data(0x2208, &64u64.to_le_bytes())
        .data(0x2210, &12u64.to_le_bytes())
        .data(0x2218, b"kernel says\n")
        .hypercall(Nr::LogRegister, 0x2040)
        .ud2();
    let image = g.write("cli-log");
    let image = image.to_str().unwrap();
    let out = uhyve(&["--verbose", image]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with("kernel says\n"), "{stderr}");
    assert!(
        stderr.contains("uhyve: the VM ended abnormally: "),
        "{stderr}"
    );
    let quiet = uhyve(&[image]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("kernel says"));
}

/// The guest writes its BootInfo, the strings after it and its initial RSP
/// to stdout; the test checks them against the command line.
#[test]
fn boot_info_reaches_the_guest() {
    if skip_without_kvm("boot_info_reaches_the_guest") {
        return;
    }
    const WRITE: u64 = 0x2010;
    const WRITE_RSP: u64 = 0x2030;
    const RSP: u64 = 0x2100;
    let image = {
        // Placeholder length; rewritten below once the path is known.
        Guest::new().write("cli-bootinfo")
    };
    let path = image.to_str().unwrap().to_string();
    let args = [path.as_str(), "x", "y z"];
    let env = ["A=b"];
    let size = hermit_loader::boot_info_size(b"log=debug", args, env);
    let mut g = Guest::new();
    g.data(WRITE, &1i32.to_le_bytes())
        .data(WRITE + 16, &size.to_le_bytes())
        .lea(Reg::Rax, WRITE)
        .store(Reg::Rax, 8, Reg::Rdi)
        .hypercall(Nr::Write, WRITE)
        .mov_from_rsp(Reg::Rcx)
        .lea(Reg::Rax, RSP)
        .store(Reg::Rax, 0, Reg::Rcx)
        .data(WRITE_RSP, &1i32.to_le_bytes())
        .pointer(WRITE_RSP + 8, RSP)
        .data(WRITE_RSP + 16, &8u64.to_le_bytes())
        .hypercall(Nr::Write, WRITE_RSP)
        .exit(0x2000, 0);
    std::fs::write(&image, g.elf()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_uhyve"))
        .args(["--mem", "128M", "--log-level", "debug"])
        .args(args)
        .env_clear()
        .env("A", "b")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = out.stdout;
    assert_eq!(bytes.len() as u64, size + 8);
    let info =
        hermit_loader::decode_boot_info(bytes[..hermit_loader::BOOT_INFO_SIZE].try_into().unwrap());
    let rsp = u64::from_le_bytes(bytes[size as usize..].try_into().unwrap());

    assert_eq!(info.magic, hermit_interface::BOOT_INFO_MAGIC);
    assert_eq!(info.version, hermit_interface::BOOT_INFO_VERSION);
    assert_eq!(info.platform(), Some(Platform::Uhyve));
    assert_eq!(info.cpu_count, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(info.boot_time_ns <= now && now - info.boot_time_ns < 60_000_000_000);
    assert_eq!(info.image.addr, 2 << 20);
    assert_eq!(info.image.len, common::END);
    assert_eq!(info.load_bias, 2 << 20);

    // Strings, addressed relative to the BootInfo they follow.
    let boot_info_addr = info.cmdline.addr - hermit_loader::BOOT_INFO_SIZE as u64;
    let string = |addr: u64, len: u64| {
        let at = (addr - boot_info_addr) as usize;
        &bytes[at..at + len as usize]
    };
    assert_eq!(string(info.cmdline.addr, info.cmdline.len), b"log=debug");
    assert_eq!(info.args.count, 3);
    let expected_args = format!("{path}\0x\0y z\0");
    assert_eq!(
        string(info.args.bytes.addr, info.args.bytes.len),
        expected_args.as_bytes()
    );
    assert_eq!(info.env.count, 1);
    assert_eq!(string(info.env.bytes.addr, info.env.bytes.len), b"A=b\0");

    // The stack: 16-byte aligned top, at least 256 KiB below it reserved,
    // the boot info reserved, the rest of RAM usable.
    assert_eq!(rsp % 16, 0);
    let regions = info.memory_regions();
    let kind_at = |addr: u64| {
        regions
            .iter()
            .find(|r| r.start <= addr && addr < r.end())
            .and_then(|r| r.kind())
    };
    assert_eq!(kind_at(rsp - 1), Some(MemoryKind::Reserved));
    assert_eq!(
        kind_at(rsp - hermit_interface::BOOT_STACK_SIZE),
        Some(MemoryKind::Reserved)
    );
    assert_eq!(kind_at(boot_info_addr), Some(MemoryKind::Reserved));
    assert_eq!(kind_at(info.image.addr), Some(MemoryKind::Reserved));
    assert_eq!(
        kind_at(info.image.addr + info.image.len),
        Some(MemoryKind::Usable)
    );
    assert_eq!(regions.last().unwrap().end(), 128 << 20);
    assert!(regions.windows(2).all(|w| w[0].end() <= w[1].start));
    assert!(
        regions
            .iter()
            .all(|r| r.start % 4096 == 0 && r.len % 4096 == 0)
    );
    assert!(Path::new(&path).exists());
}
