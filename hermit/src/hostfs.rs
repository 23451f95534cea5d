//! The two transports to the host's file server: the `Fs` hypercall under
//! uhyve and a byte stream over a virtio console under QEMU (the proxy holds
//! the other end). Both carry the same [`FsCall`] blocks.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use hermit_drivers::virtio::console::ConsoleStream;
use hermit_drivers::virtio::mmio;
use hermit_fs::hostfs::{Data, HostTransport};
use hermit_interface::PhysSlice;
use hermit_interface::errno::Errno;
use hermit_interface::fs::FsCall;
use hermit_interface::fs::stream::{MAX_DATA, StreamReply};
use hermit_interface::hypercall::Nr;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::mmio::MmioTransport;

use crate::virtio::KernelHal;

/// Parameter blocks of calls in flight under uhyve. They live in the kernel
/// image (identity-mapped, below 4 GiB, so their addresses fit the 32-bit
/// port write); one per concurrent call, claimed in `SLOTS_FREE`.
struct Slots([UnsafeCell<FsCall>; 32]);

// SAFETY: a slot is only touched by the caller that claimed its bit in
// `SLOTS_FREE` (and by the host during that caller's hypercall).
unsafe impl Sync for Slots {}

static SLOTS: Slots = Slots([const { UnsafeCell::new(zero_call()) }; 32]);
/// Bit i set: slot i is free.
static SLOTS_FREE: AtomicU32 = AtomicU32::new(u32::MAX);

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

/// uhyve's `Fs` hypercall: one VM exit per call; the host reads and writes
/// the buffers in guest memory directly.
pub(crate) struct UhyveTransport;

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
        let block = SLOTS.0[slot].get();
        // SAFETY: the slot is ours (claimed above); `block` lies in the
        // kernel image below 4 GiB; every buffer it names is identity-mapped
        // and lives until the hypercall returns.
        let result = unsafe {
            block.write(call);
            arch_x86_64::io::hypercall(Nr::Fs.port(), block as u32);
            (*block).result
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
