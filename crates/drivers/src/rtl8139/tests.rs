//! The driver against a register-level model of the card: the model owns
//! the receive write pointer and the transmit descriptors and reads and
//! writes "physical" memory, which here is the test's own heap.

use super::*;
use core::cell::{Cell, RefCell};
use std::vec;
use std::vec::Vec;

/// Heap DMA: physical address = low 32 bits of the virtual one is not
/// guaranteed, so the model maps phys back through a table.
struct FakeDma {
    regions: RefCell<Vec<(Vec<u8>, u32)>>,
    next_phys: Cell<u32>,
    fail: bool,
}

impl FakeDma {
    fn new() -> Self {
        Self {
            regions: RefCell::new(Vec::new()),
            next_phys: Cell::new(0x10_0000),
            fail: false,
        }
    }

    /// The host pointer for card-visible address `phys`.
    fn ptr(&self, phys: u32) -> *mut u8 {
        let mut regions = self.regions.borrow_mut();
        for (buf, base) in regions.iter_mut() {
            if phys >= *base && ((phys - *base) as usize) < buf.len() {
                // SAFETY: in bounds of `buf` (checked above).
                return unsafe { buf.as_mut_ptr().add((phys - *base) as usize) };
            }
        }
        panic!("card touched unmapped physical address {phys:#x}");
    }
}

// SAFETY: regions are zeroed Vecs kept alive by the fake (never moved: the
// outer Vec holds them by value but their heap buffers do not move), used
// only by the driver and the model.
unsafe impl Dma for FakeDma {
    fn alloc(&self, size: usize) -> Option<DmaRegion> {
        if self.fail {
            return None;
        }
        let mut buf = vec![0u8; size];
        let virt = buf.as_mut_ptr();
        let phys = self.next_phys.get();
        self.next_phys
            .set(phys + (size as u32).next_multiple_of(4096));
        self.regions.borrow_mut().push((buf, phys));
        Some(DmaRegion {
            virt,
            phys,
            len: size,
        })
    }
}

/// The card model.
struct Model<'a> {
    dma: &'a FakeDma,
    mac: [u8; 6],
    cr: Cell<u8>,
    imr: Cell<u16>,
    isr: Cell<u16>,
    rcr: Cell<u32>,
    rbstart: Cell<u32>,
    /// Card write offset into the ring.
    cbr: Cell<usize>,
    /// Driver read offset (CAPR + 16).
    read_ptr: Cell<usize>,
    tsd: [Cell<u32>; 4],
    tsad: [Cell<u32>; 4],
    /// Frames the card sent.
    sent: RefCell<Vec<Vec<u8>>>,
    /// Whether a written TSD starts transmission at once.
    tx_instant: bool,
}

impl<'a> Model<'a> {
    fn new(dma: &'a FakeDma) -> Self {
        Self {
            dma,
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            cr: Cell::new(0),
            imr: Cell::new(0),
            isr: Cell::new(0),
            rcr: Cell::new(0),
            rbstart: Cell::new(0),
            cbr: Cell::new(0),
            read_ptr: Cell::new(0),
            tsd: [const { Cell::new(Tsd::OWN.bits()) }; 4],
            tsad: [const { Cell::new(0) }; 4],
            sent: RefCell::new(Vec::new()),
            tx_instant: true,
        }
    }

    fn free_space(&self) -> usize {
        let used = (self.cbr.get() + RX_RING - self.read_ptr.get()) % RX_RING;
        RX_RING - used
    }

