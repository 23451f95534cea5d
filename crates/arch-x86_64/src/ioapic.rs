//! The I/O APIC: typed redirection entries and the register window
//! (IOREGSEL at +0, IOWIN at +0x10).
//!
//! Addresses and GSI bases come from the MADT ([`crate::acpi::madt_interrupts`]).
//! Under QEMU `microvm` (with its second I/O APIC, the default when ACPI is
//! on) PCIe INTA-D are GSI 16-19 and virtio-mmio slot *n* is GSI 24 + *n*;
//! both are level-triggered, active high.
//!
//! Register access is MMIO, which works at any privilege level once the
//! window is mapped; nothing here needs CPL 0.

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered (ISA default).
    Edge,
    /// Level-triggered (PCI INTx, virtio-mmio under QEMU).
    Level,
}

/// The line's active level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// One redirection table entry (fixed delivery, physical destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirection {
    /// IDT vector raised.
    pub vector: u8,
    /// Destination local APIC ID.
    pub dest: u8,
    /// Trigger mode.
    pub trigger: Trigger,
    /// Polarity.
    pub polarity: Polarity,
    /// Whether the line is masked.
    pub masked: bool,
}

impl Redirection {
    /// The 64-bit register value.
    pub const fn bits(&self) -> u64 {
        let mut v = self.vector as u64;
        if matches!(self.polarity, Polarity::Low) {
            v |= 1 << 13;
        }
        if matches!(self.trigger, Trigger::Level) {
            v |= 1 << 15;
        }
        if self.masked {
            v |= 1 << 16;
        }
        v | ((self.dest as u64) << 56)
    }

    /// Decodes a register value (delivery and destination modes ignored).
    pub const fn from_bits(v: u64) -> Self {
        Self {
            vector: v as u8,
            dest: (v >> 56) as u8,
            trigger: if v & (1 << 15) != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            },
            polarity: if v & (1 << 13) != 0 {
                Polarity::Low
            } else {
                Polarity::High
            },
            masked: v & (1 << 16) != 0,
        }
    }
}

/// An I/O APIC's register window.
#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    base: usize,
    gsi_base: u32,
}

/// IOAPICVER: bits 16-23 hold the highest redirection entry index.
const REG_VERSION: u32 = 1;
/// First redirection register.
const REG_REDIRECTION: u32 = 0x10;

impl IoApic {
    /// The I/O APIC whose registers are mapped at `base` and whose first
    /// pin is GSI `gsi_base`.
    ///
    /// # Safety
    /// `base` must map an I/O APIC's 4 KiB register window (uncached) for
    /// the lifetime of the value, and callers must not select registers
    /// concurrently (the select/window pair is not atomic).
    pub const unsafe fn new(base: usize, gsi_base: u32) -> Self {
        Self { base, gsi_base }
    }

    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `new`'s contract: IOREGSEL and IOWIN lie in the window.
        unsafe {
            (self.base as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *const u32).read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            (self.base as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *mut u32).write_volatile(value);
        }
    }

    /// Number of pins.
    pub fn pins(&self) -> u32 {
        ((self.read(REG_VERSION) >> 16) & 0xff) + 1
    }

    /// Whether `gsi` is one of this I/O APIC's pins.
    pub fn handles(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.pins()
    }

    /// The entry of `gsi`'s pin; `None` if it is not ours.
    pub fn get(&self, gsi: u32) -> Option<Redirection> {
        if !self.handles(gsi) {
            return None;
        }
        let reg = REG_REDIRECTION + 2 * (gsi - self.gsi_base);
        let v = u64::from(self.read(reg)) | (u64::from(self.read(reg + 1)) << 32);
        Some(Redirection::from_bits(v))
    }

    /// Programs `gsi`'s pin; false if it is not ours. Writes the high half
    /// first and the low half (with the mask bit) last.
    pub fn set(&self, gsi: u32, entry: Redirection) -> bool {
        if !self.handles(gsi) {
            return false;
        }
        let reg = REG_REDIRECTION + 2 * (gsi - self.gsi_base);
        let v = entry.bits();
        self.write(reg, 1 << 16);
        self.write(reg + 1, (v >> 32) as u32);
        self.write(reg, v as u32);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_bits() {
        let e = Redirection {
            vector: 0x31,
            dest: 2,
            trigger: Trigger::Level,
            polarity: Polarity::Low,
            masked: false,
        };
        assert_eq!(e.bits(), 0x0200_0000_0000_a031);
        assert_eq!(Redirection::from_bits(e.bits()), e);
        let masked = Redirection {
            masked: true,
            trigger: Trigger::Edge,
            polarity: Polarity::High,
            ..e
        };
        assert_eq!(masked.bits(), 0x0200_0000_0001_0031);
    }

    /// A fake register window: IOREGSEL selects one of 64 registers that
    /// live right after the window in the same buffer.
    #[test]
    fn programs_through_the_window() {
        // Word 0: IOREGSEL, word 4: IOWIN. A real window is a device; in
        // plain memory IOWIN just holds the last value, so check the
        // sequence of writes through a tiny state machine instead.
        let mut window = [0u32; 8];
        window[4] = 23 << 16; // version: 24 pins
        // SAFETY: `window` is 32 bytes, covering IOREGSEL and IOWIN.
        let io = unsafe { IoApic::new(window.as_mut_ptr() as usize, 24) };
        assert_eq!(io.pins(), 24);
        assert!(io.handles(24) && io.handles(47));
        assert!(!io.handles(23) && !io.handles(48));
        let e = Redirection {
            vector: 0x30,
            dest: 0,
            trigger: Trigger::Level,
            polarity: Polarity::High,
            masked: false,
        };
        assert!(!io.set(3, e));
        window[4] = 23 << 16;
        assert!(io.set(25, e));
        // The last write selected pin 1's low register and wrote the
        // unmasked low half.
        assert_eq!(window[0], 0x10 + 2);
        assert_eq!(window[4], e.bits() as u32);
    }
}
