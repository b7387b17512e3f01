//! Side by side, in one run on loopback: `hyperclay mount` over the dev platform, `rclone mount`
//! (`--vfs-cache-mode full`) over the same files served by `rclone serve webdav`, and the mirror
//! directory read directly as the floor. The plain folder (`hyperclay mount DIR --folder`, its
//! own process on the same account, kept in sync in a folder of its own) is in the same run for
//! what it does differently: being ready, a save going up, a platform change coming down (its
//! reads are the local disk's). `bench/run` (or `cargo bench --bench mount -- [--quick]`)
//! prints the table for BENCHMARKS.md. Each figure: min / median / max over the runs, and the
//! ratio hyperclay / rclone of the medians (below 1 means hyperclay is faster or smaller).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    files_under, hyperclay_folder, hyperclay_mount, proc_mb, rclone_mount, rclone_webdav,
    start_platform, stop,
};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::{checksum, Event, NodeKind};
use hyperclay::remote::{subscribe, StreamItem, SILENCE_LIMIT};

/// Writes dirty pages out and drops the page cache (root only). False: not allowed here.
fn drop_page_cache() -> bool {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

/// Writes `content` to `path` (open, write, close), then waits for the platform's event that
/// the node holds it: the milliseconds from the close, or None past 5 s without it.
async fn save_until_saved(
    events: &mut tokio::sync::mpsc::Receiver<StreamItem>,
    path: PathBuf,
    content: &str,
) -> Option<f64> {
    let want = checksum(content.as_bytes());
    let bytes = content.to_string();
    tokio::task::spawn_blocking(move || std::fs::write(path, bytes))
        .await
        .unwrap()
        .unwrap();
    let closed = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(StreamItem::Event {
                event: Event::NodeSaved(s),
                ..
            })) if s.checksum.as_ref() == Some(&want) => {
                return Some(closed.elapsed().as_secs_f64() * 1000.0)
            }
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

fn find_count(dir: &Path) -> usize {
    let out = Command::new("find")
        .arg(dir)
        .args([
            "-type",
            "f",
            "-not",
            "-path",
            "*/sites-versions/*",
            "-not",
            "-path",
            "*/.hyperclay/*",
        ])
        .output()
        .unwrap();
    out.stdout.iter().filter(|b| **b == b'\n').count()
}

fn read_all(path: &Path) -> usize {
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let Ok(k) = f.read(&mut buf) else { return n };
        if k == 0 {
            return n;
        }
        n += k;
    }
}

#[derive(Default)]
struct Figure {
    name: String,
    unit: &'static str,
    lower_is_better: bool,
    /// hyperclay mount, rclone mount, the mirror, hyperclay folder.
    values: [Vec<f64>; 4],
}

/// The `p`th percentile (nearest rank).
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

