//! Time: a monotonic clock counted in TSC ticks since kernel entry, and real
//! (wall-clock) time, with an API modelled on `std::time`.
//!
//! At boot [`init`] finds the TSC frequency, trying in turn: the boot info
//! (uhyve asks KVM), CPUID (leaf 0x40000010 or 0x15), the KVM paravirtual
//! clock (QEMU with KVM), a 10 ms measurement against the PIT (QEMU's TCG),
//! CPUID leaf 0x16's nominal base frequency, and finally an assumed 1 GHz
//! (logged as a warning). Reading the clock afterwards is `rdtsc`, one
//! multiply and one shift ([`hermit_time::Scale`]), with no privileged
//! instruction, so it works at CPL 3.
//!
//! Real time is the monotonic clock plus the Unix time at kernel entry.
//! Under uhyve that comes from the boot info (the host's clock when it
//! wrote it). Under QEMU it comes from the CMOS real-time clock, read on the
//! first [`SystemTime::now`] (a few dozen port accesses, up to a couple of
//! milliseconds while the RTC updates; whole seconds only, so it may lag by
//! up to a second); QEMU's `microvm` has an RTC only without KVM, so under
//! KVM the KVM wall clock (read at boot, nanosecond resolution) stands in,
//! and the boot info after that.
//!
//! Missing: per-CPU TSC offsets (CPUs are assumed to share one synchronised
//! TSC, as KVM provides), adjusting the frequency or the real time later
//! (NTP-style), and a blocking sleep, which comes with the scheduler.

use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
pub use core::time::Duration;

use arch_x86_64::cpu;
use arch_x86_64::time::{self as hw, cmos::CmosPorts, pit, pvclock};
use hermit_interface::{BootInfo, Platform};
use hermit_time::pvclock::PvclockSnapshot;
use hermit_time::{Scale, apply_parts, plausible_khz, rtc};

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrequencySource {
    /// The boot info (uhyve reads it from KVM).
    BootInfo,
    /// CPUID leaf 0x40000010 (hypervisor timing) or 0x15 (crystal ratio).
    Cpuid,
    /// The KVM paravirtual clock's scale.
    KvmClock,
    /// Measured against the 8254 PIT.
    Pit,
    /// CPUID leaf 0x16, the nominal base frequency (approximate).
    CpuidBaseFrequency,
    /// Nothing told it: 1 GHz assumed, so times are wrong.
    Assumed,
}

impl FrequencySource {
    /// Every source, in declaration order (`ALL[s as usize] == s`).
    const ALL: [Self; 6] = [
        Self::BootInfo,
        Self::Cpuid,
        Self::KvmClock,
        Self::Pit,
        Self::CpuidBaseFrequency,
        Self::Assumed,
    ];
}

impl fmt::Display for FrequencySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BootInfo => "the boot info",
            Self::Cpuid => "CPUID",
            Self::KvmClock => "the KVM paravirtual clock",
            Self::Pit => "PIT calibration",
            Self::CpuidBaseFrequency => "CPUID base frequency (approximate)",
            Self::Assumed => "nowhere (1 GHz assumed)",
        })
    }
}

/// Where real time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WallClockSource {
    /// The host's clock, passed in the boot info.
    BootInfo,
    /// The CMOS real-time clock.
    Rtc,
    /// The KVM paravirtual wall clock.
    KvmWallClock,
    /// Nothing: real time counts from 1970-01-01 at boot.
    None,
}

