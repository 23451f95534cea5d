//! Files: the kernel's VFS (`hermit-fs`) with the standard streams, an
//! in-memory file system at `/` (with `/tmp`) and the host directories the
//! user mapped (`uhyve --mount HOST:GUEST`, `HERMIT_MOUNT`).
//!
//! Everything starts on first use, so an application that never touches a
//! file pays nothing at boot. Host directories come from uhyve's `Fs`
//! hypercall, or under QEMU from the proxy's file server over a virtio
//! console; the host resolves every path beneath the mapped directory.
//!
//! ```ignore
//! use hermit::fs::{self, File};
//! fs::write("/tmp/a.txt", b"hello")?;
//! let mut data = alloc::vec::Vec::new();
//! File::open("/tmp/a.txt")?.read_to_end(&mut data)?;
//! ```

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use hermit_fs::hostfs::{HostFs, HostTransport};
pub use hermit_fs::{DirEntry, Errno, FileStat, FileType, OpenFlags, SeekFrom, Vfs};
use hermit_interface::Platform;

use crate::console::Stream;

/// The result of a file operation.
pub type Result<T> = core::result::Result<T, Errno>;

static VFS: spin::Once<Vfs> = spin::Once::new();
static TRANSPORT: spin::Once<Option<Arc<dyn HostTransport>>> = spin::Once::new();

/// Nanoseconds since the Unix epoch, for file times.
fn now_ns() -> u64 {
    crate::time::SystemTime::now()
        .duration_since(crate::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The connection to the host's file server, if this VM has one.
fn transport() -> Option<Arc<dyn HostTransport>> {
    TRANSPORT
        .call_once(|| match crate::console::platform() {
            Some(Platform::Uhyve) => {
                Some(Arc::new(crate::hostfs::UhyveTransport::new()) as Arc<dyn HostTransport>)
            }
            Some(Platform::Qemu) => crate::hostfs::StreamTransport::probe()
                .map(|t| Arc::new(t) as Arc<dyn HostTransport>),
            None => None,
        })
        .clone()
}

/// The kernel's one VFS (and fd table), set up on first use.
pub fn vfs() -> &'static Vfs {
    VFS.call_once(|| {
        let vfs = Vfs::with_clock(now_ns);
        let transport = transport();
        let stdin: Arc<dyn hermit_fs::File> = match &transport {
            Some(t) => Arc::new(hermit_fs::hostfs::HostStdio::stdin(t.clone())),
            None => Arc::new(Console(None)),
        };
        for (fd, file) in [
            (0, stdin),
            (
                1,
                Arc::new(Console(Some(Stream::Stdout))) as Arc<dyn hermit_fs::File>,
            ),
            (2, Arc::new(Console(Some(Stream::Stderr)))),
        ] {
            if let Err(e) = vfs.set_fd(fd, file) {
                log::warn!("fd {fd}: {e}");
            }
        }
        if let Some(t) = transport {
            match HostFs::discover(t) {
                Ok(mounts) => {
                    for (at, fs) in mounts {
                        match vfs.mount(&at, Arc::new(fs)) {
                            Ok(()) => log::info!("host directory mounted at {at}"),
                            Err(e) => log::warn!("cannot mount the host directory at {at}: {e}"),
                        }
                    }
                }
                Err(e) => log::warn!("host directories unavailable: {e}"),
            }
        }
        vfs
    })
}

/// The console as a file: writes go to the application's stdout or stderr;
/// `None` is an empty stdin.
struct Console(Option<Stream>);

impl hermit_fs::File for Console {
    fn read(&self, _buf: &mut [u8]) -> Result<usize> {
        match self.0 {
            None => Ok(0),
            Some(_) => Err(Errno::EBADF),
        }
    }

    fn write(&self, buf: &[u8]) -> Result<usize> {
        match self.0 {
            Some(stream) => Ok(crate::console::write(stream, buf)),
            None => Err(Errno::EBADF),
        }
    }

    fn stat(&self) -> Result<FileStat> {
        Ok(FileStat {
            mode: hermit_interface::fs::file_type::S_IFCHR | 0o620,
            ..FileStat::default()
        })
    }

    fn is_terminal(&self) -> bool {
        true
    }
}

/// An open file; closed when dropped.
#[derive(Debug)]
pub struct File {
    fd: i32,
}

impl File {
    /// Opens `path` for reading.
    pub fn open(path: &str) -> Result<Self> {
        Self::open_with(path, OpenFlags::RDONLY, 0)
    }

    /// Creates (or truncates) `path` and opens it for writing.
    pub fn create(path: &str) -> Result<Self> {
        Self::open_with(
            path,
            OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::TRUNC,
            0o644,
        )
    }

    /// Opens `path` with `flags` and, when it is created, permissions `mode`.
    pub fn open_with(path: &str, flags: OpenFlags, mode: u32) -> Result<Self> {
        vfs().open(path, flags, mode).map(|fd| Self { fd })
    }

    /// The file descriptor.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Reads into `buf` at the file position; 0 at the end of the file.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        vfs().read(self.fd, buf)
    }

    /// Writes `buf` at the file position; returns how many bytes were written.
    pub fn write(&self, buf: &[u8]) -> Result<usize> {
        vfs().write(self.fd, buf)
    }

    /// Writes all of `buf`.
    pub fn write_all(&self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(Errno::EIO),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Appends the rest of the file to `out`; returns how many bytes that was.
    pub fn read_to_end(&self, out: &mut Vec<u8>) -> Result<usize> {
        read_to_end(self.fd, out)
    }

    /// Reads at `offset` without moving the file position.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        vfs().pread(self.fd, buf, offset)
    }

    /// Writes at `offset` without moving the file position.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        vfs().pwrite(self.fd, buf, offset)
    }

    /// Moves the file position; returns the new one.
    pub fn seek(&self, pos: SeekFrom) -> Result<u64> {
        vfs().lseek(self.fd, pos)
    }

    /// The file's status.
    pub fn metadata(&self) -> Result<FileStat> {
        vfs().fstat(self.fd)
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&self, len: u64) -> Result<()> {
        vfs().ftruncate(self.fd, len)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = vfs().close(self.fd);
    }
}

