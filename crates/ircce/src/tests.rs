//! Host tests: several UEs as threads over one [`AtomicRegion`].

use crate::notify::CondvarNotify;
use crate::*;
use std::sync::Arc;
use std::thread;
use std::time::Instant;
use std::vec::Vec;

type Shared = (Arc<AtomicRegion>, Arc<CondvarNotify>);
type Ue = Ircce<Arc<AtomicRegion>, Arc<CondvarNotify>>;

fn shared(config: &Config) -> Shared {
    let len = Layout::new(config).expect("valid config").total;
    (
        Arc::new(AtomicRegion::new(len)),
        Arc::new(CondvarNotify::new(config.ues as usize)),
    )
}

use crate::layout::Layout;

/// Runs `body(ue)` on `config.ues` threads and returns their results by rank.
fn run<T: Send + 'static>(
    config: Config,
    body: impl Fn(&Ue) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let (region, notify) = shared(&config);
    let body = Arc::new(body);
    let handles: Vec<_> = (0..config.ues as usize)
        .map(|rank| {
            let (region, notify, body) = (region.clone(), notify.clone(), body.clone());
            thread::spawn(move || {
                let ue = Ircce::init(region, notify, rank, config).expect("init");
                body(&ue)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("UE thread panicked"))
        .collect()
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn region_atomics_and_unaligned_copies() {
    let r = AtomicRegion::new(64);
    r.store_u32(4, 0xdead_beef);
    r.store_u32(0, 7);
    assert_eq!(r.load_u64(0), 0xdead_beef_0000_0007);
    assert_eq!(r.compare_exchange_u32(4, 1, 2), Err(0xdead_beef));
    assert_eq!(r.compare_exchange_u32(4, 0xdead_beef, 2), Ok(0xdead_beef));
    assert_eq!(r.fetch_add_u32(4, 3), 2);
    assert_eq!(r.load_u32(4), 5);
    assert_eq!(r.load_u32(0), 7);
    let data: Vec<u8> = (1..=21).collect();
    r.write(11, &data);
    let mut back = [0u8; 23];
    r.read(10, &mut back);
    assert_eq!(back[0], 0);
    assert_eq!(&back[1..22], &data[..]);
    assert_eq!(back[22], 0);
    assert_eq!(r.load_u32(4), 5, "copies must not clobber neighbours");
}

#[test]
fn sub_region_bounds() {
    let r = AtomicRegion::new(4096);
    assert_eq!(
        SubRegion::new(&r, 3, 10).unwrap_err(),
        RegionError::Misaligned(3)
    );
    assert!(matches!(
        SubRegion::new(&r, 64, 4096),
        Err(RegionError::OutOfBounds { .. })
    ));
    let s = SubRegion::new(&r, 128, 256).expect("fits");
    s.store_u32(0, 9);
    assert_eq!(r.load_u32(128), 9);
    assert_eq!(s.len(), 256);
}

#[test]
fn header_refuses_other_layouts_and_ranks_cleanly() {
    let config = Config::new(2).with_channel_size(4096).with_mpb_size(4096);
    let (region, notify) = shared(&config);
    let a = Ircce::init(region.clone(), notify.clone(), 0, config).expect("first");
    // Same rank twice.
    assert_eq!(
        Ircce::init(region.clone(), notify.clone(), 0, config).unwrap_err(),
        Error::RankInUse(0)
    );
    // Another layout.
    let other = config.with_mpb_size(2048);
    assert!(matches!(
        Ircce::init(region.clone(), notify.clone(), 1, other),
        Err(Error::Header(HeaderError::ParamMismatch { index: 2, .. }))
    ));
    assert!(matches!(
        Ircce::init(region.clone(), notify.clone(), 1, Config::new(3)),
        Err(Error::Header(HeaderError::RegionTooSmall { .. }))
            | Err(Error::Header(HeaderError::ParamMismatch { .. }))
    ));
    assert_eq!(
        Ircce::init(region.clone(), notify.clone(), 2, config).unwrap_err(),
        Error::NoSuchUe { rank: 2, ues: 2 }
    );
    // Garbage magic.
    let junk = AtomicRegion::new(region.len());
    junk.store_u32(8, 2);
    junk.store_u32(0, 0x1234);
    assert!(matches!(
        Ircce::init(&junk, &PollNotify, 0, config),
        Err(Error::Header(HeaderError::BadMagic { found: 0x1234, .. }))
    ));
    junk.store_u32(8, 77);
    assert_eq!(
        Ircce::init(&junk, &PollNotify, 0, config).unwrap_err(),
        Error::Header(HeaderError::BadState(77))
    );
    // Releasing a rank lets it be claimed again, and messages still flow.
    drop(a);
    let a = Ircce::init(region.clone(), notify.clone(), 0, config).expect("again");
    let b = Ircce::init(region.clone(), notify.clone(), 1, config).expect("second");
    let mut r = a.isend(b"hi", 1).expect("isend");
    let mut buf = [0u8; 2];
    let mut q = b.irecv(&mut buf, 0).expect("irecv");
    r.wait().expect("send");
    q.wait().expect("recv");
    drop(q);
    assert_eq!(&buf, b"hi");
}

#[test]
fn bad_configs_are_typed_errors() {
    let r = AtomicRegion::new(1 << 20);
    assert_eq!(
        Ircce::init(&r, &PollNotify, 0, Config::new(0)).unwrap_err(),
        Error::UeCount(0)
    );
    assert!(matches!(
        Ircce::init(&r, &PollNotify, 0, Config::new(4).with_channel_size(512)),
        Err(Error::ChannelTooSmall { .. })
    ));
}

#[test]
fn put_get_and_flags() {
    let config = Config::new(3).with_flags(4);
    let out = run(config, |ue| {
        let me = ue.ue();
        let next = (me + 1) % ue.num_ues();
        let msg = pattern(1000, me as u32);
        ue.put(next, 24, &msg).expect("put");
        ue.flag_write(1, next, 1).expect("flag");
        ue.wait_until(1, 1).expect("wait");
        let prev = (me + ue.num_ues() - 1) % ue.num_ues();
        let mut got = std::vec![0u8; 1000];
        ue.get(me, 24, &mut got).expect("get");
        assert_eq!(got, pattern(1000, prev as u32));
        assert_eq!(ue.flag_read(1, me).expect("read"), 1);
        assert!(matches!(
            ue.put(next, ue.mpb_size() - 10, &msg),
            Err(Error::MpbBounds { .. })
        ));
        assert!(matches!(
            ue.flag_write(4, next, 1),
            Err(Error::NoSuchFlag { .. })
        ));
        assert!(matches!(
            ue.get(9, 0, &mut got),
            Err(Error::NoSuchUe { .. })
        ));
        true
    });
    assert!(out.into_iter().all(|x| x));
}

#[test]
fn send_recv_sizes_up_to_4_mib() {
    let sizes = [
        0usize,
        1,
        7,
        63,
        64,
        65,
        1000,
        4095,
        4096,
        8191,
        16_320,
        16_321,
        32_704,
        100_000,
        1 << 20,
        4 << 20,
    ];
    let config = Config::new(2).with_channel_size(32 * 1024);
    run(config, move |ue| {
        for (i, &len) in sizes.iter().enumerate() {
            if ue.ue() == 0 {
                ue.send(&pattern(len, i as u32), 1).expect("send");
                // And back, so both directions of the pair are exercised.
                let mut back = std::vec![0u8; len];
                ue.recv(&mut back, 1).expect("recv back");
                assert!(back == pattern(len, 1000 + i as u32), "echo size {len}");
            } else {
                let mut buf = std::vec![0xa5u8; len];
                ue.recv(&mut buf, 0).expect("recv");
                assert!(buf == pattern(len, i as u32), "size {len}");
                ue.send(&pattern(len, 1000 + i as u32), 0)
                    .expect("send back");
            }
        }
    });
}

#[test]
fn size_mismatch_is_reported_and_stream_stays_in_step() {
    run(Config::new(2).with_channel_size(1024), |ue| {
        if ue.ue() == 0 {
            ue.send(&pattern(3000, 1), 1).expect("send");
            ue.send(&pattern(10, 2), 1).expect("send 2");
        } else {
            let mut small = [0u8; 500];
            assert_eq!(
                ue.recv(&mut small, 0),
                Err(Error::SizeMismatch {
                    peer: 0,
                    expected: 500,
                    sent: 3000
                })
            );
            assert_eq!(&small[..], &pattern(3000, 1)[..500]);
            let mut next = [0u8; 10];
            ue.recv(&mut next, 0).expect("next message");
            assert_eq!(&next[..], &pattern(10, 2)[..]);
        }
    });
}

#[test]
fn isend_irecv_wait_lists_in_mixed_order() {
    const N: usize = 4;
    let config = Config::new(N as u32).with_channel_size(16 * 1024);
    run(config, |ue| {
        let me = ue.ue();
        let sizes =
            |from: usize, to: usize, k: usize| 1 + (from * 7919 + to * 104_729 + k * 31) % 40_000;
        // Everyone sends three messages to everyone (self included) and
        // posts the receives in reverse peer order.
        let outgoing: Vec<Vec<u8>> = (0..N)
            .flat_map(|to| (0..3).map(move |k| (to, k)))
            .map(|(to, k)| pattern(sizes(me, to, k), (me * 100 + to * 10 + k) as u32))
            .collect();
        let mut incoming: Vec<Vec<u8>> = (0..N)
            .rev()
            .flat_map(|from| (0..3).map(move |k| (from, k)))
            .map(|(from, k)| std::vec![0u8; sizes(from, me, k)])
            .collect();
        let mut list = WaitList::new();
        let mut recv_ids = Vec::new();
        for (i, buf) in incoming.iter_mut().enumerate() {
            let from = N - 1 - i / 3;
            recv_ids.push(list.add(ue.irecv(buf, from).expect("irecv")));
        }
        for (i, data) in outgoing.iter().enumerate() {
            list.add(ue.isend(data, i / 3).expect("isend"));
        }
        let mut finished = 0;
        while let Some((_, result)) = list.wait_any() {
            result.expect("request");
            finished += 1;
        }
        assert_eq!(finished, 6 * N);
        assert!(list.is_empty());
        drop(list);
        for (i, buf) in incoming.iter().enumerate() {
            let (from, k) = (N - 1 - i / 3, i % 3);
            assert!(*buf == pattern(sizes(from, me, k), (from * 100 + me * 10 + k) as u32));
        }
        ue.barrier();
        // wait_all on a second round; test() polling on a third.
        let data = pattern(50_000, me as u32);
        let mut bufs: Vec<Vec<u8>> = (0..N).map(|_| std::vec![0; 50_000]).collect();
        let mut list = WaitList::new();
        for (from, b) in bufs.iter_mut().enumerate() {
            list.add(ue.irecv(b, from).expect("irecv"));
        }
        for to in 0..N {
            list.add(ue.isend(&data, to).expect("isend"));
        }
        list.wait_all().expect("wait_all");
        drop(list);
        for (from, b) in bufs.iter().enumerate() {
            assert!(*b == pattern(50_000, from as u32));
        }
        let to = (me + 1) % N;
        let from = (me + N - 1) % N;
        let mut got = [0u8; 5];
        let mut s = ue.isend(b"token", to).expect("isend");
        let mut r = ue.irecv(&mut got, from).expect("irecv");
        while !(s.test().expect("test send") & r.test().expect("test recv")) {}
        drop((s, r));
        assert_eq!(&got, b"token");
    });
}

#[test]
fn waiting_out_of_order_is_an_error_not_a_hang() {
    let config = Config::new(2).with_channel_size(1024);
    run(config, |ue| {
        if ue.ue() == 0 {
            let big = pattern(10_000, 1);
            let small = pattern(3, 2);
            let mut first = ue.isend(&big, 1).expect("isend");
            let mut second = ue.isend(&small, 1).expect("isend");
            assert_eq!(second.wait(), Err(Error::OutOfOrder(1)));
            let mut list = WaitList::new();
            list.add(second);
            assert!(matches!(
                list.wait_any(),
                Some((0, Err(Error::OutOfOrder(1))))
            ));
            first.wait().expect("first");
            list.wait_all().expect("second after first");
            // A dropped unfinished request breaks the channel.
            let r = ue.isend(&big, 1).expect("isend");
            drop(r);
            assert_eq!(ue.isend(&small, 1).unwrap_err(), Error::ChannelBroken(1));
        } else {
            let mut a = std::vec![0u8; 10_000];
            let mut b = [0u8; 3];
            ue.recv(&mut a, 0).expect("recv");
            ue.recv(&mut b, 0).expect("recv");
            assert!(a == pattern(10_000, 1));
            assert_eq!(&b[..], &pattern(3, 2)[..]);
        }
    });
}

#[test]
fn barrier_many_iterations() {
    for n in [1u32, 2, 3, 5, 8] {
        let config = Config::new(n).with_channel_size(4096).with_mpb_size(64);
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = counter.clone();
        run(config, move |ue| {
            for round in 0..2000usize {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ue.barrier();
                // Nobody may be past this barrier before all arrived.
                let seen = c.load(std::sync::atomic::Ordering::SeqCst);
                assert!(
                    seen >= (round + 1) * n as usize,
                    "barrier leaked at round {round}"
                );
                ue.barrier();
            }
        });
        assert_eq!(
            counter.load(std::sync::atomic::Ordering::SeqCst),
            2000 * n as usize
        );
    }
}

#[test]
fn bcast_reduce_allreduce() {
    for n in [1u32, 2, 3, 6] {
        let config = Config::new(n).with_channel_size(4096 * n);
        let results = run(config, move |ue| {
            let n = ue.num_ues();
            let me = ue.ue();
            for root in 0..n {
                let mut buf = if me == root {
                    pattern(70_000, root as u32)
                } else {
                    std::vec![0; 70_000]
                };
                ue.bcast(&mut buf, root).expect("bcast");
                assert!(buf == pattern(70_000, root as u32));
            }
            let ints: Vec<i64> = (0..1000)
                .map(|i| (i as i64 - 500) * (me as i64 + 1))
                .collect();
            let mut sum = std::vec![0i64; 1000];
            ue.reduce(ReduceOp::Sum, &ints, &mut sum, n - 1)
                .expect("reduce");
            if me == n - 1 {
                let k = (n * (n + 1) / 2) as i64;
                assert!(
                    sum.iter()
                        .enumerate()
                        .all(|(i, &s)| s == (i as i64 - 500) * k)
                );
            }
            let floats = [me as f64 * 0.5, -(me as f64), 1.0];
            let mut max = [0.0; 3];
            let mut min = [0.0; 3];
            let mut fsum = [0.0; 3];
            ue.allreduce(ReduceOp::Max, &floats, &mut max).expect("max");
            ue.allreduce(ReduceOp::Min, &floats, &mut min).expect("min");
            ue.allreduce(ReduceOp::Sum, &floats, &mut fsum)
                .expect("sum");
            let mut bad = [0.0; 2];
            assert_eq!(
                ue.allreduce(ReduceOp::Sum, &floats, &mut bad),
                Err(Error::LengthMismatch(3, 2))
            );
            (max, min, fsum)
        });
        let top = (n - 1) as f64;
        for (max, min, fsum) in results {
            assert_eq!(max, [top * 0.5, 0.0, 1.0]);
            assert_eq!(min, [0.0, -top, 1.0]);
            assert_eq!(
                fsum,
                [top * (top + 1.0) / 4.0, -top * (top + 1.0) / 2.0, n as f64]
            );
        }
    }
}

#[test]
fn dead_ue_mid_protocol_leaves_header_and_other_pairs_intact() {
    let config = Config::new(3).with_channel_size(3 * 1024);
    let (region, notify) = shared(&config);
    let params = config.params();
    {
        // UE 1 starts a large send to UE 0, moves two chunks, then "dies":
        // no drop code runs.
        let ue1 = Ircce::init(region.clone(), notify.clone(), 1, config).expect("ue1");
        let data = pattern(100_000, 9);
        let mut r = ue1.isend(&data, 0).expect("isend");
        assert!(!r.test().expect("test"));
        std::mem::forget(r);
        std::mem::forget(ue1);
    }
    header::check(&*region, MAGIC, VERSION, &params).expect("header intact");
    // UE 0 and UE 2 carry on between themselves.
    let (r0, n0) = (region.clone(), notify.clone());
    let t = thread::spawn(move || {
        let ue0 = Ircce::init(r0, n0, 0, config).expect("ue0");
        for i in 0..50 {
            let mut buf = std::vec![0u8; 5000 + i];
            ue0.recv(&mut buf, 2).expect("recv");
            assert!(buf == pattern(5000 + i, i as u32));
            ue0.send(&buf, 2).expect("echo");
        }
    });
    let ue2 = Ircce::init(region.clone(), notify.clone(), 2, config).expect("ue2");
    for i in 0..50 {
        let data = pattern(5000 + i, i as u32);
        ue2.send(&data, 0).expect("send");
        let mut back = std::vec![0u8; data.len()];
        ue2.recv(&mut back, 0).expect("recv");
        assert!(back == data);
    }
    t.join().expect("ue0");
    // The dead UE's rank stays claimed; nobody can take it by accident.
    assert_eq!(
        Ircce::init(region.clone(), notify.clone(), 1, config).unwrap_err(),
        Error::RankInUse(1)
    );
    header::check(&*region, MAGIC, VERSION, &params).expect("header still intact");
    // Until its hypervisor releases it; then a restarted UE 1 talks to UE 2
    // (the pair with the half-sent message to UE 0 stays stuck).
    assert_eq!(release_dead_rank(&*region, 1), Ok(true));
    assert_eq!(release_dead_rank(&*region, 1), Ok(false), "already free");
    assert!(release_dead_rank(&*region, 3).is_err());
    let (r1, n1) = (region.clone(), notify.clone());
    let t = thread::spawn(move || {
        let ue1 = Ircce::init(r1, n1, 1, config).expect("restarted ue1");
        ue1.send(b"back", 2).expect("send");
    });
    let mut got = [0u8; 4];
    ue2.recv(&mut got, 1).expect("recv from the restarted ue1");
    assert_eq!(&got, b"back");
    t.join().expect("ue1");
    // A region without our header is refused, not written.
    let empty = AtomicRegion::new(4096);
    assert!(release_dead_rank(&empty, 0).is_err());
    assert_eq!(empty.load_u32(0), 0);
}

#[test]
fn doorbells_only_for_sleeping_ues() {
    let config = Config::new(2).with_channel_size(4096);
    let (region, notify) = shared(&config);
    let a = Ircce::init(region.clone(), notify.clone(), 0, config).expect("a");
    let b = Ircce::init(region.clone(), notify.clone(), 1, config).expect("b");
    // Both UEs polled from one thread: nobody ever sleeps, so no doorbell.
    for i in 0..200 {
        let data = pattern(i * 37, i as u32);
        let mut buf = std::vec![0u8; data.len()];
        let mut s = a.isend(&data, 1).expect("isend");
        let mut r = b.irecv(&mut buf, 0).expect("irecv");
        while !(s.test().expect("send") & r.test().expect("recv")) {}
        drop((s, r));
        assert!(buf == data);
    }
    assert_eq!(notify.rings(), 0, "awake UEs must not be rung");
    // B announces sleep: the next flag write to B rings it exactly once; its
    // acknowledgement to the awake A rings nobody.
    region.store_u32(a.layout.sleeping(1), 1);
    let mut buf = [0u8; 4];
    let mut s = a.isend(b"ring", 1).expect("isend");
    assert!(s.test().expect("send"));
    assert_eq!(notify.rings(), 1);
    region.store_u32(a.layout.sleeping(1), 0);
    b.recv(&mut buf, 0).expect("recv");
    drop(s);
    assert_eq!(notify.rings(), 1);
    // Liveness: a UE blocked in recv long enough to sleep still gets the
    // message (woken by the doorbell or its wait timeout).
    let sleeper = thread::spawn(move || {
        let mut buf = [0u8; 4];
        b.recv(&mut buf, 0).expect("recv");
        buf
    });
    while region.load_u32(a.layout.sleeping(1)) == 0 {
        thread::yield_now();
    }
    a.send(b"wake", 1).expect("send");
    assert_eq!(&sleeper.join().expect("sleeper"), b"wake");
}

/// Ping-pong between UE 0 and 1; returns the seconds per round trip.
fn run_pair(
    region: Arc<AtomicRegion>,
    notify: Arc<CondvarNotify>,
    config: Config,
    rounds: usize,
    len: usize,
) -> f64 {
    let (r1, n1) = (region.clone(), notify.clone());
    let echo = thread::spawn(move || {
        let ue = Ircce::init(r1, n1, 1, config).expect("ue1");
        let mut buf = std::vec![0u8; len];
        for _ in 0..rounds {
            ue.recv(&mut buf, 0).expect("recv");
            ue.send(&buf, 0).expect("send");
        }
    });
    let ue = Ircce::init(region, notify, 0, config).expect("ue0");
    let data = pattern(len, 1);
    let mut buf = std::vec![0u8; len];
    let start = Instant::now();
    for _ in 0..rounds {
        ue.send(&data, 1).expect("send");
        ue.recv(&mut buf, 1).expect("recv");
    }
    let elapsed = start.elapsed().as_secs_f64();
    echo.join().expect("echo");
    assert!(buf == data);
    elapsed / rounds as f64
}

#[test]
fn ping_pong_figures() {
    let config = Config::new(2).with_channel_size(256 * 1024);
    let (r, n) = shared(&config);
    let rtt = run_pair(r, n, config, 20_000, 1);
    let (r, n) = shared(&config);
    let rtt_mib = run_pair(r, n, config, 50, 1 << 20);
    let src = pattern(1 << 20, 3);
    let mut dst = std::vec![0u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..200 {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let memcpy = 200.0 * (1 << 20) as f64 / start.elapsed().as_secs_f64();
    std::println!(
        "FIGURES ircce over AtomicRegion (threads): 1 B one-way latency {:.2} us; \
         1 MiB bandwidth {:.0} MB/s; host memcpy {:.0} MB/s",
        rtt / 2.0 * 1e6,
        2.0 * (1 << 20) as f64 / rtt_mib / 1e6,
        memcpy / 1e6
    );
}

/// A waiter spins the notifier's budget before it sleeps, then re-checks
/// after every doorbell wait.
#[test]
fn waiters_spin_the_notifiers_budget_before_sleeping() {
    use std::rc::Rc;
    struct Counting(Rc<core::cell::Cell<u32>>);
    impl Notify for Counting {
        fn ring(&self, _target: usize) {}
        fn wait(&self, _me: usize, _timeout: core::time::Duration) {
            self.0.set(self.0.get() + 1);
        }
        fn spins_before_sleep(&self) -> u32 {
            123
        }
    }
    let config = Config::new(1);
    let len = Layout::new(&config).unwrap().total;
    let waits = Rc::new(core::cell::Cell::new(0));
    let ue = Ircce::init(AtomicRegion::new(len), Counting(waits.clone()), 0, config).unwrap();
    // Ready after 100 checks: no sleep.
    let mut checks = 0;
    ue.wait_for(|| {
        checks += 1;
        checks > 100
    });
    assert_eq!(waits.get(), 0);
    // Ready after the 2nd doorbell wait: a check before each of the 123
    // spins, two per sleep round (the loop's and the one right after
    // announcing sleep), and the final, successful one.
    let mut checks = 0;
    ue.wait_for(|| {
        checks += 1;
        waits.get() >= 2
    });
    assert_eq!(waits.get(), 2);
    assert_eq!(checks, 123 + 2 * 2 + 1);
}
