//! Following the platform. Online: the event stream, with `GET changes?since=cursor` (or a
//! listing diff against a platform without `changes`) every 10 s while the stream is down. When
//! the platform can't be reached the engine goes quiet: no retry storm, no log flood, a cheap
//! `GET status` on a growing interval (at most every 30 s), at once when the system reports a
//! network change (`netwatch`), and when it answers again a full reconciliation. Every path ends in the same apply functions of `pull`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::pull::Applied;
use super::status::ProblemKind;
use super::{Engine, Result, SyncError};
use crate::remote::{subscribe, StreamItem};

const POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Stream events applied in one hand-off at most: a burst's echoes come queued, and a run this
/// long is a few milliseconds of index work, after which the loop looks at its other signals.
const EVENTS_AT_ONCE: usize = 256;

/// Why a run of events stopped (`apply_blocking_events`).
enum Stopped {
    Done,
    /// A change could not be placed: compare the platform.
    Resync,
    Failed(SyncError),
}

/// The item taken from the stream and held back, else the stream's next.
async fn next_item(
    held: &mut Option<StreamItem>,
    stream: &mut tokio::sync::mpsc::Receiver<StreamItem>,
) -> Option<StreamItem> {
    match held.take() {
        Some(item) => Some(item),
        None => stream.recv().await,
    }
}
const MAX_OFFLINE_WAIT: Duration = Duration::from_secs(30);
/// For this long into an outage the platform is looked for every second; after it, the wait
/// doubles up to `MAX_OFFLINE_WAIT`. Decided (issue 26): most outages are short (a restart, a
/// deploy, a flapping link), and saves made during one should be up within 2 s of its end, not
/// 6-8 s; a `GET status` a second for 30 s is no storm, and a long outage still costs one
/// request every 30 s.
pub(super) const FAST_CHECKS_FOR: Duration = Duration::from_secs(30);
const NETWORK_SETTLE: Duration = Duration::from_millis(500);
const NETWORK_CHECK_GAP: Duration = Duration::from_secs(5);

