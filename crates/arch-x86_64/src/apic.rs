//! A small xAPIC driver over MMIO: enable, ID, EOI, inter-processor
//! interrupts (fixed, INIT, STARTUP) and the one-shot LAPIC timer with a
//! calibration against the TSC.
//!
//! It uses the memory-mapped xAPIC registers at [`XAPIC_BASE`], which the
//! boot page tables identity-map user-accessible, so everything here works
//! at CPL 3 too; no MSR is read or written (x2APIC mode, which only has MSRs,
//! is not used). The mapping is write-back cacheable rather than uncached:
//! in a VM every access to the APIC page traps to the hypervisor anyway.
//!
//! Not here: the I/O APIC, interrupt routing, the TSC-deadline mode.

use core::ptr::{read_volatile, write_volatile};

use crate::cpu::rdtsc;

/// Physical (and identity-mapped virtual) address of the local APIC's
/// registers, the architectural default (`IA32_APIC_BASE` is not read: that
/// needs an MSR).
pub const XAPIC_BASE: u64 = 0xfee0_0000;

/// Register offsets from the APIC base.
mod reg {
    pub const ID: usize = 0x20;
    pub const VERSION: usize = 0x30;
    pub const EOI: usize = 0xb0;
    pub const SPURIOUS: usize = 0xf0;
    pub const ERROR_STATUS: usize = 0x280;
    pub const ICR_LOW: usize = 0x300;
    pub const ICR_HIGH: usize = 0x310;
    pub const LVT_TIMER: usize = 0x320;
    pub const TIMER_INITIAL: usize = 0x380;
    pub const TIMER_CURRENT: usize = 0x390;
    pub const TIMER_DIVIDE: usize = 0x3e0;
}

/// `SPURIOUS`: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// `ICR_LOW`: the previous IPI has not been accepted yet.
const ICR_PENDING: u32 = 1 << 12;
/// `ICR_LOW`: level assert (required for INIT and STARTUP).
const ICR_ASSERT: u32 = 1 << 14;
/// `ICR_LOW` delivery modes.
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// `LVT_TIMER`: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer mode bits 17-18 = 0b10: TSC-deadline.
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;

/// `IA32_TSC_DEADLINE`.
const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// Whether the CPU has a TSC-deadline APIC timer.
pub fn has_tsc_deadline() -> bool {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU.
    let leaf = core::arch::x86_64::__cpuid(1);
    leaf.ecx & (1 << 24) != 0
}

/// Arms this CPU's TSC-deadline timer to fire when the TSC reaches `tsc`
/// (0 disarms; a past value fires at once). Needs CPL 0.
pub fn arm_tsc_deadline(tsc: u64) {
    let mut msr = x86_64::registers::model_specific::Msr::new(MSR_TSC_DEADLINE);
    // SAFETY: writing IA32_TSC_DEADLINE only (re)arms the local timer,
    // whose interrupt vector the kernel configured.
    unsafe { msr.write(tsc) };
}

/// Why an APIC operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// The previous IPI was not accepted within the time allowed.
    IpiTimeout,
    /// A STARTUP IPI's page must lie below 1 MiB and be 4 KiB aligned.
    BadStartupPage(u64),
    /// The APIC timer did not count during calibration.
    TimerStopped,
    /// Calibration needs the TSC frequency.
    UnknownTscFrequency,
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::IpiTimeout => f.write_str("the local APIC did not accept the IPI"),
            Self::BadStartupPage(a) => {
                write!(f, "startup page {a:#x} is not a 4 KiB page below 1 MiB")
            }
            Self::TimerStopped => f.write_str("the APIC timer does not count"),
            Self::UnknownTscFrequency => f.write_str("the TSC frequency is unknown"),
        }
    }
}

/// The APIC timer's divide configuration (value for `TIMER_DIVIDE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerDivide {
    /// Divide the bus clock by 1.
    By1,
    /// By 2.
    By2,
    /// By 4.
    By4,
    /// By 8.
    By8,
    /// By 16.
    By16,
    /// By 32.
    By32,
    /// By 64.
    By64,
    /// By 128.
    By128,
}

impl TimerDivide {
    /// The encoding of the divide configuration register (bits 0, 1, 3).
    pub const fn bits(self) -> u32 {
        match self {
            Self::By2 => 0b0000,
            Self::By4 => 0b0001,
            Self::By8 => 0b0010,
            Self::By16 => 0b0011,
            Self::By32 => 0b1000,
            Self::By64 => 0b1001,
            Self::By128 => 0b1010,
            Self::By1 => 0b1011,
        }
    }

