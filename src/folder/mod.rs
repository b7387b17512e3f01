//! The plain folder: the account kept as real files in a folder on the local disk (the folder is
//! the mirror), any program writing to it directly, and a watcher telling the engine afterwards.
//! The second front door beside the FUSE mount (`src/fs/`), on the same engine: the engine
//! records what it is told with the mount's policies (`sync/observe.rs`) and pushes it at once.
//!
//! Nothing a watcher misses is lost: events only say where to look. Lost events (a queue
//! overflow, a watch that failed) make the whole folder compared at once, and the whole folder is
//! compared every [`FULL_COMPARE_EVERY`] anyway (size and time against the index, hashing only
//! what differs), as it is at every start, `kill -9` included.

#[cfg(target_os = "linux")]
mod inotify;
#[cfg(not(target_os = "linux"))]
mod notify_watch;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cache::{is_local_only, RelPath};
use crate::protocol::NodeKind;
use crate::sync::saved_versions::CHECK_EVERY as CHECK_VERSIONS_EVERY;
use crate::sync::status::ProblemKind;
use crate::sync::{Engine, Look};
#[cfg(target_os = "linux")]
use inotify::Watch;
#[cfg(not(target_os = "linux"))]
use notify_watch::Watch;
use watch::{Msg, Outbox, Wanted};

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

/// More paths than this wanted at once within [`BURST_WINDOW`] make a burst. A person's save
/// wants one to four (vim's: a probe file made and removed, the file moved aside and written
/// again); a program writing a tree (a clone, an archive, a build) wants hundreds in that time.
pub const BURST_PATHS: usize = 8;

/// The window [`BURST_PATHS`] are counted in.
pub const BURST_WINDOW: Duration = Duration::from_millis(100);

/// A burst is over once no path has been wanted for this long; what it held is looked at then.
/// Far longer than the gaps within a program writing files one after another (microseconds to
/// a few milliseconds: `git checkout`, `tar x`, a write loop), short against a person's next
/// save, which waits at most this long if it comes right after a burst.
pub const BURST_QUIET: Duration = Duration::from_millis(150);

/// The longest a burst holds a path: a burst that goes on (`npm install`, a long build) has what
/// it wrote looked at in a batch this often while it runs. As long as [`SETTLE`] on Linux.
pub const HOLD_CAP: Duration = Duration::from_secs(2);

/// While a burst lasts and holds something, the watcher reads its events this often rather than
/// as each arrives: a
/// wake-up for every few events cost the watcher as much as the events themselves (thread
/// switches were its largest symbol under `perf` during `tar x`). Far within the queue's room
/// (`fs.inotify.max_queued_events`, 16,384 by default: `tar x` makes about 300 events in this
/// time); a queue that overflows anyway is a rescan, never a lost save.
pub const BURST_READ_EVERY: Duration = Duration::from_millis(10);

/// When the watcher holds what a burst writes (the module doc): [`Hold::default`] is the
/// constants above; tests lengthen or shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// [`BURST_PATHS`]
    pub paths: usize,
    /// [`BURST_WINDOW`]
    pub window: Duration,
    /// [`BURST_QUIET`]
    pub quiet: Duration,
    /// [`HOLD_CAP`]
    pub cap: Duration,
}

impl Default for Hold {
    fn default() -> Hold {
        Hold {
            paths: BURST_PATHS,
            window: BURST_WINDOW,
            quiet: BURST_QUIET,
            cap: HOLD_CAP,
        }
    }
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
    /// Paths held in a burst, counted when they are let go (then looked at).
    pub held: AtomicU64,
    /// Holds let go because [`HOLD_CAP`] passed while the burst went on.
    pub held_to_the_cap: AtomicU64,
}

/// The running front door: stops (after looking at everything still pending) when dropped or
/// [`FolderSync::stop`]ped.
pub struct FolderSync {
    tx: Outbox,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<FolderStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("could not watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
        Self::start_holding(engine, every, Hold::default())
    }

