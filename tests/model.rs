//! The sync core driven in-process: `Engine` and `MountFs` built over the in-process dev
//! platform and a real `Client`, called directly (no kernel, no child process), so a failing
//! sequence is deterministic and proptest can shrink it. The real-mount tests keep the kernel
//! contract; this one checks the engine against a reference model of what the mirror,
//! `sites-versions/` and the platform must hold:
//! - every acknowledged content exists somewhere (the mirror, `sites-versions/`, the platform's
//!   current content or its versions);
//! - once quiet, both sides hold the model's files, at the model's paths;
//! - a restart (the engine dropped and built again on the same mirror and index) changes none of
//!   that.
//!
//! Long run: `PROPTEST_CASES=500 cargo test --test model` (the fixed seed set below runs in the
//! test command).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{platform_files, Mode, TestPlatform, KEY};
use hyperclay::cache::ROOT_INO;
use hyperclay::fs::MountFs;
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::remote::{Client, Credential};
use hyperclay::sync::{Boot, Engine, Running, Settings};
use proptest::prelude::*;

/// One device: an engine and its file system over a mirror, following the platform.
struct Device {
    engine: Arc<Engine>,
    fs: Arc<MountFs>,
    /// The plain-folder front door: its root. Programs' file calls go to the disk there and the
    /// engine is told afterwards, as its watcher would tell it (deterministic: no watcher runs).
    folder: Option<std::path::PathBuf>,
    running: Running,
}

impl Device {
    /// A device on a new mirror that has saved `page.html` (`<p>one</p>`) and pushed it.
    async fn with_page(url: &str) -> (tempfile::TempDir, Device) {
        let dir = tempfile::tempdir().unwrap();
        let d = Device::start(url, dir.path()).await;
        d.settled().await;
        d.save("page.html", b"<p>one</p>").await.unwrap();
        d.quiet().await;
        (dir, d)
    }

    async fn start(url: &str, mirror_dir: &Path) -> Device {
        Device::start_with(url, mirror_dir, Settings::default()).await
    }

    /// The plain folder (`hyperclay mount DIR --folder`) over `dir`.
    async fn start_folder(url: &str, dir: &Path) -> Device {
        let settings = Settings {
            front_door: hyperclay::sync::FrontDoor::Folder,
            ..Settings::default()
        };
        Device::start_with(url, dir, settings).await
    }

    async fn start_with(url: &str, mirror_dir: &Path, settings: Settings) -> Device {
        let folder = settings.front_door == hyperclay::sync::FrontDoor::Folder;
        // The mount's boot; the folder's start compares the whole folder (no watcher runs).
        let running = Boot::new(mirror_dir, url, Credential::ApiKey(KEY.into()))
            .settings(settings)
            .start()
            .await
            .unwrap();
        let engine = running.engine().clone();
        let folder = folder.then(|| engine.mirror.root().to_path_buf());
        let fs = Arc::new(MountFs::new(engine.clone()));
        Device {
            engine,
            fs,
            folder,
            running,
        }
    }

    /// The plain folder: runs a program's file calls on the disk, then tells the engine about
    /// `rels`, as the watcher does once they are done.
    async fn in_folder(
        &self,
        rels: &[&str],
        calls: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), String> {
        let root = self.folder.clone().expect("a plain folder");
        let engine = self.engine.clone();
        let rels: Vec<String> = rels.iter().map(|r| r.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            calls(&root).map_err(|e| e.to_string())?;
            for rel in rels {
                let rel = hyperclay::cache::RelPath::parse(&rel).map_err(|e| e.to_string())?;
                engine
                    .observe(&rel, hyperclay::sync::Look::Hash)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .unwrap()
    }

    /// What a clean unmount does: open files saved, pushes drained, following stopped.
    async fn stop(self) {
        let fs = self.fs.clone();
        tokio::task::spawn_blocking(move || fs.save_all())
            .await
            .unwrap();
        assert!(self.running.stop(Duration::from_secs(30)).await.drained);
    }

    /// Runs a blocking file-system call off the runtime's threads, as the FUSE threads do.
    async fn on_fs<T: Send + 'static>(&self, f: impl FnOnce(&MountFs) -> T + Send + 'static) -> T {
        let fs = self.fs.clone();
        tokio::task::spawn_blocking(move || f(&fs)).await.unwrap()
    }

    async fn ino_of(&self, rel: &str) -> Option<u64> {
        if let Some(root) = &self.folder {
            // What a program sees is the disk: a file is there when it is on disk (the index
            // follows the disk, a moment later).
            if std::fs::symlink_metadata(root.join(rel)).is_err() {
                return None;
            }
            return self.engine.ino_of_path(rel);
        }
        let rel = rel.to_string();
        self.on_fs(move |fs| {
            let mut ino = ROOT_INO;
            for part in rel.split('/') {
                ino = fs.lookup(ino, OsStr::new(part)).ok()?.ino;
            }
            Some(ino)
        })
        .await
    }

    /// The parent folder's inode and the name.
    async fn place(&self, rel: &str) -> (u64, String) {
        match rel.rsplit_once('/') {
            Some((dir, name)) => (self.ino_of(dir).await.expect("the folder"), name.into()),
            None => (ROOT_INO, rel.into()),
        }
    }

    /// A whole-file save: create or open with truncation, write, close. Ok: acknowledged.
    async fn save(&self, rel: &str, bytes: &[u8]) -> Result<(), String> {
        if self.folder.is_some() {
            let (path, bytes) = (rel.to_string(), bytes.to_vec());
            return self
                .in_folder(&[rel], move |root| std::fs::write(root.join(path), bytes))
                .await;
        }
        let (parent, name) = self.place(rel).await;
        let existing = self.ino_of(rel).await;
        let bytes = bytes.to_vec();
        self.on_fs(move |fs| {
            let fh = match existing {
                Some(ino) => fs.open_write(ino, true).map_err(|e| e.to_string())?.fh,
                None => {
                    fs.create(parent, OsStr::new(&name), 0o644)
                        .map_err(|e| e.to_string())?
                        .1
                        .fh
                }
            };
            let wrote = fs.write(fh, 0, &bytes).map(|_| ());
            let closed = fs.flush(fh, |_| None);
            let released = fs.release(fh);
            wrote.and(closed).and(released).map_err(|e| e.to_string())
        })
        .await
    }

    /// An editor's save: a temp file written, then renamed over the target.
    async fn save_by_rename(&self, rel: &str, bytes: &[u8]) -> Result<(), String> {
        let (_, name) = self.place(rel).await;
        let temp = match rel.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/.{name}.swp"),
            None => format!(".{name}.swp"),
        };
        if self.folder.is_some() {
            let (to, bytes) = (rel.to_string(), bytes.to_vec());
            return self
                .in_folder(&[rel], move |root| {
                    std::fs::write(root.join(&temp), bytes)?;
                    std::fs::rename(root.join(&temp), root.join(to))
                })
                .await;
        }
        self.save(&temp, bytes).await?;
        self.rename(&temp, rel).await
    }

