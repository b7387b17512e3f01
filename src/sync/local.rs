//! Local changes to the namespace, made through the mount, with the policies of product.md:
//! never delete across (unlink and rmdir hide the file locally with a tombstone that keeps its
//! platform node), rename creates (the new name goes up as a new node and the old node stays,
//! hidden locally), and a file renamed over another takes the other's place on the platform, so an
//! editor's "temp file, then rename" is one update of the original. The mirror changes first; the
//! index follows only once the disk did.

use std::sync::Arc;

use super::{Engine, Notice, Refusal, Result, SyncError};
use crate::cache::{is_local_only, versions, Change, Entry, NewEntry, RelPath};
use crate::protocol::{Checksum, NodeId, NodeKind, PlatformTime, EMPTY_CHECKSUM};

fn refused(why: Refusal) -> SyncError {
    SyncError::Refused(why)
}

/// The platform identity an entry carries.
#[derive(Debug, Clone, Default)]
struct Identity {
    node_id: Option<NodeId>,
    base: Option<Checksum>,
    remote: Option<Checksum>,
    remote_modified: Option<PlatformTime>,
}

impl Identity {
    fn of(e: &Entry) -> Identity {
        Identity {
            node_id: e.node_id,
            base: e.base.clone(),
            remote: e.remote.clone(),
            remote_modified: e.remote_modified.clone(),
        }
    }

    fn apply(self, e: &mut Entry) {
        e.node_id = self.node_id;
        e.base = self.base;
        e.remote = self.remote;
        e.remote_modified = self.remote_modified;
    }
}

impl Engine {
    fn child_rel(&self, parent: u64, name: &str) -> Result<RelPath> {
        let dir = self
            .index
            .path(parent)
            .ok_or_else(|| refused(Refusal::NoSuchFolder))?;
        Ok(dir.join(name)?)
    }

    fn live_dir(&self, ino: u64) -> Result<()> {
        if ino == crate::cache::ROOT_INO {
            return Ok(());
        }
        match self.index.get(ino) {
            Some(e) if e.is_dir() && !e.tombstone => Ok(()),
            Some(_) => Err(refused(Refusal::NotAFolder)),
            None => Err(refused(Refusal::NoSuchFolder)),
        }
    }

    /// The identity a new entry at a place inherits: a tombstone there gives its node back (vim
    /// renames the original away and writes a new file of the same name).
    fn reclaim_tombstone(c: &mut Change<'_>, parent: u64, name: &str) -> Result<Identity> {
        match c.tombstone_at(parent, name) {
            Some(t) => {
                c.remove(t.ino)?;
                Ok(Identity::of(&t))
            }
            None => Ok(Identity::default()),
        }
    }

    /// A folder made where a deleted one was takes its place on the platform; what was deleted
    /// inside it stays deleted (its tombstones move into the new folder).
    pub(super) fn reclaim_folder_tombstone(
        c: &mut Change<'_>,
        parent: u64,
        name: &str,
        new_ino: u64,
    ) -> Result<()> {
        let Some(t) = c.tombstone_at(parent, name).filter(|t| t.is_dir()) else {
            return Ok(());
        };
        for child in c.entries_under(t.ino) {
            c.modify(child.ino, |c| c.parent = new_ino)?;
        }
        c.remove(t.ino)?;
        c.modify(new_ino, |e| e.node_id = t.node_id)?;
        Ok(())
    }

    /// A new, empty file, with the permission bits `mode` keeps (`kept_mode`; `None`: the
    /// default). Nothing goes up until it is closed.
    pub fn create_file(&self, parent: u64, name: &str, mode: Option<u32>) -> Result<Entry> {
        let _namespace = self.namespace_lock();
        self.live_dir(parent)?;
        if self.index.lookup(parent, name).is_some() {
            return Err(refused(Refusal::Exists));
        }
        let rel = self.child_rel(parent, name)?;
        if let Some(bytes) = self.mirror.read(&rel) {
            // A file the index did not know: keep it before it is replaced.
            versions::save(
                &self.mirror.versions_root(),
                &rel,
                NodeKind::of_file_name(name),
                &bytes,
            )?;
        }
        self.mirror.create_empty(&rel)?;
        if let Some(mode) = mode {
            self.mirror.set_mode(&rel, mode, false)?;
        }
        // One change: the tombstone's node is never held by both, nor by neither.
        self.index.change(|c| {
            let identity = Self::reclaim_tombstone(c, parent, name)?;
            let mut e = c.insert(NewEntry {
                mode,
                ..NewEntry::made_here(
                    parent,
                    name,
                    NodeKind::of_file_name(name),
                    Some(EMPTY_CHECKSUM),
                )
            })?;
            if identity.node_id.is_some() {
                e = c.modify(e.ino, |e| identity.apply(e))?;
            }
            Ok(e)
        })
    }

