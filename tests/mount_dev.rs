//! Developers' workloads in the mount, each run beside a plain folder where that means something
//! (issue 25): executables keep their mode (`chmod +x`, `cc -o`, `make`), symlinks live anywhere
//! locally (`python3 -m venv`, `cp -a`, `ln -s`) and never go up, SQLite's side files stay local,
//! and `fstat` of an unlinked open file answers no links, as ext4 does.

mod common;

use std::time::Duration;

use common::{eventually, node_at, platform_files, Mode, MountProcess, TestPlatform};

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `hyperclay status` says nothing waits to go up.
fn nothing_waiting(m: &MountProcess) {
    assert!(
        common::wait_until(WAIT, || m.status_json()["mounts"][0]["waiting"] == 0).is_some(),
        "{}",
        m.status_json()
    );
}

async fn platform_has(p: &TestPlatform, path: &str) {
    let c = p.client();
    assert!(
        eventually(WAIT, || {
            let c = c.clone();
            let path = path.to_string();
            async move { node_at(&c, &path).await.is_some() }
        })
        .await,
        "{path} never reached the platform"
    );
}

/// A database in the mount, in WAL mode and with a kept rollback journal, written and closed:
/// the database goes up, its `-wal`, `-shm` and `-journal` never do (they went up, and stayed:
/// never delete across).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_side_files_stay_local() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let wal = rusqlite::Connection::open(m.path("app.db")).unwrap();
    let mode: String = wal
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    wal.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('one'), ('two');")
        .unwrap();
    let kept = rusqlite::Connection::open(m.path("kept.db")).unwrap();
    let mode: String = kept
        .query_row("PRAGMA journal_mode=PERSIST", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "persist");
    kept.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('three');")
        .unwrap();
    assert!(m.path("app.db-wal").exists() && m.path("kept.db-journal").exists());
    // While the databases are open and their side files written and fsync'ed, a file saved
    // after them goes up: everything before it had its chance.
    std::fs::write(m.path("after.txt"), b"after").unwrap();
    platform_has(&p, "after.txt").await;
    drop(wal);
    drop(kept);
    let mirror_db = std::fs::read(m.mirror.join("app.db")).unwrap();
    let c = p.client();
    assert!(
        eventually(WAIT, || {
            let c = c.clone();
            let want = mirror_db.clone();
            async move { platform_files(&c).await.get("app.db") == Some(&want) }
        })
        .await,
        "the database went up"
    );
    platform_has(&p, "kept.db").await;
    nothing_waiting(&m);
    let on_platform = platform_files(&c).await;
    let side: Vec<&String> = on_platform
        .keys()
        .filter(|k| k.ends_with("-wal") || k.ends_with("-shm") || k.ends_with("-journal"))
        .collect();
    assert!(side.is_empty(), "side files went up: {side:?}");
    assert!(
        !m.path("app.db-wal").exists() && !m.path("app.db-shm").exists(),
        "SQLite removed its WAL files at the last close"
    );
    // The database reads back whole from the platform's copy.
    let copy = m.home.path().join("copy.db");
    std::fs::write(&copy, &on_platform["app.db"]).unwrap();
    let n: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

/// `fstat` on a descriptor whose file lost its last name answers `st_nlink` 0, as ext4 does
/// (pjdfstest `unlink/14.t`; it answered 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fstat_of_an_unlinked_open_file_answers_no_links() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys, json
d = sys.argv[1]
path = os.path.join(d, "gone.txt")
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"hello")
before = os.fstat(fd).st_nlink
os.unlink(path)
after = os.fstat(fd)
os.close(fd)
print(json.dumps([before, after.st_nlink, after.st_size]))
"#;
    let plain = tempfile::tempdir().unwrap();
    let on_disk = common::python_json(script, plain.path());
    assert_eq!(on_disk, serde_json::json!([1, 0, 5]));
    assert_eq!(common::python_json(script, &m.mountpoint), on_disk);
}