/// TSC frequency assumed when no source knows it.
const ASSUMED_KHZ: u64 = 1_000_000;
/// PIT calibration length.
const PIT_CALIBRATION_MS: u32 = 10;
/// Give up on the PIT after this many TSC ticks (20 ms even at 10 GHz).
const PIT_MAX_TICKS: u64 = 200_000_000;
/// PIT measurements tried before giving up on a disturbed PIT.
const PIT_ATTEMPTS: u32 = 5;
/// Status-A polls before deciding there is no working RTC. The update flag
/// is set for at most ~2 ms, and each poll is a VM exit of some µs.
const RTC_MAX_POLLS: u32 = 20_000;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static TO_NS_MUL: AtomicU64 = AtomicU64::new(0);
static TO_NS_SHIFT: AtomicU32 = AtomicU32::new(0);
static TO_TICKS_MUL: AtomicU64 = AtomicU64::new(0);
static TO_TICKS_SHIFT: AtomicU32 = AtomicU32::new(0);
/// A [`FrequencySource`] as `1 + index`, 0 before `init` (atomics rather
/// than `spin::Once`: every boot instruction counts at CPL 0 here).
static SOURCE: AtomicU8 = AtomicU8::new(0);
static ON_QEMU: AtomicBool = AtomicBool::new(false);
/// `BootInfo::boot_time_ns`.
static BOOT_INFO_WALL_NS: AtomicU64 = AtomicU64::new(0);
/// Unix time in ns at monotonic zero from the KVM wall clock, 0 if none.
static KVM_WALL_AT_ZERO_NS: AtomicU64 = AtomicU64::new(0);
/// Unix time in ns at monotonic time zero, and its source; set on first use.
static WALL_AT_ZERO: spin::Once<(u64, WallClockSource)> = spin::Once::new();

/// Finds the TSC frequency and starts the clocks, with monotonic time zero
/// at `boot_tsc` (the TSC at kernel entry).
///
/// Boot-time, CPL 0 (the KVM clock writes MSRs); runs once on the boot CPU
/// before any other CPU starts. Measured cost: ~34 µs under uhyve with the
/// kernel emulated (about 70 instructions, each emulated at CPL 0 by this
/// host's software KVM with `HERMIT_NATIVE=0`),
/// ~170 µs under QEMU with KVM (CPUIDs and three MSR writes), ~10 ms under
/// QEMU's TCG (PIT calibration).
pub(crate) fn init(info: &BootInfo, platform: Platform, boot_tsc: u64) {
    ON_QEMU.store(platform == Platform::Qemu, Relaxed);
    BOOT_INFO_WALL_NS.store(info.boot_time_ns, Relaxed);
    // uhyve passes frequency and real time in the boot info; elsewhere the
    // KVM clock may provide both.
    let kvm = if platform == Platform::Qemu || !plausible_khz(info.tsc_khz) {
        read_kvm_clock()
    } else {
        None
    };
    if let Some(wall) = kvm.as_ref().and_then(|k| k.wall_at_tsc(boot_tsc)) {
        KVM_WALL_AT_ZERO_NS.store(wall, Relaxed);
    }
    let (khz, source) = find_frequency(info, kvm.as_ref());
    // Every `khz` here is plausible (or the assumed 1 GHz), so both scales exist.
    let to_ns = Scale::ticks_to_ns(khz).unwrap_or(Scale::from_parts(0, 0));
    let to_ticks = Scale::ns_to_ticks(khz).unwrap_or(Scale::from_parts(0, 0));
    let (mul, shift) = to_ns.parts();
    TO_NS_MUL.store(mul, Relaxed);
    TO_NS_SHIFT.store(shift, Relaxed);
    let (mul, shift) = to_ticks.parts();
    TO_TICKS_MUL.store(mul, Relaxed);
    TO_TICKS_SHIFT.store(shift, Relaxed);
    TSC_KHZ.store(khz, Relaxed);
    BOOT_TSC.store(boot_tsc, Relaxed);
    SOURCE.store(source as u8 + 1, Relaxed);
    if source == FrequencySource::Assumed {
        log::warn!("TSC frequency unknown; assuming {khz} kHz, times will be wrong");
    } else {
        log::debug!("TSC at {khz} kHz, from {source}");
    }
}

