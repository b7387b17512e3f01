//! `FileCell`: the runtime state of one file, in one place. What the index keeps (where a file
//! is, its three content identities) is its record; what is happening to it right now lives
//! here: who is changing its working copy or its mirror copy, where its push stands, the open
//! tab's snapshot waiting for its next push. Both front doors (the mount and the local server)
//! and the engine reach that state only through the file's cell, never through maps of their own.
//!
//! Read against mountpoint-s3's `InodeState` (one lock per inode, the order written on the
//! field), rclone's vfscache `Item` (one per cached file, owning opens, dirtiness and write-back
//! under one `mu`) and mini-redis's `db.rs` (one `Mutex<State>` and why).
//!
//! # One short lock per file
//! A cell's `state` lock is held for a few lines and never across disk or network I/O. I/O that
//! must be serialized per file *claims* the cell instead ([`Claim`]): the claim is a flag in the
//! state, set while nobody holds it, waited for on the cell's condition variable, cleared when
//! the [`Claimed`] guard drops. So reading a file's push state never waits for another thread's
//! fsync (the reason the push phase and the file lock were two records before), and there is
//! still one record.
//!
//! # Made and dropped in one place
//! [`Cells::get`] finds or makes a cell; the [`CellRef`] it returns drops the cell from the map
//! when it was the last reference and the state is at rest ([`CellState::at_rest`]). No other
//! code inserts or removes cells, so no map of per-file state grows without bound.
//!
//! # Per node, not per file
//! One request per *platform node* is in flight at a time (an older push must never land last).
//! That is a property of the node, which a rename passes from one file to another (an editor's
//! temp file renamed over the original takes its node), so it is kept as the set of nodes being
//! sent ([`Cells::sending`]), not in a cell.
//!
//! # Writes failing while the platform answers
//! A platform that answers everything but writes (a 5xx to `PUT content`) is not offline: no
//! reconnect tells the pushes it works again. While it lasts ([`WriteFault`]) one failing push,
//! the scout, tries again every second for all of them (the first 30 s, then less often); the
//! others retry on their own schedule and then wait. The first write that goes through ends it:
//! every push waiting out a retry delay goes at once, and the files that gave up are sent again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::{Checksum, NodeId};
use parking_lot::{Condvar, Mutex, MutexGuard};

/// Where a file's push stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PushState {
    /// No push running.
    #[default]
    Idle,
    /// A file new to the platform waits out `push::SETTLE` before its create (an editor's
    /// temp-then-rename lands meanwhile). `follow_up`: a newer save asked for another push.
    Settling { follow_up: bool },
    /// A request is being made and its answer settled (`attempt` 0 is the first).
    Sending { attempt: usize, follow_up: bool },
    /// Waiting until `until` to try again after a transient failure.
    Backoff {
        until: Instant,
        attempt: usize,
        follow_up: bool,
    },
    /// The last push gave up (`why`); the file stays changed and goes up at its next save or
    /// reconciliation. Status says why (`status.rs`).
    Failed { why: String },
}

impl PushState {
    /// A push task is running for the file.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            PushState::Settling { .. } | PushState::Sending { .. } | PushState::Backoff { .. }
        )
    }

    /// A newer save asked for another push after this one.
    pub fn follow_up(&self) -> bool {
        match self {
            PushState::Settling { follow_up }
            | PushState::Sending { follow_up, .. }
            | PushState::Backoff { follow_up, .. } => *follow_up,
            PushState::Idle | PushState::Failed { .. } => false,
        }
    }
}

/// What may be claimed on a cell: one holder at a time of each, in this order (see the lock
/// order in `sync/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Level 1: a front door changing the file's working copy (a write, a truncate, a save, a
    /// close, a new write session), across the whole save.
    Gate,
    /// Level 4: the file's mirror copy and its index entry (a save, a fetched copy, a rename,
    /// an unlink, a create attaching its node).
    Io,
}

