//! The plain-folder front door (`hyperclay mount DIR --folder`), driven in-process against a real
//! dev platform on loopback: programs write the folder directly (plain writes, an editor's
//! temp-then-rename, `rm`, `mv`, `git clone`), a real inotify watcher tells the engine, and every
//! policy of docs/semantics.md holds as in the mount.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{TestPlatform, KEY};
use hyperclay::cache::Mirror;
use hyperclay::folder::{FolderSync, Hold};
use hyperclay::protocol::NodeKind;
use hyperclay::remote::Credential;
use hyperclay::sync::{Boot, Engine, FrontDoor, Running, Settings};

/// A test that changes the kernel's inotify limits runs alone: the others' watchers (each holds
/// one for its whole life) would count against a watch limit, and take a short queue limit.
static INOTIFY_LIMITS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A watcher's share of [`INOTIFY_LIMITS`], held for the folder's life.
#[allow(dead_code)]
enum LimitsHeld {
    Shared(tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'static, ()>),
}

struct Folder {
    _limits: LimitsHeld,
    engine: Arc<Engine>,
    watch: Option<FolderSync>,
    root: PathBuf,
    running: Running,
}

impl Folder {
    /// The folder front door over `dir`, watching (or not: `watch` false leaves the engine to
    /// learn of changes only when it looks itself, for the race tests).
    async fn start(url: &str, dir: &Path, watch: bool) -> Folder {
        Self::start_with(url, dir, watch, None).await
    }

    /// `queue`: the inotify queue's length for this watcher (`fs.inotify.max_queued_events`).
    async fn start_with(url: &str, dir: &Path, watch: bool, queue: Option<u32>) -> Folder {
        Self::start_limited(
            url,
            dir,
            watch,
            queue.map(Limit::Queue),
            None,
            Hold::default(),
        )
        .await
    }

    /// A watching folder holding bursts by `hold`.
    async fn start_holding(url: &str, dir: &Path, hold: Hold) -> Folder {
        Self::start_limited(url, dir, true, None, None, hold).await
    }

    /// `limit`: an inotify limit while the watcher starts; `every`: how often the whole folder
    /// is compared; `hold`: how bursts are held.
    async fn start_limited(
        url: &str,
        dir: &Path,
        watch: bool,
        limit: Option<Limit>,
        every: Option<Duration>,
        hold: Hold,
    ) -> Folder {
        let settings = Settings {
            front_door: FrontDoor::Folder,
            ..Settings::default()
        };
        let engine = Boot::new(dir, url, Credential::ApiKey(KEY.into()))
            .settings(settings)
            .open()
            .unwrap();
        let limits = match limit {
            Some(_) => LimitsHeld::Alone(INOTIFY_LIMITS.write().await),
            None => LimitsHeld::Shared(INOTIFY_LIMITS.read().await),
        };
        let watch = match watch {
            true => {
                let limit = limit.map(Limit::set);
                let started = engine.clone();
                let every = every.unwrap_or(hyperclay::folder::FULL_COMPARE_EVERY);
                let w = tokio::task::spawn_blocking(move || {
                    FolderSync::start_holding(started, every, hold).unwrap()
                })
                .await
                .unwrap();
                drop(limit);
                let compared = w.ask_compare();
                tokio::task::spawn_blocking(move || compared.recv())
                    .await
                    .unwrap()
                    .unwrap();
                Some(w)
            }
            false => None,
        };
        let root = engine.mirror.root().to_path_buf();
        let f = Folder {
            _limits: limits,
            engine: engine.clone(),
            watch,
            root,
            running: Running::follow(engine),
        };
        f.until("the account is listed", |e| e.first_listing.is_listed())
            .await;
        f
    }

