//! The network card: finding it, its interrupt, and frames in and out.
//!
//! The image picks one card model with a kernel feature: `virtio-net`
//! (virtio-pci with MSI-X, as uhyve and QEMU's `virtio-net-pci` offer, or
//! virtio-mmio on QEMU's plain `microvm`), `rtl8139` (PCI, legacy INTx
//! through the I/O APIC) or `mmnif` (the isles' shared-memory network,
//! woken by the isle doorbell). With `virtio-net` or `rtl8139` the image
//! carries an ELF note (`.note.hermit`, name "HERMIT", type
//! [`NOTE_TYPE_NIC`]) naming the model, so launchers know which device to
//! attach; an `mmnif` image has no such note, as it needs no device.
//!
//! Receiving is interrupt-driven: the interrupt handler acknowledges the
//! card, signals end-of-interrupt and calls the hook the network stack
//! registered with [`set_irq_hook`]; the stack then wakes its blocked
//! threads and drains frames with [`Device::receive`].
//!
//! Interrupt vectors: [`NIC_VECTOR`] (0x30) for the card (MSI-X entry 0,
//! MSI or its I/O APIC pin). The scheduler owns 0x20, 0x21 and 0xff.

use core::sync::atomic::{AtomicUsize, Ordering};

use hermit_drivers::nic::{Nic as _, TxError};
use hermit_interface::errno::Errno;

#[cfg(all(feature = "rtl8139", feature = "virtio-net"))]
compile_error!("features `rtl8139` and `virtio-net` exclude each other: pick one network card");
#[cfg(all(feature = "mmnif", any(feature = "rtl8139", feature = "virtio-net")))]
compile_error!("feature `mmnif` excludes `rtl8139` and `virtio-net`: pick one network card");

#[cfg(feature = "mmnif")]
#[path = "nic/mmnif.rs"]
mod model;
#[cfg(all(feature = "rtl8139", not(feature = "mmnif")))]
#[path = "nic/rtl8139.rs"]
mod model;
#[cfg(all(
    feature = "virtio-net",
    not(any(feature = "rtl8139", feature = "mmnif"))
))]
#[path = "nic/virtio.rs"]
mod model;

/// The IDT vector of the network card's interrupt.
pub const NIC_VECTOR: u8 = 0x30;

/// ELF note type of the "this image wants a NIC" note.
pub const NOTE_TYPE_NIC: u32 = 1;

/// Why [`open`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// No card of the image's model was found.
    NotFound,
    /// The card is already open.
    AlreadyOpen,
    /// Its PCI function could not be set up.
    Pci(hermit_drivers::pci::PciError),
    /// The driver could not start the card.
    Driver(&'static str),
    /// Its interrupt could not be routed.
    NoInterrupt,
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => write!(f, "no {} network card found", model::NAME),
            Self::AlreadyOpen => f.write_str("the network card is already open"),
            Self::Pci(e) => write!(f, "network card: {e}"),
            Self::Driver(what) => write!(f, "network card: {what}"),
            Self::NoInterrupt => f.write_str("network card: its interrupt cannot be routed"),
        }
    }
}

impl From<OpenError> for Errno {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::NotFound => Errno::ENODEV,
            OpenError::AlreadyOpen => Errno::EBUSY,
            _ => Errno::EIO,
        }
    }
}

/// The open network card.
pub struct Device {
    nic: model::Nic,
}

// The network stack keeps the device in a lock shared by its threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Device>();
};

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("model", &model::NAME)
            .field("mac", &self.mac())
            .finish()
    }
}

impl Device {
    /// The card's model: "virtio-net", "rtl8139" or "mmnif".
    pub fn model(&self) -> &'static str {
        model::NAME
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.nic.mac()
    }

    /// Hands the next received frame to `f`; false when none is waiting.
    pub fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        self.nic.receive(f)
    }

    /// The card's IP MTU (1500 unless the device offered a larger one).
    pub fn mtu(&self) -> usize {
        self.nic.mtu()
    }

    /// Lets `f` fill a `len`-byte Ethernet frame and sends it: `EAGAIN`
    /// when every transmit buffer is busy, `EINVAL` for a bad length, `EIO`
    /// when the card fails.
    pub fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), Errno> {
        self.nic.transmit(len, f).map_err(|e| match e {
            TxError::Busy => Errno::EAGAIN,
            TxError::BadLength(_) => Errno::EINVAL,
            TxError::Device => Errno::EIO,
        })
    }
}