    /// Delivers `frame` like the card: header, data, CRC, 4-byte aligned,
    /// written past the ring's end (WRAP) and the offset taken modulo 8K.
    /// Returns false on overflow.
    fn deliver(&self, frame: &[u8]) -> bool {
        assert_ne!(self.cr.get() & Cr::RE.bits(), 0, "receiver enabled");
        assert_ne!(self.rcr.get() & Rcr::WRAP.bits(), 0);
        let len = frame.len() + 4;
        let total = (4 + len).next_multiple_of(4);
        if total + 16 >= self.free_space() {
            self.isr.set(self.isr.get() | Int::RXOVW.bits());
            return false;
        }
        let at = self.cbr.get();
        let base = self.dma.ptr(self.rbstart.get());
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&RxStatus::ROK.bits().to_le_bytes());
        bytes.extend_from_slice(&(len as u16).to_le_bytes());
        bytes.extend_from_slice(frame);
        bytes.extend_from_slice(&[0xcc; 4]); // CRC
        assert!(at + bytes.len() <= RX_BUFFER, "frame runs past the buffer");
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: within the RX_BUFFER-byte region (asserted above).
            unsafe { base.add(at + i).write(*b) };
        }
        self.cbr.set((at + total) % RX_RING);
        self.isr.set(self.isr.get() | Int::ROK.bits());
        true
    }

    fn run_tx(&self, i: usize) {
        let v = self.tsd[i].get();
        let size = (v & 0x1fff) as usize;
        let src = self.dma.ptr(self.tsad[i].get());
        // SAFETY: the driver's transmit buffer holds at least `size` bytes.
        let frame = unsafe { core::slice::from_raw_parts(src, size) }.to_vec();
        self.sent.borrow_mut().push(frame);
        self.tsd[i].set(v | Tsd::OWN.bits() | Tsd::TOK.bits());
        self.isr.set(self.isr.get() | Int::TOK.bits());
    }
}

impl Registers for &Model<'_> {
    fn read8(&self, offset: u16) -> u8 {
        match offset {
            0..=5 => self.mac[usize::from(offset)],
            reg::CR => {
                let empty = self.cbr.get() == self.read_ptr.get();
                self.cr.get() | if empty { Cr::BUFE.bits() } else { 0 }
            }
            _ => 0,
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        match offset {
            reg::ISR => self.isr.get(),
            reg::IMR => self.imr.get(),
            reg::CBR => self.cbr.get() as u16,
            reg::CAPR => ((self.read_ptr.get() + RX_RING - 16) % RX_RING) as u16,
            _ => 0,
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        match offset {
            0x10..=0x1c => self.tsd[usize::from(offset - 0x10) / 4].get(),
            reg::RCR => self.rcr.get(),
            _ => 0,
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        if offset == reg::CR {
            // Reset completes at once and clears the ring state.
            if value & Cr::RST.bits() != 0 {
                self.cbr.set(0);
                self.read_ptr.set(0);
                self.cr.set(0);
            } else {
                self.cr.set(value & (Cr::RE | Cr::TE).bits());
            }
        }
    }

    fn write16(&self, offset: u16, value: u16) {
        match offset {
            reg::IMR => self.imr.set(value),
            reg::ISR => self.isr.set(self.isr.get() & !value),
            reg::CAPR => self.read_ptr.set((usize::from(value) + 16) % RX_RING),
            _ => {}
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        match offset {
            0x10..=0x1c => {
                let i = usize::from(offset - 0x10) / 4;
                assert_ne!(self.cr.get() & Cr::TE.bits(), 0, "transmitter enabled");
                assert_ne!(self.tsd[i].get() & Tsd::OWN.bits(), 0, "driver owned it");
                self.tsd[i].set(value & !Tsd::OWN.bits());
                if self.tx_instant {
                    self.run_tx(i);
                }
            }
            0x20..=0x2c => self.tsad[usize::from(offset - 0x20) / 4].set(value),
            reg::RBSTART => self.rbstart.set(value),
            reg::RCR => self.rcr.set(value),
            _ => {}
        }
    }
}

fn frame(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i + n) as u8).collect()
}

fn recv_all(nic: &mut Rtl8139<&Model<'_>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while nic.receive(&mut |f| out.push(f.to_vec())) {}
    out
}

#[test]
fn init_programs_the_card() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let nic = Rtl8139::new(&model, &dma).unwrap();
    assert_eq!(nic.mac(), model.mac);
    assert_eq!(model.imr.get(), IMR_BITS.bits());
    let rcr = Rcr::from_bits_retain(model.rcr.get());
    assert!(rcr.contains(Rcr::AB | Rcr::APM | Rcr::AM | Rcr::WRAP));
    assert!(!rcr.contains(Rcr::AAP), "not promiscuous");
    assert_eq!(model.cr.get(), (Cr::RE | Cr::TE).bits());
    assert_ne!(model.rbstart.get(), 0);
    assert_eq!(model.read_ptr.get(), 0);
    let tsads: Vec<u32> = model.tsad.iter().map(Cell::get).collect();
    assert!(tsads.iter().all(|&a| a != 0 && a != model.rbstart.get()));

    let mut failing = FakeDma::new();
    failing.fail = true;
    let m2 = Model::new(&failing);
    assert!(matches!(
        Rtl8139::new(&m2, &failing),
        Err(InitError::NoMemory)
    ));
}

