//! Task context switching.
//!
//! A task that is not running is fully described by its saved stack
//! pointer: [`switch`] pushes the callee-saved registers and the SSE/x87
//! control words onto the outgoing task's stack and pops the incoming task's.
//! The caller-saved registers, XMM registers included, need no saving on a
//! voluntary switch because `switch` is an ordinary `extern "C"` call; a
//! switch from an interrupt handler first saves everything the interrupted
//! code may have live (see [`crate::interrupt`]).

/// Bytes [`switch`] keeps on a suspended task's stack.
pub const SWITCH_FRAME_BYTES: usize = 8 * 8;

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
        "sub rsp, 16",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 16",
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
/// The top [`SWITCH_FRAME_BYTES`] + 8 bytes below `stack_top` must be
/// writable memory owned by the new task; `stack_top` must be 16-byte
/// aligned.
pub unsafe fn prepare_stack(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    // Layout from the saved stack pointer upwards: control words and a
    // padding word, r15, r14, r13, r12 (arg), rbx (entry), rbp, and the
    // return address (task_start). After `ret` the stack pointer is
    // `stack_top`, 16-byte aligned as `call rbx` requires.
    let frame: [u64; 9] = [
        MXCSR_DEFAULT | (FCW_DEFAULT << 32),
        0,
        0,
        0,
        0,
        arg,
        entry as usize as u64,
        0,
        task_start as *const () as u64,
    ];
    let sp = stack_top - (frame.len() as u64) * 8;
    // SAFETY: the caller guarantees that the frame's bytes below `stack_top`
    // are writable and belong to the new task.
    unsafe {
        core::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut u64, frame.len());
    }
    sp
}
