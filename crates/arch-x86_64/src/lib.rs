//! The x86_64 hardware layer of the hermit kernel.
//!
//! This crate is the only place (with `drivers`) that touches CPU state and
//! I/O ports: it enables the FPU/SSE unit, installs the GDT, the TSS with its
//! interrupt stacks and the IDT, writes to 16550 serial ports, and issues
//! uhyve hypercalls. Everything portable (memory bookkeeping, scheduling,
//! file systems) lives in other crates and reaches hardware through traits
//! that this crate implements.
//!
//! It also has the pieces for SMP and power management: a per-CPU GDT/TSS
//! with a `GS`-based per-CPU block, an xAPIC driver (IPIs, timer), the
//! real-mode trampoline that starts application processors, and ACPI table
//! access (MADT, power-off through `\_S5`).
//!
//! It is not a kernel: it has no notion of platforms, consoles or processes;
//! the `hermit` crate composes it. Missing so far: interrupt
//! routing beyond the I/O APIC ([`ioapic`]) and context switching (they arrive
//! with the scheduler).
#![cfg_attr(not(test), no_std)]
#![feature(abi_x86_interrupt)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod context;
pub mod cpu;
pub mod exception;
pub mod gdt;
pub mod io;
pub mod ioapic;
pub mod irq;
pub mod paging;
pub mod time;
pub mod trampoline;
