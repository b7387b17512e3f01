//! Pull: platform changes come down through one apply function, whatever brought them (a
//! listing, `GET changes`, or the event stream). For each node it runs the decision, backs up the
//! local copy before anything replaces it, writes the mirror atomically, updates the index (after
//! the mirror), and tells the kernel. Applying the same state twice changes nothing, so replays
//! and echoes of our own changes are harmless.

use std::collections::HashSet;
use std::sync::Arc;

use super::vet::{vet_listing_bounded, Refusal};
use super::{decide, Action, Engine, Notice, Result, SyncError};
use crate::cache::{check_platform_name, Entry, NewEntry, ROOT_INO};
use crate::protocol::{Checksum, Event, Node, NodeId, NodeKind, PlatformTime};

/// What the platform holds for one node.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    pub id: NodeId,
    pub kind: NodeKind,
    pub name: String,
    pub parent_id: NodeId,
    pub checksum: Option<Checksum>,
    pub modified_at: Option<PlatformTime>,
    pub size: Option<u64>,
    /// A site's HTML when the platform sent it inline.
    pub content: Option<Vec<u8>>,
}

impl From<Node> for RemoteNode {
    fn from(n: Node) -> Self {
        let parent_id = n.parent();
        RemoteNode {
            id: n.id,
            kind: n.kind,
            name: n.name,
            parent_id,
            checksum: n.checksum,
            // The edit's time where the platform keeps one (Part 2 `editedAt`): the later edit
            // wins, not the device that reconnected first.
            modified_at: n.edited_at.or(n.modified_at),
            size: n.size,
            content: None,
        }
    }
}

