//! Task priorities.

use core::fmt;

/// Number of distinct priority levels (`0..=31`).
pub const NUM_PRIORITIES: usize = 32;

/// A task priority: `0..=31`, higher runs first.
///
/// The levels follow HermitCore: [`Priority::IDLE`] is reserved for the idle
/// task by convention, [`Priority::NORMAL`] (8) is what ordinary tasks get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

/// The error returned by [`Priority::new`] for a value above 31.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPriority(pub u8);

impl fmt::Display for InvalidPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority {} is out of range (0..={})",
            self.0,
            Priority::MAX.0
        )
    }
}

impl core::error::Error for InvalidPriority {}

impl Priority {
    /// The lowest level, for the idle task.
    pub const IDLE: Self = Self(0);
    /// Background work.
    pub const LOW: Self = Self(4);
    /// Default priority of a new task (as in HermitCore).
    pub const NORMAL: Self = Self(8);
    /// Latency-sensitive work.
    pub const HIGH: Self = Self(16);
    /// The highest level.
    pub const REALTIME: Self = Self(31);
    /// The highest valid priority (same as [`Priority::REALTIME`]).
    pub const MAX: Self = Self::REALTIME;

    /// A priority from its number, rejecting values above 31.
    pub const fn new(level: u8) -> Result<Self, InvalidPriority> {
        if level as usize >= NUM_PRIORITIES {
            Err(InvalidPriority(level))
        } else {
            Ok(Self(level))
        }
    }

    /// The priority's number, `0..=31`.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Index into per-level arrays (equal to [`Priority::get`]).
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }

    /// The priority at a level already known to be `< 32` (bitmap indices).
    pub(crate) const fn from_index(index: u32) -> Self {
        debug_assert!((index as usize) < NUM_PRIORITIES);
        Self(index as u8)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}

impl TryFrom<u8> for Priority {
    type Error = InvalidPriority;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        Self::new(level)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_checked() {
        assert_eq!(Priority::new(0), Ok(Priority::IDLE));
        assert_eq!(Priority::new(31), Ok(Priority::REALTIME));
        assert_eq!(Priority::new(32), Err(InvalidPriority(32)));
        assert_eq!(Priority::try_from(255u8), Err(InvalidPriority(255)));
        assert_eq!(Priority::NORMAL.get(), 8);
        assert!(Priority::HIGH > Priority::NORMAL && Priority::NORMAL > Priority::LOW);
        assert_eq!(
            InvalidPriority(40).to_string(),
            "priority 40 is out of range (0..=31)"
        );
    }
}
