//! The kernel side of scheduling: tasks with their own stacks, one
//! [`CoreScheduler`] per CPU, context switches, blocking on futexes with
//! timeouts, and each core's idle loop.
//!
//! The decisions (which task runs next, who sleeps until when) are the
//! portable `sched` crate's; this module owns the tasks, performs the
//! switches and implements [`sched::sync::Futex`] for the blocking
//! primitives.
//!
//! Locks: the futex table's lock is always taken before a core's lock, and
//! both are taken with interrupts disabled, so an interrupt handler that
//! takes a core lock cannot deadlock with the code it interrupted. Tasks stay
//! on the core they were started on: only that core ever switches to or from
//! a task, so a task's saved stack pointer is never read while it is being
//! written.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use arch_x86_64::context;
use sched::sync::{Futex, WaitResult};
use sched::{CoreScheduler, FutexTable, Next, Priority, TimerKey};
use spin::{Mutex, MutexGuard};

use crate::time::monotonic_ns;

/// Upper bound on CPUs the kernel manages.
pub const MAX_CPUS: usize = 64;

/// Stack size of the idle tasks.
const IDLE_STACK: usize = 16 * 1024;

/// A task: a thread of execution with its own stack.
pub(crate) struct Task {
    id: u32,
    prio: Priority,
    core: usize,
    /// Saved stack pointer while the task does not run; written by
    /// `context::switch` on the task's own core only.
    rsp: UnsafeCell<u64>,
    /// Scheduling state, only touched with the owning core's lock held.
    state: UnsafeCell<TaskState>,
    /// The stack, `None` for the boot task and the APs' idle loops (which
    /// run on the stacks they booted on). Freed when the task is reaped.
    _stack: Option<Stack>,
    /// Its thread pointer (`fs` base), 0 for tasks without TLS (idle tasks,
    /// and every task of an image without a TLS segment).
    fs_base: u64,
    /// Its TLS block, freed when the task is reaped; `None` for the boot
    /// task, whose block is never freed.
    _tls: Option<crate::tls::TlsBlock>,
    /// The `errno` of the `sys_*` calls it made.
    errno: core::sync::atomic::AtomicI32,
}

#[derive(Default)]
struct TaskState {
    /// Off its core's run queue, waiting for a futex.
    blocked: bool,
    /// Its sleep timer while blocked with a deadline.
    timer: Option<TimerKey>,
}

// SAFETY: `rsp` is written only by the context switch on the task's core and
// read by the same core when switching back; `state` is only accessed with
// the owning core's lock held.
unsafe impl Sync for Task {}
// SAFETY: as above; the stack is plain memory owned by the task.
unsafe impl Send for Task {}

/// A shared handle to a task; compared by identity.
#[derive(Clone)]
pub(crate) struct TaskRef(Arc<Task>);

impl PartialEq for TaskRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl TaskRef {
    fn state(&self) -> *mut TaskState {
        self.0.state.get()
    }
}

/// One CPU's scheduler state.
struct Core {
    sched: CoreScheduler<TaskRef>,
    /// The running task, or the idle task.
    running: Option<TaskRef>,
    /// The core's idle task (runs when `sched` has no current task).
    idle: Option<TaskRef>,
    /// A task that exited on this core; its stack is freed by the next task
    /// that runs here (it cannot free the stack it stands on).
    zombie: Option<TaskRef>,
    /// When the timer is armed to fire (monotonic ns).
    armed: Option<u64>,
}

impl Core {
    const fn new() -> Self {
        Self {
            sched: CoreScheduler::new(),
            running: None,
            idle: None,
            zombie: None,
            armed: None,
        }
    }
}

/// Disables interrupts; returns whether they were enabled.
fn irq_disable() -> bool {
    arch_x86_64::irq::disable_save()
}

fn irq_restore(enable: bool) {
    if enable {
        arch_x86_64::irq::enable();
    }
}