    /// [`FolderSync::start_comparing_every`], holding bursts by `hold` (tests change it).
    pub fn start_holding(
        engine: Arc<Engine>,
        every: Duration,
        hold: Hold,
    ) -> Result<FolderSync, FolderError> {
        let root = engine.mirror.root().to_path_buf();
        let watch_failed = |source| FolderError::Watch {
            path: root.clone(),
            source,
        };
        let (tx, inbox) = watch::mailbox().map_err(watch_failed)?;
        let watch = Watch::start(&root, tx.clone()).map_err(watch_failed)?;
        tracing::info!(folder = %root.display(), watched = watch.watched(), "watching the folder");
        let stats = Arc::new(FolderStats::default());
        let limit_at = watch.limit_at.clone();
        let engine_after_crash = engine.after_power_cut();
        let mut worker = Worker {
            engine,
            root,
            watch,
            pending: HashMap::new(),
            held: HashMap::new(),
            stats: stats.clone(),
            told_limit: false,
            every,
            after_crash: engine_after_crash,
            hold,
            recent: VecDeque::new(),
            burst_until: None,
            holding_since: None,
        };
        if let Some(path) = limit_at {
            worker.want(Wanted::WatchLimit(path));
        }
        // The worker writes the saved versions of sites once their pushes are answered.
        worker.engine.versions_wait_for_pushes(true);
        let thread = std::thread::Builder::new()
            .name("folder-watch".into())
            .spawn(move || worker.run(inbox))
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
        self.tx.send(Msg::CompareAll(done));
        wait
    }

    /// Looks at everything pending, then stops watching.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.tx.send(Msg::Stop);
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
    pending: HashMap<PathBuf, Pending>,
    /// Paths a burst holds, and whether everything under them too: looked at once it is over.
    /// Apart from `pending`, so that each wake-up in a burst costs what its events bring, not
    /// a pass over everything held (quadratic in the burst before).
    held: HashMap<PathBuf, bool>,
    stats: Arc<FolderStats>,
    told_limit: bool,
    /// How often the whole folder is compared ([`FULL_COMPARE_EVERY`]).
    every: Duration,
    /// The previous run may have ended in a power cut and the first comparison has not run
    /// yet: it applies the power-cut rule (`sync/power_cut.rs`).
    after_crash: bool,
    hold: Hold,
    /// When paths were last wanted now, within [`Hold::window`]: how a burst is told.
    recent: VecDeque<Instant>,
    /// While a burst lasts: when it is over if nothing more is wanted.
    burst_until: Option<Instant>,
    /// Since when paths are held (the oldest held): all are let go [`Hold::cap`] after it.
    holding_since: Option<Instant>,
}

struct Pending {
    at: Instant,
    tree: bool,
}

impl Worker {
    fn run(mut self, inbox: watch::Inbox) {
        let mut next_full = Instant::now() + self.every;
        let mut versions_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let next = [self.next_due(), versions_at, Some(next_full)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_full);
            let mut compare = None;
            let mut answer = Vec::new();
            let mut stop = false;
            // Only while a burst holds something: a burst of sites alone (never held) is a
            // program saving pages one after another, each looked at at once.
            if !self.held.is_empty() && self.burst_until.is_some_and(|until| now < until) {
                std::thread::sleep(BURST_READ_EVERY.min(next.saturating_duration_since(now)));
            }
            // Everything queued is taken in one go: a burst is looked at as one batch.
            let woken = self.watch.wait(&inbox, next.saturating_duration_since(now));
            for wanted in woken.wanted {
                if let Some(why) = self.want(wanted) {
                    compare = Some(why);
                }
            }
            for msg in woken.messages {
                match msg {
                    Msg::CompareAll(done) => {
                        compare = Some("asked for".to_string());
                        answer.push(done);
                    }
                    Msg::Stop => stop = true,
                    #[cfg(not(target_os = "linux"))]
                    Msg::Event(_) => {}
                }
            }
            let now = Instant::now();
            if compare.is_none() && now >= next_full {
                compare = Some("the periodic comparison".into());
            }
            let due = self.due(now, stop);
            let mut versions_checked = Instant::now();
            for (path, tree) in due {
                self.look_at(&path, tree);
                // A burst let go is thousands of looks: what waits is written as it goes, not
                // held in memory until the last.
                if versions_checked.elapsed() >= CHECK_VERSIONS_EVERY {
                    self.engine.keep_waiting_versions(false);
                    versions_checked = Instant::now();
                }
            }
            versions_at = self.engine.keep_waiting_versions(false);
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
        self.engine.versions_wait_for_pushes(false);
    }

