//! The OS watcher (the `notify` crate: inotify, FSEvents, ReadDirectoryChangesW), reduced to
//! what the folder front door needs: which paths to look at, how soon, and when to look at
//! everything because events were lost.
//!
//! On Linux each synced folder gets its own watch and local-only folders (`.git`,
//! `node_modules`, `.hyperclay`, `sites-versions`) none: they never go up, and a clone's or an
//! install's events there would only fill the queue. A new folder is watched as soon as it is
//! seen, and then looked at whole, for what was made in it before its watch was in place.
//! Elsewhere the root is watched recursively (FSEvents and Windows watch a tree in one go) and
//! local-only paths are dropped on arrival.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};

use crate::cache::is_local_only;

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Look at this path now (a file closed after writing, a rename, a delete): `tree` also looks
    /// at everything under it.
    Now { path: PathBuf, tree: bool },
    /// Look once it has been quiet for the settle time (written to, no close seen yet).
    Settled(PathBuf),
    /// Events were lost (a queue overflow, a watch that failed): compare everything.
    Everything(String),
    /// The limit of watches was reached: some folders are only compared periodically.
    WatchLimit(PathBuf),
    /// The folder's own state (`.hyperclay/`) was deleted or moved away while running.
    StateGone,
}

/// The watcher and the folders it watches.
pub struct Watch {
    root: PathBuf,
    watcher: notify::RecommendedWatcher,
    /// Folders watched one by one (Linux), so a moved or removed one can be unwatched with
    /// everything under it.
    watched: BTreeSet<PathBuf>,
    per_folder: bool,
    /// Where the limit of watches was reached while starting (said once by the caller).
    pub limit_at: Option<PathBuf>,
}

/// Whether a path under the root never syncs (`rel` is relative to the root).
fn local_only(root: &Path, path: &Path) -> bool {
    match path.strip_prefix(root).ok().and_then(|r| r.to_str()) {
        Some("") => false,
        Some(rel) => is_local_only(&rel.replace('\\', "/")),
        // Not under the root, or not UTF-8 (never a platform name): not ours.
        None => true,
    }
}

impl Watch {
    /// Starts watching `root`; each event goes to `handler` (on the watcher's own thread).
    pub fn start(
        root: &Path,
        handler: impl Fn(notify::Result<Event>) + Send + 'static,
    ) -> notify::Result<Watch> {
        let watcher = notify::recommended_watcher(handler)?;
        let mut watch = Watch {
            root: root.to_path_buf(),
            watcher,
            watched: BTreeSet::new(),
            per_folder: cfg!(target_os = "linux"),
            limit_at: None,
        };
        if watch.per_folder {
            match watch.watch_tree(root) {
                // Out of watches: what is not watched is found by the periodic comparison.
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    watch.limit_at = Some(
                        e.paths
                            .first()
                            .cloned()
                            .unwrap_or_else(|| root.to_path_buf()),
                    );
                }
                other => other?,
            }
        } else {
            watch.watcher.watch(root, RecursiveMode::Recursive)?;
        }
        Ok(watch)
    }

    /// Watches `dir` and every synced folder under it (Linux; elsewhere the root's watch covers
    /// it). A failure to watch is returned: the caller compares that folder periodically.
    pub fn watch_tree(&mut self, dir: &Path) -> notify::Result<()> {
        if !self.per_folder || local_only(&self.root, dir) {
            return Ok(());
        }
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !self.watched.contains(&dir) {
                match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(dir.clone());
                    }
                    // Gone already: its delete event says so.
                    Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => continue,
                    Err(e) => return Err(e),
                }
            }
            let Ok(items) = std::fs::read_dir(&dir) else {
                continue;
            };
            for item in items.flatten() {
                let path = item.path();
                if item.file_type().is_ok_and(|t| t.is_dir()) && !local_only(&self.root, &path) {
                    stack.push(path);
                }
            }
        }
        Ok(())
    }

    /// Stops watching `dir` and everything under it (moved away or removed: inotify would go on
    /// reporting what happens in it under its old path).
    pub fn unwatch_tree(&mut self, dir: &Path) {
        let under: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for path in under {
            let _ = self.watcher.unwatch(&path);
            self.watched.remove(&path);
        }
    }

    /// How many folders are watched one by one.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// What one event from the watcher asks for (watches for new folders are added here).
    pub fn wanted(&mut self, event: notify::Result<Event>) -> Vec<Wanted> {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    let path = e
                        .paths
                        .first()
                        .cloned()
                        .unwrap_or_else(|| self.root.clone());
                    return vec![Wanted::WatchLimit(path), Wanted::Everything(e.to_string())];
                }
                return vec![Wanted::Everything(format!("the watcher failed: {e}"))];
            }
        };
        if event.need_rescan() {
            return vec![Wanted::Everything(
                "the watcher lost events (its queue overflowed)".into(),
            )];
        }
        let mut wanted = Vec::new();
        let state = self.root.join(crate::cache::INDEX_DIR);
        for path in &event.paths {
            if *path == state
                && matches!(
                    event.kind,
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                )
                && !state.is_dir()
            {
                wanted.push(Wanted::StateGone);
                continue;
            }
            if local_only(&self.root, path) {
                continue;
            }
            match event.kind {
                // Reads, opens, and a close after reading change nothing.
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    wanted.push(Wanted::Now {
                        path: path.clone(),
                        tree: false,
                    })
                }
                EventKind::Access(_) => {}
                // A mode or time change alone is not a save (nothing to send).
                EventKind::Modify(ModifyKind::Metadata(_)) if self.per_folder => {}
                EventKind::Create(CreateKind::Folder) => {
                    wanted.extend(self.new_folder(path));
                }
                EventKind::Modify(ModifyKind::Name(_)) => {
                    if path.is_dir() {
                        wanted.extend(self.new_folder(path));
                    } else {
                        // Moved away (or a file): anything watched under its old path is stale.
                        self.unwatch_tree(path);
                        wanted.push(Wanted::Now {
                            path: path.clone(),
                            tree: true,
                        });
                    }
                }
                EventKind::Remove(_) => {
                    self.unwatch_tree(path);
                    wanted.push(Wanted::Now {
                        path: path.clone(),
                        tree: true,
                    });
                }
                // A new file, data written: the close (or, where none is reported, a quiet
                // moment) says when it is finished.
                EventKind::Create(_) | EventKind::Modify(_) => {
                    wanted.push(Wanted::Settled(path.clone()))
                }
                EventKind::Any | EventKind::Other => wanted.push(Wanted::Now {
                    path: path.clone(),
                    tree: true,
                }),
            }
        }
        wanted
    }

    fn new_folder(&mut self, path: &Path) -> Vec<Wanted> {
        let mut wanted = vec![Wanted::Now {
            path: path.to_path_buf(),
            tree: true,
        }];
        if let Err(e) = self.watch_tree(path) {
            if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                wanted.push(Wanted::WatchLimit(path.to_path_buf()));
            } else {
                tracing::warn!(path = %path.display(), error = %e, "could not watch a new folder: it is compared periodically");
            }
        }
        wanted
    }
}