static CORES: [Mutex<Core>; MAX_CPUS] = [const { Mutex::new(Core::new()) }; MAX_CPUS];
static FUTEXES: Mutex<Option<FutexTable<TaskRef>>> = Mutex::new(None);
/// Task ids; 1 is the boot task.
static NEXT_ID: AtomicU32 = AtomicU32::new(2);
/// Cores that run the scheduler.
static CORES_ONLINE: AtomicUsize = AtomicUsize::new(0);
static PICKER: sched::CorePicker = sched::CorePicker::new();
/// Live tasks, for diagnostics and tests.
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);
/// The `fs` base each core has loaded (0: none yet), to skip the
/// `wrmsr` when consecutive tasks share it.
static LOADED_FS: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

/// The index of the CPU running this code.
fn this_core() -> usize {
    arch_x86_64::gdt::this_cpu() as usize
}

/// Vector of the local APIC timer (TSC-deadline mode).
const TIMER_VECTOR: u8 = 0x20;
/// Vector of the wake-up IPI another core sends when it made work here.
const WAKEUP_VECTOR: u8 = 0x21;
/// Spurious-interrupt vector (no EOI).
const SPURIOUS_VECTOR: u8 = 0xff;

/// Each core's local APIC ID, for IPIs (index: core).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Whether the timer works (TSC-deadline APIC timer present).
static HAVE_TIMER: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn local_apic() -> arch_x86_64::apic::LocalApic {
    // SAFETY: every supported platform (uhyve, QEMU microvm) gives each CPU a
    // local APIC in xAPIC mode at the architectural address, identity-mapped.
    unsafe { arch_x86_64::apic::LocalApic::new() }
}

/// Enables this core's local APIC with the scheduler's vectors.
fn init_interrupts(core: usize) {
    static GATES: spin::Once<()> = spin::Once::new();
    GATES.call_once(|| {
        arch_x86_64::exception::set_interrupt_handler(TIMER_VECTOR, timer_interrupt);
        arch_x86_64::exception::set_interrupt_handler(WAKEUP_VECTOR, wakeup_interrupt);
        arch_x86_64::exception::set_interrupt_handler(SPURIOUS_VECTOR, spurious_interrupt);
        HAVE_TIMER.store(arch_x86_64::apic::has_tsc_deadline(), Ordering::Relaxed);
        if !HAVE_TIMER.load(Ordering::Relaxed) {
            log::warn!("no TSC-deadline timer: no preemption, sleeping cores poll");
        }
    });
    let apic = local_apic();
    apic.enable(SPURIOUS_VECTOR);
    APIC_IDS[core].store(apic.id(), Ordering::Relaxed);
    if HAVE_TIMER.load(Ordering::Relaxed) {
        apic.set_tsc_deadline_mode(TIMER_VECTOR);
    }
}

/// Programs this core's timer for the scheduler's next event, if it is
/// earlier than what is armed. Core lock held, interrupts off.
fn rearm(c: &mut Core, now: u64) {
    if !HAVE_TIMER.load(Ordering::Relaxed) {
        return;
    }
    if let Some(at) = c.sched.next_event(now)
        && c.armed.is_none_or(|armed| at < armed)
    {
        c.armed = Some(at);
        arch_x86_64::apic::arm_tsc_deadline(crate::time::tsc_at(at.max(now)).max(1));
    }
}

extern "x86-interrupt" fn timer_interrupt(_frame: x86_64::structures::idt::InterruptStackFrame) {
    local_apic().eoi();
    let mut c = CORES[this_core()].lock();
    c.armed = None;
    let now = monotonic_ns();
    let tick = c.sched.tick(now, mark_timed_out);
    let next = if tick.preempt {
        c.sched.preempt(now)
    } else {
        None
    };
    match next {
        // The interrupted task resumes here later and returns through
        // `iretq`; `switch` keeps its FPU state.
        Some(next) => switch_locked(c, Some(next), now),
        None => rearm(&mut c, now),
    }
}