/// What the KVM paravirtual clock said at boot.
#[derive(Debug)]
struct KvmClock {
    record: PvclockSnapshot,
    /// Unix time in ns at which the record's system time was zero.
    wall_ns: Option<u64>,
}

impl KvmClock {
    /// Unix time in ns at TSC value `tsc`.
    fn wall_at_tsc(&self, tsc: u64) -> Option<u64> {
        Some(self.wall_ns?.saturating_add(self.record.ns_at(tsc)))
    }
}

/// Reads the KVM clock records once, if this is KVM with kvmclock.
/// Boot-time, CPL 0, boot CPU only (see `init`).
fn read_kvm_clock() -> Option<KvmClock> {
    if !pvclock::present() {
        return None;
    }
    // SAFETY: boot-time CPL 0 on the boot CPU alone (`init`'s contract),
    // KVM with the clock MSRs was just detected, and the kernel image is
    // identity-mapped (entry contract).
    let (fields, wall) = unsafe { (pvclock::read_once()?, pvclock::read_wall_clock()) };
    let record = PvclockSnapshot {
        tsc_timestamp: fields.tsc_timestamp,
        system_time: fields.system_time,
        tsc_to_system_mul: fields.tsc_to_system_mul,
        tsc_shift: fields.tsc_shift,
        flags: fields.flags,
    };
    let wall_ns =
        wall.map(|(sec, nsec)| u64::from(sec) * hermit_time::NANOS_PER_SEC + u64::from(nsec));
    Some(KvmClock { record, wall_ns })
}

fn find_frequency(info: &BootInfo, kvm: Option<&KvmClock>) -> (u64, FrequencySource) {
    if plausible_khz(info.tsc_khz) {
        return (info.tsc_khz, FrequencySource::BootInfo);
    }
    if let Some(khz) = cpu::tsc_khz_from_cpuid().filter(|&k| plausible_khz(k)) {
        return (khz, FrequencySource::Cpuid);
    }
    if let Some(kvm) = kvm {
        match kvm.record.tsc_khz() {
            Some(khz) => return (khz, FrequencySource::KvmClock),
            None => log::debug!("KVM clock gave no usable scale: {:?}", kvm.record),
        }
    }
    if let Some(khz) = calibrate_with_pit() {
        return (khz, FrequencySource::Pit);
    }
    if let Some(khz) = hw::base_khz_from_cpuid().filter(|&k| plausible_khz(k)) {
        return (khz, FrequencySource::CpuidBaseFrequency);
    }
    (ASSUMED_KHZ, FrequencySource::Assumed)
}

/// Measures the TSC against the PIT, again when a measurement was
/// disturbed (up to [`PIT_ATTEMPTS`] times).
fn calibrate_with_pit() -> Option<u64> {
    let count = hermit_time::pit::count_for_ms(PIT_CALIBRATION_MS);
    for _ in 0..PIT_ATTEMPTS {
        let Some(m) = pit::measure_tsc(count, PIT_MAX_TICKS) else {
            log::debug!("no PIT to calibrate the TSC against");
            return None;
        };
        match hermit_time::pit::khz_from_measurement(m.tsc_ticks, m.pit_ticks, m.uncertainty_ticks)
        {
            Some(khz) => return Some(khz),
            None => log::debug!("PIT calibration disturbed, measuring again: {m:?}"),
        }
    }
    None
}

/// Nanoseconds since kernel entry (0 before the clock starts). Monotonic on
/// one CPU; `rdtsc`, one multiply and one shift, usable at CPL 3.
#[inline]
pub fn monotonic_ns() -> u64 {
    let ticks = cpu::rdtsc().saturating_sub(BOOT_TSC.load(Relaxed));
    apply_parts(ticks, TO_NS_MUL.load(Relaxed), TO_NS_SHIFT.load(Relaxed))
}

/// The TSC frequency in kHz (0 before the clock starts).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Relaxed)
}

