//! Port I/O devices: 16550 serial ports, uhyve hypercalls, QEMU's
//! `isa-debug-exit`.

use x86_64::instructions::port::Port;

/// A 16550-compatible UART used only for output.
///
/// Hypervisors transmit a byte the moment it is written to the transmit
/// register, so the driver neither programs the baud rate nor polls the line
/// status register: every port access is a VM exit, and this halves them.
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
        let mut port = Port::<u8>::new(self.base);
        for &b in bytes {
            // SAFETY: writing the transmit holding register of a UART that
            // the platform guarantees at this address has no memory effects.
            unsafe { port.write(b) };
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
