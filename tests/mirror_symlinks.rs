//! Symlinks planted in the mirror (a mirror restored from a backup, a link made while no mount
//! ran), driven in-process (`Engine` over the in-process dev platform, as tests/model.rs does):
//! a symlinked folder is refused alone, with one status line, and the rest of the account syncs;
//! a file symlink is never read through, so nothing from outside the mirror lands in
//! `sites-versions/` or goes up (docs/reliability.md, "Security").

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, platform_files, Mode, TestPlatform, KEY};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::remote::Credential;
use hyperclay::sync::{Boot, Engine, Running};

const WAIT: Duration = Duration::from_secs(30);
const OUTSIDE: &[u8] = b"OUTSIDE the mirror: never read";

/// An engine following the platform over a mirror, as a mount runs it (no kernel).
struct Device {
    engine: Arc<Engine>,
    running: Running,
}

impl Device {
    /// Scans the mirror, then follows the platform (or, without `follow`, leaves the first
    /// reconciliation to the test).
    async fn start(url: &str, mirror_dir: &Path, follow: bool) -> Device {
        let running = Boot::new(mirror_dir, url, Credential::ApiKey(KEY.into()))
            .follow(follow)
            .start()
            .await
            .expect("the start-up scan never fails on a symlink");
        Device {
            engine: running.engine().clone(),
            running,
        }
    }

    async fn stop(self) {
        assert!(self.running.stop(Duration::from_secs(30)).await.drained);
    }
}

/// Every regular file under `dir` (symlinks not followed), with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn holds_outside(bytes: &[u8]) -> bool {
    bytes.windows(OUTSIDE.len()).any(|w| w == OUTSIDE)
}

/// What a user has outside the mirror: a file and a folder the planted links point to.
fn outside(dir: &Path) -> (PathBuf, PathBuf) {
    let folder = dir.join("outside/docs");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("guide.html"), OUTSIDE).unwrap();
    std::fs::write(folder.join("extra.html"), OUTSIDE).unwrap();
    let file = dir.join("outside/secret.txt");
    std::fs::write(&file, OUTSIDE).unwrap();
    (folder, file)
}

fn remove_index(mirror: &Path) {
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(mirror.join(".hyperclay").join(name));
    }
}

fn assert_nothing_from_outside(mirror: &Path, platform: &BTreeMap<String, Vec<u8>>) {
    let in_versions: Vec<_> = files_under(&mirror.join("sites-versions"))
        .into_iter()
        .filter(|(_, b)| holds_outside(b))
        .map(|(p, _)| p)
        .collect();
    let went_up: Vec<_> = platform
        .iter()
        .filter(|(_, b)| holds_outside(b))
        .map(|(p, _)| p)
        .collect();
    assert!(
        in_versions.is_empty() && went_up.is_empty(),
        "nothing from outside lands in sites-versions/ ({in_versions:?}) or goes up ({went_up:?})"
    );
}

