//! The versioned header at offset 0 of a region (or sub-region), so that
//! isles started by different processes either agree on one layout or refuse
//! cleanly.
//!
//! Layout (one 64-byte line, all little-endian `u32`):
//! `0` magic, `4` version, `8` state (0 empty, 1 being formatted, 2 ready),
//! `12` number of parameters, `16..64` up to [`MAX_PARAMS`] parameters.
//! The first user to find the state empty claims it with a compare-and-swap,
//! zeroes the control areas it is told about, writes the fields and
//! publishes state 2; everyone else waits for state 2 and compares.

use crate::notify::Notify;
use crate::region::Region;
use core::time::Duration;

/// Size of the header line.
pub const HEADER_SIZE: usize = 64;
/// Most layout parameters a header holds.
pub const MAX_PARAMS: usize = 12;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_STATE: usize = 8;
const OFF_COUNT: usize = 12;
const OFF_PARAMS: usize = 16;

const STATE_EMPTY: u32 = 0;
const STATE_FORMATTING: u32 = 1;
const STATE_READY: u32 = 2;

/// How long [`attach`] waits for another user to finish formatting:
/// this many doorbell waits of [`ATTACH_WAIT_STEP`].
pub const ATTACH_WAIT_ROUNDS: u32 = 20_000;
/// One step of waiting for a formatter.
pub const ATTACH_WAIT_STEP: Duration = Duration::from_millis(1);

/// Why a region's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The region cannot hold the layout.
    #[error("region of {have} bytes is smaller than the {need} bytes the layout needs")]
    RegionTooSmall {
        /// Bytes the layout needs.
        need: usize,
        /// Bytes the region has.
        have: usize,
    },
    /// The region holds another protocol's header, or garbage.
    #[error("region magic {found:#010x} is not {expected:#010x}")]
    BadMagic {
        /// Magic we use.
        expected: u32,
        /// Magic found.
        found: u32,
    },
    /// Formatted by an incompatible version.
    #[error("region has layout version {found}, this build speaks {expected}")]
    VersionMismatch {
        /// Our version.
        expected: u32,
        /// Version found.
        found: u32,
    },
    /// Formatted with a different layout (number of UEs, sizes, ...).
    #[error("layout parameter {index} is {found} in the region but {expected} here")]
    ParamMismatch {
        /// Which parameter (protocol-specific order).
        index: usize,
        /// Our value.
        expected: u32,
        /// Value found.
        found: u32,
    },
    /// The header holds another number of layout parameters.
    #[error("region header has {found} layout parameters, this build expects {expected}")]
    ParamCount {
        /// Our count.
        expected: u32,
        /// Count found.
        found: u32,
    },
    /// The state word holds no known state.
    #[error("region header state {0} is unknown (corrupt header)")]
    BadState(u32),
    /// Another user claimed the header but never finished formatting it.
    #[error("timed out waiting for another user to format the region")]
    Timeout,
    /// More parameters than fit the header (a bug of the protocol crate).
    #[error("too many layout parameters")]
    TooManyParams,
}

/// How [`attach`] found the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// This caller formatted it.
    Formatted,
    /// Someone else had formatted it compatibly.
    Joined,
}

/// What a protocol expects of its region's header.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Protocol magic.
    pub magic: u32,
    /// Layout version.
    pub version: u32,
    /// Layout parameters (at most [`MAX_PARAMS`]) every user must agree on.
    pub params: &'a [u32],
    /// Bytes the layout needs.
    pub need: usize,
    /// Byte ranges (offset, length) the formatter clears before publishing.
    pub zero: &'a [(usize, usize)],
}

