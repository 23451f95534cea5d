//! An image started by Linux itself hands itself to the proxy: `cargo run
//! -p hello` (cargo applies no runner to forced-target packages) and
//! `HERMIT_PROXY=... ./hello` work, and a plain `./hello` explains itself.

use std::process::Command;
use std::time::Duration;

use boot_tests::{Hypervisor, built, require, run_with_limit, workspace};

#[test]
fn image_without_proxy_explains_itself() {
    let mut cmd = Command::new(built().app("hello"));
    cmd.env_remove("HERMIT_PROXY").env_remove("CARGO");
    let out = run_with_limit(cmd, Duration::from_secs(30));
    assert_eq!(out.status, Some(126), "{out:?}");
    assert!(
        out.stderr.contains("run it with `proxy IMAGE [ARGS...]`"),
        "{out:?}"
    );
}

#[test]
fn image_runs_through_hermit_proxy() {
    if !require(Hypervisor::Uhyve, "image_runs_through_hermit_proxy") {
        return;
    }
    let mut cmd = Command::new(built().app("exit-status"));
    cmd.arg("42")
        .env("HERMIT_PROXY", &built().proxy)
        .env("HERMIT_ISLE", "uhyve");
    let out = run_with_limit(cmd, Duration::from_secs(60));
    assert_eq!(out.status, Some(42), "{out:?}");
}

#[test]
fn cargo_run_boots_the_app() {
    if !require(Hypervisor::Uhyve, "cargo_run_boots_the_app") {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["run", "--quiet", "-p", "hello", "--", "via-cargo"])
        .env("HERMIT_ISLE", "uhyve")
        .env_remove("HERMIT_PROXY");
    let out = run_with_limit(cmd, Duration::from_secs(600));
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Hello World!!!\n"), "{out:?}");
    assert!(out.stdout.contains("argv[1] = via-cargo\n"), "{out:?}");
}
