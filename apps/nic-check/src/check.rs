//! Opens the network card, prints its MAC, asks the gateway 10.0.5.1 for
//! its MAC by ARP, then pings 10.0.5.3 (QEMU user networking's DNS
//! address) and waits for the echo reply, then pings again with the largest
//! packet the card's MTU allows (9000 on uhyve, 1500 on QEMU). Waiting
//! blocks on the card's interrupt (a futex the interrupt hook bumps), with a
//! time limit.
//!
//! Output lines the boot tests look for: `mac `, `mtu `, `gateway `,
//! `echo reply`, `full-size echo reply`.
//! Exit status 0 when everything answered, 1 otherwise.

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use hermit::nic::Device;
use hermit::sync::futex;

const GUEST_IP: [u8; 4] = [10, 0, 5, 2];
const GATEWAY_IP: [u8; 4] = [10, 0, 5, 1];
const DNS_IP: [u8; 4] = [10, 0, 5, 3];
const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;
/// How long to wait for each answer.
const WAIT: Duration = Duration::from_secs(5);

/// Bumped by every card interrupt.
static IRQS: AtomicU32 = AtomicU32::new(0);

fn on_interrupt() {
    IRQS.fetch_add(1, Ordering::Release);
    futex::wake(&IRQS, u32::MAX);
}

struct Mac([u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

fn ethernet(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], kind: u16) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&kind.to_be_bytes());
}

/// A 60-byte ARP request for `target` (padded to Ethernet's minimum).
fn arp_request(frame: &mut [u8], mac: [u8; 6], target: [u8; 4]) {
    frame.fill(0);
    ethernet(frame, BROADCAST, mac, ETH_ARP);
    let arp = &mut frame[14..42];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&ETH_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&GUEST_IP);
    arp[24..28].copy_from_slice(&target);
}

/// The sender MAC of an ARP reply from `ip`.
fn arp_reply_from(frame: &[u8], ip: [u8; 4]) -> Option<[u8; 6]> {
    if frame.len() < 42 || frame[12..14] != ETH_ARP.to_be_bytes() {
        return None;
    }
    let arp = &frame[14..42];
    (arp[6..8] == 2u16.to_be_bytes() && arp[14..18] == ip).then(|| {
        let mut m = [0; 6];
        m.copy_from_slice(&arp[8..14]);
        m
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Bytes of ICMP echo payload.
const PING_DATA: usize = 32;
/// Length of the echo request frame.
const PING_LEN: usize = 14 + 20 + 8 + PING_DATA;

fn echo_request(frame: &mut [u8], mac: [u8; 6], dst_mac: [u8; 6], dst: [u8; 4], seq: u16) {
    frame.fill(0);
    ethernet(frame, dst_mac, mac, ETH_IPV4);
    let ip_len = (frame.len() - 14) as u16;
    {
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&seq.to_be_bytes());
        ip[8] = 64; // TTL
        ip[9] = 1; // ICMP
        ip[12..16].copy_from_slice(&GUEST_IP);
        ip[16..20].copy_from_slice(&dst);
        let sum = checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let icmp = &mut frame[34..];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&0x4845u16.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in icmp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
}

fn is_echo_reply(frame: &[u8], from: [u8; 4], seq: u16, len: usize) -> bool {
    frame.len() >= len
        && frame[12..14] == ETH_IPV4.to_be_bytes()
        && frame[14 + 9] == 1
        && frame[26..30] == from
        && frame[34] == 0
        && frame[40..42] == seq.to_be_bytes()
}

/// Receives until `want` accepts a frame or the time limit passes,
/// sleeping on the interrupt counter while nothing is waiting.
fn wait_for<T>(dev: &mut Device, mut want: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    let deadline = hermit::time::monotonic_ns() + WAIT.as_nanos() as u64;
    let mut frames = 0u32;
    loop {
        let seen = IRQS.load(Ordering::Acquire);
        let mut found = None;
        while found.is_none()
            && dev.receive(&mut |frame| {
                frames += 1;
                found = want(frame);
            })
        {}
        if found.is_some() {
            return found;
        }
        if hermit::time::monotonic_ns() >= deadline {
            hermit::eprintln!("nic-check: timed out ({frames} other frames seen)");
            return None;
        }
        futex::wait(&IRQS, seen, Some(deadline));
    }
}

fn arp(dev: &mut Device, mac: [u8; 6], ip: [u8; 4]) -> Option<[u8; 6]> {
    if let Err(e) = dev.transmit(60, &mut |f| arp_request(f, mac, ip)) {
        hermit::eprintln!("nic-check: sending the ARP request failed: {e:?}");
        return None;
    }
    wait_for(dev, |frame| arp_reply_from(frame, ip))
}

pub fn main() -> i32 {
    hermit::nic::set_irq_hook(on_interrupt);
    let mut dev = match hermit::nic::open() {
        Ok(dev) => dev,
        Err(e) => {
            hermit::eprintln!("nic-check: {e}");
            return 1;
        }
    };
    let mac = dev.mac();
    hermit::println!("model {}", dev.model());
    hermit::println!("mac {}", Mac(mac));
    hermit::println!("mtu {}", dev.mtu());
    let Some(gateway) = arp(&mut dev, mac, GATEWAY_IP) else {
        hermit::eprintln!("nic-check: no ARP reply from 10.0.5.1");
        return 1;
    };
    hermit::println!("gateway 10.0.5.1 is {}", Mac(gateway));
    let dns_mac = arp(&mut dev, mac, DNS_IP).unwrap_or(gateway);
    let full = dev.mtu() + 14;
    for (seq, len, what) in [
        (1, PING_LEN, "echo reply"),
        (2, full, "full-size echo reply"),
    ] {
        if let Err(e) = dev.transmit(len, &mut |f| echo_request(f, mac, dns_mac, DNS_IP, seq)) {
            hermit::eprintln!("nic-check: sending a {len}-byte echo request failed: {e:?}");
            return 1;
        }
        if wait_for(&mut dev, |f| {
            is_echo_reply(f, DNS_IP, seq, len).then_some(())
        })
        .is_none()
        {
            hermit::eprintln!("nic-check: no {what} from 10.0.5.3 ({len}-byte frames)");
            return 1;
        }
        hermit::println!("{what} from 10.0.5.3");
    }
    hermit::println!("interrupts {}", hermit::nic::interrupt_count());
    0
}
