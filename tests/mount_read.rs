//! The mount, read side: real `hyperclay mount` processes over a dev platform on loopback, used
//! with real tools (ls, stat, find, cat, cp, du).

mod common;

use std::time::Duration;

use common::{sh, wait_until, Mode, MountProcess, TestPlatform};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::remote::Client;

/// A small account: folders two deep, sites, and binary uploads.
async fn seed(c: &Client) -> Vec<u8> {
    let blog = c
        .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
        .await
        .unwrap();
    let y = c
        .create(NodeKind::Folder, "2024", blog.id, None)
        .await
        .unwrap();
    c.create(
        NodeKind::Site,
        "index.html",
        NodeId::ROOT,
        Some(b"<h1>home</h1>"),
    )
    .await
    .unwrap();
    c.create(NodeKind::Site, "post.html", y.id, Some(b"<p>post</p>"))
        .await
        .unwrap();
    let img = c
        .create(NodeKind::Folder, "img", NodeId::ROOT, None)
        .await
        .unwrap();
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    c.create(NodeKind::Upload, "photo.jpg", img.id, Some(&binary))
        .await
        .unwrap();
    c.create(
        NodeKind::Upload,
        "data.json",
        NodeId::ROOT,
        Some(b"{\"a\":1}"),
    )
    .await
    .unwrap();
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_tools_see_the_account() {
    let p = TestPlatform::start(Mode::Full).await;
    let binary = seed(&p.client()).await;
    let m = MountProcess::start(&p.url());
    // A fresh mount answers at once; the first listing arrives in the background.
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    let root = m.mountpoint.display().to_string();

    let listing = sh(&format!("cd {root} && ls -R"));
    for name in [
        "blog",
        "2024",
        "index.html",
        "post.html",
        "img",
        "photo.jpg",
        "data.json",
        "sites-versions",
    ] {
        assert!(listing.contains(name), "ls -R shows {name}:\n{listing}");
    }
    assert!(
        !listing.contains(".hyperclay"),
        "the index folder is hidden"
    );
    let found = sh(&format!("cd {root} && find . -type f | sort"));
    assert_eq!(
        found,
        "./blog/2024/post.html\n./data.json\n./img/photo.jpg\n./index.html\n"
    );
    let stat = sh(&format!(
        "stat -c '%s %F %a %u' {root}/img/photo.jpg {root}/blog"
    ));
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(
        stat,
        format!("300000 regular file 644 {uid}\n0 directory 755 {uid}\n")
    );
    // mtime is the platform's modifiedAt.
    let node = p
        .client()
        .nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.name == "index.html")
        .unwrap();
    let platform_ms = hyperclay::protocol::parse_time(node.modified_at.as_ref().unwrap().as_str())
        .unwrap()
        .timestamp_millis();
    let mtime: f64 = sh(&format!("stat -c %.3Y {root}/index.html"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!((mtime * 1000.0).round() as i64, platform_ms);

    assert_eq!(
        sh(&format!("cat {root}/blog/2024/post.html")),
        "<p>post</p>"
    );
    assert_eq!(std::fs::read(m.path("img/photo.jpg")).unwrap(), binary);
    let out = tempfile::tempdir().unwrap();
    sh(&format!(
        "cp -r {root}/blog {root}/img {}",
        out.path().display()
    ));
    assert_eq!(
        std::fs::read(out.path().join("img/photo.jpg")).unwrap(),
        binary
    );
    assert_eq!(
        std::fs::read(out.path().join("blog/2024/post.html")).unwrap(),
        b"<p>post</p>"
    );
    let du: u64 = sh(&format!("du -sb {root}/img | cut -f1"))
        .trim()
        .parse()
        .unwrap();
    assert!(du >= 300_000, "du counts the upload: {du}");
    // Writes are refused cleanly until writing lands.
    assert!(std::fs::write(m.path("sites-versions/x.html"), b"x").is_err());
}

async fn assert_remote_change_seen(mode: Mode, stream: bool, limit: Duration) {
    let p = TestPlatform::start_with(mode, |c| c.stream_enabled = stream).await;
    let c = p.client();
    let site = c
        .create(NodeKind::Site, "live.html", NodeId::ROOT, Some(b"before"))
        .await
        .unwrap();
    let m = MountProcess::start(&p.url());
    let file = m.path("live.html");
    wait_until(Duration::from_secs(5), || {
        std::fs::read(&file).ok().as_deref() == Some(b"before")
    })
    .expect("first read");
    c.put_content(
        site.id,
        NodeKind::Site,
        "after, a longer content".into(),
        None,
    )
    .await
    .unwrap();
    let took = wait_until(limit, || {
        std::fs::read(&file).ok().as_deref() == Some(b"after, a longer content".as_ref())
    })
    .unwrap_or_else(|| {
        panic!("{mode:?} stream={stream}: the change was not seen within {limit:?}")
    });
    eprintln!("{mode:?} stream={stream}: seen after {took:?}");
    // The replaced local copy was backed up with its content.
    let versions = m.mirror.join("sites-versions/live");
    let backups: Vec<_> = std::fs::read_dir(&versions)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(backups, vec![b"before".to_vec()]);
    // Also visible, read-only, through the mount.
    let through_mount = std::fs::read_dir(m.path("sites-versions/live"))
        .unwrap()
        .count();
    assert_eq!(through_mount, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_change_is_seen_within_a_second_with_the_stream() {
    assert_remote_change_seen(Mode::Full, true, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_change_is_seen_within_11_s_with_the_stream_blocked() {
    assert_remote_change_seen(Mode::Full, false, Duration::from_secs(11)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_change_is_seen_within_11_s_against_a_plain_platform() {
    assert_remote_change_seen(Mode::Plain, false, Duration::from_secs(11)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_renames_moves_and_deletes_follow_locally() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    seed(&c).await;
    let m = MountProcess::start(&p.url());
    // A fresh mount answers at once; the first listing arrives in the background.
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    let nodes = c.nodes().await.unwrap().nodes;
    let id = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().id;
    assert_eq!(
        std::fs::read(m.path("index.html")).unwrap(),
        b"<h1>home</h1>"
    );

    c.rename(id("index.html"), NodeKind::Site, "home.html")
        .await
        .unwrap();
    wait_until(Duration::from_secs(2), || {
        m.path("home.html").exists() && !m.path("index.html").exists()
    })
    .expect("rename seen");
    assert_eq!(
        std::fs::read(m.path("home.html")).unwrap(),
        b"<h1>home</h1>"
    );

    c.move_node(id("data.json"), NodeKind::Upload, id("2024"), None)
        .await
        .unwrap();
    wait_until(Duration::from_secs(2), || {
        m.path("blog/2024/data.json").exists()
    })
    .expect("move seen");
    assert!(!m.path("data.json").exists());

    // A platform delete keeps the local copy. Read first: a copy not fetched yet (hydration
    // runs in the background and, on a loaded machine, may not have reached it) was never on
    // this disk, and a platform delete forgets it (docs/semantics.md).
    assert_eq!(
        std::fs::read(m.path("img/photo.jpg")).unwrap().len(),
        300_000
    );
    c.delete(id("img"), true).await.unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let photo = std::fs::read(m.path("img/photo.jpg")).expect("the local copy stays");
    assert_eq!(photo.len(), 300_000);
    assert!(
        m.log()
            .contains("deleted on the platform: the local copy is kept"),
        "{}",
        m.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_platform_stopped_the_mirror_stays_readable() {
    let p = TestPlatform::start(Mode::Full).await;
    seed(&p.client()).await;
    let m = MountProcess::start_with(&p.url(), &[("HYPERCLAY_PREFETCH", "0")]);
    // Wait until the listing has arrived, then read one file (fetched and kept).
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    assert_eq!(
        std::fs::read(m.path("index.html")).unwrap(),
        b"<h1>home</h1>"
    );
    p.running.stop().await;
    assert_eq!(
        std::fs::read(m.path("index.html")).unwrap(),
        b"<h1>home</h1>",
        "a kept copy reads offline"
    );
    let listing = sh(&format!("ls {}", m.mountpoint.join("blog/2024").display()));
    assert_eq!(listing, "post.html\n", "browsing never needs the platform");
    let never_fetched = std::fs::read(m.path("blog/2024/post.html")).unwrap_err();
    assert_eq!(never_fetched.raw_os_error(), Some(libc::EIO));
    assert!(
        m.log().contains("could not be fetched"),
        "the log says why: {}",
        m.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmounts_cleanly_after_sigterm_and_after_kill_9() {
    let p = TestPlatform::start(Mode::Full).await;
    seed(&p.client()).await;
    let mut m = MountProcess::start(&p.url());
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    assert!(m.stop().success());
    assert!(
        !hyperclay::fs::is_mounted(&m.mountpoint),
        "SIGTERM unmounts"
    );

    m.spawn();
    assert_eq!(
        std::fs::read(m.path("index.html")).unwrap(),
        b"<h1>home</h1>",
        "remounts on the same mirror"
    );
    m.kill9();
    m.unmount();
    assert!(
        !hyperclay::fs::is_mounted(&m.mountpoint),
        "no stale mount after kill -9 and unmount"
    );
    assert!(
        std::fs::read_dir(&m.mountpoint).is_ok(),
        "the folder is usable again"
    );
    // And the mount point can be used again at once.
    m.spawn();
    assert!(m.path("index.html").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mount_point_is_a_one_line_error() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let missing = m.home.path().join("nope");
    let full = m.home.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    for (target, words) in [
        (&missing, "does not exist"),
        (&full, "not empty"),
        (&m.mountpoint, "already mounted"),
    ] {
        let out = m.command().arg("mount").arg(target).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("hyperclay:"))
                .count(),
            1,
            "{err}"
        );
        assert!(!err.contains("panicked"));
    }
}

/// Folder listings are kept in the kernel's cache between opens (a warm `find` never reaches the
/// mount); every platform change to a folder's names still shows in its next listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_listings_follow_platform_changes() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    seed(&c).await;
    let m = MountProcess::start(&p.url());
    let list = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(m.path(dir))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let shows = |dir: &str, want: &[&str]| {
        wait_until(Duration::from_secs(3), || list(dir) == want).is_some()
    };
    assert!(
        shows("blog/2024", &["post.html"]),
        "{:?}",
        list("blog/2024")
    );
    // Listed twice: the second comes from the kernel's cache.
    assert_eq!(list("blog/2024"), ["post.html"]);
    let nodes = c.nodes().await.unwrap().nodes;
    let id = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().id;

    c.create(NodeKind::Site, "new.html", id("2024"), Some(b"<p>new</p>"))
        .await
        .unwrap();
    assert!(
        shows("blog/2024", &["new.html", "post.html"]),
        "a platform create: {:?}",
        list("blog/2024")
    );
    c.rename(id("post.html"), NodeKind::Site, "renamed.html")
        .await
        .unwrap();
    assert!(
        shows("blog/2024", &["new.html", "renamed.html"]),
        "a platform rename: {:?}",
        list("blog/2024")
    );
    assert_eq!(list("img"), ["photo.jpg"]);
    c.move_node(id("data.json"), NodeKind::Upload, id("img"), None)
        .await
        .unwrap();
    assert!(
        shows("img", &["data.json", "photo.jpg"]),
        "a platform move: {:?}",
        list("img")
    );
    // And a change made through the mount shows at once.
    std::fs::write(m.path("img/local.txt"), b"here").unwrap();
    assert_eq!(list("img"), ["data.json", "local.txt", "photo.jpg"]);
}

/// Readers and writers of one file at once, as on a local disk where a file rewritten in place
/// (`>`, `std::fs::write`) is the same file: descriptors open across a save read the new
/// content, and one descriptor reads what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_writers_of_one_file_at_once() {
    use std::io::{Read, Seek, SeekFrom};
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(
        NodeKind::Upload,
        "notes.txt",
        NodeId::ROOT,
        Some(b"version one"),
    )
    .await
    .unwrap();
    let m = MountProcess::start(&p.url());
    let path = m.path("notes.txt");
    wait_until(Duration::from_secs(5), || path.exists()).expect("listing");
    let read_from_start = |f: &mut std::fs::File| {
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    let mut old_reader = std::fs::File::open(&path).unwrap();
    assert_eq!(read_from_start(&mut old_reader), "version one");
    // A writer while a reader is open.
    std::fs::write(&path, "version two").unwrap();
    let mut new_reader = std::fs::File::open(&path).unwrap();
    assert_eq!(read_from_start(&mut new_reader), "version two");
    assert_eq!(read_from_start(&mut old_reader), "version two");
    drop(old_reader);
    std::fs::write(&path, "version three").unwrap();
    assert_eq!(read_from_start(&mut new_reader), "version three");
    drop(new_reader);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "version three");
    // Written and read through one descriptor.
    let mut both = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut both, b"VERSION").unwrap();
    assert_eq!(read_from_start(&mut both), "VERSION three");
    drop(both);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "VERSION three");
}

/// A bug that panics inside one kernel request costs that request (EIO, and a line in the log),
/// never the mount: it goes on serving. (Debug builds answer a lookup of `.hyperclay-test-panic`
/// with a deliberate panic.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_request_does_not_take_the_mount_down() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    seed(&c).await;
    let m = MountProcess::start(&p.url());
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    // More panics than the mount has threads serving the kernel.
    for _ in 0..40 {
        let err = std::fs::metadata(m.path(".hyperclay-test-panic")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    }
    assert_eq!(
        std::fs::read(m.path("index.html")).unwrap(),
        b"<h1>home</h1>"
    );
    std::fs::write(m.path("after.txt"), b"still saving").unwrap();
    assert_eq!(std::fs::read(m.path("after.txt")).unwrap(), b"still saving");
    assert!(
        m.log().contains("a bug stopped this request"),
        "{}",
        m.log()
    );
}

/// After `kill -9` of the mount, a save can't succeed somewhere nothing syncs: the dead mount
/// stays and answers "not connected" until the next `hyperclay mount` cleans it up (with
/// auto-unmount, saves went into the bare folder underneath, and the next mount refused it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_saves_fail_until_the_next_mount() {
    let p = TestPlatform::start(Mode::Full).await;
    seed(&p.client()).await;
    let mut m = MountProcess::start(&p.url());
    wait_until(Duration::from_secs(5), || m.path("index.html").exists()).expect("listing");
    m.kill9();
    // Auto-unmount (fusermount's helper) would have removed the mount by now.
    std::thread::sleep(Duration::from_secs(1));
    let save = std::fs::write(m.path("after-the-kill.html"), b"<p>where does this go?</p>");
    assert_eq!(
        save.unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN),
        "the save fails loudly"
    );
    assert!(
        hyperclay::fs::is_mounted(&m.mountpoint),
        "the dead mount stays"
    );
    m.spawn();
    assert!(
        m.path("index.html").exists(),
        "the next mount cleans up and comes up"
    );
    assert!(!m.path("after-the-kill.html").exists());
    assert!(!m.mirror.join("after-the-kill.html").exists());
}

/// What programs ask of every file answers as on a local disk: a name over 255 bytes is
/// ENAMETOOLONG (not "no such file"), and the terminal check Python's `open()` makes (an ioctl)
/// is ENOTTY, with no log line (fuser's default logged a warning per `open()`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_and_ioctls_answer_as_a_local_disk_does() {
    use std::os::fd::AsRawFd;
    let p = TestPlatform::start(Mode::Full).await;
    p.client()
        .create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b"<p>a</p>"))
        .await
        .unwrap();
    let m = MountProcess::start(&p.url());
    let long = "x".repeat(256);
    let err = std::fs::metadata(m.path(&long)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    let err = std::fs::metadata(m.path(&format!("{long}/deeper"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");

    let file = std::fs::File::open(m.path("a.html")).unwrap();
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: TCGETS writes at most one termios into the buffer given.
    let answer = unsafe { libc::ioctl(file.as_raw_fd(), libc::TCGETS, termios.as_mut_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((answer, errno), (-1, Some(libc::ENOTTY)));
    // Python reads the file as it would anywhere.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys; print(open(sys.argv[1]).read())")
        .arg(m.path("a.html"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "<p>a</p>");
    assert!(
        !m.log().contains("Not Implemented"),
        "no log line per ioctl:\n{}",
        m.log()
    );
}
