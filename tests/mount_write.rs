//! Writing through the mount with real programs: every save reaches the platform, once, under the
//! right name; temp, swap and backup names never do; the policies hold; refusals lose nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    eventually, node_at, platform_files, platform_folders, sh, Mode, MountProcess, TestPlatform,
};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;

const WAIT: Duration = Duration::from_secs(5);

async fn start_with_site(content: &[u8]) -> (TestPlatform, MountProcess, NodeId) {
    let p = TestPlatform::start(Mode::Full).await;
    let site = p
        .client()
        .create(NodeKind::Site, "post.html", NodeId::ROOT, Some(content))
        .await
        .unwrap();
    let m = MountProcess::start(&p.url());
    assert!(
        common::wait_until(WAIT, || std::fs::read(m.path("post.html")).ok().as_deref()
            == Some(content))
        .is_some()
    );
    (p, m, site.id)
}

/// Waits until the platform holds exactly `expected` (path → content).
async fn platform_holds(p: &TestPlatform, expected: &BTreeMap<String, Vec<u8>>) {
    let c = p.client();
    let ok = eventually(WAIT, || {
        let c = c.clone();
        async move { &platform_files(&c).await == expected }
    })
    .await;
    if !ok {
        let got: BTreeMap<String, String> = platform_files(&c)
            .await
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    String::from_utf8(v.clone()).unwrap_or_else(|_| format!("{} bytes", v.len())),
                )
            })
            .collect();
        panic!("the platform holds {got:#?}");
    }
}

