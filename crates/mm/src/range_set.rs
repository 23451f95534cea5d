//! A sorted, fixed-capacity set of disjoint half-open `u64` ranges, shared by
//! the physical frame allocator and the kernel virtual window. Fixed capacity
//! because the frame allocator runs before any heap exists.

use crate::{align_down, align_up};

/// `[start, end)`, never empty while stored in a [`RangeSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    const EMPTY: Self = Self { start: 0, end: 0 };

    const fn len(self) -> u64 {
        self.end - self.start
    }
}

/// The operation needs more than `N` spans; the set is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Why [`RangeSet::insert`] failed; the set is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The range overlaps one already in the set.
    Overlap,
    /// See [`Full`].
    Full,
}

/// Why [`RangeSet::take`] failed; the set is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakeError {
    /// No span holds a suitably aligned range of the requested size.
    NoFit,
    /// A fit exists, but carving it out needs a span slot and none is free.
    Full,
}

impl From<Full> for InsertError {
    fn from(Full: Full) -> Self {
        Self::Full
    }
}

/// Sorted, disjoint, non-adjacent spans (adjacent ones are always merged).
#[derive(Clone, Debug)]
pub(crate) struct RangeSet<const N: usize> {
    spans: [Span; N],
    len: usize,
    bytes: u64,
}

impl<const N: usize> RangeSet<N> {
    pub const fn new() -> Self {
        Self {
            spans: [Span::EMPTY; N],
            len: 0,
            bytes: 0,
        }
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans[..self.len]
    }

    /// Total bytes covered.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Replaces `spans[i..j]` with `new`.
    fn splice(&mut self, i: usize, j: usize, new: &[Span]) -> Result<(), Full> {
        let new_len = self.len - (j - i) + new.len();
        if new_len > N {
            return Err(Full);
        }
        self.spans.copy_within(j..self.len, i + new.len());
        self.spans[i..i + new.len()].copy_from_slice(new);
        self.len = new_len;
        Ok(())
    }

    /// Adds `[start, end)` (`start < end`), merging it with touching spans.
    /// With `union`, overlap with existing spans is allowed and the result is
    /// the union; otherwise overlap is [`InsertError::Overlap`].
    pub fn insert(&mut self, start: u64, end: u64, union: bool) -> Result<(), InsertError> {
        debug_assert!(start < end);
        // Fast path for the common case of ascending input (a sorted memory
        // map), which keeps construction O(regions).
        if self.len == 0 || self.spans[self.len - 1].end < start {
            if self.len == N {
                return Err(InsertError::Full);
            }
            self.spans[self.len] = Span { start, end };
            self.len += 1;
            self.bytes += end - start;
            return Ok(());
        }
        let spans = self.spans();
        // spans[i..j] are exactly the spans that overlap or touch [start, end).
        let i = spans.partition_point(|s| s.end < start);
        let j = spans.partition_point(|s| s.start <= end);
        let touched = &spans[i..j];
        let overlaps = touched.iter().any(|s| s.start < end && s.end > start);
        if overlaps && !union {
            return Err(InsertError::Overlap);
        }
        let mut merged = Span { start, end };
        if let (Some(first), Some(last)) = (touched.first(), touched.last()) {
            merged.start = merged.start.min(first.start);
            merged.end = merged.end.max(last.end);
        }
        let old: u64 = touched.iter().map(|s| s.len()).sum();
        self.splice(i, j, &[merged])?;
        self.bytes = self.bytes - old + merged.len();
        Ok(())
    }

    /// Removes `[start, end)` from the set, splitting a span if needed, and
    /// returns how many bytes were actually removed (parts not in the set are
    /// ignored).
    pub fn remove(&mut self, start: u64, end: u64) -> Result<u64, Full> {
        if start >= end {
            return Ok(0);
        }
        let spans = self.spans();
        let i = spans.partition_point(|s| s.end <= start);
        let j = spans.partition_point(|s| s.start < end);
        if i >= j {
            return Ok(0);
        }
        let (first, last) = (spans[i], spans[j - 1]);
        let mut pieces = [Span::EMPTY; 2];
        let mut n = 0;
        if first.start < start {
            pieces[n] = Span {
                start: first.start,
                end: start,
            };
            n += 1;
        }
        if last.end > end {
            pieces[n] = Span {
                start: end,
                end: last.end,
            };
            n += 1;
        }
        let old: u64 = spans[i..j].iter().map(|s| s.len()).sum();
        let kept: u64 = pieces[..n].iter().map(|s| s.len()).sum();
        self.splice(i, j, &pieces[..n])?;
        self.bytes -= old - kept;
        Ok(old - kept)
    }

