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
