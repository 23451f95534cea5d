//! Portable scheduling logic for the hermit kernel: the decisions and data
//! structures of one core's scheduler ([`CoreScheduler`] over a bitmap
//! [`RunQueue`] and a [`TimerQueue`] of sleepers), the queues blocked tasks
//! wait in ([`WaitQueue`], [`FutexTable`]), round-robin core choice
//! ([`CorePicker`]), and blocking primitives ([`sync`]) written once against
//! a [`sync::Futex`] trait the kernel implements.
//!
//! Everything is generic over the task handle `T` (a task id or an `Arc`),
//! holds no global state and touches no hardware, so the whole crate is
//! tested on the host, the locks with real threads and a fake futex. Hot
//! paths do not allocate once queues have reached their peak size: a yield
//! is a bitmap `leading_zeros`, a pop and a push.
//!
//! It is not a kernel scheduler by itself: the kernel keeps one
//! [`CoreScheduler`] per core behind a lock with interrupts off, does the
//! context switches, programs the timer for [`CoreScheduler::next_event`],
//! and owns the tasks' state (blocked, timed out, exited).
//!
//! Missing: load balancing beyond [`CorePicker`] and [`CoreScheduler::steal`],
//! priority inheritance, a reader-writer lock, fairness guarantees for the
//! mutex (a releasing task may take the lock again before a woken one), and
//! tracking of CPU time per task.
//!
//! ```
//! use sched::{CoreScheduler, Next, Priority};
//!
//! let mut core = CoreScheduler::new();
//! core.add_ready("a", Priority::NORMAL);
//! core.add_ready("b", Priority::NORMAL);
//! assert_eq!(core.yield_current(0), Some("a")); // idle core picks `a`
//! assert_eq!(core.yield_current(1), Some("b")); // round robin
//! let (_key, next) = core.sleep_current(2, 1_000)?; // `b` sleeps until t=1000
//! assert_eq!(next, Next::Run("a"));
//! assert_eq!(core.next_event(2), Some(1_000)); // only the sleeper needs a timer
//! let tick = core.tick(1_000, |t| assert_eq!(*t, "b"));
//! assert_eq!((tick.expired, tick.preempt), (1, false)); // a's slice is not over
//! # Ok::<(), sched::SchedError>(())
//! ```
#![cfg_attr(not(test), no_std)]
// Only `sync::mutex` and `sync::spin` use `unsafe` (to hand out references
// to their data cells); each allows it locally.
#![deny(unsafe_code)]

extern crate alloc;

mod core_sched;
mod futex;
mod picker;
mod priority;
mod run_queue;
pub mod sync;
mod timer;
mod wait_queue;

pub use core_sched::{CoreScheduler, DEFAULT_TIME_SLICE_NS, Next, SchedError, TickResult};
pub use futex::{AddrHasher, FutexTable};
pub use picker::CorePicker;
pub use priority::{InvalidPriority, NUM_PRIORITIES, Priority};
pub use run_queue::RunQueue;
pub use timer::{TimerKey, TimerQueue};
pub use wait_queue::WaitQueue;

#[cfg(test)]
mod tests_util {
    /// A small deterministic PRNG (xorshift64*) for model tests.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
}
