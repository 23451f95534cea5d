//! Per-CPU GDT, TSS with its interrupt stack table (IST), and the per-CPU
//! block that `GS` points to.
//!
//! Every CPU has its own GDT and TSS (a TSS descriptor is marked busy when
//! loaded, so CPUs cannot share one). The GDT layout is the one `SYSCALL` /
//! `SYSRET` need (`STAR[47:32] = 0x08`, `STAR[63:48] = 0x10`):
//!
//! | selector | descriptor |
//! | --- | --- |
//! | `0x00` | null |
//! | `0x08` | kernel code, 64-bit, DPL 0 ([`KERNEL_CODE`]) |
//! | `0x10` | kernel data, DPL 0 ([`KERNEL_DATA`]) |
//! | `0x18` | user data, DPL 3 (selector [`USER_DATA`] = `0x1b`) |
//! | `0x20` | user code, 64-bit, DPL 3 (selector [`USER_CODE`] = `0x23`) |
//! | `0x28` | the CPU's TSS (16 bytes, [`TSS`]) |
//!
//! Faults that can happen on a broken stack (double fault, NMI, machine
//! check) run on stacks of their own, so a stack overflow still produces a
//! diagnostic instead of a triple fault.
//!
//! At initialisation each CPU points its `GS` base (MSR `IA32_GS_BASE`) to
//! its [`PerCpu`] block, whose first word is the block's own address, so
//! code at any privilege level finds its CPU with `mov rax, gs:[0]`.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::PrivilegeLevel;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lgdt, load_tss};
use x86_64::registers::model_specific::GsBase;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::tss::TaskStateSegment;

/// IST slot of the double-fault handler.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI handler.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check handler.
pub const MACHINE_CHECK_IST: u16 = 2;

/// Size of each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// Kernel code segment selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DATA: u16 = 0x10;
/// User data segment selector (RPL 3).
pub const USER_DATA: u16 = 0x18 | 3;
/// User code segment selector (RPL 3).
pub const USER_CODE: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS: u16 = 0x28;

/// Flat 64-bit code, DPL 0, present, accessed (set in advance so that the
/// CPU never writes to the GDT).
const DESC_KERNEL_CODE: u64 = 0x00af_9b00_0000_ffff;
/// Flat data, DPL 0, present, writable, accessed.
const DESC_KERNEL_DATA: u64 = 0x00cf_9300_0000_ffff;
/// Flat data, DPL 3.
const DESC_USER_DATA: u64 = 0x00cf_f300_0000_ffff;
/// Flat 64-bit code, DPL 3.
const DESC_USER_CODE: u64 = 0x00af_fb00_0000_ffff;

/// Number of 8-byte GDT slots (the TSS descriptor takes two).
const GDT_ENTRIES: usize = 7;

