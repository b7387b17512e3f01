//! The plain folder's side of a local change: a program changed the folder directly (the watcher
//! says where, or the periodic comparison finds it) and the engine records it after the fact, with
//! the mount's policies: a new or edited file is a save (pushed at once), a file gone is a local
//! delete (a tombstone: never deleted across), a rename is the two halves (rename creates), a
//! file made where a deleted one was takes its platform node back (an editor's
//! delete-then-write is an update). Each path is looked at under its file's claim, so a pull
//! placing the same file waits, and then sees the change (`fetch.rs`).

use std::sync::Arc;

use bytes::Bytes;

use super::saved_versions::SavedVersion;
use super::{ChangedBy, Engine, Result, SyncError};
use crate::cache::{is_local_only, Entry, ListedKind, NewEntry, RelPath, Stat, ROOT_INO};
use crate::protocol::{checksum, Checksum, NodeKind, MAX_CONTENT_BYTES};

/// A file modified less than this long ago was saved just now: its modification time is
/// carried onto the platform's clock by the clock's offset now (recorded on the platform's
/// clock, so a later clock step does not move it); an older one was found by a comparison after
/// the program was stopped.
const RECENT_MS: i64 = 10_000;

/// What a look read of a file.
struct OnDisk {
    sum: Checksum,
    stat: Stat,
    /// Its bytes, unless larger than what may go up.
    bytes: Option<Bytes>,
}

/// How closely a file is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Read and hash it: a watcher said it changed.
    Hash,
    /// Trust an unchanged size and time (the periodic comparison).
    Stat,
    /// Read and hash it, at the first comparison after a power cut: a copy older than its
    /// recorded save lost that save and never goes up (`power_cut.rs`).
    AfterCrash,
}

/// What looking at a path found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Unchanged,
    /// A known file's content changed: it goes up.
    Edited,
    /// A file or folder the index did not know: it goes up as new.
    Added,
    /// Gone from the folder: a local delete.
    Removed,
    /// Not synced (a local-only name, a symlink, a name the index refuses).
    Skipped,
}

impl Engine {
    /// Looks at one path in the folder and records what changed there (not what is below it).
    pub fn observe(self: &Arc<Self>, rel: &RelPath, look: Look) -> Result<Seen> {
        if rel.is_root() || is_local_only(rel) {
            return Ok(Seen::Skipped);
        }
        let Some(parent_rel) = rel.parent() else {
            return Ok(Seen::Skipped);
        };
        let name = rel.rsplit('/').next().unwrap_or(rel.as_str()).to_string();
        match self.mirror.stat(rel) {
            Some(ListedKind::File(stat)) => {
                let Some(parent) = self.adopt_folder(&parent_rel)? else {
                    return Ok(Seen::Skipped);
                };
                self.observe_file(parent, &name, rel, stat, look)
            }
            Some(ListedKind::Folder) => {
                let Some(parent) = self.adopt_folder(&parent_rel)? else {
                    return Ok(Seen::Skipped);
                };
                if let Some(e) = self.index.lookup(parent, &name).filter(|e| !e.is_dir()) {
                    // A file replaced by a folder: the file is deleted here.
                    self.forget_tree(&e)?;
                }
                let known = self.index.lookup(parent, &name).is_some();
                Ok(match self.adopt_folder(rel)? {
                    Some(_) if !known => Seen::Added,
                    Some(_) => Seen::Unchanged,
                    None => Seen::Skipped,
                })
            }
            Some(ListedKind::Other) => {
                tracing::debug!(path = %rel, "not a file nor a folder (a symlink?): not synced");
                Ok(Seen::Skipped)
            }
            None => {
                let Some(e) = self.live_entry_at(rel) else {
                    return Ok(Seen::Unchanged);
                };
                if !e.is_dir() && e.local.is_none() {
                    // Never on disk here (a platform file not fetched yet): nothing was deleted.
                    return Ok(Seen::Unchanged);
                }
                self.forget_tree(&e)?;
                tracing::info!(path = %rel, "deleted in the folder: kept on the platform");
                Ok(Seen::Removed)
            }
        }
    }