/// Where [`tsc_khz`] came from (`None` before the clock starts).
pub fn frequency_source() -> Option<FrequencySource> {
    FrequencySource::ALL
        .get(usize::from(SOURCE.load(Relaxed)).checked_sub(1)?)
        .copied()
}

/// The TSC value at monotonic time `ns` (for TSC-deadline timers).
pub(crate) fn tsc_at(ns: u64) -> u64 {
    BOOT_TSC.load(Relaxed).saturating_add(ns_to_tsc_ticks(ns))
}

/// TSC ticks in `ns` nanoseconds (saturating), e.g. to compute a TSC
/// deadline: `rdtsc() + ns_to_tsc_ticks(ns)`.
#[inline]
pub fn ns_to_tsc_ticks(ns: u64) -> u64 {
    apply_parts(ns, TO_TICKS_MUL.load(Relaxed), TO_TICKS_SHIFT.load(Relaxed))
}

/// Busy-waits for at least `duration`, spinning on the TSC (no interrupts,
/// no scheduler; the blocking sleep comes with the scheduler).
pub fn spin_sleep(duration: Duration) {
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let start = cpu::rdtsc();
    let ticks = ns_to_tsc_ticks(ns);
    // Round up by one tick: the scale rounds down.
    while cpu::rdtsc().wrapping_sub(start) <= ticks {
        core::hint::spin_loop();
    }
}

/// A point on the monotonic clock, like `std::time::Instant`: opaque, only
/// useful compared with another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    ns: u64,
}

impl Instant {
    /// The current time.
    pub fn now() -> Self {
        Self { ns: monotonic_ns() }
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time from `earlier` to `self`, `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.ns.checked_sub(earlier.ns).map(Duration::from_nanos)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.ns.saturating_sub(earlier.ns))
    }

    /// Time since `self`.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + duration`, `None` if that is not representable.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        let ns = u64::try_from(duration.as_nanos()).ok()?;
        self.ns.checked_add(ns).map(|ns| Self { ns })
    }

    /// `self - duration`, `None` if that is before the clock's start.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        let ns = u64::try_from(duration.as_nanos()).ok()?;
        self.ns.checked_sub(ns).map(|ns| Self { ns })
    }

    /// Nanoseconds since kernel entry (what [`monotonic_ns`] returned).
    pub fn as_nanos_since_boot(&self) -> u64 {
        self.ns
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// # Panics
    /// If the result overflows, like `std::time::Instant`.
    fn add(self, rhs: Duration) -> Instant {
        self.checked_add(rhs)
            .expect("overflow when adding duration to instant")
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// # Panics
    /// If the result is before the clock's start.
    fn sub(self, rhs: Duration) -> Instant {
        self.checked_sub(rhs)
            .expect("overflow when subtracting duration from instant")
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        *self = *self - rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero, like `std::time::Instant`.
    fn sub(self, rhs: Instant) -> Duration {
        self.duration_since(rhs)
    }
}

/// Real time, like `std::time::SystemTime`: it may jump (when the source
/// is corrected) and is not monotonic in general, though here it only
/// advances with the TSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemTime {
    since_epoch: Duration,
}

/// 1970-01-01 00:00:00 UTC.
pub const UNIX_EPOCH: SystemTime = SystemTime::UNIX_EPOCH;

/// [`SystemTime::duration_since`] was given a later time; holds how much
/// later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemTimeError(Duration);

impl SystemTimeError {
    /// How far the "earlier" time was after the other.
    pub fn duration(&self) -> Duration {
        self.0
    }
}

impl fmt::Display for SystemTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "second time provided was later than self by {:?}",
            self.0
        )
    }
}

impl core::error::Error for SystemTimeError {}

impl SystemTime {
    /// 1970-01-01 00:00:00 UTC.
    pub const UNIX_EPOCH: SystemTime = SystemTime {
        since_epoch: Duration::ZERO,
    };

