//! Boots the real `hello` application (kernel and app in one image) when it
//! has been built with `cargo build --release -p hello`; otherwise says
//! loudly that it skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::skip_without_kvm;

fn hello_image() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let image = target.join("x86_64-unknown-none/release/hello");
    image.exists().then_some(image)
}

#[test]
fn hello_prints_its_arguments_and_environment() {
    if skip_without_kvm("hello_prints_its_arguments_and_environment") {
        return;
    }
    let Some(image) = hello_image() else {
        eprintln!(
            "SKIPPED: hello_prints_its_arguments_and_environment: no hello image \
             (run cargo build --release -p hello first)"
        );
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_uhyve"))
        .args(["--mem", "256M", "--verbose"])
        .arg(&image)
        .args(["first", "second arg"])
        .env_clear()
        .env("HELLO_TEST", "yes")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Hello World!!!"), "{stdout}");
    assert!(stdout.contains("second arg"), "{stdout}");
    assert!(stdout.contains("HELLO_TEST=yes"), "{stdout}");
    assert!(!stderr.contains("ended abnormally"), "{stderr}");
}
