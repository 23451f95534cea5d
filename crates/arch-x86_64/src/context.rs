//! Task context switching.
//!
//! A task that is not running is fully described by its saved stack
//! pointer: [`switch`] pushes the callee-saved registers and the whole
//! x87/SSE state (`fxsave`) onto the outgoing task's stack and pops the
//! incoming task's. Only the control words would need saving under the
//! System V ABI, but `stmxcsr`/`ldmxcsr` are not emulated by this host's
//! software KVM at CPL 0 (internal error) while `fxsave`/`fxrstor` are.
//! The caller-saved registers, XMM registers included, need no saving on a
//! voluntary switch because `switch` is an ordinary `extern "C"` call; a
//! switch from an interrupt handler first saves everything the interrupted
//! code may have live (see [`crate::interrupt`]).

/// Bytes of the FXSAVE area [`switch`] keeps, padding included.
const FXSAVE_BYTES: usize = 520;
/// Bytes [`switch`] keeps on a suspended task's stack: the FXSAVE area, six
/// callee-saved registers and the return address.
pub const SWITCH_FRAME_BYTES: usize = FXSAVE_BYTES + 7 * 8;

/// MXCSR after reset: all SIMD exceptions masked, round to nearest.
const MXCSR_DEFAULT: u64 = 0x1f80;
/// x87 control word after `fninit`: all exceptions masked, 64-bit precision.
const FCW_DEFAULT: u64 = 0x037f;

/// Saves the current task's state on its stack, stores its stack pointer in
/// `*from` and resumes the task whose stack pointer is `to`.
///
/// Returns when some later `switch` resumes the task that called it.
///
/// # Safety
/// `from` must be valid for a write. `to` must be a stack pointer saved by
/// `switch` for a task that is not running anywhere, or one prepared by
/// [`prepare_stack`], and that stack must stay allocated while the task can
/// run. Interrupts should be disabled, so that no interrupt handler observes
/// the half-switched state.
#[unsafe(naked)]
pub unsafe extern "C" fn switch(from: *mut u64, to: u64) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 520",
        "fxsave [rsp]",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "fxrstor [rsp]",
        "add rsp, 520",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// First code of a new task: calls `entry(arg)` (carried in `rbx` and
/// `r12` by [`prepare_stack`]) on an ABI-aligned stack. `entry` must not
/// return.
#[unsafe(naked)]
extern "C" fn task_start() {
    core::arch::naked_asm!("mov rdi, r12", "call rbx", "ud2")
}

/// Writes the initial switch frame of a new task at the top of its stack
/// `[stack_bottom, stack_top)` and returns the stack pointer to hand to
/// [`switch`]: the first switch to it calls `entry(arg)` with interrupts as
/// the switching code left them.
///
/// # Safety
/// The top [`SWITCH_FRAME_BYTES`] bytes below `stack_top` must be writable
/// memory owned by the new task; `stack_top` must be 16-byte aligned.
pub unsafe fn prepare_stack(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    // Layout from the saved stack pointer upwards: the FXSAVE area (only the
    // control words are non-zero) with its 8 bytes of padding, r15, r14,
    // r13, r12 (arg), rbx (entry), rbp, and the return address
    // (task_start). After `ret` the stack pointer is `stack_top`, 16-byte
    // aligned as `call rbx` requires.
    let words = SWITCH_FRAME_BYTES / 8;
    let sp = stack_top - SWITCH_FRAME_BYTES as u64;
    let base = sp as *mut u64;
    let regs = FXSAVE_BYTES / 8;
    // SAFETY: the caller guarantees that the frame's bytes below `stack_top`
    // are writable and belong to the new task; all writes are in
    // `[sp, stack_top)`.
    unsafe {
        core::ptr::write_bytes(base, 0, words);
        base.write(FCW_DEFAULT);
        base.add(3).write(MXCSR_DEFAULT);
        base.add(regs + 3).write(arg); // r12
        base.add(regs + 4).write(entry as usize as u64); // rbx
        base.add(regs + 6).write(task_start as *const () as u64);
    }
    sp
}
