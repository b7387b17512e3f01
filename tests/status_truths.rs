//! What status says about a file, driven in-process (as `tests/model.rs` drives the engine): a
//! conflict names the file, the side that lost and where its copy is kept, and the log names that
//! copy; "never delete across" shows what each side keeps apart; a problem leaves with the name
//! it was about; local-only names are not counted as staying local.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{node_at, platform_files, Mode, TestPlatform, KEY};
use hyperclay::cache::ROOT_INO;
use hyperclay::fs::MountFs;
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::remote::Credential;
use hyperclay::sync::status::ProblemKind;
use hyperclay::sync::{Boot, Engine, Running};

/// Every log line of this test binary (the tests tell theirs apart by file name).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap_or_else(|p| p.into_inner()).extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hyperclay=info")
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

fn log() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

struct Device {
    engine: Arc<Engine>,
    fs: Arc<MountFs>,
    running: Running,
}

impl Device {
    async fn start(url: &str, mirror_dir: &Path) -> Device {
        let running = Boot::new(mirror_dir, url, Credential::ApiKey(KEY.into()))
            .start()
            .await
            .unwrap();
        let engine = running.engine().clone();
        let fs = Arc::new(MountFs::new(engine.clone()));
        Device {
            engine,
            fs,
            running,
        }
    }

    async fn stop(self) {
        assert!(self.running.stop(Duration::from_secs(30)).await.drained);
    }

