//! Serving the guest's port-I/O hypercalls and reading its log ring.
//!
//! Everything here treats guest memory as hostile: addresses and lengths are
//! checked (overflow-safe) against guest RAM through `vm-memory`, which never
//! yields a host pointer outside the mapping.

use std::mem::{offset_of, size_of};

use hermit_hostfs::{CallBuffers, DataBuf, PathArg, Server};
use hermit_interface::errno::Errno;
use hermit_interface::fs::{FsCall, PATH_MAX};
use hermit_interface::hypercall::{self, Nr, errno};
use hermit_interface::{LOG_RING_MAGIC, LogRing, PhysSlice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

/// The largest log ring uhyve reads back; bigger capacities are rejected as
/// corrupt rather than allocated.
pub const MAX_LOG_CAPACITY: u64 = 64 << 20;

/// Where the bytes of a Write hypercall go.
pub trait Output {
    /// Writes all of `data` to host fd `fd` (1 or 2); on failure returns how
    /// many bytes were written before and the errno.
    fn write_all(&mut self, fd: i32, data: &VolatileSlice<'_>) -> Result<(), (usize, i32)>;
}

/// The process's own stdout and stderr, unbuffered (one `write(2)` loop per
/// hypercall, so output order matches the guest's).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostOutput;

impl Output for HostOutput {
    fn write_all(&mut self, fd: i32, data: &VolatileSlice<'_>) -> Result<(), (usize, i32)> {
        let guard = data.ptr_guard();
        let ptr = guard.as_ptr();
        let mut done = 0;
        while done < data.len() {
            // SAFETY: `ptr..ptr + data.len()` is a bounds-checked slice of the
            // guest memory mapping, which stays mapped while `data` (and so
            // `guard`) lives; write(2) only reads it, and a concurrent guest
            // write can only change the bytes, not make the access invalid.
            let n = unsafe { libc::write(fd, ptr.add(done).cast(), data.len() - done) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err((done, err.raw_os_error().unwrap_or(libc::EIO)));
            }
            if n == 0 {
                return Err((done, libc::EIO));
            }
            done += n as usize;
        }
        Ok(())
    }
}

/// What the vCPU loop should do after a hypercall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Continue,
    /// The guest exited with this status.
    Exit(i32),
    /// End the VM: the guest broke the hypercall protocol.
    Abort(String),
    /// Start an application processor: the request passed every check that
    /// needs only guest memory; the VM checks that the CPU is not running
    /// yet, starts it and stores the result with [`store_start_result`].
    StartCpu(StartRequest),
    /// Serve the [`FsCall`] at this guest-physical address with
    /// [`serve_fs`]; returned so that the VM serves it without holding the
    /// lock of its [`Hypercalls`] (file I/O can block).
    Fs(u64),
    /// Ring the doorbell of this node (an isle number or
    /// [`HOST_NODE`](hermit_interface::isle::HOST_NODE)); unchecked, the VM
    /// drops rings to nodes it cannot reach.
    Doorbell(u32),
    /// Register the file-call queue named by the [`hypercall::FsQueue`]
    /// block at this guest-physical address (see [`crate::fsqueue`]).
    FsQueue(u64),
    /// Serve or wait for this slot of the file-call queue; checked against
    /// the slot count.
    FsKick(usize),
}

/// A [`Nr::StartCpu`] request whose CPU index, alignments and addresses
/// were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartRequest {
    /// Guest-physical address of the parameter block (for the result).
    pub block: u64,
    /// The CPU to start, `1..cpu_count`.
    pub cpu: u32,
    /// Initial `RIP`.
    pub entry: u64,
    /// Initial `RSP`.
    pub stack_top: u64,
    /// Initial `RDI`.
    pub arg: u64,
    /// Initial `CR3`.
    pub cr3: u64,
}

/// Hypercall state of one VM.
#[derive(Debug)]
pub struct Hypercalls<O> {
    out: O,
    cpu_count: u32,
    /// The log ring the guest registered, if any.
    pub log_ring: Option<u64>,
}

impl<O: Output> Hypercalls<O> {
    /// A handler for a one-CPU VM writing to `out`.
    pub fn new(out: O) -> Self {
        Self::with_cpus(out, 1)
    }

    /// A handler for a VM with `cpu_count` vCPUs writing to `out`.
    pub fn with_cpus(out: O, cpu_count: u32) -> Self {
        Self {
            out,
            cpu_count,
            log_ring: None,
        }
    }

