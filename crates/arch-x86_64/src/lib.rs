//! The x86_64 hardware layer of the hermit kernel.
//!
//! This crate is the only place (with `drivers`) that touches CPU state and
//! I/O ports: it enables the FPU/SSE unit, installs the GDT, the TSS with its
//! interrupt stacks and the IDT, writes to 16550 serial ports, and issues
//! uhyve hypercalls. Everything portable (memory bookkeeping, scheduling,
//! file systems) lives in other crates and reaches hardware through traits
//! that this crate implements.
//!
//! It is not a kernel: it has no notion of platforms, consoles or processes;
//! the `hermit` crate composes it. Missing so far: per-CPU GDT/TSS for SMP,
//! the local APIC and timer, and context switching (they arrive with the
//! scheduler).
#![cfg_attr(not(test), no_std)]
#![feature(abi_x86_interrupt)]

pub mod context;
pub mod cpu;
pub mod exception;
pub mod gdt;
pub mod io;
pub mod paging;
pub mod time;
