//! Barrier, broadcast and reductions, built on the flags and channels.

use crate::{Error, Ircce, Notify, Region};
use alloc::vec;
use alloc::vec::Vec;

/// Rounds of the dissemination barrier that fit a control line.
const BARRIER_ROUNDS: usize = 16;

/// A reduction operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum (wrapping for integers).
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
}

/// Element types the reductions handle: `f64` and `i64`.
pub trait Element: Copy + Default + sealed::Sealed {
    /// Bytes on the wire.
    const SIZE: usize;
    /// Little-endian encoding into `out` (`SIZE` bytes).
    fn encode(self, out: &mut [u8]);
    /// Decoding of `SIZE` little-endian bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// `op(self, other)`.
    fn combine(self, other: Self, op: ReduceOp) -> Self;
}

impl Element for f64 {
    const SIZE: usize = 8;
    fn encode(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut b = [0; 8];
        b.copy_from_slice(bytes);
        f64::from_le_bytes(b)
    }
    fn combine(self, other: Self, op: ReduceOp) -> Self {
        match op {
            ReduceOp::Sum => self + other,
            ReduceOp::Min => self.min(other),
            ReduceOp::Max => self.max(other),
        }
    }
}

impl Element for i64 {
    const SIZE: usize = 8;
    fn encode(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut b = [0; 8];
        b.copy_from_slice(bytes);
        i64::from_le_bytes(b)
    }
    fn combine(self, other: Self, op: ReduceOp) -> Self {
        match op {
            ReduceOp::Sum => self.wrapping_add(other),
            ReduceOp::Min => self.min(other),
            ReduceOp::Max => self.max(other),
        }
    }
}

fn encode_all<T: Element>(values: &[T]) -> Vec<u8> {
    let mut bytes = vec![0; values.len() * T::SIZE];
    for (v, out) in values.iter().zip(bytes.chunks_exact_mut(T::SIZE)) {
        v.encode(out);
    }
    bytes
}

impl<R: Region, N: Notify> Ircce<R, N> {
    /// Waits until every UE has called `barrier` as often as this one
    /// (dissemination barrier: `ceil(log2 n)` rounds, each a flag write to
    /// one UE and a wait on an own flag).
    pub fn barrier(&self) {
        let n = self.layout.ues;
        let episode = self.barrier_episode.get().wrapping_add(1);
        self.barrier_episode.set(episode);
        let mut distance = 1;
        let mut round = 0;
        while distance < n && round < BARRIER_ROUNDS {
            let to = (self.me + distance) % n;
            self.region
                .store_u32(self.layout.barrier_round(to, round), episode);
            self.kick(to);
            let mine = self.layout.barrier_round(self.me, round);
            // A faster peer may already be in the next episode: compare
            // wrapping.
            self.wait_for(|| self.region.load_u32(mine).wrapping_sub(episode) as i32 >= 0);
            distance *= 2;
            round += 1;
        }
    }

    /// Broadcasts `buf` from `root` to every UE (binomial tree of sends).
    pub fn bcast(&self, buf: &mut [u8], root: usize) -> Result<(), Error> {
        self.check_ue(root)?;
        let n = self.layout.ues;
        let rel = (self.me + n - root) % n;
        let mut mask = 1;
        while mask < n {
            if rel & mask != 0 {
                self.recv(buf, (rel - mask + root) % n)?;
                break;
            }
            mask <<= 1;
        }
        mask >>= 1;
        while mask > 0 {
            if rel + mask < n {
                self.send(buf, (rel + mask + root) % n)?;
            }
            mask >>= 1;
        }
        Ok(())
    }

    /// Reduces `data` of every UE element-wise with `op` into `result` at
    /// `root` (binomial tree); `result` is untouched elsewhere. All UEs must
    /// pass the same length.
    pub fn reduce<T: Element>(
        &self,
        op: ReduceOp,
        data: &[T],
        result: &mut [T],
        root: usize,
    ) -> Result<(), Error> {
        self.check_ue(root)?;
        if self.me == root && result.len() != data.len() {
            return Err(Error::LengthMismatch(data.len(), result.len()));
        }
        let n = self.layout.ues;
        let rel = (self.me + n - root) % n;
        let mut acc: Vec<T> = data.to_vec();
        let mut incoming = vec![0u8; data.len() * T::SIZE];
        let mut mask = 1;
        while mask < n {
            if rel & mask != 0 {
                self.send(&encode_all(&acc), (rel - mask + root) % n)?;
                break;
            }
            if rel + mask < n {
                self.recv(&mut incoming, (rel + mask + root) % n)?;
                for (a, bytes) in acc.iter_mut().zip(incoming.chunks_exact(T::SIZE)) {
                    *a = a.combine(T::decode(bytes), op);
                }
            }
            mask <<= 1;
        }
        if self.me == root {
            result.copy_from_slice(&acc);
        }
        Ok(())
    }

    /// Like [`Ircce::reduce`] to UE 0 followed by a broadcast: every UE gets
    /// the result.
    pub fn allreduce<T: Element>(
        &self,
        op: ReduceOp,
        data: &[T],
        result: &mut [T],
    ) -> Result<(), Error> {
        if result.len() != data.len() {
            return Err(Error::LengthMismatch(data.len(), result.len()));
        }
        self.reduce(op, data, result, 0)?;
        let mut bytes = encode_all(result);
        self.bcast(&mut bytes, 0)?;
        for (r, b) in result.iter_mut().zip(bytes.chunks_exact(T::SIZE)) {
            *r = T::decode(b);
        }
        Ok(())
    }
}
