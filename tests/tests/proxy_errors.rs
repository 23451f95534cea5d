//! The proxy's answers to bad input: one clear line on stderr and exit
//! status 125, never a panic trace.

use std::process::Command;
use std::time::Duration;

use boot_tests::{Output, built, run_with_limit};

fn proxy_with(image: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(&built().proxy);
    cmd.arg(image);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_limit(cmd, Duration::from_secs(60))
}

fn assert_one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.status, Some(125), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "expected one line: {out:?}");
    assert!(out.stderr.starts_with("proxy: "), "{out:?}");
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

fn hello() -> String {
    built().app("hello").display().to_string()
}

#[test]
fn bad_memory_size() {
    let out = proxy_with(&hello(), &[("HERMIT_MEM", "abc")]);
    assert_one_line_error(&out, "HERMIT_MEM=\"abc\"");
}

#[test]
fn bad_isle() {
    let out = proxy_with(&hello(), &[("HERMIT_ISLE", "xen")]);
    assert_one_line_error(&out, "HERMIT_ISLE");
}

#[test]
fn missing_image() {
    for isle in ["uhyve", "qemu"] {
        let out = proxy_with("/nonexistent/image", &[("HERMIT_ISLE", isle)]);
        assert_one_line_error(&out, "/nonexistent/image");
    }
}

#[test]
fn not_an_elf() {
    let dir = std::env::temp_dir().join(format!("hermit-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "just some text\n").unwrap();
    for isle in ["uhyve", "qemu"] {
        let out = proxy_with(text.to_str().unwrap(), &[("HERMIT_ISLE", isle)]);
        assert_one_line_error(&out, "ELF");
    }
    // An ELF for another architecture (AArch64's e_machine is 183).
    let mut elf = std::fs::read(built().app("hello")).unwrap();
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let arm = dir.join("arm-image");
    std::fs::write(&arm, elf).unwrap();
    for isle in ["uhyve", "qemu"] {
        let out = proxy_with(arm.to_str().unwrap(), &[("HERMIT_ISLE", isle)]);
        assert_one_line_error(&out, "x86_64");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_usable_kvm_device() {
    // Hide /dev/kvm in a private mount namespace (needs root and unshare).
    let probe = Command::new("unshare").args(["-m", "true"]).output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!(
            "SKIPPED: no_usable_kvm_device: cannot create a mount namespace here (needs root and unshare)"
        );
        return;
    }
    let script = format!(
        "mount --bind /dev/null /dev/kvm 2>/dev/null || mount -t tmpfs none /dev 2>/dev/null; HERMIT_ISLE=uhyve exec {} {}",
        built().proxy.display(),
        hello()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    assert_one_line_error(&out, "kvm");
}

#[test]
fn help_is_printed() {
    let mut cmd = Command::new(&built().proxy);
    cmd.arg("--help");
    let out = run_with_limit(cmd, Duration::from_secs(10));
    assert_eq!(out.status, Some(0));
    assert!(out.stdout.contains("HERMIT_ISLE"), "{out:?}");
    let out = run_with_limit(Command::new(&built().proxy), Duration::from_secs(10));
    assert_eq!(out.status, Some(125));
    assert!(out.stderr.starts_with("usage: proxy IMAGE"), "{out:?}");
}
