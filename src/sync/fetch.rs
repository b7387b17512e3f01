//! Fetch: platform content onto disk. On first read (the reader waits), after a platform change,
//! and for the whole account in the background so that everything is available offline. Content
//! is streamed to a temp file beside the target (a large upload is never whole in memory), then
//! committed: the local copy it replaces is backed up to `sites-versions/` first, the rename is
//! atomic, and only then does the index say the copy is there.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};

use super::pull::time_ms;
use super::{Engine, Notice, Result, SyncError};
use crate::cache::{FileState, Mirror, MirrorError, RelPath, Staged};
use crate::protocol::{Checksum, PlatformTime};
use crate::remote::RemoteError;

/// How many fetches run at once in the background.
const PARALLEL_FETCHES: usize = 4;

impl Engine {
    /// Whether the mirror copy of `ino` is missing or older than the platform's (and may be
    /// replaced: the local copy is unchanged since the last sync, or absent).
    pub fn needs_fetch(&self, ino: u64) -> bool {
        match self.index.get(ino) {
            Some(e) if e.node_id.is_some() && !self.index.is_hidden(ino) => {
                matches!(e.state(), FileState::NotOnDisk | FileState::Behind)
            }
            _ => false,
        }
    }

    /// Makes the mirror copy of `ino` current. Concurrent callers for the same content share one
    /// download.
    pub async fn fetch(self: &Arc<Self>, ino: u64) -> Result<()> {
        for _ in 0..3 {
            let Some(e) = self.index.get(ino) else {
                return Ok(());
            };
            if !self.needs_fetch(ino) {
                return Ok(());
            }
            let checksum = e.remote.clone().unwrap_or_default();
            // The download runs as its own task, owned by the file's cell until it ends: a
            // reader that gives up (a killed process) does not stop it for the others.
            let shared = self.cells.join_fetch(ino, &checksum, || {
                let engine = self.clone();
                let fetching = checksum.clone();
                let task = self.runtime.spawn(async move {
                    // Ended also if the download panics: later readers start anew.
                    let _ended = FetchEnded {
                        engine: engine.clone(),
                        ino,
                        checksum: fetching,
                    };
                    Arc::new(engine.fetch_once(ino).await.map_err(Arc::new))
                });
                async move {
                    task.await.unwrap_or_else(|e| {
                        Arc::new(Err(Arc::new(SyncError::Bug(format!(
                            "a fetch was lost: {e}"
                        )))))
                    })
                }
                .boxed()
                .shared()
            });
            let outcome = shared.await;
            if let Err(e) = outcome.as_ref() {
                return Err(SyncError::Shared(e.clone()));
            }
        }
        Ok(())
    }

    async fn fetch_once(self: &Arc<Self>, ino: u64) -> Result<()> {
        self.fetching
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.fetch_to_mirror(ino).await;
        self.fetching
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        result
    }

