//! The kernel GDT and the TSS with its interrupt stack table (IST).
//!
//! Faults that can happen on a broken stack (double fault, NMI, machine
//! check) run on stacks of their own, so a stack overflow still produces a
//! diagnostic instead of a triple fault.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot of the double-fault handler.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI handler.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check handler.
pub const MACHINE_CHECK_IST: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static TABLES: Once<Tables> = Once::new();

/// Builds and loads the GDT, reloads the segment registers and loads the TSS.
/// Call once on the boot CPU before installing the IDT.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (slot, ist) in [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST]
            .into_iter()
            .enumerate()
        {
            // SAFETY: only the address of the static is taken; the stacks are
            // used exclusively by the CPU through the IST.
            let base = unsafe { &raw const IST_STACKS[slot] } as u64;
            tss.interrupt_stack_table[usize::from(ist)] =
                VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        tss
    });
    let tables = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, and the code
    // segment is a 64-bit kernel code segment, so execution continues as before.
    unsafe {
        CS::set_reg(tables.code);
        SS::set_reg(tables.data);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        load_tss(tables.tss);
    }
}