/// The two 8-byte halves of an available 64-bit TSS descriptor for a TSS at
/// `base` with the standard 104-byte size.
pub const fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = (size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, DPL 0, type 9 (available 64-bit TSS)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// The GDT of a CPU whose TSS lies at `tss`.
pub const fn gdt_entries(tss: u64) -> [u64; GDT_ENTRIES] {
    let [tss_low, tss_high] = tss_descriptor(tss);
    [
        0,
        DESC_KERNEL_CODE,
        DESC_KERNEL_DATA,
        DESC_USER_DATA,
        DESC_USER_CODE,
        tss_low,
        tss_high,
    ]
}

/// The per-CPU block `GS` points to. The layout of the first fields is part
/// of the kernel's ABI with its assembly (`gs:[0]` is `self_ptr`,
/// `gs:[8]` is `cpu`, `gs:[16]` is `tss`).
#[repr(C)]
#[derive(Debug)]
pub struct PerCpu {
    /// The block's own address (read with `mov rax, gs:[0]`).
    pub self_ptr: u64,
    /// The CPU's index: 0 for the boot CPU, then in start order.
    pub cpu: u32,
    /// The CPU's local APIC ID.
    pub apic_id: u32,
    /// This CPU's TSS.
    pub tss: *mut TaskStateSegment,
    /// Free for entry code (e.g. saving the user stack pointer in a
    /// `SYSCALL` entry before a kernel stack is known).
    pub scratch: [u64; 4],
    /// Non-zero while this CPU runs natively on a paravirtual host with
    /// its virtual-interrupt-flag page registered ([`crate::irq`]).
    pub paravirt: u8,
}

/// Offset of [`PerCpu::cpu`] in the block (`gs:[8]`).
pub const PER_CPU_CPU_OFFSET: usize = core::mem::offset_of!(PerCpu, cpu);
/// Offset of [`PerCpu::paravirt`] in the block.
pub const PER_CPU_PARAVIRT_OFFSET: usize = core::mem::offset_of!(PerCpu, paravirt);
/// Offset of [`PerCpu::tss`] in the block (`gs:[16]`).
pub const PER_CPU_TSS_OFFSET: usize = core::mem::offset_of!(PerCpu, tss);

/// Everything one CPU's descriptor tables need, in one block that lives as
/// long as the CPU runs (a static for the boot CPU, leaked heap memory for
/// the others), and the CPU's virtual-interrupt-flag page ([`crate::irq`]).
#[repr(C, align(4096))]
pub struct CpuTables {
    per_cpu: PerCpu,
    gdt: [u64; GDT_ENTRIES],
    tss: TaskStateSegment,
    vif: VifPage,
}

/// The page a paravirtual hypervisor reads the interrupt flag from (byte 0)
/// and marks pending interrupts in (byte 1); see [`crate::irq`].
#[repr(C, align(4096))]
struct VifPage([u8; 16]);

/// Offset of the CPU's virtual-interrupt-flag page from its [`PerCpu`]
/// block (`GS` base), so `gs:[VIF_OFFSET]` is the flag.
pub const VIF_OFFSET: usize =
    core::mem::offset_of!(CpuTables, vif) - core::mem::offset_of!(CpuTables, per_cpu);

impl CpuTables {
    /// Unfilled tables; [`init_cpu`] fills them.
    pub const fn new() -> Self {
        Self {
            per_cpu: PerCpu {
                self_ptr: 0,
                cpu: 0,
                apic_id: 0,
                tss: core::ptr::null_mut(),
                scratch: [0; 4],
                paravirt: 0,
            },
            gdt: [0; GDT_ENTRIES],
            tss: TaskStateSegment::new(),
            vif: VifPage([0; 16]),
        }
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// The boot CPU's IST stacks; application processors get theirs from the
/// caller of [`init_cpu`].
static mut BSP_IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];
// All zero, so that it lives in `.bss` and not in the image file (8 KiB with
// its page-aligned flag page); `init_cpu` fills every field it needs.
// SAFETY: every field of `CpuTables` (integers, arrays of them, a raw
// pointer) is valid when zeroed.
static mut BSP_TABLES: CpuTables = unsafe { core::mem::zeroed() };
static BSP_DONE: AtomicBool = AtomicBool::new(false);

/// Builds and loads the boot CPU's GDT, reloads the segment registers, loads
/// the TSS and points `GS` at the boot CPU's [`PerCpu`] (CPU 0, APIC ID from
/// CPUID). Call once on the boot CPU before installing the IDT; later calls
/// do nothing. Boot-time, CPL 0.
pub fn init() {
    if BSP_DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut ist = [0u64; 3];
    for (slot, top) in ist.iter_mut().enumerate() {
        // SAFETY: only the address of the static is taken; the stacks are
        // used exclusively by this CPU through the IST.
        let base = unsafe { &raw const BSP_IST_STACKS[slot] } as u64;
        *top = base + IST_STACK_SIZE as u64;
    }
    let tables = &raw mut BSP_TABLES;
    // SAFETY: `BSP_DONE` guarantees that this is the only reference to the
    // boot CPU's tables, and the static lives forever.
    let tables = unsafe { &mut *tables };
    // SAFETY: boot CPU, CPL 0; the stacks are the static ones above.
    unsafe { init_cpu(tables, 0, initial_apic_id(), ist) };
}

/// The initial local APIC ID of the running CPU (CPUID leaf 1, EBX[31:24]);
/// needs no APIC access, so it works on uhyve, which has no local APIC MMIO.
pub fn initial_apic_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// Fills `tables` for CPU `cpu`, loads its GDT and TSS, reloads the segment
/// registers and sets `GS` base to the CPU's [`PerCpu`] block.
/// `ist_tops` are the (16-byte aligned) tops of the double-fault, NMI and
/// machine-check stacks ([`IST_STACK_SIZE`] bytes or more each).
///
/// # Safety
/// Boot-time, CPL 0 (it writes `IA32_GS_BASE`), once per CPU on that CPU;
/// `tables` and the IST stacks must stay untouched by anyone else for as
/// long as the CPU runs.
pub unsafe fn init_cpu(tables: &'static mut CpuTables, cpu: u32, apic_id: u32, ist_tops: [u64; 3]) {
    let mut tss = TaskStateSegment::new();
    for (slot, top) in [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST]
        .into_iter()
        .zip(ist_tops)
    {
        tss.interrupt_stack_table[usize::from(slot)] = VirtAddr::new(top);
    }
    tables.tss = tss;
    let tss_addr = &raw mut tables.tss;
    tables.gdt = gdt_entries(tss_addr as u64);
    tables.per_cpu = PerCpu {
        self_ptr: &raw const tables.per_cpu as u64,
        cpu,
        apic_id,
        tss: tss_addr,
        scratch: [0; 4],
        paravirt: 0,
    };
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[u64; GDT_ENTRIES]>() - 1) as u16,
        base: VirtAddr::new(tables.gdt.as_ptr() as u64),
    };
    let code = SegmentSelector::new(KERNEL_CODE >> 3, PrivilegeLevel::Ring0);
    let data = SegmentSelector::new(KERNEL_DATA >> 3, PrivilegeLevel::Ring0);
    // SAFETY: the GDT lives as long as the CPU runs (caller); the kernel code
    // segment is a 64-bit one like the loader's, so execution continues; the
    // TSS descriptor points to a filled TSS; `GS` base is written after the
    // selectors are loaded (loading `GS` would clear it) and points to the
    // CPU's own block.
    unsafe {
        lgdt(&pointer);
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(SegmentSelector::new(TSS >> 3, PrivilegeLevel::Ring0));
        GsBase::write(VirtAddr::new(tables.per_cpu.self_ptr));
    }
}

