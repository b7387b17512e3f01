//! The sync engine: decides what moves where. Pull (platform changes into the mirror), fetch
//! (content onto disk: on first read, and for the whole account in the background), and the loop
//! that follows the platform (event stream, with polling while it is down). It tells the kernel
//! about what it changed through [`Notice`]s, which the mount forwards; it never touches FUSE.
//!
//! # Lock order (the whole crate)
//!
//! Locks are taken only in this order, top to bottom; a lock never waits for one above it.
//! "Leaf" locks are held for a few lines and nothing is taken while holding them.
//!
//! Each file's runtime state is its `FileCell` (`cell.rs`): one short lock per file, never held
//! across I/O; what must be serialized per file across I/O is a *claim* on the cell (a flag in
//! its state, waited for on the cell's condition variable), listed here at its level.
//!
//! 1. `Claim::Gate` on a file's cell (`fs/write.rs`, `gate`), held by a write, truncate, save,
//!    close or new session of that file, across the whole save.
//! 2. `Cells::sending(node)`: one request per platform node in flight (`push/send.rs`,
//!    `push_to_node`), held across the request and its settling, so an older push never lands
//!    last. Never taken while 3-6 are held.
//! 3. `Engine::namespace` (`namespace_lock`): changes that pass a platform node between local
//!    entries (rename, a file made where one was deleted) and the pull placing a node.
//! 4. `Claim::Io` on a file's cell (`with_files_locked`, `file_claim`), several taken in inode
//!    order; changes to one mirror file and its entry (saves, fetched copies, renames, unlinks).
//! 5. `Engine::failed_saves` (`failed.rs`): held while the held files' set (each file's mark is
//!    its cell's) is written to the index's meta, so the index keeps the last set; taken under
//!    no other sync lock.
//! 6. `cache::Index::db` then `cache::Index::tree` (`index.rs`): inside every index call only.
//!
//! Leaf locks: a cell's state lock (`FileCell::state`; the cells map is taken before it only to
//! find or drop a cell), `Cells::write_fault` (writes failing), `Engine::{account, last_sync}`, `clock::PlatformClock::anchor`, `status::Status::problems`,
//! `remote::Client`'s `RwLock`s (connection pool, credential, features, url source, progress
//! limit), `fs::MountFs::handles`, `fs::write::Links`, `fs::backups::Backups`,
//! `serve::sites::RememberedSites`, `serve`'s per-file save locks and its two semaphores (which
//! only wait for capacity), `platform/approvals`, and the log file's lock.
//!
//! A function named `*_locked` runs with the file locks (4) of the inodes it changes already
//! held by its caller; the suffix means nothing else in the crate.
//!
//! No std lock is held across an `.await` (only the async node locks are), and no lock at all
//! is held while the kernel is told something (`Notice`s go through the notifier thread).

pub mod apart;
pub mod boot;
pub mod cell;
pub mod clock;
mod decide;
mod failed;
mod fetch;
mod follow;
pub mod listed;
pub mod live;
mod local;
mod netwatch;
mod observe;
mod place;
mod power_cut;
mod pull;
mod push;
mod reconcile;
mod save;
pub mod saved_versions;
mod settings;
pub mod status;
mod vet;

use std::sync::{Arc, Mutex};

use crate::cache::{Index, IndexError, Mirror, MirrorError, PathRefused, RelPath};
use crate::protocol::{Checksum, NodeId};
use crate::remote::{Client, RemoteError};

pub use boot::{Boot, BootError, Running, Stopped};
pub use decide::{decide, Action};
pub use follow::follow;
pub use observe::{Look, Seen};
pub use pull::RemoteNode;
pub use push::SENDS_AT_ONCE;
pub use reconcile::Pending;
pub use settings::{FrontDoor, Settings};
pub use vet::{
    vet_listing, vet_listing_bounded, Refusal as ListingRefusal, Vetted, MAX_LISTING_NODES,
};

/// What the kernel must be told after the engine changed the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The content (and size) of an inode changed.
    Content { ino: u64 },
    /// A name appeared or changed in a folder (drop any cached lookup of it).
    Entry { parent: u64, name: String },
}

