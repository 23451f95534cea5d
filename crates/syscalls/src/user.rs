//! The only place that turns the application's raw pointers into Rust
//! references.
//!
//! Contract: the kernel and the application share one address space and
//! one privilege domain (a unikernel), so the kernel trusts the
//! application's pointers the way a C library trusts its caller: a pointer
//! the ABI says is valid for `len` bytes is assumed to be mapped and not
//! concurrently written. What *can* be checked is checked here, before any
//! reference exists: null (`EFAULT`), an address range that wraps or
//! exceeds `isize::MAX` (`EFAULT`), the alignment of typed arrays
//! (`EFAULT`), string length bounds (`ENAMETOOLONG`) and counts (`EINVAL`).
//! Zero-length buffers never touch their pointer (it may be null or
//! dangling, as std passes for empty slices).
//!
//! Every function here is `unsafe` with that contract spelled out; the rest
//! of the crate works on slices.

use core::mem::{align_of, size_of};

use crate::Errno;
use crate::abi::{IOV_MAX, iovec};

/// Checks that `len` bytes from `addr` neither wrap nor exceed
/// `isize::MAX` (what `slice::from_raw_parts` requires).
fn check_range(addr: usize, len: usize) -> Result<(), Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if addr == 0 || len > isize::MAX as usize || end > isize::MAX as usize + 1 {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// The bytes of a NUL-terminated string at `ptr`, without the NUL.
/// `EFAULT` for null, `ENAMETOOLONG` if no NUL is found within `max` bytes
/// (so the longest accepted string has `max - 1` bytes).
///
/// # Safety
/// `ptr` is null or points to readable bytes up to and including a NUL or
/// to at least `max` readable bytes, unchanged while the result lives.
pub(crate) unsafe fn c_str<'a>(ptr: *const u8, max: usize) -> Result<&'a [u8], Errno> {
    if ptr.is_null() {
        return Err(Errno::EFAULT);
    }
    for len in 0..max {
        // `len` bytes were readable so far; the range cannot wrap.
        check_range(ptr as usize, len + 1)?;
        // SAFETY: the caller guarantees readability up to the NUL or `max`
        // bytes; `len < max` and no NUL came before.
        if unsafe { ptr.add(len).read() } == 0 {
            // SAFETY: `len` readable bytes at `ptr` (checked range), not
            // written while the result lives (caller's contract).
            return Ok(unsafe { core::slice::from_raw_parts(ptr, len) });
        }
    }
    Err(Errno::ENAMETOOLONG)
}

/// `len` bytes at `ptr` (empty without touching `ptr` if `len` is 0).
///
/// # Safety
/// If `len > 0` and `ptr` is not null, `ptr` points to `len` readable
/// bytes not written while the result lives.
pub(crate) unsafe fn slice<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Errno> {
    if len == 0 {
        return Ok(&[]);
    }
    check_range(ptr as usize, len)?;
    // SAFETY: non-null, range checked, readable per the caller.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// `len` writable bytes at `ptr` (empty if `len` is 0).
///
/// # Safety
/// If `len > 0` and `ptr` is not null, `ptr` points to `len` writable
/// bytes that nothing else accesses while the result lives.
pub(crate) unsafe fn slice_mut<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8], Errno> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_range(ptr as usize, len)?;
    // SAFETY: non-null, range checked, exclusive and writable per the
    // caller.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// `n` elements of `T` at `ptr`; `EFAULT` if misaligned.
///
/// # Safety
/// If `n > 0` and `ptr` is not null, `ptr` points to `n` initialised `T`s
/// not written while the result lives.
pub(crate) unsafe fn array<'a, T>(ptr: *const T, n: usize) -> Result<&'a [T], Errno> {
    if n == 0 {
        return Ok(&[]);
    }
    let bytes = n.checked_mul(size_of::<T>()).ok_or(Errno::EFAULT)?;
    check_range(ptr as usize, bytes)?;
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(Errno::EFAULT);
    }
    // SAFETY: non-null, aligned, range checked; initialised per the caller.
    Ok(unsafe { core::slice::from_raw_parts(ptr, n) })
}

