//! The plain folder's saved versions. A save seen after the fact cannot keep the content it
//! replaced (the mount can: it sees the write coming), so each saved content is kept when it is
//! seen, where it might otherwise exist nowhere: every site's save (as Hyperclay Local does),
//! and an upload's while it cannot go up at once (docs/semantics.md, "The plain folder").
//!
//! While the folder's watcher runs, a version waits for its file's push to have its answer
//! ([`WAIT_MAX`] at most), its bytes in memory, and the watcher writes it then. Written while the
//! push ran, the version's two fsyncs competed with the platform's own for the disk: a save
//! reached the platform 1.5 ms later (BENCHMARKS.md, "The plain folder"). Until the push is
//! through, the content is also the file on disk; what remains is a program writing the file
//! again and the process killed, both within that wait, with the push not through
//! (docs/semantics.md says so).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::Engine;
use crate::cache::RelPath;
use crate::protocol::NodeKind;

/// The longest a version waits for its push: about 20 pushes' answers on loopback, short
/// against a person's next save. A push waiting out a retry, or a new file's first create
/// (which settles 200 ms), has its version written after this.
pub const WAIT_MAX: Duration = Duration::from_millis(100);

/// How often waiting versions are looked at (the pushes do not say when they are answered).
pub const CHECK_EVERY: Duration = Duration::from_millis(2);

/// The most bytes waiting in memory: beyond, a version is written at once. A burst of sites
/// (each at most 20 MiB) never holds more than this; pages are a few KB, so it is rarely near.
pub const WAITING_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A saved content to keep in `sites-versions/`, with the bytes a look read.
#[must_use]
pub(super) struct SavedVersion {
    rel: RelPath,
    kind: NodeKind,
    /// The content read (`None`: too large to have been held; read again when kept).
    bytes: Option<Bytes>,
}

impl SavedVersion {
    pub(super) fn new(rel: RelPath, kind: NodeKind, bytes: Option<Bytes>) -> SavedVersion {
        SavedVersion { rel, kind, bytes }
    }

    /// Writes it now (if this kind of save is kept).
    pub(super) fn keep(self, engine: &Engine) {
        if !engine.keeps_saved_versions(self.kind) {
            return;
        }
        match self.bytes {
            Some(bytes) => engine.keep_version_of(&self.rel, self.kind, &bytes),
            None => {
                if let Some(bytes) = engine.mirror.read(&self.rel) {
                    engine.keep_version_of(&self.rel, self.kind, &bytes);
                }
            }
        }
    }
}

/// The versions waiting for their push, oldest first.
#[derive(Default)]
pub(super) struct Waiting {
    /// Set while the folder's watcher runs (it writes what waits).
    on: AtomicBool,
    queue: Mutex<VecDeque<(Instant, u64, SavedVersion)>>,
    bytes: AtomicU64,
}

impl Engine {
    /// From now on (`true`), the plain folder's watcher writes saved versions once their push is
    /// answered; `false` writes every waiting one now and stops waiting.
    pub fn versions_wait_for_pushes(&self, on: bool) {
        self.versions_waiting.on.store(on, Ordering::SeqCst);
        if !on {
            self.keep_waiting_versions(true);
        }
    }

    /// Keeps `version` of `ino` once its push is answered, or now when nothing writes what waits
    /// (the module doc).
    pub(super) fn keep_version_after_push(&self, ino: u64, version: SavedVersion) {
        let waiting = &self.versions_waiting;
        let len = version.bytes.as_ref().map_or(0, |b| b.len() as u64);
        let room = waiting
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + len <= WAITING_BYTES_MAX).then_some(held + len)
            })
            .is_ok();
        // Sites only: an upload's version is kept while it cannot go up at once, which is
        // decided now, not once the wait is over.
        let waits = waiting.on.load(Ordering::SeqCst)
            && version.bytes.is_some()
            && version.kind == NodeKind::Site;
        match (waits, room) {
            (true, true) => waiting
                .queue
                .lock()
                .push_back((Instant::now(), ino, version)),
            (_, reserved) => {
                if reserved {
                    waiting.bytes.fetch_sub(len, Ordering::Relaxed);
                }
                version.keep(self);
            }
        }
    }

    /// Writes the versions whose push is answered or that waited [`WAIT_MAX`] (`all`: every one);
    /// when to look again, if some still wait.
    pub fn keep_waiting_versions(&self, all: bool) -> Option<Instant> {
        let now = Instant::now();
        let ready: Vec<SavedVersion> = {
            let mut queue = self.versions_waiting.queue.lock();
            if queue.is_empty() {
                return None;
            }
            let mut ready = Vec::new();
            let mut left = VecDeque::new();
            for (since, ino, version) in queue.drain(..) {
                let pushing = self
                    .cells
                    .peek(ino, |s| s.push.is_running())
                    .unwrap_or(false);
                match all || !pushing || now.saturating_duration_since(since) >= WAIT_MAX {
                    true => ready.push(version),
                    false => left.push_back((since, ino, version)),
                }
            }
            *queue = left;
            ready
        };
        for version in ready {
            let len = version.bytes.as_ref().map_or(0, |b| b.len() as u64);
            version.keep(self);
            self.versions_waiting
                .bytes
                .fetch_sub(len, Ordering::Relaxed);
        }
        (!self.versions_waiting.queue.lock().is_empty()).then(|| now + CHECK_EVERY)
    }
}
