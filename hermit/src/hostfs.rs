//! The two transports to the host's file server: a polled call queue in
//! guest memory (or the `Fs` hypercall) under uhyve and a byte stream over
//! a virtio console under QEMU (the proxy holds the other end). Both carry
//! the same [`FsCall`] blocks.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

use hermit_drivers::virtio::console::ConsoleStream;
use hermit_drivers::virtio::mmio;
use hermit_fs::hostfs::{Data, HostTransport};
use hermit_interface::PhysSlice;
use hermit_interface::errno::Errno;
use hermit_interface::fs::stream::{MAX_DATA, StreamReply};
use hermit_interface::fs::{FsCall, queue};
use hermit_interface::hypercall::{self, Nr};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::mmio::MmioTransport;

use crate::virtio::KernelHal;

/// The file-call queue shared with uhyve (see
/// [`hermit_interface::fs::queue`]): a page in the kernel image
/// (identity-mapped, below 4 GiB, so a slot's call can also be the block
/// of a plain `Fs` hypercall when the host refuses the queue).
#[repr(C, align(4096))]
struct QueuePage {
    awake: AtomicU32,
    _header: [u8; queue::HEADER - 4],
    slots: [QueueSlot; queue::SLOTS],
}

/// One slot of [`QueuePage`].
#[repr(C, align(128))]
struct QueueSlot {
    state: AtomicU32,
    _pad: u32,
    call: UnsafeCell<FsCall>,
}

const _: () = {
    assert!(size_of::<QueuePage>() == queue::PAGE);
    assert!(offset_of!(QueuePage, awake) == queue::AWAKE);
    assert!(offset_of!(QueuePage, slots) == queue::HEADER);
    assert!(size_of::<QueueSlot>() == queue::SLOT_SIZE);
    assert!(offset_of!(QueueSlot, call) == queue::CALL);
    assert!(queue::SLOTS <= 32);
};

// SAFETY: a slot's call is only touched by the caller that claimed its bit
// in `SLOTS_FREE` (and by the host while the slot is submitted or taken,
// or during that caller's hypercall); the rest are atomics.
unsafe impl Sync for QueuePage {}

static QUEUE: QueuePage = QueuePage {
    awake: AtomicU32::new(0),
    _header: [0; queue::HEADER - 4],
    slots: [const {
        QueueSlot {
            state: AtomicU32::new(queue::FREE),
            _pad: 0,
            call: UnsafeCell::new(zero_call()),
        }
    }; queue::SLOTS],
};

/// Bit i set: slot i is free.
static SLOTS_FREE: AtomicU32 = AtomicU32::new(u32::MAX >> (32 - queue::SLOTS));

/// The parameter block of the one `FsQueue` hypercall.
struct Registration(UnsafeCell<hypercall::FsQueue>);

// SAFETY: only `UhyveTransport::register` touches it, once.
unsafe impl Sync for Registration {}

static REGISTRATION: Registration =
    Registration(UnsafeCell::new(hypercall::FsQueue { page: 0, result: 0 }));

/// How long a caller spins for its result before it asks the host to run
/// the call on its vCPU (and blocks there): long enough for any call that
/// does not wait for something outside (a terminal, a pipe), short enough
/// that such a wait does not burn a core.
const SPIN_BEFORE_KICK_NS: u64 = 1_000_000;

const fn zero_call() -> FsCall {
    FsCall {
        op: 0,
        handle: 0,
        flags: 0,
        mode: 0,
        path: PhysSlice { addr: 0, len: 0 },
        path2: PhysSlice { addr: 0, len: 0 },
        buf: PhysSlice { addr: 0, len: 0 },
        offset: 0,
        whence: 0,
        _reserved: 0,
        result: 0,
    }
}

fn claim_slot() -> usize {
    loop {
        let free = SLOTS_FREE.load(Ordering::Acquire);
        if free == 0 {
            crate::thread::yield_now();
            continue;
        }
        let i = free.trailing_zeros();
        if SLOTS_FREE
            .compare_exchange_weak(free, free & !(1 << i), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return i as usize;
        }
    }
}

/// Issues `FsKick` for `slot`: the host runs or waits for its call.
fn kick(slot: usize) {
    // SAFETY: FsKick's value is a slot index, not an address; the host only
    // touches the slot, which the caller claimed and submitted.
    unsafe { arch_x86_64::io::hypercall(Nr::FsKick.port(), slot as u32) };
}

