//! Reading the MC146818-compatible CMOS real-time clock (what QEMU and PCs
//! provide at I/O ports 0x70/0x71) and turning its registers into Unix time.
//!
//! The clock updates its registers once a second; while the update runs
//! (flagged by "update in progress" in status register A) the values may be
//! torn. [`read_registers`] therefore waits for the flag to clear and reads
//! all registers twice until two reads agree. [`decode`] then handles the
//! two encodings (BCD or binary, status register B bit 2), the 12/24-hour
//! modes (bit 1) and the century.

use core::fmt;

/// Access to the CMOS register file; the real one is ports 0x70/0x71, tests
/// use a scripted fake.
pub trait Cmos {
    /// Reads CMOS register `register`.
    fn read(&mut self, register: u8) -> u8;
}

/// CMOS register numbers.
pub mod reg {
    /// Seconds (0-59).
    pub const SECONDS: u8 = 0x00;
    /// Minutes (0-59).
    pub const MINUTES: u8 = 0x02;
    /// Hours (0-23, or 1-12 with bit 7 = PM).
    pub const HOURS: u8 = 0x04;
    /// Day of the month (1-31).
    pub const DAY: u8 = 0x07;
    /// Month (1-12).
    pub const MONTH: u8 = 0x08;
    /// Year within the century (0-99).
    pub const YEAR: u8 = 0x09;
    /// Status register A (bit 7: update in progress).
    pub const STATUS_A: u8 = 0x0a;
    /// Status register B (bit 1: 24-hour mode, bit 2: binary mode).
    pub const STATUS_B: u8 = 0x0b;
    /// The century, where the ACPI FADT usually says it is (and where QEMU
    /// keeps it).
    pub const CENTURY: u8 = 0x32;
}

/// Status A: an update is in progress, the time registers may be torn.
pub const STATUS_A_UPDATE_IN_PROGRESS: u8 = 1 << 7;
/// Status B: hours run 0-23 (else 1-12 with [`HOUR_PM`]).
pub const STATUS_B_24_HOUR: u8 = 1 << 1;
/// Status B: values are binary (else BCD).
pub const STATUS_B_BINARY: u8 = 1 << 2;
/// Hours register in 12-hour mode: the time is after noon.
pub const HOUR_PM: u8 = 1 << 7;

/// How many times [`read_registers`] reads the clock before it gives up on
/// getting two equal reads.
const MAX_READ_ATTEMPTS: u32 = 5;

/// Why the RTC gave no time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// No RTC answers: status registers A and B both read 0xff, as ports
    /// without a device do.
    Absent,
    /// "Update in progress" never cleared: the RTC is stuck.
    NeverReady,
    /// Consecutive reads never agreed.
    Unstable,
    /// A register holds a value no date has.
    BadField {
        /// Which field.
        field: &'static str,
        /// The raw register value.
        raw: u8,
    },
    /// The date lies before 1970.
    BeforeEpoch {
        /// The decoded year.
        year: u16,
    },
}

impl fmt::Display for RtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => write!(f, "there is no RTC"),
            Self::NeverReady => write!(f, "the RTC never finished its update"),
            Self::Unstable => write!(f, "the RTC kept changing between reads"),
            Self::BadField { field, raw } => write!(f, "the RTC {field} register holds {raw:#04x}"),
            Self::BeforeEpoch { year } => write!(f, "the RTC says {year}, before 1970"),
        }
    }
}

/// The raw time registers of one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcRegisters {
    /// [`reg::SECONDS`].
    pub seconds: u8,
    /// [`reg::MINUTES`].
    pub minutes: u8,
    /// [`reg::HOURS`].
    pub hours: u8,
    /// [`reg::DAY`].
    pub day: u8,
    /// [`reg::MONTH`].
    pub month: u8,
    /// [`reg::YEAR`].
    pub year: u8,
    /// [`reg::CENTURY`].
    pub century: u8,
    /// [`reg::STATUS_B`].
    pub status_b: u8,
}

/// Waits (at most `max_polls` reads of status A each time) until no update
/// is in progress, then reads the time registers; repeats until two reads in
/// a row agree. First checks that an RTC is there at all (two reads), so a
/// missing one costs no polling.
pub fn read_registers(cmos: &mut impl Cmos, max_polls: u32) -> Result<RtcRegisters, RtcError> {
    if cmos.read(reg::STATUS_A) == 0xff && cmos.read(reg::STATUS_B) == 0xff {
        return Err(RtcError::Absent);
    }
    let mut last = read_once(cmos, max_polls)?;
    for _ in 1..MAX_READ_ATTEMPTS {
        let next = read_once(cmos, max_polls)?;
        if next == last {
            return Ok(next);
        }
        last = next;
    }
    Err(RtcError::Unstable)
}

