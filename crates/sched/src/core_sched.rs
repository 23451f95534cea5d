//! One core's scheduling state and decisions.

use core::fmt;

use crate::priority::Priority;
use crate::run_queue::RunQueue;
use crate::timer::{TimerKey, TimerQueue};

/// Default time slice: 10 ms.
pub const DEFAULT_TIME_SLICE_NS: u64 = 10_000_000;

/// What a core runs after its current task left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// Switch to this task (it is now the core's current task).
    Run(T),
    /// Nothing is ready: run the idle loop until the next event.
    Idle,
}

impl<T> Next<T> {
    /// The task to run, if any.
    pub fn task(self) -> Option<T> {
        match self {
            Self::Run(t) => Some(t),
            Self::Idle => None,
        }
    }
}

/// The outcome of [`CoreScheduler::tick`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickResult {
    /// How many sleepers reached their deadline and became ready.
    pub expired: usize,
    /// Whether the kernel should call [`CoreScheduler::preempt`] now: a task of
    /// higher priority is ready, or the current slice is over and one of equal
    /// priority waits, or the core is idle and something is ready.
    pub preempt: bool,
}

/// Errors of [`CoreScheduler`] calls made in the wrong state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// The call needs a current task but the core is idle.
    NoCurrentTask,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCurrentTask => f.write_str("the core has no current task"),
        }
    }
}

impl core::error::Error for SchedError {}

/// The scheduling state of one core: the running task, the ready tasks by
/// priority, and the sleepers by deadline.
///
/// Policy: strict priority (a lower level never runs while a higher one is
/// ready), round robin with a time slice within a level. Every method that
/// picks a task makes it the core's current task and returns a clone of its
/// handle, so `T` should be cheap to clone (a task id, or an `Arc`).
///
/// The kernel owns one per core behind a lock, performs the context switch
/// this type decides on, and programs the timer for [`CoreScheduler::next_event`].
/// Blocked tasks are not held here: the kernel keeps them in its wait queues
/// or a [`FutexTable`](crate::FutexTable) and hands them back with
/// [`CoreScheduler::add_ready`].
///
/// Timed futex waits, with locks always taken futex table first, then core:
/// 1. The waiter, holding the futex-table lock, checks the word, enqueues
///    itself in the [`FutexTable`](crate::FutexTable), calls
///    [`CoreScheduler::sleep_current`] and keeps the [`TimerKey`] in its task.
/// 2. A waker pops it from the table (futex lock held) and calls
///    [`CoreScheduler::wake_sleeper`] with that key; `None` means the timer
///    already fired and the task is already ready: do not add it again.
/// 3. [`CoreScheduler::tick`] makes expired sleepers ready on its own (its
///    callback may just count or trace them; it must not take the futex lock,
///    which would invert the lock order).
/// 4. The waiter, running again, calls [`FutexTable::cancel`](crate::FutexTable::cancel)
///    on itself: `true` (it was still queued, nobody woke it) means it timed
///    out, `false` means it was woken. So each wait ends exactly once, as
///    woken or timed out, whichever of the two raced first.
#[derive(Debug)]
pub struct CoreScheduler<T> {
    current: Option<(T, Priority)>,
    ready: RunQueue<T>,
    sleepers: TimerQueue<(T, Priority)>,
    slice_ns: u64,
    slice_start: u64,
    switches: u64,
}

impl<T: Clone> Default for CoreScheduler<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> CoreScheduler<T> {
    /// An idle core with the default 10 ms time slice (does not allocate).
    pub const fn new() -> Self {
        Self::with_time_slice(DEFAULT_TIME_SLICE_NS)
    }

    /// An idle core with a time slice of `slice_ns` nanoseconds.
    pub const fn with_time_slice(slice_ns: u64) -> Self {
        Self {
            current: None,
            ready: RunQueue::new(),
            sleepers: TimerQueue::new(),
            slice_ns,
            slice_start: 0,
            switches: 0,
        }
    }

    /// The time slice in nanoseconds.
    pub fn time_slice(&self) -> u64 {
        self.slice_ns
    }

    /// Changes the time slice; takes effect for the running slice too.
    pub fn set_time_slice(&mut self, slice_ns: u64) {
        self.slice_ns = slice_ns;
    }

