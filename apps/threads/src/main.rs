//! Thread checks for the boot tests: each argument names one check; the app
//! prints what it measured and exits non-zero on the first failure.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use hermit::sync::{Condvar, Mutex, Semaphore};
use hermit::time::Instant;
use hermit::{println, thread};

hermit::entry!(main);

fn main() -> i32 {
    let mut status = 0;
    for arg in hermit::env::args().skip(1) {
        let result = match arg {
            "spawn-join" => spawn_join(100),
            "stress" => stress(10_000),
            "mutex" => mutex(4, 1000),
            "condvar" => condvar(),
            "semaphore" => semaphore(),
            "sleep" => sleep(),
            "yield" => yield_pingpong(),
            "preempt" => preempt(),
            "idle" => idle(),
            other => Err(alloc::format!("unknown check {other:?}")),
        };
        match result {
            Ok(()) => println!("{arg}: ok"),
            Err(e) => {
                println!("{arg}: FAILED: {e}");
                status = 1;
            }
        }
    }
    status
}

type Check = Result<(), alloc::string::String>;

fn spawn_join(n: usize) -> Check {
    let handles: Vec<_> = (0..n).map(|i| thread::spawn(move || i * 2)).collect();
    let sum: usize = handles.into_iter().map(|h| h.join()).sum();
    let want = n * (n - 1);
    if sum == want {
        Ok(())
    } else {
        Err(alloc::format!("sum {sum}, expected {want}"))
    }
}

/// Spawns and joins `n` threads in batches and checks that no task and no
/// heap memory is left behind.
///
/// The scheduler's queues keep the capacity they grew to, and how far they
/// grow depends on timing (how many tasks were ready at once on each
/// core), so the heap is compared after a warm-up round: it may differ by
/// queue capacity (tens of bytes), but a leak of even one byte per thread
/// would add `n` bytes.
fn stress(n: usize) -> Check {
    spawn_batches(200, &Arc::new(AtomicUsize::new(0)));
    thread::yield_now();
    let tasks_before = thread::live_tasks();
    let heap_before = hermit::heap_in_use();
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    spawn_batches(n, &counter);
    let took = start.elapsed();
    println!(
        "stress: {} us per thread spawned and joined",
        took.as_micros() / n as u128
    );
    // The last exited task is freed by the next switch on its core.
    thread::yield_now();
    let ran = counter.load(Ordering::Relaxed);
    drop(counter);
    let tasks_after = thread::live_tasks();
    let heap_after = hermit::heap_in_use();
    println!(
        "stress: {ran} threads ran; tasks {tasks_before} -> {tasks_after}; \
         heap in use {heap_before} -> {heap_after} bytes"
    );
    if ran != n {
        return Err(alloc::format!("{ran} of {n} threads ran"));
    }
    if tasks_after != tasks_before {
        return Err(alloc::format!(
            "{} tasks leaked",
            tasks_after - tasks_before
        ));
    }
    if heap_after.saturating_sub(heap_before) >= n {
        return Err(alloc::format!(
            "heap grew: {heap_before} -> {heap_after} bytes"
        ));
    }
    Ok(())
}

