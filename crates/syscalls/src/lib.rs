//! The portable half of the `x86_64-unknown-hermit` system-call ABI: what
//! the kernel's `sys_*` symbols (declared by `hermit-abi` 0.5.2 and called
//! by Rust std) do, minus the symbols themselves.
//!
//! - [`abi`]: `#[repr(C)]` mirrors of the structures and the constants,
//!   with hermit-abi's values (tested against that crate).
//! - [`fd`]: one descriptor table for files and sockets ([`FdTable`],
//!   [`Object`]): lowest free descriptor first, `EMFILE`, `dup`/`dup2`
//!   sharing the open file description, `FD_CLOEXEC`, `O_NONBLOCK`.
//! - [`Syscalls`]: the table plus the backends (a hermit-fs [`Vfs`], a
//!   [`Clock`], with feature `net` a hermit-net `Stack`) and one method
//!   per `sys_*` symbol, returning exactly what the ABI returns (a result
//!   or a negative errno). Inside, everything is `Result<_, Errno>`;
//!   conversion happens only in those methods.
//! - The application's raw pointers become slices in one private module
//!   (`user`), which checks null, ranges, alignment and length bounds; the
//!   rest of the crate is safe code.
//!
//! Feature `net` adds sockets ([`socket::Socket`], a state machine from
//! `socket()` through bind/listen/connect), socket options, `poll` over
//! sockets and `getaddrinfo`; feature `dns` lets `getaddrinfo` resolve
//! names through hermit-net's resolver.
//!
//! It is not a POSIX layer: IPv4 only (`AF_INET6` gives `EAFNOSUPPORT`), no
//! `MSG_PEEK`, no `exec` (so `FD_CLOEXEC` is only remembered), no pipes or
//! eventfd, and `getdents64` returns a whole directory per call (see
//! [`file::FileObject`]).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod abi;
pub mod dirent;
pub mod fd;
pub mod file;
mod poll;
pub mod sockaddr;
#[cfg(feature = "net")]
pub mod socket;
mod syscalls;
mod user;

pub use fd::{Description, FdTable, MAX_FDS, Object};
pub use hermit_fs::Vfs;
pub use hermit_interface::errno::Errno;
pub use syscalls::{Clock, Syscalls};