fn read_once(cmos: &mut impl Cmos, max_polls: u32) -> Result<RtcRegisters, RtcError> {
    let mut polls = 0;
    while cmos.read(reg::STATUS_A) & STATUS_A_UPDATE_IN_PROGRESS != 0 {
        polls += 1;
        if polls >= max_polls {
            return Err(RtcError::NeverReady);
        }
    }
    Ok(RtcRegisters {
        seconds: cmos.read(reg::SECONDS),
        minutes: cmos.read(reg::MINUTES),
        hours: cmos.read(reg::HOURS),
        day: cmos.read(reg::DAY),
        month: cmos.read(reg::MONTH),
        year: cmos.read(reg::YEAR),
        century: cmos.read(reg::CENTURY),
        status_b: cmos.read(reg::STATUS_B),
    })
}

/// A calendar date and time of day (UTC, as VMs keep their RTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2025.
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
}

impl DateTime {
    /// Seconds since 1970-01-01 00:00:00 UTC (the date must be valid and
    /// not before 1970, which [`decode`] guarantees).
    pub fn unix_seconds(&self) -> u64 {
        let days = days_since_epoch(self.year, self.month, self.day);
        days * 86_400
            + u64::from(self.hour) * 3600
            + u64::from(self.minute) * 60
            + u64::from(self.second)
    }
}

/// Decodes one packed BCD byte (`0x59` → 59); `None` if a nibble is not a
/// decimal digit.
pub const fn bcd_to_binary(bcd: u8) -> Option<u8> {
    let (hi, lo) = (bcd >> 4, bcd & 0x0f);
    if hi > 9 || lo > 9 {
        None
    } else {
        Some(hi * 10 + lo)
    }
}

/// Whether `year` is a leap year in the Gregorian calendar.
pub const fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days in `month` (1-12) of `year`; 0 for a month that does not exist.
pub const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to `year-month-day` (a valid date, 1970 or later).
pub fn days_since_epoch(year: u16, month: u8, day: u8) -> u64 {
    // Count from 1 March of year 0 so that the leap day ends each year:
    // months then have a regular 153-days-per-5-months pattern.
    let march_based_year = u64::from(year) - u64::from(month <= 2);
    let month_from_march = (u64::from(month) + 9) % 12; // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + u64::from(day) - 1;
    let y = march_based_year;
    let days_from_year_0 = y * 365 + y / 4 - y / 100 + y / 400 + day_of_year;
    // 1970-01-01 is day 719_468 counted that way.
    days_from_year_0 - 719_468
}

