//! The application's standard output and error, and the platform's exit.
//!
//! Under uhyve every write is one `Write` hypercall; under QEMU stdout and
//! stderr are the serial ports COM1 and COM2.

use core::fmt::{self, Write as _};

use arch_x86_64::io::{SerialPort, hypercall};
use arch_x86_64::irq::without as without_interrupts;
use hermit_interface::{Platform, hypercall as hc, qemu};
use spin::Mutex;

/// An output stream of the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (host fd 1).
    Stdout,
    /// Standard error (host fd 2).
    Stderr,
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// The `Write` hypercall's parameter block and bounce buffer. They live in
/// the kernel image, which the loader places below 4 GiB, identity-mapped,
/// so their addresses are guest-physical and fit the 32-bit port write.
struct Writer {
    params: hc::Write,
    bounce: [u8; 512],
}

static WRITER: Mutex<Writer> = Mutex::new(Writer {
    params: hc::Write {
        fd: 0,
        _reserved: 0,
        buf: 0,
        len: 0,
        result: 0,
    },
    bounce: [0; 512],
});

/// Serialises writes to the serial ports.
static SERIAL: Mutex<()> = Mutex::new(());

static EXIT_PARAMS: Mutex<hc::Exit> = Mutex::new(hc::Exit { status: 0 });

pub(crate) fn init(platform: Platform) {
    PLATFORM.call_once(|| platform);
}

pub(crate) fn platform() -> Option<Platform> {
    PLATFORM.get().copied()
}

/// Writes `bytes` to `stream`, returning how many were written.
pub fn write(stream: Stream, bytes: &[u8]) -> usize {
    match platform() {
        Some(Platform::Uhyve) => {
            let fd = match stream {
                Stream::Stdout => 1,
                Stream::Stderr => 2,
            };
            // Interrupts off: a writer preempted with the lock held would
            // make every other writer spin for a whole time slice.
            without_interrupts(|| {
                let mut w = WRITER.lock();
                let mut done = 0;
                while done < bytes.len() {
                    let rest = &bytes[done..];
                    // uhyve reads guest-physical memory; thread stacks live in
                    // a virtual window, so their bytes go through a buffer in
                    // the (identity-mapped) kernel image.
                    let (buf, len) = if crate::mem::in_stack_window(rest.as_ptr() as u64) {
                        let n = rest.len().min(w.bounce.len());
                        w.bounce[..n].copy_from_slice(&rest[..n]);
                        (w.bounce.as_ptr() as u64, n)
                    } else {
                        (rest.as_ptr() as u64, rest.len())
                    };
                    w.params = hc::Write {
                        fd,
                        _reserved: 0,
                        buf,
                        len: len as u64,
                        result: 0,
                    };
                    let addr = &raw mut w.params as u64;
                    // SAFETY: `params` is a valid `Write` block below 4 GiB
                    // (kernel image) and the buffer, identity-mapped, is live
                    // for the call.
                    unsafe { hypercall(hc::Nr::Write.port(), addr as u32) };
                    let result = w.params.result;
                    if result <= 0 {
                        break;
                    }
                    done += result as usize;
                }
                done
            })
        }
        Some(Platform::Qemu) => {
            let port = match stream {
                Stream::Stdout => qemu::STDOUT_PORT,
                Stream::Stderr => qemu::STDERR_PORT,
            };
            // One writer at a time: a `rep outsb` may reach the device in
            // several exits, and two CPUs' strings would interleave.
            without_interrupts(|| {
                let _one_writer = SERIAL.lock();
                SerialPort::new(port).write(bytes);
            });
            bytes.len()
        }
        None => 0,
    }
}

/// Collects formatted output in a small buffer so that a `println!` costs
/// one hypercall, not one per formatting fragment.
struct Buffered {
    stream: Stream,
    buf: [u8; 256],
    len: usize,
}

impl Buffered {
    fn flush(&mut self) {
        if self.len > 0 {
            write(self.stream, &self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl fmt::Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        if bytes.len() > self.buf.len() - self.len {
            self.flush();
            if bytes.len() > self.buf.len() {
                write(self.stream, bytes);
                return Ok(());
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(stream: Stream, args: fmt::Arguments<'_>) {
    let mut out = Buffered {
        stream,
        buf: [0; 256],
        len: 0,
    };
    let _ = out.write_fmt(args);
    out.flush();
}

/// Ends the VM with `status`, on whichever platform this is.
pub(crate) fn platform_exit(status: i32) -> ! {
    match platform() {
        Some(Platform::Uhyve) | None => {
            let mut params = EXIT_PARAMS.lock();
            params.status = status;
            let addr = &raw mut *params as u64;
            // SAFETY: `params` is a valid `Exit` block in the kernel image,
            // below 4 GiB; uhyve does not return from `Exit`.
            unsafe { hypercall(hc::Nr::Exit.port(), addr as u32) };
        }
        Some(Platform::Qemu) => {}
    }
    // QEMU (and the fallback when the platform is unknown): the exit record on
    // the log port carries the full status, isa-debug-exit ends the VM.
    let log = SerialPort::new(qemu::LOG_PORT);
    let mut digits = [0u8; 12];
    log.write(qemu::EXIT_RECORD.as_bytes());
    log.write(format_i32(status, &mut digits));
    log.write(b"\n");
    arch_x86_64::io::qemu_debug_exit(qemu::DEBUG_EXIT_PORT, (status as u32) & 0x7f);
    // Still here: QEMU runs without isa-debug-exit; the host takes the status
    // from the exit record written above.
    acpi_power_off();
    arch_x86_64::cpu::halt_forever()
}

/// Turns the VM off through ACPI, once; a second attempt (e.g. after a
/// fault inside the first) only halts. Runs the AML interpreter, which
/// allocates, so it comes after every cheaper way out.
fn acpi_power_off() {
    static TRIED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if TRIED.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return;
    }
    use arch_x86_64::acpi;
    // SAFETY: the boot identity map covers the low 1 MiB (entry contract).
    let Some(rsdp) = (unsafe { acpi::find_rsdp(crate::boot::acpi_rsdp_hint()) }) else {
        log::warn!("power-off: no ACPI tables");
        return;
    };
    let handler = acpi::IdentityHandler {
        tsc_khz: crate::time::tsc_khz(),
    };
    // SAFETY: `rsdp` was found above; the tables and the sleep registers
    // they name lie below 4 GiB, in the identity map. The VM ends here.
    if let Err(e) = unsafe { acpi::power_off(rsdp, handler) } {
        log::warn!("ACPI power-off failed: {e}");
    }
}

/// Formats `v` in decimal without allocating.
fn format_i32(v: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = i64::from(v).unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}
