//! The proxy binary's answer to a bad `HERMIT_CPUS` core list or
//! `HERMIT_MOUNT` entry: one line on stderr and status 125, before any image
//! is read or VM created; and its warning about mounts under QEMU.

use std::process::Command;

#[test]
fn bad_core_lists_are_one_line_errors() {
    for (value, needle) in [
        ("3-1", "range 3-1 runs backwards"),
        ("1,,2", "empty core list entry"),
        ("a", "'a' is not a core number"),
        ("0,0", "core 0 is listed twice"),
        ("", "HERMIT_CPUS=\"\""),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .arg("/nonexistent/image")
            .env_clear()
            .env("HERMIT_CPUS", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{value:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{value:?}");
        assert_eq!(stderr.lines().count(), 1, "{value:?}: {stderr}");
        assert!(
            stderr.starts_with("proxy: HERMIT_CPUS="),
            "{value:?}: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{value:?}: expected {needle:?} in {stderr}"
        );
    }
}

#[test]
fn bad_mounts_are_one_line_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("/nonexistent/image")
        .env_clear()
        .env("HERMIT_MOUNT", "/nonexistent/dir:/data")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("proxy: HERMIT_MOUNT entry '/nonexistent/dir:/data' is not valid:"),
        "{stderr}"
    );
}

#[test]
fn bad_mount_under_qemu_is_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("/nonexistent/image")
        .env_clear()
        .env("HERMIT_ISLE", "qemu")
        .env("HERMIT_MOUNT", "/nonexistent/dir:/data")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
}
