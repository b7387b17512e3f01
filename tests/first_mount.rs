//! The first mount of an account shows the account, or says why not (issue 16): `--daemon`
//! returns, and the foreground mount says "mounted", only once the first listing is in the index;
//! meanwhile the mount's lookups and listings wait for it rather than answering "empty". A
//! platform that can't be reached gives a mount of what the mirror holds and a plain "not listed
//! yet". A remount is ready at once from its index.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::hostile::{node, Content, HostilePlatform, Script};
use common::{Mode, MountProcess, TestPlatform};
use futures::StreamExt;
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;

/// The names in a folder of the mount (`sites-versions/` left out).
fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "sites-versions")
        .collect()
}

/// `hyperclay mount --daemon`, as a user types it; returns when it does.
fn mount_daemon(m: &MountProcess) -> Output {
    m.command()
        .arg("mount")
        .arg("--daemon")
        .arg(&m.mountpoint)
        .arg("--mirror")
        .arg(&m.mirror)
        .arg("--no-serve")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_returns_with_the_whole_account_listed() {
    let platform = TestPlatform::start(Mode::Full).await;
    let client = platform.client();
    let expected: BTreeSet<String> = futures::stream::iter(0..2000)
        .map(|i| {
            let client = client.clone();
            async move {
                let name = format!("site-{i:04}.html");
                client
                    .create(NodeKind::Site, &name, NodeId::ROOT, Some(b"<p>hi</p>"))
                    .await
                    .unwrap();
                name
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let m = MountProcess::prepare(&platform.url(), &[]);
    let started = Instant::now();
    let out = mount_daemon(&m);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mounted at"), "{stdout}");
    assert!(!stdout.contains("not listed"), "{stdout}");
    // Looked at the moment the command returns: the whole account, not an empty folder.
    assert_eq!(names(&m.mountpoint), expected);
    println!("daemon ready with 2,000 sites listed in {took:?}");
    let status = m.status_json();
    assert!(status["mounts"][0]["not_listed"].is_null(), "{status}");
    m.unmount();
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_wait_for_a_slow_first_listing() {
    let platform = HostilePlatform::start(Script {
        username: "dev".into(),
        nodes: vec![
            node(1, "site", "a.html", "", 0, b"a"),
            node(2, "folder", "f", "", 0, b""),
            node(3, "site", "b.html", "f", 2, b"b"),
        ],
        content: [(3, Content::Bytes(b"b".to_vec()))].into(),
        listing_delay: Duration::from_millis(1500),
        ..Script::default()
    })
    .await;
    // The foreground mount: the kernel shows the mount before the listing is in.
    let mut m = MountProcess::prepare(&platform.url(), &[]);
    m.spawn_unready();
    let asked = Instant::now();
    assert_eq!(
        names(&m.mountpoint),
        BTreeSet::from(["a.html".to_string(), "f".to_string()]),
        "a listing of the mount before the account is listed waits for it"
    );
    // A lookup waits too (a fresh mount and a path looked up first, without a listing).
    assert_eq!(std::fs::read(m.path("f/b.html")).unwrap(), b"b");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "waited {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_by_path_on_a_fresh_mount_waits_for_the_listing() {
    let platform = HostilePlatform::start(Script {
        username: "dev".into(),
        nodes: vec![node(1, "site", "only.html", "", 0, b"only")],
        listing_delay: Duration::from_millis(1500),
        ..Script::default()
    })
    .await;
    let mut m = MountProcess::prepare(&platform.url(), &[]);
    m.spawn_unready();
    // No listing first: `stat` of a path is a lookup, which must not answer "no such file".
    let meta = std::fs::metadata(m.path("only.html"))
        .unwrap_or_else(|e| panic!("the lookup did not wait for the listing: {e}\n{}", m.log()));
    assert_eq!(meta.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_platform_mounts_the_mirror_and_says_not_listed() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let m = MountProcess::prepare(&url, &[]);
    std::fs::create_dir_all(&m.mirror).unwrap();
    std::fs::write(m.mirror.join("offline.html"), b"kept").unwrap();
    let started = Instant::now();
    let out = mount_daemon(&m);
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an unreachable platform is known at once: {:?}",
        started.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not listed yet: the platform can't be reached"),
        "{stdout}"
    );
    assert_eq!(
        names(&m.mountpoint),
        BTreeSet::from(["offline.html".to_string()])
    );
    let status = m.status_json();
    let report = &status["mounts"][0];
    assert_eq!(
        report["not_listed"], "the platform can't be reached",
        "{status}"
    );
    let problem = report["problem"]["message"].as_str().unwrap_or_default();
    assert!(problem.starts_with("Not listed yet"), "{status}");
    let text = m.command().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("not listed yet: the platform can't be reached"),
        "{text}"
    );
    m.unmount();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_that_never_lists_holds_the_mount_only_up_to_the_limit() {
    let platform = HostilePlatform::start(Script {
        username: "dev".into(),
        nodes: vec![node(1, "site", "late.html", "", 0, b"late")],
        listing_delay: Duration::from_secs(600),
        ..Script::default()
    })
    .await;
    let m = MountProcess::prepare(&platform.url(), &[("HYPERCLAY_FIRST_LISTING_SECS", "2")]);
    let started = Instant::now();
    let out = mount_daemon(&m);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not listed yet: the platform did not list the account within 2 s"),
        "{stdout}"
    );
    // Lookups answer from what is there once the limit passed.
    assert!(names(&m.mountpoint).is_empty());
    m.unmount();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remount_is_ready_at_once_from_its_index() {
    let mut platform = TestPlatform::start(Mode::Full).await;
    platform
        .client()
        .create(
            NodeKind::Site,
            "kept.html",
            NodeId::ROOT,
            Some(b"<p>kept</p>"),
        )
        .await
        .unwrap();
    let mut m = MountProcess::start(&platform.url());
    assert_eq!(names(&m.mountpoint), BTreeSet::from(["kept.html".into()]));
    m.stop();
    // The platform goes away; the remount still shows the account from the index, and does not
    // call it "not listed".
    platform
        .restart_after(Duration::from_millis(0), || {
            let out = mount_daemon(&m);
            assert!(out.status.success(), "{out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("not listed"), "{stdout}");
            assert_eq!(names(&m.mountpoint), BTreeSet::from(["kept.html".into()]));
            m.unmount();
        })
        .await;
}
