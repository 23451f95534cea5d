use super::*;
use core::cell::{Cell, RefCell};
use std::vec;

/// One fake function: 64 registers; BAR slots with a size mask answer
/// all-ones probes like hardware (read-only low bits kept).
#[derive(Clone)]
struct FakeFn {
    address: PciAddress,
    regs: [u32; 64],
    /// Writable bits of each BAR slot (0: unimplemented).
    bar_masks: [u32; 6],
}

impl FakeFn {
    fn new(bus: u8, dev: u8, func: u8, vendor: u16, device: u16) -> Self {
        let mut regs = [0u32; 64];
        regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        regs[2] = 0x0200_0000; // network controller, ethernet
        Self {
            address: PciAddress::new(0, bus, dev, func),
            regs,
            bar_masks: [0; 6],
        }
    }

    /// BAR `slot`: `flags` in the low bits, `size` bytes.
    fn bar(mut self, slot: usize, flags: u32, size: u64) -> Self {
        self.regs[4 + slot] = flags;
        let mask = !(size - 1);
        self.bar_masks[slot] = mask as u32 & !if flags & 1 == 1 { 3 } else { 0xf };
        if flags & 0b110 == 0b100 {
            self.bar_masks[slot + 1] = (mask >> 32) as u32;
        }
        self
    }

    fn cap(mut self, offset: usize, words: &[u32]) -> Self {
        self.regs[1] |= 1 << 20; // status: capability list
        // Chain onto the end of the existing list.
        let mut ptr_reg = 0x34 / 4;
        let mut shift = 0;
        loop {
            let next = (self.regs[ptr_reg] >> shift) & 0xfc;
            if next == 0 {
                break;
            }
            ptr_reg = next as usize / 4;
            shift = 8;
        }
        self.regs[ptr_reg] |= (offset as u32) << shift;
        for (i, w) in words.iter().enumerate() {
            self.regs[offset / 4 + i] = *w;
        }
        self
    }
}

#[derive(Default)]
struct FakeBus {
    fns: RefCell<Vec<FakeFn>>,
}

impl FakeBus {
    fn with(fns: Vec<FakeFn>) -> Self {
        Self {
            fns: RefCell::new(fns),
        }
    }

    fn reg(&self, address: PciAddress, offset: u16) -> u32 {
        self.fns
            .borrow()
            .iter()
            .find(|f| f.address == address)
            .map_or(u32::MAX, |f| f.regs[usize::from(offset / 4)])
    }
}

impl ConfigAccess for FakeBus {
    fn read(&self, address: PciAddress, offset: u16) -> u32 {
        self.reg(address, offset)
    }

    fn write(&self, address: PciAddress, offset: u16, value: u32) {
        let mut fns = self.fns.borrow_mut();
        let Some(f) = fns.iter_mut().find(|f| f.address == address) else {
            return;
        };
        let i = usize::from(offset / 4);
        match i {
            0 | 2 | 3 => {} // read-only
            4..=9 => {
                let mask = f.bar_masks[i - 4];
                let ro = f.regs[i] & !mask;
                let ro = if mask == 0 { f.regs[i] } else { ro };
                f.regs[i] = (value & mask) | ro;
            }
            _ => f.regs[i] = value,
        }
    }
}

impl ConfigAccess for &FakeBus {
    fn read(&self, address: PciAddress, offset: u16) -> u32 {
        (**self).read(address, offset)
    }
    fn write(&self, address: PciAddress, offset: u16, value: u32) {
        (**self).write(address, offset, value)
    }
}

fn rtl() -> FakeFn {
    FakeFn::new(0, 3, 0, 0x10ec, 0x8139)
        .bar(0, 1, 256)
        .bar(1, 0, 256)
}

fn virtio() -> FakeFn {
    // BAR0 32-bit MMIO 16 KiB, BAR4 64-bit MMIO 16 KiB; MSI-X with 3
    // entries, table in BAR0 at 0x1000.
    FakeFn::new(0, 2, 0, 0x1af4, 0x1041)
        .bar(0, 0, 0x4000)
        .bar(4, 0b100, 0x4000)
        .cap(0x40, &[0x0002_0011, 0x1000, 0x1800])
}