/// Spawns `n` threads in batches of 100, each bumping `counter`, and joins
/// them.
fn spawn_batches(n: usize, counter: &Arc<AtomicUsize>) {
    let batch = 100;
    for _ in 0..n / batch {
        let handles: Vec<_> = (0..batch)
            .map(|_| {
                let c = counter.clone();
                thread::spawn(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for h in handles {
            h.join();
        }
    }
}

fn mutex(threads: usize, iterations: usize) -> Check {
    // A non-atomic read-modify-write with a yield in the middle: without
    // mutual exclusion, increments are lost.
    let shared = Arc::new(Mutex::new(0usize));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = shared.clone();
            thread::spawn(move || {
                for _ in 0..iterations {
                    let mut g = s.lock();
                    let v = *g;
                    thread::yield_now();
                    *g = v + 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join();
    }
    let total = *shared.lock();
    if total == threads * iterations {
        Ok(())
    } else {
        Err(alloc::format!(
            "counter {total}, expected {}",
            threads * iterations
        ))
    }
}

fn condvar() -> Check {
    let pair = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let consumer = {
        let pair = pair.clone();
        thread::spawn(move || {
            let (m, cv) = &*pair;
            let mut got = Vec::new();
            while got.len() < 50 {
                let mut q = m.lock();
                while q.is_empty() {
                    q = cv.wait(q);
                }
                got.append(&mut q);
            }
            got
        })
    };
    for i in 0..50 {
        let (m, cv) = &*pair;
        m.lock().push(i);
        cv.notify_one();
        if i % 7 == 0 {
            thread::yield_now();
        }
    }
    let got = consumer.join();
    if got == (0..50).collect::<Vec<_>>() {
        Ok(())
    } else {
        Err(alloc::format!("consumer got {got:?}"))
    }
}

fn semaphore() -> Check {
    let sem = Arc::new(Semaphore::new(2));
    let inside = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (sem, inside, worst) = (sem.clone(), inside.clone(), worst.clone());
            thread::spawn(move || {
                for _ in 0..20 {
                    sem.acquire();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    worst.fetch_max(n, Ordering::SeqCst);
                    thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let _ = sem.release();
                }
            })
        })
        .collect();
    for h in handles {
        h.join();
    }
    let worst = worst.load(Ordering::SeqCst);
    if worst == 2 {
        Ok(())
    } else {
        Err(alloc::format!(
            "{worst} threads were inside a semaphore of 2"
        ))
    }
}

/// A sleeping thread wakes on time, and a thread blocked on a semaphore
/// timeout reports the timeout.
fn sleep() -> Check {
    for ms in [1u64, 10, 50] {
        let start = Instant::now();
        thread::sleep(Duration::from_millis(ms));
        let took = start.elapsed();
        println!("sleep({ms} ms) took {} us", took.as_micros());
        if took < Duration::from_millis(ms) {
            return Err(alloc::format!("sleep({ms} ms) returned after {took:?}"));
        }
        if took > Duration::from_millis(ms + 20) {
            return Err(alloc::format!("sleep({ms} ms) overslept: {took:?}"));
        }
    }
    let sem = Semaphore::new(0);
    let start = Instant::now();
    if sem.acquire_timeout(20_000_000) {
        return Err("acquired an empty semaphore".into());
    }
    let took = start.elapsed();
    println!("semaphore timeout (20 ms) after {} us", took.as_micros());
    if took < Duration::from_millis(20) {
        return Err(alloc::format!("timed out early: {took:?}"));
    }
    Ok(())
}

fn yield_pingpong() -> Check {
    let rounds = 1000;
    // On the caller's core: yields only switch between threads of one core.
    let other = thread::Builder::new()
        .core(thread::current_core())
        .spawn(move || {
            for _ in 0..rounds {
                thread::yield_now();
            }
        })
        .map_err(|e| alloc::format!("{e}"))?;
    let start = Instant::now();
    for _ in 0..rounds {
        thread::yield_now();
    }
    let took = start.elapsed();
    other.join();
    println!(
        "yield: {} ns per yield between two threads ({} rounds)",
        took.as_nanos() / (2 * rounds as u128),
        rounds
    );
    Ok(())
}

/// A thread that never yields does not keep the main thread from running:
/// the timer preempts it.
fn preempt() -> Check {
    let stop = Arc::new(AtomicUsize::new(0));
    let spins = Arc::new(AtomicUsize::new(0));
    let spinner = {
        let (stop, spins) = (stop.clone(), spins.clone());
        thread::Builder::new()
            .core(0)
            .spawn(move || {
                while stop.load(Ordering::Relaxed) == 0 {
                    spins.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| alloc::format!("{e}"))?
    };
    // Busy too, on the same core: only preemption lets both progress.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(100) {}
    let seen = spins.load(Ordering::Relaxed);
    stop.store(1, Ordering::Relaxed);
    spinner.join();
    println!("preempt: the spinner ran {seen} rounds while main was busy");
    if seen == 0 {
        return Err("the spinner never ran".into());
    }
    Ok(())
}

/// A thread sleeps for a second while the main thread is blocked joining
/// it; the host measures that the VM used little CPU meanwhile (a blocked
/// thread does not spin, and the idle core halts).
fn idle() -> Check {
    let start = Instant::now();
    let sleeper = thread::spawn(|| thread::sleep(Duration::from_secs(1)));
    sleeper.join();
    println!("idle: blocked for {} ms", start.elapsed().as_millis());
    Ok(())
}