    /// A new folder, with the permission bits `mode` keeps: created on the platform at once (if
    /// its name is one the platform takes).
    pub fn make_dir(self: &Arc<Self>, parent: u64, name: &str, mode: Option<u32>) -> Result<Entry> {
        let namespace = self.namespace_lock();
        self.live_dir(parent)?;
        if self.index.lookup(parent, name).is_some() {
            return Err(refused(Refusal::Exists));
        }
        let rel = self.child_rel(parent, name)?;
        self.mirror.create_dir(&rel)?;
        if let Some(mode) = mode {
            self.mirror.set_mode(&rel, mode, true)?;
        }
        let e = self.index.change(|c| {
            let e = c.insert(NewEntry {
                mode,
                ..NewEntry::made_here(parent, name, NodeKind::Folder, None)
            })?;
            Self::reclaim_folder_tombstone(c, parent, name, e.ino)?;
            Ok::<_, SyncError>(c.get(e.ino).unwrap_or(e))
        })?;
        drop(namespace);
        self.request_push(e.ino);
        Ok(e)
    }

    /// Unlink: local only. A file the platform has becomes a tombstone; anything else is forgotten.
    pub fn remove_file(&self, parent: u64, name: &str) -> Result<()> {
        let e = self
            .index
            .lookup(parent, name)
            .ok_or_else(|| refused(Refusal::NoSuchFile))?;
        if e.is_dir() {
            return Err(refused(Refusal::IsAFolder));
        }
        let rel = self.child_rel(parent, name)?;
        // Under the file's lock: a push reading it meanwhile finds it gone from the index, not
        // a live entry without its copy (which it would report as a failure).
        self.with_files_locked(&[e.ino], || -> Result<()> {
            let Some(e) = self
                .index
                .get(e.ino)
                .filter(|now| now.parent == parent && now.name == name && !now.tombstone)
            else {
                return Err(refused(Refusal::NoSuchFile));
            };
            self.mirror.remove_file(&rel)?;
            self.bury(&e)
        })?;
        self.status.forget_path(&rel);
        Ok(())
    }

    /// Rmdir: local only, of an empty folder.
    pub fn remove_dir(&self, parent: u64, name: &str) -> Result<()> {
        let e = self
            .index
            .lookup(parent, name)
            .ok_or_else(|| refused(Refusal::NoSuchFolder))?;
        if !e.is_dir() {
            return Err(refused(Refusal::NotAFolder));
        }
        if self.index.child_count(e.ino) > 0 {
            return Err(refused(Refusal::NotEmpty));
        }
        let rel = self.child_rel(parent, name)?;
        self.mirror.remove_dir(&rel)?;
        self.bury(&e)?;
        self.status.forget_path(&rel);
        Ok(())
    }

    /// A node the platform has stays known as a tombstone (so it does not come back unless the
    /// platform changes it); a local-only entry is forgotten.
    pub(super) fn bury(&self, e: &Entry) -> Result<()> {
        if e.node_id.is_none() {
            return Ok(self.index.remove(e.ino)?);
        }
        self.index.change(|c| {
            if let Some(old) = c.tombstone_at(e.parent, &e.name) {
                c.remove(old.ino)?;
            }
            c.modify(e.ino, |e| {
                e.tombstone = true;
                e.local = None;
            })?;
            Ok(())
        })
    }

    /// Leaves a tombstone holding `e`'s platform node at `e`'s current place (rename creates: the
    /// old node stays on the platform, hidden here).
    fn leave_tombstone(c: &mut Change<'_>, e: &Entry) -> Result<()> {
        let Some(node) = e.node_id else { return Ok(()) };
        // The node moves from the live entry to the tombstone.
        c.modify(e.ino, |e| e.node_id = None)?;
        Self::insert_tombstone(c, e, node, e.base.clone(), e.remote.clone())
    }

    /// Records platform node `node` as deleted here, at `like`'s place (replacing an older
    /// tombstone there).
    pub(super) fn insert_tombstone(
        c: &mut Change<'_>,
        like: &Entry,
        node: NodeId,
        base: Option<Checksum>,
        remote: Option<Checksum>,
    ) -> Result<()> {
        if let Some(old) = c.tombstone_at(like.parent, &like.name) {
            c.remove(old.ino)?;
        }
        c.insert_tombstone(NewEntry {
            parent: like.parent,
            name: like.name.clone(),
            kind: like.kind,
            node_id: Some(node),
            size: like.size,
            mtime_ms: like.mtime_ms,
            base,
            remote,
            remote_modified: like.remote_modified.clone(),
            local: None,
            edited_ms: None,
            mode: None,
        })?;
        Ok(())
    }