    /// Pre-allocates room for `tasks` ready tasks at `prio` and as many
    /// sleepers, so the hot paths do not allocate.
    pub fn reserve(&mut self, prio: Priority, tasks: usize) {
        self.ready.reserve(prio, tasks);
        self.sleepers.reserve(tasks);
    }

    /// Makes a new or woken task ready (behind the others of its priority).
    /// Returns whether it should preempt: it outranks the current task, or the
    /// core is idle. The kernel then calls [`CoreScheduler::preempt`] (or
    /// sends an IPI to this core).
    pub fn add_ready(&mut self, t: T, prio: Priority) -> bool {
        self.ready.push_back(t, prio);
        match &self.current {
            Some((_, current)) => prio > *current,
            None => true,
        }
    }

    /// The current task gives up the rest of its slice. It goes behind the
    /// ready tasks of its priority and the highest ready task is chosen.
    ///
    /// Returns `Some(next)` if the kernel must switch to `next`, `None` if the
    /// current task keeps running (nobody of equal or higher priority is
    /// ready; it then starts a fresh slice). On an idle core this picks the
    /// highest ready task, if any.
    pub fn yield_current(&mut self, now: u64) -> Option<T> {
        match self.current.take() {
            None => self.pick(now).task(),
            Some((current, prio)) => match self.ready.pop_highest_at_least(prio) {
                Some((next, next_prio)) => {
                    self.ready.push_back(current, prio);
                    Some(self.switch_to(now, next, next_prio))
                }
                None => {
                    self.current = Some((current, prio));
                    self.slice_start = now;
                    None
                }
            },
        }
    }

    /// Switches if policy says so: a higher-priority task is ready (the
    /// current one goes to the front of its level, keeping its turn), or the
    /// slice is over and an equal-priority task is ready (the current one goes
    /// to the back). On an idle core, picks the highest ready task. Returns
    /// the task to switch to, or `None` to keep running.
    pub fn preempt(&mut self, now: u64) -> Option<T> {
        let Some((_, prio)) = &self.current else {
            return self.pick(now).task();
        };
        let prio = *prio;
        let highest = self.ready.highest()?;
        if highest > prio {
            let (next, next_prio) = self.ready.pop_highest()?;
            let (current, _) = self.current.take()?;
            if self.slice_over(now) {
                self.ready.push_back(current, prio);
            } else {
                self.ready.push_front(current, prio);
            }
            Some(self.switch_to(now, next, next_prio))
        } else if highest == prio && self.slice_over(now) {
            self.yield_current(now)
        } else {
            None
        }
    }

    /// The current task blocks (the kernel queues it on a wait queue or futex
    /// first). Returns the next task, or [`Next::Idle`].
    pub fn block_current(&mut self, now: u64) -> Next<T> {
        self.current = None;
        self.pick(now)
    }

    /// The current task exits. Returns the next task, or [`Next::Idle`].
    pub fn exit_current(&mut self, now: u64) -> Next<T> {
        self.current = None;
        self.pick(now)
    }

    /// The current task sleeps until `deadline` (monotonic ns; a deadline not
    /// after `now` fires at the next [`CoreScheduler::tick`]). Returns the key
    /// for [`CoreScheduler::wake_sleeper`] / [`CoreScheduler::cancel_sleep`]
    /// and the next task to run.
    pub fn sleep_current(
        &mut self,
        now: u64,
        deadline: u64,
    ) -> Result<(TimerKey, Next<T>), SchedError> {
        let (current, prio) = self.current.take().ok_or(SchedError::NoCurrentTask)?;
        let key = self.sleepers.insert(deadline, (current, prio));
        Ok((key, self.pick(now)))
    }

    /// Wakes a sleeper early (its futex was woken): cancels its timer and makes
    /// it ready. Returns `Some(preempt)` as [`CoreScheduler::add_ready`] does,
    /// or `None` if the timer already fired (the task is already ready and was
    /// reported as timed out by [`CoreScheduler::tick`]).
    pub fn wake_sleeper(&mut self, key: TimerKey) -> Option<bool> {
        let (t, prio) = self.sleepers.cancel(key)?;
        Some(self.add_ready(t, prio))
    }

