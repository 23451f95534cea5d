//! hermit: a library operating system. An application links this crate and
//! becomes a bootable image that runs alone in a VM under uhyve or QEMU.
//!
//! An application is a `#![no_std]`, `#![no_main]` binary for the target
//! `x86_64-unknown-none` that names its entry point with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! hermit::entry!(main);
//! fn main() {
//!     hermit::println!("Hello World!!!");
//! }
//! ```
//!
//! It gets a heap (`extern crate alloc`), [`println!`]/[`eprintln!`], its
//! arguments and environment ([`env`]), and its `main` return value becomes
//! the exit status on the host ([`process::Termination`]); a panic prints
//! its message to stderr and exits with status 101.
//!
//! Rust std applications (target `x86_64-unknown-hermit`, or our
//! soft-float variant in `hermit/targets/`) link this crate with
//! `use hermit as _;`: the kernel then starts std's `runtime_entry`, gives
//! every thread a TLS block, and exports the `sys_*` functions std calls
//! (module `syscalls`). std then owns the panic handler and the global
//! allocator (which reaches the kernel heap through `sys_malloc` & co.).
//!
//! What the kernel does at boot: checks the boot info, installs GDT, TSS and
//! IDT (CPU exceptions print a diagnostic and end the VM), enables SSE, sets
//! up the `log` logger (level from the `log=` kernel command-line option, set
//! by `HERMIT_LOG_LEVEL`), builds its page tables and the frame allocator
//! from the memory map, and starts the heap.
//!
//! With feature `smp` it also starts the other CPUs at boot ([`smp`]); they
//! park until the scheduler gives them work.
//!
//! Threads ([`thread`], [`sync`]), time ([`time`]) and files ([`fs`]:
//! an in-memory `/` and `/tmp`, host directories, stdin) start on first use.
//! With feature `virtio-net` or `rtl8139` the image drives that network
//! card ([`nic`]: frames in and out, interrupt-driven); with `tcp` and/or
//! `udp` as well it has sockets on a smoltcp TCP/IP stack ([`net`]).
//!
//! Started as one of several isles (multi-kernel), it reaches the region
//! the isles share through [`isle`]: its isle number and iRCCE message
//! passing with the other isles.
#![no_std]
#![feature(abi_x86_interrupt)]

extern crate alloc;

mod boot;
pub mod console;
pub mod env;
pub mod fs;
mod hostfs;
pub mod isle;
mod linux;
mod logger;
mod mem;
#[cfg(any(feature = "tcp", feature = "udp"))]
pub mod net;
#[cfg(any(feature = "virtio-net", feature = "rtl8139", feature = "mmnif"))]
pub mod nic;
mod pci;

#[cfg(all(
    any(feature = "tcp", feature = "udp"),
    not(any(feature = "virtio-net", feature = "rtl8139", feature = "mmnif"))
))]
compile_error!(
    "hermit: features `tcp`/`udp` need a network card: add `virtio-net`, `rtl8139` or `mmnif`"
);
#[cfg(all(
    any(feature = "dns", feature = "dhcpv4"),
    not(any(feature = "tcp", feature = "udp"))
))]
compile_error!("hermit: features `dns` and `dhcpv4` need `tcp` or `udp`");
pub mod process;
mod sched;
mod syscalls;
pub use mem::heap_in_use;
#[cfg(feature = "smp")]
pub mod smp;
pub mod sync;
pub mod thread;
pub mod time;
mod tls;
mod virtio;

/// Declares the application's entry point: `main` is a function with no
/// arguments whose return type implements [`process::Termination`] (for
/// example `()`, `i32` or `Result<(), E>` with `E: Debug`).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "__hermit_app_main")]
        extern "Rust" fn __hermit_app_main() -> i32 {
            $crate::process::Termination::report($main())
        }
    };
}

/// Prints to the application's standard output.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print($crate::console::Stream::Stdout, format_args!($($arg)*)) };
}

/// Prints to the application's standard output, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print($crate::console::Stream::Stdout, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints to the application's standard error.
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::console::_print($crate::console::Stream::Stderr, format_args!($($arg)*)) };
}

/// Prints to the application's standard error, with a newline.
#[macro_export]
macro_rules! eprintln {
    () => { $crate::eprint!("\n") };
    ($($arg:tt)*) => { $crate::console::_print($crate::console::Stream::Stderr, format_args!("{}\n", format_args!($($arg)*))) };
}
