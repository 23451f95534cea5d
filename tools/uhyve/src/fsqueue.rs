//! uhyve's side of the file-call queue ([`hermit_interface::fs::queue`]):
//! a poller thread that takes the guest's file calls from a page of guest
//! memory, so that a burst of small calls (a loop of one-byte writes, a
//! `stat` per file of a directory) costs no VM exit per call.
//!
//! The poller spins for [`POLL_WINDOW`] after the last call it served, then
//! clears the page's `AWAKE` flag and sleeps until a vCPU kicks it
//! ([`FsQueue::kick`], on the guest's `FsKick` hypercall). The kicking vCPU
//! runs the call itself if the poller has not taken it yet, so a call
//! after a quiet spell costs one exit (as with the plain `Fs` hypercall),
//! not an exit plus a thread wake-up.
//!
//! The page is hostile memory: the host only acts on slots in `SUBMITTED`,
//! claims them with a compare-and-swap, copies the call out before
//! checking it (like every hypercall's block) and only writes the result
//! and the state back.

use std::mem::{offset_of, size_of};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hermit_hostfs::Server;
use hermit_interface::fs::FsCall;
use hermit_interface::fs::queue::{self, AWAKE, CALL, DONE, PAGE, SLOTS, SUBMITTED, TAKEN};
use hermit_interface::hypercall::errno;
use vm_memory::VolatileSlice;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory};

use crate::hypercall::run_fs_call;

/// How long the poller keeps spinning after the last call it served: well
/// above the cost of the VM exit a call takes while it sleeps (40-55 µs on
/// the nested `kvm_pvm` host this was measured on; waking the poller takes
/// 30 µs to 2 ms there), so that a program that makes file calls now and
/// then pays one exit per pause, not per call. io_uring's polling thread
/// idles after a second by default; a millisecond keeps the cost of an
/// idle guest low.
pub const POLL_WINDOW: Duration = Duration::from_millis(1);

/// How long a vCPU whose call the poller runs spins for the result before
/// it sleeps (waking a thread costs tens of µs on some hosts).
const SPIN_FOR_POLLER: Duration = Duration::from_micros(50);

/// How often a vCPU waiting for a call the poller runs checks for the end
/// of the VM.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// Why a guest's queue was refused (the guest gets `-EINVAL`, or `-EAGAIN`
/// when the host could not start the poller).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The page is not 4 KiB aligned.
    #[error("the file-call queue at {0:#x} is not page aligned")]
    Misaligned(u64),
    /// The page is not (all) guest RAM.
    #[error("the file-call queue at {0:#x} lies outside guest memory")]
    OutsideRam(u64),
    /// The guest registered a queue before.
    #[error("the guest registered a second file-call queue")]
    Again,
    /// The poller thread could not be started.
    #[error("cannot start the file-call poller: {0}")]
    Spawn(#[source] std::io::Error),
}

impl QueueError {
    /// The negative errno the guest gets.
    pub fn errno(&self) -> i64 {
        match self {
            Self::Spawn(_) => -errno::EAGAIN,
            _ => -errno::EINVAL,
        }
    }
}

/// A registered queue and its poller.
#[derive(Debug)]
pub struct FsQueue {
    shared: Arc<Shared>,
    poller: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    mem: GuestMemoryMmap,
    page: u64,
    fs: Arc<Server>,
    stop: AtomicBool,
    /// The poller was asked to wake (set by kicks, cleared as it sleeps).
    kicked: Mutex<bool>,
    wake: Condvar,
    /// vCPUs waiting in [`FsQueue::kick`] for a call the poller runs;
    /// changed under `kicked`'s lock.
    waiters: AtomicUsize,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FsQueue {
    /// Checks the page at `page` (aligned, in guest RAM) and starts the
    /// poller serving it with `fs`, on host `cores` if given (best effort:
    /// it must not share the core of a pinned vCPU that waits for it).
    pub fn start(
        mem: GuestMemoryMmap,
        fs: Arc<Server>,
        page: u64,
        cores: Option<Vec<usize>>,
    ) -> Result<Self, QueueError> {
        if !page.is_multiple_of(PAGE as u64) {
            return Err(QueueError::Misaligned(page));
        }
        if mem.get_slice(GuestAddress(page), PAGE).is_err() {
            return Err(QueueError::OutsideRam(page));
        }
        let shared = Arc::new(Shared {
            mem,
            page,
            fs,
            stop: AtomicBool::new(false),
            kicked: Mutex::new(false),
            wake: Condvar::new(),
            waiters: AtomicUsize::new(0),
            done: Condvar::new(),
        });
        let poller = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("uhyve-fs-poller".into())
                .spawn(move || {
                    if let Some(cores) = cores {
                        // Best effort: unpinned it still works, slower.
                        let _ = crate::cpus::set_current_thread_cores(&cores);
                    }
                    shared.poll();
                })
                .map_err(QueueError::Spawn)?
        };
        Ok(Self {
            shared,
            poller: Mutex::new(Some(poller)),
        })
    }