/// `n` mutable elements of `T` at `ptr`; `EFAULT` if misaligned.
///
/// # Safety
/// If `n > 0` and `ptr` is not null, `ptr` points to `n` initialised `T`s
/// that nothing else accesses while the result lives, and every bit
/// pattern written through the result is one the application accepts.
pub(crate) unsafe fn array_mut<'a, T>(ptr: *mut T, n: usize) -> Result<&'a mut [T], Errno> {
    if n == 0 {
        return Ok(&mut []);
    }
    let bytes = n.checked_mul(size_of::<T>()).ok_or(Errno::EFAULT)?;
    check_range(ptr as usize, bytes)?;
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(Errno::EFAULT);
    }
    // SAFETY: non-null, aligned, range checked; exclusive per the caller.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, n) })
}

/// Reads a `T` (any alignment) from `ptr`.
///
/// # Safety
/// `ptr` is null or points to `size_of::<T>()` readable bytes holding a
/// valid `T`.
pub(crate) unsafe fn read<T: Copy>(ptr: *const T) -> Result<T, Errno> {
    check_range(ptr as usize, size_of::<T>())?;
    // SAFETY: non-null, range checked, readable and valid per the caller;
    // `read_unaligned` has no alignment requirement.
    Ok(unsafe { ptr.read_unaligned() })
}

/// Writes `value` (any alignment) to `ptr`.
///
/// # Safety
/// `ptr` is null or points to `size_of::<T>()` writable bytes nothing else
/// accesses during the call.
pub(crate) unsafe fn write<T: Copy>(ptr: *mut T, value: T) -> Result<(), Errno> {
    check_range(ptr as usize, size_of::<T>())?;
    // SAFETY: non-null, range checked, writable per the caller.
    unsafe { ptr.write_unaligned(value) };
    Ok(())
}

/// The `iovec` array of `readv`/`writev`, checked: `EINVAL` for more than
/// `IOV_MAX` entries or a total length above `isize::MAX`, `EFAULT` for a
/// bad array or a null/wrapping buffer of non-zero length. The buffers
/// themselves are turned into slices one at a time by [`iov_slice`] and
/// [`iov_slice_mut`], so overlapping buffers never alias as `&mut`.
///
/// # Safety
/// As [`array`] for `n` `iovec`s at `iov`.
pub(crate) unsafe fn iovecs<'a>(iov: *const iovec, n: usize) -> Result<&'a [iovec], Errno> {
    if n > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    // SAFETY: forwarded contract.
    let vecs = unsafe { array(iov, n) }?;
    let mut total: usize = 0;
    for v in vecs {
        total = total.checked_add(v.iov_len).ok_or(Errno::EINVAL)?;
        if total > isize::MAX as usize {
            return Err(Errno::EINVAL);
        }
    }
    for v in vecs.iter().filter(|v| v.iov_len > 0) {
        check_range(v.iov_base as usize, v.iov_len)?;
    }
    Ok(vecs)
}

/// The buffer of one checked `iovec`, for reading.
///
/// # Safety
/// `v` came from [`iovecs`]; its buffer is readable and not written while
/// the result lives.
pub(crate) unsafe fn iov_slice<'a>(v: &iovec) -> Result<&'a [u8], Errno> {
    // SAFETY: forwarded contract.
    unsafe { slice(v.iov_base, v.iov_len) }
}

/// The buffer of one checked `iovec`, for writing.
///
/// # Safety
/// `v` came from [`iovecs`]; its buffer is writable and nothing else
/// accesses it while the result lives.
pub(crate) unsafe fn iov_slice_mut<'a>(v: &iovec) -> Result<&'a mut [u8], Errno> {
    // SAFETY: forwarded contract.
    unsafe { slice_mut(v.iov_base, v.iov_len) }
}

