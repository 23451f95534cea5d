//! hermit-isles: the host's bookkeeping of multi-kernel isles.
//!
//! An *isle* is one hermit kernel (one VM) on host cores of its own. All
//! isles of a host share one memory region (the mmnif rings and the iRCCE
//! buffers, see [`hermit_interface::isle`]), and ring each other's doorbells
//! to say "look at the region". There is no daemon: the first process that
//! starts an isle sets things up ("the first proxy that starts"), and every
//! piece of state lives in one directory, [`IsleDir`] (`$HERMIT_ISLE_DIR`,
//! by default `/dev/shm/hermit-isles-<uid>`, a tmpfs):
//!
//! ```text
//! lock              flock taken only while an isle joins or leaves
//! region            the shared region (a file, mapped MAP_SHARED)
//! isle<N>/lock      flock held by the process running isle N, for its whole
//!                   life; holds its pid
//! isle<N>/doorbell  unix datagram socket bound by that process
//! isle<N>/log       isle N's kernel log, written while it runs
//! host/lock         flock held by the Linux end of mmnif (`isles mmnif`,
//!                   [`IsleDir::join_host`]); it counts as a running member
//! host/doorbell     its doorbell socket ([`HOST_NODE`])
//! ```
//!
//! **Sessions.** When an isle joins while no other member runs (no
//! `isle<N>/lock` nor `host/lock` is held by anybody), the region is created afresh, zeroed,
//! with the requested size: a new session. Otherwise the running isles'
//! region is used as it is, and asking for another size is an error. The
//! kernel drops a dead process's flock, so a crashed isle frees its number
//! and never blocks a new session; the region file is replaced (rename), never
//! truncated, so a process that still maps an old one cannot fault.
//!
//! **Doorbells** are hints: [`Ringer::ring`] sends one byte without
//! blocking and ignores absent, dead or full receivers; waiters re-check
//! the region and also time out.
//!
//! What this crate is not: it does not run VMs (uhyve joins an isle with
//! [`IsleDir::join`] and maps [`Isle::region_file`] into its guest) and does
//! not know the protocols inside the region, except for [`bridge`], the
//! Linux end of mmnif (a tap device bridged to the rings).

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

pub use hermit_interface::isle::{HOST_NODE, MAX_ISLES, REGION_DEFAULT, REGION_MAX, REGION_MIN};
use hermit_ircce::MappedRegion;

pub mod bridge;

/// The variable naming the isle directory.
pub const DIR_VAR: &str = "HERMIT_ISLE_DIR";

const PAGE: u64 = 4096;

/// Why an isle operation failed. Each message is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The isle number is not `0..MAX_ISLES`.
    #[error("there is no isle {0}: isles are numbered 0 to {last}", last = MAX_ISLES - 1)]
    BadIndex(u32),
    /// The requested region size is out of range or not page-sized.
    #[error(
        "a shared region of {0} bytes is not possible: expected a multiple of 4 KiB from {min} to {max}",
        min = human(REGION_MIN),
        max = human(REGION_MAX)
    )]
    BadSize(u64),
    /// Another process runs the host's member (the mmnif bridge).
    #[error("the host's mmnif end is already running ({})", pid_text(*pid))]
    HostBusy {
        /// The process holding it, if its pid could be read.
        pid: Option<u32>,
    },
    /// Another process runs this isle.
    #[error("isle {index} is already running ({})", pid_text(*pid))]
    Busy {
        /// The isle.
        index: u32,
        /// The process holding it, if its pid could be read.
        pid: Option<u32>,
    },
    /// The running isles share a region of another size.
    #[error(
        "the isles running in {} share a region of {}, not the {} requested (HERMIT_ISLE_SHM)",
        dir.display(),
        human(*existing),
        human(*requested)
    )]
    SizeMismatch {
        /// The isle directory.
        dir: PathBuf,
        /// Size of the running session's region.
        existing: u64,
        /// The size asked for.
        requested: u64,
    },
    /// The isle is not running (for `stop`).
    #[error("isle {0} is not running")]
    NotRunning(u32),
    /// The isle runs but its lock file holds no pid, so it cannot be
    /// signalled safely.
    #[error("isle {0} is running but its pid is unknown")]
    UnknownPid(u32),
    /// `clean` while isles run.
    #[error(
        "isle(s) {} still running in {}; stop them first",
        list(running),
        dir.display()
    )]
    StillRunning {
        /// The isle directory.
        dir: PathBuf,
        /// The running isles.
        running: Vec<u32>,
    },
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create".
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The host error.
        source: io::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"))
}