    async fn fetch_to_mirror(self: &Arc<Self>, ino: u64) -> Result<()> {
        let e = self.index.get(ino).ok_or(SyncError::Gone)?;
        let Some(node_id) = e.node_id else {
            return Ok(());
        };
        let rel = self.rel(ino)?;
        self.mirror.ensure_parent(&rel)?;
        let staged = self.mirror.stage();
        let temp = staged.path().to_path_buf();
        let downloaded = async {
            let mut file = staged.create().await?;
            let meta = self.client.download(node_id, &mut file).await?;
            file.sync_all()
                .await
                .map_err(|e| MirrorError::io("syncing", &temp, e))?;
            Ok::<_, SyncError>(meta)
        }
        .await;
        let meta = match downloaded {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(path = %rel, error = %err, "could not fetch the platform's copy");
                if let SyncError::Remote(RemoteError::Oversized { .. }) = &err {
                    self.status.report(
                        super::status::ProblemKind::BadAnswer,
                        Some(&rel),
                        format!("{rel}: {err}; the mirror keeps what it had"),
                    );
                }
                return Err(err);
            }
        };
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let (sum, size) = Mirror::checksum_of(staged.path())?;
            if sum != meta.checksum {
                return Err(SyncError::Remote(RemoteError::Protocol(format!(
                    "{rel}: received content with checksum {sum}, the platform said {}",
                    meta.checksum
                ))));
            }
            engine.commit_staged(ino, staged, &sum, size, Some(&meta.modified_at))
        })
        .await
        .map_err(|e| SyncError::Bug(e.to_string()))?
    }

    /// Writes content the platform sent inline (a site's HTML) as the mirror copy.
    pub(super) fn write_content(
        self: &Arc<Self>,
        ino: u64,
        bytes: &[u8],
        checksum: Option<&Checksum>,
    ) -> Result<()> {
        let rel = self.rel(ino)?;
        let sum = crate::protocol::checksum(bytes);
        if checksum.is_some_and(|c| *c != sum) {
            return Err(SyncError::Remote(RemoteError::Protocol(format!(
                "{rel}: inline content does not match its checksum"
            ))));
        }
        let staged = self.mirror.stage_bytes(bytes)?;
        let modified = self.index.get(ino).and_then(|e| e.remote_modified);
        self.commit_staged(ino, staged, &sum, bytes.len() as u64, modified.as_ref())
    }

    /// Puts a finished staged file in place of the mirror copy of `ino`, if the local copy may
    /// still be replaced; backs the replaced copy up first. Not committed, it is removed.
    fn commit_staged(
        self: &Arc<Self>,
        ino: u64,
        staged: Staged,
        sum: &Checksum,
        size: u64,
        modified_at: Option<&PlatformTime>,
    ) -> Result<()> {
        let _claimed = self.file_claim(ino);
        let Some(e) = self.index.get(ino) else {
            return Ok(());
        };
        let locally_changed = e.changed_here();
        // The platform moved on while this was downloading (another change, or a push of ours
        // that the local copy already holds): an older copy must not replace a newer one. A
        // missing copy takes whatever came; a newer change brings its own fetch.
        let stale = e.local.is_some() && e.remote.is_some() && e.remote.as_ref() != Some(sum);
        if e.tombstone || locally_changed || stale {
            // The local copy changed meanwhile: the decision, not a fetch, settles it.
            return Ok(());
        }
        let rel = self.rel(ino)?;
        let folder = self.settings.front_door == super::FrontDoor::Folder;
        if folder
            && e.local.is_some()
            && self.disk_differs(&e, &rel)
            && self
                .record_disk_copy(&e, &rel, false)?
                .map(|version| version.keep(self))
                .is_some()
        {
            // Saved in the folder since the watcher last said: the decision settles it.
            return Ok(());
        }
        if e.local.as_ref() != Some(sum) {
            self.back_up(&rel, &e)?;
        }
        // The file's time is the platform's: a later start sees it unchanged without re-reading it.
        let mtime = Some(time_ms(modified_at).max(0));
        // Its mode is the file's own (the platform has none).
        self.mirror.carry_mode(staged.path(), &rel, e.mode);
        if folder {
            let placed =
                self.mirror
                    .commit_staged_guarded(staged, &rel, mtime, e.local.as_ref())?;
            if placed == crate::cache::Guarded::Changed {
                // A program saved it in the moment before: its save stays, and is decided on.
                tracing::info!(path = %rel, "saved in the folder while the platform's copy came down: the save is kept and decided on");
                if let Some(now) = self.index.get(ino) {
                    if let Some(version) = self.record_disk_copy(&now, &rel, false)? {
                        version.keep(self);
                    }
                }
                return Ok(());
            }
            // A program may write over it without the engine seeing the write coming (as the
            // mount does, keeping what it replaces): what landed is kept now, so it exists
            // somewhere even if the platform later loses it (a delete there).
            if let Some(bytes) = self.mirror.read(&rel) {
                if let Err(err) = crate::cache::save::back_up(&self.mirror, &rel, e.kind, &bytes) {
                    tracing::warn!(path = %rel, error = %err, "could not keep the platform's copy in sites-versions");
                }
            }
        } else {
            self.mirror.commit_staged(staged, &rel, mtime)?;
        }
        let was_hydrated = e.local.is_some();
        self.index.modify(ino, |e| {
            e.local = Some(sum.clone());
            e.base = Some(sum.clone());
            // What was fetched is what the platform holds now.
            e.remote = Some(sum.clone());
            e.size = size;
            e.mtime_ms = time_ms(modified_at).max(0);
            // The content was made on the platform, then.
            e.edited_ms = modified_at.map(|_| time_ms(modified_at));
        })?;
        if was_hydrated {
            tracing::info!(path = %rel, "pulled the platform's newer copy");
            self.announce_change(&rel, super::ChangedBy::Platform);
        }
        self.notify(Notice::Content { ino });
        Ok(())
    }

    /// Whether the disk copy's size or time differ from the index's (a plain folder's file a
    /// program may have changed).
    fn disk_differs(&self, e: &crate::cache::Entry, rel: &RelPath) -> bool {
        !matches!(self.mirror.stat(rel), Some(crate::cache::ListedKind::File(s)) if s.size == e.size && s.mtime_ms == e.mtime_ms)
    }

    /// Keeps the local copy in `sites-versions/` before it is replaced. When the backup fails and
    /// the copy exists nowhere else (it is not what the platform last held), the replacement is
    /// refused.
    pub(super) fn back_up(&self, rel: &RelPath, e: &crate::cache::Entry) -> Result<()> {
        let Some(bytes) = self.mirror.read(rel) else {
            return Ok(());
        };
        match crate::cache::save::back_up(&self.mirror, rel, e.kind, &bytes) {
            Ok(()) => Ok(()),
            Err(err) if e.local.is_some() && e.local == e.base => {
                tracing::warn!(path = %rel, error = %err, "could not back up the local copy; the platform keeps it as a version");
                Ok(())
            }
            Err(err) => {
                tracing::error!(path = %rel, error = %err, "could not back up the local copy: not replacing it");
                Err(err.into())
            }
        }
    }

    /// Queues every file whose copy is missing or stale.
    pub async fn fetch_all(self: &Arc<Self>) {
        let mut wanted: Vec<(u64, u64)> = self
            .index
            .select(|e| {
                e.node_id.is_some() && matches!(e.state(), FileState::NotOnDisk | FileState::Behind)
            })
            .into_iter()
            .filter(|e| self.needs_fetch(e.ino))
            .map(|e| (e.size, e.ino))
            .collect();
        // Small files first: most of the account is available soonest.
        wanted.sort();
        for (_, ino) in wanted {
            self.queue_fetch(ino);
        }
    }

    /// Fetches `ino` in the background, after those queued before it. (A reader waiting for the
    /// bytes calls `fetch` directly and never queues behind the hydration.)
    pub(super) fn queue_fetch(&self, ino: u64) {
        let _ = self.fetch_queue.send(ino);
    }
}

/// Clears a file's fetch from its cell when the download's task ends, however it ends.
struct FetchEnded {
    engine: Arc<Engine>,
    ino: u64,
    checksum: Checksum,
}

impl Drop for FetchEnded {
    fn drop(&mut self) {
        self.engine.cells.fetch_ended(self.ino, &self.checksum);
    }
}

/// Runs the queued background fetches, `PARALLEL_FETCHES` at a time, for as long as the engine
/// lives. Queued twice or already current, a fetch finds nothing to do (`needs_fetch`).
pub(super) async fn queue_worker(
    engine: std::sync::Weak<Engine>,
    queued: tokio::sync::mpsc::UnboundedReceiver<u64>,
) {
    tokio_stream::wrappers::UnboundedReceiverStream::new(queued)
        .for_each_concurrent(PARALLEL_FETCHES, |ino| {
            let engine = engine.upgrade();
            async move {
                if let Some(engine) = engine {
                    let _ = engine.fetch(ino).await;
                }
            }
        })
        .await;
}