pub type NoticeSink = Arc<dyn Fn(Notice) + Send + Sync>;

/// A file's content changed in the mirror (the local server tells the file's open tabs).
#[derive(Debug, Clone)]
pub struct FileChanged {
    pub rel: RelPath,
    pub by: ChangedBy,
}

/// Who changed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// A program saving through the mount.
    Mount,
    /// The local server (a page's save, an upload).
    Server,
    /// A program saving in the plain folder (seen by its watcher).
    Folder,
    /// The platform's newer copy, pulled down.
    Platform,
}

/// File changes kept for a slow listener before it misses some (it then rereads what it needs).
const CHANGES_KEPT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// A bug: a step panicked or its task was lost. Logged; the step is retried where it can be.
    #[error("a bug stopped this step: {0}")]
    Bug(String),
    /// The index and the mirror disagree in a way this step can't settle (a folder where a
    /// platform file must go, a node known twice); nothing was changed.
    #[error("{0}")]
    Inconsistent(String),
    /// The file left the index (deleted, or forgotten) while this was under way.
    #[error("the file is gone")]
    Gone,
    /// A fetch shared by several readers failed: its error, as the one that ran it got it (a
    /// full disk stays a full disk, not "the platform can't be reached").
    #[error(transparent)]
    Shared(Arc<SyncError>),
    /// A name (from the platform, or typed here) that can't be a file in the mirror.
    #[error(transparent)]
    BadPath(#[from] PathRefused),
    /// The mirror holds another account's files: never synced into this one.
    #[error("this mirror belongs to {mirror}, and you are signed in as {signed_in}: mount another --mirror to sync {signed_in}")]
    WrongAccount { mirror: String, signed_in: String },
    /// A local operation refused for what the namespace holds; `fs/` picks the errno.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A name the platform's rules refuse, found here before anything was sent (the same words
    /// as the platform's own refusal, which comes back as `RemoteError::InvalidName`).
    #[error("the platform refuses the name: {0}")]
    NameRefused(String),
}

/// Why a change to the namespace through the mount was refused (the kernel's errno for each is
/// chosen in `fs/error.rs`, the only place that speaks errnos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such file")]
    NoSuchFile,
    #[error("no such folder")]
    NoSuchFolder,
    #[error("not a folder")]
    NotAFolder,
    #[error("is a folder")]
    IsAFolder,
    #[error("exists")]
    Exists,
    #[error("the folder is not empty")]
    NotEmpty,
    #[error("a folder cannot move into itself")]
    IntoItself,
}

impl SyncError {
    pub fn is_offline(&self) -> bool {
        match self {
            SyncError::Remote(e) => e.is_offline(),
            SyncError::Shared(e) => e.is_offline(),
            _ => false,
        }
    }

    /// Worth trying again later (the platform unreachable, slow, or faulting for a while).
    pub fn is_transient(&self) -> bool {
        matches!(self.cause(), SyncError::Remote(r) if r.is_transient())
    }

    /// The error itself, through a shared fetch's.
    pub fn cause(&self) -> &SyncError {
        match self {
            SyncError::Shared(e) => e.cause(),
            e => e,
        }
    }
}

pub type Result<T> = std::result::Result<T, SyncError>;

