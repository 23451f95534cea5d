//! CPU exception handling: an IDT whose handlers describe the fault (vector,
//! error code, RIP, CR2, a short stack dump) and hand it to a kernel-provided
//! fatal handler that reports it and ends the VM.

use core::fmt;

use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptStackFrame, PageFaultErrorCode};

use crate::gdt;

/// Number of stack words included in a diagnostic.
pub const STACK_DUMP_WORDS: usize = 8;

/// What the CPU reported about a fatal exception.
#[derive(Clone, Copy, Debug)]
pub struct ExceptionInfo {
    /// Exception vector (0-31).
    pub vector: u8,
    /// Error code, for exceptions that push one.
    pub error_code: Option<u64>,
    /// Faulting instruction.
    pub rip: u64,
    /// Code segment at the fault.
    pub cs: u64,
    /// Flags at the fault.
    pub rflags: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// Faulting address (page faults only).
    pub cr2: Option<u64>,
    /// The words at `rsp`, if the kernel judged them readable.
    pub stack: Option<[u64; STACK_DUMP_WORDS]>,
}

/// The name of exception `vector`.
pub fn vector_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point exception",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        20 => "virtualization exception",
        21 => "control protection exception",
        _ => "reserved exception",
    }
}

impl fmt::Display for ExceptionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU exception {} ({})",
            self.vector,
            vector_name(self.vector)
        )?;
        if let Some(code) = self.error_code {
            write!(f, ", error code {code:#x}")?;
        }
        write!(
            f,
            "\n  rip {:#018x}  rsp {:#018x}  rflags {:#x}  cs {:#x}",
            self.rip, self.rsp, self.rflags, self.cs
        )?;
        if let Some(cr2) = self.cr2 {
            write!(f, "\n  cr2 {cr2:#018x}")?;
            if let Some(code) = self.error_code.filter(|_| self.vector == 14) {
                let code = PageFaultErrorCode::from_bits_truncate(code);
                let access = if code.contains(PageFaultErrorCode::INSTRUCTION_FETCH) {
                    "instruction fetch"
                } else if code.contains(PageFaultErrorCode::CAUSED_BY_WRITE) {
                    "write"
                } else {
                    "read"
                };
                let cause = if code.contains(PageFaultErrorCode::PROTECTION_VIOLATION) {
                    "protection violation"
                } else {
                    "page not present"
                };
                write!(f, " ({access}, {cause})")?;
            }
        }
        match self.stack {
            Some(words) => {
                write!(f, "\n  stack:")?;
                for (i, w) in words.iter().enumerate() {
                    if i % 4 == 0 {
                        write!(f, "\n   ")?;
                    }
                    write!(f, " {w:#018x}")?;
                }
            }
            None => write!(f, "\n  stack: not readable")?,
        }
        Ok(())
    }
}

/// The kernel's policy for fatal exceptions and for what memory is safe to
/// read while reporting one.
pub struct FatalHandler {
    /// Reports `info` and ends the VM.
    pub report: fn(&ExceptionInfo) -> !,
    /// Whether `[addr, addr + len)` is mapped and safe to read.
    pub readable: fn(addr: u64, len: u64) -> bool,
}

static HANDLER: Once<FatalHandler> = Once::new();

fn fatal(vector: u8, frame: &InterruptStackFrame, error_code: Option<u64>) -> ! {
    let rsp = frame.stack_pointer.as_u64();
    // A double fault is usually a page fault that could not be delivered
    // (stack overflow into a guard page): its CR2 tells where.
    let cr2 = (vector == 14 || vector == 8).then(Cr2::read_raw);
    let len = (STACK_DUMP_WORDS * 8) as u64;
    let stack = HANDLER
        .get()
        .filter(|h| rsp.is_multiple_of(8) && (h.readable)(rsp, len))
        .map(|_| {
            let mut words = [0u64; STACK_DUMP_WORDS];
            for (i, w) in words.iter_mut().enumerate() {
                // SAFETY: the kernel confirmed that the range is mapped and
                // readable; the address is 8-byte aligned.
                *w = unsafe { core::ptr::read_volatile((rsp as *const u64).add(i)) };
            }
            words
        });
    let info = ExceptionInfo {
        vector,
        error_code,
        rip: frame.instruction_pointer.as_u64(),
        cs: frame.code_segment.0.into(),
        rflags: frame.cpu_flags.bits(),
        rsp,
        cr2,
        stack,
    };
    match HANDLER.get() {
        Some(h) => (h.report)(&info),
        None => crate::cpu::halt_forever(),
    }
}