/// A download of a file's platform content that several readers share; every reader gets its
/// outcome (`fetch.rs`).
pub type SharedFetch = futures::future::Shared<futures::future::BoxFuture<'static, FetchOutcome>>;

/// What the readers of one shared fetch all get.
pub type FetchOutcome = Arc<std::result::Result<(), Arc<super::SyncError>>>;

/// A file's write session in the mount: its working copy and who writes it (`fs/write.rs`).
/// Changed only by the holder of the cell's `Gate` claim; the disk I/O on the working copy (made,
/// copied, truncated) is done outside the cell's lock, under that claim.
#[derive(Default)]
pub struct WriteSession {
    /// The working copy and its open file, once anything was written.
    pub work: Option<(std::path::PathBuf, Arc<std::fs::File>)>,
    /// Something changed since the last save (or the file is new, or was truncated on open).
    pub dirty: bool,
    /// Bytes were written (or the size set) since the last save.
    pub written: bool,
    /// A write failed (a full disk): the working copy is incomplete and is never saved, and no
    /// more writes are taken until every writer has closed.
    pub failed: Option<i32>,
    /// Handles open for writing.
    pub writers: usize,
    /// A time set on the file while it is open (`tar x`, `cp -p` set it before close): the
    /// save keeps it instead of the save time. A later write clears it, as on a local disk.
    pub mtime_set: Option<i64>,
}

/// A file's runtime state. Lock order: taken after the cells map (only to prune), never with
/// another cell's state lock held, and nothing is taken under it.
#[derive(Default)]
pub struct CellState {
    gate: bool,
    io: bool,
    /// The mount's write session, while the file is open for writing (or being truncated).
    pub session: Option<WriteSession>,
    /// Where the file's push stands.
    pub push: PushState,
    /// An open tab's snapshot that could not be relayed yet, for the next push (`live.rs`).
    pub snapshot: Option<(String, Instant)>,
    /// The download under way, with the platform checksum it fetches: readers of that content
    /// join it instead of starting their own.
    pub fetch: Option<(Checksum, SharedFetch)>,
    /// The content the last save put in place, for the push to send without reading or hashing
    /// the file again. Not a reason to keep the cell, and let go whenever no push runs to take
    /// it (`CellRef`'s drop): the push then reads the file.
    pub saved: Option<SavedCopy>,
    /// A new file whose only save failed: it stays local until a save succeeds (`failed.rs`,
    /// which keeps the set in the index for a restart). Keeps the cell.
    pub held: bool,
    /// What the kernel holds of the file through the mount (`fs/kernel.rs`). Keeps the cell
    /// while the kernel holds the inode.
    pub kernel: Option<KernelView>,
    /// For a folder: the names in it whose platform node this device is creating now, counted
    /// (two creates at one name may overlap: a file renamed away and a new one made there).
    /// The pull leaves the stream's echoes for them to the create's answer (`push/mod.rs`,
    /// `CreatingPlace`). Keeps the cell.
    pub creating: HashMap<String, usize>,
}

/// What the kernel was shown of one inode, kept while the kernel holds it (the mount only).
/// The kernel counts the entries it was given and gives them back with `forget` when it drops
/// the inode; then nothing here is needed again (a new lookup starts afresh), so the cell may
/// go. Bounded by the kernel's own inode cache, which it shrinks under memory pressure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelView {
    /// Entries the kernel was given (lookup, create, mkdir, mknod, symlink, readdirplus) and
    /// has not forgotten.
    pub lookups: u64,
    /// The content the kernel last opened, for close-to-open caching: opened again unchanged,
    /// its cached pages are kept.
    pub shown: Option<Checksum>,
    /// The last change through the mount of the inode's status (ctime: chmod, utimens,
    /// truncate) or, for a folder, of its names (mtime too). The platform keeps neither.
    pub changed: Option<std::time::SystemTime>,
}

/// The most saved content kept in memory for pushes that have not taken it yet, across all
/// files: a burst of saves while offline (each push waits) must not hold 20 MiB per file. Past
/// it a save hands nothing on, and its push reads the file as before.
pub const HANDED_ON_MAX: u64 = 64 * 1024 * 1024;

