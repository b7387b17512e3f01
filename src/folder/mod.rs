//! The plain folder: the account kept as real files in a folder on the local disk (the folder is
//! the mirror), any program writing to it directly, and a watcher telling the engine afterwards.
//! The second front door beside the FUSE mount (`src/fs/`), on the same engine: the engine
//! records what it is told with the mount's policies (`sync/observe.rs`) and pushes it at once.
//!
//! Nothing a watcher misses is lost: events only say where to look. Lost events (a queue
//! overflow, a watch that failed) make the whole folder compared at once, and the whole folder is
//! compared every [`FULL_COMPARE_EVERY`] anyway (size and time against the index, hashing only
//! what differs), as it is at every start, `kill -9` included.

pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cache::{is_local_only, RelPath};
use crate::sync::status::ProblemKind;
use crate::sync::{Engine, Look};
use watch::{Wanted, Watch};

/// Written to with no close seen: how long a file must stay quiet before it is looked at. Linux
/// reports the close (`IN_CLOSE_WRITE`), which is looked at at once; this only covers a writer
/// that keeps the file open (a memory map). macOS and Windows report no close: there a save is a
/// file that has been quiet this long (each write event starts the wait again).
#[cfg(target_os = "linux")]
pub const SETTLE: Duration = Duration::from_secs(2);
#[cfg(not(target_os = "linux"))]
pub const SETTLE: Duration = Duration::from_millis(500);

/// How often the whole folder is compared with the index, for anything the watcher missed
/// without saying so (a watch limit reached, an OS that coalesced events). Cheap: one `stat`
/// per file; only what differs is read.
pub const FULL_COMPARE_EVERY: Duration = Duration::from_secs(60);

enum Msg {
    Event(notify::Result<notify::Event>),
    /// Compare everything now, then answer (tests; `hyperclay status` after a resume).
    CompareAll(mpsc::Sender<()>),
    Stop,
}

/// What the watcher has done, for status and tests.
#[derive(Default)]
pub struct FolderStats {
    /// Whole-folder comparisons made because events were lost.
    pub lost_events: AtomicU64,
    /// Whole-folder comparisons of any cause.
    pub full_compares: AtomicU64,
    /// Paths looked at.
    pub looked_at: AtomicU64,
}

