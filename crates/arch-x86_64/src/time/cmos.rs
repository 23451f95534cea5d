//! The CMOS register file behind ports 0x70 (index) and 0x71 (data), where
//! the MC146818-compatible real-time clock keeps its registers.

use x86_64::instructions::port::Port;

/// CMOS index port.
const INDEX: u16 = 0x70;
/// CMOS data port.
const DATA: u16 = 0x71;
/// Index-port bit that masks NMIs while set; kept clear so reading the
/// clock leaves NMIs enabled.
const NMI_DISABLE: u8 = 1 << 7;

/// The CMOS register file at ports 0x70/0x71.
///
/// Reading selects a register and then reads it, two port accesses (two VM
/// exits). Where no CMOS exists (uhyve) every read returns 0xff. Callers
/// that may run on several CPUs must serialise access: the index written by
/// one CPU selects the register the other reads.
#[derive(Debug)]
pub struct CmosPorts {
    index: Port<u8>,
    data: Port<u8>,
}

impl CmosPorts {
    /// Access through the standard ports.
    pub const fn new() -> Self {
        Self {
            index: Port::new(INDEX),
            data: Port::new(DATA),
        }
    }

    /// Reads register `register` (0-127).
    pub fn read(&mut self, register: u8) -> u8 {
        // SAFETY: selecting a CMOS register and reading it has no memory
        // effects; the NMI mask bit stays clear. Port I/O is allowed at
        // CPL 0 and at CPL 3 with IOPL 3.
        unsafe {
            self.index.write(register & !NMI_DISABLE);
            self.data.read()
        }
    }
}

impl Default for CmosPorts {
    fn default() -> Self {
        Self::new()
    }
}
