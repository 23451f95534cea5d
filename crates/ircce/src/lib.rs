//! iRCCE for isles: the RCCE/iRCCE message-passing model between units of
//! execution (UEs, one per isle or per thread) that share one memory region.
//!
//! [`Ircce::init`] attaches to a region (formatting its versioned header if
//! it is empty, refusing it cleanly if another process formatted it with a
//! different layout) and claims this UE's rank. Then: one-sided
//! [`put`](Ircce::put)/[`get`](Ircce::get) into any UE's message-passing
//! buffer, user [flags](Ircce::flag_write), blocking
//! [`send`](Ircce::send)/[`recv`](Ircce::recv) of any size, non-blocking
//! [`isend`](Ircce::isend)/[`irecv`](Ircce::irecv) returning a [`Request`]
//! with `test`/`wait` and a [`WaitList`], and the collectives
//! [`barrier`](Ircce::barrier), [`bcast`](Ircce::bcast),
//! [`reduce`](Ircce::reduce) and [`allreduce`](Ircce::allreduce).
//!
//! Messages go through one double-buffered slot per (source, destination)
//! pair, like RCCE's pipelined protocol: the sender copies chunk `k` into
//! half `k % 2` and bumps a counter in the receiver's flag line, the receiver
//! copies it out and bumps an acknowledgement counter in the sender's flag
//! line. Every UE polls only flags in its own lines, each flag has one
//! writer, and counters never need resetting. A waiter spins a while, then
//! sets its `sleeping` flag and waits for a doorbell ([`Notify`]); writers
//! ring only sleeping UEs.
//!
//! Memory is reached only through the [`Region`] trait, so the protocol code
//! has no unsafe code and never holds a reference into memory another VM
//! writes; [`MappedRegion`] (the one unsafe module) implements it over raw
//! shared memory for the kernel and host programs, and the host tests run
//! UEs as threads over an [`AtomicRegion`].
//!
//! ```
//! use hermit_ircce::{AtomicRegion, Config, Ircce, PollNotify, WaitList};
//!
//! let region = AtomicRegion::new(1 << 20);
//! let config = Config::new(2);
//! // Two UEs in one thread here; normally one per isle or thread.
//! let a = Ircce::init(&region, PollNotify, 0, config)?;
//! let b = Ircce::init(&region, PollNotify, 1, config)?;
//! let mut got = [0u8; 5];
//! let mut list = WaitList::new();
//! list.add(a.isend(b"hello", 1)?);
//! list.add(b.irecv(&mut got, 0)?);
//! list.wait_all()?;
//! drop(list);
//! assert_eq!(&got, b"hello");
//! # Ok::<(), hermit_ircce::Error>(())
//! ```
//!
//! Not here: the hypervisor's doorbells (the kernel implements
//! [`Notify`] over them), recovery of a UE that
//! died mid-message (its channels stay stuck; the header and other pairs are
//! unaffected), timeouts on blocking operations, and RCCE's power management
//! and non-power-of-two tuned collectives.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
// Unsafe code only in `raw` (pointers into shared memory), nowhere else.
#![deny(unsafe_code)]

extern crate alloc;

mod collective;
pub mod header;
mod layout;
pub mod notify;
mod raw;
pub mod region;
mod request;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::cell::Cell;
use core::time::Duration;

pub use collective::{Element, ReduceOp};
pub use header::HeaderError;
pub use layout::{Config, LINE, MAX_UES};
pub use notify::{Notify, PollNotify};
pub use raw::MappedRegion;
pub use region::{AtomicRegion, Region, RegionError, SubRegion};
pub use request::{Request, WaitList};

use layout::{CHUNK_HEADER, Layout};

/// Magic of an iRCCE region header ("iRCE").
pub const MAGIC: u32 = u32::from_le_bytes(*b"iRCE");
/// Layout version this build speaks.
pub const VERSION: u32 = 1;

/// Longest single doorbell wait (bounds the cost of a lost race).
const SLEEP_STEP: Duration = Duration::from_millis(1);

