//! What the OS watcher tells the folder's worker, whichever watcher it is (`inotify.rs` on
//! Linux, `notify_watch.rs` elsewhere), and the mailbox the worker waits on: which paths to look
//! at, how soon, and when to look at everything because events were lost.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

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

/// A message to the worker.
pub enum Msg {
    /// An event from `notify` (macOS, Windows; Linux's watcher is read by the worker itself).
    #[cfg(not(target_os = "linux"))]
    Event(notify::Result<notify::Event>),
    /// Compare everything now, then answer (tests; `hyperclay status` after a resume).
    CompareAll(mpsc::Sender<()>),
    Stop,
}

/// What woke the worker: the paths events want, and the messages that came.
#[derive(Default)]
pub struct Woken {
    pub wanted: Vec<Wanted>,
    pub messages: Vec<Msg>,
}

/// Sends messages to the worker, and wakes it (on Linux it waits on the inotify descriptor and
/// a socket, not on the channel).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Msg>,
    #[cfg(target_os = "linux")]
    wake: std::sync::Arc<std::os::unix::net::UnixStream>,
}

/// The worker's side of the mailbox.
pub struct Inbox {
    pub rx: mpsc::Receiver<Msg>,
    #[cfg(target_os = "linux")]
    pub wake: std::os::unix::net::UnixStream,
}

/// A mailbox for the worker.
pub fn mailbox() -> std::io::Result<(Outbox, Inbox)> {
    let (tx, rx) = mpsc::channel();
    #[cfg(target_os = "linux")]
    {
        let (ring, wake) = std::os::unix::net::UnixStream::pair()?;
        // Never blocks a sender: a full socket already has a wake-up waiting.
        ring.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        Ok((
            Outbox {
                tx,
                wake: std::sync::Arc::new(ring),
            },
            Inbox { rx, wake },
        ))
    }
    #[cfg(not(target_os = "linux"))]
    Ok((Outbox { tx }, Inbox { rx }))
}

impl Outbox {
    pub fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
        #[cfg(target_os = "linux")]
        {
            use std::io::Write;
            let _ = (&*self.wake).write(&[1]);
        }
    }
}

/// Whether a path under the root never syncs (`rel` is relative to the root).
pub fn local_only(root: &Path, path: &Path) -> bool {
    match path.strip_prefix(root).ok().and_then(|r| r.to_str()) {
        Some("") => false,
        Some(rel) => is_local_only(&rel.replace('\\', "/")),
        // Not under the root, or not UTF-8 (never a platform name): not ours.
        None => true,
    }
}
