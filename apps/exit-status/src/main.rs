//! Exits with the status given as its first argument (default 0), so tests
//! can check that a chosen status reaches the host.
#![no_std]
#![no_main]

hermit::entry!(main);

fn main() -> i32 {
    match hermit::env::args().nth(1).map(str::parse::<i32>) {
        None => 0,
        Some(Ok(status)) => status,
        Some(Err(_)) => {
            hermit::eprintln!("usage: exit-status [STATUS]");
            2
        }
    }
}
