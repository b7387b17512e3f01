//! Placement: where a file goes locally when the platform's answer says it is somewhere else
//! or someone else's. A local file that is a platform node known here under another entry merges
//! into it; a node created for a place the file has left is hidden there as a tombstone; a folder
//! made again where its deleted self was takes over the tombstone. Each is one index change.

use super::{Engine, Result, SyncError};
use crate::cache::Entry;
use crate::protocol::{Checksum, NodeId};

impl Engine {
    /// Records a platform node created under folder node `folder_node` as a tombstone there (in
    /// the local entry that holds that folder node now, the old folder's tombstone).
    pub(super) fn hide_node_in_folder_of(
        &self,
        folder_node: NodeId,
        e: &Entry,
        node: NodeId,
        sum: Option<&Checksum>,
    ) -> Result<()> {
        self.with_files_locked(&[e.ino], || {
            let Some(folder) = self.index.by_node(folder_node) else {
                // The folder is known nowhere here any more: the next listing places the node.
                return Ok(());
            };
            let mut place = e.clone();
            place.parent = folder.ino;
            self.hide_node_at(&place, node, sum)
        })
    }

    /// Records a platform node as a tombstone at `e`'s old place.
    pub(super) fn hide_node_at(
        &self,
        e: &Entry,
        node: NodeId,
        sum: Option<&Checksum>,
    ) -> Result<()> {
        if self.index.by_node(node).is_some() {
            // Another local file took this node's place meanwhile (renamed over it): it holds it.
            return Ok(());
        }
        let sum = sum.filter(|s| !s.as_str().is_empty()).cloned();
        self.index
            .change(|c| Self::insert_tombstone(c, e, node, sum.clone(), sum))
    }

    /// Gives the local folder `ino` (still as `e` saw it) the platform node `id`. A tombstone of
    /// this very folder (deleted here, made again) that holds the node is replaced by it, keeping
    /// what was deleted inside it deleted. False: it had the node already.
    pub(super) fn attach_folder(&self, ino: u64, e: &Entry, id: NodeId) -> Result<bool> {
        let holder = self.index.by_node(id);
        if holder.as_ref().is_some_and(|same| same.ino == ino) {
            // Another push of this same folder got there first.
            return Ok(false);
        }
        self.index.change(|c| {
            match holder {
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
        Ok(true)
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
            if other.is_hydrated() && self.mirror.exists(&to) {
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

    /// Gives up the local change in favour of the platform's (both sides changed it, the
    /// platform's change is later): the local copy is kept in `sites-versions/`, then the entry
    /// counts as unchanged so the platform's copy comes down. Said in the log and in status, one
    /// line per file naming where the local copy is kept.
    pub(super) fn accept_remote(&self, ino: u64) -> Result<()> {
        let e = self.index.get(ino).ok_or(SyncError::Gone)?;
        let rel = self.rel(ino)?;
        let kept = match self.mirror.read(&rel) {
            Some(bytes) => Some(crate::cache::versions::save(
                &self.mirror.versions_root(),
                &rel,
                e.kind,
                &bytes,
            )?),
            None => None,
        };
        self.index.modify(ino, |e| e.base = e.local.clone())?;
        let kept = kept
            .map(|p| {
                p.strip_prefix(self.mirror.root())
                    .unwrap_or(&p)
                    .display()
                    .to_string()
            })
            .unwrap_or_else(|| "nowhere (it was not on disk)".into());
        tracing::warn!(path = %rel, %kept, "conflict: changed here and on the platform; the platform's change is later and wins, the local copy is kept");
        self.status.conflict(
            &rel,
            format!("{rel}: changed here and on the platform; the platform's later change won, your copy is kept in {kept}"),
        );
        Ok(())
    }

    /// Both sides changed `rel` and the local change is later: it goes up over the platform's,
    /// which the platform keeps among the file's versions. Said in the log and in status.
    pub(super) fn local_wins(&self, rel: &str) {
        tracing::warn!(path = %rel, "conflict: changed here and on the platform; the local change is later and wins, the platform keeps its copy among the file's versions");
        self.status.conflict(
            rel,
            format!("{rel}: changed here and on the platform; your later change won, the platform's copy is kept among the file's versions on the platform"),
        );
    }
}
