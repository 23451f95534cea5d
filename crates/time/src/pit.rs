//! Calibrating the TSC against the 8254 programmable interval timer, whose
//! input clock runs at a fixed [`PIT_HZ`] on every PC and every hypervisor
//! that emulates one.

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// The PIT count (at most `u16::MAX`) that spans about `ms` milliseconds.
pub fn count_for_ms(ms: u32) -> u16 {
    let count = PIT_HZ * u64::from(ms) / 1000;
    u16::try_from(count).unwrap_or(u16::MAX)
}

/// The TSC frequency in kHz when `tsc_delta` ticks passed while the PIT
/// counted `pit_count` input clocks, if it is plausible.
pub fn khz_from_pit(tsc_delta: u64, pit_count: u64) -> Option<u64> {
    if pit_count == 0 {
        return None;
    }
    // ticks / (pit_count / PIT_HZ s) / 1000.
    let khz = u128::from(tsc_delta) * u128::from(PIT_HZ) / (u128::from(pit_count) * 1000);
    u64::try_from(khz).ok().filter(|&k| crate::plausible_khz(k))
}

/// A measurement is accepted when its uncertainty is at most this fraction
/// (1/2000, 0.05%) of the ticks measured.
pub const MAX_UNCERTAINTY_DIVISOR: u64 = 2000;

/// Like [`khz_from_pit`], but `None` also when the TSC reading may be off by
/// more than `uncertainty_ticks * MAX_UNCERTAINTY_DIVISOR > tsc_delta` (the
/// vCPU stalled while latching the PIT), so the caller measures again.
pub fn khz_from_measurement(tsc_delta: u64, pit_count: u64, uncertainty_ticks: u64) -> Option<u64> {
    if uncertainty_ticks.saturating_mul(MAX_UNCERTAINTY_DIVISOR) > tsc_delta {
        return None;
    }
    khz_from_pit(tsc_delta, pit_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count_for_ms(10), 11_931);
        assert_eq!(count_for_ms(50), 59_659);
        assert_eq!(count_for_ms(100), u16::MAX);
    }

    #[test]
    fn frequency() {
        // 10 ms at 2.5 GHz.
        let count = u64::from(count_for_ms(10));
        let delta = 2_500_000 * count * 1000 / PIT_HZ;
        let khz = khz_from_pit(delta, count).unwrap();
        assert!(khz.abs_diff(2_500_000) <= 1, "{khz}");
        assert_eq!(khz_from_pit(delta, 0), None);
        // A PIT that never ran: almost no ticks passed.
        assert_eq!(khz_from_pit(50, count), None);
    }

    #[test]
    fn uncertain_measurements_are_rejected() {
        let count = u64::from(count_for_ms(10));
        let delta = 25_000_000;
        assert_eq!(
            khz_from_measurement(delta, count, 12_500),
            khz_from_pit(delta, count)
        );
        assert_eq!(khz_from_measurement(delta, count, 12_501), None);
        assert_eq!(khz_from_measurement(delta, count, u64::MAX), None);
    }
}
