//! Prints `cpus online: N` and `cpus total: M`: how many CPUs the kernel
//! started at boot (feature `smp`) and how many the machine has. Exits with
//! status 1 if some CPU did not come online. Built with the kernel's
//! `acpi-aml` feature too, so tests cover both ways of powering off.
#![no_std]
#![no_main]

use hermit::println;

hermit::entry!(main);

fn main() -> i32 {
    let online = hermit::smp::online_cpus();
    let total = hermit::smp::cpu_count();
    println!("cpus online: {online}");
    println!("cpus total: {total}");
    if online == total { 0 } else { 1 }
}
