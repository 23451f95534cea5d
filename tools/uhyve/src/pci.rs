//! A minimal PCI bus: configuration mechanism #1 (ports `0xCF8` address,
//! `0xCFC..=0xCFF` data) in front of bus 0, which holds a host bridge at
//! 00.0 and optionally one device at [`NIC_SLOT`].
//!
//! Only type-0 headers, no bridges, no extended (PCIe) configuration space,
//! no I/O BARs. Every function's configuration space is a 256-byte
//! [`ConfigSpace`] with a per-byte write mask, so BAR sizing (write all ones,
//! read back the size mask) falls out of the mask.

use std::sync::{Arc, Mutex};

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The first configuration data port (`0xCFC..=0xCFF` address its bytes).
pub const CONFIG_DATA: u16 = 0xcfc;
/// Device number of the NIC on bus 0.
pub const NIC_SLOT: u8 = 1;

/// Offset of the command register.
pub const COMMAND: usize = 0x04;
/// Command bit: memory space decoding on.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command bit: the device may master the bus (DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command bit: legacy INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status bit: a capability list starts at offset `0x34`.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of BAR0.
pub const BAR0: usize = 0x10;
/// Offset of the capability pointer.
pub const CAP_POINTER: usize = 0x34;

/// One function's 256-byte configuration space.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    /// Bits the guest may change, per byte.
    wmask: [u8; 256],
}

impl ConfigSpace {
    /// A header with the given identity; everything else reads as zero and
    /// is read-only until [`ConfigSpace::set_writable`] says otherwise.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut s = Self {
            bytes: [0; 256],
            wmask: [0; 256],
        };
        s.set_u16(0x00, vendor);
        s.set_u16(0x02, device);
        s.set_u32(0x08, (class << 8) | u32::from(revision));
        s
    }

    /// Sets a byte (ignores the write mask; for the device model).
    pub fn set_u8(&mut self, off: usize, v: u8) {
        self.bytes[off] = v;
    }

    /// Sets a little-endian `u16` (ignores the write mask).
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Sets a little-endian `u32` (ignores the write mask).
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Lets the guest change `mask`'s bits of the `len` bytes at `off`
    /// (`mask` is little-endian, like the register).
    pub fn set_writable(&mut self, off: usize, len: usize, mask: u32) {
        for (i, b) in mask.to_le_bytes().iter().take(len).enumerate() {
            self.wmask[off + i] = *b;
        }
    }

    /// Reads a byte.
    pub fn u8(&self, off: usize) -> u8 {
        self.bytes[off]
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&self, off: usize) -> u32 {
        let b = &self.bytes[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A guest read of `data.len()` bytes at `off`; bytes beyond 256 read
    /// as all ones.
    pub fn read(&self, off: usize, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.bytes.get(off + i).copied().unwrap_or(0xff);
        }
    }

    /// A guest write: only the writable bits change.
    pub fn write(&mut self, off: usize, data: &[u8]) {
        for (i, d) in data.iter().enumerate() {
            let Some(m) = self.wmask.get(off + i).copied() else {
                break;
            };
            let b = &mut self.bytes[off + i];
            *b = (*b & !m) | (d & m);
        }
    }
}

/// A function on the bus that is not the host bridge.
pub trait PciDevice: Send + Sync {
    /// A guest read of its configuration space.
    fn config_read(&self, off: usize, data: &mut [u8]);
    /// A guest write to its configuration space.
    fn config_write(&self, off: usize, data: &[u8]);
}

/// Bus 0 behind the legacy configuration ports.
pub struct PciBus {
    /// The last value written to [`CONFIG_ADDRESS`].
    address: Mutex<u32>,
    host_bridge: ConfigSpace,
    nic: Option<Arc<dyn PciDevice>>,
}

impl PciBus {
    /// A bus with a host bridge and `nic` (if any) at 00:[`NIC_SLOT`].0.
    pub fn new(nic: Option<Arc<dyn PciDevice>>) -> Self {
        // Intel Q35 host bridge ids; nothing to configure on it.
        let host_bridge = ConfigSpace::new(0x8086, 0x29c0, 0x06_00_00, 0);
        Self {
            address: Mutex::new(0),
            host_bridge,
            nic,
        }
    }

    /// Whether `port` belongs to the configuration mechanism.
    pub fn owns_port(port: u16) -> bool {
        (CONFIG_ADDRESS..CONFIG_DATA + 4).contains(&port)
    }