/// Runs `call` through the queue in `slot` (claimed by the caller) and
/// returns its result.
fn run_queued(slot: usize, call: FsCall) -> i64 {
    let s = &QUEUE.slots[slot];
    // SAFETY: the slot is ours and `FREE`, so the host does not touch it.
    unsafe { s.call.get().write(call) };
    s.state.store(queue::SUBMITTED, Ordering::SeqCst);
    if QUEUE.awake.load(Ordering::SeqCst) == 0 {
        kick(slot);
    } else {
        let deadline = crate::time::monotonic_ns().saturating_add(SPIN_BEFORE_KICK_NS);
        let mut spins = 0u32;
        while s.state.load(Ordering::Acquire) != queue::DONE {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                if crate::time::monotonic_ns() > deadline {
                    kick(slot);
                    break;
                }
                crate::thread::yield_now();
            }
            core::hint::spin_loop();
        }
    }
    // After a kick the host is done with the call, unless the VM ends.
    while s.state.load(Ordering::Acquire) != queue::DONE {
        kick(slot);
    }
    // SAFETY: the host stored the result before `DONE` (acquired above)
    // and does not touch the slot again.
    let result = unsafe { (*s.call.get()).result };
    s.state.store(queue::FREE, Ordering::Relaxed);
    result
}

/// Runs `call` with one `Fs` hypercall, its block in `slot` (claimed by
/// the caller).
fn run_hypercall(slot: usize, call: FsCall) -> i64 {
    let block = QUEUE.slots[slot].call.get();
    // SAFETY: the slot is ours; `block` lies in the kernel image below
    // 4 GiB; every buffer the call names is identity-mapped and lives until
    // the hypercall returns.
    unsafe {
        block.write(call);
        arch_x86_64::io::hypercall(Nr::Fs.port(), block as u32);
        (*block).result
    }
}

/// A byte range the host can reach: the caller's memory if it is
/// identity-mapped, else a heap copy (task stacks live in a virtual window).
enum Reachable<'a> {
    Direct(&'a [u8]),
    Copy(Vec<u8>),
}

impl<'a> Reachable<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        if crate::mem::in_stack_window(bytes.as_ptr() as u64) {
            Self::Copy(bytes.to_vec())
        } else {
            Self::Direct(bytes)
        }
    }

    fn slice(&self) -> PhysSlice {
        let bytes: &[u8] = match self {
            Self::Direct(b) => b,
            Self::Copy(v) => v,
        };
        if bytes.is_empty() {
            return PhysSlice::default();
        }
        PhysSlice {
            addr: bytes.as_ptr() as u64,
            len: bytes.len() as u64,
        }
    }
}

/// uhyve's file calls: through the queue its poller serves (no VM exit
/// while it polls), or, if it refuses the queue, one `Fs` hypercall (VM
/// exit) per call. Either way the host reads and writes the buffers in
/// guest memory directly.
pub(crate) struct UhyveTransport {
    /// Whether the host took the queue; registered at the first call, so
    /// that a program without host files starts no poller.
    queued: spin::Once<bool>,
}

impl UhyveTransport {
    /// A transport that registers the queue when first used.
    pub(crate) const fn new() -> Self {
        Self {
            queued: spin::Once::new(),
        }
    }

    /// Registers the queue with the host; whether it took it.
    fn register() -> bool {
        let block = REGISTRATION.0.get();
        // SAFETY: `queued`'s `Once` runs this once, and there is one
        // transport (`fs::transport` creates it once), so nothing else
        // uses the block; it lies in the kernel image below 4 GiB, as does
        // the (zeroed, never moved) queue page it names.
        let result = unsafe {
            block.write(hypercall::FsQueue {
                page: core::ptr::addr_of!(QUEUE) as u64,
                result: 0,
            });
            arch_x86_64::io::hypercall(Nr::FsQueue.port(), block as u32);
            (*block).result
        };
        if result != 0 {
            log::warn!(
                "host files: uhyve refused the file-call queue ({result}); one VM exit per call"
            );
        }
        result == 0
    }
}

