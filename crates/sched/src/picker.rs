//! Choosing a core for a new task.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Picks cores for new tasks: round robin, or the least loaded core.
///
/// Shared by all cores (it is `Sync`); `next` is one relaxed atomic add.
#[derive(Debug, Default)]
pub struct CorePicker {
    counter: AtomicUsize,
}

impl CorePicker {
    /// A picker whose first round-robin choice is core 0.
    pub const fn new() -> Self {
        Self {
            counter: AtomicUsize::new(0),
        }
    }

    /// The next core in round-robin order among `ncores` (0 if `ncores` is 0).
    pub fn next(&self, ncores: usize) -> usize {
        if ncores == 0 {
            return 0;
        }
        self.counter.fetch_add(1, Ordering::Relaxed) % ncores
    }

    /// The index of the smallest load; ties go to the lowest index, an empty
    /// slice gives 0.
    pub fn least_loaded(loads: &[usize]) -> usize {
        loads
            .iter()
            .enumerate()
            .min_by_key(|&(i, &load)| (load, i))
            .map_or(0, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin() {
        let p = CorePicker::new();
        let picks: Vec<_> = (0..7).map(|_| p.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.next(0), 0);
        assert_eq!(p.next(1), 0);
    }

    #[test]
    fn least_loaded_ties_low() {
        assert_eq!(CorePicker::least_loaded(&[3, 1, 4, 1]), 1);
        assert_eq!(CorePicker::least_loaded(&[0]), 0);
        assert_eq!(CorePicker::least_loaded(&[]), 0);
        assert_eq!(CorePicker::least_loaded(&[5, 5, 2]), 2);
    }
}
