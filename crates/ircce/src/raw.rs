//! [`MappedRegion`]: a [`Region`] over raw shared memory, the one place of
//! this crate that dereferences pointers. The kernel uses it over the
//! guest-physical window of the shared region, host programs over an
//! `mmap`ed file.
#![allow(unsafe_code)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::region::Region;

/// Shared memory another VM or process may write at any time, reached with
/// atomics for control words and plain copies for bulk data.
///
/// No Rust reference to the bytes is ever created except the short-lived
/// atomic ones, so concurrent writers elsewhere cannot invalidate
/// assumptions the compiler makes about references. Accesses outside the
/// region or misaligned atomics panic (a caller bug, see [`Region`]).
#[derive(Debug)]
pub struct MappedRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory reached only through atomics and
// copies whose races the protocols order with release/acquire flags; the
// pointer is not tied to a thread.
unsafe impl Send for MappedRegion {}
// SAFETY: as for `Send`: every method takes `&self` and uses atomics or
// copies only.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// A region over `len` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be 8-byte aligned and `base..base + len` valid for reads
    /// and writes for the whole life of the returned value (and of anything
    /// it is moved into); nothing else in this program may hold a Rust
    /// reference into that memory while it is in use.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        assert!(
            (base.as_ptr() as usize).is_multiple_of(8),
            "shared region base {base:p} is not 8-byte aligned"
        );
        Self { base, len }
    }

    /// The address of the first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Pointer to `offset` after checking `offset + size` and alignment.
    fn at(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            offset.is_multiple_of(align) && offset.checked_add(size).is_some_and(|e| e <= self.len),
            "region access {offset:#x}+{size:#x} misaligned or outside {:#x} bytes",
            self.len
        );
        // SAFETY: `offset + size <= len`, so the result stays inside the
        // allocation `new`'s caller vouched for.
        unsafe { self.base.as_ptr().add(offset) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let ptr = self.at(offset, 4, 4).cast::<u32>();
        // SAFETY: in bounds and 4-aligned (checked by `at`, base is 8-aligned),
        // valid for the life of `self`; other parties access control words
        // only atomically.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let ptr = self.at(offset, 8, 8).cast::<u64>();
        // SAFETY: as in `u32_at`, with 8-byte alignment.
        unsafe { AtomicU64::from_ptr(ptr) }
    }
}

impl Region for MappedRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32(&self, offset: usize) -> u32 {
        self.u32_at(offset).load(Ordering::SeqCst)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.u32_at(offset).store(value, Ordering::SeqCst);
    }

    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.u32_at(offset)
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
    }

    fn load_u64(&self, offset: usize) -> u64 {
        self.u64_at(offset).load(Ordering::SeqCst)
    }

    fn store_u64(&self, offset: usize, value: u64) {
        self.u64_at(offset).store(value, Ordering::SeqCst);
    }

    fn compare_exchange_u64(&self, offset: usize, current: u64, new: u64) -> Result<u64, u64> {
        self.u64_at(offset)
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        let src = self.at(offset, buf.len(), 1);
        // SAFETY: `src..src + buf.len()` is inside the region (checked by
        // `at`) and cannot overlap `buf`, which is ordinary memory we hold a
        // unique reference to. Bytes being written concurrently come out
        // torn, which the protocols exclude (see `Region`).
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    }

    fn write(&self, offset: usize, data: &[u8]) {
        let dst = self.at(offset, data.len(), 1);
        // SAFETY: as in `read`, with the roles of source and destination
        // swapped.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Ircce, PollNotify};
    use std::vec;

    /// A leaked, zeroed, 8-aligned buffer standing in for a shared mapping.
    fn region(len: usize) -> MappedRegion {
        let words = vec![0u64; len.div_ceil(8)].leak();
        let base = NonNull::new(words.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the leaked buffer lives for the rest of the test process
        // and nothing else references it.
        unsafe { MappedRegion::new(base, len) }
    }

    #[test]
    fn atomics_and_copies() {
        let r = region(64);
        r.store_u32(4, 7);
        assert_eq!(r.compare_exchange_u32(4, 7, 9), Ok(7));
        assert_eq!(r.compare_exchange_u32(4, 7, 1), Err(9));
        r.store_u64(8, u64::MAX);
        assert_eq!(r.load_u64(8), u64::MAX);
        r.write(17, b"hello");
        let mut back = [0u8; 5];
        r.read(17, &mut back);
        assert_eq!(&back, b"hello");
        assert_eq!(r.fetch_add_u32(4, 1), 9);
        assert_eq!(r.load_u32(4), 10);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_bounds_panics() {
        region(16).read(10, &mut [0u8; 7]);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_atomic_panics() {
        region(16).load_u32(2);
    }

    #[test]
    fn ircce_between_threads() {
        let r: &'static MappedRegion = std::boxed::Box::leak(std::boxed::Box::new(region(1 << 20)));
        let config = Config::new(2);
        let peer = std::thread::spawn(move || {
            let b = Ircce::init(r, PollNotify, 1, config).unwrap();
            let mut buf = vec![0u8; 100_000];
            b.recv(&mut buf, 0).unwrap();
            b.send(&buf, 0).unwrap();
        });
        let a = Ircce::init(r, PollNotify, 0, config).unwrap();
        let data: std::vec::Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        a.send(&data, 1).unwrap();
        let mut back = vec![0u8; data.len()];
        a.recv(&mut back, 1).unwrap();
        assert_eq!(back, data);
        peer.join().unwrap();
    }
}
