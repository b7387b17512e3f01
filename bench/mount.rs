//! Benchmark of the mount (issues: the mount, writing through it). `cargo bench --bench mount`
//! [-- --quick] prints a Markdown table for BENCHMARKS.md. Everything on loopback: the dev
//! platform in-process, `hyperclay mount` (release) as a child process, and the mirror directory
//! read directly as the floor.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperclay::platform::{self, PlatformConfig};
use hyperclay::protocol::{checksum, Event, NodeKind};
use hyperclay::remote::{subscribe, Client, Credential, StreamItem};

const KEY: &str = "hcsk_bench";

struct Mount {
    child: Child,
    mountpoint: PathBuf,
}

impl Mount {
    fn start(home: &Path, url: &str) -> (Mount, Duration) {
        let mountpoint = home.join("mnt");
        std::fs::create_dir_all(&mountpoint).unwrap();
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_hyperclay"))
            .arg("mount")
            .arg(&mountpoint)
            .arg("--mirror")
            .arg(home.join("mirror"))
            .env("HYPERCLAY_HOME", home.join("home"))
            .env("HYPERCLAY_URL", url)
            .env("HYPERCLAY_API_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !hyperclay::fs::is_mounted(&mountpoint) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ready = started.elapsed();
        (Mount { child, mountpoint }, ready)
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        kb / 1024.0
    }

    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap();
    }
}

fn count_files(dir: &Path) -> usize {
    let out = Command::new("find")
        .arg(dir)
        .args(["-type", "f"])
        .output()
        .unwrap();
    out.stdout.iter().filter(|b| **b == b'\n').count()
}

