//! The math of the KVM paravirtual clock (`pvclock_vcpu_time_info`, the
//! record a KVM host keeps updated at the address the guest writes to
//! `MSR_KVM_SYSTEM_TIME_NEW`).
//!
//! The host describes the guest TSC as a 32.32 fixed-point multiplier
//! `tsc_to_system_mul` applied after shifting the tick delta by
//! `tsc_shift` (left if positive, right if negative):
//! `ns = ((delta << shift) * mul) >> 32`. The frequency follows by
//! inverting that.

/// The fields of one consistent read of a pvclock record (the reader checks
/// the version counter; see `arch_x86_64::time::pvclock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockSnapshot {
    /// Guest TSC value at which `system_time` was taken.
    pub tsc_timestamp: u64,
    /// Host's guest-system time in ns at `tsc_timestamp`.
    pub system_time: u64,
    /// 32.32 fixed-point multiplier from shifted ticks to ns.
    pub tsc_to_system_mul: u32,
    /// Shift applied to the tick delta before the multiply.
    pub tsc_shift: i8,
    /// `PVCLOCK_*` flags.
    pub flags: u8,
}

/// `flags` bit: the TSC is stable across vCPUs and the record need not be
/// read per CPU.
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;

impl PvclockSnapshot {
    /// The TSC frequency in kHz this record describes, if it is plausible
    /// ([`crate::plausible_khz`]).
    pub fn tsc_khz(&self) -> Option<u64> {
        tsc_khz(self.tsc_to_system_mul, self.tsc_shift)
    }

    /// The host's system time in ns at guest TSC value `tsc`, which may lie
    /// before or after `tsc_timestamp` (saturating at 0 and `u64::MAX`).
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let (mul, shift) = (self.tsc_to_system_mul, self.tsc_shift);
        if tsc >= self.tsc_timestamp {
            let delta = scale_delta(tsc - self.tsc_timestamp, mul, shift);
            self.system_time.saturating_add(delta)
        } else {
            let delta = scale_delta(self.tsc_timestamp - tsc, mul, shift);
            self.system_time.saturating_sub(delta)
        }
    }
}

/// Nanoseconds for a TSC delta under the pvclock parameters (the host's
/// `pvclock_scale_delta`), saturating at `u64::MAX`.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted: u128 = if shift >= 0 {
        u128::from(delta) << shift.unsigned_abs().min(63)
    } else {
        u128::from(delta >> shift.unsigned_abs().min(63))
    };
    let ns = (shifted * u128::from(mul)) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The TSC frequency in kHz from pvclock parameters (what Linux's
/// `pvclock_tsc_khz` computes), if it is plausible.
pub fn tsc_khz(mul: u32, shift: i8) -> Option<u64> {
    if mul == 0 || !(-32..=32).contains(&shift) {
        return None;
    }
    // ns per shifted tick = mul / 2^32, so shifted ticks per ms =
    // 10^6 * 2^32 / mul; undoing the shift gives real ticks per ms.
    let per_shifted = (1_000_000u128 << 32) / u128::from(mul);
    // A negative shift halves the ticks before scaling, so there are more
    // real ticks than shifted ones.
    let khz = if shift >= 0 {
        per_shifted >> shift
    } else {
        per_shifted << shift.unsigned_abs()
    };
    u64::try_from(khz).ok().filter(|&k| crate::plausible_khz(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters a KVM host computes for a frequency (Linux's
    /// `kvm_get_time_scale(NSEC_PER_SEC, hz)`), re-derived here.
    fn host_params(hz: u64) -> (u32, i8) {
        let mut shift: i8 = 0;
        let mut tps64 = hz;
        let scaled64 = 1_000_000_000u64;
        let mut tps32;
        while tps64 > scaled64 * 2 || (tps64 & 0xffff_ffff_0000_0000) != 0 {
            tps64 >>= 1;
            shift -= 1;
        }
        tps32 = tps64 as u32;
        let mut scaled = scaled64;
        while u64::from(tps32) <= scaled || (scaled & 0xffff_ffff_0000_0000) != 0 {
            if (scaled & 0xffff_ffff_0000_0000) != 0 || tps32 & 0x8000_0000 != 0 {
                scaled >>= 1;
            } else {
                tps32 <<= 1;
            }
            shift += 1;
        }
        let mul = ((scaled << 32) / u64::from(tps32)) as u32;
        (mul, shift)
    }

    #[test]
    fn frequency_from_host_parameters() {
        for hz in [2_596_094_000u64, 1_000_000_000, 3_400_000_000, 100_000_000] {
            let (mul, shift) = host_params(hz);
            let khz = tsc_khz(mul, shift).unwrap();
            // The host rounds mul down, so the derived frequency is close
            // to, and not below, the real one.
            let want = hz / 1000;
            assert!(khz.abs_diff(want) <= want / 1_000_000 + 1, "{hz}: {khz}");
        }
    }

    #[test]
    fn real_kvm_record() {
        // A record read from a 2.5 GHz host: mul 0xcccccccc, shift -1 is
        // 0.8 ns per shifted tick, i.e. 0.4 ns per tick.
        let snap = PvclockSnapshot {
            tsc_timestamp: 1_000,
            system_time: 5_000,
            tsc_to_system_mul: 0xcccc_cccc,
            tsc_shift: -1,
            flags: PVCLOCK_TSC_STABLE_BIT,
        };
        assert_eq!(snap.tsc_khz(), Some(2_500_000));
        // 2.5e9 ticks later: one second, minus the rounding of mul.
        let ns = snap.ns_at(1_000 + 2_500_000_000);
        assert!(ns.abs_diff(5_000 + 1_000_000_000) <= 1, "{ns}");
        // Before the record was taken: 1000 ticks earlier is 400 ns earlier
        // (399 after rounding down the scaled delta).
        assert_eq!(snap.ns_at(0), 5_000 - 399);
        let later = PvclockSnapshot {
            tsc_timestamp: 2_500_000_000,
            system_time: 2_000_000_000,
            ..snap
        };
        let at_zero = later.ns_at(0);
        assert!(at_zero.abs_diff(1_000_000_000) <= 1, "{at_zero}");
        let early = PvclockSnapshot {
            system_time: 10,
            ..later
        };
        assert_eq!(early.ns_at(0), 0);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(tsc_khz(0, 0), None);
        assert_eq!(tsc_khz(1, 0), None); // 4e15 kHz
        assert_eq!(tsc_khz(0xffff_ffff, 100), None);
        assert_eq!(tsc_khz(0xffff_ffff, -32), None); // 0.2 kHz
    }

    #[test]
    fn scale_delta_saturates() {
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 32), u64::MAX);
        assert_eq!(scale_delta(1 << 33, 1 << 31, -1), 1 << 31);
    }
}