    /// The current real time. The first call under QEMU reads the RTC.
    pub fn now() -> SystemTime {
        let ns = wall_at_zero().0.saturating_add(monotonic_ns());
        SystemTime {
            since_epoch: Duration::from_nanos(ns),
        }
    }

    /// Time from `earlier` to `self`, or an error holding how much later
    /// `earlier` is.
    pub fn duration_since(&self, earlier: SystemTime) -> Result<Duration, SystemTimeError> {
        self.since_epoch
            .checked_sub(earlier.since_epoch)
            .ok_or_else(|| SystemTimeError(earlier.since_epoch - self.since_epoch))
    }

    /// Time from `self` to now.
    pub fn elapsed(&self) -> Result<Duration, SystemTimeError> {
        SystemTime::now().duration_since(*self)
    }

    /// `self + duration`, `None` if that overflows.
    pub fn checked_add(&self, duration: Duration) -> Option<SystemTime> {
        self.since_epoch
            .checked_add(duration)
            .map(|since_epoch| SystemTime { since_epoch })
    }

    /// `self - duration`, `None` if that is before 1970.
    pub fn checked_sub(&self, duration: Duration) -> Option<SystemTime> {
        self.since_epoch
            .checked_sub(duration)
            .map(|since_epoch| SystemTime { since_epoch })
    }
}

impl Add<Duration> for SystemTime {
    type Output = SystemTime;
    /// # Panics
    /// If the result overflows.
    fn add(self, rhs: Duration) -> SystemTime {
        self.checked_add(rhs)
            .expect("overflow when adding duration to system time")
    }
}

impl Sub<Duration> for SystemTime {
    type Output = SystemTime;
    /// # Panics
    /// If the result is before 1970.
    fn sub(self, rhs: Duration) -> SystemTime {
        self.checked_sub(rhs)
            .expect("overflow when subtracting duration from system time")
    }
}

/// Where real time comes from (reads the RTC if nobody asked yet).
pub fn wall_clock_source() -> WallClockSource {
    wall_at_zero().1
}

fn wall_at_zero() -> (u64, WallClockSource) {
    *WALL_AT_ZERO.call_once(|| {
        let from_boot_info = || match BOOT_INFO_WALL_NS.load(Relaxed) {
            0 => {
                log::warn!("no real-time source; real time counts from 1970 at boot");
                (0, WallClockSource::None)
            }
            ns => (ns, WallClockSource::BootInfo),
        };
        if !ON_QEMU.load(Relaxed) {
            return from_boot_info();
        }
        let rtc_error = match read_rtc() {
            Ok(at_zero) => return (at_zero, WallClockSource::Rtc),
            Err(e) => e,
        };
        match KVM_WALL_AT_ZERO_NS.load(Relaxed) {
            0 => {
                log::warn!("real time: {rtc_error}, no KVM wall clock; using the boot info");
                from_boot_info()
            }
            ns => {
                log::debug!("real time: {rtc_error}; using the KVM wall clock");
                (ns, WallClockSource::KvmWallClock)
            }
        }
    })
}

/// The CMOS ports as `hermit-time`'s register trait.
struct Cmos(CmosPorts);

impl rtc::Cmos for Cmos {
    fn read(&mut self, register: u8) -> u8 {
        self.0.read(register)
    }
}

/// Unix ns at monotonic zero according to the RTC. Only one caller runs it
/// (inside `WALL_AT_ZERO`'s once), so CMOS accesses do not interleave.
fn read_rtc() -> Result<u64, rtc::RtcError> {
    let regs = rtc::read_registers(&mut Cmos(CmosPorts::new()), RTC_MAX_POLLS)?;
    let now = monotonic_ns();
    let date = rtc::decode(&regs)?;
    log::debug!("RTC: {date:?}");
    Ok(date
        .unix_seconds()
        .saturating_mul(hermit_time::NANOS_PER_SEC)
        .saturating_sub(now))
}
