//! The 8254 programmable interval timer, used only to measure the TSC
//! against a clock of known frequency (1.193182 MHz) when nothing else tells
//! the TSC frequency.
//!
//! Channel 0 is used, read back through latch commands, because its gate is
//! always open: channel 2's gate sits behind port 0x61, which QEMU's
//! `microvm` does not emulate.

use x86_64::instructions::port::Port;

use crate::cpu::rdtsc;

/// PIT channel 0 data port.
const CHANNEL0: u16 = 0x40;
/// PIT mode/command port.
const COMMAND: u16 = 0x43;
/// Channel 0 (bits 7-6 = 00), low then high byte (5-4 = 11), mode 0
/// (3-1 = 000, interrupt on terminal count), binary (0 = 0). Writing it
/// stops the channel with its output low until a count is written.
const CHANNEL0_MODE0: u8 = 0b0011_0000;
/// Latch channel 0's count for reading (bits 5-4 = 00).
const CHANNEL0_LATCH: u8 = 0b0000_0000;
/// Read-back command (bits 7-6 = 11): do not latch counts (bit 5 = 1),
/// latch status (bit 4 = 0), of channel 0 (bit 1).
const CHANNEL0_READ_STATUS: u8 = 0b1110_0010;
/// Status bits that echo the programmed access and mode (RW = low/high,
/// mode 0, binary).
const STATUS_MODE_MASK: u8 = 0b0011_1111;

/// The PIT's ports.
struct Pit {
    command: Port<u8>,
    channel0: Port<u8>,
}

impl Pit {
    fn write_command(&mut self, value: u8) {
        // SAFETY: PIT commands have no memory effects; only channel 0,
        // which nothing else in the kernel uses, is addressed.
        unsafe { self.command.write(value) }
    }

    fn write_channel0(&mut self, value: u8) {
        // SAFETY: as for `write_command`.
        unsafe { self.channel0.write(value) }
    }

    fn read_channel0(&mut self) -> u8 {
        // SAFETY: reading a latched value has no memory effects.
        unsafe { self.channel0.read() }
    }

    /// Channel 0's count, with the TSC read just before and just after
    /// latching it.
    fn sample(&mut self) -> Sample {
        let before = rdtsc();
        self.write_command(CHANNEL0_LATCH);
        let after = rdtsc();
        let low = self.read_channel0();
        let high = self.read_channel0();
        Sample {
            before,
            after,
            count: u16::from_le_bytes([low, high]),
        }
    }
}

/// One reading of the PIT: the latch happened between `before` and `after`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    before: u64,
    after: u64,
    count: u16,
}

/// The result of [`measure_tsc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PitMeasurement {
    /// TSC ticks between the two latches (midpoint to midpoint).
    pub tsc_ticks: u64,
    /// PIT input clocks counted between them.
    pub pit_ticks: u64,
    /// How far `tsc_ticks` may be off: half the time each latch took, added
    /// up. A hypervisor that stalls the vCPU during a latch (QEMU's TCG
    /// does, for milliseconds at boot) shows up here.
    pub uncertainty_ticks: u64,
}

/// Lets PIT channel 0 count down from 0xffff and measures how many TSC
/// ticks pass while it counts at least `pit_ticks` input clocks (at most
/// ~55 ms worth). `None` if no PIT answers (its status does not echo the
/// programmed mode, as when ports read all ones) or it does not advance
/// within `max_tsc_ticks`.
///
/// Busy-waits for the whole measurement, polling with three port accesses
/// per sample. Port I/O only: works at CPL 0 and at CPL 3 with IOPL 3.
/// Leaves channel 0 stopped with its output low, so it raises no IRQ 0
/// (after reset it runs as an 18.2 Hz square wave).
pub fn measure_tsc(pit_ticks: u16, max_tsc_ticks: u64) -> Option<PitMeasurement> {
    let mut pit = Pit {
        command: Port::new(COMMAND),
        channel0: Port::new(CHANNEL0),
    };
    pit.write_command(CHANNEL0_MODE0);
    pit.write_channel0(0xff);
    pit.write_channel0(0xff);
    pit.write_command(CHANNEL0_READ_STATUS);
    let result = if pit.read_channel0() & STATUS_MODE_MASK != CHANNEL0_MODE0 {
        None
    } else {
        count(&mut pit, pit_ticks, max_tsc_ticks)
    };
    pit.write_command(CHANNEL0_MODE0);
    result
}

fn count(pit: &mut Pit, pit_ticks: u16, max_tsc_ticks: u64) -> Option<PitMeasurement> {
    // Start on a change of the count, so the start is aligned to a PIT
    // clock edge as closely as the polling allows.
    let first = pit.sample();
    let start = loop {
        let sample = pit.sample();
        if sample.count != first.count {
            break sample;
        }
        if sample.before.wrapping_sub(first.before) > max_tsc_ticks {
            return None;
        }
    };
    loop {
        let end = pit.sample();
        // Mode 0 counts down once; a larger value means garbage.
        let counted = start.count.checked_sub(end.count)?;
        if counted >= pit_ticks {
            let mid = |s: Sample| s.before / 2 + s.after / 2;
            let half_width = |s: Sample| s.after.wrapping_sub(s.before) / 2;
            return Some(PitMeasurement {
                tsc_ticks: mid(end).wrapping_sub(mid(start)),
                pit_ticks: u64::from(counted),
                uncertainty_ticks: half_width(start) + half_width(end),
            });
        }
        if end.before.wrapping_sub(start.before) > max_tsc_ticks {
            return None;
        }
    }
}
