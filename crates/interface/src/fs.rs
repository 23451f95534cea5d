//! The host file-system protocol: how a guest reaches the host directories
//! the user mapped into it (`uhyve --mount HOST:GUEST`, `HERMIT_MOUNT`).
//!
//! Every operation is one [`FsCall`] block. Under uhyve the guest puts it
//! in a slot of its file-call [`queue`], which a host thread polls (no VM
//! exit while it does), or issues the [`Nr::Fs`](crate::hypercall::Nr::Fs)
//! hypercall with the block's guest-physical address (one VM exit per
//! call); either way the host reads and writes the buffers the block names
//! directly in guest memory. Under QEMU the same block travels over a byte
//! stream (see [`stream`]).
//!
//! The guest never names a host path: path operations carry a *mount index*
//! (`0..n`, see [`Op::MountInfo`]) and a path relative to that mount, and the
//! host resolves it beneath the mapped directory (no `..` above it, no
//! absolute paths, no symlinks leading out of it, no device files). Open
//! files are *handles*, small integers of the host's per-VM table; handle
//! [`STDIN_HANDLE`] is the host's standard input, and handles
//! [`STDOUT_HANDLE`] and [`STDERR_HANDLE`] its standard output and error.
//!
//! Results follow the Linux convention: a non-negative value on success, a
//! negative [`Errno`](crate::errno::Errno) value on failure.

use crate::PhysSlice;

/// The file-call queue: a page of guest memory where the guest puts
/// [`FsCall`]s and the host (uhyve) takes them, with no VM exit while the
/// host polls it.
///
/// Registered once with [`Nr::FsQueue`](crate::hypercall::Nr::FsQueue).
/// The page holds a header and [`SLOTS`](queue::SLOTS) slots. A slot is a
/// `u32` state at its start and an [`FsCall`] at [`CALL`](queue::CALL):
///
/// 1. The guest claims a `FREE` slot (it keeps its own record of which are
///    free), writes the call, then stores `SUBMITTED` (sequentially
///    consistent).
/// 2. It reads the header's `AWAKE` flag (sequentially consistent). If it
///    is 0 the host's poller sleeps, and the guest issues
///    [`Nr::FsKick`](crate::hypercall::Nr::FsKick) with the slot's index
///    at once; otherwise it waits a little for `DONE` first, and kicks if
///    the call takes long (so that it does not spin through, say, a read
///    of a terminal).
/// 3. The host claims the slot by turning `SUBMITTED` into `TAKEN`, copies
///    the call out, runs it as it runs an `Fs` hypercall, writes `result`
///    and stores `DONE` (release).
/// 4. The guest sees `DONE` (acquire), reads `result` and stores `FREE`.
///
/// The host sets `AWAKE` to 1 while it polls and to 0 before it sleeps,
/// then looks at every slot once more, so that a call submitted in between
/// is never left waiting. It acts only on slots in `SUBMITTED` and only
/// ever writes `result` and the state, so a guest that scribbles over the
/// page harms only its own calls.
pub mod queue {
    /// Size of the queue's page.
    pub const PAGE: usize = 4096;
    /// Offset of the host's `u32` polling flag: 1 while it polls.
    pub const AWAKE: usize = 0;
    /// Bytes before the first slot.
    pub const HEADER: usize = 128;
    /// Bytes per slot.
    pub const SLOT_SIZE: usize = 128;
    /// Number of slots.
    pub const SLOTS: usize = (PAGE - HEADER) / SLOT_SIZE;
    /// Offset of the [`super::FsCall`] in a slot.
    pub const CALL: usize = 8;
    /// Slot state: free (the guest's).
    pub const FREE: u32 = 0;
    /// Slot state: a call waits for the host.
    pub const SUBMITTED: u32 = 1;
    /// Slot state: the host stored the result.
    pub const DONE: u32 = 2;
    /// Slot state: the host is running the call.
    pub const TAKEN: u32 = 3;

    /// Offset of slot `i` in the page.
    pub const fn slot(i: usize) -> usize {
        HEADER + i * SLOT_SIZE
    }

    const _: () = assert!(CALL + super::FsCall::SIZE <= SLOT_SIZE);
}

