//! Reconciliation: the full comparison of both sides. The local side once, before the mount
//! opens: the mirror is compared with the index (files edited, added or deleted while no mount
//! ran, or the index lost its last update in a crash; after a power cut, a copy older than its
//! recorded save lost that save and never goes up: `power_cut.rs`). The platform side at start, on reconnect
//! and when sync is turned back on (changes since the cursor, or the listing); then everything
//! still different from its base goes up. Nothing is deleted on either side.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Engine, Notice, Result, SyncError};
use crate::cache::{is_local_only, ListedKind, NewEntry, RelPath, ROOT_INO, VERSIONS_DIR};
use crate::protocol::{parse_time, NodeKind};

impl Engine {
    /// The platform side of the full comparison (the local side, `scan_local`, ran once before
    /// the mount opened); errors when the platform can't be reached.
    pub async fn reconcile(self: &Arc<Self>) -> Result<()> {
        self.calibrate().await?;
        // The platform answers: pushes may go from here on.
        self.came_online();
        self.resync().await?;
        self.first_listing.listed(&self.index);
        self.adopt_sites_by_name()?;
        self.push_all_changed();
        self.mark_synced();
        Ok(())
    }

    /// Calibrates the local clock against the platform's (`GET status`), and learns the account.
    pub async fn calibrate(&self) -> Result<()> {
        let local = &self.settings.clock;
        let (wall_before, boot_before) = (local.wall_ms(), local.since_boot_ms());
        let status = self.client.status().await?;
        let (wall_after, boot_after) = (local.wall_ms(), local.since_boot_ms());
        if let Some(server) = parse_time(&status.server_time) {
            // The platform's time was read about halfway through the request.
            let boot_mid = boot_before + (boot_after - boot_before) / 2;
            let wall_mid = wall_before + (wall_after - wall_before) / 2;
            self.clock
                .calibrated(&self.index, server.timestamp_millis(), boot_mid, wall_mid);
        }
        // The name is shown in status and the log: no terminal escapes from the platform.
        let mut status = status;
        status.username = crate::protocol::printable(&status.username, 100);
        // A mirror belongs to the account that first synced it.
        match self.index.meta("account")? {
            Some(owner) if owner != status.username => {
                self.verified
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                return Err(SyncError::WrongAccount {
                    mirror: owner,
                    signed_in: status.username,
                });
            }
            Some(_) => {}
            None => self.index.set_meta("account", &status.username)?,
        }
        self.verified
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *self.account.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.username);
        Ok(())
    }

    /// The local side: the mirror against the index, for what changed while no mount ran. It runs
    /// once, before the mount opens: once the mount serves, the mirror changes only through it,
    /// and a scan racing live renames would take a file renamed away for one deleted.
    pub fn scan_local(&self) -> Result<()> {
        // Live files, and every live folder (one inside a deleted folder too: what is in it is
        // not adopted as new).
        let entries: Vec<(crate::cache::Entry, RelPath)> = self
            .index
            .all()
            .into_iter()
            .filter(|e| !e.tombstone && (e.is_dir() || !self.index.is_hidden(e.ino)))
            .filter_map(|e| self.index.path(e.ino).map(|rel| (e, rel)))
            .collect();
        let seen: HashSet<String> = entries.iter().map(|(_, rel)| rel.to_string()).collect();
        let files: Vec<&(crate::cache::Entry, RelPath)> =
            entries.iter().filter(|(e, _)| !e.is_dir()).collect();
        // One stat per file, then a walk for files the index does not know: both only read
        // until they find a change, so they run side by side, the stats split over the cores
        // (the mount is not ready until this is done).
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let chunk = files.len().div_ceil(workers).max(1);
        std::thread::scope(|scope| {
            let walk = scope.spawn(|| self.adopt_unknown(&RelPath::root(), ROOT_INO, &seen));
            let checks: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .try_for_each(|(e, rel)| self.check_local_copy(e, rel))
                    })
                })
                .collect();
            for c in checks {
                c.join()
                    .map_err(|_| SyncError::Bug("the mirror scan panicked".into()))??;
            }
            walk.join()
                .map_err(|_| SyncError::Bug("the mirror walk panicked".into()))?
        })
    }

    /// Compares one indexed file with its mirror copy: edited or deleted while no mount ran.
    fn check_local_copy(&self, e: &crate::cache::Entry, rel: &RelPath) -> Result<()> {
        let Some(local) = e.local.clone() else {
            return Ok(());
        };
        match self.mirror.stat(rel) {
            Some(ListedKind::File(stat)) => {
                // Unchanged size and time: unchanged content (a changed time is re-hashed).
                if self.trust_file_times
                    && stat.size == e.size
                    && stat.mtime_ms <= e.mtime_ms.max(0)
                {
                    return Ok(());
                }
                let (sum, size) = match self.mirror.checksum_at(rel) {
                    Ok(sum) => sum,
                    Err(crate::cache::MirrorError::Symlink(link)) => {
                        // A folder on the way is a symlink now: never hashed through (what it
                        // points to may be outside the mirror and must not go up).
                        tracing::warn!(path = %rel, link = %link.display(), "behind a symlink in the mirror: not read, left as it was");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                if sum != local {
                    if self.after_power_cut() && self.is_lost_write(e, &stat) {
                        return self.settle_lost_write(e, rel, sum, size, &stat);
                    }
                    tracing::info!(path = %rel, "changed in the mirror while no mount ran");
                    let edited = self.edited_while_no_mount_ran(stat.mtime_ms);
                    self.index.modify(e.ino, |e| {
                        e.local = Some(sum);
                        e.size = size;
                        e.mtime_ms = stat.mtime_ms;
                        e.edited_ms = Some(edited);
                    })?;
                } else {
                    self.index.modify(e.ino, |e| e.mtime_ms = stat.mtime_ms)?;
                }
            }
            Some(_) => {
                // A symlink (or a folder) where the file was: never followed nor hashed, and not
                // taken for a delete either; the file stays as the index has it.
                tracing::warn!(path = %rel, "not a file in the mirror any more (a symlink or a folder): not read, left as it was");
            }
            None => {
                // Deleted from the mirror while no mount ran: a local delete (never across).
                tracing::info!(path = %rel, "deleted from the mirror while no mount ran: kept on the platform");
                if e.node_id.is_some() {
                    self.index.modify(e.ino, |e| {
                        e.tombstone = true;
                        e.local = None;
                    })?;
                } else {
                    self.index.remove(e.ino)?;
                }
            }
        }
        Ok(())
    }

    /// The edit time of a file changed while no mount ran: its modification time (the wall
    /// clock's, then) on the platform's clock by the offset now; when the wall clock was
    /// stepped in between is not known.
    pub(super) fn edited_while_no_mount_ran(&self, mtime_ms: i64) -> i64 {
        mtime_ms + self.clock_offset_ms()
    }

    /// Files and folders in the mirror the index does not know (a Hyperclay Local folder copied
    /// in, or files added while no mount ran) join the index as local changes.
    fn adopt_unknown(&self, dir: &RelPath, parent: u64, seen: &HashSet<String>) -> Result<()> {
        for item in self.mirror.list(dir) {
            let name = item.name;
            if name.starts_with('.') || (dir.is_root() && name == VERSIONS_DIR) {
                continue;
            }
            let Ok(rel) = dir.join(&name) else {
                // Not a name the mirror can hold (the index would refuse it too).
                continue;
            };
            if item.what == ListedKind::Folder {
                let ino = match self.index.lookup(parent, &name) {
                    Some(e) if e.is_dir() => e.ino,
                    Some(_) => continue,
                    None if self.index.tombstone_at(parent, &name).is_some() => continue,
                    None => {
                        tracing::info!(path = %rel, "a folder in the mirror the index did not know: adopted");
                        self.index
                            .insert(NewEntry {
                                parent,
                                name: name.clone(),
                                kind: NodeKind::Folder,
                                node_id: None,
                                size: 0,
                                mtime_ms: 0,
                                base: None,
                                remote: None,
                                remote_modified: None,
                                local: None,
                                edited_ms: None,
                                mode: None,
                            })?
                            .ino
                    }
                };
                self.adopt_unknown(&rel, ino, seen)?;
            } else if let ListedKind::File(stat) = item.what {
                if seen.contains(rel.as_str()) || self.index.lookup(parent, &name).is_some() {
                    continue;
                }
                let (sum, size) = self.mirror.checksum_at(&rel)?;
                tracing::info!(path = %rel, "a file in the mirror the index did not know: adopted");
                self.index.change(|c| {
                    if let Some(t) = c.tombstone_at(parent, &name) {
                        // A file deleted through the mount whose copy came back: the user wants
                        // it (the tombstone goes in the same change as the file's new entry).
                        c.remove(t.ino)?;
                    }
                    c.insert(NewEntry {
                        parent,
                        name,
                        kind: NodeKind::of_file_name(rel.as_str()),
                        node_id: None,
                        size,
                        mtime_ms: stat.mtime_ms,
                        base: None,
                        remote: None,
                        remote_modified: None,
                        local: Some(sum),
                        edited_ms: Some(self.edited_while_no_mount_ran(stat.mtime_ms)),
                        mode: None,
                    })?;
                    Ok::<_, SyncError>(())
                })?;
            }
        }
        Ok(())
    }

    /// A local site the platform has under the same name elsewhere is that node: the platform's
    /// location wins (the local file moves there, backing up what it replaces); the decision then
    /// runs on the two contents.
    fn adopt_sites_by_name(self: &Arc<Self>) -> Result<()> {
        let local_sites = self.index.select(|e| {
            e.kind == NodeKind::Site && e.node_id.is_none() && !e.tombstone && e.local.is_some()
        });
        for e in local_sites {
            let rel = self.index.path(e.ino).unwrap_or_default();
            if is_local_only(&rel) {
                continue;
            }
            if let Some(platform_site) = self.index.site_named(&e.name).filter(|x| x.ino != e.ino) {
                tracing::info!(from = %rel, to = %self.index.path(platform_site.ino).unwrap_or_default(), "a local site matched the platform's site of the same name: moved to its place");
                if !self.merge_into(&e, &platform_site)? {
                    continue;
                }
                self.notify(Notice::Entry {
                    parent: platform_site.parent,
                    name: platform_site.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Requests a push for everything that differs from its base (or is new to the platform).
    pub fn push_all_changed(self: &Arc<Self>) {
        let changed = self
            .index
            .select(|e| !e.tombstone && ((e.is_dir() && e.node_id.is_none()) || e.goes_up()));
        for e in changed {
            if !self.index.is_hidden(e.ino) {
                self.request_push(e.ino);
            }
        }
    }

    /// Files that will go up (`waiting`), and those that never will, counted by reason
    /// (`held`): a script can wait for "nothing waiting", and "up to date" never shows beside a
    /// count of files that can't go up.
    pub fn pending_uploads(&self) -> Pending {
        let mut pending = Pending::default();
        self.each_pending(|_, held| match held {
            Some(reason) => *pending.held.entry(reason.to_string()).or_default() += 1,
            None => pending.waiting += 1,
        });
        pending
    }

    /// The paths of the files that will go up (those [`Engine::pending_uploads`] counts as
    /// waiting), sorted: the local server's folder listing marks them.
    pub fn waiting_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        self.each_pending(|rel, held| {
            if held.is_none() {
                paths.push(rel.to_string());
            }
        });
        paths.sort();
        paths
    }

    /// Each file changed here that is not on the platform as it is: its path, and why it never
    /// goes up as it is (None: it will go up).
    fn each_pending(&self, mut each: impl FnMut(&RelPath, Option<&'static str>)) {
        for e in self.index.select(|e| e.goes_up()) {
            if self.index.is_hidden(e.ino) {
                continue;
            }
            let Some(rel) = self.index.path(e.ino) else {
                continue;
            };
            if is_local_only(&rel) {
                continue;
            }
            if self.held_after_failed_save(e.ino) {
                each(&rel, Some(super::failed::HELD_REASON));
                continue;
            }
            each(&rel, never_goes_up(&e, &rel));
        }
    }
}

/// What is left to go up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    pub waiting: usize,
    /// Files that stay local, by reason.
    pub held: std::collections::BTreeMap<String, usize>,
}

/// Why a file will never go up as it is, if so (the platform's rules, checked before sending).
fn never_goes_up(e: &crate::cache::Entry, rel: &RelPath) -> Option<&'static str> {
    use crate::protocol::{names, MAX_CONTENT_BYTES, MAX_FOLDER_DEPTH};
    if e.size > MAX_CONTENT_BYTES {
        return Some("larger than 20 MiB");
    }
    if names::check(e.kind, &e.name).is_err() {
        return Some("a name the platform refuses");
    }
    let folders: Vec<&str> = rel.split('/').collect();
    let folders = &folders[..folders.len() - 1];
    if folders.len() > MAX_FOLDER_DEPTH {
        return Some("folders deeper than 5");
    }
    if folders.iter().any(|f| names::check_folder(f).is_err()) {
        return Some("a folder name the platform refuses");
    }
    None
}