    /// Appends: `parts` written through as many handles opened with O_APPEND (each write goes to
    /// the end), then all closed. Ok: acknowledged.
    async fn append(&self, rel: &str, parts: Vec<Vec<u8>>) -> Result<(), String> {
        if self.folder.is_some() {
            let path = rel.to_string();
            return self
                .in_folder(&[rel], move |root| {
                    use std::io::Write;
                    let mut files = Vec::new();
                    for _ in &parts {
                        files.push(
                            std::fs::OpenOptions::new()
                                .append(true)
                                .open(root.join(&path))?,
                        );
                    }
                    for (f, part) in files.iter_mut().zip(&parts) {
                        f.write_all(part)?;
                    }
                    Ok(())
                })
                .await;
        }
        let ino = self.ino_of(rel).await.ok_or("no such file")?;
        self.on_fs(move |fs| {
            let mut fhs = Vec::new();
            for _ in &parts {
                let fh = fs.open_write(ino, false).map_err(|e| e.to_string())?.fh;
                fs.note_append(fh);
                fhs.push(fh);
            }
            let mut result = Ok(());
            for (fh, part) in fhs.iter().zip(&parts) {
                result = result.and(fs.write(*fh, 0, part).map(|_| ()));
            }
            for fh in fhs {
                result = result.and(fs.flush(fh, |_| None)).and(fs.release(fh));
            }
            result.map_err(|e| e.to_string())
        })
        .await
    }

