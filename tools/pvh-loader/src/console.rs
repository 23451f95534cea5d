//! Output on QEMU's ISA serial ports and the error exit.

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

/// Writes `value` in hexadecimal (`0x...`).
pub fn write_hex(port: u16, value: u64) {
    let mut digits = [0u8; 18];
    digits[0] = b'0';
    digits[1] = b'x';
    for (i, d) in digits[2..].iter_mut().enumerate() {
        let nibble = (value >> (60 - 4 * i)) & 0xf;
        *d = b"0123456789abcdef"[nibble as usize];
    }
    write(port, &digits);
}

/// Ends the VM with exit status 1 after printing
/// `pvh-loader: <message>[ <value>]` on the stderr port.
pub fn fail(message: &str, value: Option<u64>) -> ! {
    write(qemu::STDERR_PORT, b"pvh-loader: ");
    write(qemu::STDERR_PORT, message.as_bytes());
    if let Some(v) = value {
        write(qemu::STDERR_PORT, b" ");
        write_hex(qemu::STDERR_PORT, v);
    }
    write(qemu::STDERR_PORT, b"\n");
    write(qemu::LOG_PORT, qemu::EXIT_RECORD.as_bytes());
    write(qemu::LOG_PORT, b"1\n");
    outb(qemu::DEBUG_EXIT_PORT, 1);
    loop {
        // SAFETY: without `isa-debug-exit` there is nothing left to do but stop
        // the CPU; interrupts are off, so `hlt` parks it for good.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
