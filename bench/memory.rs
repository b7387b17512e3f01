//! Resident memory of `hyperclay mount` with 10,000 and 100,000 nodes (targets: at most 48 MB and
//! 300 MB), with what the same runs show about mount-ready and listing times at that size.
//! `cargo bench --bench memory` (part of `bench/run`); `-- --only 10000` for one size.
//!
//! Each account: folders of 100 nodes (one in ten nested a level deeper), sites of 1-3 KB, seeded
//! through the API 32 requests at a time into the dev platform in this process. The mount runs
//! as its own process (the release binary); its memory is read from /proc: after it is ready,
//! after every copy is hydrated and the whole tree was listed and stat'ed through the mount (the
//! kernel then holds an inode of ours for every node), and its peak (VmHWM).

mod common;

use std::time::{Duration, Instant};

use common::{files_under, hyperclay_mount, proc_mb, seed, start_platform, stop};

async fn one_size(nodes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start_platform(&dir.path().join("platform")).await;
    let t = Instant::now();
    let files = seed(&client, nodes).await;
    let total = client.nodes().await.unwrap().nodes.len();
    eprintln!(
        "seeded {total} nodes ({files} files) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let home = dir.path().join("hc");
    let url = running.url();
    let (child, first_ready) = tokio::task::spawn_blocking({
        let home = home.clone();
        move || {
            let (child, _, ready) = hyperclay_mount(&home, &url);
            (child, ready)
        }
    })
    .await
    .unwrap();
    let pid = child.id();
    let mnt = home.join("mnt");
    let at_ready = proc_mb(pid, "VmRSS:");
    let t = Instant::now();
    let mirror = home.join("mirror");
    let hydrated = tokio::task::spawn_blocking(move || {
        while files_under(&mirror).len() < files {
            assert!(t.elapsed() < Duration::from_secs(600), "hydration stalled");
            std::thread::sleep(Duration::from_millis(500));
        }
        t.elapsed()
    })
    .await
    .unwrap();
    let t = Instant::now();
    let listed = {
        let mnt = mnt.clone();
        tokio::task::spawn_blocking(move || files_under(&mnt).len())
            .await
            .unwrap()
    };
    let list_time = t.elapsed();
    assert_eq!(listed, files, "the mount lists every file");
    let after = proc_mb(pid, "VmRSS:");
    let peak = proc_mb(pid, "VmHWM:");
    stop(child, &mnt);
    // A remount: the index is warm, the mirror full.
    let (child, warm_ready) = tokio::task::spawn_blocking({
        let home = home.clone();
        let url = running.url();
        move || {
            let (child, _, ready) = hyperclay_mount(&home, &url);
            (child, ready)
        }
    })
    .await
    .unwrap();
    let t = Instant::now();
    let relisted = {
        let mnt = mnt.clone();
        tokio::task::spawn_blocking(move || files_under(&mnt).len())
            .await
            .unwrap()
    };
    let relist_time = t.elapsed();
    assert_eq!(relisted, files);
    let remount_rss = proc_mb(child.id(), "VmRSS:");
    stop(child, &mnt);
    println!(
        "| {total} | {at_ready:.1} | {after:.1} | {peak:.1} | {remount_rss:.1} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} |",
        first_ready.as_secs_f64() * 1000.0,
        warm_ready.as_secs_f64() * 1000.0,
        hydrated.as_secs_f64(),
        list_time.as_secs_f64() * 1000.0,
        relist_time.as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only: Option<usize> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    println!("| nodes | RSS ready (MB) | RSS after hydration and a full listing (MB) | peak (MB) | RSS after a warm remount and listing (MB) | first mount ready (ms) | warm remount ready (ms) | hydration (s) | first listing walk (ms) | warm listing walk (ms) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for nodes in [10_000, 100_000] {
        if only.is_some_and(|o| o != nodes) {
            continue;
        }
        one_size(nodes).await;
    }
}
