//! Port I/O devices: 16550 serial ports, uhyve hypercalls, QEMU's
//! `isa-debug-exit`.

use x86_64::instructions::port::Port;

/// A 16550-compatible UART used only for output.
///
/// Hypervisors transmit a byte the moment it is written to the transmit
/// register, so the driver neither programs the baud rate nor polls the line
/// status register, and it writes a whole buffer with one `rep outsb`: every
/// port access instruction is a VM exit, and KVM hands a string write to the
/// device model in one exit.
#[derive(Clone, Copy, Debug)]
pub struct SerialPort {
    base: u16,
}

impl SerialPort {
    /// The UART at I/O base `base` (e.g. 0x3f8 for COM1).
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    /// Writes all of `bytes`.
    pub fn write(&self, bytes: &[u8]) {
        // SAFETY: `rep outsb` reads `bytes.len()` bytes from `bytes` (valid
        // for reads) and writes them to the UART's transmit register, which
        // has no memory effects; the direction flag is clear per the ABI.
        unsafe {
            core::arch::asm!(
                "rep outsb",
                in("dx") self.base,
                inout("rsi") bytes.as_ptr() => _,
                inout("rcx") bytes.len() => _,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

/// Issues a uhyve hypercall: a 32-bit `out` of `param_phys` (the
/// guest-physical address of the parameter struct) to `port`.
///
/// # Safety
/// `param_phys` must be the address of a live, correctly typed parameter
/// struct for this hypercall that the host may read and write until the call
/// returns, and the kernel must run on uhyve.
pub unsafe fn hypercall(port: u16, param_phys: u32) {
    // SAFETY: the caller guarantees the parameter block is valid; the host
    // writes results into it before the guest resumes, which the compiler
    // must assume (no `nomem`).
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") param_phys, options(nostack, preserves_flags));
    }
}

/// Writes `value` to QEMU's `isa-debug-exit` device at `port`; QEMU then
/// exits with status `(value << 1) | 1`. Returns only if no such device is
/// present.
pub fn qemu_debug_exit(port: u16, value: u32) {
    let mut p = Port::<u32>::new(port);
    // SAFETY: writing to the debug-exit port ends the VM or is ignored.
    unsafe { p.write(value) };
}