fn cell(v: &[f64]) -> String {
    match stats(v) {
        Some((a, b, c)) if a == c => format!("{b:.1}"),
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1}"),
        None => "n/a".into(),
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (folders, per_folder, uploads, runs) = if quick {
        (100, 9, 1, 2)
    } else {
        (1000, 9, 3, 3)
    };
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start_platform(&dir.path().join("platform")).await;
    let url = running.url();
    // Folders nested up to 5 deep; sites of 5-200 KB; 20 MB uploads.
    for f in 0..folders {
        let mut parent = NodeId::ROOT;
        for level in 0..=(f % 5) {
            parent = match client
                .create(NodeKind::Folder, &format!("d{f}-{level}"), parent, None)
                .await
            {
                Ok(n) => n.id,
                Err(_) => break,
            };
            if level < f % 5 {
                continue;
            }
        }
        for s in 0..per_folder {
            // 5 KB to 200 KB, spread evenly.
            let line = format!("<p>{f}-{s}</p>\n");
            let bytes = 5_000 + (f * 7919 + s * 104_729) % 195_000;
            let html = line.repeat(bytes / line.len() + 1);
            client
                .create(
                    NodeKind::Site,
                    &format!("s{f}-{s}.html"),
                    parent,
                    Some(html.as_bytes()),
                )
                .await
                .unwrap();
        }
    }
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let up = client
        .create(NodeKind::Folder, "uploads", NodeId::ROOT, None)
        .await
        .unwrap();
    for i in 0..uploads {
        client
            .create(NodeKind::Upload, &format!("u{i}.bin"), up.id, Some(&big))
            .await
            .unwrap();
    }
    // The account, listed once: its size in nodes, files and bytes.
    let listing = client.nodes().await.unwrap().nodes;
    let nodes = listing.len();
    let files = listing.iter().filter(|n| n.kind.is_file()).count();
    let total_bytes: u64 = listing
        .iter()
        .filter(|n| n.kind.is_file())
        .filter_map(|n| n.size)
        .sum();
    let total_mb = total_bytes as f64 / 1e6;
    eprintln!("account: {nodes} nodes, {files} files");

    let home = dir.path().join("hc");
    let mirror = home.join("mirror");
    // Initial hydration into an empty mirror.
    let (child, mnt, _) = hyperclay_mount(&home, &url);
    let t = Instant::now();
    // Hydrated: every file there whole (temp files of downloads under way are dot-names, which
    // `files_under` skips; a count alone would stop while the big uploads still download).
    loop {
        let present = files_under(&mirror);
        let bytes: u64 = present
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        if present.len() >= files && bytes >= total_bytes {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let hydration = t.elapsed().as_secs_f64();
    stop(child, &mnt);
    // The plain folder's first start on the same account: every file downloaded into it.
    let folder_home = dir.path().join("hcf");
    let (child, folder, _) = hyperclay_folder(&folder_home, &url);
    let t = Instant::now();
    while files_under(&folder).len() < files
        || files_under(&folder)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum::<u64>()
            < total_bytes
    {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the folder never filled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let folder_hydration = t.elapsed().as_secs_f64();
    stop(child, &folder);

    // rclone serves a copy of the same files.
    let data = dir.path().join("rclone-data");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&mirror)
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(data.join(".hyperclay"));
    let _ = std::fs::remove_dir_all(data.join("sites-versions"));
    let (mut webdav, webdav_url) = rclone_webdav(&data);

    let mut figs: Vec<Figure> = Vec::new();
    let mut fig = |name: &str, unit: &'static str, lower: bool| {
        figs.push(Figure {
            name: name.into(),
            unit,
            lower_is_better: lower,
            ..Default::default()
        });
        figs.len() - 1
    };
    let save = fig(
        "save: close() to the backend holding the new content, 100 KB site",
        "ms",
        true,
    );
    let seen = fig(
        "a backend change until `cat` in the mount (the folder) shows it",
        "ms",
        true,
    );
    let ready = fig(
        "mount ready (hyperclay: with the whole tree listed; folder: and the folder compared)",
        "ms",
        true,
    );
    let find_first = fig(
        &format!("first `find -type f` after mount ({files} files)"),
        "ms",
        true,
    );
    let find_warm = fig("warm `find -type f`", "ms", true);
    let ls_lr = fig("`ls -lR` (warm)", "ms", true);
    let stat_storm = fig("`stat` of every file (warm)", "ms", true);
    let read_big_first = fig("read a 20 MB upload, first time, MB/s", "MB/s", false);
    let read_big_again = fig("read a 20 MB upload again, MB/s", "MB/s", false);
    let read_big_cold = fig(
        "read a 20 MB upload from the disk (page cache dropped first; root only), MB/s",
        "MB/s",
        false,
    );
    let read_small = fig("read 1,000 sites", "ms", true);
    let rss = fig("resident memory after the reads", "MB", true);

    for run in 0..runs {
        eprintln!("run {run}");
        let (hc, hc_mnt, hc_ready) = hyperclay_mount(&home, &url);
        let (rc, rc_mnt, rc_ready) = rclone_mount(dir.path(), &webdav_url);
        let (hf, _, hf_ready) = hyperclay_folder(&folder_home, &url);
        stop(hf, &folder);
        figs[ready].values[0].push(hc_ready.as_secs_f64() * 1000.0);
        figs[ready].values[1].push(rc_ready.as_secs_f64() * 1000.0);
        figs[ready].values[3].push(hf_ready.as_secs_f64() * 1000.0);
        for (i, root) in [hc_mnt.clone(), rc_mnt.clone(), mirror.clone()]
            .iter()
            .enumerate()
        {
            let mut listed = 0;
            figs[find_first].values[i].push(timed(|| listed = find_count(root)));
            if listed < files {
                eprintln!(
                    "note: {} listed {listed} of {files} files on its first find",
                    root.display()
                );
            }
            figs[find_warm].values[i].push(timed(|| {
                find_count(root);
            }));
            figs[ls_lr].values[i].push(timed(|| {
                Command::new("ls")
                    .arg("-lR")
                    .arg(root)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
            }));
            let all = files_under(root);
            figs[stat_storm].values[i].push(timed(|| {
                for p in &all {
                    let _ = std::fs::metadata(p);
                }
            }));
            let bigs: Vec<PathBuf> = (0..uploads)
                .map(|k| root.join(format!("uploads/u{k}.bin")))
                .collect();
            for b in &bigs {
                // A read that did not return the whole file is not a figure (rclone sometimes
                // answers 0 bytes here); it is reported as a note instead.
                let t = Instant::now();
                let got = read_all(b);
                let first = t.elapsed();
                let t = Instant::now();
                let again = read_all(b);
                let second = t.elapsed();
                if got == big.len() && again == big.len() {
                    figs[read_big_first].values[i]
                        .push(big.len() as f64 / first.as_secs_f64() / 1e6);
                    figs[read_big_again].values[i]
                        .push(big.len() as f64 / second.as_secs_f64() / 1e6);
                } else {
                    eprintln!(
                        "note: {} read {got} then {again} of {} bytes",
                        b.display(),
                        big.len()
                    );
                }
            }
            let sites: Vec<&PathBuf> = all
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "html"))
                .take(1000)
                .collect();
            figs[read_small].values[i].push(timed(|| {
                for p in &sites {
                    read_all(p);
                }
            }));
        }
        figs[rss].values[0].push(proc_mb(hc.id(), "VmRSS:"));
        figs[rss].values[1].push(proc_mb(rc.id(), "VmRSS:"));
        stop(rc, &rc_mnt);
        stop(hc, &hc_mnt);
    }

    // Save latency and platform-to-mount latency, each system its own way of knowing.
    let (hc, hc_mnt, _) = hyperclay_mount(&home, &url);
    let (rc, rc_mnt, _) = rclone_mount(dir.path(), &webdav_url);
    let (hf, _, _) = hyperclay_folder(&folder_home, &url);

    // Reads off the disk, last of the reads as they empty every cache: for a mount, its own
    // cache and the mirror's both dropped, as for the mirror.
    for _ in 0..runs {
        for (i, root) in [hc_mnt.clone(), rc_mnt.clone(), mirror.clone()]
            .iter()
            .enumerate()
        {
            for k in 0..uploads {
                if !drop_page_cache() {
                    break;
                }
                let t = Instant::now();
                let n = read_all(&root.join(format!("uploads/u{k}.bin")));
                if n == big.len() {
                    figs[read_big_cold].values[i].push(n as f64 / t.elapsed().as_secs_f64() / 1e6);
                }
            }
        }
    }
    let site_rel = files_under(&mirror)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .unwrap();
    let site_rel = site_rel.strip_prefix(&mirror).unwrap().to_path_buf();
    // The folder saves another site: each front door pulls what the other one saved, and waits
    // until it has before the other measures (so no pull runs beside a measured save).
    let folder_rel = files_under(&mirror)
        .into_iter()
        .map(|p| p.strip_prefix(&mirror).unwrap().to_path_buf())
        .find(|p| p.extension().is_some_and(|e| e == "html") && p != &site_rel)
        .unwrap();
    let listed = client.nodes().await.unwrap().nodes;
    let node_of = |rel: &Path| {
        listed
            .iter()
            .find(|n| n.full_path() == rel.to_string_lossy())
            .unwrap()
            .id
    };
    let (node, folder_node) = (node_of(&site_rel), node_of(&folder_rel));
    // Waits (5 s at most) until `path` holds `content`; whether it did.
    let shows = |path: PathBuf, content: &[u8]| {
        tokio::task::block_in_place(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if std::fs::read(&path).is_ok_and(|b| b == content) {
                    return true;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            false
        })
    };
    let mut events = subscribe(client.clone(), None, SILENCE_LIMIT);
    while !matches!(events.recv().await, Some(StreamItem::Connected { .. })) {}
    let body = "<p>local save</p>\n".repeat(100 * 1024 / 18);
    let saves = if quick { 30 } else { 200 };
    for i in 0..saves {
        let content = format!("{body}<!-- hc {i} -->");
        let ms = save_until_saved(&mut events, hc_mnt.join(&site_rel), &content).await;
        figs[save].values[0]
            .push(ms.unwrap_or_else(|| panic!("hyperclay save {i} did not arrive")));
        if !shows(folder.join(&site_rel), content.as_bytes()) {
            eprintln!("note: the folder did not show the mount's save {i} within 5 s");
        }
        // The plain folder: a program writes the file, the watcher sees it closed.
        let content = format!("{body}<!-- hf {i} -->");
        let ms = save_until_saved(&mut events, folder.join(&folder_rel), &content).await;
        figs[save].values[3]
            .push(ms.unwrap_or_else(|| panic!("hyperclay folder save {i} did not arrive")));
        if !shows(hc_mnt.join(&folder_rel), content.as_bytes()) {
            eprintln!("note: the mount did not show the folder's save {i} within 5 s");
        }
        // rclone: the webdav backend's file.
        let content = format!("{body}<!-- rc {i} -->");
        std::fs::write(rc_mnt.join(&site_rel), &content).unwrap();
        let closed = Instant::now();
        let backend = data.join(&site_rel);
        while std::fs::read(&backend)
            .map(|b| b != content.as_bytes())
            .unwrap_or(true)
        {
            if closed.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        figs[save].values[1].push(closed.elapsed().as_secs_f64() * 1000.0);
    }
    for i in 0..if quick { 10 } else { 30 } {
        let content = format!("<p>platform change {i}</p>");
        let t = Instant::now();
        client
            .put_content(node, NodeKind::Site, content.clone().into(), None)
            .await
            .unwrap();
        let path = hc_mnt.join(&site_rel);
        while std::fs::read(&path)
            .map(|b| b != content.as_bytes())
            .unwrap_or(true)
        {
            assert!(t.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        figs[seen].values[0].push(t.elapsed().as_secs_f64() * 1000.0);
        if !shows(folder.join(&site_rel), content.as_bytes()) {
            eprintln!("note: the folder did not show platform change {i} within 5 s");
        }
        // The plain folder: the file in the folder replaced.
        let content = format!("<p>platform change {i} for the folder</p>");
        let t = Instant::now();
        client
            .put_content(folder_node, NodeKind::Site, content.clone().into(), None)
            .await
            .unwrap();
        let path = folder.join(&folder_rel);
        while std::fs::read(&path)
            .map(|b| b != content.as_bytes())
            .unwrap_or(true)
        {
            assert!(t.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        figs[seen].values[3].push(t.elapsed().as_secs_f64() * 1000.0);
        if !shows(hc_mnt.join(&folder_rel), content.as_bytes()) {
            eprintln!("note: the mount did not show platform change {i} within 5 s");
        }
        let content = format!("<p>backend change {i}</p>");
        std::fs::write(data.join(&site_rel), &content).unwrap();
        let t = Instant::now();
        let path = rc_mnt.join(&site_rel);
        let mut got = false;
        while t.elapsed() < Duration::from_secs(5) {
            if std::fs::read(&path)
                .map(|b| b == content.as_bytes())
                .unwrap_or(false)
            {
                got = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if got {
            figs[seen].values[1].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    stop(rc, &rc_mnt);
    stop(hc, &hc_mnt);
    stop(hf, &folder);
    let _ = webdav.kill();
    let _ = webdav.wait();
    running.stop().await;

    println!("Account: {nodes} nodes ({files} files, {total_mb:.0} MB). Initial hydration into an empty mirror: {hydration:.2} s ({:.0} MB/s); into an empty plain folder: {folder_hydration:.2} s ({:.0} MB/s).", total_mb / hydration, total_mb / folder_hydration);
    println!();
    for (what, f) in [
        ("saves", &figs[save]),
        ("platform changes seen", &figs[seen]),
    ] {
        let line = |v: &[f64]| match (
            percentile(v, 50.0),
            percentile(v, 95.0),
            percentile(v, 99.0),
        ) {
            (Some(a), Some(b), Some(c)) => format!(
                "p50 {a:.1}, p95 {b:.1}, p99 {c:.1} ms ({} samples)",
                v.len()
            ),
            _ => "no figure".into(),
        };
        println!(
            "{what}: hyperclay mount {}; hyperclay folder {}; rclone {}.",
            line(&f.values[0]),
            line(&f.values[3]),
            line(&f.values[1])
        );
    }
    println!();
    println!("| figure | hyperclay | hyperclay folder | rclone mount | mirror (local disk) | hyperclay / rclone |");
    println!("|---|---|---|---|---|---|");
    for f in &figs {
        let ratio = match (stats(&f.values[0]), stats(&f.values[1])) {
            (Some((_, a, _)), Some((_, b, _))) if b > 0.0 => format!(
                "{:.2}{}",
                a / b,
                if (a < b) == f.lower_is_better {
                    " (better)"
                } else {
                    ""
                }
            ),
            (_, None) => "no rclone figure (see the notes)".into(),
            _ => "".into(),
        };
        println!(
            "| {} ({}) | {} | {} | {} | {} | {ratio} |",
            f.name,
            f.unit,
            cell(&f.values[0]),
            cell(&f.values[3]),
            cell(&f.values[1]),
            cell(&f.values[2])
        );
    }
}