    /// Looks at `rel` and everything under it, on disk and in the index.
    pub fn observe_tree(self: &Arc<Self>, rel: &RelPath, look: Look) -> Result<usize> {
        let mut changed = 0;
        let mut stack = vec![rel.clone()];
        while let Some(at) = stack.pop() {
            if !at.is_root() && is_local_only(&at) {
                continue;
            }
            if !at.is_root() && self.observe(&at, look)? != Seen::Unchanged {
                changed += 1;
            }
            if self.mirror.stat(&at) != Some(ListedKind::Folder) {
                continue;
            }
            let mut names: std::collections::BTreeSet<String> =
                self.mirror.list(&at).into_iter().map(|l| l.name).collect();
            let ino = if at.is_root() {
                Some(ROOT_INO)
            } else {
                self.live_entry_at(&at)
                    .filter(|e| e.is_dir())
                    .map(|e| e.ino)
            };
            if let Some(ino) = ino {
                names.extend(
                    self.index
                        .children(ino)
                        .into_iter()
                        .filter(|e| !e.tombstone)
                        .map(|e| e.name),
                );
            }
            for name in names {
                if let Ok(child) = at.join(&name) {
                    stack.push(child);
                }
            }
        }
        Ok(changed)
    }

    /// The paths whose disk copy may differ from the index, found cheaply: an indexed file whose
    /// size or time differs or that is gone, and a name on disk the index does not know. The
    /// periodic comparison looks at these closely.
    pub fn differing_paths(&self) -> Vec<RelPath> {
        let mut differing = Vec::new();
        for e in self.index.all() {
            if e.tombstone || e.is_dir() || e.local.is_none() || self.index.is_hidden(e.ino) {
                continue;
            }
            let Some(rel) = self.index.path(e.ino) else {
                continue;
            };
            if is_local_only(&rel) {
                continue;
            }
            match self.mirror.stat(&rel) {
                Some(ListedKind::File(stat))
                    if stat.size == e.size && stat.mtime_ms == e.mtime_ms => {}
                _ => differing.push(rel),
            }
        }
        let mut stack = vec![(RelPath::root(), Some(ROOT_INO))];
        while let Some((dir, ino)) = stack.pop() {
            for item in self.mirror.list(&dir) {
                let Ok(rel) = dir.join(&item.name) else {
                    continue;
                };
                if is_local_only(&rel) {
                    continue;
                }
                let known = ino.and_then(|i| self.index.lookup(i, &item.name));
                match item.what {
                    ListedKind::Folder => {
                        let known = known.filter(|e| e.is_dir() && !e.tombstone);
                        if known.is_none() {
                            differing.push(rel.clone());
                        }
                        stack.push((rel, known.map(|e| e.ino)));
                    }
                    ListedKind::File(_) if known.as_ref().is_none_or(|e| e.tombstone) => {
                        differing.push(rel)
                    }
                    _ => {}
                }
            }
        }
        differing.sort();
        differing.dedup();
        differing
    }

    /// The live entry at `rel`, if the index has one.
    fn live_entry_at(&self, rel: &RelPath) -> Option<Entry> {
        let mut e: Option<Entry> = None;
        for name in rel.split('/').filter(|s| !s.is_empty()) {
            let parent = e.as_ref().map_or(ROOT_INO, |p| p.ino);
            e = Some(self.index.lookup(parent, name).filter(|x| !x.tombstone)?);
        }
        e
    }