/// Everything that can go wrong in iRCCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The region's header is incompatible or the region too small.
    #[error("shared region refused: {0}")]
    Header(#[from] HeaderError),
    /// Number of UEs outside `1..=MAX_UES`.
    #[error("{0} UEs is not in 1..=65536")]
    UeCount(u32),
    /// Channels so small a source's slot cannot hold a chunk.
    #[error("channel size {channel_size} is too small for {ues} UEs (256 bytes per UE at least)")]
    ChannelTooSmall {
        /// Configured channel bytes per UE.
        channel_size: u32,
        /// Configured UEs.
        ues: u32,
    },
    /// A rank outside `0..num_ues()`.
    #[error("UE {rank} does not exist ({ues} UEs)")]
    NoSuchUe {
        /// The rank asked for.
        rank: usize,
        /// Number of UEs.
        ues: usize,
    },
    /// Another UE already claimed this rank in the region.
    #[error("UE rank {0} is already in use in this region")]
    RankInUse(usize),
    /// A put/get outside the MPB.
    #[error("MPB access {offset:#x}+{len:#x} exceeds the {mpb_size:#x}-byte MPB")]
    MpbBounds {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// MPB size.
        mpb_size: usize,
    },
    /// A flag index beyond the configured number of flags.
    #[error("flag {flag} does not exist ({flags} flags per UE)")]
    NoSuchFlag {
        /// Flag asked for.
        flag: usize,
        /// Configured flags.
        flags: usize,
    },
    /// The received message had another size than the receive buffer; the
    /// message was consumed and as much as fits was copied.
    #[error("message from UE {peer} has {sent} bytes, the receive buffer {expected}")]
    SizeMismatch {
        /// Sender.
        peer: usize,
        /// Receive buffer size.
        expected: usize,
        /// Size the sender sent.
        sent: u64,
    },
    /// A chunk header changed in the middle of a message (corrupt region or a
    /// peer that does not speak the protocol); the channel is now broken.
    #[error("corrupt message chunk from UE {0}")]
    Corrupt(usize),
    /// An earlier request on this channel was dropped unfinished or saw
    /// corruption, so the channel's message stream is out of step.
    #[error("channel with UE {0} is broken by an abandoned or corrupt message")]
    ChannelBroken(usize),
    /// Waiting for a request whose predecessors on the same channel are not
    /// being progressed by this wait (it would never finish).
    #[error("request to/from UE {0} waits behind an earlier request that is not being waited for")]
    OutOfOrder(usize),
    /// Buffers of different lengths given to a collective.
    #[error("buffer lengths differ: {0} and {1}")]
    LengthMismatch(usize, usize),
}

/// Which way a channel carries messages, from this UE's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Send,
    Recv,
}

/// This UE's private bookkeeping of one direction of one channel.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Chunk counter (next chunk to write or to read).
    chunks: Cell<u32>,
    /// Next ticket handed to a new request.
    next_ticket: Cell<u32>,
    /// Ticket of the request allowed to move chunks now.
    serving: Cell<u32>,
    broken: Cell<bool>,
}

/// One UE's handle on an iRCCE region. Not `Sync`: each UE (thread or isle)
/// owns its own handle.
#[derive(Debug)]
pub struct Ircce<R: Region, N: Notify> {
    region: R,
    notify: N,
    layout: Layout,
    me: usize,
    send: Vec<Channel>,
    recv: Vec<Channel>,
    barrier_episode: Cell<u32>,
}

impl<R: Region, N: Notify> Ircce<R, N> {
    /// Attaches UE `rank` of `config.ues` to `region`: formats the header if
    /// the region is empty, otherwise checks that it was formatted with the
    /// same layout, then claims the rank.
    pub fn init(region: R, notify: N, rank: usize, config: Config) -> Result<Self, Error> {
        let layout = Layout::new(&config)?;
        if rank >= layout.ues {
            return Err(Error::NoSuchUe {
                rank,
                ues: layout.ues,
            });
        }
        let spec = header::Spec {
            magic: MAGIC,
            version: VERSION,
            params: &config.params(),
            need: layout.total,
            zero: &[layout.zeroed()],
        };
        header::attach(&region, &notify, rank, &spec)?;
        if region
            .compare_exchange_u32(layout.present(rank), 0, 1)
            .is_err()
        {
            return Err(Error::RankInUse(rank));
        }
        region.store_u32(layout.sleeping(rank), 0);
        let ues = layout.ues;
        // Continue the counters where a previous, cleanly finished user of
        // this rank left them.
        let send: Vec<Channel> = (0..ues)
            .map(|dst| {
                let c = Channel::default();
                c.chunks.set(region.load_u32(layout.sent(dst, rank)));
                c
            })
            .collect();
        let recv: Vec<Channel> = (0..ues)
            .map(|src| {
                let c = Channel::default();
                c.chunks.set(region.load_u32(layout.ack(src, rank)));
                c
            })
            .collect();
        Ok(Self {
            region,
            notify,
            layout,
            me: rank,
            send,
            recv,
            barrier_episode: Cell::new(0),
        })
    }

