//! smoltcp's `Device` over a [`Nic`], with the SYN filter that makes a full
//! listen backlog drop connection attempts instead of resetting them.

use alloc::boxed::Box;
use alloc::vec::Vec;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::Nic;

/// The adapter: received frames are copied once into `rx`, because a
/// [`Nic`] lends a frame only for the duration of a callback.
pub(crate) struct NicDevice {
    pub(crate) nic: Box<dyn Nic>,
    rx: Vec<u8>,
    /// (port, listening sockets left this poll) for every TCP listener.
    pub(crate) syn_budget: Vec<(u16, usize)>,
    /// Frames received since the counter was last cleared.
    pub(crate) received: usize,
}

impl NicDevice {
    pub(crate) fn new(nic: Box<dyn Nic>) -> Self {
        Self {
            nic,
            rx: Vec::new(),
            syn_budget: Vec::new(),
            received: 0,
        }
    }

    /// Whether the frame in `rx` is a SYN for a port whose listener has no
    /// free socket left; such SYNs are dropped so the peer retries later.
    fn drop_syn(&mut self) -> bool {
        if self.syn_budget.is_empty() {
            return false;
        }
        let Some(port) = syn_port(&self.rx) else {
            return false;
        };
        match self.syn_budget.iter_mut().find(|(p, _)| *p == port) {
            Some((_, 0)) => true,
            Some((_, left)) => {
                *left -= 1;
                false
            }
            None => false,
        }
    }
}

/// The destination port of an Ethernet/IPv4/TCP frame with SYN set and ACK
/// clear, else None.
fn syn_port(frame: &[u8]) -> Option<u16> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 6 {
        return None;
    }
    let tcp = ip.get(ihl..)?;
    let flags = *tcp.get(13)?;
    if flags & 0x12 != 0x02 {
        return None;
    }
    Some(u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]))
}

pub(crate) struct RxToken<'a>(&'a [u8]);

pub(crate) struct TxToken<'a>(&'a mut dyn Nic);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut f = Some(f);
        let mut result = None;
        let sent = self.0.transmit(len, &mut |buf| {
            if let Some(f) = f.take() {
                result = Some(f(buf));
            }
        });
        match (result, f) {
            (Some(r), _) => {
                if let Err(e) = sent {
                    log::debug!("net: frame lost in transmit: {e}");
                }
                r
            }
            // The ring filled up after `can_transmit`: build the frame into
            // scratch space and drop it; TCP retransmits.
            (None, Some(f)) => {
                log::debug!("net: transmit ring full, frame dropped");
                let mut scratch = alloc::vec![0; len];
                f(&mut scratch)
            }
            (None, None) => unreachable!("the closure either ran and returned or did not run"),
        }
    }
}

impl phy::Device for NicDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        loop {
            let rx = &mut self.rx;
            let got = self.nic.receive(&mut |frame| {
                rx.clear();
                rx.extend_from_slice(frame);
            });
            if !got {
                return None;
            }
            self.received += 1;
            if !self.drop_syn() {
                break;
            }
        }
        Some((RxToken(&self.rx), TxToken(&mut *self.nic)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        if self.nic.can_transmit() {
            Some(TxToken(&mut *self.nic))
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.nic.mtu() + 14;
        caps.max_burst_size = None;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::syn_port;

    fn frame(flags: u8) -> std::vec::Vec<u8> {
        let mut f = std::vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[34 + 2..34 + 4].copy_from_slice(&8080u16.to_be_bytes());
        f[34 + 13] = flags;
        f
    }

    #[test]
    fn finds_syns_only() {
        assert_eq!(syn_port(&frame(0x02)), Some(8080));
        assert_eq!(syn_port(&frame(0x12)), None);
        assert_eq!(syn_port(&frame(0x10)), None);
        assert_eq!(syn_port(&frame(0x02)[..40]), None);
        let mut udp = frame(0x02);
        udp[14 + 9] = 17;
        assert_eq!(syn_port(&udp), None);
    }
}
