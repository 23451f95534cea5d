//! mmnif: a network interface over a shared-memory region between isles (and
//! the Linux host), portable ring protocol only.
//!
//! Every isle owns one receive ring per possible sender: the ring for
//! (consumer `dst`, producer `src`) is single-producer single-consumer. We
//! chose per-pair SPSC rings over one multi-producer ring with CAS-reserved
//! slots because a producer that reserved a slot and then died (its VM
//! killed mid-copy) would block a shared ring for everyone, whereas here it
//! only stalls its own pair; SPSC also needs no read-modify-write on the
//! fast path and each control word has exactly one writer. The cost is
//! memory (`isles²` rings) and a consumer that polls `isles - 1` rings,
//! which is cheap for the handful of isles a host runs.
//!
//! A ring has a producer line `[desc_head u32, _, data_head u64]`, a
//! consumer line `[desc_tail u32, _, data_tail u64]`, `slots` descriptors
//! `[offset u32, len u32, end u64]` and a byte area the frames are copied
//! into contiguously (a frame that would cross the end starts again at 0;
//! `end` is the producer's data position after it, which the consumer
//! publishes as `data_tail` once it copied the frame). Counters are
//! free-running, so empty and full are told apart without a spare slot.
//!
//! Everything read from the region is validated: a descriptor whose offset,
//! length or end is impossible, or ring counters that are out of range, make
//! the consumer drop what is pending on that ring and count it; the producer
//! treats impossible consumer counters as a full ring. Nothing read from the
//! region is used as an index without a bounds check, and nothing panics.
//!
//! A consumer about to sleep sets its `sleeping` flag; producers ring its
//! doorbell ([`Notify`]) only then.
//!
//! Not here: the region mapping and doorbells (hypervisor and kernel), the
//! IP/Ethernet framing (the network stack hands frames to [`MmnifRing`]).

use core::time::Duration;
use hermit_ircce::header::{self, HeaderError, Spec};
use hermit_ircce::{Notify, Region};

mod nic;
#[cfg(test)]
mod tests;

pub use nic::{MmnifNic, mac_node, node_mac};

/// Magic of an mmnif region header ("MMNF").
pub const MAGIC: u32 = u32::from_le_bytes(*b"MMNF");
/// Layout version this build speaks.
pub const VERSION: u32 = 1;
/// Largest frame the ring carries (jumbo IP packets included).
pub const MAX_FRAME: usize = 65_535;

const LINE: usize = 64;
const DESC_SIZE: usize = 16;
/// Frames start on 8-byte boundaries in the area.
const FRAME_ALIGN: u64 = 8;
/// Polls of all rings before a consumer announces that it sleeps.
const SPINS_BEFORE_SLEEP: u32 = 1000;

/// Errors of the mmnif ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MmnifError {
    /// The region's header is incompatible or the region too small.
    #[error("mmnif region refused: {0}")]
    Header(#[from] HeaderError),
    /// Bad configuration.
    #[error("mmnif configuration invalid: {0}")]
    Config(ConfigError),
    /// Destination or own isle number out of range.
    #[error("isle {isle} does not exist ({isles} isles)")]
    NoSuchIsle {
        /// The isle asked for.
        isle: usize,
        /// Number of isles.
        isles: usize,
    },
    /// Sending to oneself.
    #[error("an isle cannot send frames to itself")]
    SelfSend,
    /// Frame larger than the ring accepts.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The destination's ring is full (EAGAIN): drop or retry later.
    #[error("receive ring of the destination isle is full")]
    Full,
}

/// Why a [`Config`] is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Isles must be 2..=256.
    #[error("{0} isles is not in 2..=256")]
    Isles(u32),
    /// Slots must be a power of two in 2..=65536.
    #[error("{0} descriptor slots is not a power of two in 2..=65536")]
    Slots(u32),
    /// The packet area must be a multiple of 64 bytes in 4 KiB..=1 GiB.
    #[error("packet area of {0} bytes is not a multiple of 64 in 4 KiB..=1 GiB")]
    Area(u32),
}

/// Layout parameters every isle must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of isles (the host counts as one).
    pub isles: u32,
    /// Descriptors per ring.
    pub slots: u32,
    /// Packet area bytes per ring.
    pub area: u32,
}

impl Config {
    /// 64 descriptors and 64 KiB of packet area per ring.
    pub const fn new(isles: u32) -> Self {
        Self {
            isles,
            slots: 64,
            area: 64 * 1024,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=256).contains(&self.isles) {
            return Err(ConfigError::Isles(self.isles));
        }
        if !self.slots.is_power_of_two() || !(2..=65_536).contains(&self.slots) {
            return Err(ConfigError::Slots(self.slots));
        }
        if !self.area.is_multiple_of(64) || !(4096..=1 << 30).contains(&self.area) {
            return Err(ConfigError::Area(self.area));
        }
        Ok(())
    }