    async fn stop(mut self) {
        if let Some(w) = self.watch.take() {
            tokio::task::spawn_blocking(move || w.stop()).await.unwrap();
        }
        assert!(self.running.stop(Duration::from_secs(30)).await.drained);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Waits (60 s at most: a loaded machine) until `check` holds.
    async fn until(&self, what: &str, mut check: impl FnMut(&Engine) -> bool) {
        for _ in 0..3000 {
            if check(&self.engine) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "never happened: {what}; status: {:?}",
            self.engine.status.all()
        );
    }
}

/// Every file on the platform: full path → content.
async fn platform_files(p: &TestPlatform) -> std::collections::BTreeMap<String, Vec<u8>> {
    common::platform_files(&p.client()).await
}

/// How many files the platform has under `prefix` (names only: cheap to poll).
async fn platform_count(p: &TestPlatform, prefix: &str) -> usize {
    p.client()
        .nodes()
        .await
        .map(|n| {
            n.nodes
                .iter()
                .filter(|n| n.kind.is_file() && n.full_path().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// Whether the platform holds `content` at `path` (a request that fails, as one may on a
/// loaded machine, answers no: callers wait and ask again).
async fn platform_has(p: &TestPlatform, path: &str, content: &[u8]) -> bool {
    let c = p.client();
    let Ok(nodes) = c.nodes().await else {
        return false;
    };
    match nodes.nodes.iter().find(|n| n.full_path() == path) {
        Some(n) => c
            .content(n.id)
            .await
            .is_ok_and(|(_, bytes)| bytes == content),
        None => false,
    }
}

async fn eventually_on_platform(p: &TestPlatform, path: &str, content: &[u8]) {
    assert!(
        common::eventually(Duration::from_secs(60), || platform_has(p, path, content)).await,
        "{path} never reached the platform with {:?}; the platform has {:?}",
        String::from_utf8_lossy(content),
        platform_files(p).await.keys().collect::<Vec<_>>()
    );
}

/// [`common::eventually`] polling every 250 ms: a listing of thousands of nodes every 20 ms
/// would take the cores from the engine and platform it waits for.
async fn eventually_slowly<F, Fut>(limit: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::eventually_every(limit, Duration::from_millis(250), check).await
}

fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_deletes_and_renames_in_the_folder_follow_the_mount_s_policies() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;

    // A new site, a new upload in new folders: up at once.
    write_file(&f.path("page.html"), b"<p>one</p>");
    write_file(&f.path("docs/deep/notes.txt"), b"notes");
    eventually_on_platform(&p, "page.html", b"<p>one</p>").await;
    eventually_on_platform(&p, "docs/deep/notes.txt", b"notes").await;
    let page = common::node_at(&p.client(), "page.html").await.unwrap();

    // Saved in place, then saved the way editors do (a temp file renamed over it): both are
    // updates of the same node.
    write_file(&f.path("page.html"), b"<p>two</p>");
    eventually_on_platform(&p, "page.html", b"<p>two</p>").await;
    write_file(&f.path(".page.html.swp"), b"<p>three</p>");
    std::fs::rename(f.path(".page.html.swp"), f.path("page.html")).unwrap();
    eventually_on_platform(&p, "page.html", b"<p>three</p>").await;
    assert_eq!(common::node_at(&p.client(), "page.html").await, Some(page));
    // Every saved version of a site is kept locally too, as Hyperclay Local does (written
    // while its push goes up).
    let versions = f.path("sites-versions/page");
    f.until("three versions are kept", |_| {
        std::fs::read_dir(&versions).map_or(0, |d| d.count()) >= 3
    })
    .await;

    // Rename creates: the new name is a new node, the old one stays on the platform.
    std::fs::rename(f.path("docs/deep/notes.txt"), f.path("docs/renamed.txt")).unwrap();
    eventually_on_platform(&p, "docs/renamed.txt", b"notes").await;
    assert!(platform_has(&p, "docs/deep/notes.txt", b"notes").await);

    // Never delete across: a file and a folder removed here stay on the platform.
    std::fs::remove_file(f.path("page.html")).unwrap();
    std::fs::remove_dir_all(f.path("docs")).unwrap();
    f.until("the deletes are recorded", |e| {
        e.kept_apart().removed_here.len() >= 3
    })
    .await;
    let files = platform_files(&p).await;
    assert_eq!(
        files.get("page.html").map(|c| c.as_slice()),
        Some(&b"<p>three</p>"[..])
    );
    assert!(files.contains_key("docs/renamed.txt"));

    // Local-only names never go up.
    write_file(&f.path("node_modules/x/index.js"), b"x");
    write_file(&f.path("draft.html~"), b"x");
    write_file(&f.path("last.html"), b"<p>last</p>");
    eventually_on_platform(&p, "last.html", b"<p>last</p>").await;
    let files = platform_files(&p).await;
    assert!(!files
        .keys()
        .any(|k| k.contains("node_modules") || k.ends_with('~')));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_change_lands_atomically_and_is_not_sent_back() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;
    write_file(&f.path("app.html"), b"<p>mine</p>");
    eventually_on_platform(&p, "app.html", b"<p>mine</p>").await;
    let id = common::node_at(&p.client(), "app.html").await.unwrap();
    let before = p.client().versions(id).await.unwrap().len();

    p.client()
        .put_content(id, NodeKind::Site, b"<p>theirs</p>".to_vec().into(), None)
        .await
        .unwrap();
    let path = f.path("app.html");
    f.until("the platform's change is in the folder", |_| {
        std::fs::read(&path).unwrap_or_default() == b"<p>theirs</p>"
    })
    .await;
    // The local copy it replaced is kept, and the watcher's event for the new file is not
    // taken for a save: nothing goes back up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(f.engine.drain(Duration::from_secs(30)).await);
    assert_eq!(
        p.client().versions(id).await.unwrap().len(),
        before + 1,
        "only the platform's own change made a version"
    );
    assert_eq!(f.engine.pending_uploads().waiting, 0);
    let kept: Vec<Vec<u8>> = std::fs::read_dir(f.path("sites-versions/app"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(kept.iter().any(|c| c == b"<p>mine</p>"));
    // No temp file was ever left beside it.
    let names: Vec<String> = std::fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("tmp")),
        "names in the folder: {names:?}"
    );
    f.stop().await;
}

/// A program saves the file and the engine is not told (no watcher here), then the platform's
/// copy changes: the pull finds the save on disk before replacing anything, and the two edits are
/// decided like any two-sided change. The platform's is later and wins; the save is kept in
/// `sites-versions/` and said in status, never overwritten blindly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_the_engine_was_not_told_of_is_decided_not_overwritten() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), false).await;
    write_file(&f.path("race.html"), b"<p>base</p>");
    f.engine
        .observe(
            &hyperclay::cache::RelPath::parse("race.html").unwrap(),
            hyperclay::sync::Look::Hash,
        )
        .unwrap();
    eventually_on_platform(&p, "race.html", b"<p>base</p>").await;
    let id = common::node_at(&p.client(), "race.html").await.unwrap();

    write_file(&f.path("race.html"), b"<p>saved here</p>");
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.client()
        .put_content(
            id,
            NodeKind::Site,
            b"<p>platform, later</p>".to_vec().into(),
            None,
        )
        .await
        .unwrap();
    let path = f.path("race.html");
    f.until("the platform's later change is in the folder", |_| {
        std::fs::read(&path).unwrap_or_default() == b"<p>platform, later</p>"
    })
    .await;
    f.until("the conflict is in status", |e| {
        e.status
            .conflicts()
            .iter()
            .any(|c| c.message.contains("race.html"))
    })
    .await;
    let kept: Vec<Vec<u8>> = std::fs::read_dir(f.path("sites-versions/race"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        kept.iter().any(|c| c == b"<p>saved here</p>"),
        "the save was lost"
    );
    assert!(platform_has(&p, "race.html", b"<p>platform, later</p>").await);
    f.stop().await;
}

/// While the folder's watcher runs, a site's saved version is written once its push is answered
/// (its fsyncs no longer compete with the platform's for the disk), and every version still
/// waiting is written when the watcher stops. Driven without a watcher, so that nothing writes
/// a waiting version but the calls made here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_version_waits_for_its_push_and_is_written_at_stop_at_the_latest() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), false).await;
    let rel = hyperclay::cache::RelPath::parse("wait.html").unwrap();
    let versions = f.path("sites-versions/wait");
    let kept = || std::fs::read_dir(&versions).map_or(0, |d| d.count());
    f.engine.versions_wait_for_pushes(true);

    write_file(&f.path("wait.html"), b"<p>one</p>");
    f.engine.observe(&rel, hyperclay::sync::Look::Hash).unwrap();
    eventually_on_platform(&p, "wait.html", b"<p>one</p>").await;
    assert!(f.engine.drain(Duration::from_secs(30)).await);
    assert_eq!(kept(), 0, "written while nothing was asked to write it");
    // Its push is answered: the next look at what waits writes it, and nothing waits after.
    assert_eq!(f.engine.keep_waiting_versions(false), None);
    assert_eq!(kept(), 1);

    // Saved again, and the watcher stops before anything wrote the version: the stop does.
    write_file(&f.path("wait.html"), b"<p>two</p>");
    f.engine.observe(&rel, hyperclay::sync::Look::Hash).unwrap();
    f.engine.versions_wait_for_pushes(false);
    assert_eq!(kept(), 2);
    let contents: Vec<Vec<u8>> = std::fs::read_dir(&versions)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(contents.iter().any(|c| c == b"<p>two</p>"));
    eventually_on_platform(&p, "wait.html", b"<p>two</p>").await;
    f.stop().await;
}

/// The guarded replacement itself, at the moment that matters: the file changes between the
/// caller's look and the swap. The program's content stays, nothing of ours replaces it.
#[test]
fn a_file_changed_just_before_the_swap_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(dir.path()).unwrap();
    let rel = hyperclay::cache::RelPath::parse("f.html").unwrap();
    std::fs::write(mirror.path(&rel), b"looked at").unwrap();
    let expected = hyperclay::protocol::checksum(b"looked at");
    // Changed after the look.
    std::fs::write(mirror.path(&rel), b"saved since").unwrap();
    let staged = mirror.stage_bytes(b"from the platform").unwrap();
    let placed = mirror
        .commit_staged_guarded(staged, &rel, None, Some(&expected))
        .unwrap();
    assert_eq!(placed, hyperclay::cache::Guarded::Changed);
    assert_eq!(std::fs::read(mirror.path(&rel)).unwrap(), b"saved since");
    // Unchanged since the look: replaced.
    let expected = hyperclay::protocol::checksum(b"saved since");
    let staged = mirror.stage_bytes(b"from the platform").unwrap();
    let placed = mirror
        .commit_staged_guarded(staged, &rel, None, Some(&expected))
        .unwrap();
    assert_eq!(placed, hyperclay::cache::Guarded::Replaced);
    assert_eq!(
        std::fs::read(mirror.path(&rel)).unwrap(),
        b"from the platform"
    );
    // Nothing expected, something there: a program's file, kept.
    let other = hyperclay::cache::RelPath::parse("new.html").unwrap();
    std::fs::write(mirror.path(&other), b"a program's").unwrap();
    let staged = mirror.stage_bytes(b"from the platform").unwrap();
    let placed = mirror
        .commit_staged_guarded(staged, &other, None, None)
        .unwrap();
    assert_eq!(placed, hyperclay::cache::Guarded::Changed);
    assert_eq!(std::fs::read(mirror.path(&other)).unwrap(), b"a program's");
    // No staged file left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join(".hyperclay/tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// An inotify limit lowered while a watcher starts (the kernel reads the queue's length when an
/// instance is made, and counts watches per user).
enum Limit {
    /// `fs.inotify.max_queued_events`.
    Queue(u32),
    /// `fs.inotify.max_user_watches`, as this many more than the user has now.
    MoreWatches(u32),
}

/// The limit set, until dropped.
struct LimitSet(&'static str, String);

impl Limit {
    fn set(self) -> LimitSet {
        let (path, value) = match self {
            Limit::Queue(n) => ("/proc/sys/fs/inotify/max_queued_events", n),
            Limit::MoreWatches(n) => (
                "/proc/sys/fs/inotify/max_user_watches",
                watches_in_use() + n,
            ),
        };
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value.to_string())
            .unwrap_or_else(|e| panic!("this test lowers {path} (needs root): {e}"));
        LimitSet(path, old.trim().to_string())
    }
}

impl Drop for LimitSet {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}

/// The inotify watches this user's processes hold now.
fn watches_in_use() -> u32 {
    let me = nix::unistd::getuid().as_raw();
    let mut n = 0;
    for proc in std::fs::read_dir("/proc").unwrap().flatten() {
        let owner = std::fs::read_to_string(proc.path().join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
        if owner != Some(me) {
            continue;
        }
        for fd in std::fs::read_dir(proc.path().join("fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(info) = std::fs::read_to_string(fd.path()) {
                n += info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u32;
            }
        }
    }
    n
}

/// The user's limit of inotify watches is reached while the folder's 40 folders are watched:
/// status says so, and changes in the folders left unwatched still go up, found by the periodic
/// comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_watch_limit_changes_are_still_found() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    for d in 0..40 {
        write_file(&dir.path().join(format!("many/d{d}/f.txt")), b"before");
    }
    let f = Folder::start_limited(
        &p.url(),
        dir.path(),
        true,
        Some(Limit::MoreWatches(8)),
        Some(Duration::from_secs(2)),
        Hold::default(),
    )
    .await;
    f.until("status says the limit was reached", |e| {
        e.status
            .all()
            .iter()
            .any(|p| p.message.contains("limit of watched folders"))
    })
    .await;
    for d in 0..40 {
        write_file(
            &f.path(&format!("many/d{d}/f.txt")),
            format!("after {d}").as_bytes(),
        );
    }
    for d in 0..40 {
        eventually_on_platform(
            &p,
            &format!("many/d{d}/f.txt"),
            format!("after {d}").as_bytes(),
        )
        .await;
    }
    f.stop().await;
}

/// inotify's queue overflows (a 16-event queue, files made in bursts of 100 until it does): the
/// watcher says events were lost, the whole folder is compared, and every file is on the
/// platform. (Made in bursts until then: a watcher that reads faster than one burst writes, or
/// that watches a new folder only after it was filled, sees no overflow from one burst.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowed_event_queue_loses_no_file() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start_with(&p.url(), dir.path(), true, Some(16)).await;
    let stats = f.watch.as_ref().unwrap().stats.clone();
    let lost = || stats.lost_events.load(std::sync::atomic::Ordering::Relaxed) > 0;
    let mut bursts = 0;
    while !lost() && bursts < 200 {
        let root = f.root.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..100 {
                write_file(
                    &root.join(format!("burst/d{bursts}/f{i}.txt")),
                    format!("{bursts}/{i}").as_bytes(),
                );
            }
        })
        .await
        .unwrap();
        bursts += 1;
    }
    f.until("the watcher says events were lost", |_| lost())
        .await;
    let written = bursts * 100;
    assert!(
        eventually_slowly(Duration::from_secs(300), || async {
            platform_count(&p, "burst/").await == written
        })
        .await,
        "only {} of {written} files reached the platform",
        platform_count(&p, "burst/").await
    );
    eventually_on_platform(&p, "burst/d0/f42.txt", b"0/42").await;
    f.stop().await;
}