    /// Handles an `out` to `port` with `data`; ports that are not hypercalls
    /// are ignored like writes to an absent device.
    pub fn handle_out(&mut self, mem: &GuestMemoryMmap, port: u16, data: &[u8]) -> Action {
        let Some(nr) = Nr::from_port(port) else {
            return Action::Continue;
        };
        let Ok(addr) = <[u8; 4]>::try_from(data) else {
            return Action::Abort(format!(
                "hypercall {nr:?} issued with a {}-byte out; expected a 32-bit out",
                data.len()
            ));
        };
        let addr = u64::from(u32::from_le_bytes(addr));
        match nr {
            Nr::Exit => match read_param::<4>(mem, nr, addr) {
                Ok(raw) => Action::Exit(i32::from_le_bytes(raw)),
                Err(abort) => abort,
            },
            Nr::Write => self.write(mem, addr),
            Nr::LogRegister => match read_param::<8>(mem, nr, addr) {
                Ok(raw) => {
                    self.log_ring = Some(u64::from_le_bytes(raw));
                    Action::Continue
                }
                Err(abort) => abort,
            },
            Nr::StartCpu => self.start_cpu(mem, addr),
            Nr::Fs => Action::Fs(addr),
            Nr::Doorbell => Action::Doorbell(addr as u32),
            Nr::FsQueue => Action::FsQueue(addr),
            Nr::FsKick => match usize::try_from(addr) {
                Ok(slot) if slot < hermit_interface::fs::queue::SLOTS => Action::FsKick(slot),
                _ => Action::Abort(format!(
                    "hypercall FsKick names slot {addr}; the queue has {}",
                    hermit_interface::fs::queue::SLOTS
                )),
            },
        }
    }

    fn start_cpu(&self, mem: &GuestMemoryMmap, addr: u64) -> Action {
        const SIZE: usize = size_of::<hypercall::StartCpu>();
        let raw = match read_param::<SIZE>(mem, Nr::StartCpu, addr) {
            Ok(raw) => raw,
            Err(abort) => return abort,
        };
        let field = |offset: usize| u64_at(&raw, offset);
        let request = StartRequest {
            block: addr,
            cpu: u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            entry: field(offset_of!(hypercall::StartCpu, entry)),
            stack_top: field(offset_of!(hypercall::StartCpu, stack_top)),
            arg: field(offset_of!(hypercall::StartCpu, arg)),
            cr3: field(offset_of!(hypercall::StartCpu, cr3)),
        };
        match check_start(mem, self.cpu_count, &request) {
            Ok(()) => Action::StartCpu(request),
            Err(errno) => store_start_result(mem, addr, -errno),
        }
    }

    fn write(&mut self, mem: &GuestMemoryMmap, addr: u64) -> Action {
        const SIZE: usize = size_of::<hypercall::Write>();
        let raw = match read_param::<SIZE>(mem, Nr::Write, addr) {
            Ok(raw) => raw,
            Err(abort) => return abort,
        };
        let field = |offset: usize| u64_at(&raw, offset);
        let fd = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let buf = field(offset_of!(hypercall::Write, buf));
        let len = field(offset_of!(hypercall::Write, len));
        let result = self.write_result(mem, fd, buf, len);
        let at = GuestAddress(addr + offset_of!(hypercall::Write, result) as u64);
        // The whole struct was readable, so its result field is writable.
        match mem.write_slice(&result.to_le_bytes(), at) {
            Ok(()) => Action::Continue,
            Err(e) => Action::Abort(format!("hypercall Write: cannot store the result: {e}")),
        }
    }

    fn write_result(&mut self, mem: &GuestMemoryMmap, fd: i32, buf: u64, len: u64) -> i64 {
        if fd != 1 && fd != 2 {
            return -errno::EBADF;
        }
        if len == 0 {
            return 0;
        }
        let Some(slice) = guest_slice(mem, buf, len) else {
            return -errno::EFAULT;
        };
        match self.out.write_all(fd, &slice) {
            Ok(()) => len as i64,
            Err((0, e)) => -i64::from(e),
            Err((n, _)) => n as i64,
        }
    }
}

/// Serves the [`Nr::Fs`] hypercall whose [`FsCall`] is at `block`: decodes
/// it from guest memory, lets `server` run it on the guest's buffers in
/// place (paths are copied out first; data moves directly between the host
/// kernel and guest RAM) and stores the result in the block. A block
/// outside guest memory ends the VM, like any hypercall's; bad `path`,
/// `path2` or `buf` ranges are the guest's `-EFAULT` (`-ENAMETOOLONG` for a
/// path longer than `PATH_MAX`).
pub fn serve_fs(mem: &GuestMemoryMmap, server: &Server, block: u64) -> Action {
    const SIZE: usize = size_of::<FsCall>();
    let raw = match read_param::<SIZE>(mem, Nr::Fs, block) {
        Ok(raw) => raw,
        Err(abort) => return abort,
    };
    let result = run_fs_call(mem, server, &raw);
    let at = GuestAddress(block + offset_of!(FsCall, result) as u64);
    // The whole block was readable, so its result field is writable.
    match mem.write_slice(&result.to_le_bytes(), at) {
        Ok(()) => Action::Continue,
        Err(e) => Action::Abort(format!("hypercall Fs: cannot store the result: {e}")),
    }
}

