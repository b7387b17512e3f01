//! Push: a save goes up, in three steps.
//!
//! 1. **Queue** (this file): keyed by the inode, the name resolved when it sends (so `sed -i` and
//!    temp-file-then-rename saves update the original, and temp names never leave). One push in
//!    flight per inode, with at most one follow-up carrying the latest content (the file's
//!    cell's [`PushState`]).
//!    Existing nodes go up at once; a file new to the platform waits [`SETTLE`] first, the time
//!    an editor takes to rename its temp file over the original. Transient failures are retried
//!    after 1, 2, 3, 4 and 5 s, then the file stays marked as changed (local differs from base)
//!    for the next change or reconnect; refusals are reported once and never retried. While
//!    writes fail on a platform that otherwise answers, one failing push (the scout,
//!    `cell.rs`) keeps trying every second for all of them, and the first write that goes
//!    through sends every file that waits.
//! 2. **Send** (`send.rs`): reads what the index and the mirror hold now, makes one request, and
//!    returns what the platform answered as an `Outcome`; it changes nothing locally.
//! 3. **Settle** (`settle.rs`): the one place an outcome changes local state: a new base, the
//!    three-way decision on a conflict (`decide`), a node attached or hidden. Where a file goes
//!    locally (a merge, a hidden node, a tombstone taken over) is `sync/place.rs`.

mod send;
mod settle;

use send::{Outcome, Snapshot};
use settle::Next;

use std::sync::Arc;
use std::time::Duration;

use super::cell::PushState;
use super::status::ProblemKind;
use super::{Engine, SyncError};
use crate::protocol::PlatformTime;
use crate::remote::RemoteError;

/// How long a brand-new file waits before it is created on the platform.
pub const SETTLE: Duration = Duration::from_millis(200);
const RETRY_DELAYS: [u64; 5] = [1, 2, 3, 4, 5];
/// How long a push waits for its answer before status says so (issue 26: a platform that
/// accepted the request and went silent showed no problem for 15.5 s, until the request was
/// abandoned). The push keeps waiting; the line goes when it is answered.
const SLOW_ANSWER: Duration = Duration::from_secs(1);
/// Settlements one push may go through (a conflict, the write over it, and a few more if the
/// platform keeps changing meanwhile) before it ends, reported.
const MAX_SETTLE_ROUNDS: usize = 6;

/// What the pushes share beside the cells: how many send at once, and one folder chain
/// created at a time. Each file's push state is its cell's (`cell.rs`, `PushState`), and the
/// names being created in a folder are the folder cell's (`CellState::creating`).
pub(super) struct Queue {
    /// Pushes sending at once ([`SENDS_AT_ONCE`]).
    sends: tokio::sync::Semaphore,
    /// One folder chain created at a time (`ensure_folder`): pushes of many new files in one new
    /// folder would each create it, and all but one would then look for it in a whole listing.
    folder_creates: tokio::sync::Mutex<()>,
}

/// How many pushes send at once. A burst (a `tar x` or `git clone` into the plain folder, a
/// reconnect with thousands of changes) started one request per file at once: 3,000 requests
/// queued on the platform, the last unanswered after 15 s, taken for the platform gone, and the
/// burst took 16-23 s to go up instead of 3-4 s (measured on the dev platform, 2 cores). The
/// first file of a quiet moment still goes at once; eight keep a platform's connection pool and
/// its writer busy without queueing anything for long.
pub const SENDS_AT_ONCE: usize = 8;

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            sends: tokio::sync::Semaphore::new(SENDS_AT_ONCE),
            folder_creates: tokio::sync::Mutex::new(()),
        }
    }
}

impl super::cell::Cells {
    /// Whether this device is creating the node of `name` in folder `parent` now.
    pub(super) fn is_creating(&self, parent: u64, name: &str) -> bool {
        self.peek(parent, |s| s.creating.contains_key(name))
            .unwrap_or(false)
    }

    /// Marks (`parent`, `name`) as being created until the answer is settled (the guard drops).
    pub(super) fn creating_at(&self, parent: u64, name: &str) -> CreatingPlace<'_> {
        let cell = self.get(parent);
        *cell.state().creating.entry(name.to_string()).or_default() += 1;
        CreatingPlace {
            cells: self,
            parent,
            name: name.to_string(),
        }
    }
}

/// A place whose node this mount is creating: the pull leaves the stream's echoes for it to the
/// create's settle. Held until the answer is settled, not only until it arrives: in between, an
/// echo of a node whose file was renamed away meanwhile would have made it a new local file
/// (the exerciser saw `rmdir` refused by the platform's copy of a file renamed out of the folder).
pub(super) struct CreatingPlace<'a> {
    cells: &'a super::cell::Cells,
    parent: u64,
    name: String,
}

impl Drop for CreatingPlace<'_> {
    fn drop(&mut self) {
        // The folder's cell is kept while the count is above zero, so it is there.
        if let Some(cell) = self.cells.existing(self.parent) {
            let mut state = cell.state();
            if let Some(n) = state.creating.get_mut(&self.name) {
                *n -= 1;
                if *n == 0 {
                    state.creating.remove(&self.name);
                }
            }
        }
    }
}