extern "x86-interrupt" fn wakeup_interrupt(_frame: x86_64::structures::idt::InterruptStackFrame) {
    local_apic().eoi();
    let mut c = CORES[this_core()].lock();
    let now = monotonic_ns();
    match c.sched.preempt(now) {
        Some(next) => switch_locked(c, Some(next), now),
        None => rearm(&mut c, now),
    }
}

extern "x86-interrupt" fn spurious_interrupt(_frame: x86_64::structures::idt::InterruptStackFrame) {
}

/// After making a task ready on `core` (whose lock the caller just
/// released): if that is another core, interrupt it. Even when the task
/// does not outrank what runs there, that core must re-arm its timer: it
/// may be running a lone task with no time-slice timer, and the new task
/// would otherwise wait until that one blocks.
fn kick(core: usize) {
    if core != this_core() {
        local_apic().send_fixed(APIC_IDS[core].load(Ordering::Relaxed), WAKEUP_VECTOR);
    }
}

/// Errors of [`spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for the stack or the task.
    OutOfMemory,
    /// The requested core does not exist or is not online.
    NoSuchCore(usize),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("out of memory for the thread's stack"),
            Self::NoSuchCore(c) => write!(f, "core {c} does not exist or is offline"),
        }
    }
}

impl core::error::Error for SpawnError {}

/// A task with a fresh id.
fn new_task(prio: Priority, core: usize, stack: Option<Stack>, rsp: u64) -> TaskRef {
    task_with_id(
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
        prio,
        core,
        stack,
        rsp,
    )
}

fn task_with_id(id: u32, prio: Priority, core: usize, stack: Option<Stack>, rsp: u64) -> TaskRef {
    with_tls(id, prio, core, stack, rsp, None, 0)
}

fn with_tls(
    id: u32,
    prio: Priority,
    core: usize,
    stack: Option<Stack>,
    rsp: u64,
    tls: Option<crate::tls::TlsBlock>,
    fs_base: u64,
) -> TaskRef {
    LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
    TaskRef(Arc::new(Task {
        id,
        prio,
        core,
        rsp: UnsafeCell::new(rsp),
        state: UnsafeCell::new(TaskState::default()),
        _stack: stack,
        fs_base,
        _tls: tls,
        errno: core::sync::atomic::AtomicI32::new(0),
    }))
}

