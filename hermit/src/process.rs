//! Ending the application: exit statuses and [`Termination`].

use core::fmt::Debug;

/// Ends the application with `status`, which becomes the exit status of the
/// `uhyve`/`proxy` process on the host.
pub fn exit(status: i32) -> ! {
    #[cfg(feature = "tcp")]
    crate::net::flush_at_exit();
    log::info!("application exited with status {status}");
    crate::console::platform_exit(status)
}

/// Ends the application abnormally (status 134, like `SIGABRT` on Linux).
pub fn abort() -> ! {
    crate::eprintln!("hermit: application aborted");
    exit(134)
}

/// A value `main` may return; it decides the exit status.
pub trait Termination {
    /// The exit status this value stands for.
    fn report(self) -> i32;
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl Termination for i32 {
    fn report(self) -> i32 {
        self
    }
}

impl Termination for u8 {
    fn report(self) -> i32 {
        i32::from(self)
    }
}

impl Termination for core::convert::Infallible {
    fn report(self) -> i32 {
        match self {}
    }
}

impl<T: Termination, E: Debug> Termination for Result<T, E> {
    fn report(self) -> i32 {
        match self {
            Ok(v) => v.report(),
            Err(e) => {
                crate::eprintln!("Error: {e:?}");
                1
            }
        }
    }
}