    /// Bytes the layout needs in the region.
    pub fn region_size(&self) -> usize {
        let isles = self.isles as usize;
        control_start() + isles * LINE + isles * isles * self.ring_size()
    }

    fn ring_size(&self) -> usize {
        2 * LINE + (self.slots as usize * DESC_SIZE).next_multiple_of(LINE) + self.area as usize
    }

    /// Largest frame this configuration carries.
    pub fn max_frame(&self) -> usize {
        MAX_FRAME.min(self.area as usize / 2)
    }
}

const fn control_start() -> usize {
    header::HEADER_SIZE
}

/// Counters of what a ring endpoint did and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames transmitted.
    pub transmitted: u64,
    /// Transmits refused because the destination ring was full.
    pub full: u64,
    /// Frames received.
    pub received: u64,
    /// Valid frames dropped because the receive buffer was too small.
    pub oversize: u64,
    /// Times a ring held impossible descriptors or counters (pending frames
    /// of that ring were dropped).
    pub corrupt: u64,
}

/// Offsets of one ring.
#[derive(Debug, Clone, Copy)]
struct Ring {
    desc_head: usize,
    data_head: usize,
    desc_tail: usize,
    data_tail: usize,
    descs: usize,
    area: usize,
}

/// One isle's endpoint: transmits into other isles' rings and receives from
/// its own.
#[derive(Debug)]
pub struct MmnifRing<R: Region, N: Notify> {
    region: R,
    notify: N,
    config: Config,
    me: usize,
    next_src: usize,
    stats: Stats,
}

impl<R: Region, N: Notify> MmnifRing<R, N> {
    /// Attaches isle `me` to `region` (formatting its header if empty,
    /// otherwise checking it matches `config`).
    pub fn new(region: R, notify: N, me: usize, config: Config) -> Result<Self, MmnifError> {
        config.validate().map_err(MmnifError::Config)?;
        let isles = config.isles as usize;
        if me >= isles {
            return Err(MmnifError::NoSuchIsle { isle: me, isles });
        }
        let need = config.region_size();
        let control = control_start();
        let spec = Spec {
            magic: MAGIC,
            version: VERSION,
            params: &[config.isles, config.slots, config.area],
            need,
            // Control lines and all ring counters; descriptors and frames
            // are only read once published.
            zero: &[(control, need - control)],
        };
        header::attach(&region, &notify, me, &spec)?;
        Ok(Self {
            region,
            notify,
            config,
            me,
            next_src: 0,
            stats: Stats::default(),
        })
    }