    /// `truncate(path, len)`.
    async fn truncate(&self, rel: &str, len: u64) -> Result<(), String> {
        if self.folder.is_some() {
            let path = rel.to_string();
            return self
                .in_folder(&[rel], move |root| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(root.join(path))?
                        .set_len(len)
                })
                .await;
        }
        let ino = self.ino_of(rel).await.ok_or("no such file")?;
        self.on_fs(move |fs| {
            fs.setattr(ino, Some(len), None, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        if self.folder.is_some() {
            let (a, b) = (from.to_string(), to.to_string());
            return self
                .in_folder(&[from, to], move |root| {
                    std::fs::rename(root.join(a), root.join(b))
                })
                .await;
        }
        let (from_parent, from_name) = self.place(from).await;
        let (to_parent, to_name) = self.place(to).await;
        self.on_fs(move |fs| {
            fs.rename(
                from_parent,
                OsStr::new(&from_name),
                to_parent,
                OsStr::new(&to_name),
                0,
            )
            .map_err(|e| e.to_string())
        })
        .await
    }

    async fn mkdir(&self, rel: &str) -> Result<(), String> {
        if self.folder.is_some() {
            let path = rel.to_string();
            return self
                .in_folder(&[rel], move |root| std::fs::create_dir(root.join(path)))
                .await;
        }
        let (parent, name) = self.place(rel).await;
        self.on_fs(move |fs| {
            fs.mkdir(parent, OsStr::new(&name), 0o755)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// A save and an unlink of the same file at once: the file is opened for writing first,
    /// then its write and close race the unlink on two threads (issue 24's race). Both must
    /// succeed, as on a local disk, and the file ends deleted.
    async fn save_racing_unlink(&self, rel: &str, bytes: &[u8]) -> Result<(), String> {
        if self.folder.is_some() {
            let (path, bytes) = (rel.to_string(), bytes.to_vec());
            return self
                .in_folder(&[rel], move |root| {
                    use std::io::Write;
                    let target = root.join(path);
                    let mut f = std::fs::File::create(&target)?;
                    let unlinking = std::thread::spawn(move || std::fs::remove_file(target));
                    f.write_all(&bytes)?;
                    drop(f);
                    unlinking.join().expect("the unlink thread")
                })
                .await;
        }
        let ino = self.ino_of(rel).await.ok_or("no such file")?;
        let (parent, name) = self.place(rel).await;
        let fh = self
            .on_fs(move |fs| fs.open_write(ino, true).map(|o| o.fh))
            .await
            .map_err(|e| e.to_string())?;
        let bytes = bytes.to_vec();
        let saving = self.on_fs(move |fs| {
            let wrote = fs.write(fh, 0, &bytes).map(|_| ());
            let closed = fs.flush(fh, |_| None);
            let released = fs.release(fh);
            wrote.and(closed).and(released).map_err(|e| e.to_string())
        });
        let unlinking = self.on_fs(move |fs| {
            fs.unlink(parent, OsStr::new(&name))
                .map_err(|e| e.to_string())
        });
        let (saved, unlinked) = tokio::join!(saving, unlinking);
        saved.map_err(|e| format!("the save: {e}"))?;
        unlinked.map_err(|e| format!("the unlink: {e}"))
    }

    async fn unlink(&self, rel: &str) -> Result<(), String> {
        if self.folder.is_some() {
            let path = rel.to_string();
            return self
                .in_folder(&[rel], move |root| std::fs::remove_file(root.join(path)))
                .await;
        }
        let (parent, name) = self.place(rel).await;
        self.on_fs(move |fs| {
            fs.unlink(parent, OsStr::new(&name))
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn read(&self, rel: &str) -> Option<Vec<u8>> {
        if let Some(root) = &self.folder {
            // A file not fetched yet comes down first, as a reader of the mount waits for it.
            let ino = self.engine.ino_of_path(rel)?;
            let _ = self.engine.fetch(ino).await;
            return std::fs::read(root.join(rel)).ok();
        }
        let ino = self.ino_of(rel).await?;
        let fs = self.fs.clone();
        fs.fetch(ino).await.ok()?;
        self.on_fs(move |fs| {
            let fh = fs.open_read(ino).ok()?.fh;
            let bytes = fs.read(fh, 0, 64 * 1024 * 1024).ok();
            let _ = fs.release(fh);
            bytes
        })
        .await
    }

    /// Waits until the account was listed (a device just started has its folders), nothing is
    /// waiting to go up and no transfer runs.
    /// Waits until the device is online and has taken in every change the platform has made:
    /// a device that went offline looks for the platform on its own schedule (every second at
    /// first), and until it has caught up it edits a stale view (seed 4 of the long run: the
    /// other device saved at a name the platform had renamed a file to meanwhile, which it did
    /// not know yet, and its save became a conflict copy instead of the latest edit).
    async fn caught_up(&self, c: &Client) {
        for _ in 0..3000 {
            if self.engine.is_online() {
                let cursor = self.engine.index.cursor().unwrap_or(0);
                if c.changes(cursor, 1)
                    .await
                    .is_ok_and(|page| page.changes.is_empty())
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the device never caught up with the platform");
    }

    async fn settled(&self) {
        for _ in 0..3000 {
            if self.engine.first_listing.is_listed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3000 {
            self.quiet().await;
            if self.engine.pending_uploads().waiting == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "files still waiting to go up: {:?}",
            self.engine.pending_uploads()
        );
    }

    /// Waits (5 s at most) until the mount shows `want` at `rel`.
    async fn comes_down(&self, rel: &str, want: &[u8]) -> Result<(), String> {
        for _ in 0..250 {
            if self.read(rel).await.as_deref() == Some(want) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "{rel}: {:?} never came down (the mount has {:?})",
            String::from_utf8_lossy(want),
            self.read(rel)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        ))
    }

    /// Waits (5 s at most) until the file at `rel` is detached from its platform node.
    async fn detaches(&self, rel: &str) -> Result<(), String> {
        for _ in 0..250 {
            let ino = self.ino_of(rel).await.ok_or("the file is gone")?;
            if self
                .engine
                .index
                .get(ino)
                .is_some_and(|e| e.node_id.is_none())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("{rel}: never detached from its deleted node"))
    }

    /// Waits until no push or fetch runs, three times in a row 20 ms apart.
    async fn quiet(&self) {
        let mut calm = 0;
        for _ in 0..3000 {
            if self.engine.transfers_running() == 0 {
                calm += 1;
                if calm >= 3 {
                    return;
                }
            } else {
                calm = 0;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("transfers never ended");
    }
}

/// The engine's log in the test's output, at `RUST_LOG` (off unless set).
fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
}

/// The log of the case running now, when `MODEL_LOG=FILE` is set: each random sequence starts
/// the file afresh, so with `PROPTEST_MAX_SHRINK_ITERS=0` the file holds the failing case's log
/// (a long run's failures are timing-dependent, and a replay often passes).
static CASE_LOG: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

struct CaseLog;

impl std::io::Write for CaseLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match CASE_LOG.lock().unwrap().as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_case_to_file() {
    let Some(path) = std::env::var_os("MODEL_LOG") else {
        return;
    };
    *CASE_LOG.lock().unwrap() = Some(std::fs::File::create(path).unwrap());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(false)
        .with_writer(|| CaseLog)
        .try_init();
}

/// Every file under `dir` (not the program's own folder), relative path -> content.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel == ".hyperclay" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.insert(rel, b);
            }
        }
    }
    out
}

/// Every content the platform holds or held (current and versions, every node).
async fn platform_contents(c: &Client) -> BTreeSet<Vec<u8>> {
    let mut all: BTreeSet<Vec<u8>> = platform_files(c).await.into_values().collect();
    for node in c.nodes().await.unwrap().nodes {
        if !node.kind.is_file() {
            continue;
        }
        for v in c.versions(node.id).await.unwrap_or_default() {
            if let Ok((_, bytes)) = c.version(node.id, v.version_id).await {
                all.insert(bytes);
            }
        }
    }
    all
}

/// In the plain folder, a site saved again after the watcher's look and read by its push before
/// the next look: the push records it, so the look finds nothing new. When that push fails and
/// the site is saved over next, the content it read must still exist (kept in `sites-versions/`
/// as every seen save of a site is). Before, it existed nowhere (the plain folder's long model
/// run, seed 1: "the acknowledged content ... exists nowhere").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_read_by_a_failing_push_before_its_look_is_kept() {
    log_to_test_output();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start_folder(&p.url(), dir.path()).await;
    d.settled().await;
    d.save("page.html", b"<p>one</p>").await.unwrap();
    d.quiet().await;
    p.running.set_fail_writes(true);
    d.save("page.html", b"<p>two</p>").await.unwrap();
    // Saved again; the watcher has not looked yet, and the push's retry reads it first.
    std::fs::write(dir.path().join("page.html"), b"<p>three</p>").unwrap();
    let ino = d.engine.ino_of_path("page.html").unwrap();
    let three = hyperclay::protocol::checksum(b"<p>three</p>");
    for _ in 0..500 {
        if d.engine.index.get(ino).and_then(|e| e.local) == Some(three.clone()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        d.engine.index.get(ino).and_then(|e| e.local),
        Some(three),
        "the push's retry read the disk"
    );
    d.save("page.html", b"<p>four</p>").await.unwrap();
    let kept: BTreeSet<Vec<u8>> = files_under(dir.path()).into_values().collect();
    assert!(
        kept.contains(b"<p>three</p>".as_slice()),
        "the content the failing push read is kept: {:?}",
        kept.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
    );
    p.running.set_fail_writes(false);
    d.quiet().await;
    assert_eq!(
        platform_files(&c).await.get("page.html").map(Vec::as_slice),
        Some(b"<p>four</p>".as_slice())
    );
    d.stop().await;
}

/// A file changed here and not on the platform yet, whose node the platform deletes meanwhile,
/// goes up again as a new file (an edit wins over a delete): an edit made while sync was off,
/// and a file made again at a name deleted here, which takes the deleted node back before the
/// delete arrives. Before, both were taken for copies kept and unedited since the delete, and
/// never went up (the plain folder's long model run, seed 2). Both front doors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_here_wins_over_a_platform_delete_that_arrives_after_it() {
    log_to_test_output();
    for folder in [false, true] {
        let p = TestPlatform::start(Mode::Full).await;
        let c = p.client();
        let dir = tempfile::tempdir().unwrap();
        let d = match folder {
            true => Device::start_folder(&p.url(), dir.path()).await,
            false => Device::start(&p.url(), dir.path()).await,
        };
        d.settled().await;
        d.save("edited.html", b"<p>one</p>").await.unwrap();
        d.save("again.html", b"<p>one</p>").await.unwrap();
        d.quiet().await;
        d.engine.set_sync(false).unwrap();
        d.save("edited.html", b"<p>edited</p>").await.unwrap();
        d.unlink("again.html").await.unwrap();
        d.save("again.html", b"<p>made again</p>").await.unwrap();
        for path in ["edited.html", "again.html"] {
            let id = common::node_at(&c, path).await.unwrap();
            c.delete(id, false).await.unwrap();
        }
        d.engine.set_sync(true).unwrap();
        let mut platform = BTreeMap::new();
        for _ in 0..250 {
            platform = platform_files(&c).await;
            if platform.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            platform.get("edited.html").map(Vec::as_slice),
            Some(b"<p>edited</p>".as_slice()),
            "folder: {folder}"
        );
        assert_eq!(
            platform.get("again.html").map(Vec::as_slice),
            Some(b"<p>made again</p>".as_slice()),
            "folder: {folder}"
        );
        d.stop().await;
    }
}

/// Another device saves bytes this one sent earlier, after this one took a different copy from
/// the platform: that is a change to bring down, not this mount's own push coming back. Before,
/// it was taken for the echo, the copy here counted as a newer local change, and went up over
/// the other device's save (the plain folder's long model run, seed 2: the other device ended
/// with an older copy than the platform).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_here_earlier_and_saved_again_elsewhere_come_down() {
    log_to_test_output();
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let (_dir, d) = Device::with_page(&p.url()).await;
    let id = common::node_at(&c, "page.html").await.unwrap();
    c.put_content(id, NodeKind::Site, b"<p>two</p>".to_vec().into(), None)
        .await
        .unwrap();
    d.comes_down("page.html", b"<p>two</p>").await.unwrap();
    // Someone else saves what this device had sent first.
    c.put_content(id, NodeKind::Site, b"<p>one</p>".to_vec().into(), None)
        .await
        .unwrap();
    d.comes_down("page.html", b"<p>one</p>").await.unwrap();
    d.quiet().await;
    assert_eq!(
        platform_files(&c).await.get("page.html").map(Vec::as_slice),
        Some(b"<p>one</p>".as_slice()),
        "the platform keeps the other device's save"
    );
    d.stop().await;
}

/// A device that only reads, after the platform restarted several times within a minute: a
/// platform edit made after the last restart comes down within a few seconds. Before, a device
/// that makes no request waited out the event stream's reconnect wait, which doubles at each
/// restart (only a connection that lasted 30 s resets it): 6-10 s after four (the model's long
/// run, seed 2: "never came down" on the other device). Timing-dependent: it failed in 1 of 5
/// runs before, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_restarted_often_still_brings_edits_down_soon() {
    log_to_test_output();
    let mut p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let (_dir, d) = Device::with_page(&p.url()).await;
    let id = common::node_at(&c, "page.html").await.unwrap();
    // Each restart drops a stream that connected; the stream is back before the next one (its
    // waits were about 1, 2 and 4 s before; 1 s now).
    for up_for in [1600, 2800, 5200] {
        p.go_down().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.come_back().await;
        tokio::time::sleep(Duration::from_millis(up_for)).await;
    }
    p.go_down().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.come_back().await;
    c.put_content(id, NodeKind::Site, b"<p>two</p>".to_vec().into(), None)
        .await
        .unwrap();
    d.comes_down("page.html", b"<p>two</p>").await.unwrap();
    d.stop().await;
}

/// A new folder renamed while its files are first going up (a slow link): every file ends in
/// the renamed folder, in the mount and on the platform, and stays there after a restart.
/// (2-3 of 5 were moved back into the old, hidden folder before: `UNIQUE constraint failed:
/// entries.node_id`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_renamed_during_its_first_pushes_keeps_every_file() {
    log_to_test_output();
    let p = TestPlatform::start(Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.mkdir("d").await.unwrap();
    d.quiet().await;
    // The files' first pushes are on their way (slowly) when the folder is renamed.
    p.running.set_write_delay(Duration::from_millis(1500));
    let body = vec![b'x'; 400 * 1024];
    for i in 0..5 {
        d.save(&format!("d/f{i}.bin"), &body).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.rename("d", "d-moved").await.unwrap();
    d.quiet().await;
    p.running.set_write_delay(Duration::ZERO);
    d.quiet().await;
    let check = |d: &Device| {
        let d_ino = d.engine.index.lookup(ROOT_INO, "d-moved").map(|e| e.ino);
        (0..5)
            .filter(|i| {
                d_ino.is_some_and(|ino| d.engine.index.lookup(ino, &format!("f{i}.bin")).is_some())
            })
            .count()
    };
    assert_eq!(check(&d), 5, "every file in the renamed folder");
    let c = p.client();
    let on_platform = platform_files(&c).await;
    for i in 0..5 {
        assert_eq!(
            on_platform.get(&format!("d-moved/f{i}.bin")).map(Vec::len),
            Some(body.len()),
            "d-moved/f{i}.bin on the platform: {:?}",
            on_platform.keys().collect::<Vec<_>>()
        );
    }
    d.stop().await;
    let d = Device::start(&p.url(), dir.path()).await;
    d.quiet().await;
    assert_eq!(check(&d), 5, "and after a restart");
    d.stop().await;
}

/// A new file renamed out of its folder while its create is on the way: the node the create
/// made stays on the platform under the old name (rename creates), hidden here, and the folder
/// is empty. The stream's echo of that node used to land between the create's answer and its
/// settle, and came back as a file in the folder (the exerciser's `rmdir y` refused, seed 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_away_during_its_create_does_not_come_back() {
    log_to_test_output();
    let p = TestPlatform::start(Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    // Every create's answer waits 800 ms before it is settled.
    let settings = Settings {
        settle_delay: Duration::from_millis(800),
        ..Settings::default()
    };
    let d = Device::start_with(&p.url(), dir.path(), settings).await;
    d.mkdir("y").await.unwrap();
    d.settled().await;
    // The create is slow; its echo comes 300 ms after the platform stored the node, and the
    // answer waits 800 ms before it is settled: the echo lands in between.
    p.running.set_write_delay(Duration::from_millis(600));
    p.running.set_stream_delay(Duration::from_millis(300));
    d.save("y/g.bin", b"first").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.rename("y/g.bin", "b.txt").await.unwrap();
    p.running.set_write_delay(Duration::ZERO);
    d.settled().await;
    p.running.set_stream_delay(Duration::ZERO);
    assert_eq!(
        d.ino_of("y/g.bin").await,
        None,
        "the renamed file does not come back"
    );
    let y = d.ino_of("y").await.unwrap();
    d.on_fs(move |fs| fs.rmdir(ROOT_INO, OsStr::new("y")))
        .await
        .expect("the folder is empty");
    assert!(d.engine.index.get(y).is_none_or(|e| e.tombstone));
    let platform = platform_files(&p.client()).await;
    assert_eq!(
        platform.get("b.txt").map(Vec::as_slice),
        Some(&b"first"[..])
    );
    d.stop().await;
}

/// An editor's saves (a temp file renamed over the original, as `sed -i` and vim do) keep what
/// each replaces, exactly like a plain save, also when nothing reached the platform yet: three
/// offline `sed -i` saves of a site left v1 and v2 nowhere before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_by_rename_while_offline_keep_every_replaced_content() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    // A site (whose every saved version is recorded anyway) and an upload (kept only because
    // the rename backs up what it replaces).
    for name in ["post.html", "notes.txt"] {
        d.save(name, format!("{name} v0").as_bytes()).await.unwrap();
    }
    d.settled().await;
    d.engine.set_sync(false).unwrap();
    for name in ["post.html", "notes.txt"] {
        for v in 1..=3 {
            let content = format!("{name} v{v}");
            d.save_by_rename(name, content.as_bytes()).await.unwrap();
        }
    }
    let kept: BTreeSet<Vec<u8>> = files_under(dir.path()).into_values().collect();
    for name in ["post.html", "notes.txt"] {
        for v in 1..=2 {
            let content = format!("{name} v{v}");
            assert!(
                kept.contains(content.as_bytes()),
                "{content:?} is kept in the mirror while offline"
            );
        }
    }
    d.engine.set_sync(true).unwrap();
    d.settled().await;
    let platform = platform_files(&c).await;
    let mut somewhere: BTreeSet<Vec<u8>> = files_under(dir.path()).into_values().collect();
    somewhere.extend(platform_contents(&c).await);
    for name in ["post.html", "notes.txt"] {
        assert_eq!(
            platform.get(name).map(Vec::as_slice),
            Some(format!("{name} v3").as_bytes()),
            "the last save goes up"
        );
        for v in 0..=3 {
            let content = format!("{name} v{v}");
            assert!(
                somewhere.contains(content.as_bytes()),
                "{content:?} exists somewhere"
            );
        }
    }
    d.stop().await;
}

/// What a sequence step does.
#[derive(Debug, Clone)]
enum Step {
    /// A whole-file save of file `f` (0..FILES) with a fresh content.
    Save {
        f: usize,
    },
    /// The same, by a temp file renamed over it.
    SaveByRename {
        f: usize,
    },
    /// File `f` renamed to file `g` (over it, if it exists).
    Rename {
        f: usize,
        g: usize,
    },
    Unlink {
        f: usize,
    },
    /// File `f` saved and unlinked at once (two threads).
    SaveRacingUnlink {
        f: usize,
    },
    /// Two more lines appended to file `f` through two O_APPEND handles.
    Append {
        f: usize,
    },
    /// File `f` cut to half its length.
    Truncate {
        f: usize,
    },
    /// The platform's copy of file `f` changed (the browser), if the platform has it.
    PlatformEdit {
        f: usize,
    },
    /// The platform deletes file `f` (through the API), if it has it: the mount keeps its copy,
    /// detached, which goes up again only once it is edited here.
    PlatformDelete {
        f: usize,
    },
    /// The platform renames (or moves, across folders) file `f` to `g`'s name, through the
    /// API, when it has `f`, `g` is free everywhere and both are of one kind: the mount follows.
    PlatformRename {
        f: usize,
        g: usize,
    },
    /// A second device (its own engine and mirror, on the same account) saves file `f`.
    OtherDevice {
        f: usize,
    },
    /// Sync turned off (offline): what follows stays local until it is turned on again.
    SyncOff,
    /// The platform answers every content write with a 500 for the next three steps, or until a
    /// step waits (pushes retry, and succeed).
    FaultyWrites,
    /// The platform goes away (connections refused) until a step needs it: what is saved
    /// meanwhile goes up when the mount finds it back.
    PlatformDown,
    /// The engine dropped and built again on the same mirror and index.
    Restart,
    /// Wait until every transfer is over.
    Quiet,
}

const FILES: usize = 5;

fn file_name(f: usize) -> String {
    match f % 3 {
        0 => format!("site{f}.html"),
        1 => format!("blog/post{f}.html"),
        _ => format!("img/up{f}.png"),
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..FILES).prop_map(|f| Step::Save { f }),
        2 => (0..FILES).prop_map(|f| Step::SaveByRename { f }),
        1 => (0..FILES, 0..FILES).prop_map(|(f, g)| Step::Rename { f, g }),
        1 => (0..FILES).prop_map(|f| Step::Unlink { f }),
        1 => (0..FILES).prop_map(|f| Step::SaveRacingUnlink { f }),
        1 => (0..FILES).prop_map(|f| Step::Append { f }),
        1 => (0..FILES).prop_map(|f| Step::Truncate { f }),
        2 => (0..FILES).prop_map(|f| Step::PlatformEdit { f }),
        1 => (0..FILES).prop_map(|f| Step::OtherDevice { f }),
        1 => (0..FILES).prop_map(|f| Step::PlatformDelete { f }),
        1 => (0..FILES, 0..FILES).prop_map(|(f, g)| Step::PlatformRename { f, g }),
        1 => Just(Step::SyncOff),
        1 => Just(Step::FaultyWrites),
        1 => Just(Step::PlatformDown),
        1 => Just(Step::Restart),
        1 => Just(Step::Quiet),
    ]
}

/// The run's conditions that later steps depend on.
#[derive(Default)]
struct Conditions {
    sync_off: bool,
    platform_down: bool,
    /// Steps left until the platform's writes stop failing.
    faulty_for: usize,
}

impl Conditions {
    /// Back to normal (sync on, writes succeeding), then every change has gone up: what a step
    /// that makes a later change elsewhere needs first.
    async fn back_to_normal(&mut self, p: &mut TestPlatform, d: &Device) {
        self.platform_up(p).await;
        self.faulty_for = 0;
        p.running.set_fail_writes(false);
        if self.sync_off {
            self.sync_off = false;
            d.engine.set_sync(true).unwrap();
        }
        d.caught_up(&p.client()).await;
        d.settled().await;
    }

    async fn platform_up(&mut self, p: &mut TestPlatform) {
        if self.platform_down {
            self.platform_down = false;
            p.come_back().await;
        }
    }
}

/// Runs `steps` against a device and checks the model; Err names what broke.
async fn run(steps: Vec<Step>) -> Result<(), String> {
    run_at(steps, false).await
}

/// [`run`] with the device under test a plain folder (`folder`) or the mount; the other device
/// is a mount either way.
async fn run_at(steps: Vec<Step>, folder: bool) -> Result<(), String> {
    log_case_to_file();
    let mut p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let start = |url: String, dir: std::path::PathBuf| async move {
        match folder {
            true => Device::start_folder(&url, &dir).await,
            false => Device::start(&url, &dir).await,
        }
    };
    let mut d = Some(start(p.url(), dir.path().to_path_buf()).await);
    // The second device, started at its first step.
    let mut other: Option<Device> = None;
    let mut cond = Conditions::default();
    // The model: the files the mount must show, and every content that was acknowledged.
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    // Files the platform deleted and the mount kept, not edited since: the platform must not
    // have them back.
    let mut detached: BTreeSet<String> = BTreeSet::new();
    d.as_ref().unwrap().mkdir("blog").await?;
    d.as_ref().unwrap().mkdir("img").await?;
    // The plain folder sees a save after it happened: an upload's content saved over before its
    // push read it existed nowhere else, as on a plain disk (docs/semantics.md, "The plain
    // folder"); a site's every seen content is kept in `sites-versions/`. So in a folder, an
    // upload's earlier contents are not required once a later local change replaces them.
    let supersede = |acknowledged: &mut Vec<(String, Vec<u8>)>, path: &str| {
        if folder && NodeKind::of_file_name(path) != NodeKind::Site {
            acknowledged.retain(|(p, _)| p != path);
        }
    };
    for (n, s) in steps.iter().enumerate() {
        if cond.faulty_for > 0 {
            cond.faulty_for -= 1;
            if cond.faulty_for == 0 {
                p.running.set_fail_writes(false);
            }
        }
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("{:?} step {n}: {s:?}", std::time::Instant::now());
        }
        tracing::info!("model step {n}: {s:?}");
        let device = d.as_ref().unwrap();
        let content = format!("<p>step {n}: {s:?}</p>").into_bytes();
        let failed = |e: String| format!("step {n} {s:?}: {e}");
        match s {
            Step::Save { f } | Step::SaveByRename { f } => {
                let path = file_name(*f);
                let saved = match s {
                    Step::Save { .. } => device.save(&path, &content).await,
                    _ => device.save_by_rename(&path, &content).await,
                };
                saved.map_err(failed)?;
                detached.remove(&path);
                model.insert(path.clone(), content.clone());
                supersede(&mut acknowledged, &path);
                acknowledged.push((path, content));
            }
            Step::Append { f } if model.contains_key(&file_name(*f)) => {
                let path = file_name(*f);
                let parts = vec![format!("+a{n}").into_bytes(), format!("+b{n}").into_bytes()];
                device.append(&path, parts.clone()).await.map_err(failed)?;
                detached.remove(&path);
                let now = model.get_mut(&path).unwrap();
                now.extend(parts.concat());
                supersede(&mut acknowledged, &path);
                acknowledged.push((path, now.clone()));
            }
            Step::Truncate { f } if model.get(&file_name(*f)).is_some_and(|b| b.len() > 1) => {
                let path = file_name(*f);
                let now = model.get_mut(&path).unwrap();
                now.truncate(now.len() / 2);
                device
                    .truncate(&path, now.len() as u64)
                    .await
                    .map_err(failed)?;
                detached.remove(&path);
                supersede(&mut acknowledged, &path);
                acknowledged.push((path, now.clone()));
            }
            Step::Rename { f, g } if f != g && model.contains_key(&file_name(*f)) => {
                let (from, to) = (file_name(*f), file_name(*g));
                device.rename(&from, &to).await.map_err(failed)?;
                // Rename creates: the new name goes up, whatever the old one was.
                detached.remove(&from);
                detached.remove(&to);
                supersede(&mut acknowledged, &to);
                let moved = model.remove(&from).unwrap();
                model.insert(to, moved);
            }
            Step::Unlink { f } if model.contains_key(&file_name(*f)) => {
                device.unlink(&file_name(*f)).await.map_err(failed)?;
                detached.remove(&file_name(*f));
                // Deleted by the user: its current content may be gone (it stays on the platform
                // if it got there); what it replaced before must still exist.
                let gone = model.remove(&file_name(*f));
                acknowledged.retain(|(_, c)| Some(c) != gone.as_ref());
            }
            Step::SaveRacingUnlink { f } if model.contains_key(&file_name(*f)) => {
                let path = file_name(*f);
                device
                    .save_racing_unlink(&path, &content)
                    .await
                    .map_err(failed)?;
                detached.remove(&path);
                // As an unlink: the racing content went with the file (or up, if its close came
                // first), and so may the content it replaced.
                let gone = model.remove(&path);
                acknowledged.retain(|(_, c)| Some(c) != gone.as_ref());
            }
            Step::PlatformEdit { f } => {
                // Everything before has gone up: this edit is the latest change, and wins.
                cond.back_to_normal(&mut p, device).await;
                let path = file_name(*f);
                if let Some(id) = common::node_at(&c, &path).await {
                    let kind = NodeKind::of_file_name(&path);
                    c.put_content(id, kind, content.clone().into(), None)
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                    acknowledged.push((path.clone(), content.clone()));
                    // It comes down, also over a file deleted or renamed away here (it comes
                    // back: the platform changed it since).
                    device.comes_down(&path, &content).await.map_err(failed)?;
                    model.insert(path, content.clone());
                }
            }
            Step::OtherDevice { f } => {
                // Everything before has gone up and reached the other device: its save is the
                // latest change, and wins everywhere.
                cond.back_to_normal(&mut p, device).await;
                if other.is_none() {
                    other = Some(Device::start(&p.url(), other_dir.path()).await);
                }
                let o = other.as_ref().unwrap();
                o.caught_up(&p.client()).await;
                o.settled().await;
                let path = file_name(*f);
                o.save(&path, &content).await.map_err(failed)?;
                detached.remove(&path);
                acknowledged.push((path.clone(), content.clone()));
                o.settled().await;
                device.comes_down(&path, &content).await.map_err(failed)?;
                model.insert(path, content.clone());
            }
            Step::PlatformDelete { f } => {
                cond.back_to_normal(&mut p, device).await;
                let path = file_name(*f);
                if let Some(id) = common::node_at(&c, &path).await {
                    c.delete(id, false)
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                    if model.contains_key(&path) {
                        device.detaches(&path).await.map_err(failed)?;
                        detached.insert(path);
                    }
                }
            }
            Step::PlatformRename { f, g }
                if f != g
                    && model.contains_key(&file_name(*f))
                    && !model.contains_key(&file_name(*g))
                    && !detached.contains(&file_name(*g))
                    && NodeKind::of_file_name(&file_name(*f))
                        == NodeKind::of_file_name(&file_name(*g)) =>
            {
                cond.back_to_normal(&mut p, device).await;
                let (from, to) = (file_name(*f), file_name(*g));
                let kind = NodeKind::of_file_name(&from);
                let (Some(id), None) = (
                    common::node_at(&c, &from).await,
                    common::node_at(&c, &to).await,
                ) else {
                    continue;
                };
                let folder =
                    |path: &str| path.rsplit_once('/').map_or("", |(dir, _)| dir).to_string();
                let to_name = to.rsplit('/').next().unwrap().to_string();
                let renamed = if folder(&from) == folder(&to) {
                    c.rename(id, kind, &to_name).await.map(|_| ())
                } else {
                    let parent = match folder(&to).as_str() {
                        "" => NodeId::ROOT,
                        dir => common::node_at(&c, dir).await.expect("the folder"),
                    };
                    c.move_node(id, kind, parent, Some(&to_name))
                        .await
                        .map(|_| ())
                };
                renamed.map_err(|e| failed(e.to_string()))?;
                let content = model.remove(&from).unwrap();
                device.comes_down(&to, &content).await.map_err(failed)?;
                if device.ino_of(&from).await.is_some() {
                    return Err(failed(format!("{from} is still in the mount")));
                }
                model.insert(to, content);
            }
            Step::SyncOff if !cond.sync_off => {
                device
                    .engine
                    .set_sync(false)
                    .map_err(|e| failed(e.to_string()))?;
                cond.sync_off = true;
            }
            Step::FaultyWrites => {
                p.running.set_fail_writes(true);
                cond.faulty_for = 3;
            }
            Step::PlatformDown if !cond.platform_down => {
                p.go_down().await;
                cond.platform_down = true;
            }
            Step::Restart => {
                // Faults end first: a stop waits for the pushes under way.
                cond.platform_up(&mut p).await;
                cond.faulty_for = 0;
                p.running.set_fail_writes(false);
                d.take().unwrap().stop().await;
                d = Some(start(p.url(), dir.path().to_path_buf()).await);
            }
            Step::Quiet => {
                // A fault lasts less than the pushes' retry schedule (15 s): a step that waits
                // ends it first, so every push succeeds on a retry.
                cond.platform_up(&mut p).await;
                cond.faulty_for = 0;
                p.running.set_fail_writes(false);
                device.quiet().await
            }
            _ => {}
        }
    }
    let device = d.as_ref().unwrap();
    cond.back_to_normal(&mut p, device).await;
    // Both sides hold the model's files, and so does the other device.
    for (path, want) in &model {
        let local = device.read(path).await;
        if local.as_deref() != Some(want.as_slice()) {
            return Err(format!(
                "{path}: the mount has {:?}, the model {:?}",
                local.map(|b| String::from_utf8_lossy(&b).into_owned()),
                String::from_utf8_lossy(want)
            ));
        }
    }
    let platform = platform_files(&c).await;
    for path in &detached {
        if platform.contains_key(path) {
            return Err(format!(
                "{path}: deleted on the platform and not edited since, it went up again"
            ));
        }
    }
    for (path, want) in model.iter().filter(|(p, _)| !detached.contains(*p)) {
        if platform.get(path) != Some(want) {
            // What the engine thinks of the file, for the one reading the failure.
            let entry = device
                .engine
                .ino_of_path(path)
                .and_then(|ino| device.engine.index.get(ino))
                .map(|e| format!("{:?} {e:?}", e.state()));
            return Err(format!(
                "{path}: the platform has {:?}, the model {:?} (the engine's entry: {entry:?}; \
                 waiting: {:?})",
                platform
                    .get(path)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                String::from_utf8_lossy(want),
                device.engine.pending_uploads()
            ));
        }
    }
    if let Some(o) = &other {
        for (path, want) in model.iter().filter(|(p, _)| !detached.contains(*p)) {
            o.comes_down(path, want)
                .await
                .map_err(|e| format!("the other device: {e}"))?;
        }
    }
    // Every acknowledged content exists somewhere.
    let mut somewhere: BTreeSet<Vec<u8>> = files_under(dir.path()).into_values().collect();
    somewhere.extend(files_under(other_dir.path()).into_values());
    somewhere.extend(platform_contents(&c).await);
    for (path, content) in &acknowledged {
        if !somewhere.contains(content) {
            return Err(format!(
                "{path}: the acknowledged content {:?} exists nowhere",
                String::from_utf8_lossy(content)
            ));
        }
    }
    d.take().unwrap().stop().await;
    if let Some(o) = other {
        o.stop().await;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    // A fixed seed set in the test command (deterministic); PROPTEST_CASES raises the count.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(40),
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261201),
        ),
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_match_the_model(steps in proptest::collection::vec(step(), 1..80)) {
        let outcome = runtime().block_on(run(steps));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

proptest! {
    // Half the mount's fixed set by default (the test command's time); PROPTEST_CASES raises it.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20),
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261207),
        ),
        .. ProptestConfig::default()
    })]

    /// The same model, the device under test a plain folder: programs' file calls on the disk,
    /// the engine told afterwards (`sync/observe.rs`).
    #[test]
    fn random_sequences_in_a_plain_folder_match_the_model(steps in proptest::collection::vec(step(), 1..80)) {
        let outcome = runtime().block_on(run_at(steps, true));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// Two devices edit the same site while both are offline; the one that edited first comes back
/// first. The later edit wins: each write carries its edit time (Part 2 `editedAt`), so the
/// second device compares against the first one's edit time, not its later push time. (The
/// device that reconnected first won 6 of 18 trials before.) The loser is kept as a version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_offline_the_later_edit_wins() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(
        hyperclay::protocol::NodeKind::Site,
        "post.html",
        NodeId::ROOT,
        Some(b"<p>v0</p>"),
    )
    .await
    .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Device::start(&p.url(), dir_a.path()).await;
    let b = Device::start(&p.url(), dir_b.path()).await;
    for d in [&a, &b] {
        d.quiet().await;
        assert_eq!(d.read("post.html").await.unwrap(), b"<p>v0</p>");
        d.engine.set_sync(false).unwrap();
    }
    a.save("post.html", b"<p>A, earlier</p>").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.save("post.html", b"<p>B, later</p>").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A comes back first: its push is stored after B's edit was made.
    a.engine.set_sync(true).unwrap();
    let a_up = common::eventually(Duration::from_secs(10), || {
        let c = c.clone();
        async move {
            platform_files(&c).await.get("post.html").map(Vec::as_slice)
                == Some(b"<p>A, earlier</p>")
        }
    })
    .await;
    assert!(a_up, "A's edit goes up");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.engine.set_sync(true).unwrap();
    let b_wins = common::eventually(Duration::from_secs(10), || {
        let c = c.clone();
        async move {
            platform_files(&c).await.get("post.html").map(Vec::as_slice) == Some(b"<p>B, later</p>")
        }
    })
    .await;
    assert!(b_wins, "the later edit wins on the platform");
    b.quiet().await;
    assert_eq!(b.read("post.html").await.unwrap(), b"<p>B, later</p>");
    let mut a_sees_it = false;
    for _ in 0..250 {
        if a.read("post.html").await.as_deref() == Some(b"<p>B, later</p>".as_slice()) {
            a_sees_it = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a_sees_it, "and comes down to A");
    assert!(
        platform_contents(&c)
            .await
            .contains(b"<p>A, earlier</p>".as_slice()),
        "A's edit is kept as a version"
    );
    a.stop().await;
    b.stop().await;
}

