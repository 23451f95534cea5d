//! `sys_clock_gettime`, `sys_nanosleep`, `sys_usleep`.

use hermit_interface::errno::Errno;

use super::{Timespec, fail, read_arg, timespec_from_ns, timespec_ns};

/// `hermit-abi`'s `CLOCK_REALTIME`: time since the Unix epoch.
pub(crate) const CLOCK_REALTIME: i32 = 1;
/// `hermit-abi`'s `CLOCK_MONOTONIC`: time since boot, never going back.
pub(crate) const CLOCK_MONOTONIC: i32 = 4;

fn now(clock: i32) -> Result<Timespec, Errno> {
    match clock {
        CLOCK_MONOTONIC => Ok(timespec_from_ns(crate::time::monotonic_ns())),
        CLOCK_REALTIME => {
            let since = crate::time::SystemTime::now()
                .duration_since(crate::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(Timespec {
                tv_sec: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: since.subsec_nanos() as i32,
            })
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Stores the time of `clock` (`CLOCK_REALTIME` = 1, `CLOCK_MONOTONIC` =
/// 4) in `*tp`; 0, or `-EINVAL` for another clock or a null `tp`.
///
/// # Safety
/// `tp` is null or points to a writable `timespec`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_clock_gettime(clock: i32, tp: *mut Timespec) -> i32 {
    if tp.is_null() || !tp.is_aligned() {
        return fail(Errno::EINVAL);
    }
    match now(clock) {
        Ok(t) => {
            // SAFETY: non-null, aligned, writable by the caller's promise.
            unsafe { tp.write(t) };
            0
        }
        Err(e) => fail(e),
    }
}

/// Sleeps for the time in `*req`; 0, or `-EINVAL` for a null pointer or a
/// negative or malformed time.
///
/// # Safety
/// `req` is null or points to a readable `timespec`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_nanosleep(req: *const Timespec) -> i32 {
    // SAFETY: the caller's promise about `req`.
    match unsafe { read_arg(req) }.and_then(|t| timespec_ns(&t)) {
        Ok(ns) => {
            crate::thread::sleep(core::time::Duration::from_nanos(ns));
            0
        }
        Err(e) => fail(e),
    }
}

/// Sleeps for at least `usecs` microseconds.
#[unsafe(no_mangle)]
pub extern "C" fn sys_usleep(usecs: u64) {
    crate::thread::sleep(core::time::Duration::from_micros(usecs));
}
