//! mmnif: the isles' shared-memory network ([`MmnifNic`] over the mmnif
//! part of the isle region), Ethernet frames between isles and the Linux
//! host's `isles mmnif` bridge. This kernel is node [`crate::isle::id`].
//!
//! There is no card interrupt: under uhyve a frame for a sleeping isle
//! rings its doorbell, whose interrupt ([`crate::isle`]) calls the stack's
//! hook through [`crate::isle::set_doorbell_hook`]. Without doorbells
//! (QEMU isles) a kernel thread calls the hook every [`POLL_PERIOD`], so
//! the stack looks at the rings that often.
//!
//! The image carries no `.note.hermit` NIC note: launchers attach no card.

use core::time::Duration;

use hermit_drivers::mmnif::{Config, MmnifNic, MmnifRing};
use hermit_interface::isle::{HOST_NODE, MAX_ISLES};

use super::OpenError;
use crate::isle::{IsleNotify, IsleRegion};

/// The model name.
pub(super) const NAME: &str = "mmnif";

/// The driver type.
pub(super) type Nic = MmnifNic<IsleRegion, IsleNotify>;

/// How often the stack looks at the rings when no doorbell wakes it.
pub(super) const POLL_PERIOD: Duration = Duration::from_millis(1);

/// The ring layout every node uses: the isles and the host.
const CONFIG: Config = Config::new(MAX_ISLES + 1);

// The host's node must be a node of the layout.
const _: () = assert!(HOST_NODE < MAX_ISLES + 1);

/// Nothing to acknowledge: mmnif has no card interrupt.
pub(super) fn ack() {}

/// Attaches this isle to the mmnif rings.
pub(super) fn open(_apic_id: u8) -> Result<Nic, OpenError> {
    let Some(me) = crate::isle::id() else {
        log::warn!("mmnif: this VM is not an isle (start it with HERMIT_ISLE=<n>)");
        return Err(OpenError::NotFound);
    };
    let region = crate::isle::mmnif_region().map_err(|e| {
        log::warn!("mmnif: {e}");
        OpenError::Driver("the isle's shared region cannot be used")
    })?;
    let notify = crate::isle::notify();
    let doorbells = notify.has_doorbells();
    let ring = MmnifRing::new(region, notify, me as usize, CONFIG).map_err(|e| {
        log::warn!("mmnif: {e}");
        OpenError::Driver("the mmnif rings refused this isle")
    })?;
    if doorbells {
        crate::isle::set_doorbell_hook(super::call_hook);
    } else {
        crate::thread::Builder::new()
            .spawn(|| {
                loop {
                    crate::thread::sleep(POLL_PERIOD);
                    super::call_hook();
                }
            })
            .map_err(|_| OpenError::Driver("no thread to poll the mmnif rings"))?;
    }
    log::info!(
        "nic: mmnif node {me} of {}, {}",
        CONFIG.isles,
        if doorbells { "doorbells" } else { "polling" }
    );
    Ok(MmnifNic::new(ring, CONFIG.isles as usize))
}

/// The stack's defaults on mmnif: isle `n`'s address, the host as gateway,
/// the mmnif subnet's prefix.
pub(super) fn default_network() -> Option<super::NetDefaults> {
    let me = crate::isle::id()?;
    Some(super::NetDefaults {
        address: hermit_interface::isle::isle_ip(me).into(),
        prefix_len: hermit_interface::isle::PREFIX_LEN,
        gateway: hermit_interface::isle::host_ip().into(),
    })
}
