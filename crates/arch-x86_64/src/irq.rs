//! The interrupt flag, and native execution on this host's paravirtual KVM.
//!
//! On a stock KVM the kernel masks interrupts with `cli`/`sti` and reads
//! `RFLAGS.IF`. The software KVM of the machines this project is measured
//! on (`kvm_pvm`) emulates every instruction a stock guest runs at CPL 0,
//! one at a time (about 0.5 µs each), until the guest registers a *virtual
//! interrupt flag* page with it (MSR [`MSR_PVM_VIF`]). From then on the
//! kernel's code runs natively at hardware CPL 3, tens to hundreds of times
//! faster: the hypervisor traps and emulates privileged instructions
//! (`wrmsr`, `out`, `hlt`, `iretq`...), delivers exceptions and interrupts
//! through the guest's IDT, and takes the interrupt flag from byte 0 of the
//! page instead of `RFLAGS.IF` (which `popfq` cannot change at CPL 3 and
//! `pushfq` always reads as set). Byte 1 is set by the hypervisor when an
//! interrupt arrived while the flag was clear; [`enable`] then asks for it
//! with a trapping `out` to port 0x80, as the host's own paravirtual Linux
//! code does.
//!
//! Natively, `mov` from `CS` reads the host's user selector, not the
//! kernel's: whatever the hypervisor needs to know about the kernel's
//! selectors (the IDT gates, `IA32_STAR`) is written from the constants in
//! [`gdt`], never from the live register.
//!
//! [`disable`], [`enable`], [`are_enabled`], [`without`] and
//! [`enable_and_halt`] hide the difference: on a native CPU they only touch
//! the flag byte, so masking costs a store and `cli`/`sti` (which would
//! trap) are not executed. The page is part of each CPU's
//! [`gdt::CpuTables`] ([`gdt::VIF_OFFSET`] from its `GS` base).
//!
//! Registration is probed: on other hypervisors the `wrmsr` raises #GP,
//! which [`crate::exception::probe_wrmsr`] turns into "not available", or
//! is accepted and ignored (QEMU's TCG), which the kernel sees because it
//! still runs at CPL 0 afterwards; it then unregisters and masks
//! interrupts with `cli`/`sti` as usual. The ABI
//! (MSR number, page layout, the pending byte and the port-0x80 request)
//! was read from the running host's kernel; see `docs/kvm-pvm-native.md`.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::gdt;

/// The MSR that registers the virtual-interrupt-flag page: its guest
/// physical address (page aligned) ORed with flag bits; 0 unregisters.
pub const MSR_PVM_VIF: u32 = 0x4b56_4d10;
/// Flag bit of [`MSR_PVM_VIF`]: a plain registration (interrupts through
/// the IDT, no paravirtual entry points).
const VIF_ENABLE: u64 = 1 << 10;
/// `IA32_STAR`, the `syscall` segment selectors.
const IA32_STAR: u32 = 0xc000_0081;
/// The 32-bit user code selector of Linux hosts (`__USER32_CS`).
const USER32_CS: u64 = 0x23;

/// Whether any CPU registered its page (checked before `GS` is trusted:
/// the console masks interrupts before the per-CPU block exists).
static ANY_NATIVE: AtomicBool = AtomicBool::new(false);

/// Whether this CPU runs natively with its virtual-interrupt-flag page
/// registered.
#[inline]
pub fn native() -> bool {
    if !ANY_NATIVE.load(Ordering::Relaxed) {
        return false;
    }
    let flag: u8;
    // SAFETY: `ANY_NATIVE` is only set after the boot CPU's `GS` base points
    // at its tables; every other CPU sets `GS` before it runs kernel code
    // that masks interrupts (`gdt::init_cpu`).
    unsafe {
        core::arch::asm!(
            "mov {0}, byte ptr gs:[{off}]",
            out(reg_byte) flag,
            off = const gdt::PER_CPU_PARAVIRT_OFFSET,
            options(nostack, readonly, preserves_flags)
        );
    }
    flag != 0
}

/// Registers the boot CPU's virtual-interrupt-flag page with the
/// hypervisor if it offers one, so that the kernel runs natively from here
/// on; returns whether it did.
///
/// # Safety
/// Boot CPU, once, CPL 0, interrupts disabled, after [`gdt::init`] and
/// [`crate::exception::init`]; kernel memory must be identity mapped (the
/// page's virtual address is its physical address).
pub unsafe fn init_boot_cpu() -> bool {
    let per_cpu = gdt::this_per_cpu();
    let page = per_cpu as u64 + gdt::VIF_OFFSET as u64;
    debug_assert_eq!(page % 4096, 0);
    // SAFETY: the page belongs to this CPU's tables, which live forever; the
    // flag starts clear, matching the disabled interrupts.
    unsafe { core::ptr::write_bytes(page as *mut u8, 0, 16) };
    // The hypervisor derives the kernel's code and stack selectors for the
    // frames it builds from `IA32_STAR`, as `syscall` would: kernel CS in
    // bits 47:32 (data is CS + 8), the host's 32-bit user CS in bits 63:48.
    // SAFETY: STAR only matters to `syscall`/`sysret`, which this kernel
    // does not use (EFER.SCE is clear on stock hypervisors).
    unsafe {
        x86_64::registers::model_specific::Msr::new(IA32_STAR)
            .write((USER32_CS << 48) | (u64::from(gdt::KERNEL_CODE) << 32));
    }
    // SAFETY: CPL 0 after the IDT is loaded; on hypervisors without the MSR
    // the probe's #GP is caught, on `kvm_pvm` the write registers the page.
    let mut ok = unsafe { crate::exception::probe_wrmsr(MSR_PVM_VIF, page | VIF_ENABLE) };
    if ok && !running_at_hardware_cpl3() {
        // Accepted but ignored (QEMU's TCG takes writes to unknown KVM
        // MSRs): still at CPL 0, where only `cli`/`sti` mask interrupts.
        // SAFETY: the write was just accepted; 0 unregisters.
        unsafe { crate::exception::probe_wrmsr(MSR_PVM_VIF, 0) };
        ok = false;
    }
    if ok {
        // SAFETY: this CPU's own block; nothing else writes the field.
        unsafe { (*per_cpu).paravirt = 1 };
        ANY_NATIVE.store(true, Ordering::Relaxed);
    }
    ok
}