/// Runs the [`FsCall`] encoded in `raw` (copied out of guest memory) on
/// `server`, with its buffers checked against guest RAM; returns its
/// result.
pub(crate) fn run_fs_call(
    mem: &GuestMemoryMmap,
    server: &Server,
    raw: &[u8; size_of::<FsCall>()],
) -> i64 {
    let call = decode_fs_call(raw);
    server.call(&call, &mut GuestBuffers { mem, call })
}

/// An [`FsCall`] from its little-endian bytes.
fn decode_fs_call(raw: &[u8; size_of::<FsCall>()]) -> FsCall {
    let u32_at = |offset: usize| {
        u32::from_le_bytes([
            raw[offset],
            raw[offset + 1],
            raw[offset + 2],
            raw[offset + 3],
        ])
    };
    let slice = |offset: usize| PhysSlice {
        addr: u64_at(raw, offset + offset_of!(PhysSlice, addr)),
        len: u64_at(raw, offset + offset_of!(PhysSlice, len)),
    };
    FsCall {
        op: u32_at(offset_of!(FsCall, op)),
        handle: u32_at(offset_of!(FsCall, handle)) as i32,
        flags: u32_at(offset_of!(FsCall, flags)),
        mode: u32_at(offset_of!(FsCall, mode)),
        path: slice(offset_of!(FsCall, path)),
        path2: slice(offset_of!(FsCall, path2)),
        buf: slice(offset_of!(FsCall, buf)),
        offset: u64_at(raw, offset_of!(FsCall, offset)) as i64,
        whence: u32_at(offset_of!(FsCall, whence)),
        _reserved: u32_at(offset_of!(FsCall, _reserved)),
        result: 0,
    }
}

/// The buffers of one guest [`FsCall`], checked against guest RAM.
struct GuestBuffers<'a> {
    mem: &'a GuestMemoryMmap,
    call: FsCall,
}

impl CallBuffers for GuestBuffers<'_> {
    fn path(&mut self, which: PathArg) -> Result<Vec<u8>, Errno> {
        let path = match which {
            PathArg::Path => self.call.path,
            PathArg::Path2 => self.call.path2,
        };
        if path.len > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if path.len == 0 {
            return Ok(Vec::new());
        }
        let slice = guest_slice(self.mem, path.addr, path.len).ok_or(Errno::EFAULT)?;
        let mut bytes = vec![0u8; slice.len()];
        if slice.copy_to(&mut bytes[..]) != bytes.len() {
            return Err(Errno::EFAULT);
        }
        Ok(bytes)
    }

    fn data(&mut self) -> Result<DataBuf<'_>, Errno> {
        let buf = self.call.buf;
        if buf.len == 0 {
            return Ok(DataBuf::empty());
        }
        let slice = guest_slice(self.mem, buf.addr, buf.len).ok_or(Errno::EFAULT)?;
        let guard = slice.ptr_guard_mut();
        // SAFETY: `slice` is a bounds-checked range of one region of the
        // guest memory mapping, which `self.mem` (borrowed for longer than
        // the returned buffer) keeps mapped; uhyve's memory has no dirty
        // bitmap, so the guard has nothing to do on drop. Host code holds no
        // Rust references into guest RAM; the guest itself may change the
        // bytes meanwhile, which `DataBuf` allows.
        Ok(unsafe { DataBuf::from_raw(guard.as_ptr(), slice.len()) })
    }
}

/// The checks of a StartCpu request that need no VM state; the errno if one
/// fails.
fn check_start(mem: &GuestMemoryMmap, cpu_count: u32, r: &StartRequest) -> Result<(), i64> {
    if r.cpu == 0 || r.cpu >= cpu_count {
        return Err(errno::EINVAL);
    }
    if !r.stack_top.is_multiple_of(16) || !r.cr3.is_multiple_of(4096) {
        return Err(errno::EINVAL);
    }
    let inside =
        |addr: Option<u64>, len: u64| addr.and_then(|a| guest_slice(mem, a, len)).is_some();
    if !inside(Some(r.entry), 1)
        || !inside(r.stack_top.checked_sub(8), 8)
        || !inside(Some(r.cr3), 4096)
    {
        return Err(errno::EFAULT);
    }
    Ok(())
}

/// Stores `result` in the StartCpu parameter block at `block` (which the
/// request was read from, so it is writable).
pub fn store_start_result(mem: &GuestMemoryMmap, block: u64, result: i64) -> Action {
    let at = GuestAddress(block + offset_of!(hypercall::StartCpu, result) as u64);
    match mem.write_slice(&result.to_le_bytes(), at) {
        Ok(()) => Action::Continue,
        Err(e) => Action::Abort(format!("hypercall StartCpu: cannot store the result: {e}")),
    }
}