fn pct(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn read_all(path: &Path) -> (usize, Duration) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut total = 0;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    (total, t.elapsed())
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (folders, per_folder) = if quick { (100, 9) } else { (1000, 9) };
    let dir = tempfile::tempdir().unwrap();
    let mut config = PlatformConfig::new(dir.path().join("platform"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.api_key = Some(KEY.into());
    let running = platform::start(config).await.unwrap();
    let url = running.url();
    let client = Arc::new(Client::new(&url, Credential::ApiKey(KEY.into())).unwrap());
    let html = "<p>hyperclay</p>\n".repeat(300);
    for f in 0..folders {
        let top = client
            .create(NodeKind::Folder, &format!("f{f}"), 0, None)
            .await
            .unwrap();
        for s in 0..per_folder {
            client
                .create(
                    NodeKind::Site,
                    &format!("s{f}-{s}.html"),
                    top.id,
                    Some(html.as_bytes()),
                )
                .await
                .unwrap();
        }
    }
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let uploads = client
        .create(NodeKind::Folder, "big", 0, None)
        .await
        .unwrap();
    for i in 0..3 {
        client
            .create(
                NodeKind::Upload,
                &format!("u{i}.bin"),
                uploads.id,
                Some(&big),
            )
            .await
            .unwrap();
    }
    let nodes = folders * (per_folder + 1) + 4;
    let files = folders * per_folder + 3;
    let home = dir.path().join("m");
    let mut rows: Vec<String> = Vec::new();

    // First mount: the listing arrives and everything is fetched into the mirror.
    let (m, _) = Mount::start(&home, &url);
    let t = Instant::now();
    while count_files(&home.join("mirror")) < files {
        std::thread::sleep(Duration::from_millis(50));
    }
    let hydration = t.elapsed();
    let total_mb = (files - 3) as f64 * html.len() as f64 / 1e6 + 3.0 * big.len() as f64 / 1e6;
    rows.push(format!(
        "| initial hydration of {nodes} nodes ({total_mb:.0} MB) into an empty mirror | {:.2} s ({:.0} MB/s) | |",
        hydration.as_secs_f64(),
        total_mb / hydration.as_secs_f64()
    ));
    m.stop();

    // Remount over the index: ready time, first and warm find, memory.
    let mut ready = Vec::new();
    let mut first_find = Vec::new();
    let mut warm_find = Vec::new();
    let mut mirror_find = Vec::new();
    let mut rss = 0.0;
    for _ in 0..5 {
        let (m, r) = Mount::start(&home, &url);
        ready.push(r.as_secs_f64() * 1000.0);
        let t = Instant::now();
        assert_eq!(count_files(&m.mountpoint), files);
        first_find.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        assert_eq!(count_files(&m.mountpoint), files);
        warm_find.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        count_files(&home.join("mirror"));
        mirror_find.push(t.elapsed().as_secs_f64() * 1000.0);
        rss = m.rss_mb();
        m.stop();
    }
    let row = |name: &str, v: &Vec<f64>, target: &str| {
        format!(
            "| {name} | {:.1} / {:.1} / {:.1} ms | {target} |",
            pct(v.clone(), 0.0),
            pct(v.clone(), 0.5),
            pct(v.clone(), 1.0)
        )
    };
    rows.push(row(
        &format!("mount ready, {nodes} nodes in the index"),
        &ready,
        "under 1 s",
    ));
    rows.push(row(
        &format!("first `find -type f` after mount ({files} files)"),
        &first_find,
        "under 0.5 s",
    ));
    rows.push(row("warm `find -type f`", &warm_find, "under 0.1 s"));
    rows.push(row(
        "`find -type f` on the mirror directly (local disk, the floor)",
        &mirror_find,
        "",
    ));

    let (m, _) = Mount::start(&home, &url);
    std::thread::sleep(Duration::from_millis(500));
    rss = rss.max(m.rss_mb());

    // Reads of hydrated 20 MB uploads: through the mount (first open, then again) and the mirror.
    let cold = drop_caches();
    let mut through = Vec::new();
    let mut again = Vec::new();
    let mut direct = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            let name = format!("big/u{i}.bin");
            let (n, t) = read_all(&m.mountpoint.join(&name));
            assert_eq!(n, big.len());
            if round == 0 {
                through.push(n as f64 / t.as_secs_f64() / 1e6);
            } else {
                again.push(n as f64 / t.as_secs_f64() / 1e6);
            }
            let (n, t) = read_all(&home.join("mirror").join(&name));
            direct.push(n as f64 / t.as_secs_f64() / 1e6);
        }
    }
    let mbs = |v: &Vec<f64>| {
        format!(
            "{:.0} / {:.0} / {:.0} MB/s",
            pct(v.clone(), 0.0),
            pct(v.clone(), 0.5),
            pct(v.clone(), 1.0)
        )
    };
    rows.push(format!(
        "| read 20 MB upload through the mount, first open{} | {} | |",
        if cold { " (page cache dropped)" } else { "" },
        mbs(&through)
    ));
    rows.push(format!(
        "| read 20 MB upload through the mount, opened again | {} | at least 70% of the mirror |",
        mbs(&again)
    ));
    rows.push(format!(
        "| read 20 MB upload from the mirror directly | {} | |",
        mbs(&direct)
    ));

    // Platform change to visible in the mount, with the stream.
    let target_path = m.mountpoint.join("f0/s0-0.html");
    let node = client
        .nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.name == "s0-0.html")
        .unwrap()
        .id;
    let mut visible = Vec::new();
    for i in 0..100 {
        let content = format!("<p>remote change {i}</p>");
        let t = Instant::now();
        client
            .put_content(node, NodeKind::Site, content.clone().into(), None)
            .await
            .unwrap();
        loop {
            if std::fs::read(&target_path)
                .map(|b| b == content.as_bytes())
                .unwrap_or(false)
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "change {i} not seen");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        visible.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(format!(
        "| platform change to visible in the mount (stream), 100 changes | p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms | p95 at most 50 ms |",
        pct(visible.clone(), 0.5),
        pct(visible.clone(), 0.95),
        pct(visible.clone(), 1.0)
    ));

    // Save latency: close() returning to the platform holding the new checksum (seen on its stream).
    let mut events = subscribe(client.clone(), None);
    loop {
        if let Some(StreamItem::Connected { .. }) = events.recv().await {
            break;
        }
    }
    let file = m.mountpoint.join("f1/s1-0.html");
    let body = "<p>local save</p>\n".repeat(100 * 1024 / 18);
    let mut save = Vec::new();
    let saves = if quick { 50 } else { 200 };
    for i in 0..saves {
        let content = format!("{body}<!-- {i} -->");
        let want = checksum(content.as_bytes());
        let path = file.clone();
        let c2 = content.clone();
        tokio::task::spawn_blocking(move || std::fs::write(path, c2))
            .await
            .unwrap()
            .unwrap();
        let closed = Instant::now();
        let mut seen: HashMap<String, ()> = HashMap::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(StreamItem::Event {
                    event: Event::NodeSaved(s),
                    ..
                })) => {
                    if s.checksum.as_deref() == Some(want.as_str()) {
                        break;
                    }
                    seen.insert(s.checksum.unwrap_or_default(), ());
                }
                Ok(Some(_)) => {}
                _ => panic!("save {i} did not reach the platform"),
            }
        }
        save.push(closed.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(format!(
        "| save to platform, close() to the new checksum, 100 KB site, {saves} saves | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | p50 at most 10 ms, p99 at most 50 ms |",
        pct(save.clone(), 0.5),
        pct(save.clone(), 0.99),
        pct(save.clone(), 1.0)
    ));
    rss = rss.max(m.rss_mb());
    rows.push(format!(
        "| resident memory of the mount, {nodes} nodes (max seen) | {rss:.1} MB | at most 48 MB |"
    ));
    m.stop();
    running.stop().await;

    println!("| figure | min / median / max (or as stated) | target |");
    println!("|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