    /// The folder `rel` in the index, adopted (with the folders above it) if it is on disk and
    /// the index does not know it. `None`: it is not a folder on disk, or its name is refused.
    fn adopt_folder(self: &Arc<Self>, rel: &RelPath) -> Result<Option<u64>> {
        let mut ino = ROOT_INO;
        let mut at = RelPath::root();
        for name in rel.split('/').filter(|s| !s.is_empty()) {
            at = match at.join(name) {
                Ok(at) => at,
                Err(_) => return Ok(None),
            };
            if is_local_only(&at) {
                return Ok(None);
            }
            ino = match self.index.lookup(ino, name) {
                Some(e) if e.is_dir() && !e.tombstone => e.ino,
                Some(_) => return Ok(None),
                None => {
                    if self.mirror.stat(&at) != Some(ListedKind::Folder) {
                        return Ok(None);
                    }
                    let new = self.index.change(|c| {
                        let e = c.insert(NewEntry::made_here(ino, name, NodeKind::Folder, None))?;
                        Self::reclaim_folder_tombstone(c, ino, name, e.ino)?;
                        Ok::<_, SyncError>(c.get(e.ino).unwrap_or(e))
                    })?;
                    tracing::info!(path = %at, "a new folder in the folder");
                    self.request_push(new.ino);
                    new.ino
                }
            };
        }
        Ok(Some(ino))
    }

    fn observe_file(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        rel: &RelPath,
        stat: Stat,
        look: Look,
    ) -> Result<Seen> {
        match self.index.lookup(parent, name) {
            Some(e) if e.is_dir() => {
                // A folder replaced by a file: the folder is deleted here, the file is new.
                self.forget_tree(&e)?;
                self.adopt_file(parent, name, rel)
            }
            Some(e) => {
                let claimed = self.file_claim(e.ino);
                let Some(e) = self
                    .index
                    .get(e.ino)
                    .filter(|now| now.parent == parent && now.name == name && !now.tombstone)
                else {
                    // Renamed or deleted meanwhile: looked at again as a new name.
                    return self.adopt_file(parent, name, rel);
                };
                if look == Look::Stat && stat.size == e.size && stat.mtime_ms == e.mtime_ms {
                    return Ok(Seen::Unchanged);
                }
                let recorded = self.record_disk_copy(&e, rel, look == Look::AfterCrash)?;
                // Its push waits for the claim; the version needs only the bytes read.
                drop(claimed);
                Ok(match recorded {
                    Some(version) => {
                        self.keep_version_after_push(e.ino, version);
                        Seen::Edited
                    }
                    None => Seen::Unchanged,
                })
            }
            None => self.adopt_file(parent, name, rel),
        }
    }

    /// Records what the disk holds for the live file `e` (its claim held): `Some` if its content
    /// changed, in which case the change goes up and the answer is the version to keep once the
    /// claim is let go (the change may exist nowhere else). `after_crash`: the first comparison
    /// after a power cut, where a copy older than its recorded save is a lost write
    /// (`power_cut.rs`), recorded without going up.
    pub(super) fn record_disk_copy(
        self: &Arc<Self>,
        e: &Entry,
        rel: &RelPath,
        after_crash: bool,
    ) -> Result<Option<SavedVersion>> {
        let Some(OnDisk { sum, stat, bytes }) = self.read_on_disk(rel)? else {
            return Ok(None);
        };
        let (size, mtime_ms) = (stat.size, stat.mtime_ms);
        if e.local.as_ref() == Some(&sum) {
            if e.size != size || e.mtime_ms != mtime_ms {
                self.index.modify(e.ino, |e| {
                    e.size = size;
                    e.mtime_ms = mtime_ms;
                })?;
            }
            return Ok(None);
        }
        if after_crash && self.is_lost_write(e, &stat) {
            self.settle_lost_write(e, rel, sum, size, &stat)?;
            return Ok(None);
        }
        self.record_seen(e, rel, sum.clone(), size, mtime_ms)?;
        self.hand_on_read(e.ino, rel, &sum, bytes.as_ref());
        // The push starts first: the version is kept once it is answered (`saved_versions.rs`).
        self.request_push(e.ino);
        self.announce_change(rel, ChangedBy::Folder);
        Ok(Some(SavedVersion::new(rel.clone(), e.kind, bytes)))
    }

    /// The bytes a look read go to the file's push as they are, which then reads and hashes
    /// nothing again (the mount's saves do the same). If the file is written again meanwhile, the
    /// push sends what was recorded and the look that follows the new write sends the rest.
    /// Nothing for a name that stays local: no push would take it.
    fn hand_on_read(&self, ino: u64, rel: &RelPath, sum: &Checksum, bytes: Option<&Bytes>) {
        if let (Some(bytes), false) = (bytes, is_local_only(rel)) {
            if let Some(cell) = self.cells.existing(ino) {
                self.cells.hand_on(&mut cell.state(), sum, bytes);
            }
        }
    }

