//! virtio devices: discovery on virtio-mmio and the console stream.

pub mod console;
pub mod mmio;
pub mod net;
pub mod notify;