    /// Rename within the mount. `no_replace`: fail if the target exists (RENAME_NOREPLACE).
    pub fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        self.live_dir(new_parent)?;
        if parent == new_parent && name == new_name {
            return self
                .index
                .lookup(parent, name)
                .map(|_| ())
                .ok_or_else(|| refused(Refusal::NoSuchFile));
        }
        // The name it leaves: its problems (a refused name...) leave with it.
        let from = self.child_rel(parent, name).ok();
        // Source and target are locked while they change places, so that a save, a fetch or a
        // create's answer never lands on a name the file has just left.
        let namespace = self.namespace_lock();
        let moved = loop {
            let source = self
                .index
                .lookup(parent, name)
                .ok_or_else(|| refused(Refusal::NoSuchFile))?;
            let target = self.index.lookup(new_parent, new_name);
            let inos: Vec<u64> = std::iter::once(source.ino)
                .chain(target.as_ref().map(|t| t.ino))
                .collect();
            let done = self.with_files_locked(&inos, || {
                // Looked up again under the locks: what the rename moves is what is there now.
                let source_now = self.index.lookup(parent, name)?;
                let target_now = self.index.lookup(new_parent, new_name);
                if source_now.ino != source.ino
                    || target_now.as_ref().map(|t| t.ino) != target.as_ref().map(|t| t.ino)
                {
                    return None; // Changed while we waited for the locks: look again.
                }
                Some(self.rename_locked(source_now, target_now, new_parent, new_name, no_replace))
            });
            if let Some(result) = done {
                break result?;
            }
        };
        drop(namespace);
        if let Some(from) = from {
            self.status.forget_path(&from);
        }
        self.push_subtree(moved);
        Ok(())
    }

    /// Rename with both places locked; returns the moved inode.
    fn rename_locked(
        &self,
        source: Entry,
        target: Option<Entry>,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<u64> {
        let (parent, name) = (source.parent, source.name.as_str());
        if source.is_dir() && (new_parent == source.ino || self.is_inside(new_parent, source.ino)) {
            return Err(refused(Refusal::IntoItself));
        }
        if let Some(t) = &target {
            if no_replace {
                return Err(refused(Refusal::Exists));
            }
            match (source.is_dir(), t.is_dir()) {
                (true, false) => return Err(refused(Refusal::NotAFolder)),
                (false, true) => return Err(refused(Refusal::IsAFolder)),
                (true, true) if self.index.child_count(t.ino) > 0 => {
                    return Err(refused(Refusal::NotEmpty))
                }
                _ => {}
            }
        }
        let from = self.child_rel(parent, name)?;
        let to = self.child_rel(new_parent, new_name)?;
        if let Some(t) = target.as_ref().filter(|t| !t.is_dir()) {
            // A rename over a file replaces it, as a save does (the way most editors save):
            // what it replaces is kept first, exactly like a plain save.
            self.keep_replaced(t, &to)?;
        }
        if source.is_hydrated() {
            self.mirror.rename(&from, &to)?;
        } else if let Some(t) = &target {
            // The source is not on disk (its copy was never fetched): the target's copy goes.
            if let Some(rel) = self.index.path(t.ino) {
                let _ = self.mirror.remove_file(&rel);
            }
        }
        // The disk changed: now the index, in one change (a crash or a reader in between never
        // sees the node held twice or by nobody). The old node stays on the platform, hidden here.
        let moved = self.index.change(|c| {
            Self::leave_tombstone(c, &source)?;
            let identity = match &target {
                Some(t) => {
                    c.remove(t.ino)?;
                    if t.is_dir() {
                        Identity::default()
                    } else {
                        Identity::of(t)
                    }
                }
                None => Self::reclaim_tombstone(c, new_parent, new_name)?,
            };
            let identity = if source.is_dir() {
                Identity::default()
            } else {
                identity
            };
            tracing::debug!(
                ino = source.ino,
                target = ?target.as_ref().map(|t| (t.ino, t.node_id)),
                takes = ?identity.node_id,
                "renaming"
            );
            let moved = c.modify(source.ino, |e| {
                e.parent = new_parent;
                e.name = new_name.to_string();
                if !e.is_dir() {
                    // The name decides the kind: a temp file renamed to `post.html` is a site.
                    e.kind = NodeKind::of_file_name(new_name);
                }
                identity.apply(e);
            })?;
            if moved.is_dir() {
                Self::renew_subtree(c, moved.ino)?;
            }
            Ok::<_, SyncError>(moved)
        })?;
        if target.is_some() {
            // A rename over a file is a save: its content is a version, as for a plain save.
            crate::cache::save::record_site_version(&self.mirror, &to, moved.kind, None);
        }
        tracing::debug!(%from, %to, ino = moved.ino, node = ?moved.node_id, "renamed locally");
        Ok(moved.ino)
    }

    /// Keeps the content a rename is about to replace in `sites-versions/`, under the same
    /// policy as any replacement (`back_up`): when that fails and the content exists nowhere
    /// else, the rename does not happen.
    fn keep_replaced(&self, target: &Entry, rel: &RelPath) -> Result<()> {
        if is_local_only(rel) || !target.is_hydrated() {
            return Ok(());
        }
        self.back_up(rel, target)
    }

    /// Whether `ino` lies inside folder `dir`.
    fn is_inside(&self, ino: u64, dir: u64) -> bool {
        let mut current = ino;
        for _ in 0..256 {
            if current == dir {
                return true;
            }
            match self.index.get(current) {
                Some(e) => current = e.parent,
                None => return false,
            }
        }
        false
    }

    /// A moved folder goes up as new nodes: its contents' old nodes stay on the platform, each
    /// under the old folder's tombstone.
    fn renew_subtree(c: &mut Change<'_>, dir: u64) -> Result<()> {
        for child in c.entries_under(dir).into_iter().filter(|e| !e.tombstone) {
            if child.node_id.is_some() {
                Self::leave_tombstone_under_old_parent(c, &child)?;
            }
            if child.is_dir() {
                Self::renew_subtree(c, child.ino)?;
            }
        }
        Ok(())
    }

    fn leave_tombstone_under_old_parent(c: &mut Change<'_>, child: &Entry) -> Result<()> {
        // The platform node is forgotten locally; the next listing finds it under the old
        // folder's tombstone and keeps it hidden there.
        c.modify(child.ino, |e| {
            e.node_id = None;
            e.base = None;
            e.remote = None;
            e.remote_modified = None;
        })?;
        Ok(())
    }

    fn push_subtree(self: &Arc<Self>, ino: u64) {
        self.request_push(ino);
        for child in self.index.children(ino) {
            self.push_subtree(child.ino);
        }
    }

    /// Sets a file's modification time (utimens); kept locally.
    /// A time the user set (`touch -d`, `tar x`, `cp -p`): the index and the mirror copy both
    /// carry it, so the next start sees the copy unchanged.
    pub fn keep_mtime(&self, ino: u64, ms: i64) -> Result<Entry> {
        let _claimed = self.file_claim(ino);
        let e = self.index.modify(ino, |e| e.mtime_ms = ms)?;
        if e.is_hydrated() {
            let rel = self.rel(ino)?;
            self.mirror.set_modified(&rel, ms);
        }
        Ok(e)
    }

    /// Sets the permission bits of a file or folder (chmod): kept locally, in the index (which
    /// the mount shows) and on the mirror copy; nothing goes up, the platform has no modes. A
    /// mirror copy that can't take them (best effort) changes nothing the mount shows.
    pub fn keep_mode(&self, ino: u64, mode: u32) -> Result<Entry> {
        let _claimed = self.file_claim(ino);
        let e = self
            .index
            .get(ino)
            .ok_or(crate::cache::IndexError::Missing(ino))?;
        let dir = e.is_dir();
        let kept = crate::cache::kept_mode(mode, dir);
        if kept == e.mode {
            // The mode it has (`tar x`, `cp -p` set every file's): nothing to write.
            return Ok(e);
        }
        let e = self.index.modify(ino, |e| e.mode = kept)?;
        if e.is_hydrated() {
            let rel = self.rel(ino)?;
            if let Err(err) = self.mirror.set_mode(&rel, e.perm(), dir) {
                tracing::warn!(path = %rel, error = %err, "could not set the mirror copy's mode (kept in the index)");
            }
        }
        Ok(e)
    }

    /// The mirror path of an inode.
    pub fn mirror_path(&self, ino: u64) -> Option<std::path::PathBuf> {
        Some(self.mirror.path(&self.index.path(ino)?))
    }

    /// A fresh temp file in the mirror's temp folder (for a working copy).
    pub fn temp_file(&self) -> std::path::PathBuf {
        self.mirror.temp()
    }

    /// Tells the kernel a name changed (used by the mount for its own bookkeeping).
    /// Tells the kernel that a file's content or size changed under its cache.
    pub fn notify_content(&self, ino: u64) {
        self.notify(Notice::Content { ino });
    }

    pub fn notify_entry(&self, parent: u64, name: &str) {
        self.notify(Notice::Entry {
            parent,
            name: name.to_string(),
        });
    }
}