/// Generates `to_le_bytes`/`from_le_bytes` for a `repr(C)` record made of
/// integer fields (and `PhysSlice`s, as two `u64`s), so every side encodes
/// the protocol the same way without reinterpreting memory.
macro_rules! le_codec {
    ($ty:ident { $($field:ident $(. $sub:ident)? : $t:ty),* $(,)? }) => {
        impl $ty {
            /// Size of the encoded record.
            pub const SIZE: usize = core::mem::size_of::<Self>();

            /// The record's bytes (little-endian, `repr(C)` layout).
            pub fn to_le_bytes(&self) -> [u8; Self::SIZE] {
                let mut out = [0u8; Self::SIZE];
                $(
                    let at = core::mem::offset_of!($ty, $field $(. $sub)?);
                    out[at..at + core::mem::size_of::<$t>()]
                        .copy_from_slice(&self.$field $(. $sub)?.to_le_bytes());
                )*
                out
            }

            /// The record in the first [`Self::SIZE`] bytes of `b`, if
            /// there are that many.
            pub fn from_le_bytes(b: &[u8]) -> Option<Self> {
                let b = b.get(..Self::SIZE)?;
                let mut v = Self::default();
                $(
                    let at = core::mem::offset_of!($ty, $field $(. $sub)?);
                    let mut raw = [0u8; core::mem::size_of::<$t>()];
                    raw.copy_from_slice(&b[at..at + core::mem::size_of::<$t>()]);
                    v.$field $(. $sub)? = <$t>::from_le_bytes(raw);
                )*
                Some(v)
            }
        }
    };
}

/// The host's standard input (readable only).
pub const STDIN_HANDLE: i32 = 0;
/// The host's standard output (writable only).
pub const STDOUT_HANDLE: i32 = 1;
/// The host's standard error (writable only).
pub const STDERR_HANDLE: i32 = 2;
/// The longest path (in bytes) the host accepts.
pub const PATH_MAX: u64 = 4096;

/// Operations of the host file-system protocol (`FsCall::op`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Writes the guest path of mount `handle` (UTF-8, no NUL) into `buf`;
    /// result: its length, `-ENOENT` past the last mount, `-ERANGE` if `buf`
    /// is too small.
    MountInfo = 0,
    /// Opens `path` on mount `handle` with `flags` ([`open_flags`]) and
    /// `mode` (permission bits, `& 0o777`); result: a new handle.
    Open = 1,
    /// Closes `handle`; result 0.
    Close = 2,
    /// Reads up to `buf.len` bytes at the file position into `buf`; result:
    /// bytes read, 0 at end of file.
    Read = 3,
    /// Writes `buf` at the file position (at the end with `O_APPEND`);
    /// result: bytes written.
    Write = 4,
    /// Like `Read` at byte `offset`, leaving the position alone.
    Pread = 5,
    /// Like `Write` at byte `offset`, leaving the position alone.
    Pwrite = 6,
    /// Moves the position by `offset` relative to `whence` ([`whence`]);
    /// result: the new position.
    Lseek = 7,
    /// Stores a [`FileStat`] of `handle` into `buf` (which must be at least
    /// `size_of::<FileStat>()` long); result 0.
    Fstat = 8,
    /// Stores a [`FileStat`] of `path` on mount `handle` into `buf`;
    /// `flags` is [`STAT_NOFOLLOW`] or 0 (follow a final symlink, within the
    /// mount only). Result 0.
    Stat = 9,
    /// Removes the non-directory `path` on mount `handle`; result 0.
    Unlink = 10,
    /// Creates directory `path` on mount `handle` with `mode`; result 0.
    Mkdir = 11,
    /// Removes the empty directory `path` on mount `handle`; result 0.
    Rmdir = 12,
    /// Renames `path` on mount `handle` to `path2` on mount `flags`
    /// (`-EXDEV` if the mounts differ); result 0.
    Rename = 13,
    /// Fills `buf` with directory entries of the directory `handle`, each a
    /// [`DirEntryHeader`] followed by the name (no NUL), padded to 8 bytes
    /// (`DirEntryHeader::record_len`); result: bytes stored, 0 at the end.
    /// Entries `.` and `..` are not reported. The first call starts at the
    /// beginning; an entry that does not fit waits for the next call
    /// (`-EINVAL` if not even one fits).
    ReadDir = 14,
    /// Truncates or extends the open file `handle` to `offset` bytes;
    /// result 0.
    Ftruncate = 15,
}

impl Op {
    /// The operation with number `raw`, if any.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => Self::MountInfo,
            1 => Self::Open,
            2 => Self::Close,
            3 => Self::Read,
            4 => Self::Write,
            5 => Self::Pread,
            6 => Self::Pwrite,
            7 => Self::Lseek,
            8 => Self::Fstat,
            9 => Self::Stat,
            10 => Self::Unlink,
            11 => Self::Mkdir,
            12 => Self::Rmdir,
            13 => Self::Rename,
            14 => Self::ReadDir,
            15 => Self::Ftruncate,
            _ => return None,
        })
    }
}

