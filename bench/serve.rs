//! The local server (issue: the local static server): requests per second for a 50 KB app with
//! `wrk`, beside Python's `http.server` serving the same mirror (a plain static server), and a
//! save's latency from `POST /save/NAME` answering to the platform holding the new checksum
//! (seen on its event stream). `cargo bench --bench serve` prints the table for BENCHMARKS.md.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyperclay::protocol::NodeId;
use hyperclay::protocol::{checksum, Event, NodeKind};
use hyperclay::remote::{subscribe, StreamItem, SILENCE_LIMIT};

const NODES: usize = 10_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requests per second that `wrk` reports for `url`.
fn wrk(url: &str) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d5s", url])
        .output()
        .expect("wrk is installed (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = common::start_platform(&dir.path().join("platform")).await;
    // An account of 10,000 nodes around the app, so that finding it by name is a real search.
    let files = common::seed(&client, NODES).await;
    let app = format!(
        "<!doctype html><html><body>{}</body></html>",
        "<p>hyperclay app</p>\n".repeat(50 * 1024 / 21)
    );
    let folder = client
        .create(NodeKind::Folder, "apps", NodeId::ROOT, None)
        .await
        .unwrap();
    let site = client
        .create(NodeKind::Site, "app.html", folder.id, Some(app.as_bytes()))
        .await
        .unwrap();

    let home = dir.path().join("hc");
    let mnt = home.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let port = free_port();
    let mut mount = common::mount_command(&home, &running.url())
        .args(["--serve-port", &port.to_string()])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !home.join("mirror/apps/app.html").exists()
        || common::files_under(&home.join("mirror")).len() < files + 1
    {
        assert!(t.elapsed() < Duration::from_secs(60), "hydration");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server alone, on a copy of the mirror (the mount owns its mirror: `serve` on it is
    // refused): no mount, no index.
    let alone_mirror = dir.path().join("alone-mirror");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(home.join("mirror"))
        .arg(&alone_mirror)
        .status()
        .unwrap();
    assert!(copied.success(), "copying the mirror");
    let alone_port = free_port();
    let mut alone = Command::new(env!("CARGO_BIN_EXE_hyperclay"))
        .args(["serve", "--port", &alone_port.to_string(), "--mirror"])
        .arg(&alone_mirror)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let py_port = free_port();
    let mut python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &py_port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(home.join("mirror"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let ours = wrk(&format!("http://127.0.0.1:{port}/app"));
    let ours_exact = wrk(&format!("http://127.0.0.1:{port}/apps/app.html"));
    let alone_name = wrk(&format!("http://127.0.0.1:{alone_port}/app"));
    let alone_exact = wrk(&format!("http://127.0.0.1:{alone_port}/apps/app.html"));
    let theirs = wrk(&format!("http://127.0.0.1:{py_port}/apps/app.html"));

    let mut events = subscribe(client.clone(), None, SILENCE_LIMIT);
    while !matches!(events.recv().await, Some(StreamItem::Connected { .. })) {}
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for i in 0..100 {
        let body = format!("{app}<!-- save {i} -->");
        let want = checksum(body.as_bytes());
        let answer = http
            .post(format!("http://127.0.0.1:{port}/save/app"))
            .body(body)
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        assert!(answer.status().is_success());
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(StreamItem::Event {
                    event: Event::NodeSaved(s),
                    ..
                })) if s.node_id == site.id && s.checksum.as_ref() == Some(&want) => break,
                Ok(Some(_)) => {}
                _ => panic!("save {i} did not reach the platform"),
            }
        }
        latencies.push(answered.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];

    for child in [&mut python, &mut alone] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mount.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = mount.wait();
    running.stop().await;

    println!("Account: {NODES} nodes ({files} sites of 1-3 KB in folders of 100) and the app.");
    println!();
    println!("| figure | hyperclay mount's server | hyperclay serve (no mount) | python3 -m http.server (same file) |");
    println!("|---|---|---|---|");
    println!("| GET a 50 KB app by name (`/app`), requests/s (wrk -t2 -c16 -d5s) | {ours:.0} | {alone_name:.0} | |");
    println!("| GET a 50 KB app by path (`/apps/app.html`), requests/s | {ours_exact:.0} | {alone_exact:.0} | {theirs:.0} |");
    println!(
        "| save: `POST /save/app` answered to the platform holding it, 100 saves | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | | |",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