/// The running front door: stops (after looking at everything still pending) when dropped or
/// [`FolderSync::stop`]ped.
pub struct FolderSync {
    tx: mpsc::Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<FolderStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("could not watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl FolderSync {
    /// Starts watching the engine's mirror (the user's folder). Call before the first full
    /// comparison, so that nothing changed between the two is missed.
    pub fn start(engine: Arc<Engine>) -> Result<FolderSync, FolderError> {
        Self::start_comparing_every(engine, FULL_COMPARE_EVERY)
    }

    /// [`FolderSync::start`], comparing the whole folder every `every` (tests shorten it).
    pub fn start_comparing_every(
        engine: Arc<Engine>,
        every: Duration,
    ) -> Result<FolderSync, FolderError> {
        let root = engine.mirror.root().to_path_buf();
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let watch = Watch::start(&root, move |event| {
            let _ = events.send(Msg::Event(event));
        })
        .map_err(|source| FolderError::Watch {
            path: root.clone(),
            source,
        })?;
        tracing::info!(folder = %root.display(), watched = watch.watched(), "watching the folder");
        let stats = Arc::new(FolderStats::default());
        let limit_at = watch.limit_at.clone();
        let engine_after_crash = engine.after_power_cut();
        let mut worker = Worker {
            engine,
            root,
            watch,
            pending: HashMap::new(),
            stats: stats.clone(),
            told_limit: false,
            every,
            after_crash: engine_after_crash,
        };
        if let Some(path) = limit_at {
            worker.want(Wanted::WatchLimit(path));
        }
        let thread = std::thread::Builder::new()
            .name("folder-watch".into())
            .spawn(move || worker.run(rx))
            .expect("spawning the folder watcher's thread");
        Ok(FolderSync {
            tx,
            thread: Some(thread),
            stats,
        })
    }

    /// Compares the whole folder with the index now; returns once done.
    pub fn compare_all(&self) {
        let _ = self.ask_compare().recv();
    }

    /// Asks for the whole folder to be compared now: the answer comes once it is done (or the
    /// watcher stopped).
    pub fn ask_compare(&self) -> mpsc::Receiver<()> {
        let (done, wait) = mpsc::channel();
        let _ = self.tx.send(Msg::CompareAll(done));
        wait
    }

    /// Looks at everything pending, then stops watching.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FolderSync {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Worker {
    engine: Arc<Engine>,
    root: PathBuf,
    watch: Watch,
    /// Paths to look at: when, and whether everything under them too.
    pending: HashMap<PathBuf, (Instant, bool)>,
    stats: Arc<FolderStats>,
    told_limit: bool,
    /// How often the whole folder is compared ([`FULL_COMPARE_EVERY`]).
    every: Duration,
    /// The previous run may have ended in a power cut and the first comparison has not run
    /// yet: it applies the power-cut rule (`sync/power_cut.rs`).
    after_crash: bool,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next_full = Instant::now() + self.every;
        loop {
            let now = Instant::now();
            let next = self
                .pending
                .values()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(next_full)
                .min(next_full);
            let mut compare = None;
            let mut answer = Vec::new();
            let mut stop = false;
            let first = match rx.recv_timeout(next.saturating_duration_since(now)) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Everything queued is taken in one go: a burst is looked at as one batch.
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match msg {
                    Msg::Event(event) => {
                        for wanted in self.watch.wanted(event) {
                            if let Some(why) = self.want(wanted) {
                                compare = Some(why);
                            }
                        }
                    }
                    Msg::CompareAll(done) => {
                        compare = Some("asked for".to_string());
                        answer.push(done);
                    }
                    Msg::Stop => stop = true,
                }
            }
            let now = Instant::now();
            if compare.is_none() && now >= next_full {
                compare = Some("the periodic comparison".into());
            }
            let due: Vec<(PathBuf, bool)> = {
                let mut due: Vec<(PathBuf, bool)> = self
                    .pending
                    .iter()
                    .filter(|(_, (at, _))| stop || *at <= now)
                    .map(|(p, (_, tree))| (p.clone(), *tree))
                    .collect();
                due.sort();
                due
            };
            for (path, _) in &due {
                self.pending.remove(path);
            }
            for (path, tree) in due {
                self.look_at(&path, tree);
            }
            if let Some(why) = compare {
                self.compare_all(&why);
                next_full = Instant::now() + self.every;
            }
            for done in answer {
                let _ = done.send(());
            }
            if stop {
                break;
            }
        }
    }

    /// Records what an event asks for; `Some(why)`: compare everything.
    fn want(&mut self, wanted: Wanted) -> Option<String> {
        let now = Instant::now();
        match wanted {
            Wanted::Now { path, tree } => {
                let entry = self.pending.entry(path).or_insert((now, tree));
                entry.0 = entry.0.min(now);
                entry.1 |= tree;
                None
            }
            Wanted::Settled(path) => {
                let entry = self.pending.entry(path).or_insert((now + SETTLE, false));
                if entry.0 > now {
                    // Written to again: quiet from now on.
                    entry.0 = now + SETTLE;
                }
                None
            }
            Wanted::Everything(why) => {
                self.stats.lost_events.fetch_add(1, Ordering::Relaxed);
                Some(why)
            }
            Wanted::StateGone => {
                let message = format!(
                    "{}/.hyperclay, this folder's sync state, was deleted or moved while hyperclay ran: nothing is lost, but syncing can't go on safely; stop it (`hyperclay unmount {}`) and start it again with `hyperclay mount {} --folder --rebuild`",
                    self.root.display(),
                    self.root.display(),
                    self.root.display()
                );
                tracing::error!("{message}");
                self.engine.status.report(ProblemKind::Other, None, message);
                None
            }
            Wanted::WatchLimit(path) => {
                if !self.told_limit {
                    self.told_limit = true;
                    let message = format!(
                        "The system's limit of watched folders is reached (at {}): changes there are found by the comparison every {} s; raise it with `sudo sysctl fs.inotify.max_user_watches=524288`.",
                        path.display(),
                        self.every.as_secs()
                    );
                    tracing::warn!("{message}");
                    self.engine.status.report(ProblemKind::Other, None, message);
                }
                None
            }
        }
    }

    /// The folder-relative path of `path`; a name that can never sync is said once.
    fn rel(&self, path: &Path) -> Option<RelPath> {
        let rel = path
            .strip_prefix(&self.root)
            .ok()?
            .to_str()?
            .replace('\\', "/");
        if is_local_only(&rel) {
            return None;
        }
        match RelPath::parse(&rel) {
            Ok(rel) => Some(rel),
            Err(refused) => {
                let message = format!("{rel}: {refused}; it stays in the folder and does not sync (rename it to sync it)");
                tracing::warn!(path = %crate::protocol::printable(&rel, 300), "{refused}: not synced");
                self.engine
                    .status
                    .report(ProblemKind::RefusedName, Some(&rel), message);
                None
            }
        }
    }

    fn look_at(&self, path: &Path, tree: bool) {
        let Some(rel) = self.rel(path) else {
            return;
        };
        self.stats.looked_at.fetch_add(1, Ordering::Relaxed);
        let looked = match tree {
            true => self.engine.observe_tree(&rel, Look::Hash).map(|_| ()),
            false => self.engine.observe(&rel, Look::Hash).map(|_| ()),
        };
        if let Err(e) = looked {
            tracing::warn!(path = %rel, error = %e, "could not record a change in the folder; the next comparison looks again");
        }
    }

    fn compare_all(&mut self, why: &str) {
        self.stats.full_compares.fetch_add(1, Ordering::Relaxed);
        let look = match std::mem::take(&mut self.after_crash) {
            true => Look::AfterCrash,
            false => Look::Hash,
        };
        let differing = self.engine.differing_paths();
        if !differing.is_empty() {
            tracing::info!(
                paths = differing.len(),
                why,
                "compared the whole folder: looking at what differs"
            );
        }
        for rel in differing {
            if let Err(e) = self.engine.observe(&rel, look) {
                tracing::warn!(path = %rel, error = %e, "could not record a change in the folder; the next comparison looks again");
            }
        }
    }
}
