//! virtio-net: a modern virtio-pci function (vendor 0x1af4, device 0x1041,
//! or the transitional 0x1000) with MSI-X, else a virtio-mmio slot of QEMU
//! `microvm` with its I/O APIC pin.

use hermit_drivers::pci;
use hermit_drivers::virtio::mmio;
use hermit_drivers::virtio::net::{self as vnet, RX_QUEUE, TX_QUEUE, VirtioNet};
use hermit_drivers::virtio::notify::{self, DirectNotify};
use virtio_drivers::transport::{DeviceType, SomeTransport};

use super::{NIC_VECTOR, OpenError};
use crate::virtio::KernelHal;

/// The model name (the ELF note's descriptor).
pub(super) const NAME: &str = "virtio-net";

/// The driver type.
pub(super) type Nic = VirtioNet<KernelHal, DirectNotify<SomeTransport<'static>>>;

/// virtio's "no MSI-X vector".
const NO_VECTOR: u16 = 0xffff;
/// GSI of microvm's first virtio-mmio slot (its second I/O APIC).
const MICROVM_MMIO_GSI_BASE: u32 = 24;

/// The virtio-mmio register block whose interrupt the handler acknowledges
/// (0: MSI-X, nothing to acknowledge).
static MMIO_ACK: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Acknowledges the card's interrupt.
pub(super) fn ack() {
    let base = MMIO_ACK.load(core::sync::atomic::Ordering::Acquire);
    if base != 0 {
        // SAFETY: `open` stored the identity-mapped register block of the
        // virtio-mmio device it found.
        unsafe { vnet::mmio_ack(base as *mut u8) };
    }
}

pub(super) fn open(apic_id: u8) -> Result<Nic, OpenError> {
    match open_pci(apic_id)? {
        Some(nic) => Ok(nic),
        None => open_mmio(apic_id),
    }
}

fn open_pci(apic_id: u8) -> Result<Option<Nic>, OpenError> {
    let bus = crate::pci::Bus::probe();
    let Some(function) = bus
        .scan()
        .into_iter()
        .find(|f| f.vendor == 0x1af4 && (f.device == 0x1041 || f.device == 0x1000) && f.endpoint)
    else {
        return Ok(None);
    };
    let enabled = bus.enable(&function).map_err(OpenError::Pci)?;
    let access = bus.access;
    let table = pci::msix_table(&access, &enabled).ok_or(OpenError::NoInterrupt)?;
    // SAFETY: the table lies in a BAR just assigned below 4 GiB, in the
    // identity map; entry 0 exists (table sizes are at least 1).
    unsafe {
        pci::enable_msix(
            &access,
            enabled.address,
            table.address as *mut u32,
            &[(0, apic_id, NIC_VECTOR)],
        )
    }
    .map_err(OpenError::Pci)?;
    let transport =
        vnet::pci_transport::<KernelHal, _>(access, &enabled).map_err(|_| OpenError::NotFound)?;
    let common = vnet::common_cfg_address(&access, &enabled).ok_or(OpenError::NoInterrupt)?;
    // SAFETY: the common configuration lies in an assigned BAR in the
    // identity map, and nothing else selects queues yet.
    let registers =
        unsafe { notify::pci_notify_registers(&access, &enabled, common as *mut u8, 2) };
    // SAFETY: the registers were read from this function's notification
    // capability and lie in its assigned BAR, mapped for the kernel's life.
    let transport = unsafe { DirectNotify::new(SomeTransport::from(transport), registers) };
    let nic =
        VirtioNet::new(transport).map_err(|_| OpenError::Driver("virtio-net did not start"))?;
    // SAFETY: the common configuration lies in an assigned BAR in the
    // identity map; the driver does not select queues after set-up.
    unsafe {
        vnet::route_queues(
            common as *mut u8,
            Some(NO_VECTOR),
            &[(RX_QUEUE, 0), (TX_QUEUE, NO_VECTOR)],
        )
    };
    log::info!("nic: virtio-net PCI at {:?}, MSI-X", enabled.address);
    Ok(Some(nic))
}

fn open_mmio(apic_id: u8) -> Result<Nic, OpenError> {
    for slot in 0..mmio::MICROVM_SLOTS {
        let base = mmio::MICROVM_BASE + (slot * mmio::MICROVM_SLOT_SIZE) as u64;
        // SAFETY: microvm's virtio-mmio slots are identity-mapped MMIO
        // (below 4 GiB); the host-files console uses another slot and
        // `find` only takes a network device.
        let Some(transport) =
            (unsafe { mmio::find(base, mmio::MICROVM_SLOT_SIZE, 1, DeviceType::Network) })
        else {
            continue;
        };
        // virtio-mmio notifies with one register write already.
        let nic = VirtioNet::new(DirectNotify::through(SomeTransport::from(transport)))
            .map_err(|_| OpenError::Driver("virtio-net did not start"))?;
        MMIO_ACK.store(base as usize, core::sync::atomic::Ordering::Release);
        super::route_gsi(MICROVM_MMIO_GSI_BASE + slot as u32, apic_id)?;
        log::info!("nic: virtio-net on virtio-mmio slot {slot}");
        return Ok(nic);
    }
    Err(OpenError::NotFound)
}

/// No address defaults of its own: the stack's apply.
pub(super) fn default_network() -> Option<super::NetDefaults> {
    None
}