    /// This isle's number.
    pub fn isle(&self) -> usize {
        self.me
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Largest frame [`MmnifRing::transmit`] accepts.
    pub fn max_frame(&self) -> usize {
        self.config.max_frame()
    }

    fn sleeping(&self, isle: usize) -> usize {
        control_start() + isle * LINE
    }

    fn ring(&self, dst: usize, src: usize) -> Ring {
        let isles = self.config.isles as usize;
        let base = control_start() + isles * LINE + (dst * isles + src) * self.config.ring_size();
        Ring {
            desc_head: base,
            data_head: base + 8,
            desc_tail: base + LINE,
            data_tail: base + LINE + 8,
            descs: base + 2 * LINE,
            area: base + 2 * LINE + (self.config.slots as usize * DESC_SIZE).next_multiple_of(LINE),
        }
    }

    /// Copies `frame` into isle `dst`'s ring and rings its doorbell if it
    /// sleeps. [`MmnifError::Full`] means: drop it (or retry later).
    pub fn transmit(&mut self, dst: usize, frame: &[u8]) -> Result<(), MmnifError> {
        let isles = self.config.isles as usize;
        if dst >= isles {
            return Err(MmnifError::NoSuchIsle { isle: dst, isles });
        }
        if dst == self.me {
            return Err(MmnifError::SelfSend);
        }
        let max = self.max_frame();
        if frame.len() > max {
            return Err(MmnifError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        let ring = self.ring(dst, self.me);
        let slots = self.config.slots;
        let area = u64::from(self.config.area);
        let head = self.region.load_u32(ring.desc_head);
        let tail = self.region.load_u32(ring.desc_tail);
        let data_head = self.region.load_u64(ring.data_head);
        let data_tail = self.region.load_u64(ring.data_tail);
        let queued = head.wrapping_sub(tail);
        let used = data_head.wrapping_sub(data_tail);
        // `queued > slots` or `used > area` means the consumer's counters
        // are garbage: treat as full, nothing else is safe.
        if queued >= slots || used > area {
            self.stats.full += 1;
            return Err(MmnifError::Full);
        }
        let len = frame.len() as u64;
        let pos = data_head % area;
        let (start, skip) = if pos + len > area {
            (0, area - pos)
        } else {
            (pos, 0)
        };
        let end = data_head + skip + len.next_multiple_of(FRAME_ALIGN);
        if end.wrapping_sub(data_tail) > area {
            self.stats.full += 1;
            return Err(MmnifError::Full);
        }
        // `start + len <= area` by construction; area and frames fit u32.
        self.region.write(ring.area + start as usize, frame);
        let desc = ring.descs + (head % slots) as usize * DESC_SIZE;
        self.region.store_u32(desc, start as u32);
        self.region.store_u32(desc + 4, len as u32);
        self.region.store_u64(desc + 8, end);
        self.region.store_u64(ring.data_head, end);
        self.region.store_u32(ring.desc_head, head.wrapping_add(1));
        self.stats.transmitted += 1;
        if self.region.load_u32(self.sleeping(dst)) != 0 {
            self.notify.ring(dst);
        }
        Ok(())
    }

    /// Drops everything pending on `ring` after finding it inconsistent.
    fn resync(&mut self, ring: &Ring, head: u32) {
        self.stats.corrupt += 1;
        let data_head = self.region.load_u64(ring.data_head);
        self.region.store_u64(ring.data_tail, data_head);
        self.region.store_u32(ring.desc_tail, head);
    }

    /// Takes the next frame from any sender into `buf` (round robin over the
    /// senders); returns its length, or `None` if nothing is pending.
    /// Frames longer than `buf` are dropped and counted.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let isles = self.config.isles as usize;
        let slots = self.config.slots;
        let area = u64::from(self.config.area);
        for i in 0..isles {
            let src = (self.next_src + i) % isles;
            if src == self.me {
                continue;
            }
            let ring = self.ring(self.me, src);
            loop {
                let head = self.region.load_u32(ring.desc_head);
                let tail = self.region.load_u32(ring.desc_tail);
                let pending = head.wrapping_sub(tail);
                if pending == 0 {
                    break;
                }
                if pending > slots {
                    self.resync(&ring, head);
                    break;
                }
                let desc = ring.descs + (tail % slots) as usize * DESC_SIZE;
                let offset = u64::from(self.region.load_u32(desc));
                let len = u64::from(self.region.load_u32(desc + 4));
                let end = self.region.load_u64(desc + 8);
                let data_tail = self.region.load_u64(ring.data_tail);
                let data_head = self.region.load_u64(ring.data_head);
                let valid = len <= self.config.max_frame() as u64
                    && offset + len <= area
                    && end.wrapping_sub(data_tail) <= area
                    && end.wrapping_sub(data_tail) >= len
                    && data_head.wrapping_sub(end) <= area;
                if !valid {
                    self.resync(&ring, head);
                    break;
                }
                // Bounded by `area` and `max_frame` just above.
                let (offset, len) = (offset as usize, len as usize);
                let delivered = match buf.get_mut(..len) {
                    Some(out) => {
                        self.region.read(ring.area + offset, out);
                        true
                    }
                    None => {
                        self.stats.oversize += 1;
                        false
                    }
                };
                self.region.store_u64(ring.data_tail, end);
                self.region.store_u32(ring.desc_tail, tail.wrapping_add(1));
                if delivered {
                    self.stats.received += 1;
                    self.next_src = (src + 1) % isles;
                    return Some(len);
                }
            }
        }
        None
    }

    /// Whether any ring of this isle holds a frame (or garbage to drop).
    pub fn pending(&self) -> bool {
        (0..self.config.isles as usize)
            .filter(|&src| src != self.me)
            .any(|src| {
                let ring = self.ring(self.me, src);
                self.region.load_u32(ring.desc_head) != self.region.load_u32(ring.desc_tail)
            })
    }

    /// Waits until a frame may be pending: polls a while, then announces
    /// sleep and waits for a doorbell for at most `timeout`. May return
    /// with nothing pending.
    pub fn wait(&self, timeout: Duration) {
        for _ in 0..SPINS_BEFORE_SLEEP {
            if self.pending() {
                return;
            }
            core::hint::spin_loop();
        }
        if self.announce_sleep() {
            self.notify.wait(self.me, timeout);
        }
        self.end_sleep();
    }

    /// For consumers that block elsewhere (a kernel thread waiting for the
    /// doorbell interrupt): sets this isle's `sleeping` flag, so producers
    /// ring from now on, and returns whether it may block, i.e. nothing
    /// arrived before the flag was up. Call [`MmnifRing::end_sleep`] after
    /// waking (or when not blocking).
    pub fn announce_sleep(&self) -> bool {
        self.region.store_u32(self.sleeping(self.me), 1);
        !self.pending()
    }

    /// Clears the `sleeping` flag [`MmnifRing::announce_sleep`] set.
    pub fn end_sleep(&self) {
        self.region.store_u32(self.sleeping(self.me), 0);
    }
}