#[test]
fn receives_frames_in_order_and_acks() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    assert!(!nic.receive(&mut |_| panic!("nothing arrived")));
    for n in 0..3 {
        assert!(model.deliver(&frame(n, 60 + n * 7)));
    }
    assert!(nic.ack_interrupt());
    assert_eq!(model.isr.get(), 0, "ISR cleared by writing the bits back");
    assert!(!nic.ack_interrupt());
    // After one frame CAPR (+16) points at the next header: 4-byte header,
    // 60 bytes, 4 CRC bytes.
    let mut first = Vec::new();
    assert!(nic.receive(&mut |f| first = f.to_vec()));
    assert_eq!(first, frame(0, 60));
    assert_eq!(model.read_ptr.get(), 68);
    assert_eq!((&model).read16(reg::CAPR), 68 - 16);
    let got = recv_all(&mut nic);
    assert_eq!(got, vec![frame(1, 67), frame(2, 74)]);
    assert_eq!(model.read_ptr.get(), model.cbr.get(), "CAPR caught up");
}

#[test]
fn ring_wraps_around() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    // Full-size frames, drained in small batches, many times round.
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for n in 0..40 {
        let f = frame(n, MAX_FRAME - (n % 5) * 3);
        assert!(model.deliver(&f), "frame {n}");
        expected.push(f);
        if n % 3 == 2 {
            got.extend(recv_all(&mut nic));
        }
    }
    got.extend(recv_all(&mut nic));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "frames intact across the wrap");
}

#[test]
fn burst_until_overflow_then_recovers() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    let mut delivered = 0;
    while model.deliver(&frame(delivered, 1000)) {
        delivered += 1;
    }
    assert!(delivered >= 6, "an 8 KiB ring holds several frames");
    assert!(Int::from_bits_retain(model.isr.get()).contains(Int::RXOVW));
    nic.ack_interrupt();
    let got = recv_all(&mut nic);
    assert_eq!(got.len(), delivered);
    assert!(model.deliver(&frame(99, 200)), "room again");
    assert_eq!(recv_all(&mut nic), vec![frame(99, 200)]);
}

#[test]
fn bad_header_resynchronises() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    assert!(model.deliver(&frame(1, 100)));
    // Corrupt the status word of the first header.
    let base = dma.ptr(model.rbstart.get());
    // SAFETY: offset 0 lies in the receive buffer.
    unsafe { base.write(0) };
    assert!(!nic.receive(&mut |_| panic!("a bad frame is not delivered")));
    assert_eq!(model.read_ptr.get(), model.cbr.get());
    assert!(model.deliver(&frame(2, 100)));
    assert_eq!(recv_all(&mut nic), vec![frame(2, 100)]);
}

#[test]
fn transmits_round_robin_and_pads() {
    let dma = FakeDma::new();
    let model = Model::new(&dma);
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    for n in 0..6 {
        let f = frame(n, 42 + n);
        nic.transmit(f.len(), &mut |buf| buf.copy_from_slice(&f))
            .unwrap();
    }
    let sent = model.sent.borrow();
    assert_eq!(sent.len(), 6);
    assert_eq!(sent[0].len(), 60, "padded to the minimum");
    assert_eq!(&sent[0][..42], &frame(0, 42)[..]);
    assert!(sent[0][42..].iter().all(|&b| b == 0));
    let tsads: Vec<u32> = model.tsad.iter().map(Cell::get).collect();
    assert_eq!(tsads.len(), 4);
    assert_eq!(nic.transmit(10, &mut |_| {}), Err(TxError::BadLength(10)));
    assert_eq!(
        nic.transmit(MAX_FRAME + 1, &mut |_| {}),
        Err(TxError::BadLength(MAX_FRAME + 1))
    );
}

#[test]
fn busy_descriptor_is_reported() {
    let dma = FakeDma::new();
    let mut model = Model::new(&dma);
    model.tx_instant = false;
    let mut nic = Rtl8139::new(&model, &dma).unwrap();
    for n in 0..4 {
        nic.transmit(60, &mut |b| b.fill(n)).unwrap();
    }
    assert_eq!(nic.transmit(60, &mut |_| {}), Err(TxError::Busy));
    model.run_tx(0);
    nic.transmit(60, &mut |b| b.fill(9)).unwrap();
    assert_eq!(model.sent.borrow().len(), 1);
}
