//! Settle: the one place a push's outcome changes local state. A sent content becomes the base;
//! a conflict goes through the three-way decision (`decide`); a create's node is attached, or
//! hidden where the file no longer is; a deleted node makes the file new again.

use std::sync::Arc;

use super::send::{Outcome, Snapshot};
use crate::cache::{Entry, ROOT_INO};
use crate::protocol::{Checksum, NodeId, PlatformTime};
use crate::remote::RemoteError;
use crate::sync::{decide, Action, Engine, Result, SyncError};

/// What the push does after an outcome was settled: `settle` decides it from local state
/// alone, and the push carries it out (`Engine::carry_out`), each network step's answer coming
/// back as a new outcome to settle.
pub(in crate::sync) enum Next {
    /// The push is over: sent, skipped, or settled locally.
    Done,
    /// Send the snapshot's bytes over `node` unconditionally, `over` the platform checksum they
    /// replace when known (the local change won, or the platform holds an earlier push of ours).
    SendOver {
        node: NodeId,
        over: Option<Checksum>,
    },
    /// Create the file anew as `snap` (the platform deleted its node meanwhile).
    Create { ino: u64, snap: Snapshot },
    /// Look up the node the platform holds under this file's name in `folder_node` (a create
    /// found the name taken by a change not seen here yet).
    Find { folder_node: NodeId },
    /// Write `snap` to `node`, which the file now holds.
    WriteTo { node: NodeId, snap: Snapshot },
    /// The platform's copy comes down (its change won, or was decided for already).
    Fetch,
}

impl Engine {
    /// Decides what follows what the platform answered a send of `snap` (for `ino`), and makes
    /// the local changes that answer calls for; it makes no request. Errors: offline ones are
    /// retried by the queue, others reported.
    pub(super) fn settle(
        self: &Arc<Self>,
        ino: u64,
        snap: &Snapshot,
        outcome: Outcome,
    ) -> Result<Next> {
        let rel = &snap.rel;
        match outcome {
            Outcome::Sent { node, checksum } => {
                self.record_pushed(node, &checksum)?;
                tracing::info!(path = %rel, %checksum, "pushed");
                Ok(Next::Done)
            }
            Outcome::Skipped { why } => {
                tracing::debug!(ino, path = %rel, why, "push skipped");
                Ok(Next::Done)
            }
            Outcome::Conflict {
                node,
                theirs,
                modified_at,
            } => self.both_changed(ino, node, snap, &theirs, &modified_at),
            Outcome::Gone { holder } => {
                // Deleted on the platform meanwhile: this edit makes it a new node.
                tracing::info!(path = %rel, "the platform deleted this file; uploading it anew");
                let e = self.index.modify(holder, |e| {
                    e.node_id = None;
                    e.base = None;
                    e.remote = None;
                })?;
                let again = Snapshot {
                    e,
                    rel: snap.rel.clone(),
                    bytes: snap.bytes.clone(),
                    sum: snap.sum.clone(),
                };
                Ok(Next::Create {
                    ino: holder,
                    snap: again,
                })
            }
            Outcome::Created { node, folder_node } => {
                self.settle_created(ino, snap, node, folder_node)?;
                Ok(Next::Done)
            }
            // The platform has it already (a change we have not seen yet): write to it.
            Outcome::NameTaken { folder_node } => Ok(Next::Find { folder_node }),
            Outcome::Found { node: None } => {
                Err(RemoteError::NameTaken(snap.e.name.clone()).into())
            }
            Outcome::Found { node: Some(found) } => {
                let e = &snap.e;
                // Attached under the file lock, and only if the file is still where the create
                // was meant for: renamed meanwhile, its rename's own push places it.
                let attached = match self.index.by_node(found).filter(|x| x.ino != ino) {
                    Some(other) => self.merge_into(e, &other)?,
                    None => self.with_files_locked(&[ino], || -> Result<bool> {
                        if !self.still_at(ino, e) {
                            return Ok(false);
                        }
                        self.index.modify(ino, |x| x.node_id = Some(found))?;
                        Ok(true)
                    })?,
                };
                if !attached {
                    return Ok(Next::Done);
                }
                let moved = Snapshot {
                    e: snap.e.clone(),
                    rel: self.index.path(ino).unwrap_or_default(),
                    bytes: snap.bytes.clone(),
                    sum: snap.sum.clone(),
                };
                Ok(Next::WriteTo {
                    node: found,
                    snap: moved,
                })
            }
            Outcome::Offline(e) | Outcome::Refused(e) => Err(e.into()),
        }
    }

