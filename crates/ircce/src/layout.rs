//! Where everything of iRCCE lives in its region.
//!
//! ```text
//! 0                      header line (see `header`)
//! control                one line per UE: [present u32, sleeping u32]
//! barrier                one line per UE: 16 round counters (u32)
//! pair flags             ues x ues lines; line (owner, peer) = [sent u32, ack u32],
//!                        both written by `peer` only, polled by `owner`
//! user flags             ues x flags lines, one u32 flag each
//! channels               per UE `channel_size` bytes, one slot per source UE,
//!                        each slot two halves (double buffering); a half is a
//!                        64-byte chunk header [message length u64] + payload
//! MPBs                   per UE `mpb_size` bytes for one-sided put/get
//! ```
//! Every flag sits in its own cache line, written by one UE only.

use crate::Error;

/// Cache line size the layout aligns to.
pub const LINE: usize = 64;
/// Most UEs: the dissemination barrier has 16 round counters per line.
pub const MAX_UES: u32 = 1 << 16;

/// Layout parameters every UE must agree on (checked against the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of UEs.
    pub ues: u32,
    /// Bytes of message channels per UE (split into one slot per source).
    pub channel_size: u32,
    /// Bytes of message-passing buffer per UE for put/get.
    pub mpb_size: u32,
    /// User flags per UE.
    pub flags: u32,
}

impl Config {
    /// 64 KiB of channels and 64 KiB of MPB per UE, 16 flags.
    pub const fn new(ues: u32) -> Self {
        Self {
            ues,
            channel_size: 64 * 1024,
            mpb_size: 64 * 1024,
            flags: 16,
        }
    }

    /// Sets `channel_size`.
    pub const fn with_channel_size(mut self, bytes: u32) -> Self {
        self.channel_size = bytes;
        self
    }

    /// Sets `mpb_size`.
    pub const fn with_mpb_size(mut self, bytes: u32) -> Self {
        self.mpb_size = bytes;
        self
    }

    /// Sets the number of user flags.
    pub const fn with_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// Parameters as stored in the header.
    pub(crate) fn params(&self) -> [u32; 4] {
        [self.ues, self.channel_size, self.mpb_size, self.flags]
    }
}

/// Offsets computed from a [`Config`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub ues: usize,
    pub flags: usize,
    control: usize,
    barrier: usize,
    pairs: usize,
    user_flags: usize,
    channels: usize,
    channel_size: usize,
    slot: usize,
    pub half: usize,
    mpbs: usize,
    pub mpb_size: usize,
    pub total: usize,
}

/// Chunk header bytes at the start of each half slot.
pub(crate) const CHUNK_HEADER: usize = LINE;

impl Layout {
    pub fn new(config: &Config) -> Result<Self, Error> {
        if config.ues == 0 || config.ues > MAX_UES {
            return Err(Error::UeCount(config.ues));
        }
        let ues = config.ues as usize;
        let slot = (config.channel_size as usize / ues) / (2 * LINE) * (2 * LINE);
        let half = slot / 2;
        if half < CHUNK_HEADER + LINE {
            return Err(Error::ChannelTooSmall {
                channel_size: config.channel_size,
                ues: config.ues,
            });
        }
        let mpb_size = (config.mpb_size as usize).next_multiple_of(LINE);
        let flags = config.flags as usize;
        let control = crate::header::HEADER_SIZE;
        let barrier = control + ues * LINE;
        let pairs = barrier + ues * LINE;
        let user_flags = pairs + ues * ues * LINE;
        let channels = user_flags + ues * flags * LINE;
        let channel_size = (config.channel_size as usize).next_multiple_of(LINE);
        let mpbs = channels + ues * channel_size;
        let total = mpbs + ues * mpb_size;
        Ok(Self {
            ues,
            flags,
            control,
            barrier,
            pairs,
            user_flags,
            channels,
            channel_size,
            slot,
            half,
            mpbs,
            mpb_size,
            total,
        })
    }

    /// Control and flag areas the formatter clears.
    pub fn zeroed(&self) -> (usize, usize) {
        (self.control, self.channels - self.control)
    }

    pub fn present(&self, ue: usize) -> usize {
        self.control + ue * LINE
    }

    pub fn sleeping(&self, ue: usize) -> usize {
        self.control + ue * LINE + 4
    }

    pub fn barrier_round(&self, ue: usize, round: usize) -> usize {
        self.barrier + ue * LINE + 4 * round
    }

    /// `sent` counter of the pair line (owner, peer): chunks `peer` wrote
    /// into `owner`'s slot for it.
    pub fn sent(&self, owner: usize, peer: usize) -> usize {
        self.pairs + (owner * self.ues + peer) * LINE
    }

    /// `ack` counter of the pair line (owner, peer): chunks of `owner`'s
    /// messages that `peer` has consumed.
    pub fn ack(&self, owner: usize, peer: usize) -> usize {
        self.sent(owner, peer) + 4
    }

    pub fn user_flag(&self, ue: usize, flag: usize) -> usize {
        self.user_flags + (ue * self.flags + flag) * LINE
    }

    /// Start of half `half` of the slot in `dst`'s channels that `src` writes.
    pub fn chunk(&self, dst: usize, src: usize, half: usize) -> usize {
        self.channels + dst * self.channel_size + src * self.slot + half * self.half
    }

    /// Payload bytes per chunk.
    pub fn payload(&self) -> usize {
        self.half - CHUNK_HEADER
    }

    pub fn mpb(&self, ue: usize) -> usize {
        self.mpbs + ue * self.mpb_size
    }
}