    /// The divisor.
    pub const fn divisor(self) -> u64 {
        match self {
            Self::By1 => 1,
            Self::By2 => 2,
            Self::By4 => 4,
            Self::By8 => 8,
            Self::By16 => 16,
            Self::By32 => 32,
            Self::By64 => 64,
            Self::By128 => 128,
        }
    }
}

/// The `ICR_LOW` value for a STARTUP IPI that starts the target in real mode
/// at `page` (`CS = page >> 4`, `IP = 0`).
pub fn startup_icr(page: u64) -> Result<u32, ApicError> {
    if !page.is_multiple_of(4096) || page >= 0x10_0000 {
        return Err(ApicError::BadStartupPage(page));
    }
    Ok(ICR_STARTUP | ICR_ASSERT | (page >> 12) as u32)
}

/// The APIC timer frequency in Hz (timer input clock, before the divider)
/// from a measurement: the counter went down by `counted` ticks with
/// divider `divide` while the TSC (at `tsc_khz`) advanced by `tsc_ticks`.
pub fn timer_hz_from_sample(
    counted: u64,
    divide: TimerDivide,
    tsc_ticks: u64,
    tsc_khz: u64,
) -> Option<u64> {
    if tsc_ticks == 0 || counted == 0 {
        return None;
    }
    let hz = u128::from(counted) * u128::from(divide.divisor()) * u128::from(tsc_khz) * 1000
        / u128::from(tsc_ticks);
    u64::try_from(hz).ok()
}

/// The local APIC of the running CPU (every CPU sees its own at the same
/// address).
#[derive(Clone, Copy, Debug)]
pub struct LocalApic {
    base: u64,
}

