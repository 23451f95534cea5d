//! `sys_spawn2`, `sys_spawn`, `sys_join`, `sys_yield`: std's threads on
//! kernel tasks.
//!
//! A spawned thread's handle waits in a table, keyed by its id, until
//! `sys_join` takes it; a thread nobody joins (std detaches on drop) keeps
//! its small entry for the life of the application.

use alloc::collections::BTreeMap;

use arch_x86_64::irq::without as without_interrupts;
use hermit_interface::errno::Errno;
use spin::Mutex;

use super::{fail, result};
use crate::thread::{Builder, DEFAULT_STACK_SIZE, JoinHandle, Priority};

/// `hermit-abi`'s `NORMAL_PRIO`; the kernel runs it at [`Priority::NORMAL`].
const ABI_NORMAL_PRIO: u8 = 2;

/// Handles of spawned threads not joined yet. Taken with interrupts off so
/// that a holder is never preempted.
static THREADS: Mutex<BTreeMap<u32, JoinHandle<()>>> = Mutex::new(BTreeMap::new());

/// The kernel priority for `hermit-abi` priority `prio` (`LOW_PRIO` 1,
/// `NORMAL_PRIO` 2, `HIGH_PRIO` 3, ... up to 31): `NORMAL_PRIO` is the
/// main thread's priority, each step above or below is one level.
fn priority(prio: u8) -> Priority {
    let level = i32::from(Priority::NORMAL.get()) + i32::from(prio) - i32::from(ABI_NORMAL_PRIO);
    let level = level.clamp(1, i32::from(Priority::MAX.get())) as u8;
    Priority::new(level).unwrap_or(Priority::NORMAL)
}

fn spawn(
    func: extern "C" fn(usize),
    arg: usize,
    prio: u8,
    stack_size: usize,
    core_id: isize,
) -> Result<u32, Errno> {
    let mut builder = Builder::new()
        .priority(priority(prio))
        .stack_size(if stack_size == 0 {
            DEFAULT_STACK_SIZE
        } else {
            stack_size
        });
    if core_id >= 0 {
        builder = builder.core(core_id as usize);
    }
    let handle = builder.spawn(move || func(arg)).map_err(|e| match e {
        crate::thread::SpawnError::OutOfMemory => Errno::ENOMEM,
        crate::thread::SpawnError::NoSuchCore(_) => Errno::EINVAL,
    })?;
    let id = handle.id();
    without_interrupts(|| THREADS.lock().insert(id, handle));
    Ok(id)
}

/// Starts a thread running `func(arg)` with `hermit-abi` priority `prio`, a
/// stack of `stack_size` bytes (0: the default, 64 KiB) on core `core_id`
/// (negative: any core). Returns its id, or 0 if it could not start (no
/// memory, or no such core; `errno` says which).
#[unsafe(no_mangle)]
pub extern "C" fn sys_spawn2(
    func: extern "C" fn(usize),
    arg: usize,
    prio: u8,
    stack_size: usize,
    core_id: isize,
) -> u32 {
    spawn(func, arg, prio, stack_size, core_id).unwrap_or_else(|e| {
        fail(e);
        0
    })
}

/// As [`sys_spawn2`] with the default stack size, storing the id in `*id`
/// (if not null); 0, or `-errno`.
///
/// # Safety
/// `id` is null or points to a writable `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_spawn(
    id: *mut u32,
    func: extern "C" fn(usize),
    arg: usize,
    prio: u8,
    core_id: isize,
) -> i32 {
    result(spawn(func, arg, prio, 0, core_id).map(|tid| {
        if !id.is_null() && id.is_aligned() {
            // SAFETY: non-null, aligned, writable by the caller's promise.
            unsafe { id.write(tid) };
        }
        0
    }))
}

/// Waits until thread `id` (from [`sys_spawn2`]) has finished; 0, or
/// `-EINVAL` for an id that is unknown or was joined already.
#[unsafe(no_mangle)]
pub extern "C" fn sys_join(id: u32) -> i32 {
    match without_interrupts(|| THREADS.lock().remove(&id)) {
        Some(handle) => {
            handle.join();
            0
        }
        None => fail(Errno::EINVAL),
    }
}

/// Lets other ready threads of the same or higher priority run.
#[unsafe(no_mangle)]
pub extern "C" fn sys_yield() {
    crate::thread::yield_now();
}
