//! Building the boot-info memory map from RAM and reserved ranges.

use core::ops::Range;

use hermit_interface::{MemoryKind, MemoryRegion};

use crate::error::Error;
use crate::window::{align_down, align_up};

const PAGE: u64 = 4096;

/// Fills `out` with the memory map for the RAM ranges `ram` minus the
/// `reserved` ranges and returns the number of entries used.
///
/// RAM ranges shrink inward and reserved ranges grow outward to 4 KiB
/// boundaries, so usable memory never shares a page with reserved data.
/// Overlaps in the input are fine; reserved wins over RAM. The result is
/// sorted, non-overlapping, and adjacent entries of the same kind are merged.
/// Reserved ranges outside RAM are listed too. Empty ranges are ignored.
///
/// Errors: a range with `end < start`, or more entries than `out` holds
/// (pass `&mut boot_info.memory` for [`MAX_MEMORY_REGIONS`]).
///
/// [`MAX_MEMORY_REGIONS`]: hermit_interface::MAX_MEMORY_REGIONS
pub fn build_memory_map(
    ram: &[Range<u64>],
    reserved: &[Range<u64>],
    out: &mut [MemoryRegion],
) -> Result<usize, Error> {
    for r in ram.iter().chain(reserved) {
        if r.end < r.start {
            return Err(Error::BadRange {
                start: r.start,
                end: r.end,
            });
        }
    }
    let ram_pages = || {
        ram.iter()
            .map(|r| align_up(r.start, PAGE).unwrap_or(u64::MAX)..align_down(r.end, PAGE))
            .filter(|r| r.start < r.end)
    };
    let reserved_pages = || {
        reserved
            .iter()
            .filter(|r| r.start < r.end)
            .map(|r| align_down(r.start, PAGE)..align_up(r.end, PAGE).unwrap_or(!(PAGE - 1)))
            .filter(|r| r.start < r.end)
    };
    // Sweep over the sorted set of all range boundaries; between two
    // consecutive boundaries the kind is constant. Quadratic, but inputs are
    // a handful of ranges and this needs no allocation.
    let boundaries = || {
        ram_pages()
            .chain(reserved_pages())
            .flat_map(|r| [r.start, r.end])
    };
    let mut count = 0;
    let Some(mut cursor) = boundaries().min() else {
        return Ok(0);
    };
    while let Some(next) = boundaries().filter(|&b| b > cursor).min() {
        let covers = |r: Range<u64>| r.start <= cursor && next <= r.end;
        let kind = if reserved_pages().any(covers) {
            Some(MemoryKind::Reserved)
        } else if ram_pages().any(covers) {
            Some(MemoryKind::Usable)
        } else {
            None
        };
        if let Some(kind) = kind {
            let merged = count > 0 && {
                let last: &mut MemoryRegion = &mut out[count - 1];
                let same = last.kind == kind as u32 && last.end() == cursor;
                if same {
                    last.len = next - last.start;
                }
                same
            };
            if !merged {
                let capacity = out.len();
                let slot = out
                    .get_mut(count)
                    .ok_or(Error::MemoryMapFull { capacity })?;
                *slot = MemoryRegion {
                    start: cursor,
                    len: next - cursor,
                    kind: kind as u32,
                    _reserved: 0,
                };
                count += 1;
            }
        }
        cursor = next;
    }
    Ok(count)
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "one RAM range is the common case being tested"
)]
mod tests {
    use std::vec::Vec;

    use hermit_interface::MAX_MEMORY_REGIONS;

    use super::*;

    const U: MemoryKind = MemoryKind::Usable;
    const R: MemoryKind = MemoryKind::Reserved;

    fn map(ram: &[Range<u64>], reserved: &[Range<u64>]) -> Vec<(u64, u64, MemoryKind)> {
        let mut out = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS];
        let n = build_memory_map(ram, reserved, &mut out).unwrap();
        out[..n]
            .iter()
            .map(|r| (r.start, r.end(), r.kind().unwrap()))
            .collect()
    }

    #[test]
    fn reserved_ranges_split_ram() {
        assert_eq!(
            map(&[0..2 << 30], &[0..0x1_0000, 0x20_0000..0x24_0000]),
            [
                (0, 0x1_0000, R),
                (0x1_0000, 0x20_0000, U),
                (0x20_0000, 0x24_0000, R),
                (0x24_0000, 2 << 30, U),
            ]
        );
    }

    #[test]
    fn alignment_overlap_and_merging() {
        // RAM shrinks inward, reserved grows outward; overlapping and
        // adjacent reserved ranges merge; order of input does not matter.
        assert_eq!(
            map(
                &[0x800..0x10_0800],
                &[
                    0x5000..0x5001,
                    0x2100..0x3000,
                    0x2000..0x2800,
                    0x3000..0x4000
                ]
            ),
            [
                (0x1000, 0x2000, U),
                (0x2000, 0x4000, R),
                (0x4000, 0x5000, U),
                (0x5000, 0x6000, R),
                (0x6000, 0x10_0000, U),
            ]
        );
    }

    #[test]
    fn holes_and_reserved_outside_ram() {
        assert_eq!(
            map(
                &[
                    0x10_0000..0x20_0000,
                    0x20_0000..0x30_0000,
                    0x40_0000..0x50_0000
                ],
                &[0x60_0000..0x60_1000]
            ),
            [
                (0x10_0000, 0x30_0000, U),
                (0x40_0000, 0x50_0000, U),
                (0x60_0000, 0x60_1000, R),
            ]
        );
        assert_eq!(map(&[], &[]), []);
        assert_eq!(map(&[0x800..0xfff], &[]), []);
    }

    #[test]
    fn errors() {
        let mut out = [MemoryRegion::EMPTY; 3];
        let reserved: Vec<_> = (1..10u64)
            .map(|i| i * 0x2000..i * 0x2000 + 0x1000)
            .collect();
        assert_eq!(
            build_memory_map(&[0..1 << 20], &reserved, &mut out),
            Err(Error::MemoryMapFull { capacity: 3 })
        );
        #[allow(clippy::reversed_empty_ranges, reason = "testing the check")]
        let bad = 5..4;
        assert_eq!(
            build_memory_map(&[bad], &[], &mut out),
            Err(Error::BadRange { start: 5, end: 4 })
        );
        // Extreme values do not overflow.
        let top = u64::MAX - 0x2fff..u64::MAX - 0x1fff;
        let n = build_memory_map(&[0..u64::MAX], &[top], &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(out[1].kind(), Some(R));
    }
}