/// Stores an address for `accept`, `recvfrom`, `getsockname` and
/// `getpeername`: nothing if `addr` is null; else reads the room `*len`,
/// copies at most that many bytes of `bytes` (truncating silently, like
/// Linux) and stores the full length in `*len`. `EFAULT` if `addr` is set
/// but `len` is null, `EINVAL` if `*len` is negative as an `int`.
///
/// # Safety
/// `addr` is null, or `len` is null or points to a writable `socklen_t`
/// and `addr` to `*len` writable bytes.
#[cfg(any(test, feature = "net"))]
pub(crate) unsafe fn write_sockaddr(
    addr: *mut u8,
    len: *mut u32,
    bytes: &[u8],
) -> Result<(), Errno> {
    if addr.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded contract (null is rejected inside).
    let room = unsafe { read(len) }?;
    if i32::try_from(room).is_err() {
        return Err(Errno::EINVAL);
    }
    let n = bytes.len().min(room as usize);
    // SAFETY: `addr` has `room >= n` writable bytes per the caller.
    let out = unsafe { slice_mut(addr, n) }?;
    out.copy_from_slice(&bytes[..n]);
    let full = u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: as above.
    unsafe { write(len, full) }
}

/// One result block of `getaddrinfo`: the `addrinfo` and the address it
/// points to, allocated together (the `addrinfo` first, so a pointer to it
/// is a pointer to the block for [`free_addrinfo`]).
#[cfg(feature = "net")]
#[repr(C)]
struct AddrInfoBlock {
    info: crate::abi::addrinfo,
    addr: [u8; crate::sockaddr::SOCKADDR_IN_LEN],
}

/// Builds the `addrinfo` list of `getaddrinfo` from (address bytes,
/// socket type, protocol); null for an empty list. The application owns
/// it until it passes it to [`free_addrinfo`].
#[cfg(feature = "net")]
pub(crate) fn addrinfo_list(
    items: &[([u8; crate::sockaddr::SOCKADDR_IN_LEN], i32, i32)],
) -> *mut crate::abi::addrinfo {
    use alloc::boxed::Box;

    let mut head: *mut crate::abi::addrinfo = core::ptr::null_mut();
    // Back to front, so each block points at the next.
    for (addr, socktype, protocol) in items.iter().rev() {
        let mut block = Box::new(AddrInfoBlock {
            info: crate::abi::addrinfo {
                ai_flags: 0,
                ai_family: crate::abi::AF_INET,
                ai_socktype: *socktype,
                ai_protocol: *protocol,
                ai_addrlen: crate::sockaddr::SOCKADDR_IN_LEN as u32,
                ai_canonname: core::ptr::null_mut(),
                ai_addr: core::ptr::null_mut(),
                ai_next: head,
            },
            addr: *addr,
        });
        // The heap block does not move when the box does.
        block.info.ai_addr = (&raw mut block.addr).cast();
        head = Box::into_raw(block).cast();
    }
    head
}

