//! What every network card driver offers the kernel: its MAC address,
//! receive one frame, transmit one frame, acknowledge an interrupt.
//!
//! The kernel's `hermit::nic` wraps the one driver an image is built with
//! behind this shape, and the network stack consumes it from there.

/// Largest Ethernet frame of the standard 1500-byte MTU (no FCS, no VLAN
/// tag); a card may offer a larger MTU ([`Nic::mtu`]).
pub const MAX_FRAME: usize = 1514;

/// Why a frame could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Every transmit buffer is still owned by the card; try again later.
    Busy,
    /// The frame is longer than the card's MTU allows (or shorter than a
    /// header).
    BadLength(usize),
    /// The device reported an error.
    Device,
}

impl core::fmt::Display for TxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Busy => f.write_str("all transmit buffers are busy"),
            Self::BadLength(n) => write!(f, "a {n}-byte frame cannot be sent"),
            Self::Device => f.write_str("the network device reported an error"),
        }
    }
}

/// A network card.
pub trait Nic {
    /// The card's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Hands the next received frame to `f`; false when none is waiting.
    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool;
    /// Lets `f` fill a `len`-byte frame, then sends it.
    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError>;
    /// The IP MTU: frames are at most `mtu() + 14` bytes (1500 unless the
    /// card says otherwise).
    fn mtu(&self) -> usize {
        MAX_FRAME - 14
    }
    /// Acknowledges the card's interrupt (returns whether it had raised one).
    fn ack_interrupt(&mut self) -> bool;
}