    /// A push found content on disk that no look has recorded yet (saved again since the
    /// watcher said, and read by the push before the watcher's look): it is recorded and kept as
    /// a look would, since the look that follows finds it recorded and does nothing. Before, a
    /// site saved so, whose push then failed and which was saved over next, existed nowhere (the
    /// plain folder's long model run). `e`'s claim is held; answers the entry as recorded.
    pub(super) fn record_read_by_push(
        &self,
        e: &Entry,
        rel: &RelPath,
        sum: Checksum,
        bytes: &[u8],
    ) -> Result<Entry> {
        // Its time is unknown (the next comparison reads it again).
        let e = self.record_seen(e, rel, sum, bytes.len() as u64, -1)?;
        self.keep_version_of(rel, e.kind, bytes);
        self.announce_change(rel, ChangedBy::Folder);
        Ok(e)
    }

    /// Records `sum` as what the disk holds for `e` (a save seen in the folder).
    fn record_seen(
        &self,
        e: &Entry,
        rel: &RelPath,
        sum: Checksum,
        size: u64,
        mtime_ms: i64,
    ) -> Result<Entry> {
        let edited = self.seen_edit_time(mtime_ms);
        let e = self.index.modify(e.ino, |e| {
            e.local = Some(sum);
            e.size = size;
            e.mtime_ms = mtime_ms;
            e.edited_ms = Some(edited);
        })?;
        tracing::info!(path = %rel, "saved in the folder");
        self.status.clear_conflict(rel);
        self.save_succeeded(e.ino);
        Ok(e)
    }

    /// A file the index does not know: a new one (or one made where a deleted one was, which
    /// takes its platform node back, as in the mount).
    fn adopt_file(self: &Arc<Self>, parent: u64, name: &str, rel: &RelPath) -> Result<Seen> {
        if crate::cache::check_child(parent == ROOT_INO, name).is_err() {
            return Ok(Seen::Skipped);
        }
        let Some(OnDisk { sum, stat, bytes }) = self.read_on_disk(rel)? else {
            return Ok(Seen::Unchanged);
        };
        let Stat { size, mtime_ms, .. } = stat;
        let kind = NodeKind::of_file_name(name);
        let edited = self.seen_edit_time(mtime_ms);
        let inserted = self.index.change(|c| {
            if c.lookup(parent, name).is_some() {
                // Made by the pull meanwhile: the next look compares it.
                return Ok(None);
            }
            let identity = match c.tombstone_at(parent, name) {
                Some(t) if !t.is_dir() => {
                    c.remove(t.ino)?;
                    Some(t)
                }
                _ => None,
            };
            let e = c.insert(NewEntry {
                parent,
                name: name.to_string(),
                kind,
                node_id: identity.as_ref().and_then(|t| t.node_id),
                size,
                mtime_ms,
                base: identity.as_ref().and_then(|t| t.base.clone()),
                remote: identity.as_ref().and_then(|t| t.remote.clone()),
                remote_modified: identity.as_ref().and_then(|t| t.remote_modified.clone()),
                local: Some(sum.clone()),
                edited_ms: Some(edited),
                mode: None,
            })?;
            Ok::<_, SyncError>(Some(e))
        })?;
        let Some(e) = inserted else {
            return Ok(Seen::Unchanged);
        };
        tracing::info!(path = %rel, "a new file in the folder");
        {
            // Claimed while handed on and asked for, so what is handed on stays for the push.
            let _claimed = self.file_claim(e.ino);
            self.hand_on_read(e.ino, rel, &sum, bytes.as_ref());
            self.request_push(e.ino);
        }
        self.keep_version_after_push(e.ino, SavedVersion::new(rel.clone(), kind, bytes));
        self.announce_change(rel, ChangedBy::Folder);
        Ok(Seen::Added)
    }

