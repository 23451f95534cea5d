//! Finding virtio-mmio devices.
//!
//! QEMU's `microvm` machine has a fixed array of virtio-mmio slots; a slot
//! without a device reads device ID 0, which the transport rejects.

use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

/// Guest-physical address of QEMU `microvm`'s first virtio-mmio slot.
pub const MICROVM_BASE: u64 = 0xfeb0_0000;
/// Size of one slot.
pub const MICROVM_SLOT_SIZE: usize = 0x200;
/// Number of slots.
pub const MICROVM_SLOTS: usize = 24;

/// The first device of type `kind` among `slots` virtio-mmio slots of
/// `slot_size` bytes starting at `base`.
///
/// # Safety
/// `[base, base + slots * slot_size)` must be virtio-mmio register space (or
/// unbacked MMIO that reads zero), mapped at the same virtual address, and
/// not used by anyone else for the lifetime of the returned transport.
pub unsafe fn find(
    base: u64,
    slot_size: usize,
    slots: usize,
    kind: DeviceType,
) -> Option<MmioTransport<'static>> {
    (0..slots).find_map(|i| {
        let addr = base + (i * slot_size) as u64;
        let header = NonNull::new(addr as *mut VirtIOHeader)?;
        // SAFETY: the caller guarantees the slot is virtio-mmio space, mapped
        // and unshared; the transport checks magic, version and device ID.
        let transport = unsafe { MmioTransport::new(header, slot_size) }.ok()?;
        (transport.device_type() == kind).then_some(transport)
    })
}
