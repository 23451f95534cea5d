//! Boot tests of the kernel's clocks: the `clock` app's real time, TSC
//! frequency and busy-wait measurement, compared with the host's clocks,
//! under uhyve, QEMU with KVM and QEMU's TCG (which exercise different
//! frequency and real-time sources). A hypervisor that cannot run here is
//! reported as `SKIPPED: <test>: <reason>`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boot_tests::{Hypervisor, Output, proxy, require};

/// What the guest spins for.
const SPIN: Duration = Duration::from_millis(200);
/// How far the guest's real time may be from the host's.
const WALL_TOLERANCE: Duration = Duration::from_secs(2);

/// The value of the `key: value` line of the clock app's output.
fn field<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {key:?} line in the output: {out:?}"))
}

fn number(out: &Output, key: &str) -> u128 {
    let value = field(out, key);
    value
        .parse()
        .unwrap_or_else(|e| panic!("{key} = {value:?} is not a number ({e}): {out:?}"))
}

fn clock_agrees_with_host(hv: Hypervisor, test: &str, env: &[(&str, &str)]) {
    if !require(hv, test) {
        return;
    }
    let ms = SPIN.as_millis().to_string();
    // Build first, so the host's timing covers only the run.
    boot_tests::built();
    let host_before = SystemTime::now();
    let started = Instant::now();
    let out = proxy(hv, "clock", &[&ms], env);
    let host_elapsed = started.elapsed();
    let host_after = SystemTime::now();
    assert_eq!(out.status, Some(0), "{out:?}");

    let khz = number(&out, "tsc_khz");
    let source = field(&out, "tsc_source");
    let wall_source = field(&out, "wall_source");
    let measured = Duration::from_nanos(number(&out, "spin_measured_ns") as u64);
    eprintln!(
        "{test} on {}: TSC {khz} kHz from {source}, real time from {wall_source}, \
         {SPIN:?} spin measured {measured:?} in a {host_elapsed:?} run",
        hv.isle()
    );

    assert!(
        (100_000..10_000_000).contains(&khz),
        "implausible TSC frequency: {out:?}"
    );
    assert!(!source.contains("assumed"), "no frequency source: {out:?}");

    let guest_wall = UNIX_EPOCH + Duration::from_nanos(number(&out, "unix_ns") as u64);
    let earliest = host_before - WALL_TOLERANCE;
    let latest = host_after + WALL_TOLERANCE;
    assert!(
        earliest <= guest_wall && guest_wall <= latest,
        "guest real time {guest_wall:?} is not within {WALL_TOLERANCE:?} of the host's \
         [{host_before:?}, {host_after:?}]: {out:?}"
    );

    assert_eq!(
        number(&out, "spin_requested_ns"),
        SPIN.as_nanos(),
        "{out:?}"
    );
    // The guest's measure of its own busy-wait can neither be shorter than
    // asked nor longer than the whole run as the host saw it (a wrong TSC
    // frequency breaks one or the other).
    assert!(measured >= SPIN, "spun only {measured:?}: {out:?}");
    assert!(
        measured <= host_elapsed,
        "guest measured {measured:?} but the whole run took {host_elapsed:?}: {out:?}"
    );
}

#[test]
fn uhyve_clock_agrees_with_host() {
    clock_agrees_with_host(Hypervisor::Uhyve, "uhyve_clock_agrees_with_host", &[]);
}

#[test]
fn qemu_clock_agrees_with_host() {
    clock_agrees_with_host(Hypervisor::Qemu, "qemu_clock_agrees_with_host", &[]);
}

/// TCG has no KVM clock: the frequency comes from the PIT and real time
/// from the CMOS RTC.
#[test]
fn qemu_tcg_clock_agrees_with_host() {
    clock_agrees_with_host(
        Hypervisor::Qemu,
        "qemu_tcg_clock_agrees_with_host",
        &[("HERMIT_KVM", "0")],
    );
}

#[test]
fn clock_rejects_a_bad_argument() {
    if !require(Hypervisor::Uhyve, "clock_rejects_a_bad_argument") {
        return;
    }
    let out = proxy(Hypervisor::Uhyve, "clock", &["soon"], &[]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr, "usage: clock [BUSY_WAIT_MS]\n", "{out:?}");
}
