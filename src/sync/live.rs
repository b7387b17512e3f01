//! Live sync across devices, through the platform (local-host.md §3, steps 7 to 9). An open tab's
//! snapshot, relayed to this mount's local server, goes to the platform at once as a `live-sync`
//! control frame (`POST control`), which the platform forwards to the account's other streams;
//! while the platform can't be reached, the newest snapshot of each file waits (for five minutes,
//! as Hyperclay Local keeps them) and goes with the file's next push as `snapshotHtml` and
//! `senderId` on `PUT content`, which the platform relays the same way. Frames from other devices
//! are handed to the local server's tabs; this device's own (its id as `sender`) are dropped.
//!
//! Decided: at once through `control`, not only with the push, because a page's save reaches the
//! mount 150 ms before its snapshot (the library waits that long to relay), and the mount pushes
//! a save at once: a snapshot held for "the next push" would ride on the following save's push,
//! one save late.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::cache::RelPath;
use crate::protocol::{LiveSnapshot, LiveSyncFrame};

/// How long a waiting snapshot stays worth sending (Hyperclay Local's rule).
const SNAPSHOT_FRESH_FOR: Duration = Duration::from_secs(5 * 60);
/// Snapshot bytes kept waiting, all files together; the oldest go first.
const WAITING_BYTES: usize = 32 * 1024 * 1024;
/// Frames from other devices kept for a slow local server before it misses some.
pub(super) const FRAMES_KEPT: usize = 4;

/// Another device's snapshot of one of this mirror's pages.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub rel: RelPath,
    pub html: Arc<str>,
    pub sender: String,
}

/// This mirror's device id: made once, kept in the index.
pub(super) fn device_id(index: &crate::cache::Index) -> String {
    if let Ok(Some(id)) = index.meta("device_id") {
        return id;
    }
    let id: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    if let Err(e) = index.set_meta("device_id", &id) {
        tracing::warn!(error = %e, "could not keep this device's id; live sync may echo once");
    }
    id
}

impl Engine {
    /// Sends an open tab's snapshot of `rel` to the account's other devices.
    pub async fn relay_snapshot(self: &Arc<Self>, rel: &RelPath, html: String) {
        if !self.sync_on() || !self.verified.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(ino) = self.ino_of_path(rel) else {
            return;
        };
        let frame = crate::protocol::Event::LiveSync(LiveSyncFrame {
            file: rel.to_string(),
            html,
            sender: self.device_id.clone(),
        });
        let Ok(envelope) = serde_json::to_value(&frame) else {
            return;
        };
        if let Err(e) = self.client.control(&envelope).await {
            tracing::debug!(path = %rel, error = %e, "could not relay a live-sync snapshot now; it goes with the next push");
            if let crate::protocol::Event::LiveSync(f) = frame {
                self.keep_snapshot(ino, f.html);
            }
        }
    }

    /// Keeps `html` as the snapshot for `ino`'s next push (in its cell).
    pub(super) fn keep_snapshot(&self, ino: u64, html: String) {
        self.cells
            .keep_snapshot(ino, html, SNAPSHOT_FRESH_FOR, WAITING_BYTES);
    }

    /// The snapshot waiting for `ino`'s next push, if a fresh one is. A push that fails gives
    /// it back (`keep_snapshot`), so a failed PUT does not lose it.
    pub(super) fn take_snapshot(&self, ino: u64) -> Option<LiveSnapshot> {
        self.cells
            .take_snapshot(ino, SNAPSHOT_FRESH_FOR)
            .map(|html| LiveSnapshot {
                html,
                sender: self.device_id.clone(),
            })
    }

    /// Every frame from another device from now on.
    pub fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveFrame> {
        self.live_frames.subscribe()
    }

    /// A `live-sync` frame from the stream: for the local server's tabs, unless it is our own.
    pub(super) fn live_frame_arrived(&self, frame: &LiveSyncFrame) {
        if frame.sender == self.device_id || frame.html.is_empty() {
            return;
        }
        // The name came from the network: checked like every platform name, though it only
        // picks a channel and never reaches the disk.
        let Ok(rel) = RelPath::parse(&frame.file) else {
            tracing::debug!("a live-sync frame named no valid path: dropped");
            return;
        };
        let _ = self.live_frames.send(LiveFrame {
            rel,
            html: Arc::from(frame.html.as_str()),
            sender: frame.sender.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_snapshots_are_bounded_and_taken_once() {
        let w = crate::sync::cell::Cells::default();
        let keep = |ino, html| w.keep_snapshot(ino, html, SNAPSHOT_FRESH_FOR, WAITING_BYTES);
        keep(1, "a".repeat(20 * 1024 * 1024));
        keep(2, "b".repeat(20 * 1024 * 1024));
        let take = |ino| w.take_snapshot(ino, SNAPSHOT_FRESH_FOR);
        assert!(take(1).is_none(), "the oldest went over the byte limit");
        assert_eq!(take(2).map(|h| h.len()), Some(20 * 1024 * 1024));
        assert!(take(2).is_none(), "taken once");
    }
}
