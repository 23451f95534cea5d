//! Queue notifications without the common-configuration round trip.
//!
//! `virtio-drivers`' PCI transport notifies a queue by selecting it in the
//! common configuration and reading its `queue_notify_off` every time,
//! then writing the notify register: three MMIO accesses, two of which a
//! hypervisor serves in its userspace (on this project's development host,
//! tens of microseconds each), for one that KVM serves in the kernel
//! (an ioeventfd). [`DirectNotify`] wraps any transport and writes the
//! notify registers it was given directly, once per notify, as virtio
//! allows (the offsets are fixed once read); every other call goes to the
//! wrapped transport, except that it negotiates no event indices (see
//! [`DirectNotify`]'s `begin_init`) and can ask for features
//! `virtio-drivers` does not ([`ExtraFeatures`]).

use core::fmt::Debug;
use core::ops::BitAnd;

use virtio_drivers::Result;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::net::{
    COMMON_QUEUE_NOTIFY_OFF, COMMON_QUEUE_SELECT, VIRTIO_PCI_CAP_NOTIFY_CFG, virtio_capability,
};
use crate::pci::{ConfigAccess, Enabled};

/// The `VIRTIO_F_RING_EVENT_IDX` feature bit, which [`DirectNotify`] does
/// not negotiate.
const RING_EVENT_IDX: u64 = 1 << 29;
/// Queues a [`DirectNotify`] can know the registers of.
pub const MAX_QUEUES: usize = 4;

/// A transport whose notifies of known queues are single register writes.
#[derive(Debug)]
pub struct DirectNotify<T> {
    inner: T,
    /// Notify register address per queue (0: unknown, notify through
    /// `inner`).
    registers: [u64; MAX_QUEUES],
    /// Feature bits asked for on top of the driver's.
    extra: u64,
}

/// A transport that can negotiate feature bits the `virtio-drivers` device
/// driver does not know, for a driver built on it that handles them (such
/// as virtio-net's `MTU`, which only needs a configuration field read).
pub trait ExtraFeatures {
    /// Asks for `bits` too at the next feature negotiation; the device
    /// grants those it offers.
    fn request_features(&mut self, bits: u64);
}

impl<T> ExtraFeatures for DirectNotify<T> {
    fn request_features(&mut self, bits: u64) {
        self.extra |= bits;
    }
}

impl<T: Transport> DirectNotify<T> {
    /// Wraps `inner`, notifying queue `q` by a 16-bit write of `q` to
    /// `registers[q]` where that is not 0.
    ///
    /// # Safety
    /// Every non-zero entry must be the mapped, identity-addressed notify
    /// register of that queue of the device `inner` drives, valid for as
    /// long as the result lives.
    pub unsafe fn new(inner: T, registers: [u64; MAX_QUEUES]) -> Self {
        Self {
            inner,
            registers,
            extra: 0,
        }
    }

    /// Wraps `inner` and notifies every queue through it.
    pub fn through(inner: T) -> Self {
        Self {
            inner,
            registers: [0; MAX_QUEUES],
            extra: 0,
        }
    }
}

impl<T: Transport> Transport for DirectNotify<T> {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        match self.registers.get(usize::from(queue)) {
            Some(&register) if register != 0 => {
                // SAFETY: `new`'s contract: the queue's mapped notify
                // register, 16-bit aligned (virtio requires it).
                unsafe { (register as *mut u16).write_volatile(queue) }
            }
            _ => self.inner.notify(queue),
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status);
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size);
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: virtio_drivers::PhysAddr,
        driver_area: virtio_drivers::PhysAddr,
        device_area: virtio_drivers::PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }

    fn begin_init<F: bitflags::Flags<Bits = u64> + BitAnd<Output = F> + Debug>(
        &mut self,
        supported_features: F,
    ) -> F {
        // Without RING_EVENT_IDX: `virtio-drivers` 0.13 decides to notify
        // by `avail_idx >= avail_event + 1`, not the spec's wrap-aware test,
        // so once past the device's event index it notifies every buffer,
        // and a device cannot switch notifies off. The ring flags
        // (VRING_USED_F_NO_NOTIFY) it honours exactly.
        // Extra bits the feature type does not define are dropped here.
        let supported =
            F::from_bits_truncate((supported_features.bits() & !RING_EVENT_IDX) | self.extra);
        self.inner.begin_init(supported)
    }

    fn finish_init(&mut self) {
        self.inner.finish_init();
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<()> {
        self.inner.write_config_space(offset, value)
    }
}

/// The notify register addresses of queues `0..queues` of an enabled
/// virtio-pci function whose common configuration is at `common` (see
/// [`super::net::common_cfg_address`]); 0 for queues beyond `queues` or
/// when the function has no usable notification capability.
///
/// # Safety
/// `common` must point to the mapped common configuration structure of
/// that function, which nothing else is selecting queues on right now.
pub unsafe fn pci_notify_registers(
    access: &impl ConfigAccess,
    function: &Enabled,
    common: *mut u8,
    queues: u16,
) -> [u64; MAX_QUEUES] {
    let mut registers = [0; MAX_QUEUES];
    let Some((base, multiplier)) = notify_capability(access, function) else {
        return registers;
    };
    for (queue, register) in (0..queues).zip(registers.iter_mut()) {
        // SAFETY: the caller's contract; both fields are 16-bit aligned
        // inside the structure.
        let offset = unsafe {
            common
                .add(COMMON_QUEUE_SELECT)
                .cast::<u16>()
                .write_volatile(queue);
            common
                .add(COMMON_QUEUE_NOTIFY_OFF)
                .cast::<u16>()
                .read_volatile()
        };
        *register = notify_register(base, multiplier, offset);
    }
    registers
}

