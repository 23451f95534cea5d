//! Device drivers of the hermit kernel.
//!
//! Drivers are generic over `virtio_drivers::Hal`, which the kernel
//! implements (DMA memory, address translation), so this crate holds no
//! knowledge of the kernel's memory layout. What is portable (stream
//! buffering) is unit-tested on the host against a fake queue.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod nic;
pub mod pci;
pub mod rtl8139;
pub mod virtio;