    /// Like [`Ircce::init`] with [`Config::new`]`(ues)`.
    pub fn init_default(region: R, notify: N, rank: usize, ues: u32) -> Result<Self, Error> {
        Self::init(region, notify, rank, Config::new(ues))
    }

    /// This UE's rank.
    pub fn ue(&self) -> usize {
        self.me
    }

    /// Number of UEs.
    pub fn num_ues(&self) -> usize {
        self.layout.ues
    }

    /// Payload bytes carried per chunk on each channel.
    pub fn chunk_size(&self) -> usize {
        self.layout.payload()
    }

    /// The region (for inspection by tests and tools).
    pub fn region(&self) -> &R {
        &self.region
    }

    fn check_ue(&self, rank: usize) -> Result<(), Error> {
        if rank < self.layout.ues {
            Ok(())
        } else {
            Err(Error::NoSuchUe {
                rank,
                ues: self.layout.ues,
            })
        }
    }

    fn mpb_range(&self, ue: usize, offset: usize, len: usize) -> Result<usize, Error> {
        self.check_ue(ue)?;
        match offset.checked_add(len) {
            Some(end) if end <= self.layout.mpb_size => Ok(self.layout.mpb(ue) + offset),
            _ => Err(Error::MpbBounds {
                offset,
                len,
                mpb_size: self.layout.mpb_size,
            }),
        }
    }

    /// One-sided write of `data` into UE `ue`'s MPB at `offset`.
    pub fn put(&self, ue: usize, offset: usize, data: &[u8]) -> Result<(), Error> {
        let at = self.mpb_range(ue, offset, data.len())?;
        self.region.write(at, data);
        Ok(())
    }

    /// One-sided read from UE `ue`'s MPB at `offset` into `buf`.
    pub fn get(&self, ue: usize, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let at = self.mpb_range(ue, offset, buf.len())?;
        self.region.read(at, buf);
        Ok(())
    }

    /// Size of each UE's MPB.
    pub fn mpb_size(&self) -> usize {
        self.layout.mpb_size
    }

    fn flag_offset(&self, ue: usize, flag: usize) -> Result<usize, Error> {
        self.check_ue(ue)?;
        if flag < self.layout.flags {
            Ok(self.layout.user_flag(ue, flag))
        } else {
            Err(Error::NoSuchFlag {
                flag,
                flags: self.layout.flags,
            })
        }
    }

    /// Writes `value` into flag `flag` of UE `ue` (published after all earlier
    /// puts) and rings `ue` if it sleeps.
    pub fn flag_write(&self, flag: usize, ue: usize, value: u32) -> Result<(), Error> {
        let at = self.flag_offset(ue, flag)?;
        self.region.store_u32(at, value);
        self.kick(ue);
        Ok(())
    }

    /// Reads flag `flag` of UE `ue`.
    pub fn flag_read(&self, flag: usize, ue: usize) -> Result<u32, Error> {
        Ok(self.region.load_u32(self.flag_offset(ue, flag)?))
    }

    /// Waits until this UE's own flag `flag` holds `value`.
    pub fn wait_until(&self, flag: usize, value: u32) -> Result<(), Error> {
        let at = self.flag_offset(self.me, flag)?;
        self.wait_for(|| self.region.load_u32(at) == value);
        Ok(())
    }

    /// Rings `ue`'s doorbell if it announced that it sleeps.
    pub(crate) fn kick(&self, ue: usize) {
        if ue != self.me && self.region.load_u32(self.layout.sleeping(ue)) != 0 {
            self.notify.ring(ue);
        }
    }

