//! Following the platform: a full comparison at start (and whenever a change may have been
//! missed), then the event stream, with `GET changes?since=cursor` (or a listing diff against a
//! platform without `changes`) every 10 s while the stream is down. Every path ends in the same
//! apply functions of `pull`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::pull::Applied;
use super::{Engine, Result, SyncError};
use crate::remote::{subscribe, StreamItem};

const POLL_INTERVAL: Duration = Duration::from_secs(10);
const MAX_OFFLINE_WAIT: Duration = Duration::from_secs(30);

impl Engine {
    /// Brings the index up to the platform: replays changes since the cursor where the platform
    /// keeps a change log, otherwise compares a full listing.
    pub async fn resync(self: &Arc<Self>) -> Result<()> {
        let features = self.client.features().await?;
        if let (true, Some(mut cursor)) = (features.changes, self.index.cursor()) {
            loop {
                let page = self.client.changes(cursor, 1000).await?;
                let mut needs_listing = false;
                for change in &page.changes {
                    let applied = self
                        .apply_blocking_event(change.event.clone(), Some(change.seq))
                        .await?;
                    needs_listing |= applied.resync;
                }
                if needs_listing {
                    return self.resync_listing().await;
                }
                cursor = page.cursor;
                self.index.set_cursor(cursor)?;
                if !page.has_more {
                    return Ok(());
                }
            }
        }
        self.resync_listing().await
    }

    async fn resync_listing(self: &Arc<Self>) -> Result<()> {
        let listing = self.client.nodes().await?;
        let engine = self.clone();
        let applied = tokio::task::spawn_blocking(move || {
            engine.apply_listing(&listing.nodes, listing.cursor)
        })
        .await
        .map_err(|e| SyncError::Conflict(e.to_string()))??;
        self.fetch_in_background(applied);
        Ok(())
    }

    async fn apply_blocking_event(
        self: &Arc<Self>,
        event: crate::protocol::Event,
        seq: Option<u64>,
    ) -> Result<Applied> {
        let engine = self.clone();
        let applied = tokio::task::spawn_blocking(move || engine.apply_event(&event, seq))
            .await
            .map_err(|e| SyncError::Conflict(e.to_string()))??;
        let resync = applied.resync;
        self.fetch_in_background(applied);
        Ok(Applied {
            resync,
            fetch: Vec::new(),
        })
    }

    fn fetch_in_background(self: &Arc<Self>, applied: Applied) {
        if !self.prefetching() {
            return;
        }
        for ino in applied.fetch {
            let engine = self.clone();
            self.runtime.spawn(async move {
                let _ = engine.fetch(ino).await;
            });
        }
    }
}

/// Follows the platform until `stop` turns true.
pub async fn follow(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(1);
    // First contact: the mount already answers from the index; this only brings it up to date.
    loop {
        match engine.resync().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the platform; the mount works from the mirror");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                wait = (wait * 2).min(MAX_OFFLINE_WAIT);
            }
        }
    }
    if engine.prefetching() {
        let hydrate = engine.clone();
        tokio::spawn(async move { hydrate.fetch_all().await });
    }

    let replay_id = match engine.client.features().await.map(|f| f.changes) {
        Ok(true) => engine.index.cursor(),
        _ => None,
    };
    let mut stream = subscribe(engine.client.clone(), replay_id);
    let mut stream_up = false;
    let mut first_connect = true;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = stream.recv() => {
                let Some(item) = item else { return };
                match item {
                    StreamItem::Connected { replayed } => {
                        stream_up = true;
                        if !replayed && !first_connect {
                            // Changes may have been missed while disconnected.
                            report(engine.resync().await);
                        }
                        first_connect = false;
                    }
                    StreamItem::Event { seq, event } => match engine.apply_blocking_event(event, seq).await {
                        Ok(applied) if applied.resync => report(engine.resync().await),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "could not apply a platform change; comparing a full listing");
                            report(engine.resync().await);
                        }
                    },
                    StreamItem::Disconnected { error } => {
                        if stream_up {
                            tracing::warn!(%error, "event stream down; polling every 10 s");
                        }
                        stream_up = false;
                    }
                }
            }
            _ = poll.tick(), if !stream_up => report(engine.resync().await),
            _ = stop.changed() => return,
        }
    }
}

fn report(result: Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "resync failed; trying again later");
    }
}
