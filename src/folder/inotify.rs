//! The watcher on Linux: the kernel's inotify, through the `inotify` crate (the one `notify`
//! itself is built on), read by the folder's worker itself.
//!
//! Why not `notify` here: its watch mask is fixed and wide (opens, attribute changes), so a file
//! written by `tar x` made six events, each passed through notify's own thread and a channel to
//! the worker. Here the kernel queues only what a save, a rename or a delete makes (three events
//! for such a file), and the worker reads them in batches straight from the descriptor: no
//! thread between the kernel and the engine, and fewer events generated in the writer's own
//! system calls (BENCHMARKS.md, "The plain folder").
//!
//! Each synced folder gets its own watch and local-only folders (`.git`, `node_modules`,
//! `.hyperclay`, `sites-versions`) none: they never go up, and a clone's or an install's events
//! there would only fill the queue. A new folder is watched as soon as it is seen, and then
//! looked at whole, for what was made in it before its watch was in place.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::watch::{local_only, Inbox, Msg, Outbox, Wanted, Woken};

/// What each folder's watch asks the kernel for: a file closed after writing (a save), written
/// to (a writer that keeps it open: looked at once quiet), made (a folder; a hard link), and
/// the halves of renames and deletes. Not opens, reads or attribute changes: a mode or a time
/// alone is not a save. `EXCL_UNLINK`: nothing from files already unlinked (an editor's
/// removed backup still open); `ONLYDIR` and `DONT_FOLLOW`: a folder replaced by a file or a
/// link between the listing and the watch is not watched.
const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MODIFY)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::EXCL_UNLINK)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);

/// The root's watch also reports the root itself moved or deleted (every other folder's move or
/// delete is reported by its parent's watch).
const ROOT_MASK: WatchMask = MASK
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF);

/// The buffer one `read` of the descriptor fills: at least 240 events of the longest name (16
/// bytes and 256 of name each), so a burst is taken in few reads.
const READ_BUFFER: usize = 64 * 1024;

/// The watcher and the folders it watches.
pub struct Watch {
    inotify: Inotify,
    buffer: Vec<u8>,
    tree: Tree,
    /// Where the limit of watches was reached while starting (said once by the caller).
    pub limit_at: Option<PathBuf>,
}

/// The folders watched, both ways: a watch's events name its folder, and a folder moved or
/// removed is unwatched with everything under it.
struct Tree {
    root: PathBuf,
    watches: Watches,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    by_path: BTreeMap<PathBuf, WatchDescriptor>,
}

/// Why a folder could not be watched.
enum WatchFailed {
    /// The limit of watches (`fs.inotify.max_user_watches`) is reached.
    Limit(PathBuf),
    Other(std::io::Error),
}

impl Watch {
    /// Starts watching `root` and every synced folder under it. The worker reads the events in
    /// [`Watch::wait`]; `_outbox` only wakes it for messages.
    pub fn start(root: &Path, _outbox: Outbox) -> std::io::Result<Watch> {
        let inotify = Inotify::init()?;
        let mut watch = Watch {
            tree: Tree {
                root: root.to_path_buf(),
                watches: inotify.watches(),
                by_wd: HashMap::new(),
                by_path: BTreeMap::new(),
            },
            inotify,
            buffer: vec![0; READ_BUFFER],
            limit_at: None,
        };
        match watch.tree.watch_tree(root) {
            Ok(()) => {}
            // Out of watches: what is not watched is found by the periodic comparison.
            Err(WatchFailed::Limit(at)) => watch.limit_at = Some(at),
            Err(WatchFailed::Other(e)) => return Err(e),
        }
        Ok(watch)
    }

    /// How many folders are watched.
    pub fn watched(&self) -> usize {
        self.tree.by_path.len()
    }

    /// Waits up to `timeout` for events or a message, then takes everything queued.
    pub fn wait(&mut self, inbox: &Inbox, timeout: Duration) -> Woken {
        let mut woken = Woken::default();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        {
            let mut fds = [
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
                PollFd::new(inbox.wake.as_fd(), PollFlags::POLLIN),
            ];
            // Interrupted: the loop comes back here soon enough.
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
        }
        self.read_events(&mut woken.wanted);
        // The wake-up bytes say only "look at the channel".
        let mut drain = [0u8; 64];
        while matches!(std::io::Read::read(&mut &inbox.wake, &mut drain), Ok(n) if n > 0) {}
        loop {
            match inbox.rx.try_recv() {
                Ok(msg) => woken.messages.push(msg),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    woken.messages.push(Msg::Stop);
                    break;
                }
            }
        }
        woken
    }

    /// Reads every event queued now.
    fn read_events(&mut self, wanted: &mut Vec<Wanted>) {
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    wanted.push(Wanted::Everything(format!("the watcher failed: {e}")));
                    return;
                }
            };
            for event in events {
                self.tree.event(event.wd, event.mask, event.name, wanted);
            }
        }
    }
}