    /// When a change seen on disk was made, on the platform's clock: for a file written a moment
    /// ago (the watcher's case), its modification time by the clock's offset now, never later
    /// than now (a save seen late, when a platform change made after it arrives, must not be
    /// taken for the later edit: `a_save_the_engine_was_not_told_of_is_decided_not_overwritten`);
    /// else its modification time as calibrated now (found by a comparison after the program
    /// was stopped: `reconcile.rs`); now when the time is unknown (written during the read).
    fn seen_edit_time(&self, mtime_ms: i64) -> i64 {
        if mtime_ms < 0 {
            return self.clock.now_ms();
        }
        let recent = (self.settings.clock.wall_ms() - mtime_ms).abs() < RECENT_MS;
        match recent {
            true => (mtime_ms + self.clock.offset_ms()).min(self.clock.now_ms()),
            false => self.edited_while_no_mount_ran(mtime_ms),
        }
    }

    /// `rel`'s checksum, size, times and (up to [`MAX_CONTENT_BYTES`], what may go up) bytes,
    /// read once without following a symlink (`None`: not a file any more). The modification
    /// time is -1 when the file changed during the read.
    fn read_on_disk(&self, rel: &RelPath) -> Result<Option<OnDisk>> {
        let before = match self.mirror.stat(rel) {
            Some(ListedKind::File(stat)) => stat,
            _ => return Ok(None),
        };
        let read = match before.size <= MAX_CONTENT_BYTES {
            true => self.mirror.read_own_at_most(rel, MAX_CONTENT_BYTES),
            false => Ok(None),
        };
        let read = match read {
            Ok(Some(bytes)) => {
                let bytes = Bytes::from(bytes);
                Ok((checksum(&bytes), bytes.len() as u64, Some(bytes)))
            }
            // Too large to go up: hashed in chunks, never held whole.
            Ok(None) => self.mirror.checksum_at(rel).map(|(s, n)| (s, n, None)),
            Err(e) => Err(e),
        };
        let (sum, size, bytes) = match read {
            Ok(found) => found,
            Err(crate::cache::MirrorError::Symlink(_)) => return Ok(None),
            Err(crate::cache::MirrorError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        // The time before the read: a write during it makes the next comparison look again.
        let mtime_ms = if size == before.size {
            before.mtime_ms
        } else {
            -1
        };
        let stat = Stat {
            size,
            mtime_ms,
            changed_ms: before.changed_ms,
        };
        Ok(Some(OnDisk { sum, stat, bytes }))
    }

    /// A saved content kept where it might otherwise exist nowhere ([`SavedVersion`]), with
    /// the content already read.
    pub(super) fn keep_version_of(&self, rel: &RelPath, kind: NodeKind, bytes: &[u8]) {
        if self.keeps_saved_versions(kind) {
            if let Err(e) = crate::cache::save::back_up(&self.mirror, rel, kind, bytes) {
                tracing::warn!(path = %rel, error = %e, "could not keep the saved version in sites-versions");
            }
        }
    }

    pub(super) fn keeps_saved_versions(&self, kind: NodeKind) -> bool {
        kind == NodeKind::Site || !(self.sync_on() && self.is_online())
    }

    /// A local delete of `e` and everything under it: tombstones for what the platform has, the
    /// rest forgotten (children first).
    fn forget_tree(&self, e: &Entry) -> Result<()> {
        if e.is_dir() {
            for child in self.index.children(e.ino) {
                if !child.tombstone {
                    self.forget_tree(&child)?;
                }
            }
        }
        let rel = self.index.path(e.ino);
        self.with_files_locked(&[e.ino], || -> Result<()> {
            let Some(now) = self.index.get(e.ino).filter(|now| !now.tombstone) else {
                return Ok(());
            };
            if now.is_dir() && now.node_id.is_none() && self.index.child_count(now.ino) > 0 {
                // Tombstones inside (nodes moved in) keep the folder's place, hidden.
                self.index.modify(now.ino, |e| e.tombstone = true)?;
                return Ok(());
            }
            self.bury(&now)
        })?;
        if let Some(rel) = rel {
            self.status.forget_path(&rel);
        }
        Ok(())
    }
}