/// Attaches `me` to the header of `region`, formatting it if it is empty,
/// otherwise waiting for a concurrent formatter and checking the result.
pub fn attach<R: Region, N: Notify>(
    region: &R,
    notify: &N,
    me: usize,
    spec: &Spec<'_>,
) -> Result<Attached, HeaderError> {
    if spec.params.len() > MAX_PARAMS {
        return Err(HeaderError::TooManyParams);
    }
    let have = region.len();
    let need = spec.need.max(HEADER_SIZE);
    if have < need {
        return Err(HeaderError::RegionTooSmall { need, have });
    }
    let mut rounds = 0;
    loop {
        match region.load_u32(OFF_STATE) {
            STATE_EMPTY => {
                if region
                    .compare_exchange_u32(OFF_STATE, STATE_EMPTY, STATE_FORMATTING)
                    .is_ok()
                {
                    format(region, spec);
                    return Ok(Attached::Formatted);
                }
            }
            STATE_FORMATTING => {
                rounds += 1;
                if rounds > ATTACH_WAIT_ROUNDS {
                    return Err(HeaderError::Timeout);
                }
                notify.wait(me, ATTACH_WAIT_STEP);
            }
            STATE_READY => {
                check(region, spec.magic, spec.version, spec.params)?;
                return Ok(Attached::Joined);
            }
            other => return Err(HeaderError::BadState(other)),
        }
    }
}

fn format<R: Region>(region: &R, spec: &Spec<'_>) {
    const ZEROS: [u8; 512] = [0; 512];
    for &(offset, len) in spec.zero {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len());
            region.write(offset + done, &ZEROS[..n]);
            done += n;
        }
    }
    region.store_u32(OFF_MAGIC, spec.magic);
    region.store_u32(OFF_VERSION, spec.version);
    // Bounded by MAX_PARAMS, checked by the caller.
    region.store_u32(OFF_COUNT, spec.params.len() as u32);
    for (i, &p) in spec.params.iter().enumerate() {
        region.store_u32(OFF_PARAMS + 4 * i, p);
    }
    region.store_u32(OFF_STATE, STATE_READY);
}

/// Reads the `N` parameters of a ready header with our magic and version,
/// without changing anything (for tools that learn the layout from the
/// region, e.g. a host cleaning up after a killed UE).
pub fn read_params<R: Region, const N: usize>(
    region: &R,
    magic: u32,
    version: u32,
) -> Result<[u32; N], HeaderError> {
    let mut params = [0u32; N];
    if region.len() >= HEADER_SIZE && N <= MAX_PARAMS {
        for (i, p) in params.iter_mut().enumerate() {
            *p = region.load_u32(OFF_PARAMS + 4 * i);
        }
    }
    check(region, magic, version, &params)?;
    Ok(params)
}

/// Checks a ready header against ours without changing anything.
pub fn check<R: Region>(
    region: &R,
    magic: u32,
    version: u32,
    params: &[u32],
) -> Result<(), HeaderError> {
    if region.len() < HEADER_SIZE {
        return Err(HeaderError::RegionTooSmall {
            need: HEADER_SIZE,
            have: region.len(),
        });
    }
    let state = region.load_u32(OFF_STATE);
    if state != STATE_READY {
        return Err(HeaderError::BadState(state));
    }
    let found = region.load_u32(OFF_MAGIC);
    if found != magic {
        return Err(HeaderError::BadMagic {
            expected: magic,
            found,
        });
    }
    let found = region.load_u32(OFF_VERSION);
    if found != version {
        return Err(HeaderError::VersionMismatch {
            expected: version,
            found,
        });
    }
    let count = region.load_u32(OFF_COUNT);
    if count as usize != params.len() {
        return Err(HeaderError::ParamCount {
            // At most MAX_PARAMS, checked by `attach`.
            expected: params.len() as u32,
            found: count,
        });
    }
    for (index, &expected) in params.iter().enumerate() {
        let found = region.load_u32(OFF_PARAMS + 4 * index);
        if found != expected {
            return Err(HeaderError::ParamMismatch {
                index,
                expected,
                found,
            });
        }
    }
    Ok(())
}
