//! `sys_poll` over files, the console and sockets.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

#[cfg(feature = "net")]
use crate::abi::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::abi::{POLLNVAL, nfds_t, pollfd};
use crate::fd::{MAX_FDS, Object};
use crate::syscalls::{Syscalls, ret};
use crate::{Errno, user};

/// How often a `poll` that waits for a non-socket object (the console)
/// looks again.
const SLICE: Duration = Duration::from_millis(10);

/// A socket entry of one `poll` round: its index in the caller's array and
/// the stack's entry.
#[cfg(feature = "net")]
type SocketEntry = (usize, hermit_net::PollEntry);

#[cfg(feature = "net")]
fn to_net(events: i16) -> hermit_net::PollEvents {
    use hermit_net::PollEvents;
    let mut ev = PollEvents::empty();
    if events & (POLLIN | POLLRDNORM) != 0 {
        ev |= PollEvents::IN;
    }
    if events & (POLLOUT | POLLWRNORM) != 0 {
        ev |= PollEvents::OUT;
    }
    ev
}

#[cfg(feature = "net")]
fn from_net(ready: hermit_net::PollEvents, events: i16) -> i16 {
    use crate::abi::{POLLERR, POLLHUP};
    use hermit_net::PollEvents;
    let mut out = 0;
    if ready.contains(PollEvents::IN) {
        out |= events & (POLLIN | POLLRDNORM);
    }
    if ready.contains(PollEvents::OUT) {
        out |= events & (POLLOUT | POLLWRNORM);
    }
    if ready.contains(PollEvents::ERR) {
        out |= POLLERR;
    }
    if ready.contains(PollEvents::HUP) {
        out |= POLLHUP;
    }
    if ready.contains(PollEvents::NVAL) {
        out |= POLLNVAL;
    }
    out
}

impl Syscalls<'_> {
    /// `sys_poll`: waits until one of `fds` is ready or `timeout`
    /// milliseconds pass (negative: forever, 0: just check); the number of
    /// entries with `revents`, 0 on timeout, or `-errno` (`EINVAL` if
    /// `nfds` exceeds the descriptor limit).
    ///
    /// # Safety
    /// `fds` points to `nfds` writable, aligned `pollfd`s.
    pub unsafe fn poll(&self, fds: *mut pollfd, nfds: nfds_t, timeout: i32) -> i32 {
        let result = (|| {
            if nfds > MAX_FDS {
                return Err(Errno::EINVAL);
            }
            // SAFETY: forwarded contract.
            let entries = unsafe { user::array_mut(fds, nfds) }?;
            let timeout = u64::try_from(timeout).ok().map(Duration::from_millis);
            let n = self.poll_entries(entries, timeout)?;
            i32::try_from(n).map_err(|_| Errno::EINVAL)
        })();
        ret(result)
    }

    /// The safe core of [`poll`](Self::poll) (`None`: wait forever).
    pub fn poll_entries(
        &self,
        entries: &mut [pollfd],
        timeout: Option<Duration>,
    ) -> Result<usize, Errno> {
        let clock = self.clock();
        let deadline = timeout.map(|t| clock.now().saturating_add(t));
        // Holding the objects keeps sockets (and their ids) alive.
        let objects: Vec<Option<Arc<dyn Object>>> = entries
            .iter()
            .map(|p| {
                if p.fd < 0 {
                    None
                } else {
                    self.fds().object(p.fd).ok()
                }
            })
            .collect();
        loop {
            let mut ready = 0;
            let mut waiting_elsewhere = false;
            #[cfg(feature = "net")]
            let mut sockets: Vec<SocketEntry> = Vec::new();
            for (i, (p, object)) in entries.iter_mut().zip(&objects).enumerate() {
                p.revents = 0;
                if p.fd < 0 {
                    continue;
                }
                let Some(object) = object else {
                    p.revents = POLLNVAL;
                    ready += 1;
                    continue;
                };
                #[cfg(feature = "net")]
                if let Some(id) = object.as_socket().and_then(|s| s.poll_id()) {
                    sockets.push((i, hermit_net::PollEntry::new(id, to_net(p.events))));
                    continue;
                }
                let _ = i;
                p.revents = object.poll(p.events);
                if p.revents != 0 {
                    ready += 1;
                } else if p.events != 0 {
                    waiting_elsewhere = true;
                }
            }
            let remaining = deadline.map(|d| d.saturating_sub(clock.now()));
            #[cfg(feature = "net")]
            if !sockets.is_empty() {
                let wait = if ready > 0 {
                    Some(Duration::ZERO)
                } else if waiting_elsewhere {
                    Some(remaining.map_or(SLICE, |r| r.min(SLICE)))
                } else {
                    remaining
                };
                let stack = self.stack()?;
                let mut net: Vec<hermit_net::PollEntry> = sockets.iter().map(|s| s.1).collect();
                stack.poll_sockets(&mut net, wait)?;
                for ((i, _), e) in sockets.iter().zip(&net) {
                    let p = &mut entries[*i];
                    p.revents = from_net(e.revents, p.events);
                    if p.revents != 0 {
                        ready += 1;
                    }
                }
                if ready > 0 || remaining.is_some_and(|r| r.is_zero()) {
                    return Ok(ready);
                }
                continue;
            }
            if ready > 0 || remaining.is_some_and(|r| r.is_zero()) {
                return Ok(ready);
            }
            // Only the socket path above needs to know.
            let _ = waiting_elsewhere;
            clock.sleep(remaining.map_or(SLICE, |r| r.min(SLICE)));
        }
    }
}
