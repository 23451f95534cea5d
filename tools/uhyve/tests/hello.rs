//! Boots the real `hello` application (kernel and app in one image), built
//! first through `boot-tests` exactly as the README says.

mod common;

use std::process::Command;

use common::skip_without_kvm;

#[test]
fn hello_prints_its_arguments_and_environment() {
    if skip_without_kvm("hello_prints_its_arguments_and_environment") {
        return;
    }
    let image = boot_tests::built().app("hello");
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