/// Turns raw RTC registers into a date, honouring the BCD/binary and
/// 12/24-hour modes of status B. The century comes from
/// [`reg::CENTURY`] when it holds 19, 20 or 21, else the year is taken as
/// 20xx.
pub fn decode(regs: &RtcRegisters) -> Result<DateTime, RtcError> {
    let binary = regs.status_b & STATUS_B_BINARY != 0;
    let value = |field: &'static str, raw: u8| {
        let v = if binary {
            Some(raw)
        } else {
            bcd_to_binary(raw)
        };
        v.ok_or(RtcError::BadField { field, raw })
    };
    let check = |field: &'static str, raw: u8, range: core::ops::RangeInclusive<u8>| {
        let v = value(field, raw)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(RtcError::BadField { field, raw })
        }
    };

    let second = check("seconds", regs.seconds, 0..=59)?;
    let minute = check("minutes", regs.minutes, 0..=59)?;
    let hour = if regs.status_b & STATUS_B_24_HOUR != 0 {
        check("hours", regs.hours, 0..=23)?
    } else {
        let h = check("hours", regs.hours & !HOUR_PM, 1..=12).map_err(|_| RtcError::BadField {
            field: "hours",
            raw: regs.hours,
        })?;
        // 12 AM is midnight, 12 PM is noon.
        h % 12 + if regs.hours & HOUR_PM != 0 { 12 } else { 0 }
    };
    let month = check("month", regs.month, 1..=12)?;
    let year_in_century = check("year", regs.year, 0..=99)?;
    let century = value("century", regs.century)
        .ok()
        .filter(|c| (19..=21).contains(c))
        .unwrap_or(20);
    let year = u16::from(century) * 100 + u16::from(year_in_century);
    if year < 1970 {
        return Err(RtcError::BeforeEpoch { year });
    }
    let day = check("day", regs.day, 1..=days_in_month(year, month))?;
    Ok(DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CMOS that serves scripted register files, switching to the next
    /// one after a given number of reads, with "update in progress" set for
    /// the first `busy_polls` status-A reads.
    struct FakeCmos {
        files: Vec<(usize, [u8; 0x40])>,
        reads: usize,
        busy_polls: u32,
    }

    impl FakeCmos {
        fn steady(file: [u8; 0x40]) -> Self {
            Self {
                files: vec![(usize::MAX, file)],
                reads: 0,
                busy_polls: 0,
            }
        }
    }

    impl Cmos for FakeCmos {
        fn read(&mut self, register: u8) -> u8 {
            self.reads += 1;
            if register == reg::STATUS_A && self.busy_polls > 0 {
                self.busy_polls -= 1;
                return STATUS_A_UPDATE_IN_PROGRESS;
            }
            let mut budget = self.reads;
            for (span, file) in &self.files {
                if budget <= *span {
                    return file[usize::from(register)];
                }
                budget -= span;
            }
            self.files
                .last()
                .map_or(0xff, |f| f.1[usize::from(register)])
        }
    }

    fn file(regs: RtcRegisters) -> [u8; 0x40] {
        let mut f = [0u8; 0x40];
        f[usize::from(reg::SECONDS)] = regs.seconds;
        f[usize::from(reg::MINUTES)] = regs.minutes;
        f[usize::from(reg::HOURS)] = regs.hours;
        f[usize::from(reg::DAY)] = regs.day;
        f[usize::from(reg::MONTH)] = regs.month;
        f[usize::from(reg::YEAR)] = regs.year;
        f[usize::from(reg::CENTURY)] = regs.century;
        f[usize::from(reg::STATUS_B)] = regs.status_b;
        f
    }

    /// 2025-06-30 23:59:58 in QEMU's default encoding (BCD, 24 h).
    const QEMU_BCD: RtcRegisters = RtcRegisters {
        seconds: 0x58,
        minutes: 0x59,
        hours: 0x23,
        day: 0x30,
        month: 0x06,
        year: 0x25,
        century: 0x20,
        status_b: STATUS_B_24_HOUR,
    };

    #[test]
    fn bcd() {
        assert_eq!(bcd_to_binary(0x00), Some(0));
        assert_eq!(bcd_to_binary(0x59), Some(59));
        assert_eq!(bcd_to_binary(0x99), Some(99));
        assert_eq!(bcd_to_binary(0x5a), None);
        assert_eq!(bcd_to_binary(0xa0), None);
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2100));
        assert!(!is_leap_year(2025));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2025, 13), 0);
    }

    #[test]
    fn known_unix_times() {
        let at = |year, month, day, hour, minute, second| {
            DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
            }
            .unix_seconds()
        };
        assert_eq!(at(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(at(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(at(2024, 2, 29, 12, 0, 0), 1_709_208_000);
        assert_eq!(at(2038, 1, 19, 3, 14, 7), 2_147_483_647);
        assert_eq!(at(2100, 3, 1, 0, 0, 0), 4_107_542_400);
    }

    #[test]
    fn days_agree_with_counting() {
        // Walk every day from 1970 to 2400 and compare with the formula.
        let mut n = 0u64;
        for year in 1970..2400u16 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_since_epoch(year, month, day),
                        n,
                        "{year}-{month}-{day}"
                    );
                    n += 1;
                }
            }
        }
    }

    #[test]
    fn decodes_bcd_24h() {
        let dt = decode(&QEMU_BCD).unwrap();
        assert_eq!(
            dt,
            DateTime {
                year: 2025,
                month: 6,
                day: 30,
                hour: 23,
                minute: 59,
                second: 58
            }
        );
        assert_eq!(dt.unix_seconds(), 1_751_327_998);
    }

    #[test]
    fn decodes_binary_and_12h() {
        let binary_12h = RtcRegisters {
            seconds: 58,
            minutes: 59,
            hours: 11 | HOUR_PM,
            day: 30,
            month: 6,
            year: 25,
            century: 20,
            status_b: STATUS_B_BINARY,
        };
        assert_eq!(decode(&binary_12h).unwrap().hour, 23);
        let midnight = RtcRegisters {
            hours: 12,
            ..binary_12h
        };
        assert_eq!(decode(&midnight).unwrap().hour, 0);
        let noon = RtcRegisters {
            hours: 12 | HOUR_PM,
            ..binary_12h
        };
        assert_eq!(decode(&noon).unwrap().hour, 12);
        let bcd_pm = RtcRegisters {
            hours: 0x12 | HOUR_PM,
            status_b: 0,
            ..QEMU_BCD
        };
        assert_eq!(decode(&bcd_pm).unwrap().hour, 12);
        let bcd_1am = RtcRegisters {
            hours: 0x01,
            status_b: 0,
            ..QEMU_BCD
        };
        assert_eq!(decode(&bcd_1am).unwrap().hour, 1);
        let zero_12h = RtcRegisters {
            hours: 0,
            ..binary_12h
        };
        assert!(matches!(
            decode(&zero_12h),
            Err(RtcError::BadField { field: "hours", .. })
        ));
    }

    #[test]
    fn century_register_or_20xx() {
        let no_century = RtcRegisters {
            century: 0xff,
            ..QEMU_BCD
        };
        assert_eq!(decode(&no_century).unwrap().year, 2025);
        let zero = RtcRegisters {
            century: 0,
            ..QEMU_BCD
        };
        assert_eq!(decode(&zero).unwrap().year, 2025);
        let c21 = RtcRegisters {
            century: 0x21,
            year: 0x01,
            ..QEMU_BCD
        };
        assert_eq!(decode(&c21).unwrap().year, 2101);
        let c19 = RtcRegisters {
            century: 0x19,
            year: 0x99,
            ..QEMU_BCD
        };
        assert_eq!(decode(&c19).unwrap().year, 1999);
        let old = RtcRegisters {
            century: 0x19,
            year: 0x60,
            ..QEMU_BCD
        };
        assert_eq!(decode(&old), Err(RtcError::BeforeEpoch { year: 1960 }));
    }

    #[test]
    fn rejects_impossible_dates() {
        let feb30 = RtcRegisters {
            month: 0x02,
            day: 0x30,
            ..QEMU_BCD
        };
        assert!(matches!(
            decode(&feb30),
            Err(RtcError::BadField { field: "day", .. })
        ));
        let leap = RtcRegisters {
            month: 0x02,
            day: 0x29,
            year: 0x24,
            ..QEMU_BCD
        };
        assert_eq!(decode(&leap).unwrap().day, 29);
        let not_bcd = RtcRegisters {
            minutes: 0x5a,
            ..QEMU_BCD
        };
        assert!(matches!(
            decode(&not_bcd),
            Err(RtcError::BadField {
                field: "minutes",
                ..
            })
        ));
        let month0 = RtcRegisters {
            month: 0,
            ..QEMU_BCD
        };
        assert!(matches!(
            decode(&month0),
            Err(RtcError::BadField { field: "month", .. })
        ));
        let sec60 = RtcRegisters {
            seconds: 60,
            status_b: STATUS_B_BINARY | STATUS_B_24_HOUR,
            ..QEMU_BCD
        };
        assert!(matches!(
            decode(&sec60),
            Err(RtcError::BadField {
                field: "seconds",
                ..
            })
        ));
    }

    #[test]
    fn waits_for_update_and_rereads_until_stable() {
        let first = file(QEMU_BCD);
        let second = file(RtcRegisters {
            seconds: 0x59,
            ..QEMU_BCD
        });
        // One read (status A + 8 registers) of the old second, then the new one.
        let mut cmos = FakeCmos {
            files: vec![(9, first), (usize::MAX, second)],
            reads: 0,
            busy_polls: 3,
        };
        let regs = read_registers(&mut cmos, 100).unwrap();
        assert_eq!(regs.seconds, 0x59);
        // Presence check (a busy status A is enough), 2 more busy polls, then
        // three reads of 9 registers each (the first one torn).
        assert_eq!(cmos.reads, 1 + 2 + 27);
    }

    #[test]
    fn notices_a_missing_rtc_at_once() {
        // No device: every port reads 0xff.
        let mut absent = FakeCmos::steady([0xff; 0x40]);
        assert_eq!(read_registers(&mut absent, 1000), Err(RtcError::Absent));
        assert_eq!(absent.reads, 2);
    }

    #[test]
    fn gives_up_on_a_stuck_rtc() {
        let mut stuck = FakeCmos::steady(file(QEMU_BCD));
        stuck.busy_polls = u32::MAX;
        assert_eq!(read_registers(&mut stuck, 1000), Err(RtcError::NeverReady));
        // The presence check (status A only), then the polls.
        assert_eq!(stuck.reads, 1 + 1000);
    }

    #[test]
    fn gives_up_when_reads_never_agree() {
        let files = (0..10u8)
            .map(|s| {
                (
                    9,
                    file(RtcRegisters {
                        seconds: s,
                        ..QEMU_BCD
                    }),
                )
            })
            .collect();
        let mut cmos = FakeCmos {
            files,
            reads: 0,
            busy_polls: 0,
        };
        assert_eq!(read_registers(&mut cmos, 10), Err(RtcError::Unstable));
    }

    #[test]
    fn errors_read_well() {
        let e = RtcError::BadField {
            field: "day",
            raw: 0x32,
        };
        assert_eq!(e.to_string(), "the RTC day register holds 0x32");
    }
}