impl Drop for Task {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A task's stack: mapped in the stack window with an unmapped guard page
/// below it, so an overflow faults instead of corrupting other memory.
/// Freed stacks are kept for reuse by a later task asking for the same
/// size (mapping costs page-table writes: about 0.1 s per MiB on this
/// machine's emulated CPL 0, and Rust std asks for 1 MiB per thread).
pub(crate) struct Stack(Option<crate::mem::GuardedStack>);

/// Freed stacks kept for reuse.
static STACK_CACHE: Mutex<Vec<crate::mem::GuardedStack>> = Mutex::new(Vec::new());
/// At most this many stacks are cached...
const STACK_CACHE_MAX: usize = 256;
/// ...holding at most this many bytes together.
const STACK_CACHE_BYTES: u64 = 64 << 20;

impl Drop for Stack {
    fn drop(&mut self) {
        let Some(stack) = self.0.take() else {
            return;
        };
        let were = irq_disable();
        let mut cache = STACK_CACHE.lock();
        let cached: u64 = cache.iter().map(crate::mem::GuardedStack::size).sum();
        let kept = if cache.len() < STACK_CACHE_MAX
            && cached + stack.size() <= STACK_CACHE_BYTES
            && cache.try_reserve(1).is_ok()
        {
            cache.push(stack);
            None
        } else {
            Some(stack)
        };
        drop(cache);
        irq_restore(were);
        if let Some(stack) = kept {
            crate::mem::free_guarded_stack(stack);
        }
    }
}

/// A stack of at least `bytes` (whole pages) and its top.
fn alloc_stack(bytes: usize) -> Result<(Stack, u64), SpawnError> {
    let size = (bytes as u64).div_ceil(4096).max(1) * 4096;
    let were = irq_disable();
    let cached = {
        let mut cache = STACK_CACHE.lock();
        cache
            .iter()
            .rposition(|s| s.size() == size)
            .map(|i| cache.swap_remove(i))
    };
    irq_restore(were);
    if let Some(stack) = cached {
        let top = stack.top();
        return Ok((Stack(Some(stack)), top));
    }
    let stack = crate::mem::alloc_guarded_stack(size as usize).ok_or(SpawnError::OutOfMemory)?;
    let top = stack.top();
    Ok((Stack(Some(stack)), top))
}

static STARTED: spin::Once<()> = spin::Once::new();

/// Starts the scheduler on first use: the code running then (the
/// application's main thread, the only code running) becomes the first task
/// of the boot CPU, which also gets its idle task. An application that never
/// uses threads pays nothing at boot.
fn ensure_started() {
    STARTED.call_once(|| {
        *FUTEXES.lock() = Some(FutexTable::new());
        init_core(0, true);
        #[cfg(feature = "smp")]
        wait_for_aps();
    });
}

/// Waits until every application processor that came online has entered
/// its scheduler (`ap_main`), so that the first spawn sees every core. An
/// AP counts as online before it runs `ap_main`, and a boot CPU that runs
/// natively can get here before an AP that does not.
#[cfg(feature = "smp")]
fn wait_for_aps() {
    let cpus = crate::smp::online_cpus();
    let deadline = monotonic_ns().saturating_add(1_000_000_000);
    while CORES_ONLINE.load(Ordering::Acquire) < cpus {
        if monotonic_ns() > deadline {
            log::warn!(
                "sched: {} of {cpus} CPUs entered the scheduler within 1 s",
                CORES_ONLINE.load(Ordering::Acquire)
            );
            return;
        }
        core::hint::spin_loop();
    }
}

/// Entry of an application processor (for `smp::start_aps`): the code
/// running on the AP's boot stack becomes its idle loop.
#[cfg(feature = "smp")]
pub(crate) extern "C" fn ap_main(cpu: u32) -> ! {
    let core = cpu as usize;
    if core >= MAX_CPUS {
        arch_x86_64::cpu::halt_forever();
    }
    irq_disable();
    init_interrupts(core);
    let idle = new_task(Priority::IDLE, core, None, 0);
    let mut c = CORES[core].lock();
    c.idle = Some(idle.clone());
    c.running = Some(idle);
    drop(c);
    CORES_ONLINE.fetch_add(1, Ordering::Release);
    idle_loop(core)
}

/// Registers the running code as core `core`'s first task (if `boot_task`)
/// and creates its idle task.
fn init_core(core: usize, boot_task: bool) {
    irq_disable();
    init_interrupts(core);
    let idle = match alloc_stack(IDLE_STACK) {
        Ok((stack, top)) => {
            // SAFETY: the stack is fresh, 16-byte aligned at its top and owned
            // by the idle task.
            let rsp = unsafe { context::prepare_stack(top, idle_entry, core as u64) };
            new_task(Priority::IDLE, core, Some(stack), rsp)
        }
        Err(_) => crate::boot::fail(format_args!("no memory for the idle task")),
    };
    let mut c = CORES[core].lock();
    c.idle = Some(idle.clone());
    if boot_task {
        // Its stack pointer is saved by its first switch away; its TLS
        // block was loaded at boot.
        let tp = crate::tls::boot_thread_pointer();
        LOADED_FS[core].store(tp, Ordering::Relaxed);
        let me = with_tls(1, Priority::NORMAL, core, None, 0, None, tp);
        c.sched.add_ready(me.clone(), Priority::NORMAL);
        let now = monotonic_ns();
        let picked = c.sched.yield_current(now);
        debug_assert!(picked.is_some_and(|t| t == me));
        c.running = Some(me);
    } else {
        c.running = Some(idle);
    }
    drop(c);
    CORES_ONLINE.fetch_add(1, Ordering::Release);
    // The boot code ran with interrupts off (entry contract); from now on
    // the timer may preempt it.
    irq_restore(true);
}

/// The running task.
fn current() -> TaskRef {
    ensure_started();
    // Interrupts off: the timer handler takes this lock too.
    let were = irq_disable();
    let running = CORES[this_core()].lock().running.clone();
    irq_restore(were);
    match running {
        Some(t) => t,
        None => crate::boot::fail(format_args!("scheduler used before init")),
    }
}

/// Switches from the running task to `next` (the idle task if `None`),
/// consuming the held core lock, after re-arming the timer for the
/// scheduler's next event at time `now`. Interrupts must be disabled; they
/// stay disabled. Returns when the calling task runs again.
fn switch_locked(mut core: MutexGuard<'_, Core>, next: Option<TaskRef>, now: u64) {
    let Some(target) = next.or_else(|| core.idle.clone()) else {
        return;
    };
    let Some(prev) = core.running.replace(target.clone()) else {
        return;
    };
    rearm(&mut core, now);
    if prev == target {
        return;
    }
    let from = prev.0.rsp.get();
    // SAFETY: `target` is not running (it was ready or idle on this core,
    // and only this core runs it), so its saved stack pointer is stable.
    let to = unsafe { *target.0.rsp.get() };
    // Tasks without TLS (idle loops) run with whatever `fs` base is
    // loaded: they never touch it.
    let fs = target.0.fs_base;
    if fs != 0 && LOADED_FS[this_core()].swap(fs, Ordering::Relaxed) != fs {
        // SAFETY: `fs` is `target`'s thread pointer, just past its TLS block,
        // which lives as long as the task; interrupts are off and we are on
        // the kernel's context-switch path (CPL 0).
        unsafe { arch_x86_64::cpu::set_fs_base(fs) };
    }
    // The scheduler, a wait queue or the zombie slot still holds `prev`, and
    // `running` holds `target`, so both stay alive across the switch.
    drop(prev);
    drop(target);
    drop(core);
    // SAFETY: `from` is the running task's own slot; `to` was saved by
    // `switch` or `prepare_stack` for a task that is not running; stacks live
    // as long as their tasks; interrupts are disabled.
    unsafe { context::switch(from, to) };
    after_switch();
}

/// Runs on every task right after it was switched to: frees the stack of a
/// task that exited on this core.
fn after_switch() {
    let zombie = CORES[this_core()].lock().zombie.take();
    drop(zombie);
}

/// First Rust code of a spawned task: `arg` is a leaked
/// `Box<Box<dyn FnOnce() + Send>>`.
extern "C" fn task_entry(arg: u64) -> ! {
    after_switch();
    irq_restore(true);
    // SAFETY: `spawn` leaked exactly this box for this task, and only this
    // task reclaims it.
    let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
    f();
    exit_current()
}

/// Ends the running task; its stack is freed by the next task on this core.
pub(crate) fn exit_current() -> ! {
    irq_disable();
    let core = this_core();
    let mut c = CORES[core].lock();
    let now = monotonic_ns();
    let next = c.sched.exit_current(now).task();
    c.zombie = c.running.clone();
    switch_locked(c, next, now);
    crate::boot::fail(format_args!("an exited task was resumed"))
}

/// Idle loop of core `core`: runs ready tasks, sleepers that are due, and
/// otherwise halts until an interrupt.
extern "C" fn idle_entry(core: u64) -> ! {
    after_switch();
    idle_loop(core as usize)
}

fn idle_loop(core: usize) -> ! {
    loop {
        irq_disable();
        let mut c = CORES[core].lock();
        let now = monotonic_ns();
        c.sched.tick(now, mark_timed_out);
        if let Some(next) = c.sched.yield_current(now) {
            switch_locked(c, Some(next), now);
            continue;
        }
        rearm(&mut c, now);
        let waiting = c.sched.next_event(now).is_some() && !HAVE_TIMER.load(Ordering::Relaxed);
        drop(c);
        if waiting {
            // No timer interrupt yet: poll until a sleeper is due.
            irq_restore(true);
            core::hint::spin_loop();
        } else {
            // Nothing to wait for: halt until an interrupt makes work.
            arch_x86_64::irq::enable_and_halt();
        }
    }
}

/// `tick` callback: a sleeper whose deadline passed is ready again; a waker
/// must not add it a second time.
fn mark_timed_out(t: &TaskRef) {
    // SAFETY: called by `tick` with the owning core's lock held.
    let st = unsafe { &mut *t.state() };
    st.blocked = false;
    st.timer = None;
}

/// Spawns a task running `f` on `core` (round robin over online cores if
/// `None`) with priority `prio` and a stack of `stack_size` bytes.
pub(crate) fn spawn(
    f: Box<dyn FnOnce() + Send>,
    prio: Priority,
    core: Option<usize>,
    stack_size: usize,
) -> Result<u32, SpawnError> {
    ensure_started();
    let online = CORES_ONLINE.load(Ordering::Acquire).max(1);
    let core = match core {
        Some(c) if c < online => c,
        Some(c) => return Err(SpawnError::NoSuchCore(c)),
        None => PICKER.next(online),
    };
    let tls = crate::tls::TlsBlock::new().map_err(|_| SpawnError::OutOfMemory)?;
    let fs_base = tls.as_ref().map_or(0, crate::tls::TlsBlock::thread_pointer);
    let (stack, top) = alloc_stack(stack_size)?;
    let arg = Box::into_raw(Box::new(f)) as u64;
    // SAFETY: the stack is fresh, its top 16-byte aligned, owned by the task.
    let rsp = unsafe { context::prepare_stack(top, task_entry, arg) };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let task = with_tls(id, prio, core, Some(stack), rsp, tls, fs_base);
    let id = task.0.id;
    let were = irq_disable();
    let mut c = CORES[core].lock();
    let preempt = c.sched.add_ready(task, prio);
    if core == this_core() {
        rearm(&mut c, monotonic_ns());
    }
    drop(c);
    kick(core);
    irq_restore(were);
    if preempt && core == this_core() {
        yield_now();
    }
    Ok(id)
}

/// Gives the rest of the time slice to another ready task of the same or
/// higher priority, if there is one.
pub(crate) fn yield_now() {
    ensure_started();
    let were = irq_disable();
    let mut c = CORES[this_core()].lock();
    let now = monotonic_ns();
    c.sched.tick(now, mark_timed_out);
    match c.sched.yield_current(now) {
        Some(next) => switch_locked(c, Some(next), now),
        None => drop(c),
    }
    irq_restore(were);
}

/// Blocks the running task until `deadline_ns` (monotonic).
pub(crate) fn sleep_until(deadline_ns: u64) {
    ensure_started();
    let were = irq_disable();
    let mut c = CORES[this_core()].lock();
    let now = monotonic_ns();
    if deadline_ns > now {
        c.sched.tick(now, mark_timed_out);
        if let Ok((_, next)) = c.sched.sleep_current(now, deadline_ns) {
            switch_locked(c, next.task(), now);
        }
    }
    irq_restore(were);
}

/// The id of the running task (1 is the boot task).
pub(crate) fn current_id() -> u32 {
    current().0.id
}

/// The running task's `errno` (the last error of a `sys_*` call).
#[cfg_attr(
    target_os = "none",
    allow(dead_code, reason = "std's sys_* calls use it")
)]
pub(crate) fn errno() -> i32 {
    current().0.errno.load(Ordering::Relaxed)
}

