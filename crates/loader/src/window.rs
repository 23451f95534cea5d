//! Addressing a window of guest-physical memory given as a byte slice.

use crate::error::{Error, Item};

/// The sub-slice of `dest` (which holds guest-physical `[dest_phys, dest_phys
/// + dest.len())`) that holds `[start, start + len)`, or
/// [`Error::OutOfWindow`].
pub(crate) fn sub_mut(
    dest: &mut [u8],
    dest_phys: u64,
    start: u64,
    len: u64,
    item: Item,
) -> Result<&mut [u8], Error> {
    let out = Error::OutOfWindow {
        item,
        start,
        end: start.saturating_add(len),
    };
    let end = start.checked_add(len).ok_or(out)?;
    let lo = start.checked_sub(dest_phys).ok_or(out)?;
    let hi = end.checked_sub(dest_phys).ok_or(out)?;
    let lo = usize::try_from(lo).map_err(|_| out)?;
    let hi = usize::try_from(hi).map_err(|_| out)?;
    dest.get_mut(lo..hi).ok_or(out)
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// Rounds `x` up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_mut_checks_bounds() {
        let mut buf = [0u8; 16];
        assert_eq!(
            sub_mut(&mut buf, 0x1000, 0x1004, 4, Item::Gdt)
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            sub_mut(&mut buf, 0x1000, 0x1000, 16, Item::Gdt)
                .unwrap()
                .len(),
            16
        );
        assert!(sub_mut(&mut buf, 0x1000, 0x1000, 17, Item::Gdt).is_err());
        assert!(sub_mut(&mut buf, 0x1000, 0xfff, 1, Item::Gdt).is_err());
        assert!(sub_mut(&mut buf, 0x1000, u64::MAX, 2, Item::Gdt).is_err());
        assert!(sub_mut(&mut buf, 0x1000, u64::MAX - 1, 1, Item::Gdt).is_err());
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
        assert_eq!(align_up(0x1001, 0x1000), Some(0x2000));
        assert_eq!(align_up(0x1000, 0x1000), Some(0x1000));
        assert_eq!(align_up(u64::MAX, 0x1000), None);
    }
}