/// A listing answers the kernel with no index lock held: the kernel's buffer callback (and the
/// attributes, which may wait for a file's save) run while other threads change the index.
/// Before, the listing held the tree's read lock across them and read it again per entry: with
/// a writer queued in between (a first mount's hydration of 2,000 sites), `ls` hung for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_holds_no_index_lock_while_it_answers() {
    let p = TestPlatform::start(Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    for i in 0..300 {
        d.save(&format!("s{i:03}.html"), b"<p>x</p>").await.unwrap();
    }
    d.quiet().await;
    let (engine, fs) = (d.engine.clone(), d.fs.clone());
    let (done, finished) = std::sync::mpsc::channel();
    // Its own thread, so that a deadlock fails the test instead of hanging it.
    std::thread::spawn(move || {
        let mut names = Vec::new();
        let result = fs.readdir(ROOT_INO, 0, |_, name, attr| {
            // What another thread does meanwhile: a change to the index. With the tree's lock
            // held here, this waits for ever.
            if let Some(mut e) = engine.index.get(attr.ino) {
                e.mtime_ms += 1;
                engine.index.update(&e).unwrap();
            }
            names.push(name.to_string());
            true
        });
        let _ = done.send(result.map(|()| names));
    });
    let listed =
        tokio::task::spawn_blocking(move || finished.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("the listing finished (no lock held while answering)")
            .unwrap();
    assert_eq!(names_of_sites(&listed), 300);
    d.stop().await;
}

fn names_of_sites(names: &[String]) -> usize {
    names.iter().filter(|n| n.ends_with(".html")).count()
}

/// Sync turned off while the follower's first connection is under way, a save, then sync on:
/// the save goes up. The follower took the switch's change for "on, nothing to do", kept
/// streaming, and the save waited for ever (10 of 10 tries timed out; found by the model as
/// `[SyncOff, Save]`).
#[test]
fn sync_off_during_the_first_connection_then_on_sends_the_save() {
    for _ in 0..10 {
        let outcome = runtime().block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                run(vec![Step::SyncOff, Step::Save { f: 1 }]),
            )
            .await
        });
        assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
    }
}

