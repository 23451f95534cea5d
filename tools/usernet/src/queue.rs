//! The two bounded frame queues between the caller (the virtual NIC) and the
//! worker thread, each paired with an eventfd that is readable exactly while
//! its queue is non-empty (or, for the worker, when it has something to look at).

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sys::EventFd;

/// Frames waiting in either direction before new ones are dropped.
pub(crate) const QUEUE_FRAMES: usize = 1024;

/// State shared by [`crate::UserNet`] and its worker.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Guest → network frames, consumed by the worker.
    to_net: Mutex<VecDeque<Vec<u8>>>,
    /// Network → guest frames, consumed by `recv`.
    to_guest: Mutex<VecDeque<Vec<u8>>>,
    /// Wakes the worker: new guest frames, room in `to_guest`, or stop.
    pub(crate) wake: EventFd,
    /// Readable while `to_guest` is non-empty.
    pub(crate) ready: EventFd,
    /// Asks the worker to exit.
    pub(crate) stop: AtomicBool,
    /// Frames dropped because a queue was full or the frame was unusable.
    pub(crate) dropped: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            to_net: Mutex::new(VecDeque::new()),
            to_guest: Mutex::new(VecDeque::new()),
            wake: EventFd::new()?,
            ready: EventFd::new()?,
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a guest frame for the worker; drops it when the queue is full,
    /// as a NIC with a full ring would.
    pub(crate) fn push_to_net(&self, frame: Vec<u8>) {
        let mut q = lock(&self.to_net);
        if q.len() >= QUEUE_FRAMES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(frame);
        if q.len() == 1 {
            self.wake.signal();
        }
    }

    /// Takes up to `max` guest frames.
    pub(crate) fn take_to_net(&self, max: usize, out: &mut VecDeque<Vec<u8>>) {
        let mut q = lock(&self.to_net);
        let n = q.len().min(max);
        out.extend(q.drain(..n));
    }

    /// Whether guest frames are still waiting for the worker.
    pub(crate) fn to_net_pending(&self) -> bool {
        !lock(&self.to_net).is_empty()
    }

    /// Whether the guest queue has room for another frame.
    pub(crate) fn guest_has_room(&self) -> bool {
        lock(&self.to_guest).len() < QUEUE_FRAMES
    }

    /// Queues a frame for the guest; returns false (and drops it) when full.
    pub(crate) fn push_to_guest(&self, frame: Vec<u8>) -> bool {
        let mut q = lock(&self.to_guest);
        if q.len() >= QUEUE_FRAMES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.push_back(frame);
        if q.len() == 1 {
            self.ready.signal();
        }
        true
    }

    /// Pops the next guest frame into `buf`.
    pub(crate) fn pop_to_guest(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut q = lock(&self.to_guest);
        let was_full = q.len() >= QUEUE_FRAMES;
        let Some(frame) = q.pop_front() else {
            self.ready.drain();
            return Ok(None);
        };
        if q.is_empty() {
            self.ready.drain();
        }
        drop(q);
        if was_full {
            // The worker stops reading host sockets while the guest queue is full.
            self.wake.signal();
        }
        let have = buf.len();
        let dst = buf.get_mut(..frame.len()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "usernet: receive buffer of {} bytes is too small for a {}-byte frame (frame dropped)",
                    have,
                    frame.len()
                ),
            )
        })?;
        dst.copy_from_slice(&frame);
        Ok(Some(frame.len()))
    }
}

/// Locks `m`, ignoring poisoning: the queues hold plain frames that stay
/// consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
