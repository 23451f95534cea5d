//! Threads: spawn, join, yield, sleep.
//!
//! Every thread is a kernel task with its own stack, scheduled by priority
//! and round robin on the core it was started on. Without a core given,
//! threads are spread over the online cores round robin.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use sched::sync::Futex as _;

pub use crate::sched::SpawnError;
use crate::sched::{self as ksched, KernelFutex};
pub use sched::Priority;

/// Default stack size of a spawned thread.
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

/// Thread configuration, as `std::thread::Builder`.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    prio: Priority,
    core: Option<usize>,
    stack_size: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Normal priority, any core, [`DEFAULT_STACK_SIZE`].
    pub const fn new() -> Self {
        Self {
            prio: Priority::NORMAL,
            core: None,
            stack_size: DEFAULT_STACK_SIZE,
        }
    }

    /// Scheduling priority (higher runs first).
    pub const fn priority(mut self, prio: Priority) -> Self {
        self.prio = prio;
        self
    }

    /// Runs the thread on core `core` (0 is the boot CPU).
    pub const fn core(mut self, core: usize) -> Self {
        self.core = Some(core);
        self
    }

    /// Stack size in bytes.
    pub const fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Starts a thread running `f`.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let packet = Arc::new(Packet {
            done: AtomicU32::new(0),
            result: UnsafeCell::new(None),
        });
        let theirs = packet.clone();
        let body: Box<dyn FnOnce() + Send> = Box::new(move || {
            let value = f();
            // SAFETY: only this thread writes `result`, before publishing
            // `done`; the joiner reads it only after seeing `done`.
            unsafe { *theirs.result.get() = Some(value) };
            theirs.done.store(1, Ordering::Release);
            KernelFutex::wake(&theirs.done, u32::MAX);
        });
        let id = ksched::spawn(body, self.prio, self.core, self.stack_size)?;
        Ok(JoinHandle { id, packet })
    }
}

struct Packet<T> {
    /// 0 while running, 1 when `result` is set (a futex word).
    done: AtomicU32,
    result: UnsafeCell<Option<T>>,
}

// SAFETY: `result` is written once by the thread before `done` is released
// and read by the joiner after acquiring `done`.
unsafe impl<T: Send> Sync for Packet<T> {}

/// Owns a running thread; [`JoinHandle::join`] waits for its result.
/// Dropping it detaches the thread.
pub struct JoinHandle<T> {
    id: u32,
    packet: Arc<Packet<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish and returns what it returned.
    pub fn join(self) -> T {
        while self.packet.done.load(Ordering::Acquire) == 0 {
            KernelFutex::wait(&self.packet.done, 0, None);
        }
        // SAFETY: `done` is 1, so the thread has written `result` and will
        // not touch it again.
        match unsafe { (*self.packet.result.get()).take() } {
            Some(v) => v,
            None => crate::boot::fail(format_args!("thread {} finished without a result", self.id)),
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.packet.done.load(Ordering::Acquire) != 0
    }

    /// The thread's id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl<T> core::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish()
    }
}

/// Starts a thread with the default [`Builder`]; fails only when memory
/// runs out, which ends the VM with a message.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(e) => crate::boot::fail(format_args!("cannot spawn a thread: {e}")),
    }
}

/// Lets other ready threads of the same or higher priority run.
pub fn yield_now() {
    ksched::yield_now();
}

/// Blocks the calling thread for at least `d`.
pub fn sleep(d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    ksched::sleep_until(crate::time::monotonic_ns().saturating_add(ns));
}

/// The calling thread's id (1 is the thread that runs `main`).
pub fn current_id() -> u32 {
    ksched::current_id()
}

/// The index of the CPU the calling thread runs on (0: the boot CPU).
pub fn current_core() -> usize {
    ksched::current_core()
}

/// Number of live kernel tasks, idle tasks included.
pub fn live_tasks() -> usize {
    ksched::live_tasks()
}

/// Number of CPUs that run threads.
pub fn available_parallelism() -> usize {
    ksched::cores_online().max(1)
}