    /// Records what an event asks for; `Some(why)`: compare everything.
    fn want(&mut self, wanted: Wanted) -> Option<String> {
        let now = Instant::now();
        match wanted {
            Wanted::Now { path, tree } => {
                self.count_towards_a_burst(now);
                if let Some(held) = self.held.get_mut(&path) {
                    // Held already: looked at (once) when the hold ends.
                    *held |= tree;
                    return None;
                }
                if self.holds(now) && !is_site(&path) {
                    let tree = tree | self.pending.remove(&path).is_some_and(|p| p.tree);
                    self.hold_path(path, tree, now);
                    return None;
                }
                let entry = self
                    .pending
                    .entry(path)
                    .or_insert(Pending { at: now, tree });
                entry.at = entry.at.min(now);
                entry.tree |= tree;
                None
            }
            Wanted::Settled(path) => {
                if self.held.contains_key(&path) {
                    // Looked at when the hold ends; a close later is wanted again.
                    return None;
                }
                let entry = self.pending.entry(path).or_insert(Pending {
                    at: now + SETTLE,
                    tree: false,
                });
                if entry.at > now {
                    // Written to again: quiet from now on.
                    entry.at = now + SETTLE;
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

    /// A path wanted now at `now`: more than [`Hold::paths`] within [`Hold::window`] start a
    /// burst, and any path wanted while it lasts makes it last [`Hold::quiet`] longer.
    fn count_towards_a_burst(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.hold.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let lasting = self.burst_until.is_some_and(|until| now < until);
        if !lasting && self.recent.len() > self.hold.paths {
            tracing::debug!(
                paths = self.recent.len(),
                "a burst of writes: what it writes is looked at once it is over"
            );
        }
        if lasting || self.recent.len() > self.hold.paths {
            self.burst_until = Some(now + self.hold.quiet);
        }
    }

    /// Whether a burst holds what is wanted at `now`: one lasts, and what it writes would go
    /// up at once (sites are kept in sites-versions when looked at, and so is every save while
    /// nothing goes up at once: none of those waits).
    fn holds(&self, now: Instant) -> bool {
        self.burst_until.is_some_and(|until| now < until)
            && self.engine.sync_on()
            && self.engine.is_online()
    }

    fn hold_path(&mut self, path: PathBuf, tree: bool, now: Instant) {
        *self.held.entry(path).or_default() |= tree;
        self.holding_since.get_or_insert(now);
    }

    /// When the next pending path is due: the earliest of those not held, and for those held
    /// the end of the burst or the cap, whichever comes first.
    fn next_due(&self) -> Option<Instant> {
        let free = self.pending.values().map(|p| p.at).min();
        let held = self.holding_since.map(|since| {
            let cap = since + self.hold.cap;
            self.burst_until.map_or(cap, |until| until.min(cap))
        });
        match (free, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The paths to look at now, taken out of `pending` (all of them when stopping): those due,
    /// but what a burst holds (the module doc), until it is over or held for [`Hold::cap`].
    fn due(&mut self, now: Instant, stop: bool) -> Vec<(PathBuf, bool)> {
        let holds = !stop && self.holds(now);
        let capped = self
            .holding_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.hold.cap);
        if capped && holds {
            self.stats.held_to_the_cap.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "a burst of writes went on for {} ms: looking at what it wrote so far",
                self.hold.cap.as_millis()
            );
        }
        let hold = holds && !capped;
        let mut due = Vec::new();
        if !hold && !self.held.is_empty() {
            self.stats
                .held
                .fetch_add(self.held.len() as u64, Ordering::Relaxed);
            due.extend(self.held.drain());
            self.holding_since = None;
        }
        // A path due while a burst holds (written to, then quiet) is held with the others.
        let ready: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| stop || p.at <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in ready {
            let Some(p) = self.pending.remove(&path) else {
                continue;
            };
            if hold && !is_site(&path) {
                self.hold_path(path, p.tree, now);
            } else {
                due.push((path, p.tree));
            }
        }
        due.sort();
        due.dedup_by(|b, a| {
            let same = a.0 == b.0;
            a.1 |= same && b.1;
            same
        });
        // A folder looked at whole covers what is under it: once a burst is let go, a new
        // folder's look finds every file written in it, and each file's own look would read and
        // hash it a second time. Sorted, a folder comes before what is under it.
        let mut trees: Vec<PathBuf> = Vec::new();
        due.retain(|(path, tree)| {
            if trees.last().is_some_and(|t| path.starts_with(t)) {
                return false;
            }
            if *tree {
                trees.push(path.clone());
            }
            true
        });
        due
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

/// Whether `path` names a site (`name.html`, `name.htmlclay`, in any folder): never held.
fn is_site(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| NodeKind::of_file_name(n) == NodeKind::Site)
}
