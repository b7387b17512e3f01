//! Send: one request with what the index and the mirror hold now, and what the platform said
//! back, as an [`Outcome`]. Nothing here changes local state (but for remembering what was sent,
//! so that its echo is known as ours, also across a crash); `settle.rs` acts on the outcome.

use std::sync::Arc;

use bytes::Bytes;

use crate::cache::{is_local_only, Entry, RelPath, ROOT_INO};
use crate::protocol::{
    checksum, names, Checksum, NodeId, NodeKind, PlatformTime, MAX_CONTENT_BYTES,
};
use crate::remote::RemoteError;
use crate::sync::{Engine, Result, SyncError};

/// What one push sends, read in one piece.
pub(in crate::sync) struct Snapshot {
    pub e: Entry,
    pub rel: RelPath,
    pub bytes: Bytes,
    pub sum: Checksum,
}

/// What the platform answered one send.
#[derive(Debug)]
pub(in crate::sync) enum Outcome {
    /// The platform now holds `checksum` for `node`.
    Sent { node: NodeId, checksum: Checksum },
    /// Nothing went: `why` (superseded by a rename, already there, moved meanwhile).
    Skipped { why: &'static str },
    /// The platform's copy changed since our base (an optimistic write refused).
    Conflict {
        node: NodeId,
        theirs: Checksum,
        modified_at: PlatformTime,
    },
    /// The node is gone from the platform (deleted meanwhile); `holder` held it here.
    Gone { holder: u64 },
    /// Created: the new node, in the platform folder `folder_node`.
    Created { node: NodeId, folder_node: NodeId },
    /// A create found the name taken in `folder_node` (a change not seen here yet).
    NameTaken { folder_node: NodeId },
    /// The node the platform holds under the file's name, looked up after `NameTaken` (None:
    /// none of the file's kind).
    Found { node: Option<NodeId> },
    /// The platform can't be reached, is slow, or faults for a while: retried.
    Offline(RemoteError),
    /// The platform refused it (a name, the size, the account): reported, never retried.
    Refused(RemoteError),
}

impl From<RemoteError> for Outcome {
    fn from(e: RemoteError) -> Outcome {
        if e.is_transient() {
            Outcome::Offline(e)
        } else {
            Outcome::Refused(e)
        }
    }
}

impl Engine {
    /// One attempt: sends what the index and the mirror hold right now, and settles the answer.
    pub(super) async fn push_once(self: &Arc<Self>, ino: u64) -> Result<()> {
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
        let Some(snap) = snapshot else {
            tracing::debug!(ino, "nothing to push");
            return Ok(());
        };
        tracing::debug!(ino, node = ?snap.e.node_id, rel = %snap.rel, sum = %snap.sum, base = ?snap.e.base, "pushing");
        match snap.e.node_id {
            Some(node) => self.push_to_node(ino, node, &snap).await?,
            None => self.push_new(ino, &snap).await?,
        }
        self.status.clear_path(&snap.rel);
        Ok(())
    }

    /// What a push sends: the entry, its path and its bytes, read together under the file lock
    /// (a rename or a save in between would pair one name's node with another's bytes). None:
    /// nothing to send.
    fn snapshot(&self, ino: u64) -> Result<Option<Snapshot>> {
        self.with_files_locked(&[ino], || {
            let handed = self.cells.take_saved(ino);
            let Some(e) = self.index.get(ino) else {
                return Ok(None);
            };
            let Some(rel) = self.index.path(ino) else {
                return Ok(None);
            };
            if !e.goes_up()
                || self.index.is_hidden(ino)
                || is_local_only(&rel)
                || self.held_after_failed_save(ino)
            {
                return Ok(None);
            }
            names::check(e.kind, &e.name)
                .map_err(|err| SyncError::NameRefused(format!("{:?}: {}", e.name, err.rule)))?;
            // What the save handed on, if it is still the content the index says is in place
            // (a fetched copy or a later save since would have changed that); else the file
            // is read and hashed.
            if let Some(saved) = handed.filter(|s| e.local.as_ref() == Some(&s.sum)) {
                let (sum, bytes) = (saved.sum.clone(), saved.bytes.clone());
                return Ok(Some(Snapshot { e, rel, bytes, sum }));
            }
            let Some(bytes) = self.mirror.read_own_at_most(&rel, MAX_CONTENT_BYTES)? else {
                return Err(SyncError::Remote(RemoteError::TooLarge));
            };
            let bytes = Bytes::from(bytes);
            let sum = checksum(&bytes);
            let e = if self.settings.front_door == super::super::FrontDoor::Folder
                && e.local.as_ref() != Some(&sum)
            {
                // Saved again in the plain folder since the watcher said: what goes up is what
                // the disk holds, recorded and kept as the watcher's look would.
                self.record_read_by_push(&e, &rel, sum.clone(), &bytes)?
            } else {
                e
            };
            Ok(Some(Snapshot { e, rel, bytes, sum }))
        })
    }