/// A save's new content waiting for the file's push, counted against [`HANDED_ON_MAX`] until
/// it is dropped.
pub struct SavedCopy {
    pub sum: Checksum,
    pub bytes: bytes::Bytes,
    held: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for SavedCopy {
    fn drop(&mut self) {
        self.held.fetch_sub(
            self.bytes.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl CellState {
    fn claimed(&mut self, claim: Claim) -> &mut bool {
        match claim {
            Claim::Gate => &mut self.gate,
            Claim::Io => &mut self.io,
        }
    }

    /// Nothing is happening to the file: its cell may be dropped.
    pub fn at_rest(&self) -> bool {
        !self.gate
            && !self.io
            && self.session.is_none()
            && self.push == PushState::Idle
            && self.snapshot.is_none()
            && self.fetch.is_none()
            && !self.held
            && self.kernel.is_none()
            && self.creating.is_empty()
    }
}

/// One file's cell.
pub struct FileCell {
    pub ino: u64,
    state: Mutex<CellState>,
    /// Signalled when a claim is released.
    released: Condvar,
}

impl FileCell {
    /// The state, for a few lines (no I/O, no other lock, no `.await` while held).
    pub fn state(&self) -> MutexGuard<'_, CellState> {
        self.state.lock()
    }
}

/// For this long into a write fault the scout tries every second; after it, the wait grows with
/// the fault's age (a fifteenth of it), up to `SCOUT_MAX_WAIT`. Decided (issue 26): saves made
/// during a short fault are up within about a second of its end, as after an outage
/// (`follow.rs`, `FAST_CHECKS_FOR`), and a long one costs one write every 30 s.
const SCOUT_FAST_FOR: Duration = Duration::from_secs(30);
const SCOUT_MAX_WAIT: Duration = Duration::from_secs(30);

/// Writes failing on a platform fault while the rest of it answers (see the module's "Writes
/// failing while the platform answers").
#[derive(Debug, Default)]
pub struct WriteFault {
    /// When the first write failed (None: no fault).
    since: Option<Instant>,
    /// The push that tries again every second for the others.
    scout: Option<u64>,
    /// Files whose own retries ran out during the fault: sent again when it ends.
    waiting: BTreeSet<u64>,
}

/// Every file's cell that is not at rest, and the nodes being sent.
#[derive(Default)]
pub struct Cells {
    /// Leaf but for the prune, which takes a cell's state lock under it.
    map: Mutex<HashMap<u64, Arc<FileCell>>>,
    /// Platform nodes with a request in flight (see the module's "Per node, not per file").
    sending: Mutex<HashSet<NodeId>>,
    node_free: tokio::sync::Notify,
    /// Signalled whenever a push ends (unmount's drain waits on it instead of polling).
    push_ended: tokio::sync::Notify,
    /// Signalled when the platform answers again after being away (`came_online`): every push
    /// waiting in `PushState::Backoff` is sent at once, not when its 1-5 s timer ends (issue 26:
    /// saves made during a fault were up 6-8 s after it cleared).
    pub(super) reconnected: tokio::sync::Notify,
    /// Signalled when a push got an answer while the engine took the platform for gone: the
    /// follower's quiet checks reconcile at once instead of at their next timer.
    pub(super) answered: tokio::sync::Notify,
    /// Writes failing while the platform answers (leaf lock).
    write_fault: Mutex<WriteFault>,
    /// Callers of `until_no_push` waiting now (an unmount): no push starts scouting meanwhile.
    draining: std::sync::atomic::AtomicUsize,
    /// Bytes of [`SavedCopy`]s held now.
    handed_on: Arc<std::sync::atomic::AtomicU64>,
}

/// A reference to one cell; the last one drops a cell at rest from the map.
pub struct CellRef<'a> {
    cells: &'a Cells,
    cell: Option<Arc<FileCell>>,
}

impl std::ops::Deref for CellRef<'_> {
    type Target = FileCell;
    fn deref(&self) -> &FileCell {
        self.cell.as_ref().expect("a cell is held until dropped")
    }
}

impl Drop for CellRef<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        let mut map = self.cells.map.lock();
        let mut state = cell.state.lock();
        // What a save handed on with no push running to take it (offline, sync off, a push that
        // ended without sending) is let go: a later push reads the file. A cell the kernel
        // holds outlives its push, and kept it otherwise until HANDED_ON_MAX was used up.
        if state.saved.is_some() && !state.io && !state.push.is_running() {
            state.saved = None;
        }
        // The map's and ours: nobody else can reach it, and nobody can get it while we hold
        // the map's lock.
        if Arc::strong_count(&cell) == 2 && state.at_rest() {
            map.remove(&cell.ino);
        }
    }
}

