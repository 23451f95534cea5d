//! [`MmnifNic`]: the mmnif ring as an Ethernet card ([`Nic`]), so the
//! ordinary network stack runs over it unchanged and the Linux side can be
//! a plain tap device.
//!
//! Every node has a fixed, locally administered MAC address derived from
//! its node number ([`node_mac`]): a unicast frame goes to the node its
//! destination MAC names, a broadcast or multicast frame (ARP requests) to
//! every other node, a frame for an unknown MAC nowhere (like a wire with
//! nobody at that address). A full ring drops the frame instead of
//! reporting [`TxError::Busy`]: the peer may be dead, and a sender that
//! waits for a dead isle's ring would hang; TCP retransmits what was
//! dropped. Drops are counted in [`MmnifRing::stats`].

use alloc::vec;
use alloc::vec::Vec;

use hermit_ircce::{Notify, Region};

use super::{MmnifError, MmnifRing};
use crate::nic::{MAX_FRAME, Nic, TxError};

/// First five bytes of every mmnif MAC: locally administered, unicast,
/// "HRMN".
const MAC_PREFIX: [u8; 5] = [0x02, b'H', b'R', b'M', b'N'];
/// Bytes of an Ethernet header (destination, source, type).
const ETH_HEADER: usize = 14;

/// The MAC address of mmnif node `node` (an isle number, or the host's
/// node).
pub const fn node_mac(node: u32) -> [u8; 6] {
    [
        MAC_PREFIX[0],
        MAC_PREFIX[1],
        MAC_PREFIX[2],
        MAC_PREFIX[3],
        MAC_PREFIX[4],
        node as u8,
    ]
}

/// The node a MAC address belongs to, if it is an mmnif node's.
pub fn mac_node(mac: &[u8; 6]) -> Option<u32> {
    (mac[..5] == MAC_PREFIX).then_some(u32::from(mac[5]))
}

/// An Ethernet card over an [`MmnifRing`].
#[derive(Debug)]
pub struct MmnifNic<R: Region, N: Notify> {
    ring: MmnifRing<R, N>,
    nodes: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Frames dropped because a ring was full or the MAC unknown.
    dropped: u64,
}

impl<R: Region, N: Notify> MmnifNic<R, N> {
    /// Wraps `ring`, whose configuration has `nodes` nodes.
    pub fn new(ring: MmnifRing<R, N>, nodes: usize) -> Self {
        Self {
            ring,
            nodes,
            rx: vec![0; MAX_FRAME],
            tx: vec![0; MAX_FRAME],
            dropped: 0,
        }
    }

    /// The ring, for waiting ([`MmnifRing::announce_sleep`]) and statistics.
    pub fn ring(&self) -> &MmnifRing<R, N> {
        &self.ring
    }

    /// Frames dropped on transmit (full ring or unknown destination).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn send_to(&mut self, node: usize, len: usize) {
        match self.ring.transmit(node, &self.tx[..len]) {
            Ok(()) => {}
            Err(MmnifError::Full | MmnifError::NoSuchIsle { .. } | MmnifError::SelfSend) => {
                self.dropped += 1;
            }
            Err(e) => {
                log::debug!("mmnif: frame to node {node} not sent: {e}");
                self.dropped += 1;
            }
        }
    }
}

impl<R: Region, N: Notify> Nic for MmnifNic<R, N> {
    fn mac(&self) -> [u8; 6] {
        node_mac(self.ring.isle() as u32)
    }

