//! Device drivers of the hermit kernel.
//!
//! PCI enumeration and set-up ([`pci`]), network cards behind one [`nic::Nic`]
//! shape ([`rtl8139`], [`virtio::net`]), the virtio console stream and the
//! [`mmnif`] ring protocol between isles.
//! Hardware is reached through small traits the kernel implements
//! (configuration-space and port access, RTL8139 registers and DMA memory,
//! `virtio_drivers::Hal`), so this crate holds no knowledge of the kernel's
//! memory layout, and the host tests drive the drivers against fakes: a
//! configuration space that sizes BARs, an RTL8139 register model.
//! Not here: interrupt routing (the kernel's), other NICs, PCIe extended
//! capabilities.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod mmnif;
pub mod nic;
pub mod pci;
pub mod rtl8139;
pub mod virtio;
