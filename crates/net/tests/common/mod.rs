//! Test fixtures: a std `Platform` and two stacks wired through an
//! in-memory Ethernet (optionally lossy), each with a poll thread standing
//! in for the kernel's network thread.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hermit_net::{Config, Errno, Ipv4Addr, Nic, Platform, Stack};

/// Clock, condition variable and a xorshift generator.
pub struct StdPlatform {
    start: Instant,
    lock: Mutex<()>,
    cv: Condvar,
    rng: AtomicU64,
}

impl StdPlatform {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            rng: AtomicU64::new(seed | 1),
        })
    }
}

pub fn xorshift(state: &AtomicU64) -> u64 {
    let mut x = state.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match state.compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return y,
            Err(now) => x = now,
        }
    }
}

impl Platform for StdPlatform {
    fn now_micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn wait(&self, counter: &AtomicU32, seen: u32, deadline: Option<u64>) {
        let guard = self.lock.lock().unwrap();
        if counter.load(Ordering::Acquire) != seen {
            return;
        }
        let now = self.now_micros();
        let wait = match deadline {
            Some(d) if d <= now => return,
            Some(d) => Duration::from_micros(d - now).min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        let _ = self.cv.wait_timeout(guard, wait).unwrap();
    }

    fn wake_all(&self, _counter: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }

    fn random_u64(&self) -> u64 {
        xorshift(&self.rng)
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}

/// Loss and reordering of one direction of the wire.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Frames dropped, per thousand.
    pub drop_per_mille: u64,
    /// Frames put before the previous one, per thousand.
    pub swap_per_mille: u64,
}

/// One direction of the wire: a frame queue and the receiving stack.
pub struct Link {
    queue: Mutex<VecDeque<Vec<u8>>>,
    receiver: OnceLock<Stack>,
    faults: Faults,
    rng: AtomicU64,
    pub frames: AtomicU64,
    /// Set by [`Link::cut`]: every frame is lost from then on.
    cut: AtomicBool,
}

impl Link {
    fn new(faults: Faults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            receiver: OnceLock::new(),
            faults,
            rng: AtomicU64::new(seed | 1),
            frames: AtomicU64::new(0),
            cut: AtomicBool::new(false),
        })
    }

    /// Cuts the wire: frames sent from now on are lost.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

/// Frames a link holds before it drops (like a switch's buffer).
const LINK_CAPACITY: usize = 4096;

pub struct WireNic {
    mac: [u8; 6],
    rx: Arc<Link>,
    tx: Arc<Link>,
}

impl Nic for WireNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        let frame = self.rx.queue.lock().unwrap().pop_front();
        match frame {
            Some(frame) => {
                f(&frame);
                true
            }
            None => false,
        }
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), Errno> {
        let mut frame = vec![0; len];
        f(&mut frame);
        self.tx.frames.fetch_add(1, Ordering::Relaxed);
        let faults = self.tx.faults;
        let roll = |per_mille: u64| per_mille > 0 && xorshift(&self.tx.rng) % 1000 < per_mille;
        if roll(faults.drop_per_mille) || self.tx.cut.load(Ordering::Relaxed) {
            return Ok(());
        }
        {
            let mut q = self.tx.queue.lock().unwrap();
            if q.len() >= LINK_CAPACITY {
                return Ok(());
            }
            if roll(faults.swap_per_mille) && !q.is_empty() {
                let at = q.len() - 1;
                q.insert(at, frame);
            } else {
                q.push_back(frame);
            }
        }
        if let Some(peer) = self.tx.receiver.get() {
            peer.notify_irq();
        }
        Ok(())
    }
}

/// Two stacks on one wire, 10.0.5.2 (`a`) and 10.0.5.3 (`b`), each with a
/// poll thread.
pub struct Pair {
    pub a: Stack,
    pub b: Stack,
    pub a_to_b: Arc<Link>,
    pub b_to_a: Arc<Link>,
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<()>>,
}

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 2);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 3);

impl Pair {
    pub fn new() -> Self {
        Self::with(Faults::default(), Config::default())
    }

    pub fn with(faults: Faults, config: Config) -> Self {
        let config_a = Config {
            address: A_IP,
            ..config.clone()
        };
        let config_b = Config {
            address: B_IP,
            ..config
        };
        Self::with_configs(faults, config_a, config_b)
    }

    pub fn with_configs(faults: Faults, config_a: Config, config_b: Config) -> Self {
        let a_to_b = Link::new(faults, 0x1234_5678);
        let b_to_a = Link::new(faults, 0x8765_4321);
        let nic_a = WireNic {
            mac: [0x02, 0, 0, 0, 0, 2],
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
        };
        let nic_b = WireNic {
            mac: [0x02, 0, 0, 0, 0, 3],
            rx: a_to_b.clone(),
            tx: b_to_a.clone(),
        };
        let a = Stack::new(Box::new(nic_a), StdPlatform::new(11), config_a);
        let b = Stack::new(Box::new(nic_b), StdPlatform::new(22), config_b);
        let _ = a_to_b.receiver.set(b.clone());
        let _ = b_to_a.receiver.set(a.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let pollers = [a.clone(), b.clone()]
            .into_iter()
            .map(|stack| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        stack.poll_wait(Some(Duration::from_millis(50)));
                    }
                })
            })
            .collect();
        Self {
            a,
            b,
            a_to_b,
            b_to_a,
            stop,
            pollers,
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.a.notify_irq();
        self.b.notify_irq();
        for p in self.pollers.drain(..) {
            let _ = p.join();
        }
    }
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// FNV-1a over `data`.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Polls `cond` until true or `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