/// A `git clone` of 1,500 files into the folder: every file of the working tree is on the
/// platform with its content, nothing of `.git/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_clone_into_the_folder_goes_up_whole() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let source = tempfile::tempdir().unwrap();
    let src = source.path().join("theme");
    for d in 0..30 {
        for i in 0..50 {
            write_file(
                &src.join(format!("part{d}/file{i}.css")),
                format!("/* {d} {i} */").as_bytes(),
            );
        }
    }
    common::sh(&format!(
        "cd {} && git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm theme",
        src.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;
    common::sh(&format!(
        "git clone -q {} {}",
        src.display(),
        f.path("theme").display()
    ));
    assert!(
        eventually_slowly(Duration::from_secs(300), || async {
            platform_count(&p, "theme/").await == 1500
        })
        .await,
        "only {} of 1500 files reached the platform",
        platform_count(&p, "theme/").await
    );
    eventually_on_platform(&p, "theme/part29/file49.css", b"/* 29 49 */").await;
    let names = p.client().nodes().await.unwrap().nodes;
    assert!(!names.iter().any(|n| n.full_path().contains(".git")));
    f.stop().await;
}

/// The folder's own state deleted while it runs: status says so, with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_state_deleted_while_running_is_said_in_status() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;
    std::fs::remove_dir_all(f.path(".hyperclay")).unwrap();
    f.until("status says the state is gone", |e| {
        e.status.all().iter().any(|p| {
            p.message.contains("sync state, was deleted") && p.message.contains("--rebuild")
        })
    })
    .await;
    drop(f);
}