    /// Sends to a known node and settles the answer, one request per node at a time.
    pub(super) async fn push_to_node(
        self: &Arc<Self>,
        ino: u64,
        node: NodeId,
        snap: &Snapshot,
    ) -> Result<()> {
        let _one_at_a_time = self.cells.sending(node).await;
        let outcome = self.send_put(ino, node, snap).await;
        self.carry_out(ino, snap, outcome).await
    }

    /// `PUT content` to a known node, optimistic where the platform offers it.
    async fn send_put(&self, ino: u64, node: NodeId, snap: &Snapshot) -> Outcome {
        // Whoever holds the node now (a rename may have moved it); nobody: nothing left to send.
        let Some(holder) = self.index.by_node(node).or_else(|| self.index.get(ino)) else {
            return Outcome::Skipped { why: "gone" };
        };
        if holder.ino != ino && !holder.tombstone {
            // Another file took this node over since these bytes were read (renamed over this
            // one): its own push carries the node's newer content; these bytes would undo it.
            return Outcome::Skipped {
                why: "superseded by the file renamed over it",
            };
        }
        let sum = &snap.sum;
        if holder.ino == ino && !holder.tombstone && holder.local.as_ref() != Some(sum) {
            // The file holds other content than these bytes since they were read (a newer save
            // brings its own push; a pull placed the platform's newer copy): sent now, they
            // would go over the newer content with it as their base. Seen in the plain folder's
            // long model run: a snapshot read before a pull, sent after it, put an older copy
            // back on the platform, and the other device kept it.
            return Outcome::Skipped {
                why: "the file changed since these bytes were read",
            };
        }
        if holder.base.as_ref() == Some(sum) && holder.remote.as_ref() == Some(sum) {
            return Outcome::Skipped {
                why: "the platform holds it already",
            };
        }
        let optimistic = match self.client.features().await {
            Ok(features) => features.changes,
            Err(e) => return e.into(),
        };
        self.remember_sent(node, sum);
        let base = holder.base.clone().filter(|_| optimistic);
        let snapshot = self.take_snapshot(holder.ino);
        let waiting = snapshot.as_ref().map(|s| s.html.clone());
        let answer = self
            .client
            .put_content_edited(
                node,
                holder.kind,
                snap.bytes.clone(),
                base.as_ref(),
                self.edit_time(holder.ino).as_ref(),
                snapshot,
            )
            .await;
        self.keep_snapshot_unsent(holder.ino, waiting, &answer);
        match answer {
            Ok(put) => Outcome::Sent {
                node,
                checksum: put.checksum,
            },
            Err(RemoteError::ChangedRemotely {
                checksum: theirs,
                modified_at,
            }) => Outcome::Conflict {
                node,
                theirs,
                modified_at,
            },
            Err(RemoteError::NotFound) => Outcome::Gone { holder: holder.ino },
            Err(e) => e.into(),
        }
    }

    /// An unconditional `PUT content` of `bytes` to `node` (`base`: the platform's checksum it
    /// goes over, when known), the one request the conflict settlement makes.
    pub(super) async fn send_over(
        &self,
        ino: u64,
        node: NodeId,
        kind: NodeKind,
        bytes: Bytes,
        base: Option<&Checksum>,
    ) -> Outcome {
        self.remember_sent(node, &checksum(&bytes));
        let snapshot = self.take_snapshot(ino);
        let waiting = snapshot.as_ref().map(|s| s.html.clone());
        let answer = self
            .client
            .put_content_edited(
                node,
                kind,
                bytes,
                base,
                self.edit_time(ino).as_ref(),
                snapshot,
            )
            .await;
        self.keep_snapshot_unsent(ino, waiting, &answer);
        match answer {
            Ok(put) => Outcome::Sent {
                node,
                checksum: put.checksum,
            },
            Err(e) => e.into(),
        }
    }

    /// A PUT that did not go through gives its snapshot back for the next one (taking it
    /// before the PUT lost it when the PUT failed).
    fn keep_snapshot_unsent<T>(
        &self,
        ino: u64,
        waiting: Option<String>,
        answer: &std::result::Result<T, RemoteError>,
    ) {
        if let (Some(html), Err(e)) = (waiting, answer) {
            if e.is_transient() {
                self.keep_snapshot(ino, html);
            }
        }
    }