#[test]
fn scan_lists_functions() {
    let mut bridge = FakeFn::new(0, 5, 0, 0x8086, 0x1234);
    bridge.regs[3] = 1 << 16; // header type 1
    bridge.regs[6] = 0x0000_0100; // secondary bus 1
    let behind = FakeFn::new(1, 0, 0, 0x1af4, 0x1000);
    let mut multi = FakeFn::new(0, 7, 0, 0x1111, 0x2222);
    multi.regs[3] = 0x80 << 16;
    let second = FakeFn::new(0, 7, 3, 0x1111, 0x3333);
    let bus = FakeBus::with(vec![rtl(), virtio(), bridge, behind, multi, second]);
    let found = scan(&bus);
    let ids: Vec<(u8, u8, u8, u16)> = found
        .iter()
        .map(|f| {
            (
                f.address.bus(),
                f.address.device(),
                f.address.function(),
                f.device,
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (0, 2, 0, 0x1041),
            (0, 3, 0, 0x8139),
            (0, 5, 0, 0x1234),
            (0, 7, 0, 0x2222),
            (0, 7, 3, 0x3333),
            (1, 0, 0, 0x1000)
        ]
    );
    assert_eq!(found[1].vendor, 0x10ec);
    assert_eq!((found[1].class, found[1].subclass), (2, 0));
    assert!(found[1].endpoint);
    assert!(!found[2].endpoint);
}

#[test]
fn bars_are_sized_and_assigned() {
    let bus = FakeBus::with(vec![rtl(), virtio()]);
    let windows = Windows {
        mmio: 0xc000_0000..0xc001_0000,
        io: 0x1000..0x2000,
    };
    let mut alloc = BarAllocator::new(&windows);
    let addr = PciAddress::new(0, 0, 3, 0);
    let e = enable(&bus, addr, Some(&mut alloc)).unwrap();
    assert_eq!(
        e.bars[0],
        Some(Bar {
            kind: BarKind::Io,
            address: 0x1000,
            size: 256
        })
    );
    assert_eq!(
        e.bars[1],
        Some(Bar {
            kind: BarKind::Mem32,
            address: 0xc000_0000,
            size: 256
        })
    );
    assert_eq!(e.bars[2], None);
    // Written back, flag bits kept.
    assert_eq!(bus.read(addr, 0x10), 0x1001);
    assert_eq!(bus.read(addr, 0x14), 0xc000_0000);
    // Decoding and bus mastering on.
    assert_eq!(bus.read(addr, 4) & 7, 7);

    let vaddr = PciAddress::new(0, 0, 2, 0);
    let v = enable(&bus, vaddr, Some(&mut alloc)).unwrap();
    let bar0 = v.bars[0].unwrap();
    assert_eq!((bar0.kind, bar0.size), (BarKind::Mem32, 0x4000));
    assert_eq!(bar0.address % 0x4000, 0, "naturally aligned");
    let bar4 = v.bars[4].unwrap();
    assert_eq!(bar4.kind, BarKind::Mem64);
    assert_eq!(v.bars[5], None, "upper half of a 64-bit BAR");
    assert_ne!(bar0.address, bar4.address);
    assert_eq!(bus.read(vaddr, 0x20), bar4.address as u32 | 0b100);

    // The window is now full.
    let mut small = BarAllocator::new(&Windows {
        mmio: 0xc000_0000..0xc000_1000,
        io: 0..0,
    });
    let bus2 = FakeBus::with(vec![virtio()]);
    assert_eq!(
        enable(&bus2, vaddr, Some(&mut small)),
        Err(PciError::WindowFull {
            slot: 0,
            size: 0x4000
        })
    );
    // No I/O window at all: the port BAR stays unassigned, I/O decoding off.
    let bus3 = FakeBus::with(vec![rtl()]);
    let mut no_io = BarAllocator::new(&Windows::MICROVM);
    let e = enable(&bus3, addr, Some(&mut no_io)).unwrap();
    assert_eq!(e.bars[0].unwrap().address, 0);
    assert_eq!(e.bars[1].unwrap().address, 0xc000_0000);
    assert_eq!(bus3.read(addr, 4) & 7, 6, "memory and bus master only");
    assert_eq!(
        enable(&bus3, PciAddress::new(0, 0, 9, 0), None),
        Err(PciError::NoFunction)
    );
}

#[test]
fn assigned_bars_are_kept() {
    let mut f = rtl();
    f.regs[4] = 0xc001;
    f.regs[5] = 0xfebf_1000;
    let bus = FakeBus::with(vec![f]);
    let mut alloc = BarAllocator::new(&Windows::MICROVM);
    let e = enable(&bus, PciAddress::new(0, 0, 3, 0), Some(&mut alloc)).unwrap();
    assert_eq!(e.bars[0].unwrap().address, 0xc000);
    assert_eq!(e.bars[1].unwrap().address, 0xfebf_1000);
}

#[test]
fn msix_entries_are_programmed() {
    let bus = FakeBus::with(vec![virtio()]);
    let addr = PciAddress::new(0, 0, 2, 0);
    let mut alloc = BarAllocator::new(&Windows::MICROVM);
    let e = enable(&bus, addr, Some(&mut alloc)).unwrap();
    let t = msix_table(&bus, &e).unwrap();
    assert_eq!(t.entries, 3);
    assert_eq!(t.address, e.bars[0].unwrap().address + 0x1000);
    let mut table = [0xffff_ffffu32; 12];
    // SAFETY: `table` holds three 16-byte entries.
    unsafe {
        enable_msix(
            &bus,
            addr,
            table.as_mut_ptr(),
            &[(0, 0, 0x30), (2, 3, 0x31)],
        )
    }
    .unwrap();
    assert_eq!(&table[0..4], &[0xfee0_0000, 0, 0x30, 0]);
    assert_eq!(&table[4..8], &[0xffff_ffff; 4], "entry 1 untouched");
    assert_eq!(&table[8..12], &[0xfee0_3000, 0, 0x31, 0]);
    let control = bus.read(addr, 0x40);
    assert_eq!(control >> 30, 0b10, "enabled, function unmasked");
    assert_ne!(bus.read(addr, 4) & (1 << 10), 0, "INTx off");
    // SAFETY: as above; index 3 is rejected before any write.
    let bad = unsafe { enable_msix(&bus, addr, table.as_mut_ptr(), &[(3, 0, 0x30)]) };
    assert_eq!(bad, Err(PciError::NoMsix));
    assert_eq!(enable_msi(&bus, addr, 0, 0x30), Err(PciError::NoMsi));
}

#[test]
fn msi_and_intx() {
    let mut f = rtl().cap(0x50, &[0x0000_0005, 0, 0, 0]);
    f.regs[15] = 0x0000_010b; // pin A, line 11
    let bus = FakeBus::with(vec![f]);
    let addr = PciAddress::new(0, 0, 3, 0);
    assert_eq!(intx(&bus, addr), (1, 11));
    enable_msi(&bus, addr, 1, 0x32).unwrap();
    assert_eq!(bus.read(addr, 0x54), 0xfee0_1000);
    assert_eq!(bus.read(addr, 0x58) & 0xffff, 0x32);
    assert_ne!(bus.read(addr, 0x50) & (1 << 16), 0, "MSI enabled");
    set_intx(&bus, addr, true);
    assert_eq!(bus.read(addr, 4) & (1 << 10), 0);
    assert_eq!(swizzled_gsi(16, 1, 1), 17);
    assert_eq!(swizzled_gsi(16, 3, 2), 16);
}

/// Port I/O that records the address latch and answers from a bus.
struct FakePorts<'a> {
    bus: &'a FakeBus,
    latch: Cell<u32>,
}