/// Changes made while nothing ran (`kill -9`, a reboot) are found at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_stopped_go_up_at_the_next_start() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;
    write_file(&f.path("a.html"), b"<p>a</p>");
    write_file(&f.path("b.txt"), b"b");
    eventually_on_platform(&p, "a.html", b"<p>a</p>").await;
    eventually_on_platform(&p, "b.txt", b"b").await;
    f.stop().await;

    write_file(&f_path(dir.path(), "a.html"), b"<p>a, edited offline</p>");
    std::fs::remove_file(f_path(dir.path(), "b.txt")).unwrap();
    write_file(&f_path(dir.path(), "c/new.txt"), b"new");
    let f = Folder::start(&p.url(), dir.path(), true).await;
    eventually_on_platform(&p, "a.html", b"<p>a, edited offline</p>").await;
    eventually_on_platform(&p, "c/new.txt", b"new").await;
    // The delete stayed local.
    assert!(platform_has(&p, "b.txt", b"b").await);
    f.stop().await;
}

fn f_path(dir: &Path, rel: &str) -> PathBuf {
    dir.canonicalize().unwrap().join(rel)
}

/// A burst of new files (a `tar x` into the folder) goes up a few pushes at a time, and their
/// new folder is created once: each push started its request at once before, 200 writes on the
/// platform at once here (3,000 in a `tar x` left the last unanswered for 15 s, taken for the
/// platform gone), and every push into the new folder created it, all but one then looking for
/// it in a whole listing. The platform is slowed (30 ms a write) so that writes overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_files_goes_up_a_few_at_a_time() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), false).await;
    p.running.set_write_delay(Duration::from_millis(30));
    const FILES: usize = 200;
    for i in 0..FILES {
        write_file(
            &f.path(&format!("burst/f{i}.txt")),
            format!("{i}").as_bytes(),
        );
    }
    let engine = f.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine
            .observe_tree(
                &hyperclay::cache::RelPath::parse("burst").unwrap(),
                hyperclay::sync::Look::Hash,
            )
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        eventually_slowly(Duration::from_secs(120), || async {
            platform_files(&p).await.len() >= FILES
        })
        .await,
        "the burst never went up: {} of {FILES}",
        platform_files(&p).await.len()
    );
    let most = p.running.most_writes_at_once();
    assert!(
        most <= hyperclay::sync::SENDS_AT_ONCE,
        "{most} writes on the platform at once"
    );
    let folders = common::platform_folders(&p.client()).await;
    assert_eq!(
        folders.into_iter().collect::<Vec<_>>(),
        vec!["burst".to_string()]
    );
    f.stop().await;
}

