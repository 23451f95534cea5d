//! CPU feature setup and small CPU primitives.

use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr4, Cr4Flags};

/// Enables the x87 FPU and SSE so that applications (and Rust code compiled
/// for SSE targets) can use floating point: clears `CR0.EM`, sets `CR0.MP`
/// and `CR0.NE`, and sets `CR4.OSFXSR` and `CR4.OSXMMEXCPT`.
///
/// The guests on this platform have no XSAVE, so FPU state is FXSAVE-sized.
pub fn enable_fpu_sse() {
    let mut cr0 = Cr0::read();
    cr0.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
    cr0.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
    // SAFETY: only FPU-related bits change; paging and protection bits are kept.
    unsafe { Cr0::write(cr0) };
    let mut cr4 = Cr4::read();
    cr4.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
    // SAFETY: enabling FXSAVE/SSE support does not affect memory safety.
    unsafe { Cr4::write(cr4) };
    // SAFETY: the FPU was just enabled; `fninit` only resets its state.
    unsafe { core::arch::asm!("fninit", options(nomem, nostack)) };
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC frequency in kHz as reported by CPUID, if the CPU or hypervisor
/// reports it (leaf 0x15 with a crystal clock, or the hypervisor timing leaf
/// 0x40000010).
pub fn tsc_khz_from_cpuid() -> Option<u64> {
    use core::arch::x86_64::__cpuid;
    let max_hv = __cpuid(0x4000_0000).eax;
    if (0x4000_0010..0x5000_0000).contains(&max_hv) {
        let khz = __cpuid(0x4000_0010).eax;
        if khz != 0 {
            return Some(u64::from(khz));
        }
    }
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let leaf = __cpuid(0x15);
        if leaf.eax != 0 && leaf.ebx != 0 && leaf.ecx != 0 {
            return Some(u64::from(leaf.ecx) * u64::from(leaf.ebx) / u64::from(leaf.eax) / 1000);
        }
    }
    None
}

/// The physical address of the active top-level page table (`CR3` without
/// its flag bits). Needs CPL 0.
pub fn page_table_root() -> u64 {
    Cr3::read().0.start_address().as_u64()
}

/// Halts the CPU forever with interrupts disabled.
pub fn halt_forever() -> ! {
    loop {
        crate::irq::disable();
        x86_64::instructions::hlt();
    }
}

/// `IA32_FS_BASE`: the base of the `fs` segment, the thread pointer of
/// x86_64 thread-local storage.
const IA32_FS_BASE: u32 = 0xc000_0100;

/// Sets the `fs` segment base, the thread pointer that `#[thread_local]`
/// accesses (`mov rax, fs:[...]`) are relative to. Needs CPL 0 (`wrmsr`).
///
/// # Safety
/// Code that runs afterwards on this CPU uses `base` as its thread pointer:
/// it must be 0 (no thread-local storage) or point just past a live TLS
/// block whose first word after the block holds `base` itself (x86_64 TLS
/// variant II), for as long as it stays loaded.
pub unsafe fn set_fs_base(base: u64) {
    // SAFETY: writing IA32_FS_BASE changes only the `fs` segment base; the
    // caller vouches for the memory it designates. CPL 0 is a precondition
    // of the kernel's context-switch path, which is the only caller.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") IA32_FS_BASE,
            in("eax") base as u32,
            in("edx") (base >> 32) as u32,
            options(nostack, preserves_flags),
        );
    }
}