    /// Removes a sleeper without making it ready (to migrate or kill it).
    pub fn cancel_sleep(&mut self, key: TimerKey) -> Option<(T, Priority)> {
        self.sleepers.cancel(key)
    }

    /// Timer interrupt or any scheduling point: sleepers whose deadline is
    /// `<= now` become ready (oldest deadline first), each reported to
    /// `on_expired` first (to trace or count it; how a waiter learns that it
    /// timed out is described on the type). Then says whether to call
    /// [`CoreScheduler::preempt`].
    pub fn tick(&mut self, now: u64, mut on_expired: impl FnMut(&T)) -> TickResult {
        let mut expired = 0;
        while let Some((_, (t, prio))) = self.sleepers.pop_expired(now) {
            on_expired(&t);
            self.ready.push_back(t, prio);
            expired += 1;
        }
        let preempt = match (&self.current, self.ready.highest()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((_, prio)), Some(highest)) => {
                highest > *prio || (highest == *prio && self.slice_over(now))
            }
        };
        TickResult { expired, preempt }
    }

    /// When the kernel must next run [`CoreScheduler::tick`]: the earliest
    /// sleeper deadline, or the end of the current slice if a task of equal
    /// priority is ready (`now` if a higher one is, or if the core is idle
    /// with tasks ready). `None` means no timer is needed (tickless): no
    /// sleepers and nobody to share the core with. A returned time `<= now`
    /// means "immediately".
    pub fn next_event(&self, now: u64) -> Option<u64> {
        let sched = match (&self.current, self.ready.highest()) {
            (_, None) => None,
            (None, Some(_)) => Some(now),
            (Some((_, prio)), Some(highest)) if highest > *prio => Some(now),
            (Some((_, prio)), Some(highest)) if highest == *prio => {
                Some(self.slice_start.saturating_add(self.slice_ns))
            }
            (Some(_), Some(_)) => None,
        };
        match (sched, self.sleepers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes a ready task (to migrate or kill it); returns its priority.
    pub fn remove_ready(&mut self, t: &T) -> Option<Priority>
    where
        T: PartialEq,
    {
        self.ready.remove(t)
    }

    /// Takes the highest ready task off this core, for another core to run
    /// (work stealing).
    pub fn steal(&mut self) -> Option<(T, Priority)> {
        self.ready.pop_highest()
    }

    /// Whether the core runs no task.
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
    }

    /// Number of ready tasks, not counting the current one.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Number of sleeping tasks.
    pub fn sleepers_len(&self) -> usize {
        self.sleepers.len()
    }

    /// The running task and its priority.
    pub fn current(&self) -> Option<(&T, Priority)> {
        self.current.as_ref().map(|(t, p)| (t, *p))
    }

    /// How many times a task was switched in (including from idle).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    fn slice_over(&self, now: u64) -> bool {
        now.saturating_sub(self.slice_start) >= self.slice_ns
    }

    fn pick(&mut self, now: u64) -> Next<T> {
        match self.ready.pop_highest() {
            Some((t, prio)) => Next::Run(self.switch_to(now, t, prio)),
            None => Next::Idle,
        }
    }

    fn switch_to(&mut self, now: u64, t: T, prio: Priority) -> T {
        self.current = Some((t.clone(), prio));
        self.slice_start = now;
        self.switches += 1;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::Rng;

    const SLICE: u64 = 100;

    fn core() -> CoreScheduler<u32> {
        CoreScheduler::with_time_slice(SLICE)
    }

    /// `tick` that collects the timed-out tasks.
    fn tick(c: &mut CoreScheduler<u32>, now: u64) -> (Vec<u32>, bool) {
        let mut out = Vec::new();
        let r = c.tick(now, |t| out.push(*t));
        assert_eq!(r.expired, out.len());
        (out, r.preempt)
    }

    #[test]
    fn idle_core_picks_highest_and_add_ready_signals() {
        let mut c = core();
        assert!(c.is_idle());
        assert_eq!(c.yield_current(0), None);
        assert!(
            c.add_ready(1, Priority::LOW),
            "idle core should be told to pick"
        );
        assert!(c.add_ready(2, Priority::HIGH));
        assert_eq!(c.preempt(0), Some(2));
        assert!(!c.add_ready(3, Priority::NORMAL), "lower than current");
        assert!(!c.add_ready(4, Priority::HIGH), "equal to current");
        assert!(c.add_ready(5, Priority::REALTIME));
        assert_eq!(c.current(), Some((&2, Priority::HIGH)));
        assert_eq!(c.ready_len(), 4);
    }

    #[test]
    fn yield_round_robin_among_equals() {
        let mut c = core();
        for t in 1..=3 {
            c.add_ready(t, Priority::NORMAL);
        }
        c.add_ready(9, Priority::LOW);
        let order: Vec<_> = (0..7).map(|now| c.yield_current(now).unwrap()).collect();
        assert_eq!(order, [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(c.switches(), 7);
    }

    #[test]
    fn yield_alone_keeps_running() {
        let mut c = core();
        c.add_ready(1, Priority::NORMAL);
        c.add_ready(2, Priority::LOW);
        assert_eq!(c.yield_current(0), Some(1));
        assert_eq!(c.yield_current(1), None, "only a lower task is ready");
        assert_eq!(c.current(), Some((&1, Priority::NORMAL)));
        assert_eq!(c.switches(), 1);
    }

    #[test]
    fn strict_priority() {
        let mut c = core();
        c.add_ready(1, Priority::LOW);
        c.add_ready(2, Priority::HIGH);
        c.add_ready(3, Priority::NORMAL);
        assert_eq!(c.yield_current(0), Some(2));
        assert_eq!(c.yield_current(1), None);
        // Even after its slice, the high task is never preempted by lower ones.
        assert_eq!(tick(&mut c, 10 * SLICE), (vec![], false));
        assert_eq!(c.preempt(10 * SLICE), None);
        assert_eq!(c.block_current(11 * SLICE), Next::Run(3));
        assert_eq!(c.exit_current(12 * SLICE), Next::Run(1));
        assert_eq!(c.exit_current(13 * SLICE), Next::Idle);
        assert!(c.is_idle());
        assert_eq!(c.block_current(14 * SLICE), Next::Idle);
    }

    #[test]
    fn preempt_by_higher_keeps_turn_slice_expiry_goes_back() {
        let mut c = core();
        for t in [1, 2] {
            c.add_ready(t, Priority::NORMAL);
        }
        assert_eq!(c.yield_current(0), Some(1));
        assert!(c.add_ready(7, Priority::HIGH));
        assert_eq!(c.preempt(10), Some(7));
        // 1 was preempted mid-slice, so it runs before 2.
        assert_eq!(c.exit_current(20), Next::Run(1));
        // Slice not over: equal-priority 2 waits.
        assert_eq!(tick(&mut c, 20 + SLICE - 1), (vec![], false));
        assert_eq!(c.preempt(20 + SLICE - 1), None);
        assert_eq!(tick(&mut c, 20 + SLICE), (vec![], true));
        assert_eq!(c.preempt(20 + SLICE), Some(2));
        assert_eq!(c.preempt(20 + 2 * SLICE), Some(1));
    }

    #[test]
    fn sleep_tick_order_and_ties() {
        let mut c = core();
        for t in 1..=4 {
            c.add_ready(t, Priority::NORMAL);
        }
        assert_eq!(c.yield_current(0), Some(1));
        let (_, next) = c.sleep_current(0, 50).unwrap();
        assert_eq!(next, Next::Run(2));
        let (_, next) = c.sleep_current(1, 30).unwrap();
        assert_eq!(next, Next::Run(3));
        let (_, next) = c.sleep_current(2, 50).unwrap();
        assert_eq!(next, Next::Run(4));
        let (_, next) = c.sleep_current(3, 30).unwrap();
        assert_eq!(next, Next::Idle);
        assert_eq!(c.sleepers_len(), 4);
        assert_eq!(c.next_event(3), Some(30));
        assert_eq!(tick(&mut c, 29), (vec![], false));
        assert_eq!(tick(&mut c, 30), (vec![2, 4], true));
        assert_eq!(c.next_event(30), Some(30), "idle with ready tasks: now");
        assert_eq!(tick(&mut c, 60), (vec![1, 3], true));
        let order: Vec<_> = (0..4).map(|now| c.yield_current(now).unwrap()).collect();
        assert_eq!(order, [2, 4, 1, 3]);
        assert_eq!(c.sleep_current(4, 5).map(|(_, n)| n), Ok(Next::Run(2)));
    }

    #[test]
    fn sleep_without_current_is_an_error() {
        let mut c = core();
        assert_eq!(c.sleep_current(0, 10), Err(SchedError::NoCurrentTask));
    }

    #[test]
    fn wake_or_timeout_exactly_once() {
        let mut c = core();
        c.add_ready(1, Priority::NORMAL);
        c.add_ready(2, Priority::NORMAL);
        c.yield_current(0);
        let (k1, _) = c.sleep_current(0, 100).unwrap();
        let (k2, _) = c.sleep_current(1, 100).unwrap();
        assert!(c.is_idle());
        // 1 is woken early: its timer is gone and it is ready.
        assert_eq!(c.wake_sleeper(k1), Some(true));
        assert_eq!(c.wake_sleeper(k1), None);
        assert_eq!(c.yield_current(2), Some(1));
        // 2 times out: reported once, and a late wake finds nothing.
        assert_eq!(tick(&mut c, 100), (vec![2], false));
        assert_eq!(c.wake_sleeper(k2), None);
        assert_eq!(c.cancel_sleep(k2), None);
        assert_eq!(c.ready_len(), 1);
        // cancel_sleep removes without making ready.
        let (k1, next) = c.sleep_current(101, 500).unwrap();
        assert_eq!(next, Next::Run(2));
        assert_eq!(c.cancel_sleep(k1), Some((1, Priority::NORMAL)));
        assert_eq!(c.ready_len(), 0);
        assert_eq!(c.next_event(102), None);
    }

    /// The timed futex wait protocol from the type's docs, with the race
    /// where the timer fires just before a waker takes the task.
    #[test]
    fn timed_futex_wait_protocol() {
        use crate::FutexTable;
        const ADDR: usize = 0x40;
        let mut c = core();
        let mut table = FutexTable::new();
        let mut keys = std::collections::HashMap::new();
        for t in 1..=4 {
            c.add_ready(t, Priority::NORMAL);
        }
        c.yield_current(0);
        // Tasks 1, 2, 3 wait on ADDR with deadlines 10, 20, 30; 4 runs.
        for (now, deadline) in [(0, 10), (1, 20), (2, 30)] {
            let (&me, _) = c.current().unwrap();
            table.enqueue(ADDR, me);
            let (key, _) = c.sleep_current(now, deadline).unwrap();
            keys.insert(me, key);
        }
        assert_eq!(c.current(), Some((&4, Priority::NORMAL)));
        // Task 1's timer fires; nobody woke it.
        assert_eq!(tick(&mut c, 10), (vec![1], false));
        // Before task 1 runs, a waker wakes one waiter: task 1 is still
        // first in the queue, so the waker takes it; its timer is gone and
        // it must not be made ready twice.
        let mut woken = Vec::new();
        assert_eq!(table.wake(ADDR, 1, &mut |t| woken.push(t)), 1);
        assert_eq!(woken, [1]);
        assert_eq!(c.wake_sleeper(keys[&1]), None, "already ready");
        // Task 1 runs again and finds itself dequeued: it was woken, it did
        // not time out (the wake raced its timeout and won the futex queue).
        assert!(!table.cancel(ADDR, &1));
        // Task 2 is woken before its deadline: the timer is cancelled.
        let mut woken = Vec::new();
        table.wake(ADDR, 1, &mut |t| woken.push(t));
        assert_eq!(woken, [2]);
        assert_eq!(c.wake_sleeper(keys[&2]), Some(false));
        assert!(!table.cancel(ADDR, &2));
        // Task 3 times out for real: still queued when it runs again.
        assert_eq!(tick(&mut c, 30), (vec![3], false), "4's slice is not over");
        assert!(table.cancel(ADDR, &3));
        assert_eq!(table.waiters(ADDR), 0);
        assert_eq!(c.ready_len(), 3);
        assert_eq!(c.sleepers_len(), 0);
    }

    #[test]
    fn next_event_tickless_cases() {
        let mut c = core();
        assert_eq!(c.next_event(0), None, "idle, nothing pending");
        c.add_ready(1, Priority::NORMAL);
        assert_eq!(c.next_event(0), Some(0), "idle with a ready task");
        c.yield_current(5);
        assert_eq!(c.next_event(6), None, "one runnable task: no tick");
        c.add_ready(2, Priority::LOW);
        assert_eq!(c.next_event(6), None, "only a lower task waits");
        c.add_ready(3, Priority::NORMAL);
        assert_eq!(c.next_event(6), Some(5 + SLICE), "slice end");
        c.add_ready(4, Priority::HIGH);
        assert_eq!(c.next_event(6), Some(6), "higher ready: now");
        assert_eq!(c.preempt(6), Some(4));
        let (_, next) = c.sleep_current(7, 40).unwrap();
        assert_eq!(next, Next::Run(1));
        assert_eq!(c.next_event(7), Some(40), "sleeper before slice end");
        assert_eq!(c.remove_ready(&3), Some(Priority::NORMAL));
        assert_eq!(c.remove_ready(&3), None);
        assert_eq!(c.next_event(8), Some(40), "sleeper only");
        assert_eq!(c.steal(), Some((2, Priority::LOW)));
        assert_eq!(c.ready_len(), 0);
    }

    #[test]
    fn time_slice_is_configurable() {
        let mut c: CoreScheduler<u32> = CoreScheduler::new();
        assert_eq!(c.time_slice(), DEFAULT_TIME_SLICE_NS);
        c.set_time_slice(7);
        c.add_ready(1, Priority::NORMAL);
        c.add_ready(2, Priority::NORMAL);
        c.yield_current(10);
        assert_eq!(c.next_event(10), Some(17));
    }

    /// A deliberately naive reference: ready tasks in a vector with explicit
    /// order stamps, sleepers in a vector scanned for the minimum.
    #[derive(Default)]
    struct Model {
        current: Option<(u32, Priority)>,
        /// (order stamp, task, priority): pick max priority, then min stamp.
        ready: Vec<(i64, u32, Priority)>,
        back: i64,
        front: i64,
        /// (deadline, insertion seq, task, priority, key)
        sleepers: Vec<(u64, u64, u32, Priority, TimerKey)>,
        seq: u64,
        slice_start: u64,
        switches: u64,
    }

    impl Model {
        fn push_back(&mut self, t: u32, prio: Priority) {
            self.back += 1;
            self.ready.push((self.back, t, prio));
        }

        fn push_front(&mut self, t: u32, prio: Priority) {
            self.front -= 1;
            self.ready.push((self.front, t, prio));
        }

        fn best(&self) -> Option<usize> {
            (0..self.ready.len()).max_by_key(|&i| (self.ready[i].2, -self.ready[i].0))
        }

        fn highest(&self) -> Option<Priority> {
            self.best().map(|i| self.ready[i].2)
        }

        fn switch(&mut self, now: u64, i: usize) -> u32 {
            let (_, t, prio) = self.ready.remove(i);
            self.current = Some((t, prio));
            self.slice_start = now;
            self.switches += 1;
            t
        }

        fn pick(&mut self, now: u64) -> Option<u32> {
            self.best().map(|i| self.switch(now, i))
        }

        fn slice_over(&self, now: u64) -> bool {
            now.saturating_sub(self.slice_start) >= SLICE
        }

        fn yield_current(&mut self, now: u64) -> Option<u32> {
            let Some((cur, prio)) = self.current else {
                return self.pick(now);
            };
            match self.best() {
                Some(i) if self.ready[i].2 >= prio => {
                    let t = self.switch(now, i);
                    self.push_back(cur, prio);
                    Some(t)
                }
                _ => {
                    self.slice_start = now;
                    None
                }
            }
        }

        fn preempt(&mut self, now: u64) -> Option<u32> {
            let Some((cur, prio)) = self.current else {
                return self.pick(now);
            };
            let i = self.best()?;
            if self.ready[i].2 > prio {
                let over = self.slice_over(now);
                let t = self.switch(now, i);
                if over {
                    self.push_back(cur, prio);
                } else {
                    self.push_front(cur, prio);
                }
                Some(t)
            } else if self.ready[i].2 == prio && self.slice_over(now) {
                self.yield_current(now)
            } else {
                None
            }
        }

        fn tick(&mut self, now: u64) -> (Vec<u32>, bool) {
            self.sleepers.sort_by_key(|s| (s.0, s.1));
            let n = self.sleepers.iter().take_while(|s| s.0 <= now).count();
            let expired: Vec<_> = self.sleepers.drain(..n).collect();
            for &(_, _, t, prio, _) in &expired {
                self.push_back(t, prio);
            }
            let preempt = match (self.current, self.highest()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((_, p)), Some(h)) => h > p || (h == p && self.slice_over(now)),
            };
            (expired.iter().map(|s| s.2).collect(), preempt)
        }

        fn next_event(&self, now: u64) -> Option<u64> {
            let sched = match (self.current, self.highest()) {
                (_, None) => None,
                (None, Some(_)) => Some(now),
                (Some((_, p)), Some(h)) if h > p => Some(now),
                (Some((_, p)), Some(h)) if h == p => Some(self.slice_start + SLICE),
                _ => None,
            };
            sched
                .into_iter()
                .chain(self.sleepers.iter().map(|s| s.0))
                .min()
        }
    }

    #[test]
    fn matches_reference_model() {
        let levels = [
            Priority::IDLE,
            Priority::LOW,
            Priority::NORMAL,
            Priority::NORMAL,
            Priority::HIGH,
        ];
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut c = core();
            let mut m = Model::default();
            let mut now = 0u64;
            let mut next_id = 0u32;
            let mut blocked: Vec<(u32, Priority)> = Vec::new();
            let mut keys: Vec<TimerKey> = Vec::new();
            for _ in 0..3_000 {
                match rng.below(12) {
                    0 | 1 => {
                        let prio = levels[rng.below(levels.len() as u64) as usize];
                        let preempt_expected = m.current.is_none_or(|(_, cp)| prio > cp);
                        m.push_back(next_id, prio);
                        assert_eq!(c.add_ready(next_id, prio), preempt_expected);
                        next_id += 1;
                    }
                    2 if !blocked.is_empty() => {
                        let (t, prio) =
                            blocked.swap_remove(rng.below(blocked.len() as u64) as usize);
                        m.push_back(t, prio);
                        c.add_ready(t, prio);
                    }
                    3 | 4 => assert_eq!(c.yield_current(now), m.yield_current(now)),
                    5 => assert_eq!(c.preempt(now), m.preempt(now)),
                    6 => {
                        if let Some(cur) = m.current.take() {
                            blocked.push(cur);
                        }
                        assert_eq!(c.block_current(now).task(), m.pick(now));
                    }
                    7 => {
                        m.current = None;
                        assert_eq!(c.exit_current(now).task(), m.pick(now));
                    }
                    8 => {
                        let deadline = now + rng.below(60);
                        match m.current.take() {
                            None => assert!(c.sleep_current(now, deadline).is_err()),
                            Some((t, prio)) => {
                                let (key, next) = c.sleep_current(now, deadline).unwrap();
                                m.sleepers.push((deadline, m.seq, t, prio, key));
                                m.seq += 1;
                                keys.push(key);
                                assert_eq!(next.task(), m.pick(now));
                            }
                        }
                    }
                    9 if !keys.is_empty() => {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        let expected = m.sleepers.iter().position(|s| s.4 == key).map(|i| {
                            let (_, _, t, prio, _) = m.sleepers.remove(i);
                            let preempt = m.current.is_none_or(|(_, cp)| prio > cp);
                            m.push_back(t, prio);
                            preempt
                        });
                        assert_eq!(c.wake_sleeper(key), expected);
                    }
                    _ => {
                        now += rng.below(40);
                        assert_eq!(tick(&mut c, now), m.tick(now));
                    }
                }
                assert_eq!(c.current().map(|(t, p)| (*t, p)), m.current);
                assert_eq!(c.ready_len(), m.ready.len());
                assert_eq!(c.sleepers_len(), m.sleepers.len());
                assert_eq!(c.switches(), m.switches);
                assert_eq!(c.next_event(now), m.next_event(now));
            }
        }
    }
}
