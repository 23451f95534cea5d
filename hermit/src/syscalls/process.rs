//! `sys_exit`, `sys_abort`, `sys_getpid`, `sys_get_errno`/`sys_errno`,
//! `sys_available_parallelism`/`sys_get_processor_count`.

/// Ends the application with `status` (the host process's exit status).
#[unsafe(no_mangle)]
pub extern "C" fn sys_exit(status: i32) -> ! {
    crate::process::exit(status)
}

/// Ends the application abnormally: status 134, as a Linux process killed
/// by `SIGABRT`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_abort() -> ! {
    crate::process::abort()
}

/// The id of the calling thread (1: the thread running `main`).
#[unsafe(no_mangle)]
pub extern "C" fn sys_getpid() -> i32 {
    i32::try_from(crate::sched::current_id()).unwrap_or(i32::MAX)
}

/// The calling thread's `errno`: the error of its last failed `sys_*` call.
#[unsafe(no_mangle)]
pub extern "C" fn sys_get_errno() -> i32 {
    crate::sched::errno()
}

/// Same as [`sys_get_errno`].
#[unsafe(no_mangle)]
pub extern "C" fn sys_errno() -> i32 {
    sys_get_errno()
}

/// Number of CPUs that run threads.
#[unsafe(no_mangle)]
pub extern "C" fn sys_available_parallelism() -> usize {
    crate::thread::available_parallelism()
}

/// Same as [`sys_available_parallelism`].
#[unsafe(no_mangle)]
pub extern "C" fn sys_get_processor_count() -> usize {
    sys_available_parallelism()
}
