//! Developers' workloads in the mount, each run beside a plain folder where that means something
//! (issue 25): executables keep their mode (`chmod +x`, `cc -o`, `make`), symlinks live anywhere
//! locally (`python3 -m venv`, `cp -a`, `ln -s`) and never go up, SQLite's side files stay local,
//! and `fstat` of an unlinked open file answers no links, as ext4 does.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, node_at, platform_files, sh, Mode, MountProcess, TestPlatform};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `script` with `sh` in `dir`; answers (exit code, stdout + stderr).
fn run_in(dir: &Path, script: &str) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `script` in a plain folder and in `dir` of the mount: both must succeed, alike.
fn same_as_plain(dir: &Path, script: &str) -> String {
    let plain = tempfile::tempdir().unwrap();
    let (code, plain_out) = run_in(plain.path(), script);
    assert_eq!(code, 0, "the plain folder: {plain_out}");
    let (code, out) = run_in(dir, script);
    assert_eq!(
        code, 0,
        "the mount (the plain folder said {plain_out:?}): {out}"
    );
    assert_eq!(out, plain_out, "the mount answers as the plain folder does");
    out
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

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

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"built\"); return 0; }\n";

/// `chmod +x script.sh && ./script.sh`, `cc -o app` and a `make`-built program run in the mount
/// as in a plain folder (they exited 126, "Permission denied": every file was 0644). The mode
/// is kept locally (the platform has none, and a chmod sends nothing): across a platform change
/// of the content, which replaces the mirror copy, and across a remount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_are_kept_and_programs_run() {
    let p = TestPlatform::start(Mode::Full).await;
    let mut m = MountProcess::start(&p.url());
    let script =
        "printf '#!/bin/sh\\necho ran\\n' > script.sh && chmod +x script.sh && ./script.sh";
    assert_eq!(same_as_plain(&m.mountpoint, script), "ran\n");
    assert_eq!(mode_of(&m.path("script.sh")), 0o755);
    let build = format!(
        "printf '{}' > hello.c && cc -o app hello.c && ./app && \
         printf 'app2: hello.c\\n\\tcc -o app2 hello.c\\n' > Makefile && make -s && ./app2",
        HELLO_C.replace('\n', "\\n")
    );
    assert_eq!(same_as_plain(&m.mountpoint, &build), "built\nbuilt\n");
    assert_eq!(mode_of(&m.path("app")) & 0o111, 0o111);
    // Other bits are kept as given, the mirror copy stays the owner's to read and write.
    sh(&format!("chmod 640 {}", m.path("hello.c").display()));
    assert_eq!(mode_of(&m.path("hello.c")), 0o640);
    assert_eq!(mode_of(&m.mirror.join("script.sh")) & 0o777, 0o755);

    // A chmod sends nothing; the content went up once.
    platform_has(&p, "script.sh").await;
    nothing_waiting(&m);
    let c = p.client();
    let id = node_at(&c, "script.sh").await.unwrap();
    let versions_before = c.versions(id).await.unwrap().len();
    sh(&format!(
        "chmod 700 {0} && chmod 755 {0}",
        m.path("script.sh").display()
    ));
    nothing_waiting(&m);
    assert_eq!(c.versions(id).await.unwrap().len(), versions_before);

    // A platform edit replaces the mirror copy: the new copy keeps the mode.
    c.put_content(id, NodeKind::Upload, "#!/bin/sh\necho v2\n".into(), None)
        .await
        .unwrap();
    assert!(
        common::wait_until(WAIT, || std::fs::read(m.path("script.sh")).ok().as_deref()
            == Some(b"#!/bin/sh\necho v2\n".as_ref()))
        .is_some(),
        "the platform's edit came down"
    );
    assert_eq!(mode_of(&m.path("script.sh")), 0o755);
    assert_eq!(mode_of(&m.mirror.join("script.sh")) & 0o777, 0o755);
    assert_eq!(run_in(&m.mountpoint, "./script.sh"), (0, "v2\n".into()));

    // Folders keep theirs too.
    sh(&format!(
        "mkdir -m 700 {0} && chmod 750 {0}",
        m.path("private").display()
    ));
    assert_eq!(mode_of(&m.path("private")), 0o750);

    // Across a remount.
    m.stop();
    m.spawn();
    assert_eq!(mode_of(&m.path("private")), 0o750);
    assert_eq!(mode_of(&m.path("script.sh")), 0o755);
    assert_eq!(mode_of(&m.path("hello.c")), 0o640);
    assert_eq!(mode_of(&m.path("app")) & 0o111, 0o111);
    assert_eq!(
        run_in(&m.mountpoint, "./script.sh && ./app"),
        (0, "v2\nbuilt\n".into())
    );
}