fn count(n: &std::sync::atomic::AtomicU64) -> u64 {
    n.load(std::sync::atomic::Ordering::Relaxed)
}

/// A program writing 500 files into the folder (paced, so that it runs for half a second or
/// more: without the hold the watcher looks at files while it writes) is a burst: none of its
/// files is looked at until it is over, but the few before it was told; a site written amid it
/// is looked at at once (its version kept in sites-versions while the rest are held); then every
/// file goes up. The hold here waits 2 s of quiet (not 150 ms), so that a writer paused by a busy
/// machine does not end its burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_looked_at_once_it_is_over() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let hold = Hold {
        quiet: Duration::from_secs(2),
        cap: Duration::from_secs(600),
        ..Hold::default()
    };
    let f = Folder::start_holding(&p.url(), dir.path(), hold).await;
    let stats = f.watch.as_ref().unwrap().stats.clone();
    let before = count(&stats.looked_at);
    const FILES: usize = 500;
    let root = f.root.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..FILES {
            write_file(
                &root.join(format!("burst/f{i}.txt")),
                format!("{i}").as_bytes(),
            );
            if i == 100 {
                write_file(&root.join("burst/amid.html"), b"<p>amid</p>");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .await
    .unwrap();
    // Looked at while it wrote: the folder, the files before the burst was told, the site.
    let looked = count(&stats.looked_at) - before;
    assert!(
        looked <= hyperclay::folder::BURST_PATHS as u64 + 2,
        "{looked} paths looked at while the burst went on"
    );
    let versions = f.path("sites-versions/burst/amid");
    f.until("the site's version is kept", |_| {
        std::fs::read_dir(&versions).is_ok_and(|d| d.count() > 0)
    })
    .await;
    assert_eq!(
        count(&stats.held),
        0,
        "the burst's files were looked at before the site"
    );
    assert!(
        eventually_slowly(Duration::from_secs(300), || async {
            platform_count(&p, "burst/").await == FILES + 1
        })
        .await,
        "only {} of {} files reached the platform",
        platform_count(&p, "burst/").await,
        FILES + 1
    );
    eventually_on_platform(&p, "burst/f499.txt", b"499").await;
    eventually_on_platform(&p, "burst/amid.html", b"<p>amid</p>").await;
    let held = count(&stats.held);
    assert!(held >= 400, "only {held} of {FILES} files were held");
    assert_eq!(count(&stats.held_to_the_cap), 0);
    f.stop().await;
}

/// After a burst is over, a single save is looked at at once: not held (the hold as it ships).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_a_burst_is_not_held() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let f = Folder::start(&p.url(), dir.path(), true).await;
    let stats = f.watch.as_ref().unwrap().stats.clone();
    let root = f.root.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..300 {
            write_file(
                &root.join(format!("tar/f{i}.txt")),
                format!("{i}").as_bytes(),
            );
        }
    })
    .await
    .unwrap();
    assert!(
        eventually_slowly(Duration::from_secs(300), || async {
            platform_count(&p, "tar/").await == 300
        })
        .await,
        "only {} of 300 files reached the platform",
        platform_count(&p, "tar/").await
    );
    let held = count(&stats.held);
    assert!(held > 0, "the burst was not held");
    for save in 0..3 {
        let content = format!("saved {save}");
        write_file(&f.path("notes.txt"), content.as_bytes());
        eventually_on_platform(&p, "notes.txt", content.as_bytes()).await;
        assert_eq!(count(&stats.held), held, "save {save} was held");
    }
    f.stop().await;
}

