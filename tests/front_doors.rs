//! One list of end-to-end behaviours, run against both front doors as a user runs them: the
//! `hyperclay` binary with `mount DIR` (a real FUSE mount) and with `mount DIR --folder` (a
//! plain folder kept in sync), programs working on DIR with ordinary file calls, a real dev
//! platform on loopback. Where docs/semantics.md says the two modes behave the same, a
//! scenario here holds for both.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{MountProcess, TestPlatform};
use hyperclay::protocol::{Checksum, NodeKind};

#[derive(Clone, Copy, Debug)]
enum Door {
    Mount,
    Folder,
}

fn start(p: &TestPlatform, door: Door) -> MountProcess {
    let mut m = match door {
        Door::Mount => MountProcess::prepare(&p.url(), &[]),
        Door::Folder => MountProcess::prepare_folder(&p.url(), &[]),
    };
    m.spawn();
    m
}

async fn content_at(p: &TestPlatform, path: &str) -> Option<Vec<u8>> {
    let c = p.client();
    let id = common::node_at(&c, path).await?;
    c.content(id).await.ok().map(|(_, b)| b)
}

async fn until_platform_has(p: &TestPlatform, door: Door, path: &str, content: &[u8]) {
    assert!(
        common::eventually(Duration::from_secs(60), || async {
            content_at(p, path).await.as_deref() == Some(content)
        })
        .await,
        "{door:?}: {path} never reached the platform as {:?} (it has {:?})",
        String::from_utf8_lossy(content),
        content_at(p, path)
            .await
            .map(|c| String::from_utf8_lossy(&c).into_owned())
    );
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// New files and folders go up; an in-place save and an editor's temp-then-rename are updates
/// of the same node; `rm` and `mv` never delete across (rename creates); local-only names stay.
async fn saves_deletes_renames(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let m = start(&p, door);
    write(&m.path("site.html"), b"<p>1</p>");
    write(&m.path("a/b/up.txt"), b"up");
    until_platform_has(&p, door, "site.html", b"<p>1</p>").await;
    until_platform_has(&p, door, "a/b/up.txt", b"up").await;
    let id = common::node_at(&p.client(), "site.html").await;

    write(&m.path("site.html"), b"<p>2</p>");
    until_platform_has(&p, door, "site.html", b"<p>2</p>").await;
    // vim's and most editors' pattern: a new file, renamed over the original.
    write(&m.path("site.html.tmp"), b"<p>3</p>");
    std::fs::rename(m.path("site.html.tmp"), m.path("site.html")).unwrap();
    until_platform_has(&p, door, "site.html", b"<p>3</p>").await;
    assert_eq!(
        common::node_at(&p.client(), "site.html").await,
        id,
        "{door:?}"
    );

    std::fs::rename(m.path("a/b/up.txt"), m.path("a/moved.txt")).unwrap();
    until_platform_has(&p, door, "a/moved.txt", b"up").await;
    std::fs::remove_file(m.path("site.html")).unwrap();
    write(&m.path("node_modules/pkg/index.js"), b"local");
    write(&m.path("last.txt"), b"last");
    until_platform_has(&p, door, "last.txt", b"last").await;
    // Nothing was deleted across, nothing local-only went up.
    assert_eq!(
        content_at(&p, "site.html").await.as_deref(),
        Some(&b"<p>3</p>"[..])
    );
    assert_eq!(
        content_at(&p, "a/b/up.txt").await.as_deref(),
        Some(&b"up"[..])
    );
    let nodes = p.client().nodes().await.unwrap().nodes;
    assert!(
        !nodes.iter().any(|n| n.full_path().contains("node_modules")),
        "{door:?}"
    );
    // Status counts what was removed here and is still on the platform.
    let status = m.status_json();
    let removed = status["mounts"][0]["removed_here"]
        .as_array()
        .map_or(0, |a| a.len());
    assert!(removed >= 2, "{door:?}: removed_here = {removed}: {status}");
    m.unmount();
}

/// A change made on the platform shows in DIR, and is not sent back as a local edit.
async fn platform_changes_come_down(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let m = start(&p, door);
    write(&m.path("page.html"), b"<p>here</p>");
    until_platform_has(&p, door, "page.html", b"<p>here</p>").await;
    let id = common::node_at(&p.client(), "page.html").await.unwrap();
    p.client()
        .put_content(id, NodeKind::Site, b"<p>there</p>".to_vec().into(), None)
        .await
        .unwrap();
    let path = m.path("page.html");
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            std::fs::read(&path).unwrap_or_default() == b"<p>there</p>"
        })
        .is_some(),
        "{door:?}: the platform's change never showed"
    );
    let versions = p.client().versions(id).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        p.client().versions(id).await.unwrap().len(),
        versions,
        "{door:?}: echoed"
    );
    m.unmount();
}

