//! The client side of the host file-system protocol
//! ([`hermit_interface::fs`]): each host directory the user mapped into the
//! VM is a [`HostFs`], each operation one [`FsCall`] through a
//! [`HostTransport`] the kernel implements (the uhyve hypercall, or the
//! byte stream to the QEMU proxy).
//!
//! The host is trusted with the files' contents, not with the guest's
//! memory safety: every result and every byte of a directory listing is
//! checked, and a host that lies (a count larger than the buffer, a record
//! that runs past the data, a name with `/`) gets `EIO`, never a panic.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use hermit_interface::fs::{
    FsCall, Op, STAT_NOFOLLOW, STDERR_HANDLE, STDIN_HANDLE, STDOUT_HANDLE, whence,
};

use crate::path::{NAME_MAX, PATH_MAX, normalize};
use crate::{DirEntry, Errno, File, FileStat, FileSystem, FileType, OpenFlags, Result, SeekFrom};

/// The most mounts [`HostFs::discover`] accepts before it calls the host a
/// liar.
pub const MAX_MOUNTS: usize = 256;

/// Bytes asked for per `ReadDir` call: room for at least one record with
/// the longest name.
const READ_DIR_BUF: usize = 8192;

/// The data buffer of one call.
pub enum Data<'a> {
    /// No buffer.
    None,
    /// Bytes the host reads (`Write`, `Pwrite`).
    In(&'a [u8]),
    /// Bytes the host fills (`Read`, `Pread`, `Fstat`, `Stat`, `ReadDir`,
    /// `MountInfo`).
    Out(&'a mut [u8]),
}

/// The transport to the host's file server; the kernel implements it.
pub trait HostTransport: Send + Sync {
    /// Performs `call` (`op`, `handle`, `flags`, `mode`, `offset`, `whence`
    /// set; the lengths and addresses of `path`, `path2` and `buf` are left
    /// to the transport) with these byte buffers; returns `FsCall::result`.
    fn call(&self, call: FsCall, path: &[u8], path2: &[u8], data: Data<'_>) -> i64;
}

/// One call, its result checked: `Ok(n)` with `n <= limit`, else the
/// host's error or `EIO`.
fn call_checked(
    t: &dyn HostTransport,
    call: FsCall,
    path: &[u8],
    path2: &[u8],
    data: Data<'_>,
    limit: usize,
) -> Result<usize> {
    let n = Errno::check(t.call(call, path, path2, data))?;
    match usize::try_from(n) {
        Ok(n) if n <= limit => Ok(n),
        _ => Err(Errno::EIO),
    }
}

fn fs_call(op: Op, handle: i32) -> FsCall {
    FsCall {
        op: op as u32,
        handle,
        ..FsCall::default()
    }
}

fn to_offset(offset: u64) -> Result<i64> {
    i64::try_from(offset).map_err(|_| Errno::EINVAL)
}

/// One mapped host directory: the mount index on the host and the
/// transport to reach it.
pub struct HostFs {
    mount: i32,
    transport: Arc<dyn HostTransport>,
}

impl HostFs {
    /// The host's mount `mount` (see [`discover`](Self::discover)).
    pub fn new(mount: i32, transport: Arc<dyn HostTransport>) -> Self {
        Self { mount, transport }
    }

    /// The host's mount index.
    pub fn mount_index(&self) -> i32 {
        self.mount
    }

    /// Asks the host for its mounts (`Op::MountInfo` for 0, 1, 2, ... until
    /// `ENOENT`): the guest path (normalised, absolute) of each, with its
    /// file system. `EIO` for a path that is not UTF-8 and for more than
    /// [`MAX_MOUNTS`] mounts.
    pub fn discover(t: Arc<dyn HostTransport>) -> Result<Vec<(String, HostFs)>> {
        let mut mounts = Vec::new();
        let mut buf = vec![0u8; PATH_MAX];
        for index in 0..=MAX_MOUNTS {
            let handle = i32::try_from(index).map_err(|_| Errno::EIO)?;
            let call = fs_call(Op::MountInfo, handle);
            let n = match call_checked(&*t, call, &[], &[], Data::Out(&mut buf), PATH_MAX) {
                Ok(n) => n,
                Err(Errno::ENOENT) => return Ok(mounts),
                Err(e) => return Err(e),
            };
            if index == MAX_MOUNTS {
                break;
            }
            let raw = core::str::from_utf8(&buf[..n]).map_err(|_| Errno::EIO)?;
            let path = normalize("/", raw).map_err(|_| Errno::EIO)?;
            mounts.push((path, HostFs::new(handle, t.clone())));
        }
        Err(Errno::EIO)
    }

    fn path_call(&self, op: Op) -> FsCall {
        fs_call(op, self.mount)
    }
}

impl FileSystem for HostFs {
    fn open(&self, path: &str, flags: OpenFlags, mode: u32) -> Result<Arc<dyn File>> {
        let call = FsCall {
            flags: flags.bits(),
            mode: mode & 0o777,
            ..self.path_call(Op::Open)
        };
        let handle = Errno::check(self.transport.call(call, path.as_bytes(), &[], Data::None))?;
        let handle = i32::try_from(handle).map_err(|_| Errno::EIO)?;
        Ok(Arc::new(HostFile {
            handle,
            transport: self.transport.clone(),
        }))
    }

    fn stat(&self, path: &str, follow: bool) -> Result<FileStat> {
        let call = FsCall {
            flags: if follow { 0 } else { STAT_NOFOLLOW },
            ..self.path_call(Op::Stat)
        };
        stat_call(&*self.transport, call, path.as_bytes())
    }

    fn unlink(&self, path: &str) -> Result<()> {
        let call = self.path_call(Op::Unlink);
        call_checked(&*self.transport, call, path.as_bytes(), &[], Data::None, 0).map(drop)
    }

    fn mkdir(&self, path: &str, mode: u32) -> Result<()> {
        let call = FsCall {
            mode: mode & 0o777,
            ..self.path_call(Op::Mkdir)
        };
        call_checked(&*self.transport, call, path.as_bytes(), &[], Data::None, 0).map(drop)
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        let call = self.path_call(Op::Rmdir);
        call_checked(&*self.transport, call, path.as_bytes(), &[], Data::None, 0).map(drop)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let call = FsCall {
            // The VFS only renames within one mount.
            flags: u32::try_from(self.mount).map_err(|_| Errno::EINVAL)?,
            ..self.path_call(Op::Rename)
        };
        let t = &*self.transport;
        call_checked(t, call, from.as_bytes(), to.as_bytes(), Data::None, 0).map(drop)
    }
}

/// `Stat`/`Fstat`: the host fills a [`FileStat`] and returns 0.
fn stat_call(t: &dyn HostTransport, call: FsCall, path: &[u8]) -> Result<FileStat> {
    let mut buf = [0u8; FileStat::SIZE];
    call_checked(t, call, path, &[], Data::Out(&mut buf), 0)?;
    FileStat::from_le_bytes(&buf).ok_or(Errno::EIO)
}

/// A file or directory open on the host; closing it is dropping it.
struct HostFile {
    handle: i32,
    transport: Arc<dyn HostTransport>,
}

impl HostFile {
    fn call(&self, op: Op) -> FsCall {
        fs_call(op, self.handle)
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        // Nothing to do about a failed close: the handle is gone either way.
        let _ = self
            .transport
            .call(self.call(Op::Close), &[], &[], Data::None);
    }
}

impl File for HostFile {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let limit = buf.len();
        call_checked(
            &*self.transport,
            self.call(Op::Read),
            &[],
            &[],
            Data::Out(buf),
            limit,
        )
    }

    fn write(&self, buf: &[u8]) -> Result<usize> {
        call_checked(
            &*self.transport,
            self.call(Op::Write),
            &[],
            &[],
            Data::In(buf),
            buf.len(),
        )
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let call = FsCall {
            offset: to_offset(offset)?,
            ..self.call(Op::Pread)
        };
        let limit = buf.len();
        call_checked(&*self.transport, call, &[], &[], Data::Out(buf), limit)
    }

    fn pwrite(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let call = FsCall {
            offset: to_offset(offset)?,
            ..self.call(Op::Pwrite)
        };
        call_checked(&*self.transport, call, &[], &[], Data::In(buf), buf.len())
    }

    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        let (offset, whence) = match pos {
            SeekFrom::Start(n) => (to_offset(n)?, whence::SEEK_SET),
            SeekFrom::Current(d) => (d, whence::SEEK_CUR),
            SeekFrom::End(d) => (d, whence::SEEK_END),
        };
        let call = FsCall {
            offset,
            whence,
            ..self.call(Op::Lseek)
        };
        Errno::check(self.transport.call(call, &[], &[], Data::None))
    }

    fn stat(&self) -> Result<FileStat> {
        stat_call(&*self.transport, self.call(Op::Fstat), &[])
    }

    fn truncate(&self, len: u64) -> Result<()> {
        let call = FsCall {
            offset: to_offset(len)?,
            ..self.call(Op::Ftruncate)
        };
        call_checked(&*self.transport, call, &[], &[], Data::None, 0).map(drop)
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        let mut buf = vec![0u8; READ_DIR_BUF];
        let call = self.call(Op::ReadDir);
        let n = call_checked(
            &*self.transport,
            call,
            &[],
            &[],
            Data::Out(&mut buf),
            READ_DIR_BUF,
        )?;
        wire::parse_dirents(&buf[..n])
    }
}

