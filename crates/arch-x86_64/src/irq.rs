//! The interrupt flag, and native execution on this host's paravirtual KVM.
//!
//! On a stock KVM the kernel masks interrupts with `cli`/`sti` and reads
//! `RFLAGS.IF`. The software KVM of the machines this project is measured
//! on (`kvm_pvm`) emulates every instruction a stock guest runs at CPL 0,
//! one at a time (about 0.5 µs each), until the guest registers a *virtual
//! interrupt flag* page with it (MSR [`MSR_PVM_VIF`]). From then on the
//! kernel's code runs natively at hardware CPL 3, tens to hundreds of times
//! faster: the hypervisor traps and emulates privileged instructions
//! (`wrmsr`, `out`, `hlt`, `invlpg`...), delivers exceptions through the
//! guest's IDT, and takes the interrupt flag from byte 0 of the page
//! instead of `RFLAGS.IF` (which `popfq` cannot change at CPL 3 and
//! `pushfq` always reads as set).
//!
//! What does not work there (measured, see `docs/kvm-pvm-native.md`):
//! external interrupts. The first timer interrupt or IPI delivered while
//! running natively faults (#GP at the handler's first instruction, #SS
//! with an IST stack), and unregistering the page does not bring the vCPU
//! back to an emulated CPL 0 that can take them. So native execution is an
//! opt-in for applications that never enable interrupts (no threads,
//! sleeps, timers or network): [`init_boot_cpu`] registers the page when
//! asked to (`native=on` on the kernel command line), and [`enable`] on a
//! native CPU panics with an explanation instead of letting the VM fault.
//!
//! [`disable`], [`enable`], [`are_enabled`], [`without`] and
//! [`enable_and_halt`] hide the difference: on a native CPU the flag byte
//! stays 0, so masking is free and `cli`/`sti` (which would trap) are not
//! executed. The page is part of each CPU's [`gdt::CpuTables`]
//! ([`gdt::VIF_OFFSET`] from its `GS` base).
//!
//! Registration is probed: on any other hypervisor (KVM, QEMU TCG) the
//! `wrmsr` raises #GP, which [`crate::exception::probe_wrmsr`] turns into
//! "not available" (the kernel then runs as without the option). The ABI
//! (MSR number, page layout) was read from the running host's kernel.

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
/// on; returns whether it did. Interrupts must then stay disabled.
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
    let ok = unsafe { crate::exception::probe_wrmsr(MSR_PVM_VIF, page | VIF_ENABLE) };
    if ok {
        // SAFETY: this CPU's own block; nothing else writes the field.
        unsafe { (*per_cpu).paravirt = 1 };
        ANY_NATIVE.store(true, Ordering::Relaxed);
    }
    ok
}

/// What [`enable`] says on a native CPU.
const NEEDS_INTERRUPTS: &str = "this application enables interrupts (threads, sleeping, timers or \
     networking), which the kernel cannot take while it runs natively on kvm_pvm; run it \
     without native=on (HERMIT_NATIVE)";

/// Whether interrupts are enabled on this CPU.
#[inline]
pub fn are_enabled() -> bool {
    if native() {
        // Natively interrupts are never enabled (see the module docs).
        false
    } else {
        x86_64::instructions::interrupts::are_enabled()
    }
}

/// Disables interrupts on this CPU.
#[inline]
pub fn disable() {
    if !native() {
        x86_64::instructions::interrupts::disable();
    }
}

/// Enables interrupts on this CPU.
///
/// # Panics
/// On a CPU that runs natively (see the module docs).
#[inline]
pub fn enable() {
    if native() {
        panic!("{NEEDS_INTERRUPTS}");
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
/// # Panics
/// On a CPU that runs natively (see the module docs).
#[inline]
pub fn enable_and_halt() {
    if native() {
        panic!("{NEEDS_INTERRUPTS}");
    }
    x86_64::instructions::interrupts::enable_and_hlt();
}