    /// Removes and returns the lowest `[a, a + size)` inside one span with
    /// `(a + skew) % align == 0` (first fit). `align` is a power of two and
    /// `skew < align`. If carving there would split a span while the set is
    /// full, the highest fitting address of the same span is tried too,
    /// because it may only shrink the span.
    pub fn take(&mut self, size: u64, align: u64, skew: u64) -> Result<u64, TakeError> {
        debug_assert!(align.is_power_of_two() && skew < align && size > 0);
        let mut full = false;
        for idx in 0..self.len {
            let span = self.spans[idx];
            let Some(low) = lowest_fit(span, size, align, skew) else {
                continue;
            };
            match self.remove(low, low + size) {
                Ok(_) => return Ok(low),
                Err(_) => full = true,
            }
            let high = highest_fit(span, size, align, skew);
            if let Some(high) = high.filter(|&h| h != low)
                && self.remove(high, high + size).is_ok()
            {
                return Ok(high);
            }
        }
        Err(if full {
            TakeError::Full
        } else {
            TakeError::NoFit
        })
    }
}

/// Lowest `a` in `span` with `[a, a + size)` inside it and `(a + skew) % align == 0`.
fn lowest_fit(span: Span, size: u64, align: u64, skew: u64) -> Option<u64> {
    let a = align_up(span.start.checked_add(skew)?, align)? - skew;
    (a.checked_add(size)? <= span.end).then_some(a)
}

/// Highest such `a`; only called when [`lowest_fit`] found one.
fn highest_fit(span: Span, size: u64, align: u64, skew: u64) -> Option<u64> {
    let last = span.end.checked_sub(size)?;
    let a = align_down(last.checked_add(skew)?, align).checked_sub(skew)?;
    (a >= span.start).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<const N: usize>(spans: &[(u64, u64)]) -> RangeSet<N> {
        let mut s = RangeSet::new();
        for &(a, b) in spans {
            s.insert(a, b, false).unwrap();
        }
        s
    }

    fn pairs<const N: usize>(s: &RangeSet<N>) -> Vec<(u64, u64)> {
        s.spans().iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn insert_merges_neighbours_in_any_order() {
        let mut s = set::<4>(&[(30, 40), (10, 20)]);
        assert_eq!(pairs(&s), [(10, 20), (30, 40)]);
        s.insert(20, 30, false).unwrap();
        assert_eq!(pairs(&s), [(10, 40)]);
        assert_eq!(s.bytes(), 30);
    }

    #[test]
    fn insert_rejects_overlap_unless_union() {
        let mut s = set::<4>(&[(10, 20), (30, 40)]);
        assert_eq!(s.insert(15, 25, false), Err(InsertError::Overlap));
        assert_eq!(s.insert(0, 11, false), Err(InsertError::Overlap));
        assert_eq!(pairs(&s), [(10, 20), (30, 40)]);
        s.insert(5, 35, true).unwrap();
        assert_eq!(pairs(&s), [(5, 40)]);
        assert_eq!(s.bytes(), 35);
    }

    #[test]
    fn full_set_is_left_unchanged() {
        let mut s = set::<2>(&[(10, 20), (30, 40)]);
        assert_eq!(s.insert(50, 60, false), Err(InsertError::Full));
        assert_eq!(s.insert(0, 5, false), Err(InsertError::Full));
        assert_eq!(s.remove(12, 14), Err(Full));
        assert_eq!(pairs(&s), [(10, 20), (30, 40)]);
        assert_eq!(s.bytes(), 20);
        // Merging needs no new slot, so it still works when full.
        s.insert(20, 25, false).unwrap();
        assert_eq!(pairs(&s), [(10, 25), (30, 40)]);
    }

    #[test]
    fn remove_across_spans_reports_bytes() {
        let mut s = set::<4>(&[(10, 20), (30, 40), (50, 60)]);
        assert_eq!(s.remove(15, 55), Ok(5 + 10 + 5));
        assert_eq!(pairs(&s), [(10, 15), (55, 60)]);
        assert_eq!(s.remove(0, 5), Ok(0));
        assert_eq!(s.remove(20, 20), Ok(0));
        assert_eq!(s.bytes(), 10);
    }

    #[test]
    fn take_honours_skew_and_falls_back_to_the_top_when_full() {
        let mut s = set::<4>(&[(1, 100)]);
        // (a + 2) % 16 == 0, lowest is 14.
        assert_eq!(s.take(10, 16, 2), Ok(14));
        assert_eq!(pairs(&s), [(1, 14), (24, 100)]);

        // Full set: low fit at 16 would split [3, 64); 48 only shrinks it.
        let mut s = set::<1>(&[(3, 64)]);
        assert_eq!(s.take(16, 16, 0), Ok(48));
        assert_eq!(pairs(&s), [(3, 48)]);
        assert_eq!(s.take(40, 16, 0), Err(TakeError::NoFit));
        // A fit exists ([16, 24)) but would need a split in a full set.
        let mut s = set::<1>(&[(3, 36)]);
        assert_eq!(s.take(8, 16, 0), Err(TakeError::Full));
        assert_eq!(pairs(&s), [(3, 36)]);
    }

    #[test]
    fn take_near_the_top_of_the_address_space_does_not_overflow() {
        let top = u64::MAX - 15;
        let mut s = set::<2>(&[(top - 64, top)]);
        assert_eq!(s.take(1 << 20, 16, 0), Err(TakeError::NoFit));
        assert_eq!(s.take(64, 1 << 40, 3), Err(TakeError::NoFit));
        assert_eq!(s.take(16, 16, 0), Ok(top - 64));
    }
}
