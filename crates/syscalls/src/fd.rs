//! One descriptor table for files and sockets.
//!
//! A file descriptor is a small `int` naming a slot of the [`FdTable`]. A
//! slot holds an `Arc<`[`Description`]`>` (an open file description: the
//! object plus its status flags) and the per-descriptor `FD_CLOEXEC` bit;
//! `dup` makes a second slot share the description, so both see the same
//! offset and `O_NONBLOCK`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, Ordering};

use hermit_fs::{FileStat, SeekFrom};
use spin::Mutex;

use crate::Errno;
use crate::abi::{O_ACCMODE, O_APPEND, O_NONBLOCK, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};

/// The default number of descriptors (`0..MAX_FDS`); beyond it calls fail
/// with `EMFILE`.
pub const MAX_FDS: usize = 1024;

/// Something a file descriptor refers to: a file, a directory, a socket,
/// the console. Every method has a default that fails the way Linux does
/// for an object that cannot do it, so an implementation overrides only
/// what it supports. Methods take `&self`: an object is shared between
/// descriptors and threads and does its own locking; blocking methods must
/// not hold a lock another call needs.
pub trait Object: Send + Sync {
    /// Reads at the position (`EBADF` if not readable).
    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = buf;
        Err(Errno::EBADF)
    }

    /// Writes at the position (`EBADF` if not writable).
    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        let _ = buf;
        Err(Errno::EBADF)
    }

    /// Moves the position (`ESPIPE` for streams).
    fn lseek(&self, pos: SeekFrom) -> Result<u64, Errno> {
        let _ = pos;
        Err(Errno::ESPIPE)
    }

    /// The status (default: all zero, type unknown).
    fn fstat(&self) -> Result<FileStat, Errno> {
        Ok(FileStat::default())
    }

    /// Packs directory records into `buf` (see
    /// [`crate::dirent`]); `ENOTDIR` for non-directories.
    fn getdents64(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = buf;
        Err(Errno::ENOTDIR)
    }

    /// Switches non-blocking mode (`O_NONBLOCK`, `FIONBIO`). The default
    /// accepts and ignores it, like Linux for regular files.
    fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        let _ = nonblocking;
        Ok(())
    }

    /// The `POLL*` bits of `events` that are ready now (`POLLERR`/`POLLHUP`
    /// may be added). The default is "always readable and writable", right
    /// for regular files.
    fn poll(&self, events: i16) -> i16 {
        events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)
    }

    /// Whether this is a terminal.
    fn is_terminal(&self) -> bool {
        false
    }

    /// The socket behind this object, if it is one (`ENOTSOCK` otherwise).
    #[cfg(feature = "net")]
    fn as_socket(&self) -> Option<&crate::socket::Socket> {
        None
    }
}

/// An open file description: an object and its status flags (access mode,
/// `O_APPEND`, `O_NONBLOCK`), shared by `dup`ed descriptors.
pub struct Description {
    object: Arc<dyn Object>,
    flags: AtomicI32,
}

impl Description {
    /// A description of `object` with status flags `flags`.
    pub fn new(object: Arc<dyn Object>, flags: i32) -> Self {
        Self {
            object,
            flags: AtomicI32::new(flags & (O_ACCMODE | O_APPEND | O_NONBLOCK)),
        }
    }

    /// The object.
    pub fn object(&self) -> &Arc<dyn Object> {
        &self.object
    }

    /// The status flags (`F_GETFL`).
    pub fn status_flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn nonblocking(&self) -> bool {
        self.status_flags() & O_NONBLOCK != 0
    }