/// What was saved while nothing ran goes up at the next start; status names the mode.
async fn offline_edits_go_up_at_the_next_start(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let mut m = start(&p, door);
    write(&m.path("keep.html"), b"<p>v1</p>");
    until_platform_has(&p, door, "keep.html", b"<p>v1</p>").await;
    let status = m.status_json();
    let mode = &status["mounts"][0]["mode"];
    match door {
        Door::Mount => assert!(mode.is_null(), "{status}"),
        Door::Folder => assert!(mode.as_str().unwrap().contains("plain folder"), "{status}"),
    }
    m.unmount();
    let _ = m.child.take().map(|mut c| c.wait());
    // Edited with nothing running: in the mirror for the mount, in the folder itself for the
    // plain folder.
    write(&m.mirror.join("keep.html"), b"<p>v2, offline</p>");
    m.spawn();
    until_platform_has(&p, door, "keep.html", b"<p>v2, offline</p>").await;
    m.unmount();
}

/// Killed (`kill -9`) right after a save, then edited while nothing runs: the save was up, and
/// the edit goes up at the next start.
async fn killed_then_edited(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let mut m = start(&p, door);
    write(&m.path("k.html"), b"<p>before the kill</p>");
    until_platform_has(&p, door, "k.html", b"<p>before the kill</p>").await;
    m.kill9();
    write(&m.mirror.join("k.html"), b"<p>after the kill</p>");
    write(&m.mirror.join("new/after.txt"), b"made while stopped");
    m.spawn();
    until_platform_has(&p, door, "k.html", b"<p>after the kill</p>").await;
    until_platform_has(&p, door, "new/after.txt", b"made while stopped").await;
    m.unmount();
}

