//! Time hardware: the TSC frequency as CPUID reports it, the KVM
//! paravirtual clock record, the 8254 PIT (to calibrate the TSC against),
//! and the CMOS real-time clock's register file.
//!
//! Only the accesses live here; the math (tick scaling, pvclock frequency,
//! BCD and calendar decoding) is in the portable `hermit-time` crate, and
//! the `hermit` crate picks the sources. Privilege: CPUID, `rdtsc` and port
//! I/O work at CPL 3 with IOPL 3; only [`pvclock::read_once`] (an MSR write)
//! needs CPL 0.

pub mod cmos;
pub mod pit;
pub mod pvclock;

/// The processor's base frequency in kHz from CPUID leaf 0x16, if the CPU
/// reports it. This is the nominal frequency, usually close to but not
/// exactly the TSC frequency (for example 2600 MHz for a TSC measured at
/// 2596.094 MHz), so it is a last resort.
pub fn base_khz_from_cpuid() -> Option<u64> {
    use core::arch::x86_64::__cpuid;
    if __cpuid(0).eax < 0x16 {
        return None;
    }
    let mhz = __cpuid(0x16).eax & 0xffff;
    (mhz != 0).then(|| u64::from(mhz) * 1000)
}
