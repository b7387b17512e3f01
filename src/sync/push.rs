//! Push: a save goes up. Keyed by the inode, the name resolved when it sends (so `sed -i` and
//! temp-file-then-rename saves update the original, and temp names never leave). One push in
//! flight per inode, with at most one follow-up carrying the latest content; one request per
//! platform node at a time, so an older push can never land after a newer one. Existing nodes go
//! up at once; a file new to the platform waits [`SETTLE`] first, the time an editor takes to
//! rename its temp file over the original. Transient failures are retried after 1, 2, 3, 4 and
//! 5 s, then the file stays marked as changed (local differs from base) for the next change or
//! reconnect; refusals are reported once and never retried.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::status::ProblemKind;
use super::{decide, Action, Engine, Result, SyncError};
use crate::cache::{is_local_only, Entry, RelPath, ROOT_INO};
use crate::protocol::{checksum, names, NodeKind, MAX_CONTENT_BYTES, MAX_FOLDER_DEPTH};
use crate::remote::RemoteError;

/// What one push sends, read in one piece.
struct Snapshot {
    e: Entry,
    rel: RelPath,
    bytes: Bytes,
}

/// How long a brand-new file waits before it is created on the platform.
pub const SETTLE: Duration = Duration::from_millis(200);
const RETRY_DELAYS: [u64; 5] = [1, 2, 3, 4, 5];

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
        {
            let mut pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(again) = pushes.get_mut(&ino) {
                *again = true;
                return;
            }
            pushes.insert(ino, false);
        }
        let engine = self.clone();
        self.runtime
            .spawn(async move { engine.push_loop(ino).await });
    }

    /// Whether pushes are running and how many.
    pub fn pushes_running(&self) -> usize {
        self.pushes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Transfers running now, either way (the "syncing" indicator).
    pub fn transfers_running(&self) -> usize {
        self.pushes_running() + self.fetching.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until no push runs (unmount finishes the pushes under way first), at most `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pushes_running() > 0 {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn push_loop(self: Arc<Self>, ino: u64) {
        if self
            .index
            .get(ino)
            .is_some_and(|e| e.node_id.is_none() && !e.is_dir())
        {
            tokio::time::sleep(SETTLE).await;
        }
        loop {
            self.push_with_retries(ino).await;
            let mut pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
            match pushes.get_mut(&ino) {
                Some(again) if *again => *again = false,
                _ => {
                    pushes.remove(&ino);
                    return;
                }
            }
        }
    }

    async fn push_with_retries(self: &Arc<Self>, ino: u64) {
        let path = || self.index.path(ino).unwrap_or_default();
        for (attempt, delay) in std::iter::once(0).chain(RETRY_DELAYS).enumerate() {
            if delay > 0 {
                tracing::info!(path = %path(), attempt, "retrying the push in {delay} s");
                tokio::time::sleep(Duration::from_secs(delay)).await;
            }
            match self.push_once(ino).await {
                Ok(()) => return,
                Err(e) if e.is_transient() => {
                    tracing::warn!(path = %path(), error = %e, "push failed");
                    if e.is_offline() {
                        // Status says so now, and the follower turns to its quiet checks.
                        self.went_offline(&e);
                    }
                    if attempt == RETRY_DELAYS.len() {
                        tracing::warn!(path = %path(), "gave up pushing after 5 retries; it goes up on the next change or reconnect");
                        self.status.report(
                            ProblemKind::Unreachable,
                            Some(&path()),
                            format!("{}: {e}", path()),
                        );
                    }
                }
                Err(e) => {
                    self.refused(&path(), &e);
                    return;
                }
            }
        }
    }

    fn refused(&self, path: &str, e: &SyncError) {
        let kind = match e.cause() {
            SyncError::Remote(RemoteError::Unauthorized | RemoteError::Expired) => {
                ProblemKind::SignedOut
            }
            SyncError::Remote(RemoteError::PaymentRequired) => ProblemKind::PaymentRequired,
            SyncError::Remote(RemoteError::OutOfSites) => ProblemKind::OutOfSites,
            SyncError::Remote(RemoteError::InvalidName(_)) => ProblemKind::RefusedName,
            SyncError::Remote(RemoteError::TooLarge) => ProblemKind::TooLarge,
            _ => ProblemKind::Other,
        };
        tracing::warn!(%path, error = %e, "not uploaded: the file stays local");
        self.status.report(kind, Some(path), format!("{path}: {e}"));
    }

    fn node_lock(&self, node: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.node_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(node).or_default().clone()
    }

    /// One attempt: sends what the index and the mirror hold right now.
    async fn push_once(self: &Arc<Self>, ino: u64) -> Result<()> {
        let Some(e) = self.index.get(ino) else {
            return Ok(());
        };
        if e.tombstone || self.index.is_hidden(ino) {
            return Ok(());
        }
        let rel = self.index.path(ino).unwrap_or_default();
        if is_local_only(&rel) {
            return Ok(());
        }
        if e.is_dir() {
            if e.node_id.is_none() {
                self.ensure_folder(ino).await?;
            }
            return Ok(());
        }
        let engine = self.clone();
        let snapshot = tokio::task::spawn_blocking(move || engine.snapshot(ino))
            .await
            .map_err(|err| SyncError::Bug(err.to_string()))??;
        let Some(Snapshot { e, rel, bytes }) = snapshot else {
            tracing::debug!(ino, "nothing to push");
            return Ok(());
        };
        tracing::debug!(ino, node = ?e.node_id, %rel, sum = %checksum(&bytes), base = ?e.base, "pushing");
        let sum = checksum(&bytes);
        match e.node_id {
            Some(node) => self.put(ino, node, bytes, &sum, &rel).await?,
            None => self.create(ino, &e, bytes, &sum, &rel).await?,
        }
        self.status.clear_path(&rel);
        Ok(())
    }

    /// What a push sends: the entry, its path and its bytes, read together under the file lock
    /// (a rename or a save in between would pair one name's node with another's bytes). None:
    /// nothing to send.
    fn snapshot(&self, ino: u64) -> Result<Option<Snapshot>> {
        self.with_files_locked(&[ino], || {
            let Some(e) = self.index.get(ino) else {
                return Ok(None);
            };
            let Some(rel) = self.index.path(ino) else {
                return Ok(None);
            };
            if e.tombstone
                || e.is_dir()
                || self.index.is_hidden(ino)
                || is_local_only(&rel)
                || e.local.is_none()
                || (e.node_id.is_some() && e.local == e.base)
            {
                return Ok(None);
            }
            names::check(e.kind, &e.name).map_err(|err| {
                SyncError::Remote(RemoteError::InvalidName(format!(
                    "{:?}: {}",
                    e.name, err.rule
                )))
            })?;
            let Some(bytes) = self.mirror.read_at_most(&rel, MAX_CONTENT_BYTES)? else {
                return Err(SyncError::Remote(RemoteError::TooLarge));
            };
            let bytes = Bytes::from(bytes);
            Ok(Some(Snapshot { e, rel, bytes }))
        })
    }

    /// `PUT content` to a known node, optimistic where the platform offers it.
    async fn put(
        self: &Arc<Self>,
        ino: u64,
        node: u64,
        bytes: Bytes,
        sum: &str,
        rel: &str,
    ) -> Result<()> {
        let lock = self.node_lock(node);
        let _one_at_a_time = lock.lock().await;
        // Whoever holds the node now (a rename may have moved it); nobody: nothing left to send.
        let Some(holder) = self.index.by_node(node).or_else(|| self.index.get(ino)) else {
            return Ok(());
        };
        if holder.ino != ino && !holder.tombstone {
            // Another file took this node over since these bytes were read (renamed over this
            // one): its own push carries the node's newer content; these bytes would undo it.
            tracing::debug!(ino, node, holder = holder.ino, "superseded push skipped");
            return Ok(());
        }
        if holder.base.as_deref() == Some(sum) && holder.remote.as_deref() == Some(sum) {
            tracing::debug!(ino, node, "the platform holds it already");
            return Ok(());
        }
        let optimistic = self.client.features().await?.changes;
        self.remember_sent(node, sum);
        let base = holder.base.clone().filter(|_| optimistic);
        match self
            .client
            .put_content_edited(
                node,
                holder.kind,
                bytes.clone(),
                base.as_deref(),
                self.edit_time(holder.ino).as_deref(),
                self.take_snapshot(holder.ino),
            )
            .await
        {
            Ok(put) => {
                self.record_pushed(node, &put.checksum)?;
                tracing::info!(path = %rel, checksum = %put.checksum, "pushed");
                Ok(())
            }
            Err(RemoteError::ChangedRemotely {
                checksum: theirs,
                modified_at,
            }) => {
                self.both_changed(ino, node, bytes, sum, rel, &theirs, &modified_at)
                    .await
            }
            Err(RemoteError::NotFound) => {
                // Deleted on the platform meanwhile: this edit makes it a new node.
                tracing::info!(path = %rel, "the platform deleted this file; uploading it anew");
                self.index.modify(holder.ino, |e| {
                    e.node_id = None;
                    e.base = None;
                    e.remote = None;
                })?;
                let Some(e) = self.index.get(holder.ino) else {
                    return Ok(());
                };
                Box::pin(self.create(holder.ino, &e, bytes, sum, rel)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Both sides changed since the base: the later change wins on the platform's clock; the
    /// loser is kept (the platform keeps its content as a version; a local loser goes to
    /// `sites-versions/`).
    #[allow(clippy::too_many_arguments)]
    async fn both_changed(
        self: &Arc<Self>,
        ino: u64,
        node: u64,
        bytes: Bytes,
        sum: &str,
        rel: &str,
        theirs: &str,
        modified_at: &str,
    ) -> Result<()> {
        if theirs == sum {
            // The platform holds exactly this content already (an earlier push of ours whose
            // answer crossed a stale base): the decision table's "equal: record the new base".
            self.record_pushed(node, sum)?;
            tracing::debug!(path = %rel, "the platform holds this content already");
            return Ok(());
        }
        if self.is_own_echo(node, theirs) {
            // The platform holds an earlier push of ours (its answer was lost, e.g. in a crash):
            // that is the base; the newer content goes on top of it.
            self.record_pushed(node, theirs)?;
            let kind = self
                .index
                .get(ino)
                .map(|e| e.kind)
                .unwrap_or(NodeKind::Upload);
            self.remember_sent(node, sum);
            let put = self
                .client
                .put_content_edited(
                    node,
                    kind,
                    bytes,
                    Some(theirs),
                    self.edit_time(ino).as_deref(),
                    self.take_snapshot(ino),
                )
                .await?;
            self.record_pushed(node, &put.checksum)?;
            tracing::info!(path = %rel, "pushed (over an earlier push of ours)");
            return Ok(());
        }
        let e = self.index.modify(ino, |e| {
            e.remote = Some(theirs.to_string());
            e.remote_modified = Some(modified_at.to_string());
        })?;
        let local_ms = e.mtime_ms + self.clock_offset_ms();
        let remote_ms = super::pull::time_ms(Some(modified_at));
        match decide(
            e.base.as_deref(),
            Some(sum),
            Some(theirs),
            local_ms,
            remote_ms,
        ) {
            Action::RecordBase => {
                self.record_pushed(node, sum)?;
                Ok(())
            }
            Action::RemoteWins => {
                tracing::info!(path = %rel, "changed on both sides; the platform's change is later and wins, the local copy is kept in sites-versions");
                self.accept_remote(ino)?;
                self.fetch(ino).await
            }
            // The platform's change was already decided for (its event came first): what this
            // push carried is kept locally, and the platform's copy comes down. Never a blind
            // overwrite of it.
            Action::Pull => self.fetch(ino).await,
            Action::Nothing => Ok(()),
            Action::Push | Action::LocalWins => {
                self.remember_sent(node, sum);
                let edited = self.edit_time(ino);
                let put = self
                    .client
                    .put_content_edited(
                        node,
                        e.kind,
                        bytes,
                        None,
                        edited.as_deref(),
                        self.take_snapshot(ino),
                    )
                    .await?;
                self.record_pushed(node, &put.checksum)?;
                tracing::info!(path = %rel, "changed on both sides; the local change is later and wins, the platform keeps its copy as a version");
                Ok(())
            }
        }
    }

    /// The platform holds `sum` for `node` because we sent it: that is the new base of whichever
    /// entry holds the node now (a rename may have moved it).
    fn record_pushed(self: &Arc<Self>, node: u64, sum: &str) -> Result<()> {
        let now = loop {
            let Some(holder) = self.index.by_node(node) else {
                return Ok(());
            };
            // Checked again under the lock: a rename meanwhile may have given the entry another
            // node (and this one to a tombstone).
            let done =
                self.with_files_locked(&[holder.ino], || match self.index.get(holder.ino) {
                    Some(e) if e.node_id == Some(node) => self
                        .index
                        .modify(holder.ino, |e| {
                            e.base = Some(sum.to_string());
                            e.remote = Some(sum.to_string());
                        })
                        .map(Some),
                    _ => Ok(None),
                })?;
            if let Some(now) = done {
                break now;
            }
        };
        if !now.tombstone && now.local.is_some() && now.local != now.base {
            // The holder's own content differs from what just went up: it goes up next.
            self.request_push(now.ino);
        }
        Ok(())
    }

    /// Creates the node for a file the platform does not know, in the folder it has locally.
    async fn create(
        self: &Arc<Self>,
        ino: u64,
        e: &Entry,
        bytes: Bytes,
        sum: &str,
        rel: &str,
    ) -> Result<()> {
        // The name is resolved now: a file renamed since this push read it is sent by the push
        // its rename requested, under its new name.
        let unchanged_place = |engine: &Self| {
            engine.index.get(ino).is_some_and(|now| {
                now.name == e.name && now.parent == e.parent && now.node_id.is_none()
            })
        };
        if !unchanged_place(self) {
            return Ok(());
        }
        if e.kind == NodeKind::Site {
            if let Some(existing) = self.index.site_named(&e.name).filter(|x| x.ino != ino) {
                // Platform decides locations: the site of that name elsewhere is this file.
                let Some(node) = existing.node_id else {
                    return Ok(());
                };
                if !self.merge_into(e, &existing)? {
                    return Ok(());
                }
                let rel = self.index.path(ino).unwrap_or_default();
                tracing::info!(path = %rel, "this site already exists on the platform: writing to it, the local file moved to its place");
                return self.put(ino, node, bytes, sum, &rel).await;
            }
        }
        let parent_node = self.ensure_folder(e.parent).await?;
        if !unchanged_place(self) {
            return Ok(());
        }
        // The folder may be renamed while the create is on its way: its platform node then stays
        // with the old folder's tombstone (rename creates), and so does the new node.
        let folder_unchanged = |engine: &Self| match parent_node {
            0 => e.parent == ROOT_INO,
            node => engine
                .index
                .get(e.parent)
                .is_some_and(|f| f.node_id == Some(node) && !f.tombstone),
        };
        self.remember_sent(Self::create_key(ino), sum);
        tracing::debug!(ino, %sum, "creating");
        let edited = self.edit_time(ino);
        let answer = self
            .while_creating(
                e,
                self.client.create_edited(
                    e.kind,
                    &e.name,
                    parent_node,
                    Some(&bytes),
                    edited.as_deref(),
                ),
            )
            .await;
        match answer {
            Ok(created) if !folder_unchanged(self) => {
                // Created inside the platform folder the local folder had before its rename: the
                // node stays there, hidden with that folder; the file goes up again in its
                // folder's new place (the rename requested that push).
                self.hide_node_in_folder_of(parent_node, e, created.id, sum)?;
                tracing::info!(path = %rel, "its folder was renamed while it was being created: it goes up again in the new folder");
                Ok(())
            }
            Ok(created) if !unchanged_place(self) => {
                // Renamed while the request was on its way: the node stays on the platform under
                // the old name (rename creates), hidden here; the new name goes up on its own.
                self.hide_node_at(e, created.id, sum)?;
                tracing::info!(path = %rel, "renamed while being created: the new name goes up separately");
                Ok(())
            }
            Ok(created) => {
                self.remember_sent(created.id, sum);
                let lock = self.file_lock(ino);
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                if !unchanged_place(self) {
                    drop(_guard);
                    return self.hide_node_at(e, created.id, sum);
                }
                self.index.modify(ino, |e| {
                    e.node_id = Some(created.id);
                    e.base = Some(sum.to_string());
                    e.remote = Some(sum.to_string());
                })?;
                tracing::info!(path = %rel, node = created.id, "pushed (created on the platform)");
                Ok(())
            }
            Err(RemoteError::NameTaken(_)) => {
                // The platform has it already (a change we have not seen yet): write to it.
                let listing = self.client.nodes().await?;
                let found = listing.nodes.iter().find(|n| {
                    n.kind == e.kind
                        && n.name == e.name
                        && (e.kind == NodeKind::Site || n.parent() == parent_node)
                });
                let Some(found) = found else {
                    return Err(RemoteError::NameTaken(e.name.clone()).into());
                };
                // Attached under the file lock, and only if the file is still where the create
                // was meant for: renamed meanwhile, its rename's own push places it.
                let attached = match self.index.by_node(found.id).filter(|x| x.ino != ino) {
                    Some(other) => self.merge_into(e, &other)?,
                    None => self.with_files_locked(&[ino], || -> Result<bool> {
                        if !unchanged_place(self) {
                            return Ok(false);
                        }
                        self.index.modify(ino, |x| x.node_id = Some(found.id))?;
                        Ok(true)
                    })?,
                };
                if !attached {
                    return Ok(());
                }
                let rel = self.index.path(ino).unwrap_or_default();
                self.put(ino, found.id, bytes, sum, &rel).await
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The platform node of a local folder, creating the missing folder chain first.
    fn ensure_folder<'a>(
        self: &'a Arc<Self>,
        ino: u64,
    ) -> futures::future::BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            if ino == ROOT_INO {
                return Ok(0);
            }
            let e = self.index.get(ino).ok_or(SyncError::Gone)?;
            if let Some(node) = e.node_id {
                return Ok(node);
            }
            names::check_folder(&e.name).map_err(|err| {
                SyncError::Remote(RemoteError::InvalidName(format!(
                    "{:?}: {}",
                    e.name, err.rule
                )))
            })?;
            let depth = self.index.path(ino).unwrap_or_default().split('/').count();
            if depth > MAX_FOLDER_DEPTH {
                return Err(SyncError::Remote(RemoteError::InvalidName(format!(
                    "folders nest at most {MAX_FOLDER_DEPTH} levels deep"
                ))));
            }
            let parent = self.ensure_folder(e.parent).await?;
            let answer = self
                .while_creating(
                    &e,
                    self.client.create(NodeKind::Folder, &e.name, parent, None),
                )
                .await;
            let id = match answer {
                Ok(created) => created.id,
                Err(RemoteError::NameTaken(_)) => {
                    let listing = self.client.nodes().await?;
                    listing
                        .nodes
                        .iter()
                        .find(|n| {
                            n.kind == NodeKind::Folder && n.name == e.name && n.parent() == parent
                        })
                        .map(|n| n.id)
                        .ok_or_else(|| RemoteError::NameTaken(e.name.clone()))?
                }
                Err(err) => return Err(err.into()),
            };
            match self.index.get(ino) {
                // Attached meanwhile (its echo, or another push of the same folder).
                Some(now) if !now.tombstone && now.node_id.is_some() => {
                    return Ok(now.node_id.unwrap_or(id));
                }
                Some(now) if !now.tombstone && now.name == e.name && now.parent == e.parent => {}
                Some(now) if !now.tombstone => {
                    // Renamed while being created: the platform folder stays under the old name,
                    // hidden here, and the new name is created in turn.
                    self.hide_node_at(&e, id, "")?;
                    return self.ensure_folder(ino).await;
                }
                _ => {
                    self.hide_node_at(&e, id, "")?;
                    // The folder was removed meanwhile.
                    return Err(SyncError::Gone);
                }
            }
            let holder = self.index.by_node(id);
            if holder.as_ref().is_some_and(|same| same.ino == ino) {
                // Another push of this same folder got there first.
                return Ok(id);
            }
            self.index.change(|c| {
                match holder {
                    // A tombstone of this very folder (deleted here, made again): this one
                    // replaces it, keeping what was deleted inside it deleted.
                    Some(t) if t.tombstone => {
                        for child in c.entries_under(t.ino) {
                            c.modify(child.ino, |c| c.parent = ino)?;
                        }
                        c.remove(t.ino)?;
                    }
                    Some(_) => {
                        return Err(SyncError::Inconsistent(format!(
                            "{:?} is known twice",
                            e.name
                        )))
                    }
                    None => {}
                }
                c.modify(ino, |e| e.node_id = Some(id))?;
                Ok(())
            })?;
            tracing::info!(path = %self.index.path(ino).unwrap_or_default(), "created the folder on the platform");
            Ok(id)
        })
    }

    /// Runs a create of the node at `e`'s place while the stream's echoes for that place wait (the
    /// create's answer settles them).
    async fn while_creating<T>(
        &self,
        e: &Entry,
        create: impl std::future::Future<Output = T>,
    ) -> T {
        let place = (e.parent, e.name.clone());
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(place.clone());
        let answer = create.await;
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&place);
        answer
    }

    /// Records a platform node created under folder node `folder_node` as a tombstone there (in
    /// the local entry that holds that folder node now, the old folder's tombstone).
    fn hide_node_in_folder_of(
        &self,
        folder_node: u64,
        e: &Entry,
        node: u64,
        sum: &str,
    ) -> Result<()> {
        let lock = self.file_lock(e.ino);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(folder) = self.index.by_node(folder_node) else {
            // The folder is known nowhere here any more: the next listing places the node.
            return Ok(());
        };
        let mut place = e.clone();
        place.parent = folder.ino;
        self.hide_node_at(&place, node, sum)
    }

    /// Records a platform node as a tombstone at `e`'s old place.
    fn hide_node_at(&self, e: &Entry, node: u64, sum: &str) -> Result<()> {
        if self.index.by_node(node).is_some() {
            // Another local file took this node's place meanwhile (renamed over it): it holds it.
            return Ok(());
        }
        let sum = (!sum.is_empty()).then(|| sum.to_string());
        self.index
            .change(|c| Self::insert_tombstone(c, e, node, sum.clone(), sum))
    }

    /// The local file `e` (not yet on the platform) is the platform's node held by `other`: it
    /// moves to `other`'s place (backing up `other`'s copy) and takes its identity. Returns false,
    /// changing nothing, when either changed since the caller looked (a rename meanwhile: the
    /// push that rename requested decides again).
    pub(super) fn merge_into(&self, e: &Entry, other: &Entry) -> Result<bool> {
        self.with_files_locked(&[e.ino, other.ino], || {
            let same_place = |a: &Entry, b: &Entry| a.parent == b.parent && a.name == b.name;
            let unchanged =
                self.index.get(e.ino).is_some_and(|now| {
                    now.node_id.is_none() && same_place(&now, e) && !now.tombstone
                }) && self
                    .index
                    .get(other.ino)
                    .is_some_and(|now| now.node_id == other.node_id && same_place(&now, other));
            if !unchanged {
                return Ok(false);
            }
            self.merge_locked(e.ino, other).map(|()| true)
        })
    }

    fn merge_locked(&self, ino: u64, other: &Entry) -> Result<()> {
        let old = self.index.get(ino).ok_or(SyncError::Gone)?;
        let from = self.rel(ino)?;
        let visible_place = match self.index.path(other.ino) {
            Some(p) if !other.tombstone && !self.index.is_hidden(other.ino) => Some(p),
            _ => None,
        };
        let Some(to) = visible_place else {
            // The node's local entry is hidden (deleted here) or orphaned: this file takes its
            // identity where it is; a later listing moves it if the platform's place differs.
            return self.index.change(|c| {
                c.remove(other.ino)?;
                c.modify(ino, |e| {
                    e.node_id = other.node_id;
                    e.base = other.base.clone();
                    e.remote = other.remote.clone();
                    e.remote_modified = other.remote_modified.clone();
                })?;
                Ok(())
            });
        };
        if to != from {
            let target = self.mirror.path(&to);
            if other.is_hydrated() && target.exists() {
                self.back_up(&to, other)?;
            }
            self.mirror.rename(&from, &to)?;
        }
        self.index.change(|c| {
            c.remove(other.ino)?;
            c.modify(ino, |e| {
                e.parent = other.parent;
                e.name = other.name.clone();
                e.node_id = other.node_id;
                e.base = other.base.clone();
                e.remote = other.remote.clone();
                e.remote_modified = other.remote_modified.clone();
            })
        })?;
        self.notify(super::Notice::Entry {
            parent: old.parent,
            name: old.name,
        });
        self.notify(super::Notice::Entry {
            parent: other.parent,
            name: other.name.clone(),
        });
        Ok(())
    }

    /// Gives up the local change in favour of the platform's: the local copy is kept in
    /// `sites-versions/`, then the entry counts as unchanged so the platform's copy comes down.
    pub(super) fn accept_remote(&self, ino: u64) -> Result<()> {
        let e = self.index.get(ino).ok_or(SyncError::Gone)?;
        let rel = self.rel(ino)?;
        if let Some(bytes) = self.mirror.read(&rel) {
            crate::cache::versions::save(&self.mirror.versions_root(), &rel, e.kind, &bytes)?;
        }
        self.index.modify(ino, |e| e.base = e.local.clone())?;
        Ok(())
    }

    /// When the file's content was edited, on the platform's clock (its local modification time
    /// plus the calibrated offset): sent with each write, it decides "the later edit wins" on
    /// the other devices (Part 2 `editedAt`).
    fn edit_time(&self, ino: u64) -> Option<String> {
        let e = self.index.get(ino)?;
        let at = chrono::DateTime::from_timestamp_millis(e.mtime_ms + self.clock_offset_ms())?;
        Some(crate::protocol::format_time(at))
    }

    /// Local time plus this offset is the platform's clock (calibrated from `GET status`).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset.load(std::sync::atomic::Ordering::Relaxed)
    }
}