/// The engine's shared state. Cheap to clone behind an `Arc`.
pub struct Engine {
    pub client: Arc<Client>,
    pub index: Arc<Index>,
    pub mirror: Arc<Mirror>,
    notices: NoticeSink,
    /// Every file's runtime state: one `FileCell` per file (`cell.rs`), the only per-file
    /// state outside the index.
    pub(crate) cells: cell::Cells,
    /// Held by the changes that pass a platform node from one local entry to another (a rename,
    /// a file made where one was deleted) and by the pull while it places a platform node: the
    /// pull never sees a node between two holders and makes a third. Taken before file locks.
    namespace: Mutex<()>,
    /// Chosen when the engine is built, fixed for its life.
    settings: Settings,
    /// The push queue: each file's push phase, and the places being created (`push/mod.rs`).
    queue: push::Queue,
    /// New files whose only save failed: held locally (`failed.rs`).
    failed_saves: failed::FailedSaves,
    /// The last run ended cleanly: a mirror file whose size and time match the index is unchanged.
    /// After a crash every file is re-read (a save may have reached the disk but not the index).
    trust_file_times: bool,
    /// The previous run ended uncleanly in an earlier boot: the start-up comparison applies the
    /// power-cut rule (`power_cut.rs`).
    after_power_cut: bool,
    pub status: status::Status,
    /// The platform's clock as this machine keeps it (`clock.rs`): edit times are taken on it.
    clock: clock::PlatformClock,
    /// Where pushes and fetches run (FUSE threads have no runtime of their own).
    runtime: tokio::runtime::Handle,
    /// The platform answered the last time it was asked.
    online: std::sync::atomic::AtomicBool,
    /// The signed-in account owns this mirror (checked before anything goes up).
    verified: std::sync::atomic::AtomicBool,
    /// Sync on or off (`hyperclay sync off`); kept in the index across restarts.
    sync_switch: tokio::sync::watch::Sender<bool>,
    /// The account's name, once the platform said it.
    account: Mutex<Option<String>>,
    /// Fetches running now.
    fetching: std::sync::atomic::AtomicUsize,
    /// Background fetches wait here and run a few at a time (`fetch::queue_worker`): queued,
    /// a fetch is an inode number, not a running task holding buffers and a connection.
    fetch_queue: tokio::sync::mpsc::UnboundedSender<u64>,
    /// When both sides were last known to agree.
    last_sync: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Whether the account was ever listed into the index (a first mount waits for it).
    pub first_listing: listed::FirstListing,
    /// Files whose content changed, as they change.
    changes: tokio::sync::broadcast::Sender<FileChanged>,
    /// This mirror's id as a live-sync sender (its own frames come back and are dropped).
    device_id: String,
    /// Other devices' live-sync frames, for the local server.
    live_frames: tokio::sync::broadcast::Sender<live::LiveFrame>,
    /// The plain folder's saved versions waiting for their push (`saved_versions.rs`).
    versions_waiting: saved_versions::Waiting,
}

impl Engine {
    pub fn new(
        client: Arc<Client>,
        index: Arc<Index>,
        mirror: Arc<Mirror>,
        notices: NoticeSink,
        settings: Settings,
    ) -> Arc<Engine> {
        let sync_on = index.meta("sync").ok().flatten().as_deref() != Some("off");
        let trust_file_times = index.meta("clean_exit").ok().flatten().as_deref() == Some("yes");
        let _ = index.set_meta("clean_exit", "no");
        let after_power_cut = power_cut::after_power_cut(&index, trust_file_times);
        let (fetch_queue, queued) = tokio::sync::mpsc::unbounded_channel();
        let first_listing = listed::FirstListing::new(&index);
        let index_for_id = index.clone();
        let clock = clock::PlatformClock::load(&index, settings.clock.clone());
        let engine = Arc::new(Engine {
            client,
            index,
            mirror,
            notices,
            cells: cell::Cells::default(),
            namespace: Mutex::new(()),
            settings,
            queue: push::Queue::default(),
            failed_saves: failed::FailedSaves::default(),
            trust_file_times,
            after_power_cut,
            status: status::Status::default(),
            clock,
            runtime: tokio::runtime::Handle::current(),
            online: std::sync::atomic::AtomicBool::new(true),
            verified: std::sync::atomic::AtomicBool::new(false),
            sync_switch: tokio::sync::watch::channel(sync_on).0,
            account: Mutex::new(None),
            last_sync: Mutex::new(None),
            fetching: std::sync::atomic::AtomicUsize::new(0),
            fetch_queue,
            first_listing,
            changes: tokio::sync::broadcast::channel(CHANGES_KEPT).0,
            device_id: live::device_id(&index_for_id),
            live_frames: tokio::sync::broadcast::channel(live::FRAMES_KEPT).0,
            versions_waiting: saved_versions::Waiting::default(),
        });
        failed::FailedSaves::load(&engine.index, &engine.cells);
        engine
            .runtime
            .spawn(fetch::queue_worker(Arc::downgrade(&engine), queued));
        engine
    }