/// A burst that goes on (a program writing a file every 5 ms for as long as it takes) has its
/// files looked at while it runs, a batch each [`hyperclay::folder::HOLD_CAP`]: dozens of its
/// files are on the platform before it stops. The burst's quiet is made 30 s here, and the
/// periodic comparison an hour, so that only the cap can let its files go while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_that_goes_on_goes_up_while_it_runs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let p = TestPlatform::start(common::Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let hold = Hold {
        quiet: Duration::from_secs(30),
        ..Hold::default()
    };
    let hour = Some(Duration::from_secs(3600));
    let f = Folder::start_limited(&p.url(), dir.path(), true, None, hour, hold).await;
    let stats = f.watch.as_ref().unwrap().stats.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let root = f.root.clone();
    let stopped = stop.clone();
    // Writes until told to stop, or for 120 s: answers how many files, and whether told.
    let writer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut i = 0;
        while !stopped.load(Ordering::SeqCst) {
            if start.elapsed() > Duration::from_secs(120) {
                return (i, false);
            }
            write_file(
                &root.join(format!("long/f{i}.txt")),
                format!("{i}").as_bytes(),
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (i, true)
    });
    // More than the few looked at before the burst was told.
    let up_while_writing = eventually_slowly(Duration::from_secs(120), || async {
        writer.is_finished() || platform_count(&p, "long/").await >= 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (written, told) = writer.join().unwrap();
    assert!(
        up_while_writing && told,
        "the writer ran 120 s with {} of its files on the platform",
        platform_count(&p, "long/").await
    );
    assert!(count(&stats.held_to_the_cap) > 0);
    assert!(
        eventually_slowly(Duration::from_secs(300), || async {
            platform_count(&p, "long/").await == written
        })
        .await,
        "only {} of {written} files reached the platform",
        platform_count(&p, "long/").await
    );
    f.stop().await;
}