/// The host's standard input ([`STDIN_HANDLE`], read only) or output and
/// error ([`STDOUT_HANDLE`], [`STDERR_HANDLE`], write only) as a [`File`].
pub struct HostStdio {
    handle: i32,
    transport: Arc<dyn HostTransport>,
}

impl HostStdio {
    /// The host's standard input.
    pub fn stdin(transport: Arc<dyn HostTransport>) -> Self {
        Self {
            handle: STDIN_HANDLE,
            transport,
        }
    }

    /// The host's standard output.
    pub fn stdout(transport: Arc<dyn HostTransport>) -> Self {
        Self {
            handle: STDOUT_HANDLE,
            transport,
        }
    }

    /// The host's standard error.
    pub fn stderr(transport: Arc<dyn HostTransport>) -> Self {
        Self {
            handle: STDERR_HANDLE,
            transport,
        }
    }
}

impl File for HostStdio {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if self.handle != STDIN_HANDLE {
            return Err(Errno::EBADF);
        }
        let limit = buf.len();
        let call = fs_call(Op::Read, self.handle);
        call_checked(&*self.transport, call, &[], &[], Data::Out(buf), limit)
    }

    fn write(&self, buf: &[u8]) -> Result<usize> {
        if self.handle == STDIN_HANDLE {
            return Err(Errno::EBADF);
        }
        let call = fs_call(Op::Write, self.handle);
        call_checked(&*self.transport, call, &[], &[], Data::In(buf), buf.len())
    }

    fn stat(&self) -> Result<FileStat> {
        stat_call(&*self.transport, fs_call(Op::Fstat, self.handle), &[])
    }
}

