//! Shows the kernel's clocks: prints the real time as Unix seconds, the TSC
//! frequency and where it came from, then busy-waits for N milliseconds
//! (first argument, default 200) and prints how long that took on the
//! monotonic clock. The boot tests compare these figures with the host's.
//!
//! Output, one `key: value` per line:
//! ```text
//! unix_ns: 1751327998123456789
//! tsc_khz: 2596094
//! tsc_source: the boot info
//! wall_source: BootInfo
//! spin_requested_ns: 200000000
//! spin_measured_ns: 200000312
//! ```
#![no_std]
#![no_main]

use hermit::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use hermit::{eprintln, println};

hermit::entry!(main);

fn main() -> i32 {
    let ms = match hermit::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 200,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            eprintln!("usage: clock [BUSY_WAIT_MS]");
            return 2;
        }
    };
    let now = SystemTime::now();
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => println!("unix_ns: {}", since.as_nanos()),
        Err(e) => println!("unix_ns: before 1970 ({e})"),
    }
    println!("tsc_khz: {}", hermit::time::tsc_khz());
    if let Some(source) = hermit::time::frequency_source() {
        println!("tsc_source: {source}");
    }
    println!("wall_source: {:?}", hermit::time::wall_clock_source());

    let requested = Duration::from_millis(ms);
    let start = Instant::now();
    hermit::time::spin_sleep(requested);
    let measured = start.elapsed();
    println!("spin_requested_ns: {}", requested.as_nanos());
    println!("spin_measured_ns: {}", measured.as_nanos());
    0
}
