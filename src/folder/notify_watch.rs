//! The watcher on macOS and Windows: the `notify` crate (FSEvents, ReadDirectoryChangesW), the
//! root watched recursively (both watch a tree in one go), local-only paths dropped on arrival.
//! Linux has its own (`inotify.rs`, which says why).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};

use super::watch::{local_only, Inbox, Msg, Outbox, Wanted, Woken};

/// The watcher of the folder's tree.
pub struct Watch {
    root: PathBuf,
    _watcher: notify::RecommendedWatcher,
    /// Never set here: these systems watch the tree in one go, with no per-folder limit.
    pub limit_at: Option<PathBuf>,
}

impl Watch {
    /// Starts watching `root`; events reach [`Watch::wait`] through `outbox`.
    pub fn start(root: &Path, outbox: Outbox) -> std::io::Result<Watch> {
        let mut watcher = notify::recommended_watcher(move |event| outbox.send(Msg::Event(event)))
            .map_err(std::io::Error::other)?;
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(std::io::Error::other)?;
        Ok(Watch {
            root: root.to_path_buf(),
            _watcher: watcher,
            limit_at: None,
        })
    }

    /// How many folders are watched one by one (none: the tree is one watch).
    pub fn watched(&self) -> usize {
        0
    }

    /// Waits up to `timeout` for events or a message, then takes everything queued.
    pub fn wait(&mut self, inbox: &Inbox, timeout: Duration) -> Woken {
        let mut woken = Woken::default();
        let first = match inbox.rx.recv_timeout(timeout) {
            Ok(msg) => Some(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                woken.messages.push(Msg::Stop);
                None
            }
        };
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| inbox.rx.try_recv().ok()))
        {
            match msg {
                Msg::Event(event) => woken.wanted.extend(self.wanted(event)),
                other => woken.messages.push(other),
            }
        }
        woken
    }

    /// What one event from the watcher asks for.
    fn wanted(&mut self, event: notify::Result<Event>) -> Vec<Wanted> {
        let event = match event {
            Ok(event) => event,
            Err(e) => return vec![Wanted::Everything(format!("the watcher failed: {e}"))],
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
            let now = |tree| Wanted::Now {
                path: path.clone(),
                tree,
            };
            match event.kind {
                // Reads, opens, and a close after reading change nothing.
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => wanted.push(now(false)),
                EventKind::Access(_) => {}
                // A new folder, a rename, a delete: everything under the path too.
                EventKind::Create(CreateKind::Folder)
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Remove(_)
                | EventKind::Any
                | EventKind::Other => wanted.push(now(true)),
                // A new file, data or times written: a quiet moment says when it is finished
                // (neither system reports a close).
                EventKind::Create(_) | EventKind::Modify(_) => {
                    wanted.push(Wanted::Settled(path.clone()))
                }
            }
        }
        wanted
    }
}