    /// The guest's `FsKick` for `slot` (`< SLOTS`): wakes the poller, runs
    /// the slot's call on this thread if nobody took it yet, else waits
    /// until it is done (or the queue stops).
    pub fn kick(&self, slot: usize) {
        let s = &*self.shared;
        {
            let mut kicked = lock(&s.kicked);
            if !*kicked {
                *kicked = true;
                s.wake.notify_one();
            }
        }
        let Some(page) = s.page() else { return };
        if s.try_serve(&page, slot) {
            return;
        }
        let Ok(state) = page.get_atomic_ref::<AtomicU32>(queue::slot(slot)) else {
            return;
        };
        let spin_start = Instant::now();
        while state.load(Ordering::Acquire) == TAKEN && spin_start.elapsed() < SPIN_FOR_POLLER {
            std::hint::spin_loop();
        }
        let mut guard = lock(&s.kicked);
        s.waiters.fetch_add(1, Ordering::SeqCst);
        while state.load(Ordering::SeqCst) == TAKEN && !s.stop.load(Ordering::SeqCst) {
            guard = s
                .done
                .wait_timeout(guard, WAIT_SLICE)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Stops the queue: the poller ends after the call it runs (if any) and
    /// waiting vCPUs return. Does not wait; see [`FsQueue::join`].
    pub fn shutdown(&self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        let _guard = lock(&s.kicked);
        s.wake.notify_all();
        s.done.notify_all();
    }

    /// Shuts the queue down and waits for the poller, interrupting a call
    /// it is blocked in (a read of the host's terminal, say) with `signal`
    /// (whose handler must be installed; the server must have been told to
    /// stop, so that the call is not restarted) until it returns. Returns
    /// whether the poller ended normally (not by a panic).
    pub fn join(&self, signal: libc::c_int) -> bool {
        self.shutdown();
        let Some(poller) = lock(&self.poller).take() else {
            return true;
        };
        while !poller.is_finished() {
            // SAFETY: the thread is not joined yet, so its id is valid; the
            // caller installed a handler for `signal`.
            unsafe { libc::pthread_kill(poller.as_pthread_t(), signal) };
            std::thread::sleep(Duration::from_millis(1));
        }
        poller.join().is_ok()
    }
}

impl Shared {
    /// The queue's page (checked at registration; `None` cannot happen
    /// while the mapping lives, which `mem` ensures).
    fn page(&self) -> Option<VolatileSlice<'_>> {
        self.mem.get_slice(GuestAddress(self.page), PAGE).ok()
    }

    /// The poller thread's loop.
    fn poll(&self) {
        let Some(page) = self.page() else { return };
        let Ok(awake) = page.get_atomic_ref::<AtomicU32>(AWAKE) else {
            return;
        };
        // The slots' state words, looked up once: the idle loop reads them
        // back to back, so that a submitted call is seen within a few
        // cycles of its cache line arriving (not half a scan of checked
        // lookups later).
        let Ok(states) = (0..SLOTS)
            .map(|slot| page.get_atomic_ref::<AtomicU32>(queue::slot(slot)))
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        awake.store(1, Ordering::SeqCst);
        let mut last = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if self.serve_all(&page, &states) {
                last = Instant::now();
                continue;
            }
            if last.elapsed() < POLL_WINDOW {
                std::hint::spin_loop();
                continue;
            }
            // Going to sleep: say so, then look once more, so that a call
            // submitted before the guest could see the flag is not missed
            // (the guest stores its slot's state, then reads the flag).
            // Kicks from while it polled are stale: the look covers them.
            *lock(&self.kicked) = false;
            awake.store(0, Ordering::SeqCst);
            if self.serve_all(&page, &states) {
                awake.store(1, Ordering::SeqCst);
                last = Instant::now();
                continue;
            }
            let mut kicked = lock(&self.kicked);
            while !*kicked && !self.stop.load(Ordering::SeqCst) {
                kicked = self
                    .wake
                    .wait(kicked)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *kicked = false;
            drop(kicked);
            awake.store(1, Ordering::SeqCst);
            last = Instant::now();
        }
        awake.store(0, Ordering::SeqCst);
    }

    /// Serves every submitted slot (`states` are their state words);
    /// whether there was one.
    fn serve_all(&self, page: &VolatileSlice<'_>, states: &[&AtomicU32]) -> bool {
        let mut any = false;
        for (slot, state) in states.iter().enumerate() {
            if state.load(Ordering::Relaxed) == SUBMITTED {
                any |= self.try_serve(page, slot);
            }
        }
        any
    }

    /// Runs the call in `slot` if it is submitted and this thread wins the
    /// claim; whether it did.
    fn try_serve(&self, page: &VolatileSlice<'_>, slot: usize) -> bool {
        let at = queue::slot(slot);
        let Ok(state) = page.get_atomic_ref::<AtomicU32>(at) else {
            return false;
        };
        if state.load(Ordering::Relaxed) != SUBMITTED
            || state
                .compare_exchange(SUBMITTED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let mut raw = [0u8; size_of::<FsCall>()];
        let result = match page.read_slice(&mut raw, at + CALL) {
            Ok(()) => run_fs_call(&self.mem, &self.fs, &raw),
            // Cannot happen: the slot lies inside the checked page.
            Err(_) => -errno::EFAULT,
        };
        let _ = page.write_slice(
            &result.to_le_bytes(),
            at + CALL + offset_of!(FsCall, result),
        );
        state.store(DONE, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.kicked);
            self.done.notify_all();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use hermit_interface::PhysSlice;
    use hermit_interface::fs::{Op, open_flags};

    use super::*;
    use crate::hypercall::tests::HostDir;

    const MEM: u64 = 1 << 20;
    const PAGE_AT: u64 = 0x1000;

    /// uhyve's kick signal, its handler installed.
    fn signal() -> libc::c_int {
        crate::vm::install_kick_handler();
        crate::vm::kick_signal()
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
    }

    fn state(mem: &GuestMemoryMmap, slot: usize) -> u32 {
        let at = GuestAddress(PAGE_AT + queue::slot(slot) as u64);
        mem.load(at, Ordering::SeqCst).unwrap()
    }

    fn awake(mem: &GuestMemoryMmap) -> u32 {
        mem.load(GuestAddress(PAGE_AT + AWAKE as u64), Ordering::SeqCst)
            .unwrap()
    }

    /// Writes `call` into `slot` with a canary result and submits it, as a
    /// guest does.
    fn submit(mem: &GuestMemoryMmap, slot: usize, call: FsCall) {
        let at = PAGE_AT + queue::slot(slot) as u64;
        let mut call = call;
        call.result = 0x5555;
        mem.write_slice(&call.to_le_bytes(), GuestAddress(at + CALL as u64))
            .unwrap();
        mem.store(SUBMITTED, GuestAddress(at), Ordering::SeqCst)
            .unwrap();
    }

    /// Submits `call` in `slot` and kicks it if the poller sleeps, as a
    /// guest does.
    fn guest_call(queue: &FsQueue, mem: &GuestMemoryMmap, slot: usize, call: FsCall) {
        submit(mem, slot, call);
        if awake(mem) == 0 {
            queue.kick(slot);
        }
    }

    fn result(mem: &GuestMemoryMmap, slot: usize) -> i64 {
        let at = PAGE_AT + (queue::slot(slot) + CALL + offset_of!(FsCall, result)) as u64;
        mem.read_obj(GuestAddress(at)).unwrap()
    }

    /// Waits (up to 10 s) for `slot` to be done; its result.
    fn wait_done(mem: &GuestMemoryMmap, slot: usize) -> i64 {
        let start = Instant::now();
        while state(mem, slot) != DONE {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "slot {slot} was not served"
            );
            std::thread::yield_now();
        }
        result(mem, slot)
    }

    fn open_f() -> FsCall {
        FsCall {
            op: Op::Open as u32,
            flags: open_flags::O_RDWR,
            mode: 0o644,
            path: PhysSlice {
                addr: 0x3000,
                len: 1,
            },
            ..Default::default()
        }
    }

    fn read(handle: i32, addr: u64, len: u64) -> FsCall {
        FsCall {
            op: Op::Read as u32,
            handle,
            buf: PhysSlice { addr, len },
            ..Default::default()
        }
    }

    #[test]
    fn the_page_must_be_aligned_guest_ram() {
        let dir = HostDir::new("register");
        let mem = memory();
        let err =
            FsQueue::start(mem.clone(), Arc::new(dir.server()), PAGE_AT + 8, None).unwrap_err();
        assert!(matches!(err, QueueError::Misaligned(_)), "{err}");
        assert_eq!(err.errno(), -errno::EINVAL);
        let err = FsQueue::start(mem.clone(), Arc::new(dir.server()), MEM, None).unwrap_err();
        assert!(matches!(err, QueueError::OutsideRam(_)), "{err}");
        let err = FsQueue::start(mem, Arc::new(dir.server()), !0xfff, None).unwrap_err();
        assert!(matches!(err, QueueError::OutsideRam(_)), "{err}");
    }

    #[test]
    fn the_poller_serves_calls_and_sleeps_when_idle() {
        let dir = HostDir::new("serve");
        let mem = memory();
        mem.write_slice(b"f", GuestAddress(0x3000)).unwrap();
        let queue = FsQueue::start(mem.clone(), Arc::new(dir.server()), PAGE_AT, None).unwrap();
        guest_call(&queue, &mem, 0, open_f());
        let handle = wait_done(&mem, 0);
        assert_eq!(handle, 3);
        // Two calls at once, in different slots.
        guest_call(&queue, &mem, 5, read(handle as i32, 0x4000, 4));
        guest_call(&queue, &mem, 30, read(99, 0x5000, 4));
        assert_eq!(wait_done(&mem, 5), 4);
        assert_eq!(wait_done(&mem, 30), -errno::EBADF);
        let mut got = [0u8; 4];
        mem.read_slice(&mut got, GuestAddress(0x4000)).unwrap();
        assert_eq!(&got, b"file");
        // Idle: the poller says it sleeps; a kick runs the next call.
        let start = Instant::now();
        while awake(&mem) != 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        submit(&mem, 1, read(handle as i32, 0x4000, 64));
        queue.kick(1);
        assert_eq!(state(&mem, 1), DONE);
        assert_eq!(result(&mem, 1), 5);
        mem.read_slice(&mut got, GuestAddress(0x4000)).unwrap();
        assert_eq!(&got, b" dat");
        assert!(queue.join(signal()));
        assert_eq!(awake(&mem), 0);
    }

    #[test]
    fn hostile_slots_harm_only_their_own_calls() {
        let dir = HostDir::new("hostile");
        let mem = memory();
        mem.write_slice(b"f", GuestAddress(0x3000)).unwrap();
        let queue = FsQueue::start(mem.clone(), Arc::new(dir.server()), PAGE_AT, None).unwrap();
        guest_call(&queue, &mem, 0, open_f());
        let handle = wait_done(&mem, 0) as i32;
        // A buffer outside RAM, or wrapping around, is the guest's EFAULT.
        guest_call(&queue, &mem, 1, read(handle, MEM - 2, 4));
        assert_eq!(wait_done(&mem, 1), -errno::EFAULT);
        guest_call(&queue, &mem, 2, read(handle, u64::MAX - 1, 4));
        assert_eq!(wait_done(&mem, 2), -errno::EFAULT);
        // A path outside RAM too.
        let mut call = open_f();
        call.path.addr = MEM;
        guest_call(&queue, &mem, 3, call);
        assert_eq!(wait_done(&mem, 3), -errno::EFAULT);
        // Garbage states are left alone, also by a kick.
        let at = GuestAddress(PAGE_AT + queue::slot(4) as u64);
        mem.store(0xdead_beefu32, at, Ordering::SeqCst).unwrap();
        queue.kick(4);
        std::thread::sleep(POLL_WINDOW * 10);
        assert_eq!(state(&mem, 4), 0xdead_beef);
        // A slot the guest marks taken blocks only its kicker, until the
        // VM ends.
        mem.store(TAKEN, at, Ordering::SeqCst).unwrap();
        let queue = Arc::new(queue);
        let ender = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                queue.shutdown();
            })
        };
        let start = Instant::now();
        queue.kick(4);
        assert!(start.elapsed() >= Duration::from_millis(40));
        ender.join().unwrap();
        assert!(queue.join(signal()));
    }
}
