//! Prints the host-side cost of a doorbell: a ring from one isle to a
//! thread waiting on another's doorbell and back (ping-pong over two
//! isles' sockets), as one-way latency. Figures only, no assertions.

use std::time::{Duration, Instant};

use hermit_isles::{IsleDir, REGION_MIN};

const ROUNDS: u32 = 5_000;

fn main() {
    let path = std::env::temp_dir().join(format!("hermit-isles-bench-{}", std::process::id()));
    let dir = IsleDir::new(&path);
    let a = dir.join(0, Some(REGION_MIN)).expect("join isle 0");
    let b = dir.join(1, None).expect("join isle 1");
    let (a_bell, b_bell) = (a.doorbell().expect("bell"), b.doorbell().expect("bell"));
    let timeout = Duration::from_secs(5);
    let echo = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            if !b_bell.wait(timeout).expect("wait") {
                return;
            }
            b.ring(0);
        }
    });
    let mut samples = Vec::with_capacity(ROUNDS as usize);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        a.ring(1);
        if !a_bell.wait(timeout).expect("wait") {
            println!("doorbell: a ring was lost (receiver queue full?)");
            break;
        }
        samples.push(start.elapsed());
    }
    echo.join().expect("echo thread");
    samples.sort();
    let one_way = |d: Duration| d.as_secs_f64() * 1e6 / 2.0;
    if !samples.is_empty() {
        println!(
            "doorbell ring -> waiting thread, one way ({} round trips): median {:.1} us, min {:.1} us",
            samples.len(),
            one_way(samples[samples.len() / 2]),
            one_way(samples[0])
        );
    }
    drop(a);
    let _ = dir.clean();
}