    /// A create's answer: the node is this file's, unless the file or its folder moved while the
    /// request was on its way (rename creates: the node stays, hidden, at the old place).
    fn settle_created(
        &self,
        ino: u64,
        snap: &Snapshot,
        node: NodeId,
        folder_node: NodeId,
    ) -> Result<()> {
        let (e, rel, sum) = (&snap.e, &snap.rel, &snap.sum);
        // The folder may be renamed while the create is on its way: its platform node then stays
        // with the old folder's tombstone (rename creates), and so does the new node.
        let folder_unchanged = match folder_node {
            NodeId::ROOT => e.parent == ROOT_INO,
            node => self
                .index
                .get(e.parent)
                .is_some_and(|f| f.node_id == Some(node) && !f.tombstone),
        };
        if !folder_unchanged {
            // The file goes up again in its folder's new place (the rename requested that push).
            self.hide_node_in_folder_of(folder_node, e, node, Some(sum))?;
            tracing::info!(path = %rel, "its folder was renamed while it was being created: it goes up again in the new folder");
            return Ok(());
        }
        let attached = self.with_files_locked(&[ino], || -> Result<bool> {
            if !self.still_at(ino, e) {
                self.remember_sent(node, sum);
                return Ok(false);
            }
            // The node sent and attached in one commit (issue 25: a commit per step was most
            // of the index's cost in a `tar x`).
            self.index.change(|c| {
                c.record_sent(node, sum)?;
                c.modify(ino, |e| {
                    e.node_id = Some(node);
                    e.base = Some(sum.clone());
                    e.remote = Some(sum.clone());
                })
            })?;
            Ok(true)
        })?;
        if attached {
            tracing::info!(path = %rel, %node, "pushed (created on the platform)");
        } else {
            // Renamed while the request was on its way: the node stays on the platform under
            // the old name (rename creates), hidden here; the new name goes up on its own.
            self.hide_node_at(e, node, Some(sum))?;
            tracing::info!(path = %rel, "renamed while being created: the new name goes up separately");
        }
        Ok(())
    }

    /// A folder's create answered `id`: the local folder gets it, unless it was renamed or
    /// removed meanwhile, or a tombstone of the same folder holds it (this one takes it over).
    /// Called under `Queue::folder_creates` (by `create_folder_chain`), never to take it again.
    pub(super) async fn settle_folder(
        self: &Arc<Self>,
        ino: u64,
        e: &Entry,
        id: NodeId,
    ) -> Result<NodeId> {
        match self.index.get(ino) {
            // Attached meanwhile (its echo, or another push of the same folder).
            Some(now) if !now.tombstone && now.node_id.is_some() => {
                return Ok(now.node_id.unwrap_or(id));
            }
            Some(now) if !now.tombstone && now.name == e.name && now.parent == e.parent => {}
            Some(now) if !now.tombstone => {
                // Renamed while being created: the platform folder stays under the old name,
                // hidden here, and the new name is created in turn.
                self.hide_node_at(e, id, None)?;
                return self.create_folder_chain(ino).await;
            }
            _ => {
                self.hide_node_at(e, id, None)?;
                // The folder was removed meanwhile.
                return Err(SyncError::Gone);
            }
        }
        if self.attach_folder(ino, e, id)? {
            tracing::info!(path = %self.index.path(ino).unwrap_or_default(), "created the folder on the platform");
        }
        Ok(id)
    }

    /// Both sides changed since the base: the later change wins on the platform's clock; the
    /// loser is kept (the platform keeps its content as a version; a local loser goes to
    /// `sites-versions/`).
    fn both_changed(
        self: &Arc<Self>,
        ino: u64,
        node: NodeId,
        snap: &Snapshot,
        theirs: &Checksum,
        modified_at: &PlatformTime,
    ) -> Result<Next> {
        let (rel, sum) = (&snap.rel, &snap.sum);
        if theirs == sum {
            // The platform holds exactly this content already (an earlier push of ours whose
            // answer crossed a stale base): the decision table's "equal: record the new base".
            self.record_pushed(node, sum)?;
            tracing::debug!(path = %rel, "the platform holds this content already");
            return Ok(Next::Done);
        }
        if self.is_own_echo(node, theirs) {
            // The platform holds an earlier push of ours (its answer was lost, e.g. in a crash):
            // that is the base; the newer content goes on top of it.
            self.record_pushed(node, theirs)?;
            tracing::info!(path = %rel, "the platform holds an earlier push of ours: pushing over it");
            return Ok(Next::SendOver {
                node,
                over: Some(theirs.clone()),
            });
        }
        let e = self.index.modify(ino, |e| {
            e.remote = Some(theirs.clone());
            e.remote_modified = Some(modified_at.clone());
        })?;
        let local_ms = self.edit_ms(&e);
        let remote_ms = crate::sync::pull::time_ms(Some(modified_at));
        match decide(
            e.base.as_ref(),
            Some(sum),
            Some(theirs),
            local_ms,
            remote_ms,
        ) {
            Action::RecordBase => {
                self.record_pushed(node, sum)?;
                Ok(Next::Done)
            }
            Action::RemoteWins => {
                self.accept_remote(ino)?;
                Ok(Next::Fetch)
            }
            // The platform's change was already decided for (its event came first): what this
            // push carried is kept locally, and the platform's copy comes down. Never a blind
            // overwrite of it.
            Action::Pull => Ok(Next::Fetch),
            Action::Nothing => Ok(Next::Done),
            Action::Push | Action::LocalWins => {
                self.local_wins(rel);
                Ok(Next::SendOver { node, over: None })
            }
        }
    }

    /// The platform holds `sum` for `node` because we sent it: that is the new base of whichever
    /// entry holds the node now (a rename may have moved it).
    fn record_pushed(self: &Arc<Self>, node: NodeId, sum: &Checksum) -> Result<()> {
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
                            e.base = Some(sum.clone());
                            e.remote = Some(sum.clone());
                        })
                        .map(Some),
                    _ => Ok(None),
                })?;
            if let Some(now) = done {
                break now;
            }
        };
        if !now.tombstone && now.changed_here() {
            // The holder's own content differs from what just went up: it goes up next.
            self.request_push(now.ino);
        }
        Ok(())
    }
}