/// `[addr, addr + len)` of guest memory, if it is all RAM in one region.
pub fn guest_slice(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Option<VolatileSlice<'_>> {
    addr.checked_add(len)?;
    let len = usize::try_from(len).ok()?;
    mem.get_slice(GuestAddress(addr), len).ok()
}

pub(crate) fn read_param<const N: usize>(
    mem: &GuestMemoryMmap,
    nr: Nr,
    addr: u64,
) -> Result<[u8; N], Action> {
    let mut raw = [0u8; N];
    match guest_slice(mem, addr, N as u64) {
        Some(slice) if slice.copy_to(&mut raw[..]) == N => Ok(raw),
        _ => Err(Action::Abort(format!(
            "hypercall {nr:?}: parameter block at {addr:#x} lies outside guest memory"
        ))),
    }
}

/// Reads the log ring at `ring`: the last `min(written, capacity)` bytes in
/// order. Fails with a reason if the header is outside RAM, the magic is
/// wrong, or the capacity is 0, larger than [`MAX_LOG_CAPACITY`] or runs past
/// RAM.
pub fn read_log(mem: &GuestMemoryMmap, ring: u64) -> Result<Vec<u8>, String> {
    read_log_since(mem, ring, 0).map(|chunk| chunk.bytes)
}

/// New bytes of a log ring: what [`read_log_since`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The bytes from stream position `since + skipped` up to `end`.
    pub bytes: Vec<u8>,
    /// Bytes after `since` that the ring no longer holds (overwritten
    /// before they could be read).
    pub skipped: u64,
    /// Stream position after the last byte: pass it as the next `since`.
    pub end: u64,
}

/// Reads the bytes the kernel appended to the log ring at `ring` since
/// stream position `since` (0: everything the ring still holds), while
/// the guest may keep writing: bytes the guest may have overwritten during
/// the copy are dropped and counted in [`LogChunk::skipped`]. A `since`
/// beyond the ring's `written` (a new ring) reads from 0. Same checks as
/// [`read_log`].
pub fn read_log_since(mem: &GuestMemoryMmap, ring: u64, since: u64) -> Result<LogChunk, String> {
    const HEADER: u64 = size_of::<LogRing>() as u64;
    let header = guest_slice(mem, ring, HEADER)
        .ok_or_else(|| format!("header at {ring:#x} lies outside guest memory"))?;
    let mut raw = [0u8; HEADER as usize];
    header.copy_to(&mut raw[..]);
    if u64_at(&raw, offset_of!(LogRing, magic)) != LOG_RING_MAGIC {
        return Err(format!("no log ring magic at {ring:#x}"));
    }
    let capacity = u64_at(&raw, offset_of!(LogRing, capacity));
    let written = u64_at(&raw, offset_of!(LogRing, written));
    if capacity == 0 || capacity > MAX_LOG_CAPACITY {
        return Err(format!("implausible capacity {capacity}"));
    }
    let data = guest_slice(mem, ring + HEADER, capacity)
        .ok_or_else(|| format!("data area of {capacity} bytes runs past guest memory"))?;
    let since = if since > written { 0 } else { since };
    let mut start = since.max(written.saturating_sub(capacity));
    let mut bytes = vec![0u8; (written - start) as usize];
    // The bytes of positions start..written, in up to two pieces.
    let mut pos = start;
    let mut filled = 0;
    while filled < bytes.len() {
        let at = (pos % capacity) as usize;
        let n = (bytes.len() - filled).min(capacity as usize - at);
        let piece = data
            .subslice(at, n)
            .map_err(|e| format!("log ring data: {e}"))?;
        piece.copy_to(&mut bytes[filled..filled + n]);
        filled += n;
        pos += n as u64;
    }
    // The guest appends after `written` and may have wrapped over the
    // oldest bytes copied meanwhile: drop those.
    header.copy_to(&mut raw[..]);
    let now = u64_at(&raw, offset_of!(LogRing, written)).max(written);
    let overwritten = now.saturating_sub(capacity).clamp(start, written);
    bytes.drain(..(overwritten - start) as usize);
    start = overwritten;
    Ok(LogChunk {
        bytes,
        skipped: start - since,
        end: written,
    })
}

