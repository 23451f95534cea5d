//! Portable timekeeping math for the hermit kernel: converting TSC ticks to
//! nanoseconds and back ([`Scale`]), deriving the TSC frequency from a KVM
//! pvclock record ([`pvclock`]) or a PIT measurement ([`pit`]), and reading
//! and decoding the CMOS real-time clock through a small register trait
//! ([`rtc::Cmos`]).
//!
//! This crate never touches hardware: the port and MSR accesses live in
//! `arch-x86_64`, and the `hermit` crate composes the two into its clock. So
//! every function here runs, and is tested, on the host.
//!
//! Missing: drift correction against a reference clock (the TSC frequency is
//! taken as exact once known), leap seconds (Unix time ignores them), time
//! zones, and dates before 1970 (the RTC of a VM started today never holds
//! one).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod pit;
pub mod pvclock;
pub mod rtc;
mod scale;

pub use scale::{Scale, apply_parts};

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Lowest TSC frequency accepted from any source, in kHz (10 MHz): anything
/// below is a broken measurement, not a CPU.
pub const MIN_PLAUSIBLE_KHZ: u64 = 10_000;
/// Highest TSC frequency accepted from any source, in kHz (20 GHz).
pub const MAX_PLAUSIBLE_KHZ: u64 = 20_000_000;

/// Whether `khz` is a TSC frequency a real or virtual CPU can have.
pub const fn plausible_khz(khz: u64) -> bool {
    khz >= MIN_PLAUSIBLE_KHZ && khz <= MAX_PLAUSIBLE_KHZ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_range() {
        assert!(!plausible_khz(0));
        assert!(!plausible_khz(9_999));
        assert!(plausible_khz(2_596_094));
        assert!(plausible_khz(MAX_PLAUSIBLE_KHZ));
        assert!(!plausible_khz(MAX_PLAUSIBLE_KHZ + 1));
    }
}