/// Sets the running task's `errno`.
#[cfg_attr(
    target_os = "none",
    allow(dead_code, reason = "std's sys_* calls use it")
)]
pub(crate) fn set_errno(value: i32) {
    current().0.errno.store(value, Ordering::Relaxed);
}

/// The core the caller runs on.
pub(crate) fn current_core() -> usize {
    this_core()
}

/// Number of tasks alive (idle tasks included).
pub(crate) fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

/// Number of cores that run the scheduler.
pub(crate) fn cores_online() -> usize {
    ensure_started();
    CORES_ONLINE.load(Ordering::Acquire)
}

/// Makes a task that a futex waker took off the futex table ready again.
/// Called with the futex lock held (lock order: futex, then core).
fn make_ready(t: TaskRef) {
    let mut c = CORES[t.0.core].lock();
    // SAFETY: the owning core's lock is held.
    let st = unsafe { &mut *t.state() };
    if !st.blocked {
        // Its timer fired first; `tick` already made it ready.
        return;
    }
    st.blocked = false;
    let prio = t.0.prio;
    let core = t.0.core;
    // Whether it outranks the running task does not matter here: the local
    // timer is re-armed (for "now" if it does), a remote core is kicked.
    match st.timer.take() {
        Some(key) => {
            c.sched.wake_sleeper(key);
        }
        None => {
            c.sched.add_ready(t, prio);
        }
    }
    if core == this_core() {
        rearm(&mut c, monotonic_ns());
    }
    drop(c);
    kick(core);
}