/// The race issue 24 found by reading: a close's save passed its "not deleted" check, then an
/// `unlink` landed, then the save put its working copy into the mirror under the tombstone: the
/// deleted file came back in the mirror (and went up again after a restart). Here the save is
/// made exactly in that window, deterministically: after the unlink, with the working copy the
/// close had finished. The save must find the file deleted and drop what was written to it, as a
/// local disk drops writes to an unlinked file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_landing_after_an_unlink_does_not_bring_the_file_back() {
    log_to_test_output();
    let p = TestPlatform::start(Mode::Full).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Device::start(&p.url(), dir.path()).await;
    d.save("page.html", b"v1").await.unwrap();
    d.settled().await;
    let ino = d.ino_of("page.html").await.unwrap();
    // The close's finished working copy, as `commit` hands it to the engine.
    let work = d.engine.temp_file();
    std::fs::write(&work, b"written by the closing program").unwrap();
    d.unlink("page.html").await.unwrap();
    let engine = d.engine.clone();
    let saved = {
        let work = work.clone();
        tokio::task::spawn_blocking(move || engine.save_file(ino, &work, None))
            .await
            .unwrap()
    };
    assert!(saved.is_err(), "the save finds the file deleted: {saved:?}");
    assert!(!work.exists(), "the working copy is dropped");
    assert!(
        !files_under(dir.path()).contains_key("page.html"),
        "no mirror file under the tombstone"
    );
    assert!(d.engine.index.get(ino).is_none_or(|e| e.tombstone));
    d.settled().await;
    d.stop().await;
    // A restart's scan finds nothing to bring back, and the platform keeps its last copy.
    let d = Device::start(&p.url(), dir.path()).await;
    d.settled().await;
    assert_eq!(d.ino_of("page.html").await, None, "still deleted here");
    assert_eq!(
        platform_files(&p.client())
            .await
            .get("page.html")
            .map(Vec::as_slice),
        Some(&b"v1"[..]),
        "never delete across, and the dropped write never went up"
    );
    d.stop().await;
}

