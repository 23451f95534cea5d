//! hermit-hostfs: the host side of host-directory mapping. A [`Server`]
//! serves the guest's [`FsCall`](hermit_interface::fs::FsCall) operations
//! (protocol in [`hermit_interface::fs`]) on the host directories the user
//! mapped with `--mount HOST:GUEST` ([`Mount`]), whatever carries them:
//! uhyve (its file-call queue or `Fs` hypercall) hands it guest memory
//! directly through [`CallBuffers`] and [`DataBuf`] (file data moves
//! between the host kernel and guest RAM without a copy), a byte-stream
//! transport uses [`VecBuffers`].
//!
//! # What the guest can reach
//!
//! Only what was mapped. Every path is resolved with `openat2` beneath the
//! mount's directory descriptor (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`):
//! absolute paths are refused (`EINVAL`), and `..` above the mount or a
//! symlink leading out of it fails with `EACCES` (symlinks that stay inside
//! work). Unlink, mkdir, rmdir and rename resolve the parent that way and
//! act on the last component with the `*at` call (which must be a name, not
//! empty, `.` or `..`: `EINVAL`). Only regular files and directories are
//! opened: the type is checked on an `O_PATH` descriptor first, then the
//! file is opened with `O_NONBLOCK` (cleared afterwards) and must be the
//! same inode, so devices, FIFOs and sockets are never opened (`EACCES`).
//! Paths are UTF-8 without NUL (`EINVAL`) and at most `PATH_MAX` bytes
//! (`ENAMETOOLONG`); open flags outside `open_flags::ALLOWED` are refused
//! (`EINVAL`), the host adds `O_CLOEXEC | O_NOCTTY`, and modes are masked
//! with `0o777`. Handles are per VM (0-2: the host's stdin, stdout and
//! stderr, at most [`MAX_HANDLES`], `EMFILE` beyond); unknown handles give
//! `EBADF`, buffers the transport cannot map `EFAULT`. With no mount, every
//! path operation fails with `ENOENT`. The server never panics on a call.
//!
//! # Not here
//!
//! The transports themselves (uhyve decodes the hypercall, the proxy will
//! frame the QEMU stream), symlink creation and `readlink`, `fsync`,
//! permissions changes, hard links, and protection against a host process
//! racing with an open (it can swap a checked file for a device between the
//! check and the open; the open then fails, but has happened).

mod buffers;
mod mount;
mod server;
mod sys;

pub use buffers::{CallBuffers, DataBuf, PathArg, VecBuffers};
pub use mount::{Mount, MountError};
pub use server::{MAX_HANDLES, MAX_READDIR, Server, stored_len};

#[cfg(test)]
mod tests;