    pub fn sync_on(&self) -> bool {
        *self.sync_switch.borrow()
    }

    /// The user signed out: nothing moves any more in this run; the mount keeps working locally.
    pub fn sign_out(&self) {
        tracing::info!("signed out: syncing stopped");
        self.status.report(
            status::ProblemKind::SignedOut,
            None,
            "Signed out: run `hyperclay login`, then restart the mount, to sync again.".into(),
        );
        self.sync_switch.send_replace(false);
    }

    /// Turns sync on or off; the state survives restarts. Turning it on reconciles.
    pub fn set_sync(&self, on: bool) -> Result<()> {
        self.index.set_meta("sync", if on { "on" } else { "off" })?;
        tracing::info!("sync turned {}", if on { "on" } else { "off" });
        self.sync_switch.send_replace(on);
        Ok(())
    }

    /// Marks a clean end (call after the last push): the next start may trust file times. What
    /// closes saved without an fsync (docs/semantics.md, "Crash safety") is put on the disk
    /// first, so a power cut after a clean stop loses nothing the next start would not look for.
    pub fn mark_clean_exit(&self) {
        if let Err(e) = crate::os::sync_filesystem(self.mirror.root()) {
            tracing::warn!(error = %e, "could not flush the mirror to disk: the next start compares every file");
            return;
        }
        let _ = self.index.set_meta("clean_exit", "yes");
        self.index.checkpoint();
    }

    pub fn account(&self) -> Option<String> {
        self.account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_sync(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_synced(&self) {
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(chrono::Utc::now());
    }

    fn remember_sent(&self, node: NodeId, checksum: &Checksum) {
        if let Err(e) = self.index.record_sent(node, checksum) {
            tracing::warn!(error = %e, "could not record a push in the index");
        }
    }

    /// Whether `checksum` on `node` is this mount's own push coming back (also across a crash).
    fn is_own_echo(&self, node: NodeId, checksum: &Checksum) -> bool {
        self.index.was_sent(node, checksum)
    }

    /// The key under which a create is remembered before its node id is known (a crash between
    /// the create and its answer leaves a node we made; adopting it must not look like a change
    /// made elsewhere).
    fn create_key(ino: u64) -> NodeId {
        // Below SQLite's largest integer, above any node id a platform hands out.
        NodeId::new(i64::MAX as u64 - ino)
    }

    fn stream_silence_limit(&self) -> std::time::Duration {
        self.settings.stream_silence
    }

    fn prefetching(&self) -> bool {
        self.settings.prefetch
    }

    /// The mirror path of an inode that must still be in the index.
    pub fn rel(&self, ino: u64) -> Result<RelPath> {
        self.index.path(ino).ok_or(SyncError::Gone)
    }

    fn notify(&self, notice: Notice) {
        (self.notices)(notice);
    }

    /// Every file change from now on.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<FileChanged> {
        self.changes.subscribe()
    }

    fn announce_change(&self, rel: &RelPath, by: ChangedBy) {
        // No listener (no local server) is not an error.
        let _ = self.changes.send(FileChanged {
            rel: rel.clone(),
            by,
        });
    }

    /// Claims one inode's mirror file and place (its cell's `Claim::Io`) until the guard
    /// drops: saves, fetched copies, renames (local or the platform's) and a create attaching
    /// its node.
    fn file_claim(&self, ino: u64) -> cell::Claimed<'_> {
        self.cells.claim(ino, cell::Claim::Io)
    }

    fn namespace_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.namespace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` holding the file locks of `inos`, taken in inode order so that two callers
    /// locking overlapping sets never deadlock.
    fn with_files_locked<T>(&self, inos: &[u64], f: impl FnOnce() -> T) -> T {
        let _claimed = self.cells.claim_all(inos, cell::Claim::Io);
        f()
    }
}