    fn address(&self) -> u32 {
        *self.address.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decodes the address register for a data access at `port`: the
    /// selected function and register offset, if enabled and on bus 0.
    fn target(&self, port: u16) -> Option<(u8, u8, usize)> {
        let a = self.address();
        let enabled = a & (1 << 31) != 0;
        let bus = (a >> 16) as u8;
        if !enabled || bus != 0 {
            return None;
        }
        let device = ((a >> 11) & 0x1f) as u8;
        let function = ((a >> 8) & 0x7) as u8;
        let off = (a & 0xfc) as usize + usize::from(port - CONFIG_DATA);
        Some((device, function, off))
    }

    /// An `in` from one of the bus's ports.
    pub fn io_in(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if port == CONFIG_ADDRESS {
            if data.len() == 4 {
                data.copy_from_slice(&self.address().to_le_bytes());
            }
            return;
        }
        if port < CONFIG_DATA {
            return;
        }
        match self.target(port) {
            Some((0, 0, off)) => self.host_bridge.read(off, data),
            Some((NIC_SLOT, 0, off)) => {
                if let Some(nic) = &self.nic {
                    nic.config_read(off, data);
                }
            }
            _ => {}
        }
    }

    /// An `out` to one of the bus's ports.
    pub fn io_out(&self, port: u16, data: &[u8]) {
        if port == CONFIG_ADDRESS {
            if let Ok(v) = <[u8; 4]>::try_from(data) {
                *self.address.lock().unwrap_or_else(|e| e.into_inner()) = u32::from_le_bytes(v);
            }
            return;
        }
        if port < CONFIG_DATA {
            return;
        }
        if let Some((NIC_SLOT, 0, off)) = self.target(port)
            && let Some(nic) = &self.nic
        {
            nic.config_write(off, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Mutex<ConfigSpace>);

    impl PciDevice for Fake {
        fn config_read(&self, off: usize, data: &mut [u8]) {
            self.0.lock().unwrap().read(off, data);
        }
        fn config_write(&self, off: usize, data: &[u8]) {
            self.0.lock().unwrap().write(off, data);
        }
    }

    fn read(bus: &PciBus, dev: u8, off: u8) -> u32 {
        let addr = (1u32 << 31) | (u32::from(dev) << 11) | u32::from(off);
        bus.io_out(CONFIG_ADDRESS, &addr.to_le_bytes());
        let mut d = [0; 4];
        bus.io_in(CONFIG_DATA, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn enumeration_and_byte_access() {
        let mut cs = ConfigSpace::new(0x1af4, 0x1041, 0x02_00_00, 1);
        cs.set_writable(0x3c, 1, 0xff);
        let bus = PciBus::new(Some(Arc::new(Fake(Mutex::new(cs)))));
        assert_eq!(read(&bus, 0, 0), 0x29c0_8086);
        assert_eq!(read(&bus, 1, 0), 0x1041_1af4);
        assert_eq!(read(&bus, 1, 8), 0x0200_0001);
        // Address register reads back.
        let mut d = [0; 4];
        bus.io_in(CONFIG_ADDRESS, &mut d);
        assert_eq!(u32::from_le_bytes(d), (1 << 31) | (1 << 11) | 8);
        assert_eq!(read(&bus, 2, 0), 0xffff_ffff);
        // Byte write to the interrupt line through port 0xCFC + 0.
        let addr = (1u32 << 31) | (1 << 11) | 0x3c;
        bus.io_out(CONFIG_ADDRESS, &addr.to_le_bytes());
        bus.io_out(CONFIG_DATA, &[0x0b]);
        // Word read at byte offset 2 of the vendor register (port 0xCFE).
        bus.io_out(CONFIG_ADDRESS, &((1u32 << 31) | (1 << 11)).to_le_bytes());
        let mut w = [0; 2];
        bus.io_in(CONFIG_DATA + 2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1041);
        assert_eq!(read(&bus, 1, 0x3c) & 0xff, 0x0b);
        // Read-only registers ignore writes.
        bus.io_out(CONFIG_ADDRESS, &((1u32 << 31) | (1 << 11)).to_le_bytes());
        bus.io_out(CONFIG_DATA, &[0; 4]);
        assert_eq!(read(&bus, 1, 0), 0x1041_1af4);
        // Disabled address or another bus: all ones.
        bus.io_out(CONFIG_ADDRESS, &(1u32 << 11).to_le_bytes());
        let mut d = [0; 4];
        bus.io_in(CONFIG_DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
        bus.io_out(CONFIG_ADDRESS, &((1u32 << 31) | (1 << 16)).to_le_bytes());
        bus.io_in(CONFIG_DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn an_empty_bus_has_only_the_bridge() {
        let bus = PciBus::new(None);
        assert_eq!(read(&bus, 1, 0), 0xffff_ffff);
        assert_eq!(read(&bus, 0, 8) >> 8, 0x06_00_00);
        assert!(PciBus::owns_port(0xcf8) && PciBus::owns_port(0xcff));
        assert!(!PciBus::owns_port(0xcf7) && !PciBus::owns_port(0xd00));
    }
}
