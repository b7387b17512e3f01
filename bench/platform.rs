//! Benchmark of the dev platform and the client on loopback (issue: the platform's sync API).
//! `cargo bench --bench platform` prints a Markdown table for BENCHMARKS.md. Each figure is
//! measured for the Part 2 path the client uses (raw bytes) beside the Part 1 fallback (base64 JSON)
//! in the same run.

use std::time::{Duration, Instant};

use hyperclay::platform::{self, PlatformConfig};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::remote::{Client, Credential};

const KEY: &str = "hcsk_bench";

struct Stats {
    min: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        min: samples[0],
        p50: at(0.5),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn start(dir: &std::path::Path, plain: bool) -> (platform::RunningPlatform, Client) {
    let mut config = PlatformConfig::new(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.api_key = Some(KEY.into());
    config.plain = plain;
    let running = platform::start(config).await.unwrap();
    let client = Client::new(&running.url(), Credential::ApiKey(KEY.into())).unwrap();
    client.status().await.unwrap();
    (running, client)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(&dir.path().join("p"), false).await;
    // 10,000 nodes: 1,000 folders of 9 small sites.
    let started = Instant::now();
    for f in 0..1000 {
        let folder = client
            .create(NodeKind::Folder, &format!("f{f}"), NodeId::ROOT, None)
            .await
            .unwrap();
        for s in 0..9 {
            let html = format!("<!doctype html><p>site {f}-{s}</p>");
            client
                .create(
                    NodeKind::Site,
                    &format!("s{f}-{s}.html"),
                    folder.id,
                    Some(html.as_bytes()),
                )
                .await
                .unwrap();
        }
    }
    eprintln!(
        "seeded 10,000 nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();

    let mut samples = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let listing = client.nodes().await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(listing.nodes.len(), 10_000);
    }
    let s = stats(samples);
    rows.push(format!(
        "| `GET nodes`, 10,000 nodes (20 runs) | {} | {} | {} | {} | under 100 ms |",
        ms(s.min),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    ));

    let html: String = "<p>hyperclay</p>\n".repeat(100 * 1024 / 17);
    let site = client
        .create(
            NodeKind::Site,
            "bench.html",
            NodeId::ROOT,
            Some(html.as_bytes()),
        )
        .await
        .unwrap();
    let (_plain_running, plain_client) = start(&dir.path().join("plain"), true).await;
    let plain_site = plain_client
        .create(
            NodeKind::Site,
            "bench.html",
            NodeId::ROOT,
            Some(html.as_bytes()),
        )
        .await
        .unwrap();
    for (label, c, id) in [
        ("raw", &client, site.id),
        ("JSON, `--plain`", &plain_client, plain_site.id),
    ] {
        let mut samples = Vec::new();
        for i in 0..300 {
            let body = format!("{html}<!-- {i} -->");
            let t = Instant::now();
            c.put_content(id, NodeKind::Site, body.into(), None)
                .await
                .unwrap();
            samples.push(t.elapsed());
        }
        let s = stats(samples);
        rows.push(format!(
            "| `PUT` 100 KB site, {label} (300 runs) | {} | {} | {} | {} | p50 under 5 ms |",
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        ));
    }

    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let up = client
        .create(NodeKind::Upload, "big.bin", NodeId::ROOT, Some(&big))
        .await
        .unwrap();
    let plain_up = plain_client
        .create(NodeKind::Upload, "big.bin", NodeId::ROOT, Some(&big))
        .await
        .unwrap();
    for (label, c, id) in [
        ("raw", &client, up.id),
        ("base64 JSON, `--plain`", &plain_client, plain_up.id),
    ] {
        let mut rates = Vec::new();
        for _ in 0..10 {
            let mut sink = tokio::io::sink();
            let t = Instant::now();
            let meta = c.download(id, &mut sink).await.unwrap();
            assert_eq!(meta.size, big.len() as u64);
            rates.push(big.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        rows.push(format!(
            "| `GET` 20 MB upload, {label} (10 runs), MB/s | {:.0} | {:.0} | | {:.0} | over 500 MB/s |",
            rates[0], rates[rates.len() / 2], rates[rates.len() - 1]
        ));
    }
    println!("| figure | min (ms) | p50 (ms) | p99 (ms) | max (ms) | target |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    running.stop().await;
}
