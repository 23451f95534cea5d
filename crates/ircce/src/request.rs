//! Non-blocking sends and receives ([`Request`]) and lists of them
//! ([`WaitList`]).
//!
//! Requests on one channel (one direction, one peer) are served in creation
//! order by tickets: only the request whose ticket the channel is serving may
//! move chunks. Progress happens only inside `test`/`wait`/`WaitList` calls
//! of this UE, so a request can only finish while it, and every earlier
//! request on its channel, is being tested or waited for.

use crate::{Dir, Error, Ircce, Notify, Region};
use alloc::vec::Vec;

/// Longest message a chunk header may announce; anything larger is taken as
/// corruption (it could never be received).
const MAX_MESSAGE: u64 = 1 << 48;

#[derive(Debug)]
enum Buf<'a> {
    Send(&'a [u8]),
    Recv(&'a mut [u8]),
}

/// An outstanding [`Ircce::isend`] or [`Ircce::irecv`].
///
/// Dropping a request before it finished breaks its channel (later requests
/// on it fail with [`Error::ChannelBroken`]): the peer would otherwise see a
/// half message. Always `wait` or `test` to completion.
#[derive(Debug)]
#[must_use = "a dropped unfinished request breaks its channel"]
pub struct Request<'a, R: Region, N: Notify> {
    ircce: &'a Ircce<R, N>,
    peer: usize,
    buf: Buf<'a>,
    ticket: u32,
    /// Chunks moved so far.
    next: u64,
    /// Message length (known up front for sends, from the first chunk for
    /// receives).
    msg_len: Option<u64>,
    done: Option<Result<(), Error>>,
}

impl<'a, R: Region, N: Notify> Request<'a, R, N> {
    fn new(ircce: &'a Ircce<R, N>, buf: Buf<'a>, peer: usize) -> Result<Self, Error> {
        let dir = match buf {
            Buf::Send(_) => Dir::Send,
            Buf::Recv(_) => Dir::Recv,
        };
        let chan = ircce.channel(dir, peer);
        if chan.broken.get() {
            return Err(Error::ChannelBroken(peer));
        }
        let ticket = chan.next_ticket.get();
        chan.next_ticket.set(ticket.wrapping_add(1));
        let msg_len = match &buf {
            Buf::Send(d) => Some(d.len() as u64),
            Buf::Recv(_) => None,
        };
        Ok(Self {
            ircce,
            peer,
            buf,
            ticket,
            next: 0,
            msg_len,
            done: None,
        })
    }

    pub(crate) fn new_send(
        ircce: &'a Ircce<R, N>,
        data: &'a [u8],
        dst: usize,
    ) -> Result<Self, Error> {
        Self::new(ircce, Buf::Send(data), dst)
    }

    pub(crate) fn new_recv(
        ircce: &'a Ircce<R, N>,
        buf: &'a mut [u8],
        src: usize,
    ) -> Result<Self, Error> {
        Self::new(ircce, Buf::Recv(buf), src)
    }

    fn dir(&self) -> Dir {
        match self.buf {
            Buf::Send(_) => Dir::Send,
            Buf::Recv(_) => Dir::Recv,
        }
    }

    /// The peer UE.
    pub fn peer(&self) -> usize {
        self.peer
    }

    /// Whether this request may move chunks now (or already finished).
    fn servable(&self) -> bool {
        self.done.is_some()
            || self.ircce.channel(self.dir(), self.peer).serving.get() == self.ticket
    }

    fn finish(&mut self, result: Result<(), Error>) {
        let chan = self.ircce.channel(self.dir(), self.peer);
        chan.serving.set(chan.serving.get().wrapping_add(1));
        self.done = Some(result);
    }

    fn fail(&mut self, error: Error) {
        self.ircce.channel(self.dir(), self.peer).broken.set(true);
        self.done = Some(Err(error));
    }

