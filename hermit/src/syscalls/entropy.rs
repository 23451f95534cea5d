//! `sys_read_entropy`: random bytes for std (`HashMap` keys, `RandomState`).
//!
//! NOT cryptographically secure. The guest CPU has no `rdrand`/`rdseed`
//! and the VM no entropy device, so the bytes come from a SplitMix64
//! generator whose state is seeded with the TSC and the wall clock at first
//! use and stirred with the TSC on every call. That is enough to make hash
//! keys differ from run to run, not to make keys or nonces.

use core::sync::atomic::{AtomicU64, Ordering};

use hermit_interface::errno::Errno;

use super::fail_isize;

/// `getrandom`'s `GRND_NONBLOCK` and `GRND_RANDOM`, accepted and ignored
/// (the generator never blocks).
const KNOWN_FLAGS: u32 = 0x1 | 0x2;

/// The generator's state (0: not seeded yet).
static STATE: AtomicU64 = AtomicU64::new(0);
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 random bits (not cryptographic, see the module docs); also the
/// network stack's source for port numbers and sequence numbers.
pub(crate) fn random_u64() -> u64 {
    if STATE.load(Ordering::Relaxed) == 0 {
        let wall = crate::time::SystemTime::now()
            .duration_since(crate::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = mix(arch_x86_64::cpu::rdtsc() ^ mix(wall)) | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let s = STATE.fetch_add(GOLDEN, Ordering::Relaxed);
    mix(s.wrapping_add(GOLDEN) ^ arch_x86_64::cpu::rdtsc().rotate_left(17))
}

/// Fills `len` bytes at `buf` with (non-cryptographic, see the module
/// docs) random bytes; returns `len` (at most `isize::MAX`), or `-EINVAL`
/// for unknown flags, `-EFAULT` for a null buffer.
///
/// # Safety
/// `buf` is null or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_read_entropy(buf: *mut u8, len: usize, flags: u32) -> isize {
    if flags & !KNOWN_FLAGS != 0 {
        return fail_isize(Errno::EINVAL);
    }
    let len = len.min(isize::MAX as usize);
    if len == 0 {
        return 0;
    }
    if buf.is_null() {
        return fail_isize(Errno::EFAULT);
    }
    // SAFETY: non-null, `len` writable bytes by the caller's promise.
    let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    for chunk in out.chunks_mut(8) {
        let word = random_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    len as isize
}
