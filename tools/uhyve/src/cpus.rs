//! Host-side CPU handling: the vCPU limit, host core lists (`3-5`, `1,3`,
//! `0-1,4`) as the proxy's `HERMIT_CPUS` and uhyve's `--pin` take them, and
//! pinning the calling thread to one host core.

/// The most vCPUs one VM may have.
pub const MAX_CPUS: u32 = 64;

/// Why a host core list is not valid. Each message is one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreListError {
    /// Nothing between the separators, or an empty list.
    #[error("empty core list entry")]
    Empty,
    /// An entry is neither `N` nor `A-B`.
    #[error("'{0}' is not a core number or a range A-B")]
    Malformed(String),
    /// A range whose end is below its start.
    #[error("range {start}-{end} runs backwards")]
    Reversed {
        /// First core of the range.
        start: usize,
        /// Last core of the range.
        end: usize,
    },
    /// A core is listed twice.
    #[error("core {0} is listed twice")]
    Duplicate(usize),
    /// More cores than a VM may have vCPUs.
    #[error("more than {MAX_CPUS} cores listed")]
    TooMany,
}

/// Parses a host core list: comma-separated entries, each a core number `N`
/// or an inclusive range `A-B` (`A <= B`), e.g. `0-1,4`. The result keeps
/// the listed order (vCPU `i` is pinned to the `i`-th core). Whitespace
/// around the whole list is ignored; duplicates, empty entries and more than
/// [`MAX_CPUS`] cores are errors.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, CoreListError> {
    let number = |s: &str| -> Result<usize, CoreListError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoreListError::Malformed(s.to_owned()));
        }
        s.parse()
            .map_err(|_| CoreListError::Malformed(s.to_owned()))
    };
    let mut cores = Vec::new();
    for entry in text.trim().split(',') {
        if entry.is_empty() {
            return Err(CoreListError::Empty);
        }
        let (start, end) = match entry.split_once('-') {
            Some((a, b)) => (number(a), number(b)),
            None => (number(entry), number(entry)),
        };
        let (start, end) = match (start, end) {
            (Ok(s), Ok(e)) => (s, e),
            _ => return Err(CoreListError::Malformed(entry.to_owned())),
        };
        if end < start {
            return Err(CoreListError::Reversed { start, end });
        }
        // Checked before collecting, so a huge range allocates nothing.
        if end - start >= MAX_CPUS as usize || cores.len() + (end - start) >= MAX_CPUS as usize {
            return Err(CoreListError::TooMany);
        }
        for core in start..=end {
            if cores.contains(&core) {
                return Err(CoreListError::Duplicate(core));
            }
            cores.push(core);
        }
    }
    Ok(cores)
}

/// The host cores this process may run on (its `sched_getaffinity` mask),
/// or `None` if the host does not say.
pub fn host_cores() -> Option<Vec<usize>> {
    affinity().map(|set| {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `core` is below CPU_SETSIZE, so the bit lies inside the set.
            .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
            .collect()
    })
}

/// The calling thread's affinity mask.
pub(crate) fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

/// Restricts the calling thread to `set`.
pub(crate) fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    match unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Restricts the calling thread to `cores` (those at or above
/// `CPU_SETSIZE` are left out; an empty list is refused).
pub(crate) fn set_current_thread_cores(cores: &[usize]) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut any = false;
    for &core in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `core` is below CPU_SETSIZE (filtered above).
        unsafe { libc::CPU_SET(core, &mut set) };
        any = true;
    }
    if !any {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    set_affinity(&set)
}

/// Where a VM's helper threads (the file-call poller) should run when its
/// vCPU threads are pinned to `pins`: the cores of the calling thread
/// (call it before pinning any) that no vCPU is pinned to, or all of them
/// if there are none left. `None` if the host does not say which cores
/// the thread has.
pub fn helper_cores(pins: &[Option<usize>]) -> Option<Vec<usize>> {
    let all = host_cores()?;
    let free: Vec<usize> = all
        .iter()
        .copied()
        .filter(|c| !pins.contains(&Some(*c)))
        .collect();
    Some(if free.is_empty() { all } else { free })
}

/// Pins the calling thread to host core `core` (which must be below
/// `CPU_SETSIZE`).
pub(crate) fn pin_current_thread(core: usize) -> std::io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(core, &mut set) };
    set_affinity(&set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_core_list("3-5"), Ok(vec![3, 4, 5]));
        assert_eq!(parse_core_list("1,3"), Ok(vec![1, 3]));
        assert_eq!(parse_core_list("0-1,4"), Ok(vec![0, 1, 4]));
        assert_eq!(parse_core_list(" 7 "), Ok(vec![7]));
        assert_eq!(parse_core_list("5,2-3"), Ok(vec![5, 2, 3]), "order kept");
        assert_eq!(parse_core_list("4-4"), Ok(vec![4]));
        assert_eq!(parse_core_list("0-63").map(|v| v.len()), Ok(64));
    }

    #[test]
    fn bad_lists() {
        use CoreListError::*;
        assert_eq!(parse_core_list(""), Err(Empty));
        assert_eq!(parse_core_list("1,,2"), Err(Empty));
        assert_eq!(parse_core_list("1,"), Err(Empty));
        assert_eq!(parse_core_list(",1"), Err(Empty));
        assert_eq!(parse_core_list("a"), Err(Malformed("a".into())));
        assert_eq!(parse_core_list("1-"), Err(Malformed("1-".into())));
        assert_eq!(parse_core_list("-1"), Err(Malformed("-1".into())));
        assert_eq!(parse_core_list("1-2-3"), Err(Malformed("1-2-3".into())));
        assert_eq!(parse_core_list("+1"), Err(Malformed("+1".into())));
        assert_eq!(parse_core_list("1, 2"), Err(Malformed(" 2".into())));
        assert_eq!(
            parse_core_list("99999999999999999999999"),
            Err(Malformed("99999999999999999999999".into()))
        );
        assert_eq!(parse_core_list("3-1"), Err(Reversed { start: 3, end: 1 }));
        assert_eq!(parse_core_list("1,2,1"), Err(Duplicate(1)));
        assert_eq!(parse_core_list("0-3,2"), Err(Duplicate(2)));
        assert_eq!(parse_core_list("0-64"), Err(TooMany));
        assert_eq!(parse_core_list("0-9999999999"), Err(TooMany));
        assert_eq!(parse_core_list("0-60,100-103"), Err(TooMany));
        for e in [Empty, Malformed("x".into()), Duplicate(1), TooMany] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn helpers_avoid_pinned_cores() {
        let all = host_cores().expect("sched_getaffinity works on Linux");
        assert_eq!(helper_cores(&[None]), Some(all.clone()));
        let first = all[0];
        let helpers = helper_cores(&[Some(first)]).unwrap();
        if all.len() > 1 {
            assert!(!helpers.contains(&first), "{helpers:?}");
            assert_eq!(helpers.len(), all.len() - 1);
        } else {
            assert_eq!(helpers, all, "no core left: all of them");
        }
        let every: Vec<Option<usize>> = all.iter().map(|&c| Some(c)).collect();
        assert_eq!(helper_cores(&every), Some(all));
    }

    #[test]
    fn this_process_has_cores() {
        let cores = host_cores().expect("sched_getaffinity works on Linux");
        assert!(!cores.is_empty());
    }
}