    /// Moves as many chunks as possible without waiting; returns whether the
    /// request is finished.
    fn step(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        let ircce = self.ircce;
        let chan = ircce.channel(self.dir(), self.peer);
        if chan.broken.get() {
            self.done = Some(Err(Error::ChannelBroken(self.peer)));
            return true;
        }
        if chan.serving.get() != self.ticket {
            return false;
        }
        let payload = ircce.layout.payload();
        match &mut self.buf {
            Buf::Send(data) => {
                let total = data.len().div_ceil(payload).max(1) as u64;
                while self.next < total {
                    // `next < total` keeps the start inside `data`.
                    let start = self.next as usize * payload;
                    let end = data.len().min(start + payload);
                    if !ircce.try_write_chunk(self.peer, data.len() as u64, &data[start..end]) {
                        return false;
                    }
                    self.next += 1;
                }
                self.finish(Ok(()));
                true
            }
            Buf::Recv(buf) => loop {
                let mut corrupt = false;
                let next = self.next;
                let known = self.msg_len;
                let mut seen = 0;
                let got = ircce.try_read_chunk(self.peer, |msg_len, region, at| {
                    seen = msg_len;
                    if known.is_some_and(|k| k != msg_len) || msg_len > MAX_MESSAGE {
                        corrupt = true;
                        return;
                    }
                    let start = next.saturating_mul(payload as u64);
                    let n = msg_len.saturating_sub(start).min(payload as u64);
                    // Copy the part of [start, start + n) that fits `buf`.
                    let end = start.saturating_add(n).min(buf.len() as u64);
                    if start < end {
                        // Both bounded by buf.len() here.
                        region.read(at, &mut buf[start as usize..end as usize]);
                    }
                });
                if !got {
                    return false;
                }
                if corrupt {
                    self.fail(Error::Corrupt(self.peer));
                    return true;
                }
                self.msg_len = Some(seen);
                self.next += 1;
                let total = seen.div_ceil(payload as u64).max(1);
                if self.next >= total {
                    let expected = buf.len();
                    let result = if seen == expected as u64 {
                        Ok(())
                    } else {
                        Err(Error::SizeMismatch {
                            peer: self.peer,
                            expected,
                            sent: seen,
                        })
                    };
                    self.finish(result);
                    return true;
                }
            },
        }
    }

    /// Makes progress without blocking; `Ok(true)` once finished.
    pub fn test(&mut self) -> Result<bool, Error> {
        if self.step() {
            self.done.unwrap_or(Ok(())).map(|()| true)
        } else {
            Ok(false)
        }
    }

    /// Blocks until the request finished.
    ///
    /// Fails with [`Error::OutOfOrder`] (leaving the request pending) when an
    /// earlier request on the same channel is still unfinished: only this
    /// request is progressed here, so it would wait forever.
    pub fn wait(&mut self) -> Result<(), Error> {
        if !self.servable() && !self.ircce.channel(self.dir(), self.peer).broken.get() {
            return Err(Error::OutOfOrder(self.peer));
        }
        let ircce = self.ircce;
        ircce.wait_for(|| self.step());
        self.done.unwrap_or(Ok(()))
    }

    /// Whether the request finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }
}

impl<R: Region, N: Notify> Drop for Request<'_, R, N> {
    fn drop(&mut self) {
        if self.done.is_none() {
            self.ircce.channel(self.dir(), self.peer).broken.set(true);
        }
    }
}

/// A set of requests to wait for together, in any order.
#[derive(Debug)]
pub struct WaitList<'a, R: Region, N: Notify> {
    requests: Vec<Option<Request<'a, R, N>>>,
}

impl<R: Region, N: Notify> Default for WaitList<'_, R, N> {
    fn default() -> Self {
        Self {
            requests: Vec::new(),
        }
    }
}

impl<'a, R: Region, N: Notify> WaitList<'a, R, N> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request; returns its id in this list.
    pub fn add(&mut self, request: Request<'a, R, N>) -> usize {
        self.requests.push(Some(request));
        self.requests.len() - 1
    }

    /// Requests still in the list.
    pub fn len(&self) -> usize {
        self.requests.iter().flatten().count()
    }

    /// Whether no request is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes progress on all requests without blocking; removes and returns
    /// the first finished one.
    pub fn test_any(&mut self) -> Option<(usize, Result<(), Error>)> {
        for (id, slot) in self.requests.iter_mut().enumerate() {
            if let Some(request) = slot
                && request.step()
            {
                let result = request.done.unwrap_or(Ok(()));
                *slot = None;
                return Some((id, result));
            }
        }
        None
    }

    /// Waits until any request finished, removes it and returns its id and
    /// outcome; `None` when the list is empty.
    ///
    /// When no request in the list can make progress because each waits
    /// behind an earlier request outside the list, returns the first such
    /// request's id with [`Error::OutOfOrder`] and leaves it in the list.
    pub fn wait_any(&mut self) -> Option<(usize, Result<(), Error>)> {
        let ircce = self.requests.iter().flatten().next()?.ircce;
        if !self.requests.iter().flatten().any(|r| r.servable()) {
            let (id, r) = self
                .requests
                .iter()
                .enumerate()
                .find_map(|(id, r)| r.as_ref().map(|r| (id, r)))?;
            return Some((id, Err(Error::OutOfOrder(r.peer))));
        }
        let mut found = None;
        ircce.wait_for(|| {
            found = self.test_any();
            found.is_some()
        });
        found
    }

    /// Waits for all requests; returns the first error after all finished
    /// (or an [`Error::OutOfOrder`] as soon as nothing can progress).
    pub fn wait_all(&mut self) -> Result<(), Error> {
        let mut first_error = None;
        while let Some((_, result)) = self.wait_any() {
            if let Err(e) = result {
                if let Error::OutOfOrder(_) = e {
                    return Err(e);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