/// The index of the running CPU (0 = boot CPU). Works at any privilege
/// level; only valid after [`init`] / [`init_cpu`] ran on this CPU.
#[inline]
pub fn this_cpu() -> u32 {
    let cpu: u32;
    // SAFETY: `GS` base points to this CPU's `PerCpu` (set by `init_cpu`),
    // whose `cpu` field is at `PER_CPU_CPU_OFFSET`.
    unsafe {
        core::arch::asm!(
            "mov {0:e}, gs:[{off}]",
            out(reg) cpu,
            off = const PER_CPU_CPU_OFFSET,
            options(nostack, readonly, preserves_flags)
        );
    }
    cpu
}

/// The running CPU's [`PerCpu`] block. Only valid after [`init`] /
/// [`init_cpu`] ran on this CPU.
#[inline]
pub fn this_per_cpu() -> *mut PerCpu {
    let ptr: u64;
    // SAFETY: `GS` base points to this CPU's `PerCpu`, whose first word is
    // its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags));
    }
    ptr as *mut PerCpu
}

/// Sets the stack the running CPU switches to when an interrupt or a system
/// call arrives at CPL 3 (`TSS.rsp0`). No privileged instruction: the TSS is
/// ordinary memory. Only valid after [`init`] / [`init_cpu`] ran on this CPU.
pub fn set_kernel_stack(rsp0: u64) {
    let per_cpu = this_per_cpu();
    // SAFETY: `per_cpu` is this CPU's block and its `tss` field points to
    // this CPU's TSS (set by `init_cpu`); only this CPU writes its `rsp0`.
    // The TSS is packed, so the field is written unaligned.
    unsafe {
        let tss = (*per_cpu).tss;
        (&raw mut (*tss).privilege_stack_table[0]).write_unaligned(VirtAddr::new(rsp0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_fit_syscall_layout() {
        // SYSRET loads CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8.
        let star_high = KERNEL_DATA;
        assert_eq!(star_high + 8, USER_DATA & !3);
        assert_eq!(star_high + 16, USER_CODE & !3);
        assert_eq!(usize::from(TSS >> 3) + 2, GDT_ENTRIES);
    }

    #[test]
    fn descriptors_have_expected_privilege_and_kind() {
        let gdt = gdt_entries(0x1234_5678_9abc_def0);
        let dpl = |d: u64| (d >> 45) & 3;
        let long = |d: u64| (d >> 53) & 1;
        let exec = |d: u64| (d >> 43) & 1;
        assert_eq!(gdt[0], 0);
        assert_eq!((dpl(gdt[1]), long(gdt[1]), exec(gdt[1])), (0, 1, 1));
        assert_eq!((dpl(gdt[2]), exec(gdt[2])), (0, 0));
        assert_eq!((dpl(gdt[3]), exec(gdt[3])), (3, 0));
        assert_eq!((dpl(gdt[4]), long(gdt[4]), exec(gdt[4])), (3, 1, 1));
    }

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let [low, high] = tss_descriptor(0x1234_5678_9abc_def0);
        assert_eq!(low & 0xffff, 103);
        assert_eq!((low >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((low >> 56) & 0xff, 0x9a);
        assert_eq!(high, 0x1234_5678);
        assert_eq!((low >> 40) & 0xff, 0x89);
    }

    #[test]
    fn per_cpu_offsets_match_the_asm() {
        assert_eq!(core::mem::offset_of!(PerCpu, self_ptr), 0);
        assert_eq!(PER_CPU_CPU_OFFSET, 8);
        assert_eq!(PER_CPU_TSS_OFFSET, 16);
    }
}
