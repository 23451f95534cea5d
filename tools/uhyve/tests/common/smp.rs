//! Building blocks of SMP test guests: the boot CPU starts application
//! processors with the StartCpu hypercall (each with its own stack), they
//! report through guest memory, and bounded wait loops keep a broken VM from
//! hanging a test. Used by `tests/smp.rs` and the startup benchmark.

use hermit_interface::hypercall::Nr;

use super::{CODE, Guest, Reg};

pub const EXIT: u64 = 0x2000;
pub const WRITE: u64 = 0x2010;
pub const COUNTER: u64 = 0x2040;
pub const READY: u64 = 0x2048;
pub const GOT: u64 = 0x2050;
pub const IDTR: u64 = 0x2060;
pub const AP_EXIT: u64 = 0x2070;
/// Per-CPU records of 32 bytes: RSI, RDI - RSP, CPUID.1 EBX[31:24],
/// CPUID.0xB EDX.
pub const REC: u64 = 0x2100;
pub const REC_SIZE: u64 = 32;
/// StartCpu parameter blocks, 0x40 apart (the struct is 48 bytes).
pub const START: u64 = 0x2900;
pub const IDT: u64 = 0x3000;
/// Vector of the test IPI.
pub const VECTOR: u64 = 0x40;

/// Where the boot CPU jumps when a StartCpu result is not 0 (status: the
/// result in RCX).
pub const FAIL: u64 = CODE + 0x600;
/// Where a wait loop goes when it gives up (status [`TIMED_OUT`]).
pub const TIMEOUT: u64 = CODE + 0x680;
/// Exit status of a guest whose wait timed out.
pub const TIMED_OUT: i32 = 200;
/// TSC ticks a wait loop waits before it gives up: 20e9, 7 to 20 s at
/// the usual 1-3 GHz, however fast the guest's instructions are.
pub const WAIT_TICKS: u64 = 20_000_000_000;
/// Application processors' entry.
pub const AP_ENTRY: u64 = CODE + 0x700;
/// Interrupt handler of the IPI test.
pub const HANDLER: u64 = CODE + 0xe00;

/// Top of the stack of AP `cpu` (link address; past the image, in RAM).
pub fn stack_top(cpu: u64) -> u64 {
    0x10000 * (cpu + 2)
}

pub fn start_block(cpu: u64) -> u64 {
    START + 0x40 * cpu
}

/// A value the boot CPU puts into a StartCpu field.
#[derive(Clone, Copy)]
pub enum Val {
    /// The run-time address of a link address.
    Link(u64),
    /// A plain number.
    Raw(u64),
    /// The boot CPU's CR3 plus an offset.
    Cr3Plus(u64),
}

pub fn load_val(g: &mut Guest, v: Val) {
    match v {
        Val::Link(a) => g.lea(Reg::Rcx, a),
        Val::Raw(n) => g.mov_imm(Reg::Rcx, n),
        Val::Cr3Plus(n) => g
            .read_cr3(Reg::Rcx)
            .mov_imm(Reg::Rdx, n)
            .add(Reg::Rcx, Reg::Rdx),
    };
}

/// Fills StartCpu block `block` and issues the hypercall; afterwards RBX
/// points to the block and RCX holds its result.
pub fn start_cpu(g: &mut Guest, block: u64, cpu: u32, entry: Val, stack: Val, arg: Val, cr3: Val) {
    g.data(block, &cpu.to_le_bytes());
    g.data(block + 40, &0x5555i64.to_le_bytes());
    for (offset, v) in [(8, entry), (16, stack), (24, arg), (32, cr3)] {
        load_val(g, v);
        g.lea(Reg::Rbx, block).store(Reg::Rbx, offset, Reg::Rcx);
    }
    g.hypercall(Nr::StartCpu, block)
        .lea(Reg::Rbx, block)
        .load(Reg::Rcx, Reg::Rbx, 40);
}

/// Starts AP `cpu` at [`AP_ENTRY`] with its own stack and
/// `arg = stack top + 0x100 * cpu`; jumps to [`FAIL`] unless the result is 0.
pub fn start_ap(g: &mut Guest, cpu: u64) {
    let top = stack_top(cpu);
    start_cpu(
        g,
        start_block(cpu),
        cpu as u32,
        Val::Link(AP_ENTRY),
        Val::Link(top),
        Val::Link(top + 0x100 * cpu),
        Val::Cr3Plus(0),
    );
    g.cmp_imm(Reg::Rcx, 0).jne(FAIL);
}