/// The little-endian `u64` at `offset` of a parameter block read from the
/// guest (the offsets come from `offset_of!`, inside the block).
fn u64_at(raw: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[offset..offset + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
pub(crate) mod tests {
    use hermit_interface::fs::{FileStat, Op, open_flags};
    use hermit_interface::hypercall::PORT_BASE;

    use super::*;

    const MEM: u64 = 0x10_0000;

    #[derive(Default)]
    struct Capture(Vec<(i32, Vec<u8>)>);

    impl Output for Capture {
        fn write_all(&mut self, fd: i32, data: &VolatileSlice<'_>) -> Result<(), (usize, i32)> {
            let mut v = vec![0; data.len()];
            data.copy_to(&mut v[..]);
            self.0.push((fd, v));
            Ok(())
        }
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
    }

    fn put_write(mem: &GuestMemoryMmap, at: u64, fd: i32, buf: u64, len: u64) {
        mem.write_obj(fd, GuestAddress(at)).unwrap();
        mem.write_obj(buf, GuestAddress(at + 8)).unwrap();
        mem.write_obj(len, GuestAddress(at + 16)).unwrap();
        mem.write_obj(0x5555i64, GuestAddress(at + 24)).unwrap();
    }

    fn write_call(
        h: &mut Hypercalls<Capture>,
        mem: &GuestMemoryMmap,
        fd: i32,
        buf: u64,
        len: u64,
    ) -> i64 {
        put_write(mem, 0x1000, fd, buf, len);
        let port = Nr::Write.port();
        assert_eq!(
            h.handle_out(mem, port, &0x1000u32.to_le_bytes()),
            Action::Continue
        );
        mem.read_obj(GuestAddress(0x1000 + 24)).unwrap()
    }

    #[test]
    fn write_checks_fd_and_range() {
        let mem = memory();
        mem.write_slice(b"hi\n", GuestAddress(0x2000)).unwrap();
        let mut h = Hypercalls::new(Capture::default());
        assert_eq!(write_call(&mut h, &mem, 1, 0x2000, 3), 3);
        assert_eq!(write_call(&mut h, &mem, 2, 0x2000, 2), 2);
        assert_eq!(write_call(&mut h, &mem, 1, 0x2000, 0), 0);
        assert_eq!(h.out.0, [(1, b"hi\n".to_vec()), (2, b"hi".to_vec())]);

        assert_eq!(write_call(&mut h, &mem, 0, 0x2000, 3), -errno::EBADF);
        assert_eq!(write_call(&mut h, &mem, 3, 0x2000, 3), -errno::EBADF);
        assert_eq!(write_call(&mut h, &mem, -1, 0x2000, 3), -errno::EBADF);
        for (buf, len) in [
            (MEM - 1, 2),
            (MEM, 1),
            (0x2000, u64::MAX),
            (u64::MAX, 2),
            (u64::MAX - 1, 1),
            (0x2000, MEM),
            (1 << 40, 1),
        ] {
            assert_eq!(
                write_call(&mut h, &mem, 1, buf, len),
                -errno::EFAULT,
                "{buf:#x}+{len:#x}"
            );
        }
        assert_eq!(h.out.0.len(), 2, "nothing written for bad calls");
        // The last byte of memory is fine.
        assert_eq!(write_call(&mut h, &mem, 1, MEM - 1, 1), 1);
    }

    #[test]
    fn bad_parameter_blocks_abort() {
        let mem = memory();
        let mut h = Hypercalls::with_cpus(Capture::default(), 2);
        for nr in [Nr::Exit, Nr::Write, Nr::LogRegister, Nr::StartCpu] {
            for addr in [MEM as u32, MEM as u32 - 2, u32::MAX] {
                let action = h.handle_out(&mem, nr.port(), &addr.to_le_bytes());
                assert!(
                    matches!(&action, Action::Abort(m) if m.contains("outside guest memory")),
                    "{nr:?} {addr:#x}: {action:?}"
                );
            }
            // 8- and 16-bit outs to a hypercall port.
            assert!(matches!(
                h.handle_out(&mem, nr.port(), &[0, 0]),
                Action::Abort(_)
            ));
        }
        assert!(matches!(
            h.handle_out(&mem, Nr::Fs.port(), &[0, 0]),
            Action::Abort(_)
        ));
        assert_eq!(h.log_ring, None);
    }

    #[test]
    fn exit_and_unknown_ports() {
        let mem = memory();
        let mut h = Hypercalls::new(Capture::default());
        mem.write_obj(-3i32, GuestAddress(0x3000)).unwrap();
        let addr = 0x3000u32.to_le_bytes();
        assert_eq!(h.handle_out(&mem, Nr::Exit.port(), &addr), Action::Exit(-3));
        for port in [0, 0x80, PORT_BASE - 1, PORT_BASE + 3, 0xffff] {
            assert_eq!(h.handle_out(&mem, port, &addr), Action::Continue);
        }
    }

    fn start(h: &Hypercalls<Capture>, mem: &GuestMemoryMmap, fields: [u64; 5]) -> (Action, i64) {
        let [cpu, entry, stack_top, arg, cr3] = fields;
        mem.write_obj(cpu as u32, GuestAddress(0x1000)).unwrap();
        for (i, v) in [entry, stack_top, arg, cr3, 0x5555].iter().enumerate() {
            mem.write_obj(*v, GuestAddress(0x1008 + 8 * i as u64))
                .unwrap();
        }
        let action = h.start_cpu(mem, 0x1000);
        (action, mem.read_obj(GuestAddress(0x1028)).unwrap())
    }

    #[test]
    fn start_cpu_requests_are_checked() {
        let mem = memory();
        let h = Hypercalls::with_cpus(Capture::default(), 4);
        let good = [2, 0x3000, 0x8000, 7, 0x4000];
        let (action, result) = start(&h, &mem, good);
        assert_eq!(result, 0x5555, "the VM stores the result of a good request");
        assert_eq!(
            action,
            Action::StartCpu(StartRequest {
                block: 0x1000,
                cpu: 2,
                entry: 0x3000,
                stack_top: 0x8000,
                arg: 7,
                cr3: 0x4000,
            })
        );
        // The last valid values: entry at the last byte, stack top at the
        // end of memory, cr3 at the last page.
        let edge = [3, MEM - 1, MEM, 0, MEM - 4096];
        assert!(matches!(start(&h, &mem, edge).0, Action::StartCpu(_)));

        let (einval, efault) = (-errno::EINVAL, -errno::EFAULT);
        for (bad, expected) in [
            ([0, 0x3000, 0x8000, 0, 0x4000], einval),
            ([4, 0x3000, 0x8000, 0, 0x4000], einval),
            ([u32::MAX as u64, 0x3000, 0x8000, 0, 0x4000], einval),
            ([1, 0x3000, 0x8008, 0, 0x4000], einval),
            ([1, 0x3000, 0x8000, 0, 0x4010], einval),
            ([1, MEM, 0x8000, 0, 0x4000], efault),
            ([1, u64::MAX, 0x8000, 0, 0x4000], efault),
            ([1, 0x3000, 0, 0, 0x4000], efault),
            ([1, 0x3000, MEM + 16, 0, 0x4000], efault),
            ([1, 0x3000, u64::MAX - 15, 0, 0x4000], efault),
            ([1, 0x3000, 0x8000, 0, MEM], efault),
            ([1, 0x3000, 0x8000, 0, u64::MAX - 4095], efault),
        ] {
            assert_eq!(
                start(&h, &mem, bad),
                (Action::Continue, expected),
                "{bad:x?}"
            );
        }
        // A one-CPU VM has no CPU to start.
        let single = Hypercalls::new(Capture::default());
        assert_eq!(start(&single, &mem, good), (Action::Continue, einval));

        assert_eq!(store_start_result(&mem, 0x1000, -3), Action::Continue);
        assert_eq!(mem.read_obj::<i64>(GuestAddress(0x1028)).unwrap(), -3);
    }

    fn put_ring(mem: &GuestMemoryMmap, at: u64, magic: u64, capacity: u64, written: u64) {
        mem.write_obj(magic, GuestAddress(at)).unwrap();
        mem.write_obj(capacity, GuestAddress(at + 8)).unwrap();
        mem.write_obj(written, GuestAddress(at + 16)).unwrap();
    }

    #[test]
    fn log_ring_is_read_in_order_and_validated() {
        let mem = memory();
        let mut h = Hypercalls::new(Capture::default());
        mem.write_obj(0x4000u64, GuestAddress(0x3000)).unwrap();
        let port = Nr::LogRegister.port();
        assert_eq!(
            h.handle_out(&mem, port, &0x3000u32.to_le_bytes()),
            Action::Continue
        );
        assert_eq!(h.log_ring, Some(0x4000));

        mem.write_slice(b"0123456789abcdef", GuestAddress(0x4018))
            .unwrap();
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 5);
        assert_eq!(read_log(&mem, 0x4000).unwrap(), b"01234");
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 16);
        assert_eq!(read_log(&mem, 0x4000).unwrap(), b"0123456789abcdef");
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 20);
        assert_eq!(read_log(&mem, 0x4000).unwrap(), b"456789abcdef0123");
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, u64::MAX);
        assert_eq!(read_log(&mem, 0x4000).unwrap().len(), 16);

        put_ring(&mem, 0x4000, 0, 16, 5);
        assert!(read_log(&mem, 0x4000).unwrap_err().contains("magic"));
        for capacity in [0, MAX_LOG_CAPACITY + 1, u64::MAX, MEM] {
            put_ring(&mem, 0x4000, LOG_RING_MAGIC, capacity, 5);
            assert!(read_log(&mem, 0x4000).is_err(), "{capacity}");
        }
        put_ring(&mem, MEM - 24, LOG_RING_MAGIC, 1, 1);
        assert!(read_log(&mem, MEM - 24).is_err());
        for at in [MEM - 8, MEM, u64::MAX - 4] {
            assert!(read_log(&mem, at).is_err());
        }
    }

    #[test]
    fn log_ring_is_read_incrementally() {
        let mem = memory();
        mem.write_slice(b"0123456789abcdef", GuestAddress(0x4018))
            .unwrap();
        let chunk = |since| read_log_since(&mem, 0x4000, since).unwrap();
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 5);
        assert_eq!(
            chunk(0),
            LogChunk {
                bytes: b"01234".to_vec(),
                skipped: 0,
                end: 5
            }
        );
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 12);
        assert_eq!(chunk(5).bytes, b"56789ab");
        assert_eq!(
            chunk(12),
            LogChunk {
                bytes: Vec::new(),
                skipped: 0,
                end: 12
            }
        );
        // Wrapped: positions 12..20 are "cdef" then "0123".
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 20);
        assert_eq!(chunk(12).bytes, b"cdef0123");
        // More than a ring's worth since the last read: the oldest are lost.
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 40);
        let c = chunk(12);
        assert_eq!(
            (c.bytes.as_slice(), c.skipped, c.end),
            (&b"89abcdef01234567"[..], 12, 40)
        );
        // A position beyond `written` (a new ring) reads from the start.
        put_ring(&mem, 0x4000, LOG_RING_MAGIC, 16, 3);
        assert_eq!(chunk(40).bytes, b"012");
        put_ring(&mem, 0x4000, 0, 16, 3);
        assert!(read_log_since(&mem, 0x4000, 0).is_err());
    }

    /// A temporary host directory holding `f` ("file data"), removed on drop
    /// (also used by the file-call queue's tests).
    pub(crate) struct HostDir(std::path::PathBuf);

    impl HostDir {
        pub(crate) fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("uhyve-fs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("f"), b"file data").unwrap();
            Self(path)
        }

        /// A file server with the directory mounted at `/data`.
        pub(crate) fn server(&self) -> Server {
            let mount = hermit_hostfs::Mount::new(&self.0, "/data").unwrap();
            Server::new(vec![mount]).unwrap()
        }
    }

    impl Drop for HostDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const BLOCK: u64 = 0x1000;

    /// Stores `call` at [`BLOCK`] (with a canary result), issues the Fs
    /// hypercall and serves it; returns the stored result.
    fn fs(mem: &GuestMemoryMmap, server: &Server, call: FsCall) -> i64 {
        let at = |f: usize| GuestAddress(BLOCK + f as u64);
        mem.write_obj(call.op, at(offset_of!(FsCall, op))).unwrap();
        mem.write_obj(call.handle, at(offset_of!(FsCall, handle)))
            .unwrap();
        mem.write_obj(call.flags, at(offset_of!(FsCall, flags)))
            .unwrap();
        mem.write_obj(call.mode, at(offset_of!(FsCall, mode)))
            .unwrap();
        for (field, slice) in [
            (offset_of!(FsCall, path), call.path),
            (offset_of!(FsCall, path2), call.path2),
            (offset_of!(FsCall, buf), call.buf),
        ] {
            mem.write_obj(slice.addr, at(field)).unwrap();
            mem.write_obj(slice.len, at(field + 8)).unwrap();
        }
        mem.write_obj(call.offset, at(offset_of!(FsCall, offset)))
            .unwrap();
        mem.write_obj(call.whence, at(offset_of!(FsCall, whence)))
            .unwrap();
        mem.write_obj(0x5555i64, at(offset_of!(FsCall, result)))
            .unwrap();
        let mut h = Hypercalls::new(Capture::default());
        let action = h.handle_out(mem, Nr::Fs.port(), &(BLOCK as u32).to_le_bytes());
        assert_eq!(action, Action::Fs(BLOCK));
        assert_eq!(serve_fs(mem, server, BLOCK), Action::Continue);
        mem.read_obj(at(offset_of!(FsCall, result))).unwrap()
    }

    fn phys(addr: u64, len: u64) -> PhysSlice {
        PhysSlice { addr, len }
    }

    fn open_call(path: PhysSlice, flags: u32) -> FsCall {
        FsCall {
            op: Op::Open as u32,
            flags,
            mode: 0o644,
            path,
            ..Default::default()
        }
    }

    fn io_call(op: Op, handle: i32, buf: PhysSlice) -> FsCall {
        FsCall {
            op: op as u32,
            handle,
            buf,
            ..Default::default()
        }
    }

    #[test]
    fn fs_calls_use_guest_memory_in_place() {
        let dir = HostDir::new("in-place");
        let server = dir.server();
        let mem = memory();
        mem.write_slice(b"f", GuestAddress(0x2000)).unwrap();
        let h = fs(
            &mem,
            &server,
            open_call(phys(0x2000, 1), open_flags::O_RDWR),
        );
        assert_eq!(h, 3);
        let h = h as i32;
        // Read straight into guest RAM.
        assert_eq!(fs(&mem, &server, io_call(Op::Read, h, phys(0x3000, 64))), 9);
        let mut got = [0u8; 9];
        mem.read_slice(&mut got, GuestAddress(0x3000)).unwrap();
        assert_eq!(&got, b"file data");
        // Write from guest RAM; the last byte of RAM is usable.
        mem.write_slice(b"!", GuestAddress(MEM - 1)).unwrap();
        assert_eq!(
            fs(&mem, &server, io_call(Op::Write, h, phys(MEM - 1, 1))),
            1
        );
        assert_eq!(std::fs::read(dir.0.join("f")).unwrap(), b"file data!");
        // Fstat fills a FileStat in place.
        let stat = io_call(Op::Fstat, h, phys(0x4000, size_of::<FileStat>() as u64));
        assert_eq!(fs(&mem, &server, stat), 0);
        let size: i64 = mem
            .read_obj(GuestAddress(0x4000 + offset_of!(FileStat, size) as u64))
            .unwrap();
        assert_eq!(size, 10);
        // MountInfo, and a zero-length buffer anywhere.
        assert_eq!(
            fs(&mem, &server, io_call(Op::MountInfo, 0, phys(0x5000, 16))),
            5
        );
        assert_eq!(
            fs(&mem, &server, io_call(Op::Read, h, phys(u64::MAX, 0))),
            0
        );
        // Rename reads both paths.
        mem.write_slice(b"g", GuestAddress(0x2010)).unwrap();
        let rename = FsCall {
            op: Op::Rename as u32,
            path: phys(0x2000, 1),
            path2: phys(0x2010, 1),
            ..Default::default()
        };
        assert_eq!(fs(&mem, &server, rename), 0);
        assert!(dir.0.join("g").is_file());
        // Another block's fields are not mixed up: close, then EBADF.
        assert_eq!(fs(&mem, &server, io_call(Op::Close, h, phys(0, 0))), 0);
        assert_eq!(
            fs(&mem, &server, io_call(Op::Read, h, phys(0x3000, 1))),
            Errno::EBADF.to_neg()
        );
    }

    #[test]
    fn fs_calls_check_guest_ranges() {
        let dir = HostDir::new("ranges");
        let server = dir.server();
        let mem = memory();
        let efault = Errno::EFAULT.to_neg();
        mem.write_slice(b"f", GuestAddress(MEM - 1)).unwrap();
        assert_eq!(
            fs(&mem, &server, open_call(phys(MEM - 1, 1), 0)),
            3,
            "last byte"
        );
        for (addr, len) in [
            (MEM, 1),
            (MEM - 1, 2),
            (u64::MAX, 1),
            (u64::MAX - 1, 4),
            (1 << 40, 1),
        ] {
            let call = open_call(phys(addr, len), 0);
            assert_eq!(fs(&mem, &server, call), efault, "path {addr:#x}+{len}");
            let stat = FsCall {
                op: Op::Stat as u32,
                path: phys(addr, len),
                buf: phys(0x4000, 256),
                ..Default::default()
            };
            assert_eq!(fs(&mem, &server, stat), efault, "stat path {addr:#x}+{len}");
        }
        let too_long = FsCall {
            op: Op::Mkdir as u32,
            path: phys(0x2000, PATH_MAX + 1),
            ..Default::default()
        };
        assert_eq!(fs(&mem, &server, too_long), Errno::ENAMETOOLONG.to_neg());
        let huge = open_call(phys(0x2000, u64::MAX), 0);
        assert_eq!(fs(&mem, &server, huge), Errno::ENAMETOOLONG.to_neg());

        for (addr, len) in [
            (MEM - 8, 9),
            (MEM, 1),
            (0x3000, MEM),
            (0x3000, u64::MAX),
            (u64::MAX, 2),
            (1 << 40, 4096),
        ] {
            for op in [Op::Read, Op::Write, Op::Pread, Op::Pwrite, Op::Fstat] {
                let call = io_call(op, 3, phys(addr, len));
                assert_eq!(fs(&mem, &server, call), efault, "{op:?} {addr:#x}+{len:#x}");
            }
        }
        assert_eq!(std::fs::read(dir.0.join("f")).unwrap(), b"file data");
    }

    #[test]
    fn fs_blocks_outside_memory_end_the_vm() {
        let dir = HostDir::new("blocks");
        let server = dir.server();
        let mem = memory();
        let size = size_of::<FsCall>() as u64;
        for block in [MEM, MEM - size + 1, MEM - 8, u32::MAX as u64] {
            let action = serve_fs(&mem, &server, block);
            assert!(
                matches!(&action, Action::Abort(m) if m.contains("outside guest memory")),
                "{block:#x}: {action:?}"
            );
        }
        // The last place a block fits.
        mem.write_obj(Op::MountInfo as u32, GuestAddress(MEM - size))
            .unwrap();
        assert_eq!(serve_fs(&mem, &server, MEM - size), Action::Continue);
        let result: i64 = mem.read_obj(GuestAddress(MEM - 8)).unwrap();
        assert_eq!(
            result,
            Errno::ERANGE.to_neg(),
            "MountInfo into an empty buffer"
        );
    }
}
