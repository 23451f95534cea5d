//! Two hermit-net stacks joined by an in-memory Ethernet cable, each with a
//! thread polling it (the kernel's network thread), plus a `Syscalls` per
//! side.

#![allow(dead_code, reason = "not every test binary uses every helper")]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hermit_net::{Config, Errno, Ipv4Addr, Nic, Platform, Stack};
use hermit_syscalls::{Clock, Syscalls, Vfs};

pub const A_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 2);

/// Clock, a condition variable for `wait`, and a counter-based generator.
pub struct HostPlatform {
    start: Instant,
    gate: Mutex<()>,
    cv: Condvar,
    seed: AtomicU64,
}

impl Platform for HostPlatform {
    fn now_micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn wait(&self, counter: &AtomicU32, seen: u32, deadline: Option<u64>) {
        let guard = self.gate.lock().unwrap();
        if counter.load(Ordering::Acquire) != seen {
            return;
        }
        let now = self.now_micros();
        let limit = Duration::from_millis(200);
        let wait = match deadline {
            Some(d) if d <= now => return,
            Some(d) => Duration::from_micros(d - now).min(limit),
            None => limit,
        };
        drop(self.cv.wait_timeout(guard, wait).unwrap());
    }

    fn wake_all(&self, _counter: &AtomicU32) {
        let _guard = self.gate.lock().unwrap();
        self.cv.notify_all();
    }

    fn random_u64(&self) -> u64 {
        // SplitMix64 over a shared counter.
        let mut z = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}

/// One direction of the cable.
struct Lane {
    frames: Mutex<VecDeque<Vec<u8>>>,
    receiver: OnceLock<&'static Stack>,
}

struct CableNic {
    mac: [u8; 6],
    inbound: Arc<Lane>,
    outbound: Arc<Lane>,
}

impl Nic for CableNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        let frame = self.inbound.frames.lock().unwrap().pop_front();
        frame.map(|fr| f(&fr)).is_some()
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), Errno> {
        let mut frame = vec![0; len];
        f(&mut frame);
        self.outbound.frames.lock().unwrap().push_back(frame);
        if let Some(peer) = self.outbound.receiver.get() {
            peer.notify_irq();
        }
        Ok(())
    }
}

pub struct StdClock(Instant);

impl Clock for StdClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Two hosts: `a` (192.168.7.1) and `b` (192.168.7.2). Stacks, file
/// systems and clocks are leaked: tests are short-lived processes.
pub struct Net {
    pub a: Syscalls<'static>,
    pub b: Syscalls<'static>,
    pub stack_a: &'static Stack,
    pub stack_b: &'static Stack,
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<()>>,
}

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

impl Net {
    pub fn new() -> Self {
        let ab = Arc::new(Lane {
            frames: Mutex::new(VecDeque::new()),
            receiver: OnceLock::new(),
        });
        let ba = Arc::new(Lane {
            frames: Mutex::new(VecDeque::new()),
            receiver: OnceLock::new(),
        });
        let make = |ip: Ipv4Addr, last: u8, inbound: &Arc<Lane>, outbound: &Arc<Lane>| {
            let platform = Arc::new(HostPlatform {
                start: Instant::now(),
                gate: Mutex::new(()),
                cv: Condvar::new(),
                seed: AtomicU64::new(u64::from(last) << 32 | 0x1234),
            });
            let nic = CableNic {
                mac: [0x02, 0, 0, 0, 7, last],
                inbound: inbound.clone(),
                outbound: outbound.clone(),
            };
            let config = Config {
                address: ip,
                prefix_len: 24,
                connect_timeout: Some(Duration::from_secs(5)),
                ..Config::default()
            };
            leak(Stack::new(Box::new(nic), platform, config))
        };
        let stack_a = make(A_IP, 1, &ba, &ab);
        let stack_b = make(B_IP, 2, &ab, &ba);
        let _ = ab.receiver.set(stack_b);
        let _ = ba.receiver.set(stack_a);
        let stop = Arc::new(AtomicBool::new(false));
        let pollers = [stack_a, stack_b]
            .into_iter()
            .map(|stack| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        stack.poll_wait(Some(Duration::from_millis(5)));
                    }
                })
            })
            .collect();
        let clock: &'static StdClock = leak(StdClock(Instant::now()));
        let a = Syscalls::new(leak(Vfs::new()), clock);
        let b = Syscalls::new(leak(Vfs::new()), clock);
        a.set_network(stack_a);
        b.set_network(stack_b);
        Self {
            a,
            b,
            stack_a,
            stack_b,
            stop,
            pollers,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pollers.drain(..) {
            let _ = p.join();
        }
    }
}
