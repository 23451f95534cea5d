//! hermit-tap: a Linux tap interface opened through `/dev/net/tun` with
//! `IFF_TAP | IFF_NO_PI`, non-blocking, so each [`Tap::send`] and
//! [`Tap::recv`] is one Ethernet frame. uhyve plugs its virtio-net card
//! into one; `isles mmnif` bridges the isles' mmnif rings to one.
//!
//! Not here: addresses, MTU or link state (use `ip`), multi-queue taps,
//! offloads (no `IFF_VNET_HDR`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;

/// Why a tap device could not be opened. The message is one line.
#[derive(Debug, thiserror::Error)]
#[error("cannot open tap device {name}: {}", os_message(source))]
pub struct TapError {
    /// The interface name.
    pub name: String,
    /// The host error.
    pub source: io::Error,
}

/// `e`'s message without the " (os error N)" suffix, for one clean line.
fn os_message(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// An open tap interface. A tap this process created disappears when the
/// last file of it closes (it is not made persistent).
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to the tap interface `name`, creating it (non-persistent)
    /// if it does not exist, which needs `CAP_NET_ADMIN`.
    pub fn open(name: &str) -> Result<Self, TapError> {
        let err = |source| TapError {
            name: name.to_owned(),
            source,
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid interface name",
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(err)?;
        // SAFETY: an all-zero `ifreq` is valid (empty name, zero flags).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `req` is;
        // the fd is the open tun control device.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        Ok(Self {
            file,
            name: name.to_owned(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one Ethernet frame. A frame the interface cannot take now
    /// (queue full, link down, no buffers, bad size) is dropped, as on a
    /// real wire: `Err` only for other errors.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        match (&self.file).write(frame) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EIO | libc::ENOBUFS | libc::EINVAL | libc::EMSGSIZE)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Receives one frame into `buf` if one is waiting (never blocks);
    /// a frame longer than `buf` is cut.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.file).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_one_line_errors() {
        for bad in ["", "a/b", "0123456789abcdefXYZ"] {
            let e = Tap::open(bad).unwrap_err().to_string();
            assert!(e.starts_with("cannot open tap device"), "{e}");
            assert!(!e.contains('\n'));
        }
    }
}
