//! The proxy binary's answer to a bad `HERMIT_CPUS` core list: one line on
//! stderr and status 125, before any image is read or VM created.

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