fn list(items: &[u32]) -> String {
    items
        .iter()
        .map(|&i| {
            if i == HOST_NODE {
                "host (mmnif)".to_owned()
            } else {
                i.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `bytes` in the largest binary unit that divides it, e.g. `64 MiB`.
pub fn human(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Checks a region size: a multiple of 4 KiB in
/// [`REGION_MIN`]`..=`[`REGION_MAX`].
pub fn check_region_size(size: u64) -> Result<u64, Error> {
    if (REGION_MIN..=REGION_MAX).contains(&size) && size.is_multiple_of(PAGE) {
        Ok(size)
    } else {
        Err(Error::BadSize(size))
    }
}

fn check_index(index: u32) -> Result<(), Error> {
    if index < MAX_ISLES {
        Ok(())
    } else {
        Err(Error::BadIndex(index))
    }
}

/// Where shared-memory files belong: `/dev/shm` (tmpfs), or the temporary
/// directory where that does not exist.
pub fn shm_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// `hermit-isles-<uid>` in [`shm_dir`].
pub fn default_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    shm_dir().join(format!("hermit-isles-{uid}"))
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Whether an isle runs, as seen from its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsleState {
    /// Nobody holds the isle's lock.
    Stopped,
    /// A process holds it.
    Running {
        /// Its pid, if the lock file holds one.
        pid: Option<u32>,
    },
}

/// One isle of [`IsleDir::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsleStatus {
    /// The isle number.
    pub index: u32,
    /// Whether it runs.
    pub state: IsleState,
}

/// The directory that holds every isle's state (see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsleDir {
    path: PathBuf,
}

impl IsleDir {
    /// The isle directory at `path` (nothing is created yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$HERMIT_ISLE_DIR` if set and not empty, else [`default_dir`].
    pub fn from_env() -> Self {
        match std::env::var_os(DIR_VAR) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => Self::new(default_dir()),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shared region's file.
    pub fn region_path(&self) -> PathBuf {
        self.path.join("region")
    }

    /// Isle `index`'s subdirectory.
    pub fn isle_path(&self, index: u32) -> PathBuf {
        self.path.join(format!("isle{index}"))
    }

    /// The subdirectory of `node`: an isle's, or `host` for [`HOST_NODE`].
    fn member_path(&self, node: u32) -> PathBuf {
        if node == HOST_NODE {
            self.path.join("host")
        } else {
            self.isle_path(node)
        }
    }

    /// Isle `index`'s kernel log.
    pub fn log_path(&self, index: u32) -> PathBuf {
        self.isle_path(index).join("log")
    }

    /// The doorbell socket of `node` (an isle or [`HOST_NODE`]), `None`
    /// for other numbers.
    pub fn doorbell_path(&self, node: u32) -> Option<PathBuf> {
        match node {
            HOST_NODE => Some(self.path.join("host").join("doorbell")),
            n if n < MAX_ISLES => Some(self.isle_path(n).join("doorbell")),
            _ => None,
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }

    fn member_lock_path(&self, node: u32) -> PathBuf {
        self.member_path(node).join("lock")
    }

    /// Takes the directory's global lock, exclusively, creating the
    /// directory if needed. Released when the file is dropped.
    fn lock_exclusive(&self) -> Result<File, Error> {
        loop {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)
                .map_err(io_err("create", &self.path))?;
            let path = self.lock_path();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_err("create", &path))?;
            file.lock().map_err(io_err("lock", &path))?;
            // `clean` may have removed the directory while this waited:
            // then the lock is on a dead file, and the new one counts.
            if is_same_file(&file, &path) {
                return Ok(file);
            }
        }
    }

    /// Takes the global lock shared (for looking), without creating
    /// anything; `None` if there is no lock file (no isle ever joined).
    fn lock_shared(&self) -> Result<Option<File>, Error> {
        let path = self.lock_path();
        loop {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            file.lock_shared().map_err(io_err("lock", &path))?;
            if is_same_file(&file, &path) {
                return Ok(Some(file));
            }
        }
    }

    /// Whether isle `index` runs. Call with the global lock held, so that
    /// the probe (which briefly takes the isle's lock shared) cannot make a
    /// join fail.
    fn probe(&self, index: u32) -> Result<IsleState, Error> {
        let path = self.member_lock_path(index);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(IsleState::Stopped),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(IsleState::Stopped),
            Err(TryLockError::WouldBlock) => Ok(IsleState::Running {
                pid: read_pid(&file),
            }),
            Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    /// The running members (isles, then [`HOST_NODE`]) other than
    /// `except`.
    fn running(&self, except: Option<u32>) -> Result<Vec<u32>, Error> {
        let mut running = Vec::new();
        let members = (0..MAX_ISLES).chain([HOST_NODE]);
        for i in members.filter(|&i| Some(i) != except) {
            if matches!(self.probe(i)?, IsleState::Running { .. }) {
                running.push(i);
            }
        }
        Ok(running)
    }

    /// Makes this process isle `index`: takes the isle's lock, starts a new
    /// session (a fresh zeroed region of `size`, default [`REGION_DEFAULT`])
    /// if no other isle runs or uses the running session's region (`size`
    /// must then be its size or `None`), binds the isle's doorbell and
    /// truncates its log. The isle is left when the result is dropped.
    pub fn join(&self, index: u32, size: Option<u64>) -> Result<Isle, Error> {
        check_index(index)?;
        self.join_member(index, size)
    }

    /// Makes this process the host's member, node [`HOST_NODE`] (the Linux
    /// end of mmnif), exactly as [`IsleDir::join`] does for an isle: it
    /// starts a session if nobody runs, and while it is held no isle that
    /// joins starts a new one. The returned [`Isle`]'s index is
    /// [`HOST_NODE`]; its log file is `host/log`.
    pub fn join_host(&self, size: Option<u64>) -> Result<Isle, Error> {
        self.join_member(HOST_NODE, size)
    }

    /// Whether the host's member runs.
    pub fn host_state(&self) -> Result<IsleState, Error> {
        let Some(_global) = self.lock_shared()? else {
            return Ok(IsleState::Stopped);
        };
        self.probe(HOST_NODE)
    }

    fn join_member(&self, index: u32, size: Option<u64>) -> Result<Isle, Error> {
        if let Some(size) = size {
            check_region_size(size)?;
        }
        let global = self.lock_exclusive()?;
        let dir = self.member_path(index);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        let lock_path = self.member_lock_path(index);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&lock);
                return Err(if index == HOST_NODE {
                    Error::HostBusy { pid }
                } else {
                    Error::Busy { index, pid }
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let (region, region_len) = if self.running(Some(index))?.is_empty() {
            self.new_region(size.unwrap_or(REGION_DEFAULT))?
        } else {
            self.existing_region(size)?
        };
        let pid = std::process::id().to_string();
        lock.set_len(0)
            .and_then(|()| lock.write_all_at(pid.as_bytes(), 0))
            .map_err(io_err("write", &lock_path))?;
        let bell = dir.join("doorbell");
        match fs::remove_file(&bell) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove the stale socket", &bell)(e)),
        }
        let socket = UnixDatagram::bind(&bell).map_err(io_err("bind", &bell))?;
        let log_path = dir.join("log");
        let log = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_err("create", &log_path))?;
        let ringer = self.ringer()?;
        drop(global);
        Ok(Isle {
            dir: self.clone(),
            index,
            region,
            region_len,
            lock,
            socket,
            ringer,
            log,
        })
    }

    /// Replaces the region with a fresh zeroed one of `size` bytes. A new
    /// file is renamed over the old one, so that a process still mapping
    /// the old file keeps valid (if stale) memory.
    fn new_region(&self, size: u64) -> Result<(File, u64), Error> {
        let tmp = self.path.join("region.new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // Sparse: tmpfs hands out zeroed pages as they are touched.
        file.set_len(size).map_err(io_err("resize", &tmp))?;
        let path = self.region_path();
        fs::rename(&tmp, &path).map_err(io_err("create", &path))?;
        Ok((file, size))
    }

    /// The running session's region; `size`, if given, must be its size.
    fn existing_region(&self, size: Option<u64>) -> Result<(File, u64), Error> {
        let path = self.region_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let len = file.metadata().map_err(io_err("stat", &path))?.len();
        match size {
            Some(requested) if requested != len => Err(Error::SizeMismatch {
                dir: self.path.clone(),
                existing: len,
                requested,
            }),
            _ => Ok((file, len)),
        }
    }

    /// Size of the current region file, if there is one.
    pub fn region_len(&self) -> Option<u64> {
        fs::metadata(self.region_path()).ok().map(|m| m.len())
    }

    /// Every isle that has a subdirectory (ran at least once since the last
    /// `clean`), in order, with whether it runs now.
    pub fn status(&self) -> Result<Vec<IsleStatus>, Error> {
        let Some(_global) = self.lock_shared()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for index in 0..MAX_ISLES {
            if self.isle_path(index).is_dir() {
                out.push(IsleStatus {
                    index,
                    state: self.probe(index)?,
                });
            }
        }
        Ok(out)
    }

    /// Sends `SIGTERM` to the process running isle `index` and returns its
    /// pid. Only a process that holds the isle's lock is ever signalled.
    pub fn stop(&self, index: u32) -> Result<u32, Error> {
        check_index(index)?;
        let Some(_global) = self.lock_shared()? else {
            return Err(Error::NotRunning(index));
        };
        match self.probe(index)? {
            IsleState::Stopped => Err(Error::NotRunning(index)),
            IsleState::Running { pid: None } => Err(Error::UnknownPid(index)),
            IsleState::Running { pid: Some(pid) } => {
                let raw = libc::pid_t::try_from(pid).map_err(|_| Error::UnknownPid(index))?;
                // SAFETY: kill has no memory-safety preconditions; `raw` is
                // positive (a parsed u32 below i32::MAX), never 0 or -1, so
                // it names exactly one process: the lock holder.
                if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
                    return Err(io_err("signal the process of", &self.isle_path(index))(
                        io::Error::last_os_error(),
                    ));
                }
                Ok(pid)
            }
        }
    }

    /// Removes the whole directory; refused while any isle runs. Returns
    /// `false` if there was nothing to remove.
    pub fn clean(&self) -> Result<bool, Error> {
        if !self.path.exists() {
            return Ok(false);
        }
        let global = self.lock_exclusive()?;
        let running = self.running(None)?;
        if !running.is_empty() {
            return Err(Error::StillRunning {
                dir: self.path.clone(),
                running,
            });
        }
        fs::remove_dir_all(&self.path).map_err(io_err("remove", &self.path))?;
        drop(global);
        Ok(true)
    }

    /// A sender that rings doorbells in this directory (for host-side
    /// programs; an [`Isle`] has one).
    pub fn ringer(&self) -> Result<Ringer, Error> {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(io_err("create a socket for", &self.path))?;
        Ok(Ringer {
            dir: self.clone(),
            socket,
        })
    }
}

/// The pid written in an isle's lock file, if it holds one.
fn read_pid(mut file: &File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim()
        .parse()
        .ok()
        .filter(|&p| p > 0 && p <= i32::MAX as u32)
}

fn is_same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Rings doorbells: one non-blocking datagram each.
#[derive(Debug)]
pub struct Ringer {
    dir: IsleDir,
    socket: UnixDatagram,
}

impl Ringer {
    /// Rings `node`'s doorbell (an isle number or [`HOST_NODE`]). Returns
    /// whether a ring was queued; absent, dead or full receivers and other
    /// node numbers are ignored: a ring is only a wake-up hint.
    pub fn ring(&self, node: u32) -> bool {
        match self.dir.doorbell_path(node) {
            Some(path) => self.socket.send_to(&[1], path).is_ok(),
            None => false,
        }
    }
}

/// This process's membership of an isle, from [`IsleDir::join`]. Dropping
/// it leaves: the doorbell socket is removed and the lock released; the
/// region and the log stay.
#[derive(Debug)]
pub struct Isle {
    dir: IsleDir,
    index: u32,
    region: File,
    region_len: u64,
    lock: File,
    socket: UnixDatagram,
    ringer: Ringer,
    log: File,
}

impl Isle {
    /// The isle number ([`HOST_NODE`] for the host's member).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The directory it lives in.
    pub fn dir(&self) -> &IsleDir {
        &self.dir
    }

    /// The shared region's file (map it `MAP_SHARED`, see [`Isle::map`]).
    pub fn region_file(&self) -> &File {
        &self.region
    }

    /// The region's size in bytes.
    pub fn region_len(&self) -> u64 {
        self.region_len
    }

    /// Maps the whole region shared, read-write. The mapping stays valid
    /// after the isle is left (it is unmapped when dropped).
    pub fn map(&self) -> Result<Mapping, Error> {
        Mapping::new(&self.region, self.region_len).map_err(io_err("map", &self.dir.region_path()))
    }

    /// Rings `node`'s doorbell; see [`Ringer::ring`]. Ringing this isle
    /// itself is fine.
    pub fn ring(&self, node: u32) -> bool {
        self.ringer.ring(node)
    }

    /// A receiver of this isle's doorbell, for one waiting thread.
    pub fn doorbell(&self) -> Result<Doorbell, Error> {
        let socket = self.socket.try_clone().map_err(io_err(
            "use the doorbell",
            &self.dir.member_path(self.index),
        ))?;
        Ok(Doorbell { socket })
    }

    /// The isle's kernel log file (truncated at join), to append to.
    pub fn log_file(&self) -> &File {
        &self.log
    }
}

impl Drop for Isle {
    fn drop(&mut self) {
        // Best effort: leaving cannot fail in a way anybody could act on.
        let global = self.dir.lock_exclusive().ok();
        if let Some(bell) = self.dir.doorbell_path(self.index) {
            let _ = fs::remove_file(bell);
        }
        let _ = self.lock.set_len(0);
        let _ = self.lock.unlock();
        drop(global);
    }
}

/// The receiving end of an isle's doorbell.
#[derive(Debug)]
pub struct Doorbell {
    socket: UnixDatagram,
}

impl std::os::fd::AsFd for Doorbell {
    /// Readable when a ring is queued (for `poll(2)` beside other files).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Doorbell {
    /// Consumes every queued ring without waiting; returns how many.
    pub fn drain(&self) -> usize {
        let mut rings = 0;
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: the fd is this socket's, open for the call; `byte` is
            // a valid 1-byte buffer; MSG_DONTWAIT makes this one call
            // non-blocking without touching the shared file flags.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    byte.as_mut_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return rings;
            }
            rings += 1;
        }
    }

    /// Waits up to `timeout` for a ring; `true` if one came (rings that
    /// queued up meanwhile are consumed with it), `false` on timeout or a
    /// signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
        let mut byte = [0u8; 1];
        match self.socket.recv(&mut byte) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        // Coalesce a burst into one wake-up.
        self.drain();
        Ok(true)
    }
}

/// A `MAP_SHARED` read-write mapping of the whole region, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    region: MappedRegion,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address),
        // so nothing existing is replaced; the fd is open for the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::AddrNotAvailable)?;
        // SAFETY: `base..base + len` is the mapping just made: page aligned,
        // readable and writable until `Drop` unmaps it, which happens after
        // the `MappedRegion` (a field of `self`) is gone; the file is never
        // truncated (sessions replace it), so every page stays backed. No
        // Rust reference into it is created here.
        let region = unsafe { MappedRegion::new(base, len) };
        Ok(Self { region, len })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.base().as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a valid region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapping as an iRCCE/mmnif [`hermit_ircce::Region`].
    pub fn region(&self) -> &MappedRegion {
        &self.region
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the mapping made in `new`, unmapped only
        // here; borrows of `self.region` cannot outlive `self`.
        unsafe { libc::munmap(self.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests;