/// A claim on a cell, released when dropped.
pub struct Claimed<'a> {
    cell: CellRef<'a>,
    claim: Claim,
}

impl Claimed<'_> {
    /// The claimed file's state, for a few lines (never across I/O).
    pub fn state(&self) -> MutexGuard<'_, CellState> {
        self.cell.state.lock()
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        *self.cell.state.lock().claimed(self.claim) = false;
        self.cell.released.notify_all();
        // `self.cell` drops next, and with it the cell if it is at rest.
    }
}

/// A node being sent, until dropped.
pub struct NodeSending<'a> {
    cells: &'a Cells,
    node: NodeId,
}

impl Drop for NodeSending<'_> {
    fn drop(&mut self) {
        self.cells.sending.lock().remove(&self.node);
        self.cells.node_free.notify_waiters();
    }
}

impl Cells {
    /// The cell of `ino`, made if it has none.
    pub fn get(&self, ino: u64) -> CellRef<'_> {
        let cell = self
            .map
            .lock()
            .entry(ino)
            .or_insert_with(|| {
                Arc::new(FileCell {
                    ino,
                    state: Mutex::new(CellState::default()),
                    released: Condvar::new(),
                })
            })
            .clone();
        CellRef {
            cells: self,
            cell: Some(cell),
        }
    }

    /// The cell of `ino` if it has one (None: it is at rest), without making one.
    pub fn existing(&self, ino: u64) -> Option<CellRef<'_>> {
        let cell = self.map.lock().get(&ino).cloned()?;
        Some(CellRef {
            cells: self,
            cell: Some(cell),
        })
    }

    /// Hands a save's new content (`sum`, `bytes`) to `ino`'s next push, in the state of its
    /// claimed cell; nothing when [`HANDED_ON_MAX`] would be passed.
    pub fn hand_on(&self, state: &mut CellState, sum: &Checksum, bytes: &bytes::Bytes) {
        use std::sync::atomic::Ordering;
        state.saved = None;
        let len = bytes.len() as u64;
        let reserved = self
            .handed_on
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + len <= HANDED_ON_MAX).then_some(held + len)
            })
            .is_ok();
        if reserved {
            state.saved = Some(SavedCopy {
                sum: sum.clone(),
                bytes: bytes.clone(),
                held: self.handed_on.clone(),
            });
        }
    }

    /// Takes what the last save of `ino` handed on, if its cell still holds it.
    pub fn take_saved(&self, ino: u64) -> Option<SavedCopy> {
        let cell = self.map.lock().get(&ino).cloned()?;
        let taken = cell.state.lock().saved.take();
        taken
    }

    /// Bytes handed on by saves and not taken yet.
    pub fn handed_on(&self) -> u64 {
        self.handed_on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads `ino`'s state without making a cell (None: it has none, so it is at rest).
    pub fn peek<T>(&self, ino: u64, f: impl FnOnce(&CellState) -> T) -> Option<T> {
        let cell = self.map.lock().get(&ino).cloned()?;
        let state = cell.state.lock();
        Some(f(&state))
    }

    /// Waits until `claim` on `ino` is free, then holds it until the guard drops.
    pub fn claim(&self, ino: u64, claim: Claim) -> Claimed<'_> {
        let cell = self.get(ino);
        {
            let mut state = cell.state.lock();
            while *state.claimed(claim) {
                cell.released.wait(&mut state);
            }
            *state.claimed(claim) = true;
        }
        Claimed { cell, claim }
    }

    /// Claims `claim` on every inode of `inos`, in inode order, so that two callers claiming
    /// overlapping sets never deadlock.
    pub fn claim_all(&self, inos: &[u64], claim: Claim) -> Vec<Claimed<'_>> {
        let mut inos = inos.to_vec();
        inos.sort_unstable();
        inos.dedup();
        inos.into_iter().map(|ino| self.claim(ino, claim)).collect()
    }

    /// How many cells satisfy `f`.
    pub fn count(&self, f: impl Fn(&CellState) -> bool) -> usize {
        let cells: Vec<_> = self.map.lock().values().cloned().collect();
        cells.iter().filter(|c| f(&c.state.lock())).count()
    }

    /// The files whose state satisfies `f`.
    pub fn inos_where(&self, f: impl Fn(&CellState) -> bool) -> Vec<u64> {
        let cells: Vec<_> = self.map.lock().values().cloned().collect();
        cells
            .iter()
            .filter(|c| f(&c.state.lock()))
            .map(|c| c.ino)
            .collect()
    }

    /// How many cells there are (the files with runtime state now).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes `ino`'s push state with `f`; returns what `f` returned.
    pub fn with_push<T>(&self, ino: u64, f: impl FnOnce(&mut PushState) -> T) -> T {
        let cell = self.get(ino);
        let out = f(&mut cell.state.lock().push);
        out
    }

    /// Takes `ino` in for a push: true when a new push must start, false when one runs (it
    /// gets a follow-up).
    pub fn enqueue_push(&self, ino: u64) -> bool {
        self.with_push(ino, |push| {
            if push.is_running() {
                set_follow_up(push, true);
                false
            } else {
                *push = PushState::Sending {
                    attempt: 0,
                    follow_up: false,
                };
                true
            }
        })
    }

    /// A push of `ino` ended (`failed`: why it gave up): true when its follow-up must run now,
    /// false when the file's push is over.
    pub fn push_ended(&self, ino: u64, failed: Option<String>) -> bool {
        let again = self.with_push(ino, |push| {
            if push.follow_up() {
                *push = PushState::Sending {
                    attempt: 0,
                    follow_up: false,
                };
                true
            } else {
                *push = match failed {
                    Some(why) => PushState::Failed { why },
                    None => PushState::Idle,
                };
                false
            }
        });
        if !again {
            self.push_ended.notify_waiters();
        }
        again
    }

    /// How many files have a push running.
    pub fn pushes_running(&self) -> usize {
        self.count(|s| s.push.is_running())
    }

    /// A write of `ino` failed on a platform fault: the fault is noted, and the push becomes
    /// its scout if it has none. True: this push is the scout (it tries again after
    /// [`Cells::scout_wait`] and does not give up while the fault lasts).
    pub fn write_failed(&self, ino: u64) -> bool {
        let mut fault = self.write_fault.lock();
        fault.since.get_or_insert_with(Instant::now);
        fault.waiting.remove(&ino);
        *fault.scout.get_or_insert(ino) == ino
    }

    /// How long the scout waits before it tries again.
    pub fn scout_wait(&self) -> Duration {
        let age = self
            .write_fault
            .lock()
            .since
            .map_or(Duration::ZERO, |t| t.elapsed());
        if age < SCOUT_FAST_FOR {
            return Duration::from_secs(1);
        }
        (age / 15).clamp(Duration::from_secs(1), SCOUT_MAX_WAIT)
    }

    /// Whether an unmount is waiting for the pushes (a scout then stops scouting).
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// `ino`'s push gave up while writes fail: it goes again when the fault ends.
    pub fn wait_for_writes(&self, ino: u64) {
        self.write_fault.lock().waiting.insert(ino);
    }

    /// `ino`'s push ended. If it was the scout and the fault goes on, another file that waits
    /// is returned to take its place (its push is started again, and scouts at its first
    /// failure); none while an unmount waits for the pushes to end.
    pub fn push_over(&self, ino: u64) -> Option<u64> {
        let mut fault = self.write_fault.lock();
        if fault.scout != Some(ino) {
            return None;
        }
        fault.scout = None;
        if self.draining() {
            return None;
        }
        let next = fault.waiting.iter().copied().find(|&w| w != ino)?;
        fault.waiting.remove(&next);
        Some(next)
    }

    /// A write went through: a fault under way is over. Returns the files that gave up during
    /// it (None: there was no fault).
    pub fn write_went_through(&self) -> Option<BTreeSet<u64>> {
        let mut fault = self.write_fault.lock();
        fault.since?;
        Some(std::mem::take(&mut *fault).waiting)
    }

    /// Waits until no push runs, at most `limit`; false when some still ran then.
    pub async fn until_no_push(&self, limit: Duration) -> bool {
        struct Draining<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Draining<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.draining
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _draining = Draining(&self.draining);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ended = self.push_ended.notified();
            tokio::pin!(ended);
            // Registered before the check: a push ending in between still wakes us.
            ended.as_mut().enable();
            if self.pushes_running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.pushes_running() == 0;
            }
        }
    }

    /// Waits until no request for `node` is in flight, then marks one until the guard drops.
    pub async fn sending(&self, node: NodeId) -> NodeSending<'_> {
        loop {
            let free = self.node_free.notified();
            tokio::pin!(free);
            free.as_mut().enable();
            if self.sending.lock().insert(node) {
                return NodeSending { cells: self, node };
            }
            free.await;
        }
    }

    /// Keeps `html` as `ino`'s snapshot for its next push, dropping stale ones and, past
    /// `max_bytes` in all, the oldest.
    pub fn keep_snapshot(&self, ino: u64, html: String, fresh_for: Duration, max_bytes: usize) {
        self.get(ino).state.lock().snapshot = Some((html, Instant::now()));
        let cells: Vec<_> = self.map.lock().values().cloned().collect();
        let mut kept: Vec<(Instant, usize, &Arc<FileCell>)> = Vec::new();
        for cell in &cells {
            let mut state = cell.state.lock();
            if state
                .snapshot
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= fresh_for)
            {
                state.snapshot = None;
            }
            if let Some((html, at)) = &state.snapshot {
                kept.push((*at, html.len(), cell));
            }
        }
        kept.sort_by_key(|(at, _, _)| *at);
        let mut total: usize = kept.iter().map(|(_, len, _)| len).sum();
        for (_, len, cell) in kept {
            if total <= max_bytes {
                break;
            }
            cell.state.lock().snapshot = None;
            total -= len;
        }
        drop(cells);
        // Cells emptied here are dropped by the next reference's prune; prune them now.
        self.prune_at_rest();
    }

    /// `ino`'s snapshot, if a fresh one waits.
    pub fn take_snapshot(&self, ino: u64, fresh_for: Duration) -> Option<String> {
        let cell = self.map.lock().get(&ino).cloned()?;
        let taken = cell.state.lock().snapshot.take();
        drop(CellRef {
            cells: self,
            cell: Some(cell),
        });
        taken
            .filter(|(_, at)| at.elapsed() < fresh_for)
            .map(|(html, _)| html)
    }

    /// The fetch of `ino`'s content `checksum` that is under way, or the one `start` makes
    /// (called under the cell's lock: it must only spawn, never wait).
    pub fn join_fetch(
        &self,
        ino: u64,
        checksum: &Checksum,
        start: impl FnOnce() -> SharedFetch,
    ) -> SharedFetch {
        let cell = self.get(ino);
        let mut state = cell.state.lock();
        match &state.fetch {
            Some((fetching, shared)) if fetching == checksum => shared.clone(),
            _ => {
                let shared = start();
                state.fetch = Some((checksum.clone(), shared.clone()));
                shared
            }
        }
    }

    /// The fetch of `ino`'s content `checksum` ended: later readers start anew.
    pub fn fetch_ended(&self, ino: u64, checksum: &Checksum) {
        let cell = self.get(ino);
        let mut state = cell.state.lock();
        if state.fetch.as_ref().is_some_and(|(c, _)| c == checksum) {
            state.fetch = None;
        }
    }

    /// Drops every cell at rest that nobody holds.
    fn prune_at_rest(&self) {
        self.map
            .lock()
            .retain(|_, cell| Arc::strong_count(cell) > 1 || !cell.state.lock().at_rest());
    }
}