/// The index lost (a new machine, a mirror restored from a backup) and `docs` a symlink to a
/// folder outside, `lnk.txt` a symlink to a file outside: the first listing used to fail whole
/// ("not listed yet: Could not sync: docs is a symlink"), so nothing synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_folder_is_refused_alone_and_the_rest_syncs() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let docs = c
        .create(NodeKind::Folder, "docs", NodeId::ROOT, None)
        .await
        .unwrap();
    c.create(
        NodeKind::Site,
        "guide.html",
        docs.id,
        Some(b"platform guide"),
    )
    .await
    .unwrap();
    c.create(
        NodeKind::Site,
        "page.html",
        NodeId::ROOT,
        Some(b"platform page"),
    )
    .await
    .unwrap();
    c.create(
        NodeKind::Upload,
        "lnk.txt",
        NodeId::ROOT,
        Some(b"platform lnk"),
    )
    .await
    .unwrap();
    let img = c
        .create(NodeKind::Folder, "img", NodeId::ROOT, None)
        .await
        .unwrap();
    c.create(NodeKind::Upload, "a.png", img.id, Some(b"png"))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (outside_folder, outside_file) = outside(dir.path());
    let mirror = dir.path().join("mirror");
    // A first sync, then the mirror as a backup restores it: links where `docs` and `lnk.txt`
    // were, a new local page, and no index.
    let first = Device::start(&p.url(), &mirror, true).await;
    assert!(
        eventually(WAIT, || async {
            mirror.join("docs/guide.html").exists() && mirror.join("img/a.png").exists()
        })
        .await
    );
    first.stop().await;
    std::fs::remove_dir_all(mirror.join("docs")).unwrap();
    std::os::unix::fs::symlink(&outside_folder, mirror.join("docs")).unwrap();
    std::fs::remove_file(mirror.join("lnk.txt")).unwrap();
    std::os::unix::fs::symlink(&outside_file, mirror.join("lnk.txt")).unwrap();
    std::fs::write(mirror.join("local.html"), b"made while no mount ran").unwrap();
    remove_index(&mirror);

    // The first listing succeeds (it failed whole before: "not listed yet: Could not sync:
    // docs is a symlink"), and it pushes and fetches the rest.
    let device = Device::start(&p.url(), &mirror, false).await;
    let first_listing = device.engine.reconcile().await;
    assert!(first_listing.is_ok(), "{first_listing:?}");
    let expected: BTreeMap<String, Vec<u8>> = [
        ("docs/guide.html", &b"platform guide"[..]),
        ("page.html", b"platform page"),
        ("lnk.txt", b"platform lnk"),
        ("img/a.png", b"png"),
        ("local.html", b"made while no mount ran"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect();
    let synced = eventually(WAIT, || {
        let c = c.clone();
        let expected = expected.clone();
        let mirror = mirror.clone();
        async move {
            platform_files(&c).await == expected
                && std::fs::read(mirror.join("lnk.txt")).is_ok_and(|b| b == b"platform lnk")
        }
    })
    .await;
    let problems = device.engine.status.all();
    assert!(
        synced,
        "the rest syncs: the platform holds {:?}; problems: {problems:?}",
        platform_files(&c).await.keys().collect::<Vec<_>>()
    );
    // The link at lnk.txt was replaced by the platform's copy (never written through).
    assert!(std::fs::symlink_metadata(mirror.join("lnk.txt"))
        .unwrap()
        .is_file());
    assert_eq!(std::fs::read(&outside_file).unwrap(), OUTSIDE);
    // The folder link is left alone, and what it points to untouched.
    assert!(std::fs::symlink_metadata(mirror.join("docs"))
        .unwrap()
        .file_type()
        .is_symlink());
    let outside_now = files_under(&outside_folder);
    assert_eq!(
        outside_now.len(),
        2,
        "nothing written there: {outside_now:?}"
    );
    assert!(outside_now.values().all(|b| b == OUTSIDE));
    // One status line, for the refused folder.
    let about_links: Vec<_> = problems
        .iter()
        .filter(|p| p.message.contains("symlink"))
        .collect();
    assert_eq!(about_links.len(), 1, "{problems:?}");
    assert!(
        about_links[0]
            .message
            .starts_with("docs is a symlink in the mirror"),
        "{problems:?}"
    );
    assert_eq!(
        device.engine.status.top().map(|p| p.message),
        Some(about_links[0].message.clone()),
        "status shows it"
    );
    assert_nothing_from_outside(&mirror, &platform_files(&c).await);
    device.stop().await;
}

/// The index kept, and synced files replaced by symlinks to files outside while no mount ran:
/// the start-up scan does not hash through them (which made the outside content a local edit
/// that went up), and the backup before the platform's newer copy replaces them does not read
/// through them (which copied the outside content into `sites-versions/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_symlink_is_never_read_through_for_backups_or_hashing() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let page = c
        .create(NodeKind::Site, "page.html", NodeId::ROOT, Some(b"page v1"))
        .await
        .unwrap();
    c.create(
        NodeKind::Upload,
        "notes.txt",
        NodeId::ROOT,
        Some(b"notes v1"),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (_, outside_file) = outside(dir.path());
    let mirror = dir.path().join("mirror");
    let first = Device::start(&p.url(), &mirror, true).await;
    assert!(
        eventually(WAIT, || async {
            std::fs::read(mirror.join("page.html")).is_ok_and(|b| b == b"page v1")
                && std::fs::read(mirror.join("notes.txt")).is_ok_and(|b| b == b"notes v1")
        })
        .await
    );
    first.stop().await;
    for name in ["page.html", "notes.txt"] {
        std::fs::remove_file(mirror.join(name)).unwrap();
        std::os::unix::fs::symlink(&outside_file, mirror.join(name)).unwrap();
    }
    // The platform moves on meanwhile: its copy of the page comes down over the link.
    c.put_content(page.id, NodeKind::Site, "page v2".into(), None)
        .await
        .unwrap();

    let device = Device::start(&p.url(), &mirror, true).await;
    let came_down = eventually(WAIT, || async {
        std::fs::read(mirror.join("page.html")).is_ok_and(|b| b == b"page v2")
    })
    .await;
    assert!(came_down, "the platform's page replaces the link");
    // Settled: nothing waits to go up.
    assert!(device.engine.drain(Duration::from_secs(30)).await);
    let platform = platform_files(&c).await;
    assert_nothing_from_outside(&mirror, &platform);
    assert_eq!(
        platform.get("notes.txt").map(Vec::as_slice),
        Some(&b"notes v1"[..]),
        "the outside file never went up as notes.txt"
    );
    assert_eq!(
        platform.get("page.html").map(Vec::as_slice),
        Some(&b"page v2"[..])
    );
    assert_eq!(std::fs::read(&outside_file).unwrap(), OUTSIDE);
    assert!(std::fs::symlink_metadata(mirror.join("page.html"))
        .unwrap()
        .is_file());
    device.stop().await;
}