fn read_to_end(fd: i32, out: &mut Vec<u8>) -> Result<usize> {
    let start = out.len();
    let mut chunk = 4096usize;
    loop {
        out.reserve(chunk);
        let len = out.len();
        out.resize(out.capacity(), 0);
        let read = vfs().read(fd, &mut out[len..]);
        out.truncate(len + *read.as_ref().unwrap_or(&0));
        if read? == 0 {
            return Ok(len - start);
        }
        chunk = (chunk * 2).min(1 << 20);
    }
}

/// The whole contents of `path`.
pub fn read(path: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

/// Creates or replaces `path` with `data`.
pub fn write(path: &str, data: &[u8]) -> Result<()> {
    File::create(path)?.write_all(data)
}

/// The entries of directory `path` (without `.` and `..`).
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>> {
    vfs().read_dir_path(path)
}

/// Creates directory `path`.
pub fn create_dir(path: &str) -> Result<()> {
    vfs().mkdir(path, 0o755)
}

/// Removes the file `path`.
pub fn remove_file(path: &str) -> Result<()> {
    vfs().unlink(path)
}

/// Removes the empty directory `path`.
pub fn remove_dir(path: &str) -> Result<()> {
    vfs().rmdir(path)
}

/// Renames `from` to `to` (within one file system).
pub fn rename(from: &str, to: &str) -> Result<()> {
    vfs().rename(from, to)
}

/// The status of `path`, following symlinks.
pub fn metadata(path: &str) -> Result<FileStat> {
    vfs().stat(path)
}

/// The current directory.
pub fn current_dir() -> String {
    vfs().getcwd()
}

/// Changes the current directory.
pub fn set_current_dir(path: &str) -> Result<()> {
    vfs().chdir(path)
}

/// Standard input (fd 0): the bytes piped into the proxy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stdin;

/// Standard input.
pub fn stdin() -> Stdin {
    Stdin
}

impl Stdin {
    /// Reads into `buf`; 0 at the end of input.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        vfs().read(0, buf)
    }

    /// Appends all remaining input to `out`.
    pub fn read_to_end(&self, out: &mut Vec<u8>) -> Result<usize> {
        read_to_end(0, out)
    }
}
