//! Ping-pong between two UEs (threads) over an `AtomicRegion` with pure
//! polling: one-way latency of small messages and bandwidth of large ones,
//! printed next to a host memcpy of the same size. Figures only, nothing is
//! asserted; on a loaded machine they vary a lot, so each figure is the
//! median of several runs.

use hermit_ircce::{AtomicRegion, Config, Ircce, PollNotify};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

const RUNS: usize = 5;

/// Seconds per round trip of `len`-byte messages, median of [`RUNS`].
fn round_trip(len: usize, rounds: usize) -> f64 {
    let config = Config::new(2).with_channel_size(256 * 1024);
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let region = Arc::new(AtomicRegion::new(1 << 21));
            let r1 = region.clone();
            let echo = thread::spawn(move || {
                let ue = Ircce::init(r1, PollNotify, 1, config).expect("ue1");
                let mut buf = vec![0u8; len];
                for _ in 0..rounds {
                    ue.recv(&mut buf, 0).expect("recv");
                    ue.send(&buf, 0).expect("send");
                }
            });
            let ue = Ircce::init(region, PollNotify, 0, config).expect("ue0");
            let data = vec![0x5au8; len];
            let mut buf = vec![0u8; len];
            // Warm up, then time.
            ue.send(&data, 1).expect("send");
            ue.recv(&mut buf, 1).expect("recv");
            let start = Instant::now();
            for _ in 1..rounds {
                ue.send(&data, 1).expect("send");
                ue.recv(&mut buf, 1).expect("recv");
            }
            let t = start.elapsed().as_secs_f64() / (rounds - 1) as f64;
            echo.join().expect("echo");
            t
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn memcpy_rate(len: usize) -> f64 {
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];
    let reps = 200;
    let start = Instant::now();
    for _ in 0..reps {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (reps * len) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rtt = round_trip(1, 20_000);
    println!(
        "ircce 1 B one-way latency: {:.2} us (median of {RUNS})",
        rtt / 2.0 * 1e6
    );
    for len in [4096usize, 64 * 1024, 1 << 20] {
        let rtt = round_trip(len, if len < 65536 { 2000 } else { 100 });
        println!(
            "ircce {len} B bandwidth: {:.0} MB/s one way; host memcpy {:.0} MB/s",
            2.0 * len as f64 / rtt / 1e6,
            memcpy_rate(len) / 1e6
        );
    }
}
