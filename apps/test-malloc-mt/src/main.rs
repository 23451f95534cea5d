//! Multi-threaded heap stress (the seed's `test-malloc-mt`).
//!
//! `THREADS` threads (default: one per core, each pinned to a core) each
//! perform `OPS` heap operations: allocate a block of a pseudo-random size
//! (16 B .. 64 KiB, odd sizes included, alignment 8, 16 or 64), fill it with
//! a pattern unique to the block (its edges and sampled words, see
//! [`for_each_word`]), and later check the pattern and free the block. Two
//! blocks that overlap, or a block the allocator scribbles on, fail the
//! check. One block in eight is handed to the next thread's inbox
//! (a [`Mutex`]-protected queue), which checks and frees it: memory freed
//! by a thread other than the one that allocated it.
//!
//! After a round the heap in use must be back where it started; see
//! [`leak_check`] for the warm-up round and why a round may be repeated.
//!
//! Usage: `test-malloc-mt [THREADS] [OPS] [corrupt]`; `corrupt` flips a
//! byte of one block on purpose, to show that the check catches it. Exit status 0 when all checks
//! pass, 1 on corruption, a leak or an allocation failure, 2 on bad
//! arguments.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::alloc::{Layout, alloc, dealloc};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use hermit::sync::Mutex;
use hermit::time::{Duration, Instant};
use hermit::{println, thread};

hermit::entry!(main);

/// Default operations per thread: a few seconds on one CPU under uhyve on
/// a host whose KVM emulates every kernel-mode instruction (the development
/// host with `HERMIT_NATIVE=0`).
const DEFAULT_OPS: usize = 2000;
/// Blocks a thread keeps alive at once (more live blocks, more chances for
/// an overlap to show).
const SLOTS: usize = 32;
/// Largest block.
const MAX_SIZE: usize = 64 * 1024;
/// Multiplier that spreads a block's pattern (odd, so that every word of a
/// block differs from its neighbours).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// xorshift64*: a small deterministic generator, seeded per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(MIX) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A heap block filled with its own pattern.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Pattern seed: unique per block (thread index and sequence number).
    seed: u64,
}

// SAFETY: a `Block` owns its allocation exclusively (no other pointer to
// it is kept), so moving it to another thread moves that ownership; the
// global allocator may be called from any thread.
unsafe impl Send for Block {}

/// What went wrong with a block.
#[derive(Debug)]
enum Fault {
    /// The allocator returned null.
    OutOfMemory(usize),
    /// The allocator returned a pointer that is not aligned as asked.
    Misaligned { addr: usize, align: usize },
    /// A byte of the block changed between filling and freeing.
    Corrupt {
        addr: usize,
        size: usize,
        offset: usize,
        expected: u64,
        found: u64,
    },
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory(size) => write!(f, "allocation of {size} bytes failed"),
            Self::Misaligned { addr, align } => {
                write!(f, "block at {addr:#x} is not aligned to {align}")
            }
            Self::Corrupt {
                addr,
                size,
                offset,
                expected,
                found,
            } => write!(
                f,
                "block at {addr:#x} ({size} bytes) corrupted at offset {offset}: \
                 expected {expected:#x}, found {found:#x}"
            ),
        }
    }
}

/// Bytes at each end of a block that are filled completely.
const EDGE: usize = 128;
/// In between, the words whose address is a multiple of this are filled.
const STRIDE: usize = 512;

/// Calls `f` with the index of every word of a block at `addr` (8-aligned)
/// of `words` words that carries the pattern: all words in the first and
/// last [`EDGE`] bytes, and every word at an address that is a multiple of
/// [`STRIDE`].
///
/// Filling whole blocks would be more thorough, but where KVM emulates
/// every kernel-mode instruction (`HERMIT_NATIVE=0` on the development
/// host), whole 64 KiB blocks made
/// the test crawl at under 100 operations per second. Because the sampled
/// words sit at the same absolute addresses for every block, two blocks
/// that overlap by `STRIDE` bytes or more both write at least one common
/// word, and an overlap that reaches an edge of the block it lies in is
/// caught by that edge; only a short overlap inside another block's middle
/// can slip through.
fn for_each_word(addr: usize, words: usize, mut f: impl FnMut(usize)) {
    let edge = EDGE / 8;
    let head = words.min(edge);
    let tail = words.saturating_sub(edge).max(head);
    (0..head).for_each(&mut f);
    // First index at or after `head` whose address is a multiple of STRIDE.
    let misalign = (STRIDE - addr % STRIDE) % STRIDE / 8;
    let step = STRIDE / 8;
    let first = if misalign >= head {
        misalign
    } else {
        misalign + (head - misalign).div_ceil(step) * step
    };
    (first..tail).step_by(step).for_each(&mut f);
    (tail..words).for_each(&mut f);
}