impl PortIo for &FakePorts<'_> {
    fn read32(&self, port: u16) -> u32 {
        assert_eq!(port, CONFIG_DATA_PORT);
        let a = self.latch.get();
        assert_ne!(a & 0x8000_0000, 0, "enable bit");
        let addr = PciAddress::new(
            0,
            (a >> 16) as u8,
            ((a >> 11) & 31) as u8,
            ((a >> 8) & 7) as u8,
        );
        self.bus.read(addr, (a & 0xfc) as u16)
    }

    fn write32(&self, port: u16, value: u32) {
        if port == CONFIG_ADDRESS_PORT {
            self.latch.set(value);
        } else {
            let a = self.latch.get();
            let addr = PciAddress::new(
                0,
                (a >> 16) as u8,
                ((a >> 11) & 31) as u8,
                ((a >> 8) & 7) as u8,
            );
            self.bus.write(addr, (a & 0xfc) as u16, value);
        }
    }
}

#[test]
fn legacy_mechanism() {
    let bus = FakeBus::with(vec![virtio()]);
    let ports = FakePorts {
        bus: &bus,
        latch: Cell::new(0),
    };
    let cfg = LegacyConfig::new(&ports);
    assert_eq!(
        LegacyConfig::<&FakePorts<'_>>::address_word(PciAddress::new(0, 1, 2, 3), 0x3e),
        0x8001_133c
    );
    let found = scan(&cfg);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].device, 0x1041);
    assert_eq!(
        cfg.read(found[0].address, 0x100),
        u32::MAX,
        "no extended space"
    );
    let mut alloc = BarAllocator::new(&Windows::MICROVM);
    let e = enable(&cfg, found[0].address, Some(&mut alloc)).unwrap();
    assert_eq!(e.bars[0].unwrap().address, 0xc000_0000);
}

#[test]
fn ecam_addresses() {
    let mut space = vec![0u32; (2 << 20) / 4];
    let base = space.as_mut_ptr() as usize;
    // SAFETY: `space` covers two buses and outlives `ecam`.
    let ecam = unsafe { EcamConfig::new(base, 2) };
    let a = PciAddress::new(0, 1, 2, 3);
    ecam.write(a, 0x104, 0xabcd);
    let index = ((1 << 20) | (2 << 15) | (3 << 12) | 0x104) / 4;
    assert_eq!(space[index], 0xabcd);
    assert_eq!(ecam.read(a, 0x104), 0xabcd);
    assert_eq!(ecam.read(PciAddress::new(0, 2, 0, 0), 0), u32::MAX);
}
