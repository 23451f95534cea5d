//! The vocabulary shared by the VFS and every file system: open flags, seek
//! positions, file types, directory entries and the two traits.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::BitOr;

use hermit_interface::fs::{file_type, open_flags};

use crate::{Errno, FileStat, Result};

/// Flags of `open` (Linux values, see [`open_flags`]).
///
/// The access mode is a two-bit field, not a flag: test it with
/// [`readable`](Self::readable) and [`writable`](Self::writable), the other
/// flags with [`contains`](Self::contains).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFlags(u32);

impl OpenFlags {
    /// Open for reading only.
    pub const RDONLY: Self = Self(open_flags::O_RDONLY);
    /// Open for writing only.
    pub const WRONLY: Self = Self(open_flags::O_WRONLY);
    /// Open for reading and writing.
    pub const RDWR: Self = Self(open_flags::O_RDWR);
    /// Create the file if it does not exist.
    pub const CREAT: Self = Self(open_flags::O_CREAT);
    /// With `CREAT`: fail with `EEXIST` if the file exists.
    pub const EXCL: Self = Self(open_flags::O_EXCL);
    /// Truncate an existing regular file opened for writing to length 0.
    pub const TRUNC: Self = Self(open_flags::O_TRUNC);
    /// Every write goes to the end of the file.
    pub const APPEND: Self = Self(open_flags::O_APPEND);
    /// Fail with `ENOTDIR` unless the path is a directory.
    pub const DIRECTORY: Self = Self(open_flags::O_DIRECTORY);

    /// Checks raw flags: `EINVAL` for bits outside
    /// [`open_flags::ALLOWED`] and for the access mode 3.
    pub const fn from_bits(bits: u32) -> Result<Self> {
        if bits & !open_flags::ALLOWED != 0 || bits & open_flags::O_ACCMODE == 3 {
            return Err(Errno::EINVAL);
        }
        Ok(Self(bits))
    }

    /// The raw (Linux) value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Both sets of flags (`|` in `const` contexts).
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every flag of `other` outside the access mode is set.
    pub const fn contains(self, other: Self) -> bool {
        let other = other.0 & !open_flags::O_ACCMODE;
        self.0 & other == other
    }

    /// Whether the access mode allows reading.
    pub const fn readable(self) -> bool {
        matches!(
            self.0 & open_flags::O_ACCMODE,
            open_flags::O_RDONLY | open_flags::O_RDWR
        )
    }

    /// Whether the access mode allows writing.
    pub const fn writable(self) -> bool {
        matches!(
            self.0 & open_flags::O_ACCMODE,
            open_flags::O_WRONLY | open_flags::O_RDWR
        )
    }
}

impl BitOr for OpenFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// A position for [`File::seek`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekFrom {
    /// Bytes from the start.
    Start(u64),
    /// Bytes from the current position.
    Current(i64),
    /// Bytes from the end.
    End(i64),
}

impl SeekFrom {
    /// The new position of a file at `pos` with `len` bytes: `EINVAL` if it
    /// would be negative, `EOVERFLOW` if it does not fit an `i64` (`off_t`).
    pub fn resolve(self, pos: u64, len: u64) -> Result<u64> {
        let new = match self {
            Self::Start(n) => i128::from(n),
            Self::Current(d) => i128::from(pos) + i128::from(d),
            Self::End(d) => i128::from(len) + i128::from(d),
        };
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        if new > i128::from(i64::MAX) {
            return Err(Errno::EOVERFLOW);
        }
        // In 0..=i64::MAX, so it fits.
        u64::try_from(new).map_err(|_| Errno::EOVERFLOW)
    }
}

/// The type of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device (a console).
    CharDevice,
    /// A FIFO.
    Fifo,
    /// Anything else, or unknown.
    Other,
}

impl FileType {
    /// The type encoded in the `S_IFMT` bits of a `FileStat::mode`.
    pub const fn from_mode(mode: u32) -> Self {
        match mode & file_type::S_IFMT {
            file_type::S_IFREG => Self::File,
            file_type::S_IFDIR => Self::Dir,
            file_type::S_IFLNK => Self::Symlink,
            file_type::S_IFCHR => Self::CharDevice,
            file_type::S_IFIFO => Self::Fifo,
            _ => Self::Other,
        }
    }

    /// The `S_IFMT` bits of this type (0 for [`Other`](Self::Other)).
    pub const fn mode_bits(self) -> u32 {
        match self {
            Self::File => file_type::S_IFREG,
            Self::Dir => file_type::S_IFDIR,
            Self::Symlink => file_type::S_IFLNK,
            Self::CharDevice => file_type::S_IFCHR,
            Self::Fifo => file_type::S_IFIFO,
            Self::Other => 0,
        }
    }

    /// The type of a Linux `DT_*` value (the `S_IFMT` bits shifted right by
    /// 12, as in `DirEntryHeader::kind`).
    pub const fn from_dt(kind: u16) -> Self {
        Self::from_mode((kind as u32) << 12)
    }