fn set_follow_up(push: &mut PushState, value: bool) {
    match push {
        PushState::Settling { follow_up }
        | PushState::Sending { follow_up, .. }
        | PushState::Backoff { follow_up, .. } => *follow_up = value,
        PushState::Idle | PushState::Failed { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_at_rest_is_dropped_with_its_last_reference() {
        let cells = Cells::default();
        {
            let _held = cells.claim(7, Claim::Io);
            assert_eq!(cells.len(), 1);
        }
        assert!(cells.is_empty(), "released and at rest: dropped");
        assert!(cells.enqueue_push(7));
        assert_eq!(cells.len(), 1, "a running push keeps its cell");
        assert!(!cells.enqueue_push(7), "a second save gets a follow-up");
        assert!(cells.push_ended(7, None), "the follow-up runs");
        assert!(!cells.push_ended(7, None));
        assert_eq!(cells.peek(7, |s| s.push.clone()), None, "idle: dropped");
        assert!(cells.is_empty());
        assert!(cells.enqueue_push(8));
        assert!(!cells.push_ended(8, Some("refused".into())));
        assert_eq!(
            cells.peek(8, |s| s.push.clone()),
            Some(PushState::Failed {
                why: "refused".into()
            }),
            "a failed push is remembered until the next save"
        );
        assert!(cells.enqueue_push(8), "the next save pushes again");
    }

    #[test]
    fn saved_content_handed_on_is_bounded_and_goes_with_its_cell() {
        let cells = Cells::default();
        let big = bytes::Bytes::from(vec![7u8; (HANDED_ON_MAX / 2) as usize]);
        // Two pushes waiting (offline): each save hands its content on while the budget holds.
        for ino in [1, 2, 3] {
            assert!(cells.enqueue_push(ino));
            let held = cells.claim(ino, Claim::Io);
            cells.hand_on(&mut held.state(), &Checksum::new("sum"), &big);
        }
        assert_eq!(cells.handed_on(), HANDED_ON_MAX, "the third is not held");
        assert!(cells.take_saved(3).is_none(), "its push reads the file");
        let taken = cells.take_saved(1).expect("handed on");
        assert_eq!((taken.sum.as_str(), taken.bytes.len()), ("sum", big.len()));
        drop(taken);
        assert_eq!(
            cells.handed_on(),
            HANDED_ON_MAX / 2,
            "taken and dropped: let go"
        );
        // A cell that goes to rest drops what it held (the push was never run).
        assert!(!cells.push_ended(2, None));
        assert!(cells.peek(2, |_| ()).is_none(), "at rest: dropped");
        assert_eq!(cells.handed_on(), 0);
        // A newer save replaces what an older one handed on.
        assert!(cells.enqueue_push(4));
        let held = cells.claim(4, Claim::Io);
        cells.hand_on(&mut held.state(), &Checksum::new("old"), &big);
        cells.hand_on(&mut held.state(), &Checksum::new("new"), &big);
        drop(held);
        assert_eq!(cells.handed_on(), HANDED_ON_MAX / 2);
        assert_eq!(
            cells.take_saved(4).map(|s| s.sum.clone()),
            Some(Checksum::new("new"))
        );
    }

    #[test]
    fn what_no_push_will_take_is_let_go_though_the_kernel_keeps_the_cell() {
        let cells = Cells::default();
        let bytes = bytes::Bytes::from(vec![7u8; 4096]);
        cells.get(5).state().kernel = Some(KernelView {
            lookups: 1,
            ..KernelView::default()
        });
        // Saved with no push running (offline, sync off): nothing will take it.
        drop({
            let held = cells.claim(5, Claim::Io);
            cells.hand_on(&mut held.state(), &Checksum::new("a"), &bytes);
            held
        });
        assert!(cells.peek(5, |_| ()).is_some(), "the kernel keeps the cell");
        assert_eq!(cells.handed_on(), 0, "and nothing handed on stays in it");
        // With its push running, the next save's content waits for the push.
        assert!(cells.enqueue_push(5));
        drop({
            let held = cells.claim(5, Claim::Io);
            cells.hand_on(&mut held.state(), &Checksum::new("b"), &bytes);
            held
        });
        assert_eq!(cells.handed_on(), 4096);
        assert_eq!(
            cells.take_saved(5).map(|s| s.sum.clone()),
            Some(Checksum::new("b"))
        );
    }

    #[test]
    fn a_claim_waits_for_the_holder_and_reading_the_state_does_not() {
        let cells = Arc::new(Cells::default());
        let held = cells.claim(1, Claim::Io);
        let (tx, rx) = std::sync::mpsc::channel();
        let other = cells.clone();
        let waiter = std::thread::spawn(move || {
            let _claimed = other.claim(1, Claim::Io);
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        // The push state reads at once while the claim is held.
        assert!(cells.enqueue_push(1));
        assert!(cells.peek(1, |s| s.push.is_running()).unwrap());
        // Another kind of claim is independent.
        drop(cells.claim(1, Claim::Gate));
        drop(held);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn snapshots_past_the_budget_drop_the_oldest() {
        let cells = Cells::default();
        let fresh = Duration::from_secs(60);
        cells.keep_snapshot(1, "a".repeat(60), fresh, 100);
        cells.keep_snapshot(2, "b".repeat(60), fresh, 100);
        assert_eq!(cells.take_snapshot(1, fresh), None, "the oldest went");
        assert_eq!(cells.take_snapshot(2, fresh).map(|s| s.len()), Some(60));
        assert!(cells.is_empty());
    }

    #[test]
    fn one_scout_while_writes_fail_and_the_waiting_files_when_they_work() {
        let cells = Cells::default();
        assert_eq!(
            cells.write_went_through(),
            None,
            "no fault: nothing to wake"
        );
        assert!(cells.write_failed(1), "the first failing push scouts");
        assert!(!cells.write_failed(2), "one scout at a time");
        assert!(cells.write_failed(1), "and it stays the scout");
        assert_eq!(cells.scout_wait(), Duration::from_secs(1));
        cells.wait_for_writes(2);
        cells.wait_for_writes(3);
        assert_eq!(
            cells.push_over(2),
            None,
            "not the scout: nothing to hand over"
        );
        assert_eq!(
            cells.push_over(1),
            Some(2),
            "the scout's place goes to a waiting file"
        );
        assert!(cells.write_failed(2), "which scouts at its first failure");
        assert_eq!(
            cells.write_went_through(),
            Some(BTreeSet::from([3])),
            "a write went through: the files that gave up go again"
        );
        assert_eq!(cells.write_went_through(), None, "the fault is over");
        assert!(cells.write_failed(4), "a new fault has its own scout");
    }

    #[tokio::test]
    async fn one_request_per_node_and_drain_wakes_when_pushes_end() {
        let cells = Arc::new(Cells::default());
        let first = cells.sending(NodeId::new(5)).await;
        let other = cells.clone();
        let second = tokio::spawn(async move {
            let _s = other.sending(NodeId::new(5)).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits for the first request");
        drop(first);
        second.await.unwrap();
        assert!(cells.enqueue_push(9));
        let draining = cells.clone();
        let drain =
            tokio::spawn(async move { draining.until_no_push(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!cells.push_ended(9, None));
        assert!(drain.await.unwrap());
    }
}