/// When the wall clock is stepped on the way to an offline edit, and when it is corrected.
#[derive(Debug, Clone, Copy)]
enum ClockStep {
    /// Right when the engine calibrated; stepped while offline, before the edit; corrected
    /// before reconnecting (NTP when the network returns).
    AfterCalibrating,
    /// Wrong already when the engine calibrated; corrected while offline, after the edit.
    BeforeCalibrating,
    /// As `AfterCalibrating`, with the engine restarted (still offline) between the step and
    /// the edit: the calibration it kept in the index must hold.
    AcrossARestart,
}

/// One offline edit on each side of a site, the clock stepped by `step_ms` as `how` says, the
/// local edit `local_later` or earlier (by 1.5 s of real time) than the platform's. Returns what
/// the platform and the mirror hold once both sides are back together.
async fn clock_trial(
    step_ms: i64,
    how: ClockStep,
    local_later: bool,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let site = c
        .create(
            NodeKind::Site,
            "post.html",
            NodeId::ROOT,
            Some(b"<p>v0</p>"),
        )
        .await
        .unwrap()
        .id;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::default();
    let clock = settings.clock.clone();
    if let ClockStep::BeforeCalibrating = how {
        clock.step(step_ms);
    }
    let mut d = Device::start_with(&p.url(), dir.path(), settings.clone()).await;
    d.settled().await;
    assert_eq!(d.read("post.html").await.unwrap(), b"<p>v0</p>");
    // Offline: nothing moves until sync is on again.
    d.engine.set_sync(false).unwrap();
    match how {
        ClockStep::AfterCalibrating => clock.step(step_ms),
        ClockStep::AcrossARestart => {
            d.stop().await;
            clock.step(step_ms);
            d = Device::start_with(&p.url(), dir.path(), settings.clone()).await;
        }
        ClockStep::BeforeCalibrating => {}
    }
    let platform_edit = || async {
        c.put_content(
            site,
            NodeKind::Site,
            b"<p>platform</p>".to_vec().into(),
            None,
        )
        .await
        .unwrap();
    };
    if local_later {
        platform_edit().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    d.save("post.html", b"<p>local</p>").await.unwrap();
    if !local_later {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        platform_edit().await;
    }
    // Corrected before the network (and sync) is back.
    clock.step(-step_ms);
    d.engine.set_sync(true).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.settled().await;
    let mirror = d.read("post.html").await;
    let platform = platform_files(&c).await.get("post.html").cloned();
    d.stop().await;
    (platform, mirror)
}

/// Issue 26: an edit's time is taken on the platform's clock as calibrated when the edit was
/// made, and survives a correction of the wall clock made before reconnecting. Before, the
/// edit kept the wall clock's time and was compared with the offset calibrated at reconnect:
/// `+1h` then corrected, the local edit beat a later platform edit; `-1h` then corrected, the
/// platform beat a later local edit (2 wrong winners in 16 trials by hand; here, every case
/// with a step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_time_survives_a_clock_corrected_while_offline() {
    log_to_test_output();
    const HOUR: i64 = 3_600_000;
    let mut wrong = Vec::new();
    for how in [
        ClockStep::AfterCalibrating,
        ClockStep::BeforeCalibrating,
        ClockStep::AcrossARestart,
    ] {
        for (step_ms, local_later) in [(HOUR, false), (-HOUR, true), (HOUR, true), (-HOUR, false)] {
            let (platform, mirror) = clock_trial(step_ms, how, local_later).await;
            let winner: &[u8] = if local_later {
                b"<p>local</p>"
            } else {
                b"<p>platform</p>"
            };
            let case = format!(
                "{how:?}, stepped {:+} h, local edit later: {local_later}",
                step_ms / HOUR
            );
            eprintln!(
                "{case}: platform {:?}, mirror {:?}",
                platform.as_deref().map(String::from_utf8_lossy),
                mirror.as_deref().map(String::from_utf8_lossy)
            );
            if platform.as_deref() != Some(winner) || mirror.as_deref() != Some(winner) {
                wrong.push(case);
            }
        }
    }
    assert!(wrong.is_empty(), "the earlier edit won: {wrong:#?}");
}