/// Frees a list from [`addrinfo_list`].
///
/// # Safety
/// `head` is null or a list from [`addrinfo_list`], not freed yet and not
/// used afterwards.
#[cfg(feature = "net")]
pub(crate) unsafe fn free_addrinfo(mut head: *mut crate::abi::addrinfo) {
    use alloc::boxed::Box;

    while !head.is_null() {
        // SAFETY: every node is the first field of a boxed `repr(C)`
        // `AddrInfoBlock` (caller's contract), so the cast gives back the
        // box's pointer, owned by us from here on.
        let block = unsafe { Box::from_raw(head.cast::<AddrInfoBlock>()) };
        head = block.info.ai_next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_strings() {
        let s = b"/tmp/x\0junk";
        // SAFETY: a valid NUL-terminated string.
        assert_eq!(unsafe { c_str(s.as_ptr(), 4096) }, Ok(&b"/tmp/x"[..]));
        // SAFETY: null is checked.
        let r = unsafe { c_str(core::ptr::null(), 4096) };
        assert_eq!(r, Err(Errno::EFAULT));
        // SAFETY: reads at most 6 bytes of `s`.
        assert_eq!(unsafe { c_str(s.as_ptr(), 6) }, Err(Errno::ENAMETOOLONG));
        // SAFETY: 7 bytes, the 7th is the NUL.
        assert_eq!(unsafe { c_str(s.as_ptr(), 7) }, Ok(&b"/tmp/x"[..]));
        let long = vec![b'a'; 5000];
        // SAFETY: reads at most 4096 of the 5000 bytes.
        let r = unsafe { c_str(long.as_ptr(), 4096) };
        assert_eq!(r, Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn slices_and_ranges() {
        // SAFETY: zero length never touches the pointer.
        assert_eq!(unsafe { slice(core::ptr::null(), 0) }, Ok(&[][..]));
        // SAFETY: null is checked.
        assert_eq!(unsafe { slice(core::ptr::null(), 1) }, Err(Errno::EFAULT));
        // SAFETY: the range check rejects before any access.
        let r = unsafe { slice(usize::MAX as *const u8, 2) };
        assert_eq!(r, Err(Errno::EFAULT));
        // SAFETY: as above.
        let r = unsafe { slice(8 as *const u8, usize::MAX) };
        assert_eq!(r, Err(Errno::EFAULT));
        let words = [0u32; 4];
        let misaligned = (words.as_ptr() as usize + 1) as *const u32;
        // SAFETY: rejected before any access.
        assert_eq!(unsafe { array(misaligned, 1) }.err(), Some(Errno::EFAULT));
        // SAFETY: rejected: n * 4 overflows.
        let r = unsafe { array(words.as_ptr(), usize::MAX / 2) }.err();
        assert_eq!(r, Some(Errno::EFAULT));
    }

    #[test]
    fn iovec_limits() {
        let mut buf = [0u8; 8];
        let one = iovec {
            iov_base: buf.as_mut_ptr(),
            iov_len: buf.len(),
        };
        let many = vec![one; IOV_MAX + 1];
        // SAFETY: rejected on the count.
        let r = unsafe { iovecs(many.as_ptr(), IOV_MAX + 1) }.err();
        assert_eq!(r, Some(Errno::EINVAL));
        // SAFETY: IOV_MAX valid entries (all the same buffer, only read).
        assert!(unsafe { iovecs(many.as_ptr(), IOV_MAX) }.is_ok());
        let huge = [
            iovec {
                iov_base: 16 as *mut u8,
                iov_len: usize::MAX / 2,
            },
            iovec {
                iov_base: 16 as *mut u8,
                iov_len: usize::MAX / 2,
            },
        ];
        // SAFETY: rejected on the total before any buffer is touched.
        let r = unsafe { iovecs(huge.as_ptr(), 2) }.err();
        assert_eq!(r, Some(Errno::EINVAL));
        let null = [iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 1,
        }];
        // SAFETY: rejected on the null buffer.
        let r = unsafe { iovecs(null.as_ptr(), 1) }.err();
        assert_eq!(r, Some(Errno::EFAULT));
        let empty = [iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }];
        // SAFETY: a null buffer of length 0 is fine.
        assert!(unsafe { iovecs(empty.as_ptr(), 1) }.is_ok());
    }

    #[test]
    fn sockaddr_out_truncates() {
        let mut out = [0u8; 4];
        let mut len: u32 = 4;
        // SAFETY: `out` has `len` bytes.
        unsafe { write_sockaddr(out.as_mut_ptr(), &mut len, &[1, 2, 3, 4, 5, 6]) }.unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(len, 6);
        // SAFETY: null address: nothing written.
        unsafe { write_sockaddr(core::ptr::null_mut(), core::ptr::null_mut(), &[1]) }.unwrap();
        // SAFETY: null length with an address is rejected.
        let r = unsafe { write_sockaddr(out.as_mut_ptr(), core::ptr::null_mut(), &[1]) };
        assert_eq!(r, Err(Errno::EFAULT));
        let mut bad: u32 = u32::MAX;
        // SAFETY: a negative length is rejected before writing.
        let r = unsafe { write_sockaddr(out.as_mut_ptr(), &mut bad, &[1]) };
        assert_eq!(r, Err(Errno::EINVAL));
    }
}
