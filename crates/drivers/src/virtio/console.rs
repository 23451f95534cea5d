//! A reliable byte stream over port 0 of a virtio console.
//!
//! The kernel uses it as the channel to the proxy under QEMU (the host side
//! is a socket the proxy holds), so unlike a terminal driver it moves whole
//! buffers: a send is one descriptor chain of up to [`TX_PARTS`] buffers, and
//! receiving posts one large buffer that the device fills with as many bytes
//! as the host has sent.

use alloc::boxed::Box;
use alloc::vec;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::{Error, Hal};

/// virtio-console receive queue of port 0.
const RX_QUEUE: u16 = 0;
/// virtio-console transmit queue of port 0.
const TX_QUEUE: u16 = 1;
/// Most buffers one send may chain.
pub const TX_PARTS: usize = 4;
/// Size of the receive buffer: how many bytes one device round trip can
/// deliver.
pub const RX_BUFFER: usize = 64 * 1024;
/// Largest single transmit descriptor; longer buffers are sent in pieces.
const TX_CHUNK: usize = 64 * 1024;
bitflags::bitflags! {
    /// The device features this driver asks for.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    struct Features: u64 {
        /// `VIRTIO_F_VERSION_1`: a modern (non-legacy) device.
        const VERSION_1 = 1 << 32;
    }
}

/// A byte stream over a virtio console's first port.
pub struct ConsoleStream<H: Hal, T: Transport> {
    transport: T,
    rx: VirtQueue<H, 2>,
    tx: VirtQueue<H, TX_PARTS>,
    rx_buf: Box<[u8]>,
    /// Token of the posted receive buffer while the device owns it.
    rx_token: Option<u16>,
    /// Unread bytes of `rx_buf`: `rx_buf[start..end]`.
    start: usize,
    end: usize,
}

impl<H: Hal, T: Transport> ConsoleStream<H, T> {
    /// Initialises the device behind `transport` and posts the receive
    /// buffer.
    pub fn new(mut transport: T) -> Result<Self, Error> {
        let _features = transport.begin_init(Features::VERSION_1);
        let rx = VirtQueue::new(&mut transport, RX_QUEUE, false, false)?;
        let tx = VirtQueue::new(&mut transport, TX_QUEUE, false, false)?;
        transport.finish_init();
        let mut stream = Self {
            transport,
            rx,
            tx,
            rx_buf: vec![0; RX_BUFFER].into_boxed_slice(),
            rx_token: None,
            start: 0,
            end: 0,
        };
        stream.post_rx()?;
        Ok(stream)
    }

    fn post_rx(&mut self) -> Result<(), Error> {
        if self.rx_token.is_some() {
            return Ok(());
        }
        // SAFETY: `rx_buf` is owned by `self` and not touched (read or
        // moved: it is boxed) until `pop_used` returns it in `poll_rx`.
        let token = unsafe { self.rx.add(&[], &mut [&mut self.rx_buf[..]])? };
        self.rx_token = Some(token);
        if self.rx.should_notify() {
            self.transport.notify(RX_QUEUE);
        }
        Ok(())
    }

    /// Takes the receive buffer back if the device filled it; returns
    /// whether new bytes arrived.
    fn poll_rx(&mut self) -> Result<bool, Error> {
        let Some(token) = self.rx_token else {
            return Ok(false);
        };
        if self.rx.peek_used() != Some(token) {
            return Ok(false);
        }
        // SAFETY: the same single buffer that `post_rx` added with `token`.
        let len = unsafe { self.rx.pop_used(token, &[], &mut [&mut self.rx_buf[..]])? };
        self.rx_token = None;
        self.start = 0;
        self.end = (len as usize).min(self.rx_buf.len());
        Ok(true)
    }

    /// Sends the concatenation of `parts` (empty parts are skipped).
    pub fn write_all(&mut self, parts: &[&[u8]]) -> Result<(), Error> {
        let mut chain: [&[u8]; TX_PARTS] = [&[]; TX_PARTS];
        let mut n = 0;
        for part in parts {
            for piece in part.chunks(TX_CHUNK) {
                if n == TX_PARTS {
                    self.tx
                        .add_notify_wait_pop(&chain[..n], &mut [], &mut self.transport)?;
                    n = 0;
                }
                chain[n] = piece;
                n += 1;
            }
        }
        if n > 0 {
            self.tx
                .add_notify_wait_pop(&chain[..n], &mut [], &mut self.transport)?;
        }
        Ok(())
    }

    /// Fills `out` completely, calling `idle` between polls while no bytes
    /// have arrived (to yield the CPU).
    pub fn read_exact(&mut self, out: &mut [u8], mut idle: impl FnMut()) -> Result<(), Error> {
        let mut done = 0;
        while done < out.len() {
            if self.start < self.end {
                let n = (self.end - self.start).min(out.len() - done);
                out[done..done + n].copy_from_slice(&self.rx_buf[self.start..self.start + n]);
                self.start += n;
                done += n;
                continue;
            }
            self.post_rx()?;
            if !self.poll_rx()? {
                idle();
            }
        }
        Ok(())
    }
}