fn files(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

async fn versions(p: &TestPlatform, id: NodeId) -> usize {
    p.client().versions(id).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_redirection_and_cp_create_and_update() {
    let (p, m, site) = start_with_site(b"v0").await;
    let root = m.mountpoint.display().to_string();
    sh(&format!("echo hello > {root}/notes.txt"));
    sh(&format!("printf '<p>v1</p>' > {root}/post.html"));
    let binary: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    let src = m.home.path().join("src.bin");
    std::fs::write(&src, &binary).unwrap();
    sh(&format!("cp {} {root}/copy.bin", src.display()));
    platform_holds(
        &p,
        &files(&[
            ("notes.txt", b"hello\n"),
            ("post.html", b"<p>v1</p>"),
            ("copy.bin", &binary),
        ]),
    )
    .await;
    assert_eq!(versions(&p, site).await, 1, "one platform version per save");
    // Appending is a save too.
    sh(&format!("echo more >> {root}/notes.txt"));
    platform_holds(
        &p,
        &files(&[
            ("notes.txt", b"hello\nmore\n"),
            ("post.html", b"<p>v1</p>"),
            ("copy.bin", &binary),
        ]),
    )
    .await;
    // Every saved version of a site is in sites-versions/ (the first content, then the save).
    let kept: Vec<Vec<u8>> =
        hyperclay::cache::versions::list(&m.mirror.join("sites-versions/post"))
            .into_iter()
            .map(|(_, p)| std::fs::read(p).unwrap())
            .collect();
    assert_eq!(kept, vec![b"v0".to_vec(), b"<p>v1</p>".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_r_of_a_tree_makes_folders_and_uploads() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let tree = m.home.path().join("site");
    std::fs::create_dir_all(tree.join("img/icons")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    let png: Vec<u8> = (0..40_000u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(tree.join("img/icons/a.png"), &png).unwrap();
    std::fs::write(tree.join("img/b.jpg"), &png[..1000]).unwrap();
    std::fs::write(tree.join("home.html"), b"<h1>home</h1>").unwrap();
    sh(&format!(
        "cp -r {} {}",
        tree.display(),
        m.path("site").display()
    ));
    platform_holds(
        &p,
        &files(&[
            ("site/img/icons/a.png", &png),
            ("site/img/b.jpg", &png[..1000]),
            ("site/home.html", b"<h1>home</h1>"),
        ]),
    )
    .await;
    let folders = platform_folders(&p.client()).await;
    let want: std::collections::BTreeSet<String> =
        ["site", "site/img", "site/img/icons", "site/empty"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert!(
        eventually(WAIT, || {
            let c = p.client();
            let want = want.clone();
            async move { platform_folders(&c).await == want }
        })
        .await,
        "{folders:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sed_i_is_one_update_of_the_original() {
    let (p, m, site) = start_with_site(b"<p>old</p>").await;
    sh(&format!(
        "sed -i 's/old/new/' {}",
        m.path("post.html").display()
    ));
    platform_holds(&p, &files(&[("post.html", b"<p>new</p>")])).await;
    assert_eq!(
        node_at(&p.client(), "post.html").await,
        Some(site),
        "the same node, updated"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(versions(&p, site).await, 1);
    platform_holds(&p, &files(&[("post.html", b"<p>new</p>")])).await;
    assert_eq!(std::fs::read(m.path("post.html")).unwrap(), b"<p>new</p>");
}

async fn vim_save(extra: &[&str]) {
    let (p, m, site) = start_with_site(b"<p>old</p>\n").await;
    let mut args: Vec<String> = vec![
        "-es".into(),
        "-u".into(),
        "NONE".into(),
        "-i".into(),
        "NONE".into(),
    ];
    for e in extra {
        args.push("-c".into());
        args.push(e.to_string());
    }
    args.extend(["-c".into(), "%s/old/new/".into(), "-c".into(), "wq".into()]);
    let status = std::process::Command::new("vim")
        .args(&args)
        .arg(m.path("post.html"))
        .current_dir(&m.mountpoint)
        .status()
        .unwrap();
    assert!(status.success());
    platform_holds(&p, &files(&[("post.html", b"<p>new</p>\n")])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_at(&p.client(), "post.html").await, Some(site));
    assert_eq!(
        versions(&p, site).await,
        1,
        "{extra:?}: one save, one version"
    );
    platform_holds(&p, &files(&[("post.html", b"<p>new</p>\n")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vim_with_default_settings_updates_the_original() {
    vim_save(&["set swapfile", "set backup", "set writebackup"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vim_with_backupcopy_no_updates_the_original() {
    vim_save(&["set swapfile", "set backupcopy=no", "set writebackup"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rewrite_like_nano_is_one_save() {
    let (p, m, site) = start_with_site(b"a long original content").await;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("post.html"))
            .unwrap();
        f.write_all(b"short").unwrap();
        f.set_len(5).unwrap();
    }
    platform_holds(&p, &files(&[("post.html", b"short")])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(versions(&p, site).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temp_file_renamed_over_the_original_is_an_update() {
    let (p, m, site) = start_with_site(b"v0").await;
    // gedit-style hidden temp, and a browser-download-style temp.
    std::fs::write(m.path(".goutputstream-ABC123"), b"v1").unwrap();
    std::fs::rename(m.path(".goutputstream-ABC123"), m.path("post.html")).unwrap();
    platform_holds(&p, &files(&[("post.html", b"v1")])).await;
    std::fs::write(m.path("data.bin.crdownload"), b"download").unwrap();
    std::fs::rename(m.path("data.bin.crdownload"), m.path("data.bin")).unwrap();
    // A visible temp name renamed at once never reaches the platform either.
    std::fs::write(m.path("post.html.new"), b"v2").unwrap();
    std::fs::rename(m.path("post.html.new"), m.path("post.html")).unwrap();
    platform_holds(
        &p,
        &files(&[("post.html", b"v2"), ("data.bin", b"download")]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    platform_holds(
        &p,
        &files(&[("post.html", b"v2"), ("data.bin", b"download")]),
    )
    .await;
    assert_eq!(node_at(&p.client(), "post.html").await, Some(site));
    assert_eq!(versions(&p, site).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_creates_and_deletes_stay_local() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b"A"))
        .await
        .unwrap();
    let keep = c
        .create(NodeKind::Upload, "keep.txt", NodeId::ROOT, Some(b"K"))
        .await
        .unwrap();
    c.create(NodeKind::Folder, "old", NodeId::ROOT, None)
        .await
        .unwrap();
    let mut m = MountProcess::start(&p.url());
    assert!(common::wait_until(WAIT, || m.path("keep.txt").exists()).is_some());
    std::fs::rename(m.path("a.html"), m.path("b.html")).unwrap();
    std::fs::remove_file(m.path("keep.txt")).unwrap();
    std::fs::remove_dir(m.path("old")).unwrap();
    std::fs::create_dir(m.path("fresh")).unwrap();
    platform_holds(
        &p,
        &files(&[("a.html", b"A"), ("b.html", b"A"), ("keep.txt", b"K")]),
    )
    .await;
    assert!(
        eventually(WAIT, || {
            let c = c.clone();
            async move { platform_folders(&c).await.contains("fresh") }
        })
        .await
    );
    assert!(
        platform_folders(&c).await.contains("old"),
        "rmdir is local only"
    );
    assert!(!m.path("a.html").exists() && !m.path("keep.txt").exists() && !m.path("old").exists());
    // Tombstones hold across a remount...
    m.stop();
    m.spawn();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !m.path("keep.txt").exists(),
        "a deleted file does not come back"
    );
    assert!(
        !m.path("a.html").exists(),
        "a renamed file's old name does not come back"
    );
    // ...until the platform changes the file.
    c.put_content(keep.id, NodeKind::Upload, "K2".into(), None)
        .await
        .unwrap();
    assert!(
        common::wait_until(WAIT, || std::fs::read(m.path("keep.txt")).ok().as_deref()
            == Some(b"K2"))
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_site_named_like_one_elsewhere_updates_it_in_its_place() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let blog = c
        .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
        .await
        .unwrap();
    let post = c
        .create(NodeKind::Site, "post.html", blog.id, Some(b"old"))
        .await
        .unwrap();
    let m = MountProcess::start(&p.url());
    // Its copy is in the mirror (a file only listed yet has no local copy to keep).
    assert!(common::wait_until(WAIT, || {
        std::fs::read(m.mirror.join("blog/post.html"))
            .ok()
            .as_deref()
            == Some(b"old")
    })
    .is_some());
    std::fs::write(m.path("post.html"), b"new from the root").unwrap();
    platform_holds(&p, &files(&[("blog/post.html", b"new from the root")])).await;
    assert_eq!(node_at(&c, "blog/post.html").await, Some(post.id));
    assert!(
        common::wait_until(WAIT, || !m.path("post.html").exists()).is_some(),
        "the local file moved to the platform's place"
    );
    assert_eq!(
        std::fs::read(m.path("blog/post.html")).unwrap(),
        b"new from the root"
    );
    // The replaced local copy was kept, and the platform kept its own.
    assert_eq!(versions(&p, post.id).await, 1);
    assert!(hyperclay::cache::versions::contains(
        &m.mirror.join("sites-versions"),
        "blog/post.html",
        b"old"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_files_and_refused_names_stay_local_with_a_log_line() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let big = vec![7u8; 21 * 1024 * 1024];
    std::fs::write(m.path("big.bin"), &big).unwrap();
    std::fs::write(m.path("Bad.html"), b"x").unwrap();
    std::fs::create_dir(m.path("My Folder")).unwrap();
    std::fs::write(m.path("My Folder/in.txt"), b"x").unwrap();
    std::fs::create_dir_all(m.path("a/b/c/d/e/f")).unwrap();
    std::fs::write(m.path("a/b/c/d/e/f/deep.txt"), b"deep").unwrap();
    std::fs::write(m.path("ok.txt"), b"fine").unwrap();
    platform_holds(&p, &files(&[("ok.txt", b"fine")])).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    platform_holds(&p, &files(&[("ok.txt", b"fine")])).await;
    assert_eq!(
        std::fs::read(m.path("big.bin")).unwrap().len(),
        big.len(),
        "the local file is untouched"
    );
    assert_eq!(
        std::fs::read(m.path("a/b/c/d/e/f/deep.txt")).unwrap(),
        b"deep"
    );
    let log = m.log();
    for needle in ["big.bin", "20 MiB", "Bad.html", "My Folder", "5 levels"] {
        assert!(log.contains(needle), "the log names {needle}: {log}");
    }
    // Status counts them apart from what will go up, each with its reason.
    let status = m.status_json();
    let mount = &status["mounts"][0];
    assert_eq!(mount["waiting"], 0, "{status}");
    for (reason, n) in [
        ("larger than 20 MiB", 1),
        ("a name the platform refuses", 1),
        ("a folder name the platform refuses", 1),
        ("folders deeper than 5", 1),
    ] {
        assert_eq!(mount["stays_local"][reason], n, "{reason}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_sites_answer_is_kept() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.max_sites = Some(1)).await;
    p.client()
        .create(NodeKind::Site, "one.html", NodeId::ROOT, Some(b"1"))
        .await
        .unwrap();
    let m = MountProcess::start(&p.url());
    std::fs::write(m.path("two.html"), b"2").unwrap();
    assert!(
        common::wait_until(WAIT, || m
            .log()
            .contains("You've run out of sites. We can't sync any more sites."))
        .is_some(),
        "{}",
        m.log()
    );
    assert_eq!(std::fs::read(m.path("two.html")).unwrap(), b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_during_a_slow_push_gets_exactly_one_follow_up() {
    let (p, m, site) = start_with_site(b"v0").await;
    p.running.set_write_delay(Duration::from_millis(1000));
    std::fs::write(m.path("post.html"), b"v1").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(m.path("post.html"), b"v2").unwrap();
    std::fs::write(m.path("post.html"), b"v3").unwrap();
    let c = p.client();
    assert!(
        eventually(Duration::from_secs(6), || {
            let c = c.clone();
            async move { c.content(site).await.unwrap().1 == b"v3" }
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.content(site).await.unwrap().1, b"v3");
    assert_eq!(
        versions(&p, site).await,
        2,
        "v1, then one follow-up with the latest (v3)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_files_saved_at_once_all_arrive() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let path = m.path(&format!("f{i}.txt"));
            std::thread::spawn(move || std::fs::write(path, format!("file {i}")).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected: BTreeMap<String, Vec<u8>> = (0..100)
        .map(|i| (format!("f{i}.txt"), format!("file {i}").into_bytes()))
        .collect();
    platform_holds(&p, &expected).await;
}

/// The platform is up (its stream too) but its writes fail with a 5xx: the mount does not know
/// it is offline, so the pushes themselves retry: each file after 1, 2, 3, 4, 5 s, then it waits;
/// one of them (the scout) tries again every second for all of them, so that when writes work
/// again everything saved meanwhile is up within about a second, without waiting for a timer
/// or a new change (issue 26: before, the files that had given up stayed up only locally until
/// their next change). A platform that can't be reached at all is noticed as offline, and
/// nothing is tried until it is back: tests/sync_engine.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_that_fail_retry_then_wait_and_go_up_once_writes_work() {
    let (p, m, site) = start_with_site(b"v0").await;
    let c = p.client();
    let other = c
        .create(NodeKind::Site, "other.html", NodeId::ROOT, Some(b"o0"))
        .await
        .unwrap()
        .id;
    assert!(common::wait_until(WAIT, || std::fs::read(m.path("other.html")).is_ok()).is_some());
    p.running.set_fail_writes(true);
    let began = std::time::Instant::now();
    std::fs::write(m.path("post.html"), b"edit during the fault").unwrap();
    std::fs::write(m.path("other.html"), b"other edit during the fault").unwrap();
    assert_eq!(
        std::fs::read(m.path("post.html")).unwrap(),
        b"edit during the fault",
        "the save works locally"
    );
    // One file's retries run out after 1+2+3+4+5 s; the other (the scout) keeps trying.
    let gave_up = common::wait_until(Duration::from_secs(20), || {
        m.log().contains("gave up pushing")
    });
    let log = m.log();
    assert!(gave_up.is_some(), "{log}");
    for s in 1..=5 {
        assert!(
            log.contains(&format!("retrying the push in {s} s")),
            "retry after {s} s: {log}"
        );
    }
    assert!(
        gave_up.unwrap() >= Duration::from_secs(14),
        "1+2+3+4+5 s of retries, not a storm"
    );
    // 20 s into the fault, well past every file's own retries.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(began.elapsed())).await;
    let status = m.status_json();
    assert_eq!(status["mounts"][0]["waiting"], 2, "still marked");
    // A platform that answers 500 was reached: status says it faults, not "can't be reached".
    let problem = status["mounts"][0]["problem"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        problem.contains("fault") || problem.contains("answers with errors"),
        "{problem}"
    );
    assert!(!problem.contains("can't be reached"), "{problem}");
    assert_eq!(c.content(site).await.unwrap().1, b"v0");
    // No storm: each file's own 6 tries, and the scout's one a second.
    let tries = p.running.failed_writes();
    assert!(tries <= 2 * 6 + 22, "{tries} writes in 20 s");
    // Writes work again: both are up at once, with no new change and no reconnect.
    p.running.set_fail_writes(false);
    let cleared = std::time::Instant::now();
    platform_holds(
        &p,
        &files(&[
            ("post.html", b"edit during the fault"),
            ("other.html", b"other edit during the fault"),
        ]),
    )
    .await;
    let up = cleared.elapsed();
    eprintln!("writes failed {tries} times in 20 s; up {up:.2?} after they worked again");
    assert!(
        up < Duration::from_secs(3),
        "up {up:?} after writes worked again"
    );
    assert_eq!(
        c.content(other).await.unwrap().1,
        b"other edit during the fault"
    );
    let status = m.status_json();
    assert_eq!(status["mounts"][0]["waiting"], 0);
    assert!(status["mounts"][0]["problem"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_read_only_links_local_and_metadata_harmless() {
    let (_p, m, _) = start_with_site(b"v0").await;
    std::fs::write(m.path("post.html"), b"v1").unwrap();
    let err = std::fs::write(m.path("sites-versions/post/x.html"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    std::os::unix::fs::symlink("user@host.1234", m.path(".#post.html")).unwrap();
    assert_eq!(
        std::fs::read_link(m.path(".#post.html")).unwrap().to_str(),
        Some("user@host.1234")
    );
    std::fs::remove_file(m.path(".#post.html")).unwrap();
    // Any name may be a symlink, kept here only (tests/mount_dev.rs has the rest).
    std::os::unix::fs::symlink("post.html", m.path("link.html")).unwrap();
    assert_eq!(std::fs::read(m.path("link.html")).unwrap(), b"v1");
    sh(&format!(
        "chmod 600 {0} && touch {0}",
        m.path("post.html").display()
    ));
    let xattr = std::process::Command::new("setfattr")
        .args(["-n", "user.x", "-v", "1"])
        .arg(m.path("post.html"))
        .output();
    if let Ok(out) = xattr {
        assert!(!out.status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vim_with_backupcopy_yes_updates_the_original() {
    vim_save(&["set swapfile", "set backupcopy=yes", "set backup"]).await;
}

/// Emacs' default save: a `.#name` lock symlink, `#name#` auto-saves, the first save renames the
/// original to `name~` and writes a new file, later saves write in place. Office: a `~$name`
/// lock, the new content in a temp file, the original renamed to a second temp, the first temp
/// renamed over the original, the old one deleted. `dd conv=notrunc` writes in the middle.
/// Each save is one update of the same node; no lock, auto-save, backup or temp name goes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emacs_office_and_dd_saves_update_the_original_only() {
    let (p, m, site) = start_with_site(b"<p>v0</p>").await;
    let c = p.client();
    let doc = c
        .create(
            NodeKind::Upload,
            "report.docx",
            NodeId::ROOT,
            Some(b"doc v0"),
        )
        .await
        .unwrap();
    assert!(common::wait_until(WAIT, || m.path("report.docx").exists()).is_some());

    // Emacs, two saves in one session.
    std::os::unix::fs::symlink("user@host.4242:1700000000", m.path(".#post.html")).unwrap();
    std::fs::write(m.path("#post.html#"), b"<p>auto-saved</p>").unwrap();
    std::fs::rename(m.path("post.html"), m.path("post.html~")).unwrap();
    std::fs::write(m.path("post.html"), b"<p>v1</p>").unwrap();
    std::fs::remove_file(m.path("#post.html#")).unwrap();
    platform_holds(
        &p,
        &files(&[("post.html", b"<p>v1</p>"), ("report.docx", b"doc v0")]),
    )
    .await;
    std::fs::write(m.path("post.html"), b"<p>v2</p>").unwrap();
    std::fs::remove_file(m.path(".#post.html")).unwrap();
    assert_eq!(std::fs::read(m.path("post.html~")).unwrap(), b"<p>v0</p>");

    // Office.
    std::fs::write(m.path("~$report.docx"), b"owner").unwrap();
    std::fs::write(m.path("A1B2C3D4.tmp"), b"doc v1").unwrap();
    std::fs::rename(m.path("report.docx"), m.path("E5F6A7B8.tmp")).unwrap();
    std::fs::rename(m.path("A1B2C3D4.tmp"), m.path("report.docx")).unwrap();
    std::fs::remove_file(m.path("E5F6A7B8.tmp")).unwrap();
    std::fs::remove_file(m.path("~$report.docx")).unwrap();
    platform_holds(
        &p,
        &files(&[("post.html", b"<p>v2</p>"), ("report.docx", b"doc v1")]),
    )
    .await;

    // dd into the middle of the site, keeping its length.
    sh(&format!(
        "dd if=/dev/zero bs=1 count=2 seek=3 conv=notrunc status=none of={}",
        m.path("post.html").display()
    ));
    platform_holds(
        &p,
        &files(&[("post.html", b"<p>\0\0</p>"), ("report.docx", b"doc v1")]),
    )
    .await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    platform_holds(
        &p,
        &files(&[("post.html", b"<p>\0\0</p>"), ("report.docx", b"doc v1")]),
    )
    .await;
    assert_eq!(node_at(&c, "post.html").await, Some(site), "the same site");
    assert_eq!(
        node_at(&c, "report.docx").await,
        Some(doc.id),
        "the same upload"
    );
    assert_eq!(versions(&p, site).await, 3, "three saves, three versions");
    assert_eq!(versions(&p, doc.id).await, 1, "one save, one version");
}

/// Unmounting (SIGTERM, as `hyperclay unmount` and Ctrl-C do) waits for the push under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmounting_finishes_the_push_under_way() {
    let (p, mut m, site) = start_with_site(b"v0").await;
    p.running.set_write_delay(Duration::from_millis(1500));
    std::fs::write(m.path("post.html"), b"saved just before unmount").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = m.stop();
    assert!(status.success(), "{}", m.log());
    assert_eq!(
        p.client().content(site).await.unwrap().1,
        b"saved just before unmount",
        "{}",
        m.log()
    );
}

/// A multi-threaded program (an IDE, a test runner) forks while one of its threads writes a file:
/// each child closes its inherited copy of the descriptor at exec, and every such close reaches
/// the mount. Only the writer's own close saves: no partial version ever becomes a save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_child_closing_an_inherited_descriptor_saves_nothing_partial() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let chunk = vec![b'x'; 64 * 1024];
    let whole: Vec<u8> = chunk.repeat(32);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut children = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
                children += 1;
            }
            children
        })
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.path("big.html")).unwrap();
        for _ in 0..32 {
            f.write_all(&chunk).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let children = forker.join().unwrap();
    assert!(children > 5, "children were forked while the file was open");
    let c = p.client();
    let arrived = eventually(WAIT, || {
        let c = c.clone();
        let whole = whole.clone();
        async move { platform_files(&c).await.get("big.html") == Some(&whole) }
    })
    .await;
    let local = std::fs::read(m.path("big.html")).unwrap();
    assert!(local == whole, "the mount holds {} bytes", local.len());
    assert!(arrived, "{}", m.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = node_at(&p.client(), "big.html").await.unwrap();
    assert_eq!(
        versions(&p, id).await,
        0,
        "no earlier partial content on the platform"
    );
    let saved = hyperclay::cache::versions::list(&hyperclay::cache::versions::dir_for(
        &m.mirror.join("sites-versions"),
        "big.html",
    ));
    assert!(!saved.is_empty());
    for (_, path) in saved {
        // The empty file the create made is kept as the replaced copy; nothing in between.
        let len = std::fs::read(path).unwrap().len();
        assert!(
            len == 0 || len == whole.len(),
            "a partial save of {len} bytes"
        );
    }
}

/// One thread writes a file in chunks while another thread of the same program closes
/// duplicates of its descriptor (each close is a save; unlike fsync, the kernel does not hold
/// the file's lock for it): every save holds a prefix of what was written, and the last one all
/// of it. A write arriving while a save moved the working copy into place used to start from the
/// old copy and lose the chunks written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_from_another_thread_while_writing_lose_nothing() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let chunks: Vec<Vec<u8>> = (0..32u8).map(|i| vec![b'a' + i % 26; 64 * 1024]).collect();
    let whole: Vec<u8> = chunks.concat();
    let file = std::fs::File::create(m.path("data.bin")).unwrap();
    let closer = {
        let f = file.try_clone().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut closes = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                drop(f.try_clone().unwrap());
                closes += 1;
            }
            closes
        });
        (stop, handle)
    };
    {
        use std::io::Write;
        let mut f = &file;
        for c in &chunks {
            f.write_all(c).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    closer.0.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        closer.1.join().unwrap() > 5,
        "saves ran while the file was written"
    );
    drop(file);
    let local = std::fs::read(m.path("data.bin")).unwrap();
    let lost = local.iter().zip(&whole).filter(|(a, b)| a != b).count();
    assert!(
        local == whole,
        "{} bytes, {lost} of them wrong",
        local.len()
    );
    platform_holds(&p, &files(&[("data.bin", &whole)])).await;
}

/// A file created (without truncating) at a name that was deleted takes the platform's node back;
/// a platform edit of that node arriving while it is open must not become the new file's
/// starting content: a created file starts empty, and what is written to it is what is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_where_one_was_deleted_starts_empty_whatever_the_platform_does() {
    let (p, m, site) = start_with_site(b"<p>the old content of this site</p>").await;
    std::fs::remove_file(m.path("post.html")).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(m.path("post.html"))
        .unwrap();
    let platform_edit = vec![b'p'; 1211];
    p.client()
        .put_content(site, NodeKind::Site, platform_edit.clone().into(), None)
        .await
        .unwrap();
    // Give the pull every chance to land first.
    common::wait_until(Duration::from_secs(2), || {
        std::fs::read(m.mirror.join("post.html")).ok().as_deref() == Some(&platform_edit[..])
    });
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"mine", 16).unwrap();
    }
    drop(f);
    let mut expected = vec![0u8; 16];
    expected.extend_from_slice(b"mine");
    assert_eq!(std::fs::read(m.path("post.html")).unwrap(), expected);
    platform_holds(&p, &files(&[("post.html", &expected)])).await;
    let kept = p.client().versions(site).await.unwrap().len();
    assert!(
        kept >= 2,
        "the platform's edit is kept as a version ({kept} versions)"
    );
}

/// Two saves in a row while the event stream lags behind the answers to the pushes: the echo of
/// the first push arrives after the second push was answered. It must not be taken for the
/// platform's state (it is older than what the platform holds): no third push, no extra version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_echo_of_an_older_push_sends_nothing_again() {
    let (p, m, site) = start_with_site(b"v0").await;
    p.running.set_stream_delay(Duration::from_millis(400));
    let c = p.client();
    for content in [&b"v1"[..], &b"v2"[..]] {
        std::fs::write(m.path("post.html"), content).unwrap();
        let c = c.clone();
        assert!(
            eventually(WAIT, || {
                let c = c.clone();
                async move { c.content(site).await.unwrap().1 == content }
            })
            .await
        );
    }
    // Both echoes arrive, late.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.content(site).await.unwrap().1, b"v2");
    assert_eq!(
        versions(&p, site).await,
        2,
        "v0 and v1 kept, nothing sent twice\n{}",
        m.log()
    );
    assert_eq!(std::fs::read(m.path("post.html")).unwrap(), b"v2");
}

/// The program's own folder can't be reached through the mount: `.hyperclay` at the top can't be
/// made, so nothing written there can replace the live index; syncing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_cannot_be_written_through_the_mount() {
    let (p, m, _) = start_with_site(b"<p>v1</p>").await;
    let index = m.mirror.join(".hyperclay/index.db");
    let before = std::fs::read(&index).unwrap();
    let mkdir = std::fs::create_dir(m.path(".hyperclay"));
    assert_eq!(
        mkdir.unwrap_err().raw_os_error(),
        Some(libc::EPERM),
        "mkdir of the program's folder is refused"
    );
    let write = std::fs::write(m.path(".hyperclay/index.db"), b"garbage");
    assert!(write.is_err(), "nothing can be written inside it");
    assert!(
        std::fs::write(m.path(".hyperclay"), b"garbage").is_err(),
        "nor a file of that name"
    );
    std::fs::write(m.path("other.txt"), b"x").unwrap();
    assert!(
        std::fs::rename(m.path("other.txt"), m.path(".hyperclay")).is_err(),
        "nor a rename onto it"
    );
    let now = std::fs::read(&index).unwrap();
    assert!(now.starts_with(b"SQLite format 3") && !now.starts_with(b"garbage"));
    assert!(before.starts_with(b"SQLite format 3"));
    // The index still works: a save goes up, and a local-only dot folder elsewhere is fine.
    std::fs::write(m.path("post.html"), b"<p>v2</p>").unwrap();
    std::fs::create_dir(m.path("blog")).unwrap();
    std::fs::create_dir(m.path("blog/.hyperclay")).unwrap();
    std::fs::write(m.path("blog/.hyperclay/notes"), b"mine").unwrap();
    platform_holds(
        &p,
        &files(&[("post.html", b"<p>v2</p>"), ("other.txt", b"x")]),
    )
    .await;
    assert_eq!(
        std::fs::read(m.path("blog/.hyperclay/notes")).unwrap(),
        b"mine"
    );
}

/// A user's file whose name looks like one of the program's temp files is never swept away at
/// start: the program's temp files live only in its own folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_named_like_a_temp_file_survives_a_restart() {
    let (_p, mut m, _) = start_with_site(b"<p>v1</p>").await;
    for name in [
        ".hyperclay-tmp-0123456789abcdef",
        ".version-tmp-0123456789abcdef",
        "orphan-1",
    ] {
        std::fs::write(m.path(name), b"mine").unwrap();
    }
    m.stop();
    m.spawn();
    for name in [
        ".hyperclay-tmp-0123456789abcdef",
        ".version-tmp-0123456789abcdef",
        "orphan-1",
    ] {
        assert_eq!(std::fs::read(m.path(name)).unwrap(), b"mine", "{name}");
    }
    let temps = std::fs::read_dir(m.mirror.join(".hyperclay/tmp"))
        .unwrap()
        .count();
    assert_eq!(temps, 0, "no temp file left behind");
}

/// Every content a temp-file-then-rename save replaces is kept, exactly as for a plain save:
/// with sync off (nothing reaches the platform), three `sed -i` saves leave every earlier
/// content in `sites-versions/` (before, v2 and v3 existed nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_over_a_file_keeps_what_it_replaces() {
    let (_p, m, _) = start_with_site(b"<p>v1</p>").await;
    let off = m
        .command()
        .args(["sync", "off"])
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    assert!(off.status.success());
    for (from, to) in [("v1", "v2"), ("v2", "v3"), ("v3", "v4")] {
        sh(&format!(
            "sed -i 's/{from}/{to}/' {}",
            m.path("post.html").display()
        ));
    }
    assert_eq!(std::fs::read(m.path("post.html")).unwrap(), b"<p>v4</p>");
    let kept: std::collections::BTreeSet<Vec<u8>> =
        hyperclay::cache::versions::list(&m.mirror.join("sites-versions/post"))
            .into_iter()
            .map(|(_, p)| std::fs::read(p).unwrap())
            .collect();
    for v in ["v1", "v2", "v3", "v4"] {
        assert!(
            kept.contains(format!("<p>{v}</p>").as_bytes()),
            "{v} is in sites-versions: {kept:?}"
        );
    }
}

/// Saves acknowledged after the stop signal (the mount still serves while it drains) are
/// finished like the ones before: when the process has exited, the platform holds each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_after_the_stop_signal_are_finished_before_exit() {
    let (p, mut m, _) = start_with_site(b"v0").await;
    // A push is under way (slowly) when the signal comes, so the mount lingers a moment.
    p.running.set_write_delay(Duration::from_millis(700));
    std::fs::write(m.path("before.txt"), b"before the signal").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut child = m.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        let name = format!("after-{i}.txt");
        if std::fs::write(m.path(&name), format!("saved after the signal ({i})")).is_err() {
            break;
        }
        acknowledged.push(name);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    assert!(!acknowledged.is_empty(), "some saves came after the signal");
    let on_platform = platform_files(&p.client()).await;
    for name in acknowledged
        .iter()
        .chain(std::iter::once(&"before.txt".to_string()))
    {
        assert!(on_platform.contains_key(name), "{name} is on the platform");
    }
}

/// `fallocate` as programs use it (databases and downloaders reserve space first): plain mode
/// grows the file with zeros, which go up like any save; FALLOC_FL_KEEP_SIZE reserves without
/// changing the content; punching a hole is refused with EOPNOTSUPP, and the file is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallocate_reserves_and_refuses_what_the_platform_cannot_hold() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let run = |args: &[&str]| {
        std::process::Command::new("fallocate")
            .args(args)
            .output()
            .expect("fallocate (util-linux)")
    };
    let reserved = m.path("reserved.bin");
    let out = run(&["-l", "1048576", reserved.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::metadata(&reserved).unwrap().len(), 1 << 20);

    std::fs::write(m.path("a.txt"), b"hello").unwrap();
    let a = m.path("a.txt");
    let out = run(&["-n", "-o", "0", "-l", "65536", a.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&a).unwrap(),
        b"hello",
        "keep-size changes nothing"
    );
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on a descriptor this test owns.
        let answer = unsafe { libc::fallocate(f.as_raw_fd(), punch, 0, 2) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!((answer, errno), (-1, Some(libc::EOPNOTSUPP)));
    }
    assert_eq!(
        std::fs::read(&a).unwrap(),
        b"hello",
        "a refused hole changes nothing"
    );

    let c = p.client();
    let up = eventually(Duration::from_secs(20), || {
        let c = c.clone();
        async move {
            let files = platform_files(&c).await;
            files
                .get("reserved.bin")
                .is_some_and(|b| b.len() == 1 << 20 && b.iter().all(|&x| x == 0))
                && files.get("a.txt").is_some_and(|b| b == b"hello")
        }
    })
    .await;
    assert!(up, "the reserved file went up as zeros, a.txt unchanged");
}

/// Times set by the programs that restore them are kept: `tar x` (which sets the time on the
/// open file before closing it) and `cp -p`; the save time does not replace them, the mirror
/// copy carries them too, and a remount still shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_set_by_tar_and_cp_p_are_kept() {
    let p = TestPlatform::start(Mode::Full).await;
    let mut m = MountProcess::start(&p.url());
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("t")).unwrap();
    std::fs::write(src.path().join("t/old.html"), b"<p>2001</p>").unwrap();
    std::fs::write(src.path().join("copied.txt"), b"copied").unwrap();
    sh(&format!(
        "touch -d '2001-02-03 04:05:06 UTC' {0}/t/old.html {0}/copied.txt && tar cf {0}/a.tar -C {0} t && tar xf {0}/a.tar -C {1} && cp -p {0}/copied.txt {1}/",
        src.path().display(),
        m.mountpoint.display()
    ));
    let want = std::time::UNIX_EPOCH + Duration::from_secs(981_173_106);
    let mtime = |path: &std::path::Path| std::fs::metadata(path).unwrap().modified().unwrap();
    assert_eq!(mtime(&m.path("t/old.html")), want, "tar x keeps the time");
    assert_eq!(mtime(&m.path("copied.txt")), want, "cp -p keeps the time");
    assert_eq!(std::fs::read(m.path("t/old.html")).unwrap(), b"<p>2001</p>");
    assert_eq!(
        mtime(&m.mirror.join("t/old.html")),
        want,
        "the mirror copy too"
    );
    m.stop();
    m.spawn();
    assert_eq!(mtime(&m.path("t/old.html")), want, "and after a remount");
    assert_eq!(mtime(&m.path("copied.txt")), want);
}

/// A file unlinked (or renamed over) while open lives on for its descriptors until the last
/// close, as on ext4, and is never pushed: `fstat`, `read` and `write` on the descriptor work,
/// and Python's `tempfile.TemporaryFile` (create, unlink at once, then use) works in the mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_file_outlives_its_name_until_the_last_close() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys, tempfile, json
d = sys.argv[1]
out = {}
f = open(os.path.join(d, "gone.txt"), "w+b")
f.write(b"hello"); f.flush()
os.unlink(os.path.join(d, "gone.txt"))
out["fstat"] = os.fstat(f.fileno()).st_size
f.write(b" world"); f.flush(); f.seek(0)
out["read"] = f.read().decode()
f.close()
t = tempfile.TemporaryFile(dir=d)
t.write(b"x" * 100000); t.seek(0)
out["tempfile"] = len(t.read())
out["tempfile_fstat"] = os.fstat(t.fileno()).st_size
t.close()
with open(os.path.join(d, "target.txt"), "wb") as w: w.write(b"first")
g = open(os.path.join(d, "target.txt"), "r+b")
with open(os.path.join(d, "new.txt"), "wb") as w: w.write(b"replacement")
os.rename(os.path.join(d, "new.txt"), os.path.join(d, "target.txt"))
g.seek(0, 2); g.write(b" and more"); g.flush(); g.seek(0)
out["replaced_fd"] = g.read().decode()
g.close()
try:
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600); os.close(fd); out["o_tmpfile"] = "ok"
except OSError as e:
    out["o_tmpfile"] = e.errno
out["listing"] = sorted(n for n in os.listdir(d) if n != "sites-versions")
print(json.dumps(out))
"#;
    let r = common::python_json(script, &m.mountpoint);
    assert_eq!(r["fstat"], 5, "{r}");
    assert_eq!(r["read"], "hello world", "{r}");
    assert_eq!(r["tempfile"], 100000, "{r}");
    assert_eq!(r["tempfile_fstat"], 100000, "{r}");
    assert_eq!(
        r["replaced_fd"], "first and more",
        "the replaced file's descriptor keeps its own file: {r}"
    );
    assert_eq!(
        r["o_tmpfile"],
        libc::EOPNOTSUPP,
        "fuser 0.18 has no O_TMPFILE: {r}"
    );
    assert_eq!(r["listing"], serde_json::json!(["target.txt"]), "{r}");
    assert_eq!(std::fs::read(m.path("target.txt")).unwrap(), b"replacement");
    platform_holds(&p, &files(&[("target.txt", b"replacement")])).await;
}

/// Named pipes and unix sockets work under local-only names (editors', agents' and git's
/// sockets), are refused elsewhere, and `mknod` of a regular file is a create that goes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_and_sockets_live_under_local_only_names() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys, socket, json, threading, errno
d = sys.argv[1]
out = {}
os.mkfifo(os.path.join(d, ".pipe"))
def writer():
    with open(os.path.join(d, ".pipe"), "w") as w: w.write("through the pipe")
threading.Thread(target=writer).start()
with open(os.path.join(d, ".pipe")) as r: out["pipe"] = r.read()
os.makedirs(os.path.join(d, ".git"), exist_ok=True)
path = os.path.join(d, ".git", "fsmonitor.ipc")
srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(1)
cli = socket.socket(socket.AF_UNIX); cli.connect(path)
conn, _ = srv.accept(); cli.sendall(b"ping"); out["socket"] = conn.recv(4).decode()
out["socket_is_socket"] = __import__("stat").S_ISSOCK(os.stat(path).st_mode)
for name in ["visible-pipe"]:
    try:
        os.mkfifo(os.path.join(d, name)); out[name] = "made"
    except OSError as e:
        out[name] = e.errno
os.mknod(os.path.join(d, "made-by-mknod.txt"))
out["regular"] = os.path.getsize(os.path.join(d, "made-by-mknod.txt"))
os.rename(os.path.join(d, ".pipe"), os.path.join(d, ".pipe2"))
os.symlink("target", os.path.join(d, ".#lock"))
os.rename(os.path.join(d, ".#lock"), os.path.join(d, ".#lock2"))
out["renamed"] = [os.path.exists(os.path.join(d, ".pipe2")), os.readlink(os.path.join(d, ".#lock2"))]
os.unlink(os.path.join(d, ".pipe2"))
out["pipe_gone"] = not os.path.exists(os.path.join(d, ".pipe2"))
print(json.dumps(out))
"#;
    let r = common::python_json(script, &m.mountpoint);
    assert_eq!(r["pipe"], "through the pipe", "{r}");
    assert_eq!(r["socket"], "ping", "{r}");
    assert_eq!(r["socket_is_socket"], true, "{r}");
    assert_eq!(
        r["visible-pipe"],
        libc::EPERM,
        "a synced name can't be a pipe: {r}"
    );
    assert_eq!(r["regular"], 0, "{r}");
    assert_eq!(
        r["renamed"],
        serde_json::json!([true, "target"]),
        "a pipe and a lock symlink rename (this hung the mount): {r}"
    );
    assert_eq!(r["pipe_gone"], true, "{r}");
    assert!(
        eventually(WAIT, || {
            let p = p.client();
            async move { node_at(&p, "made-by-mknod.txt").await.is_some() }
        })
        .await,
        "mknod of a regular file goes up like touch"
    );
    let on_platform = platform_files(&p.client()).await;
    assert!(
        on_platform
            .keys()
            .all(|k| !k.contains("pipe") && !k.contains("fsmonitor")),
        "{on_platform:?}"
    );
    assert!(m.log().contains("a named pipe or socket can't be synced"));
}

/// Temp files of common programs and libraries, saved and renamed over their target later than
/// the 200 ms a new file waits: only the target reaches the platform, never a temp name (a node
/// there would stay forever: never delete across). Python and Node run for real; the others'
/// names as the programs make them (docs/semantics.md, "Local-only names").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_files_of_common_programs_never_reach_the_platform() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let dir = &m.mountpoint;
    // Python: NamedTemporaryFile beside the target, renamed over it after 400 ms.
    let python = r#"
import os, sys, tempfile, time
d = sys.argv[1]
for suffix in ["", ".html"]:
    with tempfile.NamedTemporaryFile(dir=d, delete=False, suffix=suffix) as t:
        t.write(b"saved by python"); name = t.name
    time.sleep(0.4)
    os.replace(name, os.path.join(d, "python" + (suffix or ".txt")))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", python])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Node: write-file-atomic, as npm and many Node tools save.
    let modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules");
    let node = format!(
        "const w = require('{}'); w.sync(process.argv[1] + '/package.json', '{{\"saved\": \"by node\"}}');",
        modules.join("write-file-atomic").display()
    );
    let out = std::process::Command::new("node")
        .args(["-e", &node])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The others, by the names they make (each written, then renamed over its target later).
    for (temp, target) in [
        ("4231987765", "go.txt"),               // Go os.CreateTemp(dir, "")
        ("notes.txt___jb_tmp___", "notes.txt"), // JetBrains safe write
        (".notes.md.kate-swp", "kate.md"),      // Kate's swap file
        (".~lock.report.odt#", "report.odt"),   // LibreOffice lock file
        ("lu98765xyz.tmp", "calc.ods"),         // LibreOffice's save temp
        (".page.html.Xa12Bc", "page.html"),     // rsync's temp name
    ] {
        std::fs::write(dir.join(temp), b"temp content").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::rename(dir.join(temp), dir.join(target)).unwrap();
    }
    std::fs::write(
        dir.join("notes.txt___jb_old___"),
        b"jetbrains keeps the old copy",
    )
    .unwrap();
    let want = [
        "calc.ods",
        "go.txt",
        "kate.md",
        "notes.txt",
        "package.json",
        "page.html",
        "python.html",
        "python.txt",
        "report.odt",
    ];
    let settled = eventually(Duration::from_secs(10), || {
        let c = p.client();
        async move {
            let on = platform_files(&c).await;
            want.iter().all(|n| on.contains_key(*n))
        }
    })
    .await;
    let on = platform_files(&p.client()).await;
    assert!(settled, "every target went up: {:?}", on.keys());
    // Past the 200 ms wait and a bit more: no temp name went up meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let on = platform_files(&p.client()).await;
    let names: Vec<&str> = on.keys().map(String::as_str).collect();
    assert_eq!(names, want, "only the targets, no temp name");
    assert_eq!(on["python.html"], b"saved by python");
    assert_eq!(on["package.json"], b"{\"saved\": \"by node\"}");
}

/// Folder times and link counts as on a local disk: a folder's mtime and ctime move when a name
/// is made, removed or renamed in it; a file's ctime (not its mtime) moves on chmod; a folder's
/// link count is 2 plus its subfolders (`find` relies on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_times_ctimes_and_link_counts_follow_changes() {
    use std::os::unix::fs::MetadataExt;
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let d = m.path("box");
    std::fs::create_dir(&d).unwrap();
    let times = |path: &std::path::Path| {
        let md = std::fs::metadata(path).unwrap();
        (
            md.mtime_nsec() as i128 + md.mtime() as i128 * 1_000_000_000,
            md.ctime_nsec() as i128 + md.ctime() as i128 * 1_000_000_000,
        )
    };
    let pause = || std::thread::sleep(Duration::from_millis(30));
    let mut last = times(&d);
    for step in ["create", "mkdir", "rename", "unlink", "rmdir"] {
        pause();
        match step {
            "create" => std::fs::write(d.join("a.txt"), b"a").unwrap(),
            "mkdir" => std::fs::create_dir(d.join("sub")).unwrap(),
            "rename" => std::fs::rename(d.join("a.txt"), d.join("b.txt")).unwrap(),
            "unlink" => std::fs::remove_file(d.join("b.txt")).unwrap(),
            _ => std::fs::remove_dir(d.join("sub")).unwrap(),
        }
        let now = times(&d);
        assert!(
            now.0 > last.0 && now.1 > last.1,
            "{step} moves the folder's mtime and ctime: {last:?} -> {now:?}"
        );
        last = now;
    }
    std::fs::create_dir(d.join("one")).unwrap();
    std::fs::create_dir(d.join("two")).unwrap();
    std::fs::write(d.join("f.txt"), b"f").unwrap();
    assert_eq!(
        std::fs::metadata(&d).unwrap().nlink(),
        4,
        "2 + two subfolders"
    );
    assert_eq!(std::fs::metadata(d.join("f.txt")).unwrap().nlink(), 1);
    let (mtime, ctime) = times(&d.join("f.txt"));
    pause();
    sh(&format!("chmod 600 {}", d.join("f.txt").display()));
    let (mtime2, ctime2) = times(&d.join("f.txt"));
    assert_eq!(mtime2, mtime, "chmod leaves the content's time");
    assert!(ctime2 > ctime, "chmod moves ctime: {ctime} -> {ctime2}");
}

/// A path whose mirror path would pass PATH_MAX (4,096 bytes) answers ENAMETOOLONG, cleanly,
/// where ext4 would go on with relative paths (docs/semantics.md says why); what is above it
/// stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_too_long_for_the_mirror_is_refused_cleanly() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let script = r#"
import os, sys
os.chdir(sys.argv[1])
name, depth = "d" * 200, 0
try:
    for i in range(30):
        os.mkdir(name); os.chdir(name); depth += 1
    print("none", depth)
except OSError as e:
    with open("last.txt", "w") as f: f.write("still usable")
    print(e.errno, depth, open("last.txt").read())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.first().copied(), Some("36"), "ENAMETOOLONG: {stdout}");
    let depth: usize = words[1].parse().unwrap();
    assert!(
        (18..=20).contains(&depth),
        "refused only past 4,096 bytes of mirror path: {stdout}"
    );
    assert!(stdout.contains("still usable"), "{stdout}");
    assert!(!m.log().contains("panic"));
}
