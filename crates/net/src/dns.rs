//! Name resolution through smoltcp's DNS socket (feature `dns`).

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use smoltcp::socket::dns;
use smoltcp::wire::{DnsQueryType, IpAddress};

use crate::Errno;
use crate::stack::{Stack, Try};

/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Stack {
    /// The IPv4 addresses of `name` (a dotted address is returned as is).
    /// ENOENT if the name does not resolve or no DNS server is known,
    /// ETIMEDOUT if the servers do not answer.
    pub fn resolve(&self, name: &str) -> Result<Vec<Ipv4Addr>, Errno> {
        if let Ok(addr) = name.parse::<Ipv4Addr>() {
            return Ok(vec![addr]);
        }
        self.wait_configured(Some(LOOKUP_TIMEOUT))?;
        let (query, _) = self.shared.with(|inner, _| {
            let result = (|| {
                if inner.dns_servers.is_empty() {
                    return Err(Errno::ENOENT);
                }
                let handle = match inner.dns {
                    Some(h) => h,
                    None => {
                        inner.check_room(1)?;
                        let servers: Vec<IpAddress> = inner
                            .dns_servers
                            .iter()
                            .map(|a| IpAddress::Ipv4(*a))
                            .collect();
                        let h = inner.add_socket(dns::Socket::new(
                            &servers,
                            (0..4).map(|_| None).collect::<Vec<_>>(),
                        ));
                        inner.dns = Some(h);
                        h
                    }
                };
                let cx = inner.iface.context();
                let q = inner
                    .sockets
                    .get_mut::<dns::Socket>(handle)
                    .start_query(cx, name, DnsQueryType::A)
                    .map_err(|e| match e {
                        dns::StartQueryError::NoFreeSlot => Errno::EAGAIN,
                        dns::StartQueryError::InvalidName => Errno::EINVAL,
                        dns::StartQueryError::NameTooLong => Errno::ENAMETOOLONG,
                    })?;
                Ok((handle, q))
            })();
            let acted = result.is_ok();
            (result, acted)
        });
        let (handle, query) = query?;
        let deadline = Some(self.shared.deadline_after(LOOKUP_TIMEOUT));
        let mut query = Some(query);
        let result = self
            .shared
            .block(deadline, false, Errno::ETIMEDOUT, |inner, _| {
                let Some(q) = query.take() else {
                    return Try::Done(Err(Errno::EIO));
                };
                let s = inner.sockets.get_mut::<dns::Socket>(handle);
                match s.get_query_result(q) {
                    Ok(addrs) => Try::Done(Ok(addrs
                        .iter()
                        .filter_map(|a| {
                            #[allow(
                                unreachable_patterns,
                                reason = "another crate may enable smoltcp's IPv6 too"
                            )]
                            match a {
                                IpAddress::Ipv4(v4) => Some(*v4),
                                _ => None,
                            }
                        })
                        .collect())),
                    Err(dns::GetQueryResultError::Pending) => {
                        query = Some(q);
                        Try::Pending
                    }
                    Err(dns::GetQueryResultError::Failed) => Try::Done(Err(Errno::ENOENT)),
                }
            });
        if let Some(q) = query {
            // Timed out: free the query slot.
            self.shared.with_entry(|inner| {
                inner.sockets.get_mut::<dns::Socket>(handle).cancel_query(q);
            });
        }
        result
    }
}