/// Where queue notify offset `offset` lands: `base + offset * multiplier`
/// (virtio 1.x, 4.1.4.4), or 0 if that overflows or is not 16-bit aligned.
fn notify_register(base: u64, multiplier: u32, offset: u16) -> u64 {
    u64::from(offset)
        .checked_mul(u64::from(multiplier))
        .and_then(|o| base.checked_add(o))
        .filter(|a| a % 2 == 0)
        .unwrap_or(0)
}

/// The notification capability's region (BAR address + offset) and its
/// `notify_off_multiplier` (at byte 16, so the capability is at least 20
/// bytes long).
fn notify_capability(access: &impl ConfigAccess, function: &Enabled) -> Option<(u64, u32)> {
    let (ptr, region) = virtio_capability(access, function, VIRTIO_PCI_CAP_NOTIFY_CFG, 20)?;
    Some((region, access.read(function.address, ptr + 16)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_drivers::PhysAddr;

    /// Counts the notifies that reach it and records the features the
    /// driver wrote; offers `offered`.
    #[derive(Default)]
    struct Counting {
        notified: [u32; MAX_QUEUES],
        offered: u64,
        written: u64,
    }

    impl Transport for Counting {
        fn device_type(&self) -> DeviceType {
            DeviceType::Network
        }
        fn read_device_features(&mut self) -> u64 {
            self.offered
        }
        fn write_driver_features(&mut self, features: u64) {
            self.written = features;
        }
        fn max_queue_size(&mut self, _: u16) -> u32 {
            16
        }
        fn notify(&mut self, queue: u16) {
            self.notified[usize::from(queue)] += 1;
        }
        fn get_status(&self) -> DeviceStatus {
            DeviceStatus::empty()
        }
        fn set_status(&mut self, _: DeviceStatus) {}
        fn set_guest_page_size(&mut self, _: u32) {}
        fn requires_legacy_layout(&self) -> bool {
            false
        }
        fn queue_set(&mut self, _: u16, _: u32, _: PhysAddr, _: PhysAddr, _: PhysAddr) {}
        fn queue_unset(&mut self, _: u16) {}
        fn queue_used(&mut self, _: u16) -> bool {
            false
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            InterruptStatus::empty()
        }
        fn read_config_generation(&self) -> u32 {
            0
        }
        fn read_config_space<V: FromBytes + IntoBytes>(&self, _: usize) -> Result<V> {
            Err(virtio_drivers::Error::Unsupported)
        }
        fn write_config_space<V: IntoBytes + Immutable>(&mut self, _: usize, _: V) -> Result<()> {
            Err(virtio_drivers::Error::Unsupported)
        }
    }

    #[test]
    fn known_queues_write_their_register_and_others_go_through() {
        let mut registers = [0u16; 2];
        let base = registers.as_mut_ptr() as u64;
        // SAFETY: both entries point into `registers`, which outlives `t`.
        let mut t = unsafe { DirectNotify::new(Counting::default(), [base, base + 2, 0, 0]) };
        t.notify(1);
        t.notify(0);
        t.notify(2);
        t.notify(3);
        assert_eq!(registers, [0, 1]);
        assert_eq!(t.inner.notified, [0, 0, 1, 1]);
        let mut plain = DirectNotify::through(Counting::default());
        plain.notify(0);
        plain.notify(1);
        assert_eq!(plain.inner.notified, [1, 1, 0, 0]);
    }

    #[test]
    fn extra_features_are_negotiated_when_offered_and_event_idx_never() {
        bitflags::bitflags! {
            /// The bits of `virtio-drivers`' (private) net features used here.
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            struct Features: u64 {
                const MTU = 1 << 3;
                const MAC = 1 << 5;
                const RING_EVENT_IDX = 1 << 29;
            }
        }
        let offered = (Features::MAC | Features::MTU | Features::RING_EVENT_IDX).bits();
        let wanted = Features::MAC | Features::RING_EVENT_IDX;
        let mut t = DirectNotify::through(Counting {
            offered,
            ..Default::default()
        });
        assert_eq!(t.begin_init(wanted), Features::MAC);
        t.request_features(Features::MTU.bits());
        assert_eq!(t.begin_init(wanted), Features::MAC | Features::MTU);
        assert_eq!(t.inner.written, (Features::MAC | Features::MTU).bits());
        // Not offered: not negotiated.
        t.inner.offered = Features::MAC.bits();
        assert_eq!(t.begin_init(wanted), Features::MAC);
    }

    #[test]
    fn registers_follow_the_multiplier() {
        assert_eq!(notify_register(0xc000_3000, 4, 0), 0xc000_3000);
        assert_eq!(notify_register(0xc000_3000, 4, 1), 0xc000_3004);
        // QEMU's multiplier is 4 too; 0 puts every queue on one register.
        assert_eq!(notify_register(0xc000_3000, 0, 7), 0xc000_3000);
        // Unaligned or overflowing offsets fall back to the slow path.
        assert_eq!(notify_register(0xc000_3000, 1, 1), 0);
        assert_eq!(notify_register(u64::MAX - 1, 2, 1), 0);
    }
}