fn mtime_of(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Puts `bytes` at `path` with the modification time `at`, as a disk that lost a later write
/// leaves the file (only the status-change time, which no program can set back, says otherwise).
fn put_back(path: &Path, bytes: &[u8], at: std::time::SystemTime) {
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// What a power cut adds to a `kill -9`: the machine starts again, in another boot (the index
/// keeps the boot its last run started in).
fn as_after_a_reboot(mirror: &Path) {
    let index = hyperclay::cache::Index::open(&mirror.join(".hyperclay/index.db")).unwrap();
    index.set_meta("boot", "a boot before this one").unwrap();
}

/// Every content kept under `sites-versions/<dir>/` in the mirror.
fn kept_versions(mirror: &Path, dir: &str) -> Vec<Vec<u8>> {
    std::fs::read_dir(mirror.join("sites-versions").join(dir))
        .map(|d| {
            d.flatten()
                .map(|f| std::fs::read(f.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Every checksum the platform has held for `path`: its content now and its versions.
async fn platform_history(p: &TestPlatform, path: &str) -> Vec<Checksum> {
    let c = p.client();
    let id = common::node_at(&c, path).await.unwrap();
    let mut sums: Vec<Checksum> = c
        .versions(id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.checksum)
        .collect();
    sums.extend(
        content_at(p, path)
            .await
            .map(|b| hyperclay::protocol::checksum(&b)),
    );
    sums
}

/// Waits until DIR shows `content` at `rel`.
fn until_door_shows(m: &MountProcess, door: Door, rel: &str, content: &[u8]) {
    let path = m.path(rel);
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            std::fs::read(&path).is_ok_and(|b| b == content)
        })
        .is_some(),
        "{door:?}: {rel} never showed {:?} again (it holds {:?})",
        String::from_utf8_lossy(content),
        std::fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned())
    );
}

/// The power-cut rule (docs/semantics.md, "Crash safety"): a close saves without an fsync, so
/// a power cut can take a save off the disk after it went up. Played with an unclean stop
/// (`kill -9`), a new boot, and the disk put back as such a cut leaves it: `reverted.txt` holds its content
/// from before the save, with that content's time; `torn.txt` holds bytes nobody saved (the
/// save's data half lost), with the time from before the save. Neither goes up at the next
/// start: the platform keeps the saves, DIR shows them again, and the odd copy is kept in
/// `sites-versions/`.
async fn a_copy_that_lost_its_save_never_goes_up(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let mut m = start(&p, door);
    write(&m.path("reverted.txt"), b"first save");
    write(&m.path("torn.txt"), b"first torn");
    until_platform_has(&p, door, "reverted.txt", b"first save").await;
    until_platform_has(&p, door, "torn.txt", b"first torn").await;
    let (reverted_at, torn_at) = (
        mtime_of(&m.mirror.join("reverted.txt")),
        mtime_of(&m.mirror.join("torn.txt")),
    );
    write(&m.path("reverted.txt"), b"second save, lost here");
    write(&m.path("torn.txt"), b"second torn, lost here");
    until_platform_has(&p, door, "reverted.txt", b"second save, lost here").await;
    until_platform_has(&p, door, "torn.txt", b"second torn, lost here").await;
    m.kill9();
    let torn: &[u8] = b"second to\0\0\0\0\0\0\0\0\0\0\0\0\0";
    put_back(&m.mirror.join("reverted.txt"), b"first save", reverted_at);
    put_back(&m.mirror.join("torn.txt"), torn, torn_at);
    as_after_a_reboot(&m.mirror);
    m.spawn();
    until_door_shows(&m, door, "reverted.txt", b"second save, lost here");
    until_door_shows(&m, door, "torn.txt", b"second torn, lost here");
    assert_eq!(
        content_at(&p, "reverted.txt").await.as_deref(),
        Some(&b"second save, lost here"[..])
    );
    assert!(
        !platform_history(&p, "torn.txt")
            .await
            .contains(&hyperclay::protocol::checksum(torn)),
        "{door:?}: the torn copy went up"
    );
    assert_eq!(
        platform_history(&p, "reverted.txt").await.len(),
        2,
        "{door:?}: the platform holds the two saves and nothing else"
    );
    assert!(
        kept_versions(&m.mirror, "torn").iter().any(|v| v == torn),
        "{door:?}: the odd copy is kept in sites-versions/torn/"
    );
    m.unmount();
}

/// Without a new boot the kernel's cache kept every save through a `kill -9`: a copy that
/// differs was changed since, even one put back with an older time (`cp -p` of an old copy),
/// and it goes up.
async fn after_a_kill_9_in_the_same_boot_a_changed_copy_is_an_edit(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let mut m = start(&p, door);
    write(&m.path("copied.txt"), b"old copy");
    until_platform_has(&p, door, "copied.txt", b"old copy").await;
    let old_at = mtime_of(&m.mirror.join("copied.txt"));
    write(&m.path("copied.txt"), b"newer save");
    until_platform_has(&p, door, "copied.txt", b"newer save").await;
    m.kill9();
    put_back(&m.mirror.join("copied.txt"), b"old copy", old_at);
    m.spawn();
    until_platform_has(&p, door, "copied.txt", b"old copy").await;
    m.unmount();
}

/// The power-cut rule when the index lost its last transactions too (SQLite's write-ahead log
/// is not fsync'ed at each commit): the index is put back as it was before two saves. `kept.txt`:
/// the disk kept its save, which the index does not know: an edit, already on the platform,
/// nothing moves. `lost.txt`: the disk lost its save too, and agrees with the index: the
/// platform's newer copy comes down. The platform keeps both saves.
async fn an_index_older_than_the_mirror(door: Door) {
    let p = TestPlatform::start(common::Mode::Full).await;
    let mut m = start(&p, door);
    write(&m.path("kept.txt"), b"kept 1");
    write(&m.path("lost.txt"), b"lost 1");
    until_platform_has(&p, door, "kept.txt", b"kept 1").await;
    until_platform_has(&p, door, "lost.txt", b"lost 1").await;
    m.kill9();
    let index = m.mirror.join(".hyperclay");
    let snapshot = tempfile::tempdir().unwrap();
    for f in ["index.db", "index.db-wal"] {
        if index.join(f).exists() {
            std::fs::copy(index.join(f), snapshot.path().join(f)).unwrap();
        }
    }
    let lost_at = mtime_of(&m.mirror.join("lost.txt"));
    m.spawn();
    write(&m.path("kept.txt"), b"kept 2");
    write(&m.path("lost.txt"), b"lost 2");
    until_platform_has(&p, door, "kept.txt", b"kept 2").await;
    until_platform_has(&p, door, "lost.txt", b"lost 2").await;
    m.kill9();
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(index.join(f));
        if snapshot.path().join(f).exists() {
            std::fs::copy(snapshot.path().join(f), index.join(f)).unwrap();
        }
    }
    put_back(&m.mirror.join("lost.txt"), b"lost 1", lost_at);
    as_after_a_reboot(&m.mirror);
    m.spawn();
    until_door_shows(&m, door, "lost.txt", b"lost 2");
    until_door_shows(&m, door, "kept.txt", b"kept 2");
    until_platform_has(&p, door, "kept.txt", b"kept 2").await;
    until_platform_has(&p, door, "lost.txt", b"lost 2").await;
    for path in ["kept.txt", "lost.txt"] {
        assert_eq!(
            platform_history(&p, path).await.len(),
            2,
            "{door:?}: {path}: the platform holds the two saves and nothing else"
        );
    }
    m.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_a_copy_that_lost_its_save_never_goes_up() {
    a_copy_that_lost_its_save_never_goes_up(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_a_copy_that_lost_its_save_never_goes_up() {
    a_copy_that_lost_its_save_never_goes_up(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_after_a_kill_9_in_the_same_boot_a_changed_copy_is_an_edit() {
    after_a_kill_9_in_the_same_boot_a_changed_copy_is_an_edit(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_after_a_kill_9_in_the_same_boot_a_changed_copy_is_an_edit() {
    after_a_kill_9_in_the_same_boot_a_changed_copy_is_an_edit(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_an_index_older_than_the_mirror() {
    an_index_older_than_the_mirror(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_an_index_older_than_the_mirror() {
    an_index_older_than_the_mirror(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_killed_then_edited() {
    killed_then_edited(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_killed_then_edited() {
    killed_then_edited(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_saves_deletes_renames() {
    saves_deletes_renames(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_saves_deletes_renames() {
    saves_deletes_renames(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_platform_changes_come_down() {
    platform_changes_come_down(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_platform_changes_come_down() {
    platform_changes_come_down(Door::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_offline_edits_go_up_at_the_next_start() {
    offline_edits_go_up_at_the_next_start(Door::Mount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_offline_edits_go_up_at_the_next_start() {
    offline_edits_go_up_at_the_next_start(Door::Folder).await;
}

/// Where FUSE can't mount (here: no `fusermount3` on the PATH), `hyperclay mount DIR` says so in
/// one line and keeps DIR as a plain folder instead; a folder whose program state was deleted
/// refuses to start with what to do, and `--rebuild` starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fuse_the_folder_is_kept_and_its_deleted_state_is_refused() {
    let p = TestPlatform::start(common::Mode::Full).await;
    let empty_path = tempfile::tempdir().unwrap();
    let path = empty_path.path().display().to_string();
    let mut m = MountProcess::prepare(&p.url(), &[("PATH", path.as_str())]);
    let out = m
        .command()
        .args(["mount", "--no-serve", "--daemon"])
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("FUSE is missing here (there is no fusermount3")
            && said.contains("as a plain folder in sync instead"),
        "{said}"
    );
    assert!(!hyperclay::fs::is_mounted(&m.mountpoint));
    write(&m.path("nofuse.txt"), b"works");
    until_platform_has(&p, Door::Folder, "nofuse.txt", b"works").await;
    m.unmount();

    std::fs::remove_dir_all(m.mountpoint.join(".hyperclay")).unwrap();
    m.env.push(("TEST_FOLDER".into(), "1".into()));
    let out = m
        .command()
        .args(["mount", "--no-serve", "--folder"])
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sync state") && err.contains("--rebuild"),
        "{err}"
    );
    let out = m
        .command()
        .args(["mount", "--no-serve", "--folder", "--rebuild", "--daemon"])
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write(&m.path("after.txt"), b"rebuilt");
    until_platform_has(&p, Door::Folder, "after.txt", b"rebuilt").await;
    m.unmount();
}