/// Decoding `ReadDir` answers (the records' byte layouts are defined once,
/// in `hermit_interface::fs`).
pub mod wire {
    use hermit_interface::fs::DirEntryHeader;

    use super::{DirEntry, Errno, FileType, NAME_MAX, Result};
    use alloc::string::String;
    use alloc::vec::Vec;

    /// The entries in a `ReadDir` answer. `EIO` for anything malformed: a
    /// truncated header, a record length that is not a multiple of 8, too
    /// short for its name or past the end, an empty, `.`, `..` or over-long
    /// name, or one holding `/` or NUL. Names that are not UTF-8 are
    /// converted lossily (listed, but not openable by that name).
    pub fn parse_dirents(mut b: &[u8]) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let header = DirEntryHeader::from_le_bytes(b).ok_or(Errno::EIO)?;
            let (ino, kind) = (header.ino, header.kind);
            let record_len = header.record_len as usize;
            let name_len = usize::from(header.name_len);
            if !record_len.is_multiple_of(8)
                || record_len < DirEntryHeader::SIZE + name_len
                || record_len > b.len()
                || name_len == 0
                || name_len > NAME_MAX
            {
                return Err(Errno::EIO);
            }
            let name = &b[DirEntryHeader::SIZE..DirEntryHeader::SIZE + name_len];
            if name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
                return Err(Errno::EIO);
            }
            out.push(DirEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                ino,
                kind: FileType::from_dt(kind),
            });
            b = &b[record_len..];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;
    use hermit_interface::fs::DirEntryHeader;

    #[test]
    fn dirent_round_trip() {
        let mut buf = [0xffu8; 64];
        let a = DirEntryHeader::put_record(&mut buf, 7, 8, b"abc").unwrap();
        assert_eq!(a, 24);
        let b = DirEntryHeader::put_record(&mut buf[a..], 9, 4, b"directory").unwrap();
        assert_eq!(b, 32);
        assert_eq!(
            DirEntryHeader::put_record(&mut buf[a + b..], 1, 8, b"x"),
            None
        );
        let got = parse_dirents(&buf[..a + b]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].name.as_str(), got[0].ino, got[0].kind),
            ("abc", 7, FileType::File)
        );
        assert_eq!(
            (got[1].name.as_str(), got[1].ino, got[1].kind),
            ("directory", 9, FileType::Dir)
        );
        assert_eq!(parse_dirents(&[]), Ok(Vec::new()));
    }

    #[test]
    fn malformed_dirents_are_eio() {
        let mut good = [0u8; 24];
        DirEntryHeader::put_record(&mut good, 1, 8, b"abc").unwrap();
        let patch = |at: usize, bytes: &[u8]| {
            let mut b = good;
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        let cases: [&[u8]; 10] = [
            &good[..8],                          // truncated header
            &good[..20],                         // record past the end
            &patch(8, &0u32.to_le_bytes()),      // record_len 0 (would loop)
            &patch(8, &20u32.to_le_bytes()),     // not a multiple of 8
            &patch(8, &16u32.to_le_bytes()),     // shorter than its name
            &patch(12, &0u16.to_le_bytes()),     // empty name
            &patch(12, &300u16.to_le_bytes()),   // name past the record
            &patch(16, b"a/c"),                  // slash
            &patch(16, b"a\0c"),                 // NUL
            &patch(12, &2u16.to_le_bytes())[..], // ".." after the next patch
        ];
        for (i, case) in cases.iter().enumerate().take(9) {
            assert_eq!(parse_dirents(case), Err(Errno::EIO), "case {i}");
        }
        let mut dotdot = cases[9].to_vec();
        dotdot[16..18].copy_from_slice(b"..");
        assert_eq!(parse_dirents(&dotdot), Err(Errno::EIO));
        let mut dot = patch(12, &1u16.to_le_bytes());
        dot[16] = b'.';
        assert_eq!(parse_dirents(&dot), Err(Errno::EIO));
        // Lossy, not an error.
        let bad_utf8 = patch(16, &[0xff, b'b', b'c']);
        assert_eq!(parse_dirents(&bad_utf8).unwrap()[0].name, "\u{fffd}bc");
    }
}
