//! Output on QEMU's ISA serial ports and the error exit.

use core::fmt::{self, Write as _};

use hermit_interface::qemu;

/// Writes one byte to the I/O port `port`.
fn outb(port: u16, value: u8) {
    // SAFETY: the loader runs in ring 0 with the whole port space to itself;
    // writing to the serial ports and `isa-debug-exit` has no memory effects.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Writes `bytes` to the UART at `port`. QEMU's 16550 accepts a byte at any
/// time, so there is no line-status polling on this (error-only) path.
pub fn write(port: u16, bytes: &[u8]) {
    for &b in bytes {
        outb(port, b);
    }
}

/// A serial port as a formatting sink.
struct Port(u16);

impl fmt::Write for Port {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(self.0, s.as_bytes());
        Ok(())
    }
}

/// Ends the VM with exit status 1 after printing `pvh-loader: <message>` on
/// the stderr port and an exit record on the log port.
pub fn fail(message: impl fmt::Display) -> ! {
    // Output errors cannot happen: `Port::write_str` never fails.
    let _ = writeln!(Port(qemu::STDERR_PORT), "pvh-loader: {message}");
    write(qemu::LOG_PORT, qemu::EXIT_RECORD.as_bytes());
    write(qemu::LOG_PORT, b"1\n");
    outb(qemu::DEBUG_EXIT_PORT, 1);
    loop {
        // SAFETY: without `isa-debug-exit` there is nothing left to do but stop
        // the CPU; interrupts are off, so `hlt` parks it for good.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