    /// Sets or clears `O_NONBLOCK` (and tells the object).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        self.object.set_nonblocking(nonblocking)?;
        if nonblocking {
            self.flags.fetch_or(O_NONBLOCK, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!O_NONBLOCK, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `F_SETFL`: only `O_NONBLOCK` changes (Linux also changes
    /// `O_APPEND`, which hermit-fs fixes at open); the rest is ignored.
    pub fn set_status_flags(&self, flags: i32) -> Result<(), Errno> {
        self.set_nonblocking(flags & O_NONBLOCK != 0)
    }
}

#[derive(Clone)]
struct Slot {
    desc: Arc<Description>,
    cloexec: bool,
}

/// The descriptor table: lowest free descriptor first, `EMFILE` at the
/// limit. The lock is held only to look up or change a slot; objects are
/// dropped (closed) after it is released.
pub struct FdTable {
    slots: Mutex<Vec<Option<Slot>>>,
    limit: usize,
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FdTable {
    /// An empty table of [`MAX_FDS`] descriptors.
    pub const fn new() -> Self {
        Self::with_limit(MAX_FDS)
    }

    /// An empty table of `limit` descriptors (at most `i32::MAX`).
    pub const fn with_limit(limit: usize) -> Self {
        let limit = if limit > i32::MAX as usize {
            i32::MAX as usize
        } else {
            limit
        };
        Self {
            slots: Mutex::new(Vec::new()),
            limit,
        }
    }

    fn index(&self, fd: i32) -> Result<usize, Errno> {
        match usize::try_from(fd) {
            Ok(i) if i < self.limit => Ok(i),
            _ => Err(Errno::EBADF),
        }
    }

    /// Installs `slot` at the lowest free descriptor `>= min`.
    fn install(&self, slot: Slot, min: usize) -> Result<i32, Errno> {
        let mut slots = self.slots.lock();
        let free = slots.iter().skip(min).position(Option::is_none);
        let index = match free {
            Some(i) => min + i,
            None => slots.len().max(min),
        };
        if index >= self.limit {
            return Err(Errno::EMFILE);
        }
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        slots[index] = Some(slot);
        i32::try_from(index).map_err(|_| Errno::EMFILE)
    }

    /// Installs `object` with status flags `flags` at the lowest free
    /// descriptor.
    pub fn insert(&self, object: Arc<dyn Object>, flags: i32) -> Result<i32, Errno> {
        let slot = Slot {
            desc: Arc::new(Description::new(object, flags)),
            cloexec: false,
        };
        self.install(slot, 0)
    }

    /// Installs `object` as descriptor `fd`, closing what was there (for
    /// the console as 0, 1 and 2). `EBADF` if `fd` is out of range.
    pub fn set(&self, fd: i32, object: Arc<dyn Object>, flags: i32) -> Result<(), Errno> {
        let slot = Slot {
            desc: Arc::new(Description::new(object, flags)),
            cloexec: false,
        };
        self.put(fd, slot)
    }

    fn put(&self, fd: i32, slot: Slot) -> Result<(), Errno> {
        let index = self.index(fd)?;
        let old = {
            let mut slots = self.slots.lock();
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            slots[index].replace(slot)
        };
        drop(old);
        Ok(())
    }

    fn slot(&self, fd: i32) -> Result<Slot, Errno> {
        let index = self.index(fd)?;
        self.slots
            .lock()
            .get(index)
            .and_then(Option::clone)
            .ok_or(Errno::EBADF)
    }

    /// The description behind `fd` (`EBADF` if none).
    pub fn get(&self, fd: i32) -> Result<Arc<Description>, Errno> {
        self.slot(fd).map(|s| s.desc)
    }

    /// The object behind `fd` (`EBADF` if none).
    pub fn object(&self, fd: i32) -> Result<Arc<dyn Object>, Errno> {
        self.slot(fd).map(|s| s.desc.object.clone())
    }

    /// Closes `fd`; the object goes when no descriptor shares it.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        let index = self.index(fd)?;
        let old = self.slots.lock().get_mut(index).and_then(Option::take);
        match old {
            // Dropped here, after the lock.
            Some(_) => Ok(()),
            None => Err(Errno::EBADF),
        }
    }

    /// A new descriptor (the lowest free) sharing `fd`'s description,
    /// without `FD_CLOEXEC`.
    pub fn dup(&self, fd: i32) -> Result<i32, Errno> {
        self.dup_min(fd, 0)
    }

    /// `F_DUPFD`: like [`dup`](Self::dup) but the lowest free descriptor
    /// `>= min` (`EINVAL` if `min` is negative or beyond the limit).
    pub fn dup_min(&self, fd: i32, min: i32) -> Result<i32, Errno> {
        let min = usize::try_from(min).map_err(|_| Errno::EINVAL)?;
        if min >= self.limit {
            return Err(Errno::EINVAL);
        }
        let mut slot = self.slot(fd)?;
        slot.cloexec = false;
        self.install(slot, min)
    }

    /// Makes `new` share `old`'s description, closing what `new` was;
    /// nothing if they are equal (but `old` must be open).
    pub fn dup2(&self, old: i32, new: i32) -> Result<i32, Errno> {
        let mut slot = self.slot(old)?;
        self.index(new)?;
        if old != new {
            slot.cloexec = false;
            self.put(new, slot)?;
        }
        Ok(new)
    }

    /// The `FD_CLOEXEC` bit of `fd`.
    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        self.slot(fd).map(|s| s.cloexec)
    }

    /// Sets the `FD_CLOEXEC` bit of `fd` (kept for `F_GETFD`; there is no
    /// `exec`).
    pub fn set_cloexec(&self, fd: i32, cloexec: bool) -> Result<(), Errno> {
        let index = self.index(fd)?;
        let mut slots = self.slots.lock();
        match slots.get_mut(index).and_then(Option::as_mut) {
            Some(slot) => {
                slot.cloexec = cloexec;
                Ok(())
            }
            None => Err(Errno::EBADF),
        }
    }

    /// How many descriptors are open.
    pub fn open_count(&self) -> usize {
        self.slots.lock().iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy;
    impl Object for Dummy {}

    fn dummy() -> Arc<dyn Object> {
        Arc::new(Dummy)
    }

    #[test]
    fn lowest_free_first_and_emfile() {
        let t = FdTable::with_limit(4);
        assert_eq!(t.insert(dummy(), 0), Ok(0));
        assert_eq!(t.insert(dummy(), 0), Ok(1));
        assert_eq!(t.insert(dummy(), 0), Ok(2));
        assert_eq!(t.close(1), Ok(()));
        assert_eq!(t.close(1), Err(Errno::EBADF));
        assert_eq!(t.insert(dummy(), 0), Ok(1));
        assert_eq!(t.insert(dummy(), 0), Ok(3));
        assert_eq!(t.insert(dummy(), 0), Err(Errno::EMFILE));
        assert_eq!(t.dup(0), Err(Errno::EMFILE));
        assert_eq!(t.open_count(), 4);
        assert_eq!(t.close(-1), Err(Errno::EBADF));
        assert_eq!(t.close(4), Err(Errno::EBADF));
        assert_eq!(t.close(i32::MAX), Err(Errno::EBADF));
    }

    #[test]
    fn dup_shares_description() {
        let t = FdTable::new();
        let a = t.insert(dummy(), O_NONBLOCK).unwrap();
        let b = t.dup(a).unwrap();
        assert_eq!(b, a + 1);
        assert!(Arc::ptr_eq(&t.get(a).unwrap(), &t.get(b).unwrap()));
        t.get(a).unwrap().set_nonblocking(false).unwrap();
        assert!(!t.get(b).unwrap().nonblocking());
        t.close(a).unwrap();
        assert!(t.get(b).is_ok());
        assert_eq!(t.dup(a), Err(Errno::EBADF));
    }

    #[test]
    fn dup2_and_dupfd_and_cloexec() {
        let t = FdTable::new();
        let a = t.insert(dummy(), 0).unwrap();
        let other = t.insert(dummy(), 0).unwrap();
        assert_eq!(t.dup2(a, 10), Ok(10));
        assert!(Arc::ptr_eq(&t.get(a).unwrap(), &t.get(10).unwrap()));
        // Replaces an open descriptor.
        assert_eq!(t.dup2(a, other), Ok(other));
        assert!(Arc::ptr_eq(&t.get(a).unwrap(), &t.get(other).unwrap()));
        assert_eq!(t.dup2(a, a), Ok(a));
        assert_eq!(t.dup2(7, 8), Err(Errno::EBADF));
        assert_eq!(t.dup2(a, -1), Err(Errno::EBADF));
        assert_eq!(t.dup2(a, MAX_FDS as i32), Err(Errno::EBADF));
        assert_eq!(t.dup_min(a, 5), Ok(5));
        assert_eq!(t.dup_min(a, 10), Ok(11));
        assert_eq!(t.dup_min(a, -1), Err(Errno::EINVAL));
        t.set_cloexec(5, true).unwrap();
        assert_eq!(t.cloexec(5), Ok(true));
        assert_eq!(t.cloexec(a), Ok(false));
        // A dup does not inherit FD_CLOEXEC.
        let d = t.dup(5).unwrap();
        assert_eq!(t.cloexec(d), Ok(false));
    }
}
