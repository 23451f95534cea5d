//! The kernel's portable virtual file system: path normalisation
//! ([`path`]), one [`Vfs`] with a mount table, a file-descriptor table and a
//! working directory, an in-memory file system ([`memfs::MemFs`], the root
//! and `/tmp`) and the client side of the host file-system protocol
//! ([`hostfs::HostFs`]) that reaches the directories the user mapped into
//! the VM.
//!
//! Everything here is plain logic over two traits: a mounted
//! [`FileSystem`] hands out open [`File`]s. The crate touches no hardware:
//! the kernel implements [`hostfs::HostTransport`] (a uhyve hypercall or the
//! QEMU byte stream) and its console as a [`File`], so the whole crate is
//! tested on the host with fakes. Locks are spin locks held only to look
//! something up in a table; I/O runs on an `Arc` cloned out of it.
//!
//! It is not a POSIX layer: there are no permissions checks, owners, umask,
//! symbolic links (the host resolves its own, within a mount), hard links,
//! `O_CLOEXEC` (there is no `exec`), file locks, `poll` or pipes. Paths are
//! resolved lexically: `..` is applied before any file system sees the path,
//! which is only equivalent to POSIX resolution because nothing here
//! creates symbolic links.
//!
//! ```
//! use hermit_fs::{OpenFlags, SeekFrom, Vfs};
//!
//! let vfs = Vfs::new();
//! let fd = vfs.open("/tmp/hello", OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
//! vfs.write(fd, b"hello world")?;
//! vfs.lseek(fd, SeekFrom::Start(6))?;
//! let mut buf = [0; 16];
//! let n = vfs.read(fd, &mut buf)?;
//! assert_eq!(&buf[..n], b"world");
//! vfs.close(fd)?;
//! assert_eq!(vfs.stat("/tmp/../tmp/hello")?.size, 11);
//! # Ok::<(), hermit_fs::Errno>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod hostfs;
pub mod memfs;
pub mod path;
mod types;
mod vfs;

pub use hermit_interface::errno::Errno;
pub use hermit_interface::fs::FileStat;
pub use types::{DirEntry, File, FileSystem, FileType, OpenFlags, SeekFrom};
pub use vfs::{MAX_FDS, Vfs};

/// The result of every file-system operation.
pub type Result<T> = core::result::Result<T, Errno>;