impl HostTransport for UhyveTransport {
    fn call(&self, mut call: FsCall, path: &[u8], path2: &[u8], data: Data<'_>) -> i64 {
        let path = Reachable::new(path);
        let path2 = Reachable::new(path2);
        call.path = path.slice();
        call.path2 = path2.slice();
        // Reads into a stack buffer land in a heap buffer first.
        let mut out_copy: Option<Vec<u8>> = None;
        let input;
        match &data {
            Data::None => call.buf = PhysSlice::default(),
            Data::In(bytes) => {
                input = Reachable::new(bytes);
                call.buf = input.slice();
            }
            Data::Out(buf) => {
                let addr = buf.as_ptr() as u64;
                if crate::mem::in_stack_window(addr) {
                    let copy = vec![0u8; buf.len()];
                    call.buf = PhysSlice {
                        addr: copy.as_ptr() as u64,
                        len: copy.len() as u64,
                    };
                    out_copy = Some(copy);
                } else {
                    call.buf = PhysSlice {
                        addr,
                        len: buf.len() as u64,
                    };
                }
            }
        }
        call.result = 0;
        let slot = claim_slot();
        let result = if *self.queued.call_once(Self::register) {
            run_queued(slot, call)
        } else {
            run_hypercall(slot, call)
        };
        SLOTS_FREE.fetch_or(1 << slot, Ordering::Release);
        if let (Some(copy), Data::Out(buf)) = (out_copy, data) {
            // What the host stored: for a stat the record, not `result`.
            let n = usize::try_from(call.stored_len(result))
                .unwrap_or(0)
                .min(buf.len());
            buf[..n].copy_from_slice(&copy[..n]);
        }
        result
    }
}

/// The stream transport under QEMU: a virtio console on a virtio-mmio slot
/// of the `microvm` machine, connected to the proxy's file server.
pub(crate) struct StreamTransport {
    chan: spin::Mutex<ConsoleStream<KernelHal, MmioTransport<'static>>>,
}

impl StreamTransport {
    /// The console the proxy attached, if any.
    pub(crate) fn probe() -> Option<Self> {
        // SAFETY: microvm's virtio-mmio slots are identity-mapped MMIO
        // (below 4 GiB) that nothing else in the kernel drives.
        let transport = unsafe {
            mmio::find(
                mmio::MICROVM_BASE,
                mmio::MICROVM_SLOT_SIZE,
                mmio::MICROVM_SLOTS,
                DeviceType::Console,
            )
        }?;
        match ConsoleStream::new(transport) {
            Ok(chan) => Some(Self {
                chan: spin::Mutex::new(chan),
            }),
            Err(e) => {
                log::warn!("host files: the virtio console did not start: {e}");
                None
            }
        }
    }
}

impl HostTransport for StreamTransport {
    fn call(&self, mut call: FsCall, path: &[u8], path2: &[u8], data: Data<'_>) -> i64 {
        call.path = PhysSlice {
            addr: 0,
            len: path.len() as u64,
        };
        call.path2 = PhysSlice {
            addr: 0,
            len: path2.len() as u64,
        };
        // Larger I/O becomes a short read or write, which callers repeat.
        let max = usize::try_from(MAX_DATA).unwrap_or(usize::MAX);
        let (payload, out): (&[u8], Option<&mut [u8]>) = match data {
            Data::None => (&[], None),
            Data::In(bytes) => (&bytes[..bytes.len().min(max)], None),
            Data::Out(buf) => {
                let n = buf.len().min(max);
                (&[], Some(&mut buf[..n]))
            }
        };
        let buf_len = out.as_ref().map_or(payload.len(), |b| b.len());
        call.buf = PhysSlice {
            addr: 0,
            len: buf_len as u64,
        };
        let mut chan = self.chan.lock();
        if chan
            .write_all(&[&call.to_le_bytes(), path, path2, payload])
            .is_err()
        {
            return Errno::EIO.to_neg();
        }
        let mut raw = [0u8; StreamReply::SIZE];
        let idle = crate::thread::yield_now;
        if chan.read_exact(&mut raw, idle).is_err() {
            return Errno::EIO.to_neg();
        }
        let Some(reply) = StreamReply::from_le_bytes(&raw) else {
            return Errno::EIO.to_neg();
        };
        let result = reply.result;
        let Ok(data_len) = usize::try_from(reply.data_len) else {
            return Errno::EIO.to_neg();
        };
        match out {
            Some(buf) if data_len <= buf.len() => {
                if chan.read_exact(&mut buf[..data_len], idle).is_err() {
                    return Errno::EIO.to_neg();
                }
                result
            }
            _ if data_len == 0 => result,
            // A host that sends more than asked for is broken; the stream
            // cannot be trusted to be in step any more either.
            _ => Errno::EIO.to_neg(),
        }
    }
}