macro_rules! handlers {
    ($($name:ident = $vector:literal),* $(,)?) => {$(
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame) {
            fatal($vector, &frame, None)
        }
    )*};
}
macro_rules! handlers_with_code {
    ($($name:ident = $vector:literal),* $(,)?) => {$(
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame, code: u64) {
            fatal($vector, &frame, Some(code))
        }
    )*};
}

handlers!(
    divide_error = 0,
    debug = 1,
    nmi = 2,
    breakpoint = 3,
    overflow = 4,
    bound_range = 5,
    invalid_opcode = 6,
    device_not_available = 7,
    x87_floating_point = 16,
    simd_floating_point = 19,
    virtualization = 20,
);
handlers_with_code!(
    invalid_tss = 10,
    segment_not_present = 11,
    stack_segment_fault = 12,
    general_protection = 13,
    alignment_check = 17,
    control_protection = 21,
);

/// Set by the #GP entry when the [`probe_wrmsr`] instruction faulted.
static PROBE_FAULTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

// The #GP entry: a fault of the probe's `wrmsr` resumes after it with
// `PROBE_FAULTED` set; any other goes to the fatal handler with the frame
// as the CPU pushed it (error code on top).
core::arch::global_asm!(
    ".pushsection .text.hermit_gp_entry, \"ax\"",
    ".global hermit_gp_entry",
    "hermit_gp_entry:",
    "push rax",
    "lea rax, [rip + hermit_probe_wrmsr_insn]",
    "cmp [rsp + 16], rax",
    "jne 2f",
    "add qword ptr [rsp + 16], 2",
    "mov byte ptr [rip + {faulted}], 1",
    "pop rax",
    "add rsp, 8",
    "iretq",
    "2:",
    "pop rax",
    "jmp {fatal}",
    ".popsection",
    faulted = sym PROBE_FAULTED,
    fatal = sym general_protection,
);

unsafe extern "C" {
    /// The #GP entry above; only its address is used.
    static hermit_gp_entry: u8;
}

/// `wrmsr` of `value` to `msr`, with the label the #GP entry recognises.
#[unsafe(naked)]
unsafe extern "C" fn probe_wrmsr_insn(msr: u32, value: u64) {
    core::arch::naked_asm!(
        "mov ecx, edi",
        "mov eax, esi",
        "mov rdx, rsi",
        "shr rdx, 32",
        ".global hermit_probe_wrmsr_insn",
        "hermit_probe_wrmsr_insn:",
        "wrmsr",
        "ret",
    )
}

/// Writes `value` to model-specific register `msr` if the CPU (or
/// hypervisor) has it: returns false, instead of crashing, when the write
/// raises #GP.
///
/// # Safety
/// CPL 0, after [`init`] (or [`load`]) on this CPU, and writing `value` to
/// `msr` must be harmless where the register exists. Not reentrant across
/// CPUs probing at the same moment.
pub unsafe fn probe_wrmsr(msr: u32, value: u64) -> bool {
    use core::sync::atomic::Ordering;
    PROBE_FAULTED.store(false, Ordering::SeqCst);
    // SAFETY: per the caller; a #GP resumes after the `wrmsr`.
    unsafe { probe_wrmsr_insn(msr, value) };
    !PROBE_FAULTED.load(Ordering::SeqCst)
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    fatal(14, &frame, Some(code.bits()))
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    fatal(8, &frame, Some(code))
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    fatal(18, &frame, None)
}