    /// The Linux `DT_*` value of this type.
    pub const fn dt(self) -> u16 {
        (self.mode_bits() >> 12) as u16
    }
}

/// One entry of a directory (never `.` or `..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name within the directory.
    pub name: String,
    /// Inode number.
    pub ino: u64,
    /// Type of the entry.
    pub kind: FileType,
}

/// An open file description: the position lives here, so file descriptors
/// made by `dup` share it.
///
/// Methods take `&self`: a description is shared between threads and fds,
/// and does its own locking.
pub trait File: Send + Sync {
    /// Reads at the position and advances it; 0 at the end of the file.
    fn read(&self, buf: &mut [u8]) -> Result<usize>;

    /// Writes at the position (at the end with `O_APPEND`) and advances it.
    fn write(&self, buf: &[u8]) -> Result<usize>;

    /// Reads at `offset`, leaving the position alone.
    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let _ = (buf, offset);
        Err(Errno::ESPIPE)
    }

    /// Writes at `offset`, leaving the position alone.
    fn pwrite(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let _ = (buf, offset);
        Err(Errno::ESPIPE)
    }

    /// Moves the position; returns the new one.
    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        let _ = pos;
        Err(Errno::ESPIPE)
    }

    /// The file's status.
    fn stat(&self) -> Result<FileStat>;

    /// Shortens or extends (with zeros) the file to `len` bytes.
    fn truncate(&self, len: u64) -> Result<()> {
        let _ = len;
        Err(Errno::EINVAL)
    }

    /// Next batch of entries of a directory opened with `open()`; an empty
    /// `Vec` means the end.
    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        Err(Errno::ENOTDIR)
    }

    /// Whether this is a terminal (for `isatty`).
    fn is_terminal(&self) -> bool {
        false
    }
}

/// A mounted file system. Paths are relative to its root and already
/// normalised by the VFS: no `.`, `..` or empty components, no leading or
/// trailing `/`; `""` is the root.
pub trait FileSystem: Send + Sync {
    /// Opens (with `CREAT`: creates, permission bits `mode`) a file or a
    /// directory.
    fn open(&self, path: &str, flags: OpenFlags, mode: u32) -> Result<Arc<dyn File>>;

    /// The status of `path`; `follow`: follow a final symbolic link.
    fn stat(&self, path: &str, follow: bool) -> Result<FileStat>;

    /// Removes a non-directory.
    fn unlink(&self, path: &str) -> Result<()>;

    /// Creates a directory with permission bits `mode`.
    fn mkdir(&self, path: &str, mode: u32) -> Result<()>;

    /// Removes an empty directory.
    fn rmdir(&self, path: &str) -> Result<()>;

    /// Renames `from` to `to` (both on this file system), replacing `to`.
    fn rename(&self, from: &str, to: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags() {
        assert_eq!(OpenFlags::from_bits(0o2), Ok(OpenFlags::RDWR));
        assert_eq!(OpenFlags::from_bits(3), Err(Errno::EINVAL));
        assert_eq!(OpenFlags::from_bits(0o4000), Err(Errno::EINVAL)); // O_NONBLOCK
        let f = OpenFlags::from_bits(0o1101).unwrap();
        assert_eq!(f, OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::TRUNC);
        assert!(f.writable() && !f.readable());
        assert!(f.contains(OpenFlags::CREAT | OpenFlags::TRUNC));
        assert!(!f.contains(OpenFlags::APPEND));
        assert!(OpenFlags::RDONLY.readable() && !OpenFlags::RDONLY.writable());
        assert!(OpenFlags::RDWR.readable() && OpenFlags::RDWR.writable());
    }

    #[test]
    fn seek_resolution() {
        assert_eq!(SeekFrom::Start(5).resolve(1, 2), Ok(5));
        assert_eq!(SeekFrom::Current(-1).resolve(1, 2), Ok(0));
        assert_eq!(SeekFrom::Current(-2).resolve(1, 2), Err(Errno::EINVAL));
        assert_eq!(SeekFrom::End(3).resolve(1, 2), Ok(5));
        assert_eq!(
            SeekFrom::Start(u64::MAX).resolve(0, 0),
            Err(Errno::EOVERFLOW)
        );
        assert_eq!(
            SeekFrom::Current(i64::MAX).resolve(1, 0),
            Err(Errno::EOVERFLOW)
        );
    }

    #[test]
    fn file_types() {
        for t in [
            FileType::File,
            FileType::Dir,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::Fifo,
        ] {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), t);
            assert_eq!(FileType::from_dt(t.dt()), t);
        }
        assert_eq!(FileType::from_dt(4), FileType::Dir);
        assert_eq!(FileType::from_dt(8), FileType::File);
        assert_eq!(FileType::from_dt(0), FileType::Other);
        assert_eq!(FileType::from_mode(0o140000), FileType::Other); // socket
    }
}