/// The pattern word at word index `i` of the block with `seed`.
fn pattern(seed: u64, i: usize) -> u64 {
    (seed ^ (i as u64)).wrapping_mul(MIX)
}

impl Block {
    /// Allocates `size` bytes aligned to `align` and fills them.
    fn new(size: usize, align: usize, seed: u64) -> Result<Self, Fault> {
        let layout = Layout::from_size_align(size, align).map_err(|_| Fault::OutOfMemory(size))?;
        // SAFETY: `layout` has a non-zero size (sizes start at 16).
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).ok_or(Fault::OutOfMemory(size))?;
        let block = Self { ptr, layout, seed };
        if !(raw as usize).is_multiple_of(align) {
            let addr = raw as usize;
            // The block is still ours to free, even misaligned.
            drop(block);
            return Err(Fault::Misaligned { addr, align });
        }
        let words = size / 8;
        let base = raw.cast::<u64>();
        for_each_word(raw as usize, words, |i| {
            // SAFETY: word `i` lies inside the `size` bytes just allocated,
            // and `raw` is at least 8-aligned.
            unsafe { base.add(i).write(pattern(seed, i)) };
        });
        let tail = pattern(seed, words).to_le_bytes();
        for (j, &byte) in tail.iter().enumerate().take(size % 8) {
            // SAFETY: byte `words * 8 + j` is below `size`.
            unsafe { raw.add(words * 8 + j).write(byte) };
        }
        Ok(block)
    }

    /// Checks the pattern; the block is freed either way.
    fn check_and_free(self) -> Result<(), Fault> {
        let size = self.layout.size();
        let words = size / 8;
        let raw = self.ptr.as_ptr();
        let base = raw.cast::<u64>();
        let mut bad = None;
        for_each_word(raw as usize, words, |i| {
            // SAFETY: as in `new`: inside the block, 8-aligned; we own it.
            let found = unsafe { base.add(i).read() };
            let expected = pattern(self.seed, i);
            if found != expected && bad.is_none() {
                bad = Some((i, expected, found));
            }
        });
        if let Some((i, expected, found)) = bad {
            return Err(self.corrupt(i * 8, expected, found));
        }
        let tail = pattern(self.seed, words).to_le_bytes();
        for (j, &byte) in tail.iter().enumerate().take(size % 8) {
            // SAFETY: byte `words * 8 + j` is below `size`.
            let found = unsafe { raw.add(words * 8 + j).read() };
            if found != byte {
                return Err(self.corrupt(words * 8 + j, byte.into(), found.into()));
            }
        }
        Ok(())
    }

    /// The index of the thread that allocated the block.
    fn owner(&self) -> usize {
        (self.seed >> 40) as usize
    }

    /// Flips one byte of the pattern, as a stray write would: shows that
    /// the check catches it (`corrupt` argument).
    fn damage(&mut self) {
        let mut words = Vec::new();
        for_each_word(self.ptr.as_ptr() as usize, self.layout.size() / 8, |i| {
            words.push(i)
        });
        let offset = words.get(words.len() / 2).map_or(0, |&i| i * 8);
        // SAFETY: `offset` is a word of the block (or its first byte), which
        // we own.
        unsafe {
            let p = self.ptr.as_ptr().add(offset);
            p.write(!p.read());
        }
    }

    fn corrupt(&self, offset: usize, expected: u64, found: u64) -> Fault {
        Fault::Corrupt {
            addr: self.ptr.as_ptr() as usize,
            size: self.layout.size(),
            offset,
            expected,
            found,
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc(self.layout)` and is freed only
        // here, once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// A pseudo-random size, log-uniform from 16 B to [`MAX_SIZE`] (so small
/// blocks are common and every power of two is hit), not always a multiple
/// of 8.
fn block_size(r: u64) -> usize {
    let shift = (r % 13) as u32; // 16 << 12 == 64 KiB
    let base = 16usize << shift;
    (base + (r >> 8) as usize % base).min(MAX_SIZE)
}

/// Alignment 8, 16 or 64.
fn block_align(r: u64) -> usize {
    match (r >> 32) % 3 {
        0 => 8,
        1 => 16,
        _ => 64,
    }
}

/// Counters of one thread.
#[derive(Default, Clone, Copy)]
struct Stats {
    allocs: usize,
    frees: usize,
    /// Blocks this thread put into another thread's inbox.
    handed: usize,
    /// Blocks that another thread allocated and this one freed.
    freed_foreign: usize,
    bytes: usize,
    faults: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.handed += o.handed;
        self.freed_foreign += o.freed_foreign;
        self.bytes += o.bytes;
        self.faults += o.faults;
    }
}

type Inbox = Mutex<VecDeque<Block>>;

/// Records a fault: prints the first few, counts all.
fn report(stats: &mut Stats, who: usize, fault: &Fault) {
    if stats.faults < 5 {
        println!("test-malloc-mt: thread {who}: {fault}");
    }
    stats.faults += 1;
}

/// One thread's work: `ops` allocations or frees on its own slots, one
/// block in eight handed to `outbox`, its `inbox` emptied every fourth
/// operation.
fn worker(index: usize, ops: usize, inbox: &Inbox, outbox: &Inbox, damage: bool) -> Stats {
    let mut rng = Rng::new(index as u64 + 1);
    let mut stats = Stats::default();
    let mut slots: [Option<Block>; SLOTS] = [const { None }; SLOTS];
    for op in 0..ops {
        let r = rng.next();
        let slot = &mut slots[(r >> 52) as usize % SLOTS];
        if let Some(block) = slot.take() {
            stats.frees += 1;
            if let Err(f) = block.check_and_free() {
                report(&mut stats, index, &f);
            }
        } else {
            let seed = ((index as u64) << 40) | op as u64;
            match Block::new(block_size(r), block_align(r), seed) {
                Ok(mut block) => {
                    if damage && op == ops / 2 {
                        block.damage();
                    }
                    stats.allocs += 1;
                    stats.bytes += block.layout.size();
                    if (r >> 44).is_multiple_of(8) {
                        stats.handed += 1;
                        outbox.lock().push_back(block);
                    } else {
                        *slot = Some(block);
                    }
                }
                Err(f) => report(&mut stats, index, &f),
            }
        }
        if op % 4 == 3 {
            drain(inbox, &mut stats, index);
        }
    }
    for block in slots.into_iter().flatten() {
        stats.frees += 1;
        if let Err(f) = block.check_and_free() {
            report(&mut stats, index, &f);
        }
    }
    drain(inbox, &mut stats, index);
    stats
}

/// Checks and frees every block in `inbox`.
fn drain(inbox: &Inbox, stats: &mut Stats, who: usize) {
    loop {
        // The lock is dropped before the block is checked: checking is
        // slow, and other threads want to hand blocks in meanwhile.
        let Some(block) = inbox.lock().pop_front() else {
            return;
        };
        stats.frees += 1;
        if block.owner() != who {
            stats.freed_foreign += 1;
        }
        if let Err(f) = block.check_and_free() {
            report(stats, who, &f);
        }
    }
}

/// Runs `threads` workers of `ops` operations each; returns the summed
/// counters and the time taken.
fn round(
    label: &str,
    threads: usize,
    ops: usize,
    damage: bool,
) -> Result<(Stats, Duration), thread::SpawnError> {
    let cores = thread::available_parallelism();
    let inboxes: Arc<Vec<Inbox>> =
        Arc::new((0..threads).map(|_| Mutex::new(VecDeque::new())).collect());
    let start = Instant::now();
    let handles = (0..threads)
        .map(|i| {
            let boxes = inboxes.clone();
            thread::Builder::new().core(i % cores).spawn(move || {
                worker(
                    i,
                    ops,
                    &boxes[i],
                    &boxes[(i + 1) % threads],
                    damage && i == 0,
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = Stats::default();
    for (i, h) in handles.into_iter().enumerate() {
        let s = h.join();
        println!(
            "test-malloc-mt: {label}: thread {i}: {} allocs, {} frees, {} handed on, \
             {} freed for another thread, {} faults",
            s.allocs, s.frees, s.handed, s.freed_foreign, s.faults
        );
        total.add(&s);
    }
    // Blocks handed to a thread after it had finished.
    let mut late = Stats::default();
    for inbox in inboxes.iter() {
        drain(inbox, &mut late, usize::MAX);
    }
    total.add(&late);
    Ok((total, start.elapsed()))
}

/// Measured rounds at most (see [`leak_check`]).
const MAX_ROUNDS: usize = 3;

/// Waits (up to a second) for the heap in use to drop to `target` and
/// returns the last value seen.
///
/// The heap in use also counts kernel memory that outlives a round on
/// purpose, so the check is built to tell that apart from a leak:
/// - An exited thread's stack is freed by the next task switch on its
///   core, which on another core may come a little after `join` returned
///   here: hence the wait.
/// - The scheduler's run queues and the futex table (its spare wait
///   queues, one per address contended at the same moment) keep the
///   capacity they grew to. How far they grow depends on the timing, but
///   it is bounded by the number of threads, not the number of operations.
///   A warm-up round grows them first; a measured round that still grows
///   them a little is measured again, up to [`MAX_ROUNDS`] times. A real
///   leak (a block, a stack, a queue entry per operation) grows the heap
///   in every round and fails.
fn leak_check(target: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let now = hermit::heap_in_use();
        if now <= target || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The heap in use once it has stopped changing (the stacks of the last
/// round's threads freed), or after a second.
fn settle() -> usize {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut last = hermit::heap_in_use();
    loop {
        thread::sleep(Duration::from_millis(5));
        let now = hermit::heap_in_use();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn parse(arg: Option<&str>, default: usize) -> Option<usize> {
    match arg {
        None => Some(default),
        Some(s) => s.parse().ok().filter(|&n| n > 0),
    }
}

fn main() -> i32 {
    let mut args = hermit::env::args().skip(1);
    let cores = thread::available_parallelism();
    let (Some(threads), Some(ops)) = (parse(args.next(), cores), parse(args.next(), DEFAULT_OPS))
    else {
        println!("usage: test-malloc-mt [THREADS>0] [OPS>0] [corrupt]");
        return 2;
    };
    let damage = match args.next() {
        None => false,
        Some("corrupt") => true,
        Some(_) => {
            println!("usage: test-malloc-mt [THREADS>0] [OPS>0] [corrupt]");
            return 2;
        }
    };
    println!("test-malloc-mt: {threads} thread(s) on {cores} core(s), {ops} operations each");
    match run(threads, ops, damage) {
        Ok(true) => {
            println!("test-malloc-mt: ok");
            0
        }
        Ok(false) => 1,
        Err(e) => {
            println!("test-malloc-mt: FAILED: cannot start a thread: {e}");
            1
        }
    }
}

/// A warm-up round, then measured rounds until one leaves the heap where
/// it found it (at most [`MAX_ROUNDS`]); false if a check failed.
fn run(threads: usize, ops: usize, damage: bool) -> Result<bool, thread::SpawnError> {
    let (warm, _) = round("warm-up", threads, ops / 4 + 1, false)?;
    let mut ok = true;
    if warm.faults > 0 {
        println!(
            "test-malloc-mt: FAILED: {} faulty block(s) in the warm-up",
            warm.faults
        );
        ok = false;
    }
    let mut leak_free = false;
    for n in 1..=MAX_ROUNDS {
        let label = alloc::format!("round {n}");
        let before = settle();
        let (stats, took) = round(&label, threads, ops, damage && n == 1)?;
        let after = leak_check(before);
        let total_ops = stats.allocs + stats.frees;
        let us = took.as_micros().max(1);
        println!(
            "test-malloc-mt: {label}: {total_ops} operations ({} MiB allocated) in {}.{:03} s: {} ops/s",
            stats.bytes >> 20,
            us / 1_000_000,
            us % 1_000_000 / 1000,
            total_ops as u128 * 1_000_000 / us
        );
        println!(
            "test-malloc-mt: {label}: {} blocks handed on through inboxes, {} freed by a \
             thread that did not allocate them",
            stats.handed, stats.freed_foreign
        );
        ok &= counts_agree(&stats, threads);
        if after <= before {
            println!("test-malloc-mt: {label}: heap in use {before} -> {after} bytes: no leak");
            leak_free = true;
            break;
        }
        println!(
            "test-malloc-mt: {label}: heap in use grew {before} -> {after} bytes \
             (kernel caches may still be growing); measuring again"
        );
        if !ok {
            break;
        }
    }
    if !leak_free {
        println!("test-malloc-mt: FAILED: the heap in use grew in every round: a leak");
        ok = false;
    }
    Ok(ok)
}

/// Checks one measured round's counters; prints what disagrees.
fn counts_agree(stats: &Stats, threads: usize) -> bool {
    let mut ok = true;
    if stats.faults > 0 {
        println!("test-malloc-mt: FAILED: {} faulty block(s)", stats.faults);
        ok = false;
    }
    if stats.allocs != stats.frees {
        println!(
            "test-malloc-mt: FAILED: {} allocations but {} frees",
            stats.allocs, stats.frees
        );
        ok = false;
    }
    if threads > 1 && stats.freed_foreign != stats.handed {
        println!(
            "test-malloc-mt: FAILED: {} blocks handed on but {} freed by another thread",
            stats.handed, stats.freed_foreign
        );
        ok = false;
    }
    ok
}