/// Whether this CPU runs at hardware CPL 3, i.e. natively on `kvm_pvm`:
/// there `CS` holds the host's user selector (RPL 3) whatever the kernel
/// loaded; anywhere else it holds the kernel's (RPL 0).
fn running_at_hardware_cpl3() -> bool {
    use x86_64::instructions::segmentation::{CS, Segment};
    CS::get_reg().0 & 3 == 3
}

/// Registers an application processor's page if the boot CPU registered
/// its own (the hypervisor is the same), so that this CPU runs natively
/// too; returns whether it did.
///
/// # Safety
/// On the AP itself, once, CPL 0, interrupts disabled, after
/// [`gdt::init_cpu`] and [`crate::exception::load`]; its tables must be
/// identity mapped.
pub unsafe fn init_ap() -> bool {
    if !ANY_NATIVE.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: forwarded from the caller; the boot CPU's registration proved
    // that the MSR exists, and the probe still catches a refusal.
    unsafe { init_boot_cpu() }
}

/// Reads byte `i` of this CPU's virtual-interrupt-flag page.
#[inline]
fn vif_byte<const I: usize>() -> u8 {
    let value: u8;
    // SAFETY: only called on a native CPU, whose `GS` base points at its
    // per-CPU block, `VIF_OFFSET` bytes before its registered page.
    unsafe {
        core::arch::asm!(
            "mov {0}, byte ptr gs:[{off}]",
            out(reg_byte) value,
            off = const gdt::VIF_OFFSET + I,
            options(nostack, readonly, preserves_flags)
        );
    }
    value
}

/// Sets this CPU's virtual interrupt flag (byte 0 of its page).
#[inline]
fn set_vif(value: u8) {
    // SAFETY: as in `vif_byte`; the byte is this CPU's and the hypervisor
    // reads it only while this CPU is stopped. The asm is a compiler
    // barrier (no `nomem`), like `cli`/`sti`.
    unsafe {
        core::arch::asm!(
            "mov byte ptr gs:[{off}], {0}",
            in(reg_byte) value,
            off = const gdt::VIF_OFFSET,
            options(nostack, preserves_flags)
        );
    }
}

/// Whether interrupts are enabled on this CPU.
#[inline]
pub fn are_enabled() -> bool {
    if native() {
        vif_byte::<0>() != 0
    } else {
        x86_64::instructions::interrupts::are_enabled()
    }
}

/// Disables interrupts on this CPU.
#[inline]
pub fn disable() {
    if native() {
        set_vif(0);
    } else {
        x86_64::instructions::interrupts::disable();
    }
}

/// Enables interrupts on this CPU.
#[inline]
pub fn enable() {
    if native() {
        set_vif(1);
        if vif_byte::<1>() != 0 {
            // An interrupt arrived while the flag was clear: the trapping
            // port write makes the hypervisor deliver it now.
            // SAFETY: port 0x80 (the POST port) has no device behind it;
            // natively the write traps to the hypervisor.
            unsafe { core::arch::asm!("out 0x80, al", in("al") 0u8, options(nostack)) };
        }
        return;
    }
    x86_64::instructions::interrupts::enable();
}

/// Restores the state [`disable_save`] returned.
#[inline]
pub fn restore(enabled: bool) {
    if enabled {
        enable();
    }
}

/// Disables interrupts and returns whether they were enabled.
#[inline]
pub fn disable_save() -> bool {
    let was = are_enabled();
    disable();
    was
}

/// Runs `f` with interrupts disabled, restoring the previous state.
#[inline]
pub fn without<R>(f: impl FnOnce() -> R) -> R {
    let was = disable_save();
    let r = f();
    restore(was);
    r
}

/// Enables interrupts and halts until one arrives, without a window in
/// which an interrupt could be taken between the two (`sti; hlt`).
///
/// Natively the pair is the flag store and a trapping `hlt`; an interrupt
/// delivered between them makes the hypervisor return from that `hlt` at
/// once (it remembers deliveries since the last halt), so the wake-up is
/// not lost. The caller rechecks its condition either way.
#[inline]
pub fn enable_and_halt() {
    if native() {
        enable();
        x86_64::instructions::hlt();
        return;
    }
    x86_64::instructions::interrupts::enable_and_hlt();
}