impl Engine {
    /// Asks for `ino` to go up. Returns at once; a push already running gets one follow-up.
    pub fn request_push(self: &Arc<Self>, ino: u64) {
        // Paused, offline, or not yet sure this mirror is the signed-in account's: the change
        // stays marked in the index, and reconciliation sends it.
        if !self.sync_on()
            || !self.is_online()
            || !self.verified.load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if !self.cells.enqueue_push(ino) {
            return;
        }
        let engine = self.clone();
        self.runtime
            .spawn(async move { engine.push_loop(ino).await });
    }

    /// How many pushes are running.
    pub fn pushes_running(&self) -> usize {
        self.cells.pushes_running()
    }

    /// Transfers running now, either way (the "syncing" indicator).
    pub fn transfers_running(&self) -> usize {
        self.pushes_running() + self.fetching.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until no push runs (unmount finishes the pushes under way first), at most `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.cells.until_no_push(limit).await
    }

    async fn push_loop(self: Arc<Self>, ino: u64) {
        if self
            .index
            .get(ino)
            .is_some_and(|e| e.node_id.is_none() && !e.is_dir())
        {
            self.cells.with_push(ino, |push| {
                *push = PushState::Settling {
                    follow_up: matches!(
                        push,
                        PushState::Sending {
                            follow_up: true,
                            ..
                        }
                    ),
                }
            });
            tokio::time::sleep(SETTLE).await;
        }
        loop {
            let failed = self.push_with_retries(ino).await;
            if let Some(next) = self.cells.push_over(ino) {
                // It was the scout and writes still fail: a file that waits takes its place.
                self.request_push(next);
            }
            if !self.cells.push_ended(ino, failed) {
                return;
            }
        }
    }

    /// A write went through: if writes were failing, every file that waits for them goes now
    /// (those in a retry delay, and those whose retries ran out).
    fn writes_work(self: &Arc<Self>) {
        let Some(waiting) = self.cells.write_went_through() else {
            return;
        };
        tracing::info!(
            waiting = waiting.len(),
            "the platform takes writes again: sending what waited"
        );
        self.cells.reconnected.notify_waiters();
        for ino in waiting {
            self.request_push(ino);
        }
    }

    /// Sends `ino` until it is up, refused, or the retries ran out: None when it went up (or
    /// had nothing to send), else why it gave up.
    async fn push_with_retries(self: &Arc<Self>, ino: u64) -> Option<String> {
        let path = || self.index.path(ino).unwrap_or_default();
        // This push tries again every second for every file waiting on a write fault.
        let mut scouting = false;
        let mut attempt = 0;
        loop {
            // Past its own retries only a scout goes on: quietly.
            let loud = attempt <= RETRY_DELAYS.len();
            if attempt > 0 {
                let delay = match scouting {
                    true => self.cells.scout_wait(),
                    false => Duration::from_secs(RETRY_DELAYS[attempt - 1]),
                };
                match (scouting, loud) {
                    (false, _) => {
                        tracing::info!(path = %path(), attempt, "retrying the push in {} s", delay.as_secs())
                    }
                    (true, true) => {
                        tracing::info!(path = %path(), attempt, "writes fail: trying again in {} s, for every file that waits", delay.as_secs())
                    }
                    (true, false) => {
                        tracing::debug!(path = %path(), attempt, "writes fail: trying again in {} s", delay.as_secs())
                    }
                }
                let until = std::time::Instant::now() + delay;
                self.cells.with_push(ino, |push| {
                    *push = PushState::Backoff {
                        until,
                        attempt,
                        follow_up: push.follow_up(),
                    }
                });
                // The platform answering again (`came_online`) ends the wait at once.
                let reconnected = self.cells.reconnected.notified();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = reconnected => {
                        tracing::debug!(path = %path(), "the platform answers again: retrying now");
                    }
                }
            }
            // Its turn among the pushes of a burst ([`SENDS_AT_ONCE`]); closed never.
            let _turn = self.queue.sends.acquire().await;
            self.cells.with_push(ino, |push| {
                *push = PushState::Sending {
                    attempt,
                    follow_up: push.follow_up(),
                }
            });
            let send = self.push_once(ino);
            tokio::pin!(send);
            let result = tokio::select! {
                result = &mut send => result,
                _ = tokio::time::sleep(SLOW_ANSWER) => {
                    // Still waiting: status says so now, and the push waits on.
                    let p = path();
                    self.status.report(
                        ProblemKind::Unreachable,
                        Some(&p),
                        format!("{p}: waiting for the platform at {} to answer; it goes up when it does", self.client.url()),
                    );
                    send.await
                }
            };
            match result {
                Ok(()) => {
                    // The push's own line (a slow answer, a failed try) ends with it.
                    self.status.clear_path(&path());
                    if !self.is_online() {
                        // The platform answers although the follower takes it for gone: it
                        // reconciles now, not at its next quiet check.
                        self.cells.answered.notify_one();
                    }
                    self.writes_work();
                    return None;
                }
                Err(e) if e.is_transient() => {
                    match loud {
                        true => tracing::warn!(path = %path(), error = %e, "push failed"),
                        false => tracing::debug!(path = %path(), error = %e, "push failed"),
                    }
                    if e.is_offline() {
                        // Status says so now, and the follower turns to its quiet checks.
                        self.went_offline(&e);
                    }
                    // A fault of a platform that otherwise answers (no reconnect will say when
                    // it works again): one push scouts for all, unless an unmount waits, sync
                    // is off, or the follower takes the platform for gone (its checks look).
                    let fault = !e.is_offline();
                    scouting = fault
                        && self.is_online()
                        && self.sync_on()
                        && !self.cells.draining()
                        && self.cells.write_failed(ino);
                    // Shown at once, not after the last retry (issue 26); replaced by the
                    // final line below if the retries run out, cleared when it goes up.
                    let p = path();
                    self.status.report(
                        ProblemKind::Unreachable,
                        Some(&p),
                        format!("{p}: not up yet ({e}); trying again"),
                    );
                    if !scouting && attempt >= RETRY_DELAYS.len() {
                        match fault {
                            true => {
                                tracing::warn!(path = %path(), "gave up pushing after {attempt} retries; it goes up once the platform takes writes again, or on the next change or reconnect");
                                self.cells.wait_for_writes(ino);
                            }
                            false => {
                                tracing::warn!(path = %path(), "gave up pushing after {attempt} retries; it goes up on the next change or reconnect")
                            }
                        }
                        self.status.report(
                            ProblemKind::Unreachable,
                            Some(&path()),
                            format!("{}: {e}", path()),
                        );
                        return Some(e.to_string());
                    }
                }
                Err(e) => {
                    self.refused(&path(), &e);
                    return Some(e.to_string());
                }
            }
            attempt += 1;
        }
    }

    /// Settles `outcome` and carries out what follows, until the push is over: each request a
    /// settlement calls for is made here, and its answer settled in turn. A conflict can follow
    /// a conflict only if the platform keeps changing under us: after `MAX_SETTLE_ROUNDS` the
    /// push ends as a reported error, and the file (still changed here) goes up at its next
    /// save or reconciliation.
    pub(super) async fn carry_out(
        self: &Arc<Self>,
        ino: u64,
        snap: &Snapshot,
        outcome: Outcome,
    ) -> Result<(), SyncError> {
        let mut outcome = outcome;
        for _ in 0..MAX_SETTLE_ROUNDS {
            outcome = match self.settle(ino, snap, outcome)? {
                Next::Done => return Ok(()),
                Next::SendOver { node, over } => {
                    self.send_over(ino, node, snap.e.kind, snap.bytes.clone(), over.as_ref())
                        .await
                }
                Next::Find { folder_node } => self.send_find(&snap.e, folder_node).await,
                Next::Create { ino, snap } => return Box::pin(self.push_new(ino, &snap)).await,
                Next::WriteTo { node, snap } => {
                    return Box::pin(self.push_to_node(ino, node, &snap)).await
                }
                Next::Fetch => return self.fetch(ino).await,
            };
        }
        Err(SyncError::Remote(RemoteError::Protocol(
            "the platform's copy kept changing while this push settled".into(),
        )))
    }

    fn refused(&self, path: &str, e: &SyncError) {
        let kind = match e.cause() {
            SyncError::Remote(RemoteError::Unauthorized | RemoteError::Expired) => {
                ProblemKind::SignedOut
            }
            SyncError::Remote(RemoteError::PaymentRequired) => ProblemKind::PaymentRequired,
            SyncError::Remote(RemoteError::OutOfSites) => ProblemKind::OutOfSites,
            SyncError::Remote(RemoteError::InvalidName(_)) | SyncError::NameRefused(_) => {
                ProblemKind::RefusedName
            }
            SyncError::Remote(RemoteError::TooLarge) => ProblemKind::TooLarge,
            SyncError::Remote(RemoteError::Redirected { .. }) => ProblemKind::BadAnswer,
            _ => ProblemKind::Other,
        };
        tracing::warn!(%path, error = %e, "not uploaded: the file stays local");
        self.status.report(kind, Some(path), format!("{path}: {e}"));
    }

    /// When the file's content was edited, on the platform's clock ([`Engine::edit_ms`]): sent
    /// with each write, it decides "the later edit wins" on the other devices (Part 2
    /// `editedAt`).
    fn edit_time(&self, ino: u64) -> Option<PlatformTime> {
        let e = self.index.get(ino)?;
        let at = chrono::DateTime::from_timestamp_millis(self.edit_ms(&e))?;
        Some(PlatformTime::at(at))
    }

    /// When the local content of `e` was made, on the platform's clock: the time taken when it
    /// was saved (`Entry::edited_ms`), or, where none was kept, its modification time plus the
    /// offset now. The local side of "the later edit wins" (`decide`).
    pub(super) fn edit_ms(&self, e: &crate::cache::Entry) -> i64 {
        e.edited_ms
            .unwrap_or_else(|| e.mtime_ms + self.clock_offset_ms())
    }

    /// A wall-clock time plus this offset is the platform's clock (`clock.rs`).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock.offset_ms()
    }
}