    async fn on_fs<T: Send + 'static>(&self, f: impl FnOnce(&MountFs) -> T + Send + 'static) -> T {
        let fs = self.fs.clone();
        tokio::task::spawn_blocking(move || f(&fs)).await.unwrap()
    }

    async fn ino_of(&self, rel: &str) -> Option<u64> {
        let rel = rel.to_string();
        self.on_fs(move |fs| fs.lookup(ROOT_INO, OsStr::new(&rel)).ok().map(|a| a.ino))
            .await
    }

    /// A whole-file save at the top of the mount: create or open with truncation, write, close.
    async fn save(&self, name: &str, bytes: &[u8]) {
        let existing = self.ino_of(name).await;
        let (name, bytes) = (name.to_string(), bytes.to_vec());
        self.on_fs(move |fs| {
            let fh = match existing {
                Some(ino) => fs.open_write(ino, true).unwrap().fh,
                None => fs.create(ROOT_INO, OsStr::new(&name), 0o644).unwrap().1.fh,
            };
            fs.write(fh, 0, &bytes).unwrap();
            fs.flush(fh, |_| None).unwrap();
            fs.release(fh).unwrap();
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) {
        let (from, to) = (from.to_string(), to.to_string());
        self.on_fs(move |fs| {
            fs.rename(ROOT_INO, OsStr::new(&from), ROOT_INO, OsStr::new(&to), 0)
                .unwrap()
        })
        .await
    }

    async fn unlink(&self, name: &str) {
        let name = name.to_string();
        self.on_fs(move |fs| fs.unlink(ROOT_INO, OsStr::new(&name)).unwrap())
            .await
    }

    async fn read(&self, name: &str) -> Option<Vec<u8>> {
        let ino = self.ino_of(name).await?;
        self.fs.fetch(ino).await.ok()?;
        self.on_fs(move |fs| {
            let fh = fs.open_read(ino).ok()?.fh;
            let bytes = fs.read(fh, 0, 1 << 20).ok();
            let _ = fs.release(fh);
            bytes
        })
        .await
    }

    /// Listed, nothing waiting to go up, no transfer running (three looks in a row).
    async fn settled(&self) {
        let mut calm = 0;
        for _ in 0..3000 {
            let quiet = self.engine.first_listing.is_listed()
                && self.engine.transfers_running() == 0
                && self.engine.pending_uploads().waiting == 0;
            calm = if quiet { calm + 1 } else { 0 };
            if calm >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never settled: {:?}", self.engine.pending_uploads());
    }

    /// Waits (30 s at most: a loaded machine) until `check` holds.
    async fn until(&self, what: &str, mut check: impl FnMut(&Engine) -> bool) {
        for _ in 0..1500 {
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

    async fn comes_down(&self, name: &str, want: &[u8]) {
        for _ in 0..1500 {
            if self.read(name).await.as_deref() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{name}: {:?} never came down",
            String::from_utf8_lossy(want)
        );
    }
}

/// The kept copy a conflict message names (`... kept in sites-versions/...`).
fn kept_path(message: &str) -> &str {
    let at = message
        .find("sites-versions/")
        .unwrap_or_else(|| panic!("the message names no kept copy: {message}"));
    &message[at..]
}

/// The platform's modification times may be whole seconds: the later edit must be later by
/// more than that, whatever the load.
const LATER: Duration = Duration::from_millis(1100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_the_platform_wins_says_where_the_local_copy_is_kept() {
    capture_log();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("clash.html", b"<p>v0</p>").await;
    d.settled().await;
    let node = node_at(&c, "clash.html").await.unwrap();
    // Offline, the device saves; later, the platform's copy is edited elsewhere.
    d.engine.set_sync(false).unwrap();
    d.save("clash.html", b"<p>mine</p>").await;
    tokio::time::sleep(LATER).await;
    c.put_content(node, NodeKind::Site, "<p>theirs</p>".into(), None)
        .await
        .unwrap();
    d.engine.set_sync(true).unwrap();
    d.comes_down("clash.html", b"<p>theirs</p>").await;
    d.settled().await;
    assert_eq!(
        platform_files(&c).await["clash.html"],
        b"<p>theirs</p>",
        "the later change stays on the platform"
    );

    // Status: one line for the file, naming the side that lost and where its copy is.
    let report = hyperclay::control::report(&d.engine, dir.path());
    assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
    let conflict = &report.conflicts[0];
    assert_eq!(conflict.kind, ProblemKind::Conflict);
    assert_eq!(conflict.path.as_deref(), Some("clash.html"));
    assert!(
        conflict.message.contains("the platform's later change won"),
        "{}",
        conflict.message
    );
    let kept = kept_path(&conflict.message);
    assert_eq!(
        std::fs::read(dir.path().join(kept)).unwrap(),
        b"<p>mine</p>",
        "the named copy holds the local change that lost"
    );
    assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::Conflict));
    // The log names the kept copy too.
    let log = log();
    assert!(
        log.lines()
            .any(|l| l.contains("conflict") && l.contains("clash.html") && l.contains(kept)),
        "the log names {kept}: {log}"
    );

    // Saved again: the user has seen it.
    d.save("clash.html", b"<p>merged</p>").await;
    d.settled().await;
    assert!(d.engine.status.conflicts().is_empty());
    assert_eq!(platform_files(&c).await["clash.html"], b"<p>merged</p>");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_the_device_wins_is_shown_after_its_push() {
    capture_log();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("won.html", b"<p>v0</p>").await;
    d.settled().await;
    let node = node_at(&c, "won.html").await.unwrap();
    d.engine.set_sync(false).unwrap();
    c.put_content(node, NodeKind::Site, "<p>theirs</p>".into(), None)
        .await
        .unwrap();
    tokio::time::sleep(LATER).await;
    d.save("won.html", b"<p>mine</p>").await;
    d.engine.set_sync(true).unwrap();
    for _ in 0..1500 {
        if platform_files(&c).await["won.html"] == b"<p>mine</p>" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.settled().await;
    assert_eq!(platform_files(&c).await["won.html"], b"<p>mine</p>");
    // The push that settled it did not clear it.
    let conflicts = d.engine.status.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path.as_deref(), Some("won.html"));
    assert!(
        conflicts[0].message.contains("your later change won")
            && conflicts[0].message.contains("versions on the platform"),
        "{}",
        conflicts[0].message
    );
    // Renamed: its problems leave with the old name.
    d.rename("won.html", "kept.html").await;
    d.settled().await;
    assert!(d.engine.status.conflicts().is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_name_fixed_by_a_rename_leaves_status() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("My Page.html", b"<p>page</p>").await;
    d.until("the refused name is in status", |e| {
        e.status
            .all()
            .iter()
            .any(|p| p.kind == ProblemKind::RefusedName)
    })
    .await;
    d.rename("My Page.html", "my-page.html").await;
    d.settled().await;
    assert_eq!(platform_files(&c).await["my-page.html"], b"<p>page</p>");
    assert_eq!(d.engine.status.all(), vec![], "nothing left to say");
    let report = hyperclay::control::report(&d.engine, dir.path());
    assert_eq!(report.problem, None);
    assert!(report.stays_local.is_empty(), "{:?}", report.stays_local);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_only_temp_name_is_not_counted_as_staying_local() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("tmpsettings.html", b"<p>temp</p>").await;
    d.save("real.html", b"<p>real</p>").await;
    d.settled().await;
    assert!(platform_files(&c).await.contains_key("real.html"));
    assert!(!platform_files(&c).await.contains_key("tmpsettings.html"));
    let report = hyperclay::control::report(&d.engine, dir.path());
    assert_eq!(report.waiting, 0);
    assert!(
        report.stays_local.is_empty(),
        "a local-only name is not a file held back: {:?}",
        report.stays_local
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_each_side_keeps_apart_is_in_status() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    for name in [
        "gone-here.txt",
        "gone-there.txt",
        "renamed.txt",
        "stays.txt",
    ] {
        d.save(name, name.as_bytes()).await;
    }
    d.settled().await;
    d.unlink("gone-here.txt").await;
    d.rename("renamed.txt", "new-name.txt").await;
    let there = node_at(&c, "gone-there.txt").await.unwrap();
    c.delete(there, false).await.unwrap();
    d.until("the platform's delete arrived", |e| {
        !e.kept_apart().deleted_there.is_empty()
    })
    .await;
    d.settled().await;
    let report = hyperclay::control::report(&d.engine, dir.path());
    assert_eq!(report.removed_here, vec!["gone-here.txt", "renamed.txt"]);
    assert_eq!(report.deleted_there, vec!["gone-there.txt"]);
    // Both are in `hyperclay status --json`.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["removed_here"][0], "gone-here.txt");
    assert_eq!(json["deleted_there"][0], "gone-there.txt");
    // And true: the platform still has what was removed here, the mirror what was deleted there.
    let platform = platform_files(&c).await;
    assert!(platform.contains_key("gone-here.txt") && platform.contains_key("renamed.txt"));
    assert_eq!(
        std::fs::read(dir.path().join("gone-there.txt")).unwrap(),
        b"gone-there.txt"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_new_name_made_on_both_sides_is_a_conflict_shown() {
    capture_log();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("first.html", b"<p>first</p>").await;
    d.settled().await;
    d.engine.set_sync(false).unwrap();
    d.save("twin.html", b"<p>mine</p>").await;
    tokio::time::sleep(LATER).await;
    c.create(
        NodeKind::Site,
        "twin.html",
        NodeId::ROOT,
        Some(b"<p>theirs</p>"),
    )
    .await
    .unwrap();
    d.engine.set_sync(true).unwrap();
    d.comes_down("twin.html", b"<p>theirs</p>").await;
    d.settled().await;
    let conflicts = d.engine.status.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let kept = kept_path(&conflicts[0].message);
    assert_eq!(
        std::fs::read(dir.path().join(kept)).unwrap(),
        b"<p>mine</p>"
    );
    d.stop().await;
}

/// A file made here under a name the platform then moves another file to: whichever way the
/// race goes, "mine" is nowhere lost and, if it lost the name, status says where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_rename_onto_a_new_local_file_keeps_it_and_says_so() {
    capture_log();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("old-name.html", b"<p>theirs</p>").await;
    d.settled().await;
    let node = node_at(&c, "old-name.html").await.unwrap();
    d.engine.set_sync(false).unwrap();
    d.save("taken.html", b"<p>mine</p>").await;
    c.rename(node, NodeKind::Site, "taken.html").await.unwrap();
    d.engine.set_sync(true).unwrap();
    d.settled().await;
    let platform = platform_files(&c).await;
    if platform.values().any(|v| v == b"<p>mine</p>") {
        // The local file went up (its create met the renamed node first): nothing lost here.
        return d.stop().await;
    }
    let conflicts = d.engine.status.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}; platform {platform:?}");
    assert_eq!(conflicts[0].path.as_deref(), Some("taken.html"));
    let kept = kept_path(&conflicts[0].message);
    assert_eq!(
        std::fs::read(dir.path().join(kept)).unwrap(),
        b"<p>mine</p>",
        "the named copy holds the local file that lost its name"
    );
    let log = log();
    assert!(
        log.lines()
            .any(|l| l.contains("conflict") && l.contains("taken.html") && l.contains(kept)),
        "the log names {kept}: {log}"
    );
    d.stop().await;
}
