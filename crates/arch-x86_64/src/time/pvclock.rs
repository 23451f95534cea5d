//! The KVM paravirtual clock (kvmclock): a 32-byte record the host fills in
//! with the guest TSC's scale once the guest writes its address to
//! `MSR_KVM_SYSTEM_TIME_NEW`, and the wall-clock record the host fills in
//! once when the guest writes `MSR_KVM_WALL_CLOCK_NEW`: the host's real
//! time at which the kvmclock's system time was zero. The kernel uses both
//! only at boot, to learn the TSC frequency and the real time, and switches
//! updates off again.

use core::arch::x86_64::__cpuid;
use core::cell::UnsafeCell;

use x86_64::registers::model_specific::Msr;

/// `MSR_KVM_SYSTEM_TIME_NEW`: guest-physical address of the record, bit 0
/// enables updates.
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `MSR_KVM_WALL_CLOCK_NEW`: guest-physical address of a wall-clock record
/// the host fills in once, at the write.
pub const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
/// The KVM CPUID signature in EBX, ECX, EDX of the hypervisor base leaf.
const KVM_SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";
/// Feature bit in EAX of leaf base + 1: the "new" clock MSRs exist.
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// The fields of one consistent read of the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockFields {
    /// Guest TSC at which `system_time` was taken.
    pub tsc_timestamp: u64,
    /// Host system time in ns at `tsc_timestamp`.
    pub system_time: u64,
    /// 32.32 fixed-point multiplier from shifted ticks to ns.
    pub tsc_to_system_mul: u32,
    /// Shift applied to tick deltas before the multiply.
    pub tsc_shift: i8,
    /// `PVCLOCK_*` flags.
    pub flags: u8,
}

/// `struct pvclock_vcpu_time_info`. 32-byte aligned, so it never crosses a
/// page boundary (the host requires that).
#[repr(C, align(32))]
struct Record {
    version: u32,
    _pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    _pad: [u8; 2],
}

/// The boot CPU's record, written by the host between `read_once`'s two MSR
/// writes.
struct RecordCell(UnsafeCell<Record>);

// SAFETY: only `read_once` touches the cell, and its contract makes it
// boot-time, single-CPU code.
unsafe impl Sync for RecordCell {}

static RECORD: RecordCell = RecordCell(UnsafeCell::new(Record {
    version: 0,
    _pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    _pad: [0; 2],
}));

/// `struct pvclock_wall_clock`; 16-byte aligned so it never crosses a page.
#[repr(C, align(16))]
struct WallClockRecord {
    version: u32,
    sec: u32,
    nsec: u32,
}

/// Written by the host during `read_wall_clock`'s MSR write.
struct WallClockCell(UnsafeCell<WallClockRecord>);

// SAFETY: only `read_wall_clock` touches the cell, and its contract makes it
// boot-time, single-CPU code.
unsafe impl Sync for WallClockCell {}

static WALL_CLOCK: WallClockCell = WallClockCell(UnsafeCell::new(WallClockRecord {
    version: 0,
    sec: 0,
    nsec: 0,
}));

/// Whether the CPU runs on KVM with the kvmclock MSRs of
/// `KVM_FEATURE_CLOCKSOURCE2`. Looks at the first two hypervisor leaf
/// bases (0x40000000, and 0x40000100 where a Hyper-V interface comes first).
pub fn present() -> bool {
    [0x4000_0000u32, 0x4000_0100].into_iter().any(|base| {
        let sig = __cpuid(base);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&sig.ebx.to_le_bytes());
        bytes[4..8].copy_from_slice(&sig.ecx.to_le_bytes());
        bytes[8..].copy_from_slice(&sig.edx.to_le_bytes());
        bytes == KVM_SIGNATURE
            && sig.eax > base
            && __cpuid(base + 1).eax & KVM_FEATURE_CLOCKSOURCE2 != 0
    })
}

/// Has the host fill in the boot CPU's pvclock record once, reads it and
/// turns updates off again. `None` if the host wrote nothing usable (version
/// zero or odd).
///
/// # Safety
/// Boot-time, CPL 0 (two MSR writes), on the boot CPU before any other CPU
/// runs, and only when [`present`] returned true (else the MSR write
/// faults). The kernel image must be identity-mapped (virtual address ==
/// guest-physical address, as the entry contract guarantees), because the
/// host writes to the physical address of a static.
pub unsafe fn read_once() -> Option<PvclockFields> {
    let record = RECORD.0.get();
    let phys = record as u64;
    let mut msr = Msr::new(MSR_KVM_SYSTEM_TIME_NEW);
    // SAFETY: the caller guarantees CPL 0 and a KVM host with this MSR; the
    // address is that of a 32-byte-aligned static of the right layout in
    // identity-mapped memory, which the host fills in before this vCPU
    // resumes.
    unsafe { msr.write(phys | 1) };
    // SAFETY: writing 0 stops further host updates, so the reads below race
    // with nothing.
    unsafe { msr.write(0) };
    // SAFETY: `record` points to the static; the host wrote it behind the
    // compiler's back, hence volatile reads of plain integer fields.
    let fields = unsafe {
        let version = (&raw const (*record).version).read_volatile();
        if version == 0 || !version.is_multiple_of(2) {
            return None;
        }
        PvclockFields {
            tsc_timestamp: (&raw const (*record).tsc_timestamp).read_volatile(),
            system_time: (&raw const (*record).system_time).read_volatile(),
            tsc_to_system_mul: (&raw const (*record).tsc_to_system_mul).read_volatile(),
            tsc_shift: (&raw const (*record).tsc_shift).read_volatile(),
            flags: (&raw const (*record).flags).read_volatile(),
        }
    };
    Some(fields)
}

/// Has the host write its wall clock: the Unix time `(seconds,
/// nanoseconds)` at which the kvmclock's `system_time` was zero (add
/// [`PvclockFields`]' system time for a given TSC to get the real time then).
/// `None` if the host wrote nothing usable.
///
/// # Safety
/// As for [`read_once`]: boot-time, CPL 0, boot CPU only, [`present`]
/// returned true, kernel image identity-mapped.
pub unsafe fn read_wall_clock() -> Option<(u32, u32)> {
    let record = WALL_CLOCK.0.get();
    let mut msr = Msr::new(MSR_KVM_WALL_CLOCK_NEW);
    // SAFETY: the caller guarantees CPL 0 and a KVM host with this MSR; the
    // address is that of a 16-byte-aligned static of the right layout in
    // identity-mapped memory, which the host writes once, during this write.
    unsafe { msr.write(record as u64) };
    // SAFETY: `record` points to the static; the host wrote it behind the
    // compiler's back, hence volatile reads of plain integer fields.
    unsafe {
        let version = (&raw const (*record).version).read_volatile();
        let sec = (&raw const (*record).sec).read_volatile();
        let nsec = (&raw const (*record).nsec).read_volatile();
        (version.is_multiple_of(2) && sec != 0 && nsec < 1_000_000_000).then_some((sec, nsec))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_layout_matches_the_kvm_abi() {
        assert_eq!(core::mem::size_of::<super::Record>(), 32);
        assert_eq!(core::mem::offset_of!(super::Record, tsc_to_system_mul), 24);
        assert_eq!(core::mem::offset_of!(super::Record, flags), 29);
        assert_eq!(core::mem::offset_of!(super::WallClockRecord, nsec), 8);
    }
}