impl Engine {
    /// Brings the index up to the platform: replays changes since the cursor where the platform
    /// keeps a change log, otherwise compares a full listing.
    pub async fn resync(self: &Arc<Self>) -> Result<()> {
        let features = self.client.features().await?;
        if let (true, Some(mut cursor)) = (features.changes, self.index.cursor()) {
            loop {
                let page = match self.client.changes(cursor, 1000).await {
                    // Too large to take as one page: the listing says the same in less.
                    Err(crate::remote::RemoteError::Oversized { .. }) => {
                        return self.resync_listing().await
                    }
                    page => page?,
                };
                let events = page
                    .changes
                    .iter()
                    .map(|change| (Some(change.seq), change.event.clone()))
                    .collect();
                match self.apply_blocking_events(events).await.0 {
                    Stopped::Done => {}
                    // The listing covers the rest of the page.
                    Stopped::Resync => return self.resync_listing().await,
                    Stopped::Failed(e) => return Err(e),
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

    pub(super) async fn resync_listing(self: &Arc<Self>) -> Result<()> {
        let listing = self
            .client
            .nodes_at_most(self.settings.max_listing_nodes)
            .await?;
        let engine = self.clone();
        let applied = tokio::task::spawn_blocking(move || {
            engine.apply_listing(listing.nodes, &listing.left_out, listing.cursor)
        })
        .await
        .map_err(|e| SyncError::Bug(e.to_string()))??;
        self.act_in_background(applied);
        Ok(())
    }

    /// Applies `events` in order on the blocking pool in one hand-off, up to the first that
    /// asks for a full comparison or fails (that one is applied, and ends the run); starts the
    /// pushes and fetches they ask for. Answers why it stopped and the events not applied yet.
    /// One hand-off per event made a replay after a reconnect (thousands of changes) two thread
    /// switches per change, and so the echoes of a burst whenever the follower fell behind
    /// (BENCHMARKS.md, issue 25).
    async fn apply_blocking_events(
        self: &Arc<Self>,
        events: Vec<(Option<u64>, crate::protocol::Event)>,
    ) -> (Stopped, Vec<(Option<u64>, crate::protocol::Event)>) {
        let engine = self.clone();
        let run = tokio::task::spawn_blocking(move || {
            let mut applied = Vec::new();
            let mut events = events.into_iter();
            let mut stopped = Stopped::Done;
            for (seq, event) in events.by_ref() {
                match engine.apply_event(&event, seq) {
                    Ok(a) => {
                        let resync = a.resync;
                        applied.push(a);
                        if resync {
                            stopped = Stopped::Resync;
                            break;
                        }
                    }
                    Err(e) => {
                        stopped = Stopped::Failed(e);
                        break;
                    }
                }
            }
            (applied, stopped, events.collect::<Vec<_>>())
        })
        .await;
        match run {
            Ok((applied, stopped, rest)) => {
                for a in applied {
                    self.act_in_background(a);
                }
                (stopped, rest)
            }
            // A bug stopped the run: the comparison that follows covers what was left.
            Err(e) => (Stopped::Failed(SyncError::Bug(e.to_string())), Vec::new()),
        }
    }

    /// Applies events from the stream in order; a change that can't be placed, or fails, makes
    /// the platform compared before the next.
    async fn apply_streamed(
        self: &Arc<Self>,
        mut events: Vec<(Option<u64>, crate::protocol::Event)>,
    ) {
        while !events.is_empty() {
            let (stopped, rest) = self.apply_blocking_events(events).await;
            events = rest;
            let outcome = match stopped {
                Stopped::Done => Ok(()),
                Stopped::Resync => self.resync().await,
                Stopped::Failed(e) => {
                    tracing::warn!(error = %e, "could not apply a platform change; comparing a full listing");
                    self.resync().await
                }
            };
            if report(outcome).is_ok() {
                self.mark_synced();
            }
        }
    }

    /// Starts the pushes and fetches an apply asked for.
    fn act_in_background(self: &Arc<Self>, applied: Applied) {
        for ino in applied.push {
            self.request_push(ino);
        }
        if !self.prefetching() {
            return;
        }
        for ino in applied.fetch {
            self.queue_fetch(ino);
        }
    }

    /// Notes a failure to reach the platform: once, quietly.
    pub(super) fn went_offline(&self, error: &SyncError) {
        // A platform that answers with faults (5xx) was reached: say so, not "can't be reached".
        let faulting = matches!(
            error.cause(),
            SyncError::Remote(crate::remote::RemoteError::Server { .. })
        );
        if self.online.swap(false, Ordering::SeqCst) {
            match faulting {
                true => {
                    tracing::warn!(%error, "the platform answers with faults; working from the mirror, checking quietly for it to recover")
                }
                false => {
                    tracing::warn!(%error, "offline: the platform can't be reached; working from the mirror, checking quietly for it to come back")
                }
            }
        }
        let mut message = match faulting {
            true => format!("The platform at {} answers with errors ({error}); changes are kept and go up when it works again.", self.client.url()),
            false => format!("The platform can't be reached ({}); changes are kept and go up when it is back.", self.client.url()),
        };
        if !self.first_listing.is_listed() && !faulting {
            // Never an empty account presented as the truth.
            message = format!("Not listed yet: the platform can't be reached ({}); the mount shows what the mirror holds, and the account appears once it answers.", self.client.url());
        }
        self.status.report(ProblemKind::Unreachable, None, message);
    }

    pub(super) fn came_online(&self) {
        if !self.online.swap(true, Ordering::SeqCst) {
            tracing::info!("online: the platform answers again; comparing both sides");
            // A push sent while the platform was away may hang on a dead connection until its
            // time limit: abandoned, it is sent again at once.
            self.client.abandon_requests();
            // Pushes waiting out a retry delay are sent now, not at the end of their timer.
            self.cells.reconnected.notify_waiters();
        }
        self.status.clear_kind(ProblemKind::Unreachable);
    }

    /// A refusal of the whole account (sign-in, plan), kept for status.
    fn account_problem(&self, e: &SyncError) {
        use crate::remote::RemoteError;
        let (kind, message) = match e {
            SyncError::Remote(RemoteError::Unauthorized) => (ProblemKind::SignedOut, self.status.credentials_refused()),
            SyncError::Remote(RemoteError::Expired) => (ProblemKind::SignedOut, "Your sign-in expired: sign in again with `hyperclay login`. The mount keeps working locally.".to_string()),
            SyncError::Remote(RemoteError::PaymentRequired) => (ProblemKind::PaymentRequired, "Sync needs a paid Hyperclay plan. The mount keeps working locally.".to_string()),
            SyncError::WrongAccount { .. } => (ProblemKind::SignedOut, e.to_string()),
            // A misconfigured address or an attack: shown above being offline.
            SyncError::Remote(RemoteError::Redirected { .. }) => (ProblemKind::BadAnswer, format!("Could not sync: {e}")),
            other => (ProblemKind::Other, format!("Could not sync: {other}")),
        };
        let new = self.status.top().map(|p| p.message) != Some(message.clone());
        if new {
            tracing::warn!(error = %e, "could not sync with the platform");
        }
        self.status.report(kind, None, message);
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::SeqCst)
    }
}

fn report(result: Result<()>) -> Result<()> {
    if let Err(e) = &result {
        tracing::debug!(error = %e, "resync failed; trying again later");
    }
    result
}

/// Follows the platform until `stop` turns true.
pub async fn follow(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut sync_switch = engine.sync_switch.subscribe();
    let mut network = super::netwatch::network_changes();
    loop {
        // Paused: nothing moves until sync is on again.
        while !engine.sync_on() {
            engine
                .first_listing
                .not_listed("sync is off (`hyperclay sync on` turns it on)");
            tokio::select! {
                _ = sync_switch.changed() => {}
                _ = stop.changed() => return,
            }
        }
        if !connect(&engine, &mut stop, &mut network).await {
            return;
        }
        match stay_online(&engine, &mut stop, &mut sync_switch, &mut network).await {
            Leave::Stop => return,
            Leave::Offline | Leave::Paused => {}
        }
    }
}

/// Reconciles with the platform, waiting quietly while it can't be reached. False: stopped.
async fn connect(
    engine: &Arc<Engine>,
    stop: &mut watch::Receiver<bool>,
    network: &mut Option<watch::Receiver<u64>>,
) -> bool {
    let mut wait = Duration::from_secs(1);
    // Only changes from now on are news.
    if let Some(n) = network {
        n.borrow_and_update();
    }
    let mut last_network_check: Option<tokio::time::Instant> = None;
    let outage_began = tokio::time::Instant::now();
    loop {
        match engine.reconcile().await {
            Ok(()) => {
                engine.came_online();
                return true;
            }
            Err(e) if e.is_offline() || e.is_transient() => {
                engine.went_offline(&e);
                engine
                    .first_listing
                    .not_listed("the platform can't be reached");
            }
            Err(e) => {
                // Signed out, unpaid...: the problem status shows; try again later.
                engine.account_problem(&e);
                let why = engine.status.top().map(|p| p.message).unwrap_or_default();
                engine.first_listing.not_listed(&why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                if outage_began.elapsed() >= engine.settings.fast_checks_for {
                    wait = (wait * 2).min(MAX_OFFLINE_WAIT);
                }
            }
            // A push got an answer: the platform is back, reconcile now.
            _ = engine.cells.answered.notified() => {
                tracing::debug!("a push was answered; checking for the platform now");
            }
            _ = super::netwatch::changed(network) => {
                tracing::info!("the network changed; checking for the platform");
                if !after_network_change(engine, network, &mut last_network_check, stop).await {
                    return false;
                }
                wait = Duration::from_secs(1);
            }
            _ = stop.changed() => return false,
        }
    }
}

enum Leave {
    Stop,
    Offline,
    Paused,
}

/// The stream (and polling while it is down) until the platform is gone, sync is paused, or stop.
async fn stay_online(
    engine: &Arc<Engine>,
    stop: &mut watch::Receiver<bool>,
    sync_switch: &mut watch::Receiver<bool>,
    network: &mut Option<watch::Receiver<u64>>,
) -> Leave {
    if engine.prefetching() {
        let hydrate = engine.clone();
        tokio::spawn(async move { hydrate.fetch_all().await });
    }
    if let Some(n) = network {
        n.borrow_and_update();
    }
    let mut stream = subscribe_from_cursor(engine).await;
    let mut last_network_change: Option<tokio::time::Instant> = None;
    let mut stream_up = false;
    let mut first_connect = true;
    // An item taken from the stream behind a run of events, handled next.
    let mut held: Option<StreamItem> = None;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        tokio::select! {
            item = next_item(&mut held, &mut stream) => {
                let Some(item) = item else { return Leave::Stop };
                match item {
                    StreamItem::Connected { replayed } => {
                        stream_up = true;
                        if !replayed && !first_connect {
                            // Changes may have been missed while disconnected.
                            let _ = report(engine.resync().await);
                        }
                        first_connect = false;
                        engine.mark_synced();
                    }
                    StreamItem::Event { seq, event } => {
                        // The events queued behind it go with it (a burst's echoes).
                        let mut events = vec![(seq, event)];
                        while events.len() < EVENTS_AT_ONCE {
                            match stream.try_recv() {
                                Ok(StreamItem::Event { seq, event }) => events.push((seq, event)),
                                Ok(other) => {
                                    held = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        engine.apply_streamed(events).await;
                    }
                    StreamItem::Dropped => {
                        let _ = report(engine.resync_listing().await);
                    }
                    StreamItem::Disconnected { error, closed_by_platform } => {
                        if stream_up {
                            tracing::warn!(%error, "event stream down; polling every 10 s");
                            if closed_by_platform {
                                // The platform ended it (a restart): look now. Gone, it is
                                // offline at once, checked every second and the stream made
                                // anew when it answers; back already, the look catches what
                                // changed. Before, a reading device waited out the stream's
                                // reconnect wait, which grows with each restart (6-30 s after a
                                // few within a minute: the model's long run, seed 2).
                                poll.reset_immediately();
                            }
                        } else if error.is_offline() {
                            // Reconnecting failed too: look now, so that a platform that is gone
                            // shows in status at once. (Not on the first drop: a stream that went
                            // silent is usually replaced at once, and a poll over the same dead
                            // path would only wait for its time limit.)
                            poll.reset_immediately();
                        }
                        stream_up = false;
                    }
                }
            }
            _ = poll.tick(), if !stream_up => match engine.resync().await {
                Ok(()) => engine.mark_synced(),
                Err(e) if e.is_offline() || e.is_transient() => {
                    engine.went_offline(&e);
                    return Leave::Offline;
                }
                Err(e) => tracing::debug!(error = %e, "poll failed"),
            },
            _ = super::netwatch::changed(network) => {
                // The stream's connection may have died with the old network (a new Wi-Fi, a
                // wake from sleep) without a word: replace it now rather than after the silence
                // limit. It replays from the cursor, so nothing is missed.
                if !after_network_change(engine, network, &mut last_network_change, stop).await {
                    return Leave::Stop;
                }
                tracing::info!("the network changed; reconnecting the event stream");
                stream = subscribe_from_cursor(engine).await;
                // The old stream's last word is moot; the new one replays from the cursor.
                held = None;
                stream_up = false;
                first_connect = false;
            }
            _ = sync_switch.changed() => {
                // Off, or off and on again before this loop looked (the watch keeps only the
                // last value): either way what was saved meanwhile never went up, so the outer
                // loop reconnects, and its reconciliation sends it.
                return Leave::Paused;
            }
            _ = stop.changed() => return Leave::Stop,
        }
        if !engine.is_online() {
            // A push found the platform gone.
            return Leave::Offline;
        }
    }
}

/// After a network change: lets it settle (a new route or address often comes before DNS and
/// DHCP are done), never acting more often than NETWORK_CHECK_GAP on a flapping link, then drops
/// the pooled connections (made on the old network, maybe dead without a word) and takes in the
/// changes reported meanwhile. False: stopped while waiting.
async fn after_network_change(
    engine: &Arc<Engine>,
    network: &mut Option<watch::Receiver<u64>>,
    last: &mut Option<tokio::time::Instant>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let now = tokio::time::Instant::now();
    let at = last
        .map_or(now, |t| t + NETWORK_CHECK_GAP)
        .max(now + NETWORK_SETTLE);
    tokio::select! {
        _ = tokio::time::sleep_until(at) => {}
        _ = stop.changed() => return false,
    }
    if let Some(n) = network {
        n.borrow_and_update();
    }
    *last = Some(tokio::time::Instant::now());
    engine.client.reset_connections();
    true
}

/// The event stream, replaying from the index's cursor where the platform keeps a change log.
async fn subscribe_from_cursor(engine: &Arc<Engine>) -> tokio::sync::mpsc::Receiver<StreamItem> {
    let replay_id = match engine.client.features().await.map(|f| f.changes) {
        Ok(true) => engine.index.cursor(),
        _ => None,
    };
    subscribe(
        engine.client.clone(),
        replay_id,
        engine.stream_silence_limit(),
    )
}
