//! A tap device ([`hermit_tap::Tap`]) as the NIC's [`Backend`].

use std::io;
use std::os::fd::{AsRawFd as _, RawFd};

pub use hermit_tap::{Tap, TapError};

use crate::net::Backend;

impl Backend for Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        Tap::send(self, frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Tap::recv(self, buf)
    }

    fn ready_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}
