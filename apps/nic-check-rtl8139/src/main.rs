//! nic-check for the RTL8139: the code of `apps/nic-check`, built with the
//! kernel's `rtl8139` feature.
#![no_std]
#![no_main]

#[path = "../../nic-check/src/check.rs"]
mod check;

hermit::entry!(check::main);