    /// Besides taking a frame, keeps the ring's `sleeping` flag right for a
    /// consumer that sleeps until its doorbell interrupt: down while frames
    /// come in (producers need not ring), up once the rings are found empty
    /// (every later frame rings), checked once more after raising it so a
    /// frame that slipped in before the flag is not left unannounced.
    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        for _ in 0..2 {
            if let Some(len) = self.ring.receive(&mut self.rx) {
                self.ring.end_sleep();
                f(&self.rx[..len]);
                return true;
            }
            if self.ring.announce_sleep() {
                return false;
            }
        }
        false
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
        if !(ETH_HEADER..=MAX_FRAME).contains(&len) {
            return Err(TxError::BadLength(len));
        }
        f(&mut self.tx[..len]);
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&self.tx[..6]);
        if dst[0] & 1 != 0 {
            let me = self.ring.isle();
            for node in (0..self.nodes).filter(|&n| n != me) {
                self.send_to(node, len);
            }
        } else {
            match mac_node(&dst).map(|n| n as usize) {
                Some(node) if node < self.nodes => self.send_to(node, len),
                _ => self.dropped += 1,
            }
        }
        Ok(())
    }

    fn ack_interrupt(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmnif::Config;
    use hermit_ircce::{AtomicRegion, PollNotify};
    use std::sync::Arc;

    fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::from(dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    }

    fn nics(nodes: u32) -> Vec<MmnifNic<Arc<AtomicRegion>, PollNotify>> {
        let config = Config::new(nodes);
        let region = Arc::new(AtomicRegion::new(config.region_size()));
        (0..nodes as usize)
            .map(|me| {
                let ring = MmnifRing::new(Arc::clone(&region), PollNotify, me, config).unwrap();
                MmnifNic::new(ring, nodes as usize)
            })
            .collect()
    }

    fn send(nic: &mut MmnifNic<Arc<AtomicRegion>, PollNotify>, f: &[u8]) {
        nic.transmit(f.len(), &mut |buf| buf.copy_from_slice(f))
            .unwrap();
    }

    fn take(nic: &mut MmnifNic<Arc<AtomicRegion>, PollNotify>) -> Option<Vec<u8>> {
        let mut got = None;
        nic.receive(&mut |f| got = Some(f.to_vec()));
        got
    }

    #[test]
    fn macs_round_trip() {
        for node in [0, 1, 7, 8, 255] {
            assert_eq!(mac_node(&node_mac(node)), Some(node));
        }
        assert_eq!(mac_node(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]), None);
        assert_eq!(node_mac(3)[0] & 3, 2, "locally administered unicast");
    }

    #[test]
    fn unicast_reaches_only_its_node() {
        let mut n = nics(3);
        let f = frame(node_mac(2), node_mac(0), b"to two");
        send(&mut n[0], &f);
        assert_eq!(take(&mut n[2]), Some(f));
        assert_eq!(take(&mut n[1]), None);
        assert_eq!(take(&mut n[2]), None);
    }

    #[test]
    fn broadcast_reaches_everyone_else() {
        let mut n = nics(4);
        let f = frame([0xff; 6], node_mac(1), b"who has");
        send(&mut n[1], &f);
        for i in [0, 2, 3] {
            assert_eq!(take(&mut n[i]).as_deref(), Some(&f[..]), "node {i}");
        }
        assert_eq!(take(&mut n[1]), None, "no echo to the sender");
    }

    #[test]
    fn unknown_destinations_and_full_rings_drop() {
        let mut n = nics(2);
        send(
            &mut n[0],
            &frame([0x52, 0x54, 0, 1, 2, 3], node_mac(0), b"x"),
        );
        send(&mut n[0], &frame(node_mac(9), node_mac(0), b"x"));
        assert_eq!(n[0].dropped(), 2);
        // Nobody drains node 1: the ring fills, then frames drop, never block.
        let big = frame(node_mac(1), node_mac(0), &[7u8; 1400]);
        for _ in 0..200 {
            send(&mut n[0], &big);
        }
        assert!(n[0].dropped() > 2);
        assert_eq!(take(&mut n[1]), Some(big));
    }

    #[test]
    fn bad_lengths_are_refused() {
        let mut n = nics(2);
        assert_eq!(n[0].transmit(10, &mut |_| {}), Err(TxError::BadLength(10)));
        assert_eq!(
            n[0].transmit(MAX_FRAME + 1, &mut |_| {}),
            Err(TxError::BadLength(MAX_FRAME + 1))
        );
    }

    #[test]
    fn receive_raises_the_sleep_flag_only_when_empty() {
        let config = Config::new(2);
        let region = Arc::new(AtomicRegion::new(config.region_size()));
        let bells = Arc::new(hermit_ircce::notify::CondvarNotify::new(2));
        let mut n: Vec<_> = (0..2)
            .map(|me| {
                let ring =
                    MmnifRing::new(Arc::clone(&region), Arc::clone(&bells), me, config).unwrap();
                MmnifNic::new(ring, 2)
            })
            .collect();
        let f = frame(node_mac(1), node_mac(0), b"x");
        // Node 1 never looked: no flag, no doorbell.
        n[0].transmit(f.len(), &mut |b| b.copy_from_slice(&f))
            .unwrap();
        assert_eq!(bells.rings(), 0);
        // It drains and finds the ring empty: flag up, the next frame rings.
        assert!(n[1].receive(&mut |_| {}));
        assert!(!n[1].receive(&mut |_| {}));
        n[0].transmit(f.len(), &mut |b| b.copy_from_slice(&f))
            .unwrap();
        assert_eq!(bells.rings(), 1);
        // Taking that frame lowers the flag again.
        assert!(n[1].receive(&mut |_| {}));
        n[0].transmit(f.len(), &mut |b| b.copy_from_slice(&f))
            .unwrap();
        assert_eq!(bells.rings(), 1);
    }

    #[test]
    fn announce_sleep_reports_pending_frames() {
        let mut n = nics(2);
        assert!(n[1].ring().announce_sleep());
        send(&mut n[0], &frame(node_mac(1), node_mac(0), b"wake"));
        assert!(!n[1].ring().announce_sleep(), "a frame is pending");
        n[1].ring().end_sleep();
        assert!(take(&mut n[1]).is_some());
    }
}
