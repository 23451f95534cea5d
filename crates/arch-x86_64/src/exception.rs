//! CPU exception handling: an IDT whose handlers describe the fault (vector,
//! error code, RIP, CR2, a short stack dump) and hand it to a kernel-provided
//! fatal handler that reports it and ends the VM.

use core::fmt;

use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

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
            if let Some(code) = self.error_code {
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
static IDT: Once<InterruptDescriptorTable> = Once::new();

fn fatal(vector: u8, frame: &InterruptStackFrame, error_code: Option<u64>) -> ! {
    let rsp = frame.stack_pointer.as_u64();
    let cr2 = (vector == 14).then(Cr2::read_raw);
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

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    fatal(14, &frame, Some(code.bits()))
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    fatal(8, &frame, Some(code))
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    fatal(18, &frame, None)
}

/// Installs `handler` and loads an IDT that routes every CPU exception to it.
/// Call after [`gdt::init`] (the IST stacks must be in place).
pub fn init(handler: FatalHandler) {
    HANDLER.call_once(|| handler);
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available
            .set_handler_fn(device_not_available);
        idt.invalid_tss.set_handler_fn(invalid_tss);
        idt.segment_not_present.set_handler_fn(segment_not_present);
        idt.stack_segment_fault.set_handler_fn(stack_segment_fault);
        idt.general_protection_fault
            .set_handler_fn(general_protection);
        idt.page_fault.set_handler_fn(page_fault);
        idt.x87_floating_point.set_handler_fn(x87_floating_point);
        idt.alignment_check.set_handler_fn(alignment_check);
        idt.simd_floating_point.set_handler_fn(simd_floating_point);
        idt.virtualization.set_handler_fn(virtualization);
        idt.cp_protection_exception
            .set_handler_fn(control_protection);
        // SAFETY: the IST indices name stacks that `gdt::init` installed in the TSS.
        unsafe {
            idt.double_fault
                .set_handler_fn(double_fault)
                .set_stack_index(gdt::DOUBLE_FAULT_IST);
            idt.non_maskable_interrupt
                .set_handler_fn(nmi)
                .set_stack_index(gdt::NMI_IST);
            idt.machine_check
                .set_handler_fn(machine_check)
                .set_stack_index(gdt::MACHINE_CHECK_IST);
        }
        idt
    });
    idt.load();
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