/// One 64-bit IDT gate descriptor.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    /// IST index in bits 0-2, type and attributes in bits 8-15.
    options: u16,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Self = Self {
        offset_low: 0,
        selector: 0,
        options: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present, ring-0, 64-bit interrupt gate (interrupts stay disabled
    /// in the handler), optionally on IST stack `ist` (0-based).
    fn new(handler: u64, selector: u16, ist: Option<u16>) -> Self {
        let ist = ist.map_or(0, |i| i + 1);
        Self {
            offset_low: handler as u16,
            selector,
            options: 0x8e00 | ist,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// All 256 vectors. The table is zero-initialised static memory, so the
/// missing gates cost nothing at boot; only the exception gates are written
/// by [`init`], interrupt gates by [`set_interrupt_handler`] when the kernel
/// first needs them. A missing gate raises #GP, which is reported.
#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: spin::Mutex<Idt> = spin::Mutex::new(Idt([Gate::MISSING; 256]));

/// Routes external interrupt `vector` (32-255) to `handler` on every CPU
/// (the IDT is shared). The handler runs with interrupts disabled.
pub fn set_interrupt_handler(vector: u8, handler: extern "x86-interrupt" fn(InterruptStackFrame)) {
    if vector < 32 {
        return;
    }
    IDT.lock().0[usize::from(vector)] =
        Gate::new(handler as *const () as u64, gdt::KERNEL_CODE, None);
}
static IDT_LOADED: Once<()> = Once::new();

/// Installs `handler` and loads an IDT that routes every CPU exception to
/// it. Call once, on the boot CPU, after [`gdt::init`] (the IST stacks must
/// be in place). Other CPUs use [`load`].
pub fn init(handler: FatalHandler) {
    HANDLER.call_once(|| handler);
    IDT_LOADED.call_once(|| {
        let cs = gdt::KERNEL_CODE;
        let plain: [(usize, u64); 17] = [
            (0, divide_error as *const () as u64),
            (1, debug as *const () as u64),
            (3, breakpoint as *const () as u64),
            (4, overflow as *const () as u64),
            (5, bound_range as *const () as u64),
            (6, invalid_opcode as *const () as u64),
            (7, device_not_available as *const () as u64),
            (10, invalid_tss as *const () as u64),
            (11, segment_not_present as *const () as u64),
            (12, stack_segment_fault as *const () as u64),
            (13, (&raw const hermit_gp_entry) as u64),
            (14, page_fault as *const () as u64),
            (16, x87_floating_point as *const () as u64),
            (17, alignment_check as *const () as u64),
            (19, simd_floating_point as *const () as u64),
            (20, virtualization as *const () as u64),
            (21, control_protection as *const () as u64),
        ];
        let on_ist: [(usize, u64, u16); 3] = [
            (2, nmi as *const () as u64, gdt::NMI_IST),
            (8, double_fault as *const () as u64, gdt::DOUBLE_FAULT_IST),
            (
                18,
                machine_check as *const () as u64,
                gdt::MACHINE_CHECK_IST,
            ),
        ];
        let mut idt = IDT.lock();
        for (vector, addr) in plain {
            idt.0[vector] = Gate::new(addr, cs, None);
        }
        for (vector, addr, ist) in on_ist {
            idt.0[vector] = Gate::new(addr, cs, Some(ist));
        }
    });
    load();
}

/// Loads the shared IDT on the running CPU. [`init`] does this on the boot
/// CPU; application processors call it after `gdt::init_cpu` (their IST
/// stacks must be in place). Does nothing before [`init`] ran. Boot-time,
/// CPL 0.
pub fn load() {
    if IDT_LOADED.get().is_none() {
        return;
    }
    let base = &raw const *IDT.lock() as u64;
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(base),
    };
    // SAFETY: the table is static (it outlives the lock guard), was fully
    // written by `init` before `IDT_LOADED` was set and is never written
    // again; its gates point to handlers with the matching (error code or
    // not) ABI; the IST indices name stacks that `gdt::init_cpu` installed
    // on every CPU.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_diagnostic_names_address_and_cause() {
        let info = ExceptionInfo {
            vector: 14,
            error_code: Some(0b10),
            rip: 0x20_1234,
            cs: 8,
            rflags: 0x2,
            rsp: 0x1f_fff0,
            cr2: Some(0xdead_b000),
            stack: Some([1, 2, 3, 4, 5, 6, 7, 8]),
        };
        let text = format!("{info}");
        assert!(
            text.starts_with("CPU exception 14 (page fault), error code 0x2"),
            "{text}"
        );
        assert!(text.contains("rip 0x0000000000201234"), "{text}");
        assert!(
            text.contains("cr2 0x00000000deadb000 (write, page not present)"),
            "{text}"
        );
        assert!(text.contains("0x0000000000000008"), "{text}");
    }

    #[test]
    fn unreadable_stack_is_said() {
        let info = ExceptionInfo {
            vector: 6,
            error_code: None,
            rip: 0,
            cs: 8,
            rflags: 0,
            rsp: 0,
            cr2: None,
            stack: None,
        };
        let text = format!("{info}");
        assert!(text.contains("invalid opcode"));
        assert!(text.contains("stack: not readable"));
        assert!(!text.contains("error code"));
    }
}