/// Finds and starts the image's network card and routes its interrupt.
/// Only one [`Device`] exists; a second call fails with
/// [`OpenError::AlreadyOpen`].
pub fn open() -> Result<Device, OpenError> {
    static OPENED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if OPENED.swap(true, Ordering::AcqRel) {
        return Err(OpenError::AlreadyOpen);
    }
    // The local APIC is enabled when the scheduler starts: make sure it has
    // before the card may interrupt.
    crate::sched::yield_now();
    arch_x86_64::exception::set_interrupt_handler(NIC_VECTOR, nic_interrupt);
    let result = model::open(local_apic().id() as u8);
    if result.is_err() {
        OPENED.store(false, Ordering::Release);
    }
    let nic = result?;
    let dev = Device { nic };
    log::info!("nic: {} with MAC {:02x?}", model::NAME, dev.mac());
    Ok(dev)
}

/// Address defaults a card model brings (mmnif: the isle's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetDefaults {
    /// The interface's address.
    pub address: core::net::Ipv4Addr,
    /// The network prefix length.
    pub prefix_len: u8,
    /// The default route.
    pub gateway: core::net::Ipv4Addr,
}

/// The address, prefix and gateway the network stack uses unless
/// `HERMIT_IP` & co. say otherwise; `None`: the stack's own defaults.
pub fn default_network() -> Option<NetDefaults> {
    model::default_network()
}

/// The hook the network stack registered (a `fn()` as usize; 0: none).
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Registers `hook`, called from the card's interrupt handler (interrupts
/// off, on whichever core took the interrupt) after each interrupt: it
/// should only wake threads (e.g. `hermit::sync::futex::wake`), not
/// receive.
pub fn set_irq_hook(hook: fn()) {
    HOOK.store(hook as usize, Ordering::Release);
}

fn local_apic() -> arch_x86_64::apic::LocalApic {
    // SAFETY: every supported platform (uhyve, QEMU microvm) gives each CPU a
    // local APIC in xAPIC mode at the architectural address, identity-mapped.
    unsafe { arch_x86_64::apic::LocalApic::new() }
}

/// Interrupts taken, for diagnostics.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// How many card interrupts the kernel has taken.
pub fn interrupt_count() -> usize {
    INTERRUPTS.load(Ordering::Relaxed)
}

extern "x86-interrupt" fn nic_interrupt(_frame: x86_64::structures::idt::InterruptStackFrame) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    // A level-triggered line must be quiet before the end-of-interrupt, or
    // it fires again at once.
    model::ack();
    local_apic().eoi();
    call_hook();
}

/// Calls the stack's hook, if it registered one (interrupt context or a
/// kernel thread).
fn call_hook() {
    let hook = HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_irq_hook` stores non-zero values, and it
        // stores a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
}

/// Routes I/O APIC pin `gsi` (level-triggered, active high, as QEMU wires
/// PCI INTx and virtio-mmio) to [`NIC_VECTOR`] on local APIC `apic_id`.
#[allow(dead_code, reason = "not every model routes through the I/O APIC")]
fn route_gsi(gsi: u32, apic_id: u8) -> Result<(), OpenError> {
    use arch_x86_64::ioapic::{IoApic, Polarity, Redirection, Trigger};
    let madt = crate::pci::madt_interrupts();
    let io = madt
        .ioapics
        .iter()
        .map(|io| {
            // SAFETY: the MADT names this as an I/O APIC window; it lies
            // below 4 GiB in the identity map and only this module
            // programs I/O APICs (at open time, one thread).
            unsafe { IoApic::new(io.address as usize, io.gsi_base) }
        })
        .find(|io| io.handles(gsi))
        .ok_or(OpenError::NoInterrupt)?;
    let entry = Redirection {
        vector: NIC_VECTOR,
        dest: apic_id,
        trigger: Trigger::Level,
        polarity: Polarity::High,
        masked: false,
    };
    log::info!("nic: GSI {gsi} -> vector {NIC_VECTOR:#x} on APIC {apic_id}");
    io.set(gsi, entry)
        .then_some(())
        .ok_or(OpenError::NoInterrupt)
}

// The note launchers read (see `hermit_loader::Image::nic_model`): namesz
// 7 ("HERMIT\0"), descsz = model length, type 1.
#[cfg(feature = "virtio-net")]
core::arch::global_asm!(
    ".pushsection .note.hermit,\"a\",@note",
    ".balign 4",
    ".long 7",
    ".long 10",
    ".long 1",
    ".asciz \"HERMIT\"",
    ".balign 4",
    ".ascii \"virtio-net\"",
    ".balign 4",
    ".popsection",
);
#[cfg(feature = "rtl8139")]
core::arch::global_asm!(
    ".pushsection .note.hermit,\"a\",@note",
    ".balign 4",
    ".long 7",
    ".long 7",
    ".long 1",
    ".asciz \"HERMIT\"",
    ".balign 4",
    ".ascii \"rtl8139\"",
    ".balign 4",
    ".popsection",
);
