//! Concurrency, size limits and durability of the dev platform.

mod common;

use std::time::Duration;

use common::{Mode, PlatformProcess, TestPlatform, KEY};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::{checksum, NodeKind, MAX_CONTENT_BYTES};
use hyperclay::remote::RemoteError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writers_twenty_writes_each_lose_nothing() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let site = c
        .create(NodeKind::Site, "busy.html", NodeId::ROOT, Some(b"initial"))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for w in 0..50 {
        let c = p.client();
        writers.push(tokio::spawn(async move {
            for i in 0..20 {
                c.put_content(
                    site.id,
                    NodeKind::Site,
                    format!("writer {w} write {i}").into(),
                    None,
                )
                .await
                .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let final_content = String::from_utf8(c.content(site.id).await.unwrap().1).unwrap();
    let (w, i) = final_content
        .strip_prefix("writer ")
        .and_then(|r| r.split_once(" write "))
        .expect("the final content is one of the writes");
    assert!(w.parse::<u32>().unwrap() < 50 && i.parse::<u32>().unwrap() < 20);
    assert_eq!(
        c.versions(site.id).await.unwrap().len(),
        1000,
        "one version per overwrite"
    );
    let mut seqs = Vec::new();
    let mut since = 0;
    loop {
        let page = c.changes(since, 400).await.unwrap();
        seqs.extend(page.changes.iter().map(|c| c.seq));
        since = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        seqs,
        (1..=1001).collect::<Vec<u64>>(),
        "strictly increasing, no gaps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_over_20_mib_is_refused_with_413() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let up = c
        .create(NodeKind::Upload, "big.bin", NodeId::ROOT, None)
        .await
        .unwrap();
    let exactly = vec![7u8; MAX_CONTENT_BYTES as usize];
    let put = c
        .put_content(up.id, NodeKind::Upload, exactly.clone().into(), None)
        .await
        .unwrap();
    assert_eq!(put.size, MAX_CONTENT_BYTES);
    let over = vec![7u8; MAX_CONTENT_BYTES as usize + 1];
    let http = reqwest::Client::new();
    let raw = http
        .put(format!("{}/_/sync/nodes/{}/content?raw=1", p.url(), up.id))
        .header("X-API-Key", KEY)
        .body(over.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 413);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "too_large");
    // The same through JSON (base64), and on create.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&over);
    let json = http
        .post(format!("{}/_/sync/nodes", p.url()))
        .header("X-API-Key", KEY)
        .json(&serde_json::json!({"type": "upload", "name": "big2.bin", "parentId": 0, "content": b64}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 413);
    // The client refuses before sending, with the same error.
    assert_eq!(
        c.put_content(up.id, NodeKind::Upload, over.into(), None)
            .await
            .unwrap_err(),
        RemoteError::TooLarge
    );
    assert_eq!(
        c.content(up.id).await.unwrap().1.len(),
        exactly.len(),
        "nothing was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gigabyte_streamed_body_does_not_grow_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let platform = PlatformProcess::spawn(dir.path(), &[]);
    let c = platform.client();
    let up = c
        .create(NodeKind::Upload, "huge.bin", NodeId::ROOT, None)
        .await
        .unwrap();
    let before = platform.rss();
    // 1 GiB in 1 MiB chunks, chunked encoding: no Content-Length to refuse it up front.
    let chunk = bytes::Bytes::from(vec![1u8; 1 << 20]);
    let body =
        futures::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let url = format!("{}/_/sync/nodes/{}/content?raw=1", platform.url, up.id);
    let answer = reqwest::Client::new()
        .put(url)
        .header("X-API-Key", KEY)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    match answer {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may close the connection while the client is still sending.
        Err(e) => assert!(e.is_request() || e.is_body() || e.is_connect(), "{e}"),
    }
    let after = platform.rss();
    assert!(after < 100 << 20, "resident {} MB", after >> 20);
    assert!(
        after < before + (60 << 20),
        "grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );
    // A declared Content-Length over the limit is refused before any byte is read.
    let declared = reqwest::Client::new()
        .put(format!(
            "{}/_/sync/nodes/{}/content?raw=1",
            platform.url, up.id
        ))
        .header("X-API-Key", KEY)
        .header("Content-Length", (1u64 << 30).to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 1024]))),
        )))
        .send()
        .await;
    if let Ok(r) = declared {
        assert_eq!(r.status(), 413);
    }
    assert_eq!(
        c.content(up.id).await.unwrap().1.len(),
        0,
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_kill_9_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = PlatformProcess::spawn(dir.path(), &[]);
    // Restarts listen on the same address, so one client follows the platform across them.
    let addr = platform.addr();
    let c = platform.client();
    let site = c
        .create(NodeKind::Site, "keep.html", NodeId::ROOT, Some(b"0"))
        .await
        .unwrap();
    let folder = c
        .create(NodeKind::Folder, "kept", NodeId::ROOT, None)
        .await
        .unwrap();
    let mut acknowledged = 0u32;
    for round in 0..3 {
        // Writers run flat out; the platform is killed under them.
        let writer = {
            let c = c.clone();
            tokio::spawn(async move {
                let mut last = None;
                for i in 0.. {
                    let content = format!("round {round} write {i}");
                    match c
                        .put_content(site.id, NodeKind::Site, content.clone().into(), None)
                        .await
                    {
                        Ok(put) => {
                            assert_eq!(put.checksum, checksum(content.as_bytes()));
                            last = Some((i, content));
                        }
                        Err(_) => return last,
                    }
                }
                last
            })
        };
        tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
        platform.kill9();
        let last = writer
            .await
            .unwrap()
            .expect("some writes were acknowledged");
        let count = last.0;
        acknowledged += count + 1;
        platform = PlatformProcess::spawn_on(dir.path(), &addr, &[]);
        let c2 = platform.client();
        let (_, bytes) = c2.content(site.id).await.unwrap();
        // The last acknowledged write is there (one unacknowledged write may have landed after it).
        let stored = String::from_utf8(bytes).unwrap();
        let next = format!("round {round} write {}", count + 1);
        assert!(
            stored == last.1 || stored == next,
            "stored {stored:?}, last acknowledged {last:?}"
        );
        let versions = c2.versions(site.id).await.unwrap().len() as u32;
        assert!(
            versions >= acknowledged,
            "{versions} versions for {acknowledged} acknowledged writes"
        );
        assert!(c2
            .nodes()
            .await
            .unwrap()
            .nodes
            .iter()
            .any(|n| n.id == folder.id));
    }
    // A clean restart (SIGTERM) keeps everything too.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(platform.child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    platform.child.wait().unwrap();
    let platform = PlatformProcess::spawn(dir.path(), &[]);
    assert_eq!(platform.client().nodes().await.unwrap().nodes.len(), 2);
}
