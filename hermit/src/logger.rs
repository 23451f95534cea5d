//! The kernel log: a `log` backend that appends to an in-memory ring the
//! host can read (uhyve reads it when the VM ends, even after a crash) and,
//! under QEMU, also writes to the log serial port.
//!
//! The level comes from the kernel command line (`log=off|error|warn|info|
//! debug|trace`, set on the host by `HERMIT_LOG_LEVEL`); the default is
//! `warn`, so a quiet boot costs no formatting.

use core::fmt::{self, Write as _};

use arch_x86_64::io::{SerialPort, hypercall};
use hermit_interface::{LOG_RING_MAGIC, LogRing, Platform, hypercall as hc, qemu};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

const RING_CAPACITY: usize = 16 * 1024;

#[repr(C)]
struct Ring {
    header: LogRing,
    data: [u8; RING_CAPACITY],
}

static RING: Mutex<Ring> = Mutex::new(Ring {
    header: LogRing {
        magic: LOG_RING_MAGIC,
        capacity: RING_CAPACITY as u64,
        written: 0,
    },
    data: [0; RING_CAPACITY],
});

struct Logger;

static LOGGER: Logger = Logger;

/// Where the log also goes, besides the ring.
static SERIAL: spin::Once<Option<SerialPort>> = spin::Once::new();

impl Ring {
    fn append(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let pos = (self.header.written % RING_CAPACITY as u64) as usize;
            self.data[pos] = b;
            self.header.written += 1;
        }
    }
}

/// A `fmt::Write` sink for one record.
struct Sink<'a> {
    ring: &'a mut Ring,
    serial: Option<SerialPort>,
}

impl fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.ring.append(s.as_bytes());
        if let Some(port) = self.serial {
            port.write(s.as_bytes());
        }
        Ok(())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let serial = SERIAL.get().copied().flatten();
        let mut ring = RING.lock();
        let mut sink = Sink {
            ring: &mut ring,
            serial,
        };
        let us = crate::boot::uptime_us();
        let _ = writeln!(
            sink,
            "[{:>6}.{:06}][{}] {}",
            us / 1_000_000,
            us % 1_000_000,
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// The level named by the `log=` option of `cmdline`, if any.
fn level_from_cmdline(cmdline: &str) -> Result<Option<LevelFilter>, &str> {
    for option in cmdline.split_ascii_whitespace() {
        if let Some(value) = option.strip_prefix("log=") {
            return value.parse().map(Some).map_err(|_| value);
        }
    }
    Ok(None)
}

/// Installs the logger with the level from `cmdline` and tells the host
/// where the ring is.
pub(crate) fn init(platform: Platform, cmdline: &str) {
    SERIAL.call_once(|| (platform == Platform::Qemu).then(|| SerialPort::new(qemu::LOG_PORT)));
    let (level, bad) = match level_from_cmdline(cmdline) {
        Ok(level) => (level.unwrap_or(LevelFilter::Warn), None),
        Err(bad) => (LevelFilter::Warn, Some(bad)),
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
    if let Some(bad) = bad {
        log::warn!("unknown log level {bad:?} on the command line; using warn");
    }
    if platform == Platform::Uhyve {
        let ring = &raw const *RING.lock();
        let mut params = hc::LogRegister { ring: ring as u64 };
        // SAFETY: the ring is a static in the kernel image (below 4 GiB) that
        // lives forever; `params` lives on the boot stack, which the loader
        // places below 4 GiB, and is valid for the duration of the call.
        unsafe { hypercall(hc::Nr::LogRegister.port(), &raw mut params as u64 as u32) };
    }
}
