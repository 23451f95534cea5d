//! A plain Rust std program exercising threads, runnable unmodified on
//! hermit and on Linux. Its output is the same on both (timings are
//! checked, not printed); it exits with status 0 when every check passed.

#[cfg(target_os = "hermit")]
use hermit as _;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: usize = 4;

thread_local! {
    static LOCAL: Cell<usize> = const { Cell::new(0) };
    static NAME: std::cell::RefCell<String> = std::cell::RefCell::new(String::from("unset"));
}

fn check(ok: bool, what: &str, failures: &mut u32) {
    println!("{}: {what}", if ok { "ok" } else { "FAILED" });
    if !ok {
        *failures += 1;
    }
}

fn main() {
    let mut failures = 0;

    // spawn + join with results, and thread-locals per thread.
    LOCAL.with(|l| l.set(1000));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            thread::spawn(move || {
                LOCAL.with(|l| l.set(i));
                NAME.with(|n| *n.borrow_mut() = format!("worker {i}"));
                thread::yield_now();
                let mine = LOCAL.with(Cell::get);
                let name = NAME.with(|n| n.borrow().clone());
                (mine, name, (0..=100 * i).sum::<usize>())
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let tls_ok = results
        .iter()
        .enumerate()
        .all(|(i, (mine, name, _))| *mine == i && *name == format!("worker {i}"));
    check(tls_ok, "thread_local! values are per thread", &mut failures);
    check(
        LOCAL.with(Cell::get) == 1000,
        "main thread's thread_local! kept",
        &mut failures,
    );
    let sums: Vec<usize> = results.iter().map(|r| r.2).collect();
    println!("sums from {THREADS} threads: {sums:?}");

    // Mutex: contended increments.
    let counter = Arc::new(Mutex::new(0u64));
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let c = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *c.lock().expect("lock") += 1;
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().expect("join"));
    let total = *counter.lock().expect("lock");
    println!("mutex counter = {total}");
    check(total == 1000 * THREADS as u64, "Mutex", &mut failures);

    // Condvar: a producer hands a value to a waiting consumer.
    let pair = Arc::new((Mutex::new(None::<u32>), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let consumer = thread::spawn(move || {
        let (lock, cv) = &*p2;
        let mut slot = lock.lock().expect("lock");
        while slot.is_none() {
            slot = cv.wait(slot).expect("wait");
        }
        slot.take()
    });
    thread::sleep(Duration::from_millis(5));
    {
        let (lock, cv) = &*pair;
        *lock.lock().expect("lock") = Some(42);
        cv.notify_one();
    }
    let got = consumer.join().expect("join");
    check(got == Some(42), "Condvar hand-over", &mut failures);

    // Condvar timeout: nobody notifies.
    let (lock, cv) = (Mutex::new(()), Condvar::new());
    let start = Instant::now();
    let (_g, res) = cv
        .wait_timeout(lock.lock().expect("lock"), Duration::from_millis(20))
        .expect("wait_timeout");
    check(
        res.timed_out() && start.elapsed() >= Duration::from_millis(20),
        "Condvar::wait_timeout times out after 20 ms",
        &mut failures,
    );

    // mpsc: several senders, one receiver.
    let (tx, rx) = mpsc::channel();
    for id in 0..THREADS {
        let tx = tx.clone();
        thread::spawn(move || {
            for k in 0..10 {
                tx.send(id * 100 + k).expect("send");
            }
        });
    }
    drop(tx);
    let mut received: Vec<usize> = rx.iter().collect();
    received.sort_unstable();
    println!(
        "mpsc received {} messages, sum {}",
        received.len(),
        received.iter().sum::<usize>()
    );
    check(
        received.len() == 10 * THREADS,
        "mpsc channel",
        &mut failures,
    );

    // sync_channel with a bound of 1: the sender blocks.
    let (stx, srx) = mpsc::sync_channel(1);
    let sender = thread::spawn(move || (0..5).for_each(|i| stx.send(i).expect("send")));
    let got: Vec<i32> = srx.iter().collect();
    sender.join().expect("join");
    check(got == vec![0, 1, 2, 3, 4], "sync_channel(1)", &mut failures);

    // Barrier: every thread arrives before any leaves.
    let barrier = Arc::new(Barrier::new(THREADS));
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let (b, a) = (Arc::clone(&barrier), Arc::clone(&arrived));
            thread::spawn(move || {
                a.fetch_add(1, Ordering::SeqCst);
                let leader = b.wait().is_leader();
                (a.load(Ordering::SeqCst), leader)
            })
        })
        .collect();
    let seen: Vec<_> = hs.into_iter().map(|h| h.join().expect("join")).collect();
    check(
        seen.iter().all(|(n, _)| *n == THREADS) && seen.iter().filter(|(_, l)| *l).count() == 1,
        "Barrier",
        &mut failures,
    );

    // RwLock: readers in parallel with a writer at the end.
    let data = Arc::new(RwLock::new(vec![1, 2, 3]));
    let readers: Vec<_> = (0..THREADS)
        .map(|_| {
            let d = Arc::clone(&data);
            thread::spawn(move || d.read().expect("read").iter().sum::<i32>())
        })
        .collect();
    let sums: Vec<i32> = readers
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    data.write().expect("write").push(4);
    check(
        sums.iter().all(|&s| s == 6) && data.read().expect("read").len() == 4,
        "RwLock",
        &mut failures,
    );

    // sleep and Instant.
    let start = Instant::now();
    thread::sleep(Duration::from_millis(30));
    let slept = start.elapsed();
    check(
        slept >= Duration::from_millis(30),
        "sleep(30 ms) lasts at least 30 ms",
        &mut failures,
    );

    // Builder with a name and a stack size; scoped threads.
    let named = thread::Builder::new()
        .name("named".into())
        .stack_size(256 * 1024)
        .spawn(|| thread::current().name().map(str::to_owned))
        .expect("spawn");
    check(
        named.join().expect("join").as_deref() == Some("named"),
        "Builder name",
        &mut failures,
    );
    let mut parts = [0u64; THREADS];
    thread::scope(|s| {
        for (i, p) in parts.iter_mut().enumerate() {
            s.spawn(move || *p = (i as u64 + 1) * 10);
        }
    });
    check(parts == [10, 20, 30, 40], "thread::scope", &mut failures);

    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    check(cpus >= 1, "available_parallelism", &mut failures);

    println!("{failures} failure(s)");
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