    /// Creates the node for a file the platform does not know, in the folder it has locally
    /// (made first if it is new), and settles the answer.
    pub(super) async fn push_new(self: &Arc<Self>, ino: u64, snap: &Snapshot) -> Result<()> {
        let e = &snap.e;
        // The name is resolved now: a file renamed since this push read it is sent by the push
        // its rename requested, under its new name.
        if !self.still_at(ino, e) {
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
                tracing::info!(path = %self.index.path(ino).unwrap_or_default(), "this site already exists on the platform: writing to it, the local file moved to its place");
                return Box::pin(self.push_to_node(ino, node, snap)).await;
            }
        }
        let folder_node = self.ensure_folder(e.parent).await?;
        if !self.still_at(ino, e) {
            return Ok(());
        }
        self.remember_sent(Self::create_key(ino), &snap.sum);
        tracing::debug!(ino, sum = %snap.sum, "creating");
        let edited = self.edit_time(ino);
        let mut creating = Some(self.cells.creating_at(e.parent, &e.name));
        let answer = self
            .client
            .create_edited(
                e.kind,
                &e.name,
                folder_node,
                Some(&snap.bytes),
                edited.as_ref(),
            )
            .await;
        let outcome = match answer {
            Ok(created) => Outcome::Created {
                node: created.id,
                folder_node,
            },
            Err(RemoteError::NameTaken(_)) => Outcome::NameTaken { folder_node },
            Err(err) => err.into(),
        };
        if matches!(outcome, Outcome::Created { .. }) {
            let delay = self.settings.settle_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        } else {
            // No node was made: the place's echoes are the pull's again while the outcome is
            // settled (a taken name's settle lists the account and pushes, which takes a while).
            creating = None;
        }
        let settled = self.carry_out(ino, snap, outcome).await;
        drop(creating);
        settled
    }

    /// Whether `ino` is still where `e` saw it, with no node yet (a create's answer attaches
    /// only then).
    pub(super) fn still_at(&self, ino: u64, e: &Entry) -> bool {
        self.index.get(ino).is_some_and(|now| {
            now.name == e.name && now.parent == e.parent && now.node_id.is_none()
        })
    }

    /// The platform node of a local folder, creating the missing folder chain first (one chain
    /// at a time: `Queue::folder_creates`).
    pub(in crate::sync) async fn ensure_folder(self: &Arc<Self>, ino: u64) -> Result<NodeId> {
        if ino == ROOT_INO {
            return Ok(NodeId::ROOT);
        }
        if let Some(node) = self.index.get(ino).ok_or(SyncError::Gone)?.node_id {
            return Ok(node);
        }
        let _one = self.queue.folder_creates.lock().await;
        self.create_folder_chain(ino).await
    }

    /// [`Engine::ensure_folder`]'s work, under its lock: each folder of the chain looked at
    /// again (another push may have created it while this one waited).
    pub(super) fn create_folder_chain<'a>(
        self: &'a Arc<Self>,
        ino: u64,
    ) -> futures::future::BoxFuture<'a, Result<NodeId>> {
        Box::pin(async move {
            if ino == ROOT_INO {
                return Ok(NodeId::ROOT);
            }
            let e = self.index.get(ino).ok_or(SyncError::Gone)?;
            if let Some(node) = e.node_id {
                return Ok(node);
            }
            names::check_folder(&e.name)
                .map_err(|err| SyncError::NameRefused(format!("{:?}: {}", e.name, err.rule)))?;
            let depth = self.index.path(ino).unwrap_or_default().split('/').count();
            if depth > crate::protocol::MAX_FOLDER_DEPTH {
                return Err(SyncError::NameRefused(format!(
                    "folders nest at most {} levels deep",
                    crate::protocol::MAX_FOLDER_DEPTH
                )));
            }
            let parent = self.create_folder_chain(e.parent).await?;
            let _creating = self.cells.creating_at(e.parent, &e.name);
            let answer = self
                .client
                .create(NodeKind::Folder, &e.name, parent, None)
                .await;
            let id = match answer {
                Ok(created) => created.id,
                Err(RemoteError::NameTaken(_)) => self
                    .find_node(NodeKind::Folder, &e.name, parent)
                    .await?
                    .ok_or_else(|| RemoteError::NameTaken(e.name.clone()))?,
                Err(err) => return Err(err.into()),
            };
            self.settle_folder(ino, &e, id).await
        })
    }

    /// Looks up the node holding the file's name in `folder_node`, as an outcome to settle.
    pub(super) async fn send_find(&self, e: &Entry, folder_node: NodeId) -> Outcome {
        match self.find_node(e.kind, &e.name, folder_node).await {
            Ok(node) => Outcome::Found { node },
            Err(SyncError::Remote(err)) => err.into(),
            Err(other) => Outcome::Refused(RemoteError::Protocol(other.to_string())),
        }
    }

    /// The node of that kind and name in platform folder `folder_node` (any folder, for a site:
    /// site names are unique across the account), as the platform lists it now.
    pub(super) async fn find_node(
        &self,
        kind: NodeKind,
        name: &str,
        folder_node: NodeId,
    ) -> Result<Option<NodeId>> {
        let listing = self
            .client
            .nodes_at_most(self.settings.max_listing_nodes)
            .await?;
        Ok(listing
            .nodes
            .iter()
            .find(|n| {
                n.kind == kind
                    && n.name == name
                    && (kind == NodeKind::Site || n.parent() == folder_node)
            })
            .map(|n| n.id))
    }
}
