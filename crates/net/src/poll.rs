//! `poll(2)` over the stack's sockets.

use core::ops::{BitAnd, BitOr, BitOrAssign};
use core::time::Duration;

use crate::Errno;
use crate::stack::{Entry, Inner, SocketId, Stack, Try};

/// Readiness bits, with Linux's `POLL*` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PollEvents(pub u16);

impl PollEvents {
    /// Data (or end of stream, or a connection to accept) can be read.
    pub const IN: Self = Self(0x001);
    /// Data can be written.
    pub const OUT: Self = Self(0x004);
    /// An error (connection reset or refused).
    pub const ERR: Self = Self(0x008);
    /// The connection is gone.
    pub const HUP: Self = Self(0x010);
    /// Not an open socket of this stack.
    pub const NVAL: Self = Self(0x020);

    /// No bits.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for PollEvents {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for PollEvents {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for PollEvents {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

/// One socket in a [`Stack::poll_sockets`] call, like `struct pollfd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollEntry {
    /// The socket.
    pub socket: SocketId,
    /// What the caller waits for (`ERR`, `HUP` and `NVAL` are always
    /// reported).
    pub events: PollEvents,
    /// What is ready, filled in by the call.
    pub revents: PollEvents,
}

impl PollEntry {
    /// An entry waiting for `events` on `socket`.
    pub const fn new(socket: SocketId, events: PollEvents) -> Self {
        Self {
            socket,
            events,
            revents: PollEvents::empty(),
        }
    }
}

fn events_of(inner: &Inner, id: SocketId) -> PollEvents {
    match inner.entry(id) {
        None => PollEvents::NVAL,
        #[cfg(feature = "tcp")]
        Some(Entry::Stream(e)) => crate::tcp::stream_events(inner, e),
        #[cfg(feature = "tcp")]
        Some(Entry::Listener(l)) => crate::tcp::listener_events(inner, l),
        #[cfg(feature = "udp")]
        Some(Entry::Udp(e)) => crate::udp::udp_events(inner, e),
    }
}

impl Stack {
    /// Waits until one of `fds` is ready or `timeout` passes (None:
    /// forever, zero: just check), like `poll(2)`; fills in `revents` and
    /// returns how many entries have some.
    pub fn poll_sockets(
        &self,
        fds: &mut [PollEntry],
        timeout: Option<Duration>,
    ) -> Result<usize, Errno> {
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        let result = self
            .shared
            .block(deadline, false, Errno::ETIMEDOUT, |inner, _| {
                let mut ready = 0;
                for fd in fds.iter_mut() {
                    let always = PollEvents::ERR | PollEvents::HUP | PollEvents::NVAL;
                    fd.revents = events_of(inner, fd.socket) & (fd.events | always);
                    if !fd.revents.is_empty() {
                        ready += 1;
                    }
                }
                if ready > 0 {
                    Try::Done(Ok(ready))
                } else {
                    Try::Pending
                }
            });
        match result {
            Err(Errno::ETIMEDOUT) => Ok(0),
            other => other,
        }
    }
}
