//! How the server reaches the memory an [`FsCall`](hermit_interface::fs::FsCall)
//! names: the transport (uhyve: guest memory; a byte stream: `Vec`s)
//! implements [`CallBuffers`].

use std::marker::PhantomData;

use hermit_interface::errno::Errno;

/// Which path of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathArg {
    /// `FsCall::path`.
    Path,
    /// `FsCall::path2` (`Rename`'s target).
    Path2,
}

/// The memory behind one call's `path`, `path2` and `buf`, supplied by the
/// transport. The server asks for a path only after checking its length in
/// the `FsCall` (at most [`PATH_MAX`](hermit_interface::fs::PATH_MAX)
/// bytes), and for the data buffer only for operations that use it.
pub trait CallBuffers {
    /// A copy of the path's bytes (copied, so a guest changing them after the
    /// server checked them changes nothing). `EFAULT` if the caller's
    /// memory does not hold them.
    fn path(&mut self, which: PathArg) -> Result<Vec<u8>, Errno>;

    /// The data buffer (`FsCall::buf`), which the server reads from
    /// (`Write`, `Pwrite`) or stores into (everything else) directly.
    /// `EFAULT` if the caller's memory does not hold it. A transport may
    /// return a shorter buffer than `buf.len` (a stream transport capping
    /// its allocation): a read or write then moves fewer bytes, which the
    /// protocol allows.
    fn data(&mut self) -> Result<DataBuf<'_>, Errno>;
}

/// A writable byte buffer the server hands to `read(2)`/`write(2)` and
/// friends as a raw pointer, so file data moves between the host kernel and
/// guest memory without a copy through the server.
///
/// The memory may be shared with a running guest that changes it at any
/// time, so the server never forms a Rust reference to it: it passes the
/// pointer to system calls or stores with volatile writes.
#[derive(Debug)]
pub struct DataBuf<'a> {
    ptr: *mut u8,
    len: usize,
    _memory: PhantomData<&'a mut [u8]>,
}

impl<'a> DataBuf<'a> {
    /// A buffer over `bytes` (for byte-stream transports and tests).
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            _memory: PhantomData,
        }
    }

    /// An empty buffer (for zero-length `buf`s, whose address is not
    /// checked).
    pub fn empty() -> Self {
        Self {
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
            _memory: PhantomData,
        }
    }

    /// A buffer over raw memory, e.g. a bounds-checked slice of guest RAM.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid for reads and writes of bytes (any
    /// value) for all of `'a`, and not be accessed through Rust references
    /// while the buffer lives; concurrent changes by a guest (another vCPU,
    /// outside Rust's memory model) are fine, since the server only passes
    /// the pointer to system calls and uses volatile stores.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        Self {
            ptr,
            len,
            _memory: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the buffer, valid for `len` bytes of reads and writes.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    /// Stores `bytes` at the start of the buffer; `ERANGE` if they do not
    /// fit (nothing is stored then).
    pub(crate) fn store(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        if bytes.len() > self.len {
            return Err(Errno::ERANGE);
        }
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: `i < bytes.len() <= self.len`, inside the memory the
            // constructor's contract makes valid for writes; volatile
            // because a guest may look at or change the memory meanwhile.
            unsafe { self.ptr.add(i).write_volatile(*b) };
        }
        Ok(())
    }
}

/// [`CallBuffers`] over owned vectors: what a byte-stream transport
/// receives with a request (paths and, for `Write`/`Pwrite`, the data),
/// and a data buffer of the requested size for the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecBuffers {
    /// `FsCall::path`'s bytes.
    pub path: Vec<u8>,
    /// `FsCall::path2`'s bytes.
    pub path2: Vec<u8>,
    /// The data: the bytes to write, or room for the bytes to store.
    pub data: Vec<u8>,
}

impl CallBuffers for VecBuffers {
    fn path(&mut self, which: PathArg) -> Result<Vec<u8>, Errno> {
        Ok(match which {
            PathArg::Path => self.path.clone(),
            PathArg::Path2 => self.path2.clone(),
        })
    }

    fn data(&mut self) -> Result<DataBuf<'_>, Errno> {
        Ok(DataBuf::new(&mut self.data))
    }
}