/// The parameter block of one file-system operation. Which fields an
/// operation reads is listed at [`Op`]; unused fields are ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsCall {
    /// An [`Op`] value.
    pub op: u32,
    /// An open handle, or a mount index for path operations.
    pub handle: i32,
    /// Open flags, stat flags, or the second mount index of `Rename`.
    pub flags: u32,
    /// Permission bits for `Open` with `O_CREAT` and `Mkdir`.
    pub mode: u32,
    /// Path relative to the mount (UTF-8, no NUL, `/`-separated).
    pub path: PhysSlice,
    /// Second path (`Rename`'s target).
    pub path2: PhysSlice,
    /// Data buffer.
    pub buf: PhysSlice,
    /// File offset for `Pread`, `Pwrite`, `Lseek`, `Ftruncate`.
    pub offset: i64,
    /// [`whence`] value for `Lseek`.
    pub whence: u32,
    /// Zero.
    pub _reserved: u32,
    /// Set by the host: the result (see [`Op`]) or a negative errno.
    pub result: i64,
}

impl FsCall {
    /// How many bytes of the call's buffer a call that returned `result`
    /// filled in: the count for reads, directory records and the mount
    /// list, one [`FileStat`] for a successful stat, nothing otherwise.
    pub fn stored_len(&self, result: i64) -> u64 {
        let Ok(n) = u64::try_from(result) else {
            return 0;
        };
        match Op::from_raw(self.op) {
            Some(Op::Read | Op::Pread | Op::ReadDir | Op::MountInfo) => n,
            Some(Op::Fstat | Op::Stat) => FileStat::SIZE as u64,
            _ => 0,
        }
    }
}

/// `FsCall::flags` of `Op::Open`: Linux's values. Any other bit is refused
/// with `EINVAL`; the host adds `O_CLOEXEC` and `O_NOCTTY` by itself.
pub mod open_flags {
    /// Read only (access mode 0).
    pub const O_RDONLY: u32 = 0;
    /// Write only.
    pub const O_WRONLY: u32 = 1;
    /// Read and write.
    pub const O_RDWR: u32 = 2;
    /// Mask of the access mode bits.
    pub const O_ACCMODE: u32 = 3;
    /// Create the file if it does not exist.
    pub const O_CREAT: u32 = 0o100;
    /// With `O_CREAT`: fail if it exists.
    pub const O_EXCL: u32 = 0o200;
    /// Truncate to length 0.
    pub const O_TRUNC: u32 = 0o1000;
    /// Every write goes to the end.
    pub const O_APPEND: u32 = 0o2000;
    /// Fail unless the path is a directory.
    pub const O_DIRECTORY: u32 = 0o200000;
    /// Every flag a guest may pass.
    pub const ALLOWED: u32 = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY;
}

/// `FsCall::whence` of `Op::Lseek`.
pub mod whence {
    /// From the start of the file.
    pub const SEEK_SET: u32 = 0;
    /// From the current position.
    pub const SEEK_CUR: u32 = 1;
    /// From the end of the file.
    pub const SEEK_END: u32 = 2;
}

/// `FsCall::flags` of `Op::Stat`: do not follow a final symlink.
pub const STAT_NOFOLLOW: u32 = 1;

/// File type bits of `FileStat::mode` (Linux values).
pub mod file_type {
    /// Mask of the type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
}

/// File status as the host reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStat {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Type ([`file_type`]) and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Zero.
    pub _reserved: u32,
    /// Size in bytes.
    pub size: i64,
    /// Preferred I/O block size.
    pub blksize: i64,
    /// Allocated 512-byte blocks.
    pub blocks: i64,
    /// Last access, seconds since the Unix epoch.
    pub atime_sec: i64,
    /// Nanoseconds part of `atime_sec`.
    pub atime_nsec: i64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime_sec: i64,
    /// Nanoseconds part of `mtime_sec`.
    pub mtime_nsec: i64,
    /// Last status change, seconds since the Unix epoch.
    pub ctime_sec: i64,
    /// Nanoseconds part of `ctime_sec`.
    pub ctime_nsec: i64,
}

/// Header of one `Op::ReadDir` record; the name follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirEntryHeader {
    /// Inode number.
    pub ino: u64,
    /// Bytes from this header to the next one (header, name, padding to a
    /// multiple of 8).
    pub record_len: u32,
    /// Length of the name in bytes.
    pub name_len: u16,
    /// File type: the [`file_type`] bits shifted right by 12 (Linux `DT_*`
    /// values), 0 if unknown.
    pub kind: u16,
}

impl DirEntryHeader {
    /// The record length for a name of `name_len` bytes.
    pub const fn record_len_for(name_len: usize) -> usize {
        (core::mem::size_of::<Self>() + name_len).next_multiple_of(8)
    }

