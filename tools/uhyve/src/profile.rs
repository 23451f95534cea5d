//! A sampling profiler for guests: with [`crate::Config::profile`] every
//! vCPU thread is kicked out of `KVM_RUN` once per [`PERIOD`], the guest's
//! RIP is recorded, and when the VM ends the samples are attributed to the
//! image's function symbols and written as a flat profile (most frequent
//! first). A halted vCPU is sampled where it halted, so idle time shows up
//! as the kernel's idle function.
//!
//! Each sample costs one VM exit (about 10 µs here), so the profile
//! perturbs the guest by roughly 1%.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use object::{Object as _, ObjectSymbol as _, SymbolKind};

/// Time between two samples of one vCPU.
pub const PERIOD: Duration = Duration::from_millis(1);

/// Samples kept at most (a few hours at one vCPU); later ones are counted
/// but dropped.
const MAX_SAMPLES: usize = 1 << 24;

/// The RIPs sampled so far, from every vCPU.
#[derive(Debug, Default)]
pub struct Sampler {
    samples: Mutex<(Vec<u64>, u64)>,
}

impl Sampler {
    /// Records one sample.
    pub fn record(&self, rip: u64) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.len() < MAX_SAMPLES {
            s.0.push(rip);
        } else {
            s.1 += 1;
        }
    }

    /// The samples recorded and how many were dropped.
    pub fn take(&self) -> (Vec<u64>, u64) {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The image's functions at their run-time addresses, sorted.
#[derive(Debug, Default)]
pub struct Symbols {
    /// (start, end, demangled name).
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads the function symbols of the ELF `image` loaded `bias` bytes
    /// above its link addresses; an image without a symbol table gives an
    /// empty set (every sample is then "unknown").
    pub fn load(image: &[u8], bias: u64) -> Self {
        let Ok(file) = object::read::elf::ElfFile64::<object::LittleEndian>::parse(image) else {
            return Self::default();
        };
        let mut funcs: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                let start = s.address().wrapping_add(bias);
                let end = start.wrapping_add(s.size().max(1));
                Some((start, end, format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        funcs.sort_by_key(|f| f.0);
        Self { funcs }
    }

    /// The function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= addr);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        (addr < f.1).then_some(f.2.as_str())
    }
}

/// The flat profile of `samples`: one line per function, most samples
/// first, with the share of all samples.
pub fn report(samples: &[u64], dropped: u64, symbols: &Symbols) -> String {
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for &rip in samples {
        *counts
            .entry(symbols.lookup(rip).unwrap_or("[unknown]"))
            .or_default() += 1;
    }
    let mut rows: Vec<(&str, u64)> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = samples.len().max(1) as f64;
    let mut out = format!(
        "# uhyve profile: {} samples, one per vCPU every {} ms{}\n# share  samples  function\n",
        samples.len(),
        PERIOD.as_millis(),
        if dropped > 0 {
            format!(" ({dropped} more dropped)")
        } else {
            String::new()
        }
    );
    for (name, n) in rows {
        let _ = writeln!(out, "{:6.2}% {n:8}  {name}", n as f64 * 100.0 / total);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_samples_to_functions() {
        let symbols = Symbols {
            funcs: vec![(0x1000, 0x1010, "a".into()), (0x1010, 0x1100, "b".into())],
        };
        assert_eq!(symbols.lookup(0x1000), Some("a"));
        assert_eq!(symbols.lookup(0x100f), Some("a"));
        assert_eq!(symbols.lookup(0x1010), Some("b"));
        assert_eq!(symbols.lookup(0x1100), None);
        assert_eq!(symbols.lookup(0xfff), None);
        let text = report(&[0x1000, 0x1020, 0x1030, 0x5000], 0, &symbols);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("4 samples"), "{text}");
        assert!(
            lines[2].ends_with(" b") && lines[2].contains("50.00%"),
            "{text}"
        );
        assert!(text.contains("25.00%        1  [unknown]"), "{text}");
    }

    #[test]
    fn reads_the_symbols_of_a_real_image() {
        // This test binary is an ELF with a symbol table.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let symbols = Symbols::load(&me, 0);
        assert!(!symbols.funcs.is_empty());
        let addr = symbols.funcs[symbols.funcs.len() / 2].0;
        assert!(symbols.lookup(addr).is_some());
    }

    #[test]
    fn sampler_keeps_samples() {
        let s = Sampler::default();
        s.record(1);
        s.record(2);
        assert_eq!(s.take(), (vec![1, 2], 0));
        assert_eq!(s.take(), (vec![], 0));
    }
}