pub(super) fn time_ms(at: Option<&PlatformTime>) -> i64 {
    at.and_then(PlatformTime::parse)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// A listing being placed gives its memory back every this many nodes.
const LET_GO_EVERY: usize = 16_384;

/// What applying a change asks of the caller.
#[derive(Debug, Default)]
pub struct Applied {
    /// Inodes whose platform content must be fetched.
    pub fetch: Vec<u64>,
    /// Inodes whose local change must go up.
    pub push: Vec<u64>,
    /// The change could not be placed (unknown node or parent): compare a full listing.
    pub resync: bool,
}

impl Engine {
    fn parent_ino(&self, parent_id: NodeId) -> Option<u64> {
        match parent_id {
            NodeId::ROOT => Some(ROOT_INO),
            id => self.index.by_node(id).filter(|e| e.is_dir()).map(|e| e.ino),
        }
    }

    /// A listing or a save event naming another place for a node moves the local file only when
    /// nothing local is in flight for it: a file with unsent changes or a running push is newer
    /// here than what the platform said (its own rename events always move it).
    fn may_follow_platform_place(&self, e: &Entry) -> bool {
        let pushing = self
            .cells
            .peek(e.ino, |c| c.push.is_running())
            .unwrap_or(false);
        !pushing && !e.tombstone && (e.is_dir() || !e.changed_here())
    }

    /// Whether this mount is creating the node at that place right now (its echo waits).
    fn is_creating(&self, parent: u64, name: &str) -> bool {
        self.cells.is_creating(parent, name)
    }

    /// The inode at a relative path, following live names.
    pub fn ino_of_path(&self, rel: &str) -> Option<u64> {
        let mut ino = ROOT_INO;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            ino = self.index.lookup(ino, part)?.ino;
        }
        Some(ino)
    }

    /// A node the platform sent is skipped: logged once, shown in status.
    pub(super) fn refuse_node(&self, r: &Refusal) {
        if self
            .status
            .refuse_platform_node(r.node_id, &r.name, &r.reason)
        {
            tracing::warn!(node = %r.node_id, name = %r.name, reason = %r.reason, "the platform sent a name that can't be a file here: skipped");
        }
    }

    /// Whether a name the platform sent for a node may name a file in `parent`; refuses it
    /// (logged, in status) when not.
    fn platform_name_ok(&self, node_id: NodeId, name: &str, parent: u64) -> bool {
        match check_platform_name(name, parent == ROOT_INO) {
            Ok(()) => true,
            Err(e) => {
                self.refuse_node(&Refusal {
                    node_id,
                    name: e.name.clone(),
                    reason: e.reason.to_string(),
                });
                false
            }
        }
    }

    /// Whether the place of a platform folder in the mirror is a symlink (or behind one): then
    /// the folder is refused, never followed, with one status line, and everything else syncs.
    /// Decided: refused rather than replaced, because the link is the user's (a mirror restored
    /// from a backup, a link made while no mount ran) and whatever it points to may be outside the
    /// mirror; writing into it or backing it up would reach there. A file symlink at a platform
    /// file's place is different: the fetched copy replaces the link itself (a rename never
    /// follows it) and the backup before it reads nothing through it (`Mirror::open_own`).
    fn folder_is_a_symlink(&self, r: &RemoteNode, parent: u64) -> bool {
        let Some(rel) = self.index.path(parent).and_then(|p| p.join(&r.name).ok()) else {
            return false;
        };
        match self.mirror.symlink_on_the_way(&rel) {
            Some(link) => {
                if self.status.refuse_symlinked_folder(rel.as_str()) {
                    tracing::warn!(path = %rel, link = %link.display(), node = %r.id, "a platform folder's place in the mirror is a symlink: not synced, never followed; everything else syncs");
                }
                true
            }
            None => {
                self.status.clear_symlinked_folder(rel.as_str());
                false
            }
        }
    }

    /// Applies what the platform holds for one node.
    pub fn apply_node(self: &Arc<Self>, r: &RemoteNode) -> Result<Applied> {
        let _namespace = self.namespace_lock();
        self.apply_node_in_namespace(r)
    }

    fn apply_node_in_namespace(self: &Arc<Self>, r: &RemoteNode) -> Result<Applied> {
        let Some(parent) = self.parent_ino(r.parent_id) else {
            return Ok(Applied {
                resync: true,
                ..Applied::default()
            });
        };
        if !self.platform_name_ok(r.id, &r.name, parent) {
            return Ok(Applied::default());
        }
        if r.kind == NodeKind::Folder && self.folder_is_a_symlink(r, parent) {
            return Ok(Applied::default());
        }
        let entry = match self.index.by_node(r.id) {
            Some(e) => {
                if (e.parent != parent || e.name != r.name) && self.may_follow_platform_place(&e) {
                    self.relocate(&e, parent, &r.name)?;
                }
                self.index.get(e.ino).ok_or(SyncError::Gone)?
            }
            None if self.is_creating(parent, &r.name) => return Ok(Applied::default()),
            None => match self.index.lookup(parent, &r.name) {
                // A local file of the same name that the platform did not know: it is that node now.
                Some(local) if local.node_id.is_none() && local.kind == r.kind => {
                    let attached =
                        self.with_files_locked(&[local.ino], || match self.index.get(local.ino) {
                            Some(now)
                                if now.node_id.is_none()
                                    && now.parent == parent
                                    && now.name == r.name =>
                            {
                                self.index
                                    .modify(local.ino, |e| e.node_id = Some(r.id))
                                    .map(Some)
                            }
                            _ => Ok(None),
                        })?;
                    let Some(attached) = attached else {
                        // Renamed meanwhile: the rename's own push places it.
                        return Ok(Applied::default());
                    };
                    tracing::debug!(
                        ino = local.ino,
                        node = %r.id,
                        "a local file is this platform node"
                    );
                    attached
                }
                Some(other) => {
                    tracing::warn!(path = %self.index.path(other.ino).unwrap_or_default(), "a platform node and a local one share a name; keeping the local one");
                    return Ok(Applied::default());
                }
                None => return self.create_local(r, parent),
            },
        };
        self.apply_content(&entry, r)
    }

    fn create_local(self: &Arc<Self>, r: &RemoteNode, parent: u64) -> Result<Applied> {
        let entry = self.index.insert(NewEntry {
            parent,
            name: r.name.clone(),
            kind: r.kind,
            node_id: Some(r.id),
            size: r.size.unwrap_or(0),
            mtime_ms: time_ms(r.modified_at.as_ref()),
            base: None,
            remote: r.checksum.clone(),
            remote_modified: r.modified_at.clone(),
            local: None,
            edited_ms: None,
            mode: None,
        })?;
        let mut applied = Applied::default();
        if r.kind == NodeKind::Folder {
            self.mirror.create_dir(&self.rel(entry.ino)?)?;
        } else if let Some(content) = &r.content {
            self.write_content(entry.ino, content, r.checksum.as_ref())?;
        } else {
            applied.fetch.push(entry.ino);
        }
        self.notify(Notice::Entry {
            parent,
            name: r.name.clone(),
        });
        Ok(applied)
    }

    /// Runs the decision for a file whose platform checksum may have changed.
    fn apply_content(self: &Arc<Self>, e: &Entry, r: &RemoteNode) -> Result<Applied> {
        let mut applied = Applied::default();
        if e.is_dir() || r.checksum.is_none() || r.checksum == e.remote {
            return Ok(applied);
        }
        if r.checksum.as_ref().is_some_and(|c| {
            self.is_own_echo(r.id, c) || self.is_own_echo(Self::create_key(e.ino), c)
        }) {
            // Our own push coming back: the platform holds what we sent, which is the base now;
            // a newer local save still differs from it and goes up. Unless a later push of ours
            // was answered already (the stream lags behind the answers): then this echo is older
            // than what the platform holds, and the base stays.
            let echoed = r.checksum.clone().unwrap_or_default();
            let newer_recorded = e
                .base
                .as_ref()
                .is_some_and(|b| *b != echoed && self.index.sent_after(r.id, b, &echoed));
            if newer_recorded {
                return Ok(applied);
            }
            // Else a copy held unchanged here that differs from it was taken from the platform
            // after that push: the same bytes coming now are someone's newer change, and come
            // down by the decision below. Taken for our echo, the older copy here went up over
            // them (the plain folder's long model run: another device saved what this one had
            // sent before, and this one kept the older copy).
            let clean_and_other = e.local.is_some() && e.local == e.base && e.local != r.checksum;
            if !clean_and_other {
                if self
                    .modify_holder(e.ino, r.id, |x| {
                        x.remote = r.checksum.clone();
                        x.remote_modified = r.modified_at.clone();
                        x.base = r.checksum.clone();
                    })?
                    .is_none()
                {
                    return Ok(applied);
                }
                if e.local.is_some() && e.local != r.checksum {
                    applied.push.push(e.ino);
                }
                return Ok(applied);
            }
        }
        let mut revived = false;
        let Some(e) = self.modify_holder(e.ino, r.id, |e| {
            e.remote = r.checksum.clone();
            e.remote_modified = r.modified_at.clone();
            if e.tombstone {
                // Deleted locally, changed on the platform since: it comes back, in the same
                // index write as the change that brings it.
                e.tombstone = false;
                e.local = None;
                revived = true;
            }
            if e.local.is_none() {
                e.size = r.size.unwrap_or(e.size);
                e.mtime_ms = time_ms(r.modified_at.as_ref());
            }
        })?
        else {
            return Ok(applied);
        };
        if revived {
            self.notify(Notice::Entry {
                parent: e.parent,
                name: e.name.clone(),
            });
        }
        let action = decide(
            e.base.as_ref(),
            e.local.as_ref(),
            e.remote.as_ref(),
            self.edit_ms(&e),
            time_ms(r.modified_at.as_ref()),
        );
        match action {
            Action::Nothing => {}
            Action::Push => applied.push.push(e.ino),
            Action::LocalWins => {
                self.local_wins(&self.index.path(e.ino).unwrap_or_default());
                applied.push.push(e.ino);
            }
            Action::RecordBase => {
                self.index.modify(e.ino, |e| e.base = e.remote.clone())?;
            }
            Action::RemoteWins => {
                tracing::debug!(
                    path = %self.index.path(e.ino).unwrap_or_default(),
                    remote = ?r.checksum,
                    local = ?e.local,
                    base = ?e.base,
                    "changed on both sides"
                );
                self.accept_remote(e.ino)?;
                match &r.content {
                    Some(content) => self.write_content(e.ino, content, r.checksum.as_ref())?,
                    None => applied.fetch.push(e.ino),
                }
            }
            Action::Pull => match &r.content {
                Some(content) => self.write_content(e.ino, content, r.checksum.as_ref())?,
                None => applied.fetch.push(e.ino),
            },
        }
        Ok(applied)
    }

    /// Changes the entry `ino` only while it still holds platform node `node`, checked under its
    /// file lock: a local rename may have just given the node to a tombstone and the entry
    /// another node. None: it no longer holds it (the node's holder is settled by later events).
    fn modify_holder(
        &self,
        ino: u64,
        node: NodeId,
        f: impl FnOnce(&mut Entry),
    ) -> Result<Option<Entry>> {
        self.with_files_locked(&[ino], || match self.index.get(ino) {
            Some(now) if now.node_id == Some(node) => Ok(Some(self.index.modify(ino, f)?)),
            _ => Ok(None),
        })
    }

    /// A platform rename or move: the local file follows, unless it moved (a local rename)
    /// since the caller decided; then the next listing decides again.
    fn relocate(&self, e: &Entry, new_parent: u64, new_name: &str) -> Result<()> {
        let occupant = self
            .index
            .lookup(new_parent, new_name)
            .filter(|o| o.ino != e.ino);
        let inos: Vec<u64> = std::iter::once(e.ino)
            .chain(occupant.as_ref().map(|o| o.ino))
            .collect();
        self.with_files_locked(&inos, || {
            // Only a change of place or node stops it (a local rename: the next listing
            // decides). Its content may have changed meanwhile (a fetch landed, a save): the
            // entry as it is now moves, its mirror copy with it.
            let Some(now) = self.index.get(e.ino).filter(|now| {
                now.node_id == e.node_id && now.parent == e.parent && now.name == e.name
            }) else {
                return Ok(());
            };
            let occupant_now = self
                .index
                .lookup(new_parent, new_name)
                .filter(|o| o.ino != e.ino);
            if occupant_now.as_ref().map(|o| o.ino) != occupant.as_ref().map(|o| o.ino) {
                return Ok(());
            }
            self.relocate_locked(&now, occupant_now, new_parent, new_name)
        })
    }

    /// A platform rename or move of `e` to (`new_parent`, `new_name`), the entry there
    /// (`occupant`) moved out of the way first. The mirror changes first (the occupant's copy
    /// kept as a version, the copy renamed), then the index in one change: the occupant's
    /// removal and the move are one transaction, so a crash never leaves the index with
    /// neither or both at the place.
    fn relocate_locked(
        &self,
        e: &Entry,
        occupant: Option<Entry>,
        new_parent: u64,
        new_name: &str,
    ) -> Result<()> {
        if let Some(occupant) = &occupant {
            self.evict_copy(occupant)?;
        }
        let from = self.rel(e.ino)?;
        let to = self.rel(new_parent)?.join(new_name)?;
        if e.is_hydrated() && !e.tombstone && self.mirror.path(&from).exists() {
            self.mirror.rename(&from, &to)?;
        }
        let (old_parent, old_name) = (e.parent, e.name.clone());
        self.index.change(|c| {
            if let Some(occupant) = &occupant {
                c.remove(occupant.ino)?;
            }
            c.modify(e.ino, |e| {
                e.parent = new_parent;
                e.name = new_name.to_string();
            })?;
            Ok::<_, SyncError>(())
        })?;
        tracing::info!(%from, %to, "renamed on the platform: renamed locally");
        if let Some(occupant) = occupant {
            self.notify(Notice::Entry {
                parent: occupant.parent,
                name: occupant.name,
            });
        }
        self.notify(Notice::Entry {
            parent: old_parent,
            name: old_name,
        });
        self.notify(Notice::Entry {
            parent: new_parent,
            name: new_name.to_string(),
        });
        Ok(())
    }

    /// Moves a local entry's copy out of the way of a platform node, keeping its content as a
    /// version; the caller removes its entry in the same index change as what takes its place.
    fn evict_copy(&self, occupant: &Entry) -> Result<()> {
        let rel = self.rel(occupant.ino)?;
        if occupant.is_dir() {
            return Err(SyncError::Inconsistent(format!(
                "{rel} is in the way of a platform node"
            )));
        }
        if occupant.is_hydrated() {
            if let Some(bytes) = self.mirror.read(&rel) {
                let kept = crate::cache::versions::save(
                    &self.mirror.versions_root(),
                    &rel,
                    occupant.kind,
                    &bytes,
                )?;
                if occupant.changed_here() {
                    // Its content is nowhere on the platform: the user must hear where it went.
                    let kept = kept
                        .strip_prefix(self.mirror.root())
                        .unwrap_or(&kept)
                        .display()
                        .to_string();
                    tracing::warn!(path = %rel, %kept, "conflict: a platform file took this name; the local copy is kept");
                    self.status.conflict(
                        &rel,
                        format!("{rel}: the platform moved another file to this name, which wins; your copy is kept in {kept}"),
                    );
                }
            }
            self.mirror.remove_file(&rel)?;
        }
        Ok(())
    }

    /// A platform delete: the local copy stays, detached from the node; it goes up again only
    /// if it is edited locally afterwards. What never reached the disk is simply forgotten. A
    /// file changed here and not on the platform yet wins over the delete, as Syncthing and
    /// Dropbox decide it (an edit wins over a delete): it goes up again as a new file. That is
    /// also the file made here after the delete at a name deleted here before, which took the
    /// deleted node back before the delete arrived (the plain folder's long model run: it was
    /// taken for kept-and-unedited and never went up). Each entry is decided as it is inside
    /// the change, not as it was read before. The whole subtree is one index change.
    pub fn detach(self: &Arc<Self>, ino: u64) -> Result<()> {
        let mut subtree = Vec::new();
        self.subtree_children_first(ino, &mut subtree);
        if subtree.is_empty() {
            return Ok(());
        }
        let (forgotten, kept, revived) = self.index.change(|c| {
            let (mut forgotten, mut kept, mut revived) = (Vec::new(), Vec::new(), Vec::new());
            for e in &subtree {
                let Some(e) = c.get(e.ino) else {
                    continue;
                };
                if e.tombstone || (!e.is_dir() && e.local.is_none()) {
                    c.remove(e.ino)?;
                    forgotten.push(e);
                    continue;
                }
                let changed_here = !e.is_dir() && e.changed_here();
                c.modify(e.ino, |e| {
                    e.node_id = None;
                    e.remote = None;
                    e.remote_modified = None;
                    e.base = match changed_here {
                        true => None,
                        false => e.local.clone(),
                    };
                })?;
                match changed_here {
                    true => revived.push(e.ino),
                    false => kept.push(e.ino),
                }
            }
            Ok::<_, SyncError>((forgotten, kept, revived))
        })?;
        for e in forgotten {
            self.notify(Notice::Entry {
                parent: e.parent,
                name: e.name.clone(),
            });
        }
        for ino in kept {
            tracing::info!(path = %self.index.path(ino).unwrap_or_default(), "deleted on the platform: the local copy is kept");
        }
        for ino in revived {
            tracing::info!(path = %self.index.path(ino).unwrap_or_default(), "deleted on the platform while changed here: the change goes up again as a new file");
            self.request_push(ino);
        }
        Ok(())
    }

    /// `ino`'s entry and every entry under it, children before their folder.
    fn subtree_children_first(&self, ino: u64, out: &mut Vec<Entry>) {
        let Some(e) = self.index.get(ino) else {
            return;
        };
        for child in self.index.children(ino) {
            self.subtree_children_first(child.ino, out);
        }
        out.push(e);
    }

    /// A whole listing: every node applied (parents first), nodes gone from it detached.
    /// `left_out`: the nodes the client let go past the node bound (`remote/listing.rs`),
    /// by id; listed, so not gone. The nodes are let go as they are placed: the listing's
    /// memory shrinks while the index grows (issue 26: 200,000 nodes take about 48 MB as
    /// parsed, and as many index entries about 80 MB).
    pub fn apply_listing(
        self: &Arc<Self>,
        mut nodes: Vec<Node>,
        left_out: &[NodeId],
        cursor: Option<u64>,
    ) -> Result<Applied> {
        let vetted = vet_listing_bounded(&nodes, self.settings.max_listing_nodes);
        for r in &vetted.refused {
            self.refuse_node(r);
        }
        let kept = vetted.accepted.len();
        let over_limit = vetted.over_limit + left_out.len();
        if self.status.listing_over_limit(over_limit, kept) {
            tracing::warn!(
                kept,
                left_out = over_limit,
                "the platform listed more nodes than one account may bring here: the rest are not synced"
            );
        }
        let mut taken = vec![false; nodes.len()];
        for &at in &vetted.positions {
            taken[at] = true;
        }
        drop(vetted);
        // Every id listed, for what is gone below. Sorted ids, not a set: 700,003 of them take
        // 5.6 MB, and no table doubles meanwhile.
        let mut live: Vec<NodeId> = Vec::with_capacity(nodes.len() + left_out.len());
        live.extend(nodes.iter().map(|n| n.id));
        live.extend_from_slice(left_out);
        live.sort_unstable();
        let mut place = taken.into_iter();
        nodes.retain(|_| place.next().unwrap_or(false));
        // Parents first; taken from the end, so sorted the other way round.
        nodes.sort_unstable_by_key(|n| {
            std::cmp::Reverse((
                n.path.split('/').filter(|s| !s.is_empty()).count(),
                n.kind != NodeKind::Folder,
                n.id,
            ))
        });
        nodes.shrink_to_fit();
        // Room for what is new at once (a first listing; a later one adds few).
        self.index
            .reserve(nodes.len().saturating_sub(self.index.len()));
        let mut applied = Applied::default();
        // Folders refused for a symlink in the mirror, and what is inside them: skipped (the
        // index may know the folder from before the link was made).
        let mut behind_symlinks: HashSet<NodeId> = HashSet::new();
        while let Some(node) = nodes.pop() {
            if nodes.len() % LET_GO_EVERY == 0 {
                // What was placed leaves memory (a large buffer shrinks in place).
                nodes.shrink_to_fit();
            }
            let remote = RemoteNode::from(node);
            let behind = behind_symlinks.contains(&remote.parent_id)
                || (remote.kind == NodeKind::Folder
                    && self
                        .parent_ino(remote.parent_id)
                        .is_some_and(|parent| self.folder_is_a_symlink(&remote, parent)));
            if behind {
                behind_symlinks.insert(remote.id);
                continue;
            }
            let a = self.apply_node(&remote)?;
            applied.fetch.extend(a.fetch);
            applied.push.extend(a.push);
            applied.resync |= a.resync;
        }
        let listed = |id: NodeId| live.binary_search(&id).is_ok();
        for e in self
            .index
            .select(|e| e.node_id.is_some_and(|id| !listed(id)))
        {
            if self.index.get(e.ino).is_some() {
                self.detach(e.ino)?;
            }
        }
        if let Some(cursor) = cursor {
            self.index.set_cursor(cursor)?;
        }
        Ok(applied)
    }

    /// One change from the stream or `GET changes`.
    pub fn apply_event(self: &Arc<Self>, event: &Event, seq: Option<u64>) -> Result<Applied> {
        let applied = match event {
            Event::NodeSaved(s) => {
                let parent_id = match s.parent_id {
                    Some(p) => p,
                    None => {
                        let parent_path = s.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        match self.ino_of_path(parent_path) {
                            Some(ROOT_INO) => NodeId::ROOT,
                            Some(ino) => self
                                .index
                                .get(ino)
                                .and_then(|e| e.node_id)
                                .unwrap_or(NodeId::new(u64::MAX)),
                            None => NodeId::new(u64::MAX),
                        }
                    }
                };
                self.apply_node(&RemoteNode {
                    id: s.node_id,
                    kind: s.node_type,
                    name: s.name.clone(),
                    parent_id,
                    checksum: s.checksum.clone(),
                    modified_at: s.edited_at.clone().or_else(|| s.modified_at.clone()),
                    size: s.size,
                    content: s.content.as_ref().map(|c| c.clone().into_bytes()),
                })?
            }
            Event::NodeRenamed(r) => match self.index.by_node(r.node_id) {
                Some(e) if !self.platform_name_ok(r.node_id, &r.new_name, e.parent) => {
                    Applied::default()
                }
                Some(e) if e.name != r.new_name => {
                    let _namespace = self.namespace_lock();
                    self.relocate(&e, e.parent, &r.new_name)?;
                    Applied::default()
                }
                Some(_) => Applied::default(),
                None => Applied {
                    resync: true,
                    ..Applied::default()
                },
            },
            Event::NodeMoved(m) => {
                let parent = self.parent_ino(m.new_parent_id.unwrap_or(NodeId::ROOT));
                match (self.index.by_node(m.node_id), parent) {
                    (Some(_), Some(p)) if !self.platform_name_ok(m.node_id, &m.new_name, p) => {
                        Applied::default()
                    }
                    (Some(e), Some(p)) if e.parent != p || e.name != m.new_name => {
                        let _namespace = self.namespace_lock();
                        self.relocate(&e, p, &m.new_name)?;
                        Applied::default()
                    }
                    (Some(_), Some(_)) => Applied::default(),
                    _ => Applied {
                        resync: true,
                        ..Applied::default()
                    },
                }
            }
            Event::NodeDeleted(d) => {
                if let Some(e) = self.index.by_node(d.node_id) {
                    self.detach(e.ino)?;
                }
                Applied::default()
            }
            Event::LiveSync(frame) => {
                self.live_frame_arrived(frame);
                Applied::default()
            }
            Event::Other => Applied::default(),
        };
        if let Some(seq) = seq {
            if !applied.resync {
                self.index.set_cursor(seq)?;
            }
        }
        Ok(applied)
    }
}