    /// Spins until `ready` holds ([`Notify::spins_before_sleep`] rounds at
    /// most), then sleeps on the doorbell between checks. `ready` must only
    /// depend on flags in this UE's own lines (those are the ones whose
    /// writers ring this UE).
    pub(crate) fn wait_for(&self, mut ready: impl FnMut() -> bool) {
        let budget = self.notify.spins_before_sleep();
        let mut spins = 0;
        while !ready() {
            if spins < budget {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            let flag = self.layout.sleeping(self.me);
            self.region.store_u32(flag, 1);
            // Re-check after announcing: a writer that published before our
            // announcement did not ring.
            if ready() {
                self.region.store_u32(flag, 0);
                return;
            }
            self.notify.wait(self.me, SLEEP_STEP);
            self.region.store_u32(flag, 0);
        }
    }

    pub(crate) fn channel(&self, dir: Dir, peer: usize) -> &Channel {
        match dir {
            Dir::Send => &self.send[peer],
            Dir::Recv => &self.recv[peer],
        }
    }

    /// Writes the next chunk to `dst` if its half of the slot is free.
    /// Returns whether it was written.
    pub(crate) fn try_write_chunk(&self, dst: usize, msg_len: u64, data: &[u8]) -> bool {
        let l = &self.layout;
        let chan = &self.send[dst];
        let k = chan.chunks.get();
        let acked = self.region.load_u32(l.ack(self.me, dst));
        if k.wrapping_sub(acked) >= 2 {
            return false;
        }
        let at = l.chunk(dst, self.me, (k % 2) as usize);
        self.region.store_u64(at, msg_len);
        self.region.write(at + CHUNK_HEADER, data);
        self.region
            .store_u32(l.sent(dst, self.me), k.wrapping_add(1));
        chan.chunks.set(k.wrapping_add(1));
        self.kick(dst);
        true
    }

    /// Reads the next chunk from `src` if one is there: returns the message
    /// length from its header after copying `out.len()` payload bytes
    /// (ignored if `out` is longer than a chunk) and acknowledging it.
    pub(crate) fn try_read_chunk(&self, src: usize, mut read: impl FnMut(u64, &R, usize)) -> bool {
        let l = &self.layout;
        let chan = &self.recv[src];
        let k = chan.chunks.get();
        let sent = self.region.load_u32(l.sent(self.me, src));
        if sent.wrapping_sub(k) as i32 <= 0 {
            return false;
        }
        let at = l.chunk(self.me, src, (k % 2) as usize);
        let msg_len = self.region.load_u64(at);
        read(msg_len, &self.region, at + CHUNK_HEADER);
        self.region
            .store_u32(l.ack(src, self.me), k.wrapping_add(1));
        chan.chunks.set(k.wrapping_add(1));
        self.kick(src);
        true
    }

    /// Starts a non-blocking send of `data` to `dst`. Messages on one
    /// channel arrive in the order their requests were created.
    pub fn isend<'a>(&'a self, data: &'a [u8], dst: usize) -> Result<Request<'a, R, N>, Error> {
        self.check_ue(dst)?;
        Request::new_send(self, data, dst)
    }

    /// Starts a non-blocking receive from `src` into `buf` (which must have
    /// the size of the message sent).
    pub fn irecv<'a>(&'a self, buf: &'a mut [u8], src: usize) -> Result<Request<'a, R, N>, Error> {
        self.check_ue(src)?;
        Request::new_recv(self, buf, src)
    }

    /// Sends `data` to `dst` and returns once all of it is in the shared
    /// region (all but the last two chunks also taken out by the receiver).
    ///
    /// As in RCCE, a message longer than two chunks needs the receiver to
    /// take part: two UEs that send long messages to each other at the same
    /// time, or a UE that sends a long message to itself, wait forever; use
    /// [`Ircce::isend`]/[`Ircce::irecv`] with a [`WaitList`] for exchanges.
    pub fn send(&self, data: &[u8], dst: usize) -> Result<(), Error> {
        self.isend(data, dst)?.wait()
    }

    /// Receives a message from `src` into `buf`; the message must have
    /// `buf.len()` bytes (otherwise it is consumed and
    /// [`Error::SizeMismatch`] returned).
    pub fn recv(&self, buf: &mut [u8], src: usize) -> Result<(), Error> {
        self.irecv(buf, src)?.wait()
    }
}

/// Frees `rank` in `region` after its UE died without dropping its
/// [`Ircce`] (its VM was killed): what a hypervisor calls when an isle
/// ends, so that a restarted isle can claim its rank again. Returns whether
/// the rank was claimed. The layout is read from the region's header; a
/// region without a valid one is left alone (`Err`). Messages the dead UE
/// had half sent or received stay stuck on those channels (see the crate
/// documentation); the header and the other ranks are not touched.
pub fn release_dead_rank<R: Region>(region: &R, rank: usize) -> Result<bool, Error> {
    let [ues, channel_size, mpb_size, flags] = header::read_params::<R, 4>(region, MAGIC, VERSION)?;
    let layout = Layout::new(&Config {
        ues,
        channel_size,
        mpb_size,
        flags,
    })?;
    if rank >= layout.ues {
        return Err(Error::NoSuchUe {
            rank,
            ues: layout.ues,
        });
    }
    if region.len() < layout.total {
        return Err(Error::Header(HeaderError::RegionTooSmall {
            need: layout.total,
            have: region.len(),
        }));
    }
    Ok(region
        .compare_exchange_u32(layout.present(rank), 1, 0)
        .is_ok())
}

impl<R: Region, N: Notify> Drop for Ircce<R, N> {
    /// Releases the rank so a later process may claim it again.
    fn drop(&mut self) {
        self.region.store_u32(self.layout.present(self.me), 0);
    }
}