/// The [`FAIL`] block (exit with RCX) and the [`TIMEOUT`] block.
pub fn fail_block(g: &mut Guest) {
    g.pad_to(FAIL)
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
    g.pad_to(TIMEOUT).exit(EXIT + 8, TIMED_OUT);
}

/// Writes this CPU's record (see [`REC`]); clobbers everything but RSI/RSP.
pub fn record(g: &mut Guest) {
    g.lea(Reg::Rbx, REC)
        .mov(Reg::Rax, Reg::Rsi)
        .shl(Reg::Rax, 5)
        .add(Reg::Rbx, Reg::Rax)
        .store(Reg::Rbx, 0, Reg::Rsi)
        .mov(Reg::Rcx, Reg::Rdi)
        .raw(&[0x48, 0x29, 0xe1]); // sub rcx, rsp
    g.store(Reg::Rbx, 8, Reg::Rcx).push(Reg::Rbx);
    g.mov_imm(Reg::Rax, 0xb)
        .mov_imm(Reg::Rcx, 0)
        .cpuid()
        .mov(Reg::Rdi, Reg::Rdx);
    g.mov_imm(Reg::Rax, 1)
        .cpuid()
        .shr(Reg::Rbx, 24)
        .mov(Reg::Rcx, Reg::Rbx)
        .pop(Reg::Rbx)
        .store(Reg::Rbx, 16, Reg::Rcx)
        .store(Reg::Rbx, 24, Reg::Rdi);
}

/// Spins until the 8-byte counter at `at` equals `value`, or jumps to
/// [`TIMEOUT`] after [`WAIT_TICKS`] (so a broken VM fails the test instead
/// of hanging it). Clobbers RAX, RBX, RCX, RDX.
pub fn wait_for(g: &mut Guest, at: u64, value: i8) {
    g.lea(Reg::Rbx, at)
        .rdtsc()
        .mov_imm(Reg::Rcx, WAIT_TICKS)
        .add(Reg::Rcx, Reg::Rax);
    let top = g.here();
    g.rdtsc()
        .raw(&[0x48, 0x39, 0xc8]) // cmp rax, rcx
        .jae(TIMEOUT)
        .pause()
        .load(Reg::Rax, Reg::Rbx, 0)
        .cmp_imm(Reg::Rax, value)
        .jne(top);
}

/// `cli; hlt` forever.
pub fn halt_forever(g: &mut Guest) {
    g.cli();
    let top = g.here();
    g.hlt().jmp(top);
}

/// `jmp $`.
pub fn spin_forever(g: &mut Guest) {
    let top = g.here();
    g.jmp(top);
}

/// The counting guest: the boot CPU starts CPUs `1..n`; each writes its
/// record and increments the counter (lock inc), then halts; the boot CPU
/// waits for `n - 1`, writes all records to stdout and exits with the sum
/// of the CPU indices in the records.
pub fn counting_guest(n: u64) -> Guest {
    let mut g = Guest::new();
    record(&mut g);
    for cpu in 1..n {
        start_ap(&mut g, cpu);
    }
    wait_for(&mut g, COUNTER, (n - 1) as i8);
    g.data(WRITE, &1i32.to_le_bytes())
        .pointer(WRITE + 8, REC)
        .data(WRITE + 16, &(REC_SIZE * n).to_le_bytes())
        .hypercall(Nr::Write, WRITE);
    g.mov_imm(Reg::Rax, 0).lea(Reg::Rbx, REC);
    for cpu in 0..n {
        g.load(Reg::Rcx, Reg::Rbx, (REC_SIZE * cpu) as i8)
            .add(Reg::Rax, Reg::Rcx);
    }
    g.lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rax)
        .exit_with(EXIT);
    fail_block(&mut g);
    g.pad_to(AP_ENTRY);
    record(&mut g);
    g.lea(Reg::Rbx, COUNTER).lock_inc(Reg::Rbx);
    halt_forever(&mut g);
    g
}
