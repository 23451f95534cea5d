//! The NIC under a real vCPU: a tiny guest reads the NIC's PCI id through
//! ports 0xCF8/0xCFC and a register of BAR0 through MMIO exits; without a
//! NIC the same reads float high. Also prints the cost of one MMIO exit.

mod common;

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use common::{Guest, Reg, config, skip_without_kvm};

const EXIT_OK: u64 = 0x2000;
const EXIT_ID: u64 = 0x2010;
const EXIT_MMIO: u64 = 0x2020;
const FAIL_ID: u64 = 0x1800;
const FAIL_MMIO: u64 = 0x1900;

/// A backend that never has a frame.
struct Null(vmm_sys_util::eventfd::EventFd);

impl uhyve::Backend for Null {
    fn send(&mut self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    fn ready_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

fn null_net() -> uhyve::NetConfig {
    // Never written, so never readable.
    let fd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
    uhyve::NetConfig::new(uhyve::NetBackend::Custom(Box::new(Null(fd))))
}

/// Reads 00:01.0's id and BAR0's `num_queues` (expecting `id` and `queues`),
/// then `reads` more MMIO reads (port reads of 0xCFC if `port`), then
/// exits 0; 1 or 2 on a mismatch.
fn guest(id: u32, queues: u16, reads: u32) -> Guest {
    guest_loop(id, queues, reads, MMIO_READ)
}

/// `movzx eax, word [rsi + 0x12]`: BAR0's num_queues.
const MMIO_READ: &[u8] = &[0x0f, 0xb7, 0x46, 0x12];
/// `in eax, dx` with dx = 0xCFC.
const PORT_READ: &[u8] = &[0xed];
/// `mov word [rsi + 0x3004], 1`: the TX notify (an ioeventfd).
const NOTIFY_TX: &[u8] = &[0x66, 0xc7, 0x86, 0x04, 0x30, 0, 0, 1, 0];
/// `mov word [rsi + 0x3008], 2`: a notify slot without a queue (an exit).
const NOTIFY_NONE: &[u8] = &[0x66, 0xc7, 0x86, 0x08, 0x30, 0, 0, 2, 0];

/// [`guest`] with `body` as the loop's access.
fn guest_loop(id: u32, queues: u16, reads: u32, body: &[u8]) -> Guest {
    let mut g = Guest::new();
    g.mov_imm(Reg::Rax, 0x8000_0800).out(0xcf8);
    g.raw(&[0x66, 0xba, 0xfc, 0x0c, 0xed]); // mov dx, 0xcfc; in eax, dx
    g.raw(&[0x3d]).raw(&id.to_le_bytes()); // cmp eax, id
    g.jne(FAIL_ID);
    g.mov_imm(Reg::Rsi, uhyve::layout::NIC_BAR);
    g.raw(&[0x0f, 0xb7, 0x46, 0x12]); // movzx eax, word [rsi + 0x12]
    g.raw(&[0x3d]).raw(&u32::from(queues).to_le_bytes());
    g.jne(FAIL_MMIO);
    g.mov_imm(Reg::Rcx, u64::from(reads));
    g.cmp_imm(Reg::Rcx, 0);
    let done = 0x1700;
    g.je(done);
    let top = g.here();
    g.raw(body);
    g.raw(&[0x48, 0xff, 0xc9]); // dec rcx
    g.jne(top);
    g.pad_to(done).exit(EXIT_OK, 0);
    g.pad_to(FAIL_ID).exit(EXIT_ID, 1);
    g.pad_to(FAIL_MMIO).exit(EXIT_MMIO, 2);
    g
}

#[test]
fn guest_sees_the_nic_on_pci_and_mmio() {
    if skip_without_kvm("guest_sees_the_nic_on_pci_and_mmio") {
        return;
    }
    let image = guest(0x1041_1af4, 2, 0).write("net-pci");
    let outcome = uhyve::run_with_net(&config(image), Some(null_net())).unwrap();
    assert_eq!(outcome.abnormal, None);
    assert_eq!(outcome.status, 0, "1: wrong PCI id, 2: wrong BAR0 register");
}

#[test]
fn without_a_nic_everything_floats_high() {
    if skip_without_kvm("without_a_nic_everything_floats_high") {
        return;
    }
    let image = guest(0xffff_ffff, 0xffff, 0).write("net-none");
    let outcome = uhyve::run(&config(image)).unwrap();
    assert_eq!(outcome.abnormal, None);
    assert_eq!(outcome.status, 0, "1: PCI answered, 2: MMIO answered");
}

#[test]
fn a_missing_tap_is_one_clear_error() {
    if skip_without_kvm("a_missing_tap_is_one_clear_error") {
        return;
    }
    let image = guest(0, 0, 0).write("net-badtap");
    let net = uhyve::NetConfig::new(uhyve::NetBackend::Tap("bad/name".into()));
    let e = uhyve::run_with_net(&config(image), Some(net))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot open tap device bad/name: "), "{e}");
    assert!(!e.contains('\n') && !e.contains("os error"), "{e}");
}

/// Prints the cost of one MMIO exit round trip (guest read of a BAR0
/// register, served by uhyve): the run time with N reads minus the run
/// time with none, over N. A figure, not a check.
#[test]
fn mmio_exit_round_trip_cost() {
    if skip_without_kvm("mmio_exit_round_trip_cost") {
        return;
    }
    const N: u32 = 20_000;
    let time = |reads: u32, body: &[u8], name: &str| {
        let image = guest_loop(0x1041_1af4, 2, reads, body).write(name);
        let cfg = config(image);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let outcome = uhyve::run_with_net(&cfg, Some(null_net())).unwrap();
            assert_eq!(outcome.status, 0);
            best = best.min(start.elapsed().as_secs_f64());
        }
        best
    };
    let base = time(0, MMIO_READ, "net-mmio0");
    let per = |t: f64| (t - base) / f64::from(N) * 1e6;
    let mmio = per(time(N, MMIO_READ, "net-mmio"));
    let port = per(time(N, PORT_READ, "net-pio"));
    let ioeventfd = per(time(N, NOTIFY_TX, "net-ioevent"));
    let notify_exit = per(time(N, NOTIFY_NONE, "net-notify"));
    println!(
        "uhyve virtio-net, us per guest access ({N} in a loop, VM without: {:.1} ms): \
         MMIO read exit {mmio:.2}, port read exit {port:.2}, \
         notify write via ioeventfd {ioeventfd:.2}, notify write exiting to uhyve {notify_exit:.2}",
        base * 1e3
    );
}
