//! Reading the probes' ring buffer from the agent's event loop.

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

/// Records drained per call at most, so the event loop's timer and signals stay
/// responsive under load.
pub const MAX_RECORDS_PER_DRAIN: usize = 65_536;

/// The ring buffer, registered with the runtime so the loop can wait for records.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    pub fn new(ring: RingBuf<MapData>) -> Result<Self> {
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
        // long as the RingBuf lives, and the RingBuf lives inside this AsyncFd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the ring buffer")?;
        Ok(Self { ring })
    }

    /// Waits until the kernel signals records (a wakeup), then drains; see [`Self::drain`].
    pub async fn drain_when_readable(&mut self, f: impl FnMut(&[u8])) -> Result<bool> {
        let mut guard = self.ring.readable_mut().await.context("ring buffer poll")?;
        let emptied = drain(guard.get_inner_mut(), f);
        guard.clear_ready();
        Ok(emptied)
    }

    /// Hands every waiting record to `f`, up to [`MAX_RECORDS_PER_DRAIN`]: true if the
    /// ring was emptied.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> bool {
        drain(self.ring.get_mut(), f)
    }
}

fn drain(ring: &mut RingBuf<MapData>, mut f: impl FnMut(&[u8])) -> bool {
    for _ in 0..MAX_RECORDS_PER_DRAIN {
        let Some(item) = ring.next() else {
            return true;
        };
        f(&item);
    }
    false
}
