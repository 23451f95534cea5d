//! The kernel's portable network stack: one [`Stack`] (a smoltcp
//! `Interface` and `SocketSet` behind a spin lock) over a [`Nic`], with a
//! blocking, file-descriptor-friendly socket API: [`TcpListener`],
//! [`TcpStream`] and [`UdpSocket`] are identified by a small [`SocketId`],
//! report failures as Linux [`Errno`]s and support non-blocking mode,
//! timeouts and [`Stack::poll_sockets`] (like `poll(2)`).
//!
//! The crate touches no hardware and no scheduler: the kernel implements
//! [`Nic`] for its drivers and [`Platform`] (clock, block/wake, entropy) for
//! its threads; the host tests wire two stacks through an in-memory Ethernet
//! and use std threads.
//!
//! Blocking calls follow one pattern: read the stack's event counter, lock,
//! poll smoltcp, try the operation, unlock, and if it would block wait on the
//! counter until an interrupt ([`Stack::notify_irq`]) or another thread's poll
//! changes it, or until smoltcp's next timer or the call's deadline. Someone
//! must still poll when no thread is blocked (TCP retransmissions, delayed
//! ACKs): the kernel runs [`Stack::poll_wait`] in a loop on a network thread.
//!
//! It is not a full BSD socket layer: IPv4 only, one interface, no socket
//! options beyond timeouts, non-blocking mode and `TCP_NODELAY`, no
//! `SO_REUSEADDR` (a port is free again once its last socket is gone), no
//! urgent data, no multicast. A listener's backlog is a set of smoltcp
//! sockets listening on the port; SYNs beyond it are dropped (the peer
//! retries), as Linux does when its accept queue is full. Errors the
//! [`Errno`] type lacks are mapped to the nearest one it has (see
//! `EMSGSIZE`/`EDESTADDRREQ` notes on the UDP calls).
//!
//! Cargo features: `tcp`, `udp` (default), `dhcpv4`, `dns`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(not(any(feature = "tcp", feature = "udp")))]
compile_error!("hermit-net needs at least one of the features `tcp` and `udp`");

mod config;
mod device;
mod stack;

#[cfg(feature = "dns")]
mod dns;
mod poll;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(feature = "udp")]
mod udp;

use core::sync::atomic::AtomicU32;

pub use config::{Config, ConfigError};
pub use core::net::{Ipv4Addr, SocketAddrV4};
pub use core::time::Duration;
pub use hermit_interface::errno::Errno;
pub use poll::{PollEntry, PollEvents};
pub use stack::{SocketId, Stack};
#[cfg(feature = "tcp")]
pub use tcp::{Shutdown, TcpListener, TcpStream};
#[cfg(feature = "udp")]
pub use udp::UdpSocket;

/// A network card. Implemented by the kernel for RTL8139 / virtio-net /
/// mmnif, and by tests with an in-memory wire.
pub trait Nic: Send {
    /// The card's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The IP MTU; Ethernet frames are up to `mtu() + 14` bytes.
    fn mtu(&self) -> usize {
        1500
    }

    /// Hands the next received frame to `f`; false if none is waiting.
    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool;

    /// Whether [`Nic::transmit`] would currently accept a frame. The stack
    /// asks before building one, so a full ring delays packets instead of
    /// dropping them.
    fn can_transmit(&self) -> bool {
        true
    }

    /// Fills a frame of `len` bytes through `f` and sends it;
    /// `Err(Errno::EAGAIN)` when the transmit ring is full (then `f` is not
    /// called).
    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), Errno>;
}

/// What the stack needs from the kernel (the tests implement it with
/// `std::sync::{Mutex, Condvar}` and `Instant`).
pub trait Platform: Send + Sync {
    /// A monotonic clock in microseconds.
    fn now_micros(&self) -> u64;

    /// Blocks the calling thread until `counter` no longer holds `seen` or
    /// the deadline (µs, [`Platform::now_micros`] clock) passes, like a
    /// futex wait on `counter`. Spurious returns are fine.
    fn wait(&self, counter: &AtomicU32, seen: u32, deadline: Option<u64>);

    /// Wakes every thread in [`Platform::wait`] on `counter` (called after
    /// the counter was changed). Must not block: it may run in an interrupt
    /// handler.
    fn wake_all(&self, counter: &AtomicU32);

    /// Random bits, for smoltcp's seed, ephemeral ports and the DHCP xid.
    fn random_u64(&self) -> u64;

    /// Called while spinning for the stack's lock; a scheduler may yield.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}