/// The kernel's futex: [`sched::sync`] primitives block through it.
#[derive(Debug)]
pub struct KernelFutex;

impl Futex for KernelFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) -> WaitResult {
        let addr = word as *const AtomicU32 as usize;
        let me = current();
        let were = irq_disable();
        let mut table = FUTEXES.lock();
        if word.load(Ordering::SeqCst) != expected {
            drop(table);
            irq_restore(were);
            return WaitResult::ValueChanged;
        }
        let now = monotonic_ns();
        if deadline_ns.is_some_and(|d| d <= now) {
            drop(table);
            irq_restore(were);
            return WaitResult::TimedOut;
        }
        let Some(futexes) = table.as_mut() else {
            drop(table);
            irq_restore(were);
            return WaitResult::Woken;
        };
        futexes.enqueue(addr, me.clone());
        // Both locks are held until the task is marked blocked, so a waker
        // (which needs the futex lock to find it) always sees it blocked.
        let mut c = CORES[me.0.core].lock();
        drop(table);
        c.sched.tick(now, mark_timed_out);
        let next = match deadline_ns {
            Some(deadline) => match c.sched.sleep_current(now, deadline) {
                Ok((key, next)) => {
                    // SAFETY: the owning core's lock is held.
                    let st = unsafe { &mut *me.state() };
                    st.blocked = true;
                    st.timer = Some(key);
                    next
                }
                Err(_) => Next::Idle,
            },
            None => {
                // SAFETY: the owning core's lock is held.
                unsafe { (*me.state()).blocked = true };
                c.sched.block_current(now)
            }
        };
        switch_locked(c, next.task(), now);
        let result = if deadline_ns.is_some() {
            // Still queued means nobody woke it: the timer did.
            let mut table = FUTEXES.lock();
            if table.as_mut().is_some_and(|f| f.cancel(addr, &me)) {
                WaitResult::TimedOut
            } else {
                WaitResult::Woken
            }
        } else {
            WaitResult::Woken
        };
        irq_restore(were);
        result
    }

    fn wake(word: &AtomicU32, n: u32) -> u32 {
        if STARTED.get().is_none() {
            // No task has ever blocked.
            return 0;
        }
        let addr = word as *const AtomicU32 as usize;
        let were = irq_disable();
        let mut table = FUTEXES.lock();
        let woken = match table.as_mut() {
            Some(f) => f.wake_u32(addr, n, &mut make_ready),
            None => 0,
        };
        drop(table);
        irq_restore(were);
        woken
    }

    fn now_ns() -> u64 {
        monotonic_ns()
    }
}
