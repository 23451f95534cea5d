//! The memory a region's users share, reached only through the [`Region`]
//! trait, so protocol code never holds a Rust reference into memory that
//! another VM writes.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

/// Byte-addressed shared memory with sequentially consistent atomics and
/// plain bulk copies.
///
/// Contract for callers: atomic offsets are aligned to the access size and
/// every access lies inside `0..len()`; the protocol code of this crate and of
/// the mmnif ring computes offsets only from validated layouts and checks
/// everything it reads from the region before using it as an offset.
/// Implementations may panic when the contract is broken (a caller bug),
/// never for any value stored in the region.
///
/// Bulk copies need not be atomic: a reader that raced a writer sees torn
/// bytes, which the protocols prevent by publishing data with a flag store
/// (release) that the reader loads (acquire) before copying.
pub trait Region {
    /// Size of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Atomic load of the `u32` at `offset` (4-aligned).
    fn load_u32(&self, offset: usize) -> u32;
    /// Atomic store of the `u32` at `offset` (4-aligned).
    fn store_u32(&self, offset: usize, value: u32);
    /// Atomic compare-and-swap of the `u32` at `offset`; `Ok(previous)` when it
    /// held `current` and now holds `new`, otherwise `Err(actual)`.
    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> Result<u32, u32>;
    /// Atomic load of the `u64` at `offset` (8-aligned).
    fn load_u64(&self, offset: usize) -> u64;
    /// Atomic store of the `u64` at `offset` (8-aligned).
    fn store_u64(&self, offset: usize, value: u64);
    /// Atomic compare-and-swap of the `u64` at `offset` (8-aligned).
    fn compare_exchange_u64(&self, offset: usize, current: u64, new: u64) -> Result<u64, u64>;
    /// Copies `buf.len()` bytes starting at `offset` out of the region.
    fn read(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` into the region starting at `offset`.
    fn write(&self, offset: usize, data: &[u8]);

    /// Atomically adds `value` (wrapping) to the `u32` at `offset` and returns
    /// the previous value.
    fn fetch_add_u32(&self, offset: usize, value: u32) -> u32 {
        let mut current = self.load_u32(offset);
        loop {
            match self.compare_exchange_u32(offset, current, current.wrapping_add(value)) {
                Ok(previous) => return previous,
                Err(actual) => current = actual,
            }
        }
    }
}

macro_rules! forward_region {
    ($($t:ty),*) => {$(
        impl<R: Region + ?Sized> Region for $t {
            fn len(&self) -> usize { (**self).len() }
            fn load_u32(&self, o: usize) -> u32 { (**self).load_u32(o) }
            fn store_u32(&self, o: usize, v: u32) { (**self).store_u32(o, v) }
            fn compare_exchange_u32(&self, o: usize, c: u32, n: u32) -> Result<u32, u32> {
                (**self).compare_exchange_u32(o, c, n)
            }
            fn load_u64(&self, o: usize) -> u64 { (**self).load_u64(o) }
            fn store_u64(&self, o: usize, v: u64) { (**self).store_u64(o, v) }
            fn compare_exchange_u64(&self, o: usize, c: u64, n: u64) -> Result<u64, u64> {
                (**self).compare_exchange_u64(o, c, n)
            }
            fn read(&self, o: usize, b: &mut [u8]) { (**self).read(o, b) }
            fn write(&self, o: usize, d: &[u8]) { (**self).write(o, d) }
        }
    )*};
}
forward_region!(&R, Arc<R>, Box<R>);

/// Why a [`SubRegion`] could not be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The window does not lie inside the parent region.
    #[error("window {offset:#x}+{len:#x} exceeds the region of {region_len:#x} bytes")]
    OutOfBounds {
        /// Start of the window.
        offset: usize,
        /// Length of the window.
        len: usize,
        /// Length of the parent region.
        region_len: usize,
    },
    /// The window does not start on a 64-byte (cache line) boundary.
    #[error("window offset {0:#x} is not 64-byte aligned")]
    Misaligned(usize),
}

/// A window `offset..offset + len` of a parent region, so that iRCCE and the
/// mmnif ring can each own a part of one shared region with their own header
/// at their offset 0.
#[derive(Debug, Clone)]
pub struct SubRegion<R> {
    inner: R,
    base: usize,
    len: usize,
}

impl<R: Region> SubRegion<R> {
    /// Cuts the window `offset..offset + len` out of `inner`; `offset` must be
    /// 64-byte aligned.
    pub fn new(inner: R, offset: usize, len: usize) -> Result<Self, RegionError> {
        let region_len = inner.len();
        if !offset.is_multiple_of(64) {
            return Err(RegionError::Misaligned(offset));
        }
        match offset.checked_add(len) {
            Some(end) if end <= region_len => Ok(Self {
                inner,
                base: offset,
                len,
            }),
            _ => Err(RegionError::OutOfBounds {
                offset,
                len,
                region_len,
            }),
        }
    }

    fn at(&self, offset: usize, size: usize) -> usize {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "sub-region access {offset:#x}+{size} out of bounds"
        );
        self.base + offset
    }
}

impl<R: Region> Region for SubRegion<R> {
    fn len(&self) -> usize {
        self.len
    }
    fn load_u32(&self, o: usize) -> u32 {
        self.inner.load_u32(self.at(o, 4))
    }
    fn store_u32(&self, o: usize, v: u32) {
        self.inner.store_u32(self.at(o, 4), v)
    }
    fn compare_exchange_u32(&self, o: usize, c: u32, n: u32) -> Result<u32, u32> {
        self.inner.compare_exchange_u32(self.at(o, 4), c, n)
    }
    fn load_u64(&self, o: usize) -> u64 {
        self.inner.load_u64(self.at(o, 8))
    }
    fn store_u64(&self, o: usize, v: u64) {
        self.inner.store_u64(self.at(o, 8), v)
    }
    fn compare_exchange_u64(&self, o: usize, c: u64, n: u64) -> Result<u64, u64> {
        self.inner.compare_exchange_u64(self.at(o, 8), c, n)
    }
    fn read(&self, o: usize, b: &mut [u8]) {
        self.inner.read(self.at(o, b.len()), b)
    }
    fn write(&self, o: usize, d: &[u8]) {
        self.inner.write(self.at(o, d.len()), d)
    }
}

/// A region on the heap made of `AtomicU64` words: safe to share between
/// threads, used by the host tests (several UEs or isles as threads over one
/// buffer) and usable by a kernel that runs several UEs in one isle.
///
/// Bulk copies go word by word with relaxed atomics; partial words are
/// merged with a compare-and-swap so neighbouring bytes are never clobbered.
#[derive(Debug)]
pub struct AtomicRegion {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl AtomicRegion {
    /// A zeroed region of `len` bytes (storage rounded up to whole words).
    pub fn new(len: usize) -> Self {
        let words = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
        Self { words, len }
    }

    fn word(&self, offset: usize, size: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(size) && offset.checked_add(size).is_some_and(|e| e <= self.len),
            "region access {offset:#x}+{size} misaligned or out of bounds"
        );
        &self.words[offset / 8]
    }

    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|e| e <= self.len),
            "region copy {offset:#x}+{len:#x} out of bounds"
        );
    }

    /// Replaces the bytes selected by `mask` in a word with those of `value`.
    fn merge(word: &AtomicU64, mask: u64, value: u64) {
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let new = (current & !mask) | (value & mask);
            match word.compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

impl Region for AtomicRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32(&self, offset: usize) -> u32 {
        let shift = (offset % 8) * 8;
        (self.word(offset, 4).load(Ordering::SeqCst) >> shift) as u32
    }

    fn store_u32(&self, offset: usize, value: u32) {
        let shift = (offset % 8) * 8;
        let word = self.word(offset, 4);
        let mask = 0xffff_ffffu64 << shift;
        let mut current = word.load(Ordering::SeqCst);
        loop {
            let new = (current & !mask) | (u64::from(value) << shift);
            match word.compare_exchange_weak(current, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> Result<u32, u32> {
        let shift = (offset % 8) * 8;
        let word = self.word(offset, 4);
        let mask = 0xffff_ffffu64 << shift;
        let mut seen = word.load(Ordering::SeqCst);
        loop {
            let actual = (seen >> shift) as u32;
            if actual != current {
                return Err(actual);
            }
            let replaced = (seen & !mask) | (u64::from(new) << shift);
            match word.compare_exchange_weak(seen, replaced, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(current),
                Err(again) => seen = again,
            }
        }
    }

    fn load_u64(&self, offset: usize) -> u64 {
        self.word(offset, 8).load(Ordering::SeqCst)
    }

    fn store_u64(&self, offset: usize, value: u64) {
        self.word(offset, 8).store(value, Ordering::SeqCst)
    }

    fn compare_exchange_u64(&self, offset: usize, current: u64, new: u64) -> Result<u64, u64> {
        self.word(offset, 8)
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        self.check_range(offset, buf.len());
        let end = offset + buf.len();
        // Partial first word, whole words, partial last word.
        let head = ((8 - offset % 8) % 8).min(buf.len());
        let (first, rest) = buf.split_at_mut(head);
        self.read_partial(offset, first);
        let words_at = (offset + head) / 8;
        let mut chunks = rest.chunks_exact_mut(8);
        for (out, word) in (&mut chunks).zip(&self.words[words_at..]) {
            out.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let tail_at = end - tail.len();
        self.read_partial(tail_at, tail);
    }

    fn write(&self, offset: usize, data: &[u8]) {
        self.check_range(offset, data.len());
        let head = ((8 - offset % 8) % 8).min(data.len());
        let (first, rest) = data.split_at(head);
        self.write_partial(offset, first);
        let words_at = (offset + head) / 8;
        let chunks = rest.chunks_exact(8);
        let tail = chunks.remainder();
        for (bytes, word) in chunks.zip(&self.words[words_at..]) {
            let mut w = [0u8; 8];
            w.copy_from_slice(bytes);
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.write_partial(offset + data.len() - tail.len(), tail);
    }
}

impl AtomicRegion {
    /// Reads `buf` (inside one word) at `offset`.
    fn read_partial(&self, offset: usize, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let in_word = offset % 8;
        let bytes = self.words[offset / 8].load(Ordering::Relaxed).to_le_bytes();
        buf.copy_from_slice(&bytes[in_word..in_word + buf.len()]);
    }

    /// Writes `data` (inside one word) at `offset`, keeping the other bytes.
    fn write_partial(&self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let in_word = offset % 8;
        let mut bytes = [0u8; 8];
        bytes[in_word..in_word + data.len()].copy_from_slice(data);
        let mut mask = [0u8; 8];
        mask[in_word..in_word + data.len()].fill(0xff);
        Self::merge(
            &self.words[offset / 8],
            u64::from_le_bytes(mask),
            u64::from_le_bytes(bytes),
        );
    }
}
