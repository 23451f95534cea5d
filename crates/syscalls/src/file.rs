//! Files and directories of hermit-fs as descriptor [`Object`]s.

use alloc::sync::Arc;
use alloc::vec::Vec;

use hermit_fs::{DirEntry, File, FileStat, SeekFrom};
use spin::Mutex;

use crate::Errno;
use crate::dirent::pack;
use crate::fd::Object;

/// Where `getdents64` stands in a directory.
#[derive(Default)]
struct DirCursor {
    /// The whole listing, read on the first call.
    entries: Option<Vec<DirEntry>>,
    /// Index of the next entry to return.
    next: usize,
}

/// An open hermit-fs file or directory.
pub struct FileObject {
    file: Arc<dyn File>,
    dir: Mutex<DirCursor>,
}

impl FileObject {
    /// Wraps an open file.
    pub fn new(file: Arc<dyn File>) -> Self {
        Self {
            file,
            dir: Mutex::new(DirCursor::default()),
        }
    }

    /// The hermit-fs file.
    pub fn file(&self) -> &Arc<dyn File> {
        &self.file
    }

    fn read_all(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut all = Vec::new();
        loop {
            let batch = self.file.read_dir()?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }
}

impl Object for FileObject {
    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.file.read(buf)
    }

    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        self.file.write(buf)
    }

    fn lseek(&self, pos: SeekFrom) -> Result<u64, Errno> {
        self.file.seek(pos)
    }

    fn fstat(&self) -> Result<FileStat, Errno> {
        self.file.stat()
    }

    /// All remaining records or `EINVAL`, then 0 at the end.
    ///
    /// Rust std on hermit (`std::fs::read_dir`) calls `getdents64` exactly
    /// once per open directory and grows its buffer while the answer is
    /// `EINVAL`; Linux would fill the buffer and continue on the next call,
    /// which would silently cut std's listing short. So a call returns
    /// every remaining record or, if they do not all fit, `EINVAL` without
    /// consuming any; a Linux-style loop then sees 0 at the end. The
    /// listing is read from the file system on the first call.
    fn getdents64(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut dir = self.dir.lock();
        if dir.entries.is_none() {
            dir.entries = Some(self.read_all()?);
        }
        let start = dir.next;
        let entries = dir.entries.as_deref().unwrap_or(&[]);
        if start >= entries.len() {
            return Ok(0);
        }
        let (used, next) = pack(entries, start, buf);
        if next < entries.len() {
            return Err(Errno::EINVAL);
        }
        dir.next = next;
        Ok(used)
    }

    fn is_terminal(&self) -> bool {
        self.file.is_terminal()
    }
}