impl LocalApic {
    /// The xAPIC at [`XAPIC_BASE`].
    ///
    /// # Safety
    /// The CPU must have a local APIC in xAPIC mode at [`XAPIC_BASE`], and
    /// that page must be mapped (the boot identity map covers it). Not on
    /// uhyve, which emulates no local APIC.
    pub const unsafe fn new() -> Self {
        Self { base: XAPIC_BASE }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: the register page is mapped; APIC
        // registers are 32-bit, 16-byte aligned, read with one access.
        unsafe { read_volatile((self.base as usize + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`; writes to these registers have no memory
        // effects visible to Rust.
        unsafe { write_volatile((self.base as usize + offset) as *mut u32, value) }
    }

    /// Software-enables the APIC with `spurious_vector` (bits 0-7 of the
    /// spurious-interrupt vector register).
    pub fn enable(&self, spurious_vector: u8) {
        self.write(reg::SPURIOUS, SVR_ENABLE | u32::from(spurious_vector));
    }

    /// This CPU's APIC ID.
    pub fn id(&self) -> u32 {
        self.read(reg::ID) >> 24
    }

    /// The version register (version in bits 0-7, max LVT entry in 16-23).
    pub fn version(&self) -> u32 {
        self.read(reg::VERSION)
    }

    /// Signals the end of the current interrupt.
    pub fn eoi(&self) {
        self.write(reg::EOI, 0);
    }

    /// Clears and returns the error status register.
    pub fn error_status(&self) -> u32 {
        self.write(reg::ERROR_STATUS, 0);
        self.read(reg::ERROR_STATUS)
    }

    /// Waits until the previous IPI was accepted, at most `timeout_tsc` TSC
    /// ticks.
    pub fn wait_ipi_delivered(&self, timeout_tsc: u64) -> Result<(), ApicError> {
        let start = rdtsc();
        while self.read(reg::ICR_LOW) & ICR_PENDING != 0 {
            if rdtsc().wrapping_sub(start) > timeout_tsc {
                return Err(ApicError::IpiTimeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    fn send(&self, apic_id: u32, low: u32) {
        // The IPI is sent by the write to the low half, so the high half
        // (destination) goes first.
        self.write(reg::ICR_HIGH, apic_id << 24);
        self.write(reg::ICR_LOW, low);
    }

    /// Sends interrupt `vector` to the CPU with APIC ID `apic_id`.
    pub fn send_fixed(&self, apic_id: u32, vector: u8) {
        self.send(apic_id, ICR_FIXED | ICR_ASSERT | u32::from(vector));
    }

    /// Sends an INIT IPI (the target resets and waits for STARTUP).
    pub fn send_init(&self, apic_id: u32) {
        self.send(apic_id, ICR_INIT | ICR_ASSERT);
    }

    /// Sends a STARTUP IPI: the target starts in real mode at `page`.
    pub fn send_startup(&self, apic_id: u32, page: u64) -> Result<(), ApicError> {
        self.send(apic_id, startup_icr(page)?);
        Ok(())
    }

    /// Sets the timer's divider.
    pub fn set_timer_divide(&self, divide: TimerDivide) {
        self.write(reg::TIMER_DIVIDE, divide.bits());
    }

    /// Arms the timer in one-shot mode: after `count` (divided) ticks it
    /// raises `vector` (unless `masked`).
    pub fn start_one_shot(&self, vector: u8, count: u32, masked: bool) {
        let mask = if masked { LVT_MASKED } else { 0 };
        self.write(reg::LVT_TIMER, u32::from(vector) | mask);
        self.write(reg::TIMER_INITIAL, count);
    }

    /// Puts the timer in TSC-deadline mode raising `vector`; arm it with
    /// [`arm_tsc_deadline`]. Needs CPUID.1:ECX.TSC_DEADLINE (bit 24).
    pub fn set_tsc_deadline_mode(&self, vector: u8) {
        self.write(reg::LVT_TIMER, u32::from(vector) | LVT_TSC_DEADLINE);
    }

    /// Stops the timer (initial count 0) and masks it.
    pub fn stop_timer(&self) {
        self.write(reg::TIMER_INITIAL, 0);
        self.write(reg::LVT_TIMER, LVT_MASKED);
    }

    /// The timer's initial count.
    pub fn timer_initial(&self) -> u32 {
        self.read(reg::TIMER_INITIAL)
    }

    /// The timer's current count.
    pub fn timer_current(&self) -> u32 {
        self.read(reg::TIMER_CURRENT)
    }

    /// Measures the timer's input frequency in Hz against the TSC over
    /// about `window_us` microseconds, with the timer masked. Leaves the
    /// timer stopped.
    pub fn calibrate_timer(&self, tsc_khz: u64, window_us: u64) -> Result<u64, ApicError> {
        if tsc_khz == 0 {
            return Err(ApicError::UnknownTscFrequency);
        }
        let divide = TimerDivide::By16;
        self.set_timer_divide(divide);
        self.start_one_shot(0xff, u32::MAX, true);
        let window = tsc_khz * window_us / 1000;
        let t0 = rdtsc();
        let c0 = self.timer_current();
        while rdtsc().wrapping_sub(t0) < window {
            core::hint::spin_loop();
        }
        let c1 = self.timer_current();
        let t1 = rdtsc();
        self.stop_timer();
        timer_hz_from_sample(
            u64::from(c0.saturating_sub(c1)),
            divide,
            t1.wrapping_sub(t0),
            tsc_khz,
        )
        .ok_or(ApicError::TimerStopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_icr_encodes_vector() {
        assert_eq!(startup_icr(0x8000), Ok(0x4608));
        assert_eq!(startup_icr(0x9f000), Ok(0x469f));
        assert_eq!(
            startup_icr(0x10_0000),
            Err(ApicError::BadStartupPage(0x10_0000))
        );
        assert_eq!(startup_icr(0x8010), Err(ApicError::BadStartupPage(0x8010)));
    }

    #[test]
    fn divide_encodings_are_distinct() {
        let all = [
            TimerDivide::By1,
            TimerDivide::By2,
            TimerDivide::By4,
            TimerDivide::By8,
            TimerDivide::By16,
            TimerDivide::By32,
            TimerDivide::By64,
            TimerDivide::By128,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.divisor(), 1 << i);
            assert_eq!(a.bits() & !0b1011, 0);
            for b in &all[i + 1..] {
                assert_ne!(a.bits(), b.bits());
            }
        }
    }

    #[test]
    fn timer_frequency_from_sample() {
        // 1 GHz timer clock, divide 16: 62_500 ticks in 1 ms; TSC 2 GHz.
        assert_eq!(
            timer_hz_from_sample(62_500, TimerDivide::By16, 2_000_000, 2_000_000),
            Some(1_000_000_000)
        );
        assert_eq!(timer_hz_from_sample(0, TimerDivide::By1, 10, 10), None);
        assert_eq!(timer_hz_from_sample(10, TimerDivide::By1, 0, 10), None);
    }
}