    /// Stores the record for `name` (header, name, zero padding) at the
    /// start of `buf`; its length, or `None` if it does not fit or the name
    /// is longer than `u16::MAX`.
    pub fn put_record(buf: &mut [u8], ino: u64, kind: u16, name: &[u8]) -> Option<usize> {
        let len = Self::record_len_for(name.len());
        let header = Self {
            ino,
            record_len: u32::try_from(len).ok()?,
            name_len: u16::try_from(name.len()).ok()?,
            kind,
        };
        let record = buf.get_mut(..len)?;
        record.fill(0);
        record[..Self::SIZE].copy_from_slice(&header.to_le_bytes());
        record[Self::SIZE..Self::SIZE + name.len()].copy_from_slice(name);
        Some(len)
    }
}

le_codec!(DirEntryHeader {
    ino: u64,
    record_len: u32,
    name_len: u16,
    kind: u16
});

le_codec!(FileStat {
    dev: u64,
    ino: u64,
    nlink: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    _reserved: u32,
    size: i64,
    blksize: i64,
    blocks: i64,
    atime_sec: i64,
    atime_nsec: i64,
    mtime_sec: i64,
    mtime_nsec: i64,
    ctime_sec: i64,
    ctime_nsec: i64,
});

le_codec!(FsCall {
    op: u32, handle: i32, flags: u32, mode: u32,
    path.addr: u64, path.len: u64, path2.addr: u64, path2.len: u64,
    buf.addr: u64, buf.len: u64,
    offset: i64, whence: u32, _reserved: u32, result: i64,
});

/// The byte-stream form of the protocol (QEMU: a virtio console connected to
/// the proxy).
///
/// A request is an [`FsCall`] (little-endian, `repr(C)` layout) whose
/// `PhysSlice::addr` fields are ignored, followed by `path.len` bytes of
/// path, `path2.len` bytes of second path and, for `Write` and `Pwrite`,
/// `buf.len` bytes of data. The answer is a [`StreamReply`] followed by
/// `data_len` bytes: the bytes a `Read`, `Pread`, `Fstat`, `Stat`,
/// `ReadDir` or `MountInfo` stored into `buf`. `buf.len` is at most
/// [`MAX_DATA`](stream::MAX_DATA) (a guest splits larger I/O; reads and
/// writes may be short anyway); a request over that ends the session.
///
/// Only one request is in flight, and it must fit the host socket's buffer:
/// QEMU's virtio console drops what it cannot write to its chardev at once
/// (it does not throttle console ports), so a request never exceeds
/// `MAX_DATA` plus two paths.
pub mod stream {
    /// The most data one request may carry or ask for.
    pub const MAX_DATA: u64 = 64 << 10;

    /// The answer header.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct StreamReply {
        /// `FsCall::result`.
        pub result: i64,
        /// Number of data bytes that follow.
        pub data_len: u64,
    }

    le_codec!(StreamReply {
        result: i64,
        data_len: u64
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_field_by_field() {
        let call = FsCall {
            op: 4,
            handle: -3,
            flags: 0o1101,
            mode: 0o644,
            path: PhysSlice {
                addr: 0x1000,
                len: 7,
            },
            path2: PhysSlice {
                addr: 0x2000,
                len: 9,
            },
            buf: PhysSlice {
                addr: 0x3000,
                len: 1 << 20,
            },
            offset: -5,
            whence: 2,
            _reserved: 0,
            result: -22,
        };
        let bytes = call.to_le_bytes();
        assert_eq!(&bytes[..4], &4u32.to_le_bytes());
        assert_eq!(
            &bytes[40..48],
            &9u64.to_le_bytes(),
            "path2.len at offset 40"
        );
        assert_eq!(FsCall::from_le_bytes(&bytes), Some(call));
        assert_eq!(FsCall::from_le_bytes(&bytes[1..]), None);
        let st = FileStat {
            ino: 9,
            mode: 0o100644,
            size: 12,
            ctime_nsec: 7,
            ..FileStat::default()
        };
        assert_eq!(FileStat::from_le_bytes(&st.to_le_bytes()), Some(st));
        let reply = stream::StreamReply {
            result: -2,
            data_len: 3,
        };
        assert_eq!(
            stream::StreamReply::from_le_bytes(&reply.to_le_bytes()),
            Some(reply)
        );
    }

    #[test]
    fn dirent_records_are_padded_and_bounded() {
        let mut buf = [0xffu8; 32];
        let n = DirEntryHeader::put_record(&mut buf, 5, 8, b"abc").unwrap();
        assert_eq!(n, 24);
        let h = DirEntryHeader::from_le_bytes(&buf).unwrap();
        assert_eq!((h.ino, h.record_len, h.name_len, h.kind), (5, 24, 3, 8));
        assert_eq!(&buf[16..24], b"abc\0\0\0\0\0");
        assert_eq!(buf[24], 0xff, "nothing written past the record");
        assert_eq!(
            DirEntryHeader::put_record(&mut buf[..23], 5, 8, b"abc"),
            None
        );
    }
}