/// A mode set on a file whose copy has not come down yet (fetched on first read) is the mode
/// of the copy that comes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_set_before_the_copy_came_down_is_kept() {
    let p = TestPlatform::start(Mode::Full).await;
    p.client()
        .create(
            NodeKind::Upload,
            "tool.sh",
            NodeId::ROOT,
            Some(b"#!/bin/sh\necho tool\n"),
        )
        .await
        .unwrap();
    let m = MountProcess::start_with(&p.url(), &[("HYPERCLAY_PREFETCH", "0")]);
    assert_eq!(
        run_in(&m.mountpoint, "chmod +x tool.sh && ./tool.sh"),
        (0, "tool\n".into())
    );
    assert_eq!(mode_of(&m.path("tool.sh")), 0o755);
    assert_eq!(mode_of(&m.mirror.join("tool.sh")) & 0o777, 0o755);
}

/// Every path under `dir` (links not followed) with what it is (`l` and its target, `d`, `f`),
/// as `find` sees them, `sites-versions/` left out.
fn tree(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args([
            "-path",
            "./sites-versions",
            "-prune",
            "-o",
            "-printf",
            "%y %p %l\\n",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("./sites-versions"))
        .map(|l| l.trim_end().to_string())
        .collect();
    lines.sort();
    lines
}

/// Symlinks anywhere, kept locally (they were EPERM outside local-only names): `ln -s`, `cp -a`
/// of a tree with links, `python3 -m venv` (with and without `--copies`, which both make a
/// `lib64` link) work as in a plain folder, the links are listed by `ls` and `find`, survive a
/// remount, and none reaches the platform; a link leading out of the mount is only a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_are_kept_locally_anywhere() {
    let p = TestPlatform::start(Mode::Full).await;
    let mut m = MountProcess::start(&p.url());
    let src = m.home.path().join("src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::write(src.join("lib/real.txt"), b"real").unwrap();
    std::os::unix::fs::symlink("lib/real.txt", src.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink("lib", src.join("libdir")).unwrap();
    let outside = m.home.path().join("outside.txt");
    std::fs::write(&outside, b"OUTSIDE the mount").unwrap();
    let script = format!(
        "mkdir a && echo x > x && ln -s ../x a/link && ln -s {} out && cat out && echo && \
         cat a/link && ls a && cp -a {} copied && cat copied/alias.txt && echo && \
         readlink copied/libdir && ls -l a | cut -c1",
        outside.display(),
        src.display()
    );
    same_as_plain(&m.mountpoint, &script);
    // Links renamed, renamed over files, files renamed over links, a folder holding links.
    let moves = "mkdir d && echo f > d/file && ln -s file d/l1 && ln -s nowhere d/l2 && \
                 mv d/l1 d/file2 && readlink d/file2 && echo g > d/g && mv d/g d/l2 && \
                 cat d/l2 && ln -s other d/l3 && mv d/l3 d/file && readlink d/file && \
                 (rmdir d 2>/dev/null || echo not empty) && mv d e && readlink e/file && ls e";
    assert_eq!(
        same_as_plain(&m.mountpoint, moves),
        "file\ng\nother\nnot empty\nother\nfile\nfile2\nl2\n"
    );
    let plain = tempfile::tempdir().unwrap();
    run_in(plain.path(), &script);
    run_in(plain.path(), moves);
    assert_eq!(
        tree(&m.mountpoint),
        tree(plain.path()),
        "find sees the same tree"
    );

    let venv =
        "python3 -m venv --without-pip venv && python3 -m venv --without-pip --copies venv2 \
                && venv/bin/python -c 'print(1)' && venv2/bin/python -c 'print(2)'";
    assert_eq!(same_as_plain(&m.mountpoint, venv), "1\n2\n");
    assert!(std::fs::symlink_metadata(m.path("venv/lib64"))
        .unwrap()
        .file_type()
        .is_symlink());

    // The files went up, the links did not.
    platform_has(&p, "copied/lib/real.txt").await;
    platform_has(&p, "venv/pyvenv.cfg").await;
    nothing_waiting(&m);
    let links = [
        "a/link",
        "e/file",
        "e/file2",
        "out",
        "copied/alias.txt",
        "copied/libdir",
        "venv/lib64",
        "venv/bin/python",
        "venv2/lib64",
    ];
    let on_platform = platform_files(&p.client()).await;
    let folders = common::platform_folders(&p.client()).await;
    for link in links {
        assert!(
            !on_platform.contains_key(link) && !folders.contains(link),
            "{link} reached the platform: {on_platform:?} {folders:?}"
        );
        assert!(
            std::fs::symlink_metadata(m.mirror.join(link))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link} is a link in the mirror"
        );
    }
    // The mirror's own reads never follow a link out of it.
    assert!(!on_platform.values().any(|v| v.starts_with(b"OUTSIDE")));

    // Kept across a remount; a folder holding links is removed as on a disk.
    let before = tree(&m.mountpoint);
    m.stop();
    m.spawn();
    assert_eq!(tree(&m.mountpoint), before);
    assert_eq!(
        run_in(&m.mountpoint, "venv/bin/python -c 'print(3)'"),
        (0, "3\n".into())
    );
    assert_eq!(
        run_in(
            &m.mountpoint,
            "rm -r venv2 a && test ! -e venv2 && test ! -e a && echo gone"
        ),
        (0, "gone\n".into())
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

/// A named pipe or socket (at local-only names) keeps the mode it was made with and a chmod,
/// and a folder holding only one is not empty (rmdir, a folder renamed over it), as in a plain
/// folder (pjdfstest's `permission_bits_from_mode`, `change_perm`, `eexist_enotempty`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_keep_their_mode_and_fill_their_folder() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys, json, errno
d = sys.argv[1]
out = {}
os.makedirs(os.path.join(d, ".run", "full"))
os.makedirs(os.path.join(d, ".run", "other"))
os.umask(0o022)
pipe = os.path.join(d, ".run", "full", "pipe")
os.mkfifo(pipe, 0o640)
out["made"] = oct(os.stat(pipe).st_mode & 0o7777)
os.chmod(pipe, 0o600)
out["chmod"] = oct(os.stat(pipe).st_mode & 0o7777)
for what, call in [("rmdir", lambda: os.rmdir(os.path.join(d, ".run", "full"))),
                   ("rename", lambda: os.rename(os.path.join(d, ".run", "other"), os.path.join(d, ".run", "full")))]:
    try:
        call(); out[what] = "done"
    except OSError as e:
        out[what] = errno.errorcode[e.errno]
print(json.dumps(out))
"#;
    let plain = tempfile::tempdir().unwrap();
    let on_disk = common::python_json(script, plain.path());
    assert_eq!(
        on_disk,
        serde_json::json!({"made": "0o640", "chmod": "0o600", "rmdir": "ENOTEMPTY", "rename": "ENOTEMPTY"})
    );
    assert_eq!(common::python_json(script, &m.mountpoint), on_disk);
}

/// npm's `node_modules/.bin/` links run and are listed (they resolved but were missing from
/// `ls` and `find`, and the tool's script, chmod'ed by npm, answered "Permission denied"):
/// `npm install` of a local package with a `bin`, offline, then the tool run through its link
/// and through `npx`, as in a plain folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_bin_links_run_and_are_listed() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"mkdir tool && \
        printf '{"name":"tool","version":"1.0.0","bin":{"hello-tool":"cli.js"}}' > tool/package.json && \
        printf '#!/usr/bin/env node\nconsole.log("tool ran")\n' > tool/cli.js && \
        printf '{"name":"app","version":"1.0.0"}' > package.json && \
        npm install --offline --no-audit --no-fund --loglevel=error ./tool >/dev/null && \
        ls node_modules/.bin && ./node_modules/.bin/hello-tool && npx --offline hello-tool && \
        find node_modules -type l | sort"#;
    assert_eq!(
        same_as_plain(&m.mountpoint, script),
        "hello-tool\ntool ran\ntool ran\nnode_modules/.bin/hello-tool\nnode_modules/tool\n"
    );
}