impl Tree {
    /// What one event asks for (watches for new folders are added here).
    fn event(
        &mut self,
        wd: WatchDescriptor,
        mask: EventMask,
        name: Option<&OsStr>,
        wanted: &mut Vec<Wanted>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            wanted.push(Wanted::Everything(
                "the watcher lost events (its queue overflowed)".into(),
            ));
            return;
        }
        if mask.contains(EventMask::IGNORED) {
            // The watch is gone (its folder removed, or unwatched here).
            if let Some(path) = self.by_wd.remove(&wd) {
                if self.by_path.get(&path) == Some(&wd) {
                    self.by_path.remove(&path);
                }
            }
            return;
        }
        // A watch already let go (moved or removed here): its events name a stale path.
        let Some(dir) = self.by_wd.get(&wd) else {
            return;
        };
        let Some(name) = name else {
            // The root itself moved or deleted: look at everything it held.
            if mask.intersects(EventMask::MOVE_SELF | EventMask::DELETE_SELF) {
                wanted.push(Wanted::Now {
                    path: dir.clone(),
                    tree: true,
                });
            }
            return;
        };
        let path = dir.join(name);
        let is_dir = mask.contains(EventMask::ISDIR);
        if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            && path == self.root.join(crate::cache::INDEX_DIR)
            && !path.is_dir()
        {
            wanted.push(Wanted::StateGone);
            return;
        }
        if local_only(&self.root, &path) {
            return;
        }
        if mask.contains(EventMask::CLOSE_WRITE) {
            wanted.push(Wanted::Now { path, tree: false });
        } else if is_dir && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            self.new_folder(path, wanted);
        } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO) {
            // Moved away or removed: anything watched under its old path is stale.
            if is_dir {
                self.unwatch_tree(&path);
            }
            wanted.push(Wanted::Now { path, tree: true });
        } else if mask.intersects(EventMask::CREATE | EventMask::MODIFY) {
            // A new file (a hard link makes no other event), data written: the close says when
            // it is finished, or a quiet moment for a writer that keeps it open.
            wanted.push(Wanted::Settled(path));
        }
    }

    fn new_folder(&mut self, path: PathBuf, wanted: &mut Vec<Wanted>) {
        match self.watch_tree(&path) {
            Ok(()) => {}
            Err(WatchFailed::Limit(at)) => wanted.push(Wanted::WatchLimit(at)),
            Err(WatchFailed::Other(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "could not watch a new folder: it is compared periodically")
            }
        }
        wanted.push(Wanted::Now { path, tree: true });
    }

    /// Watches `dir` and every synced folder under it. A failure to watch is returned: the
    /// caller compares that folder periodically.
    fn watch_tree(&mut self, dir: &Path) -> Result<(), WatchFailed> {
        if local_only(&self.root, dir) {
            return Ok(());
        }
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !self.by_path.contains_key(&dir) {
                let mask = if dir == self.root { ROOT_MASK } else { MASK };
                match self.watches.add(&dir, mask) {
                    Ok(wd) => {
                        // The same folder under another path (moved in from a place whose
                        // move was not seen): the kernel gives its watch back; the old path
                        // is stale.
                        if let Some(old) = self.by_wd.insert(wd.clone(), dir.clone()) {
                            self.by_path.remove(&old);
                        }
                        self.by_path.insert(dir.clone(), wd);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                        return Err(WatchFailed::Limit(dir))
                    }
                    // Gone already, or replaced by a file or a link: its own event says so.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(WatchFailed::Other(e)),
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
    fn unwatch_tree(&mut self, dir: &Path) {
        let under: Vec<(PathBuf, WatchDescriptor)> = self
            .by_path
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, wd)| (p.clone(), wd.clone()))
            .collect();
        for (path, wd) in under {
            // Removed already (its folder is gone): the kernel said so, or will.
            let _ = self.watches.remove(wd.clone());
            self.by_wd.remove(&wd);
            self.by_path.remove(&path);
        }
    }
}
