//! The event stream: ids, replay after a disconnect, echo to every subscriber, pings, and the
//! client's own reconnection.

mod common;

use std::time::Duration;

use common::{Mode, PlatformProcess, TestPlatform};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::{Event, NodeKind};
use hyperclay::remote::{subscribe, StreamItem, SILENCE_LIMIT};
use tokio::sync::mpsc::Receiver;

async fn next(rx: &mut Receiver<StreamItem>) -> StreamItem {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an item within 10 s")
        .expect("the stream is open")
}

/// The next change, skipping connection notices.
async fn next_event(rx: &mut Receiver<StreamItem>) -> (Option<u64>, Event) {
    loop {
        if let StreamItem::Event { seq, event } = next(rx).await {
            return (seq, event);
        }
    }
}

async fn connected(rx: &mut Receiver<StreamItem>) -> bool {
    loop {
        if let StreamItem::Connected { replayed } = next(rx).await {
            return replayed;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_changes_missed_while_disconnected_arrive_in_order_once() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let mut rx = subscribe(c.clone(), None, SILENCE_LIMIT);
    assert!(!connected(&mut rx).await);
    let site = c
        .create(NodeKind::Site, "live.html", NodeId::ROOT, Some(b"0"))
        .await
        .unwrap();
    let (seq, event) = next_event(&mut rx).await;
    assert_eq!(seq, Some(1));
    let Event::NodeSaved(saved) = event else {
        panic!("{event:?}")
    };
    assert_eq!(
        (saved.node_id, saved.content.as_deref()),
        (site.id, Some("0")),
        "sites carry their HTML"
    );
    drop(rx);

    for i in 1..=1000 {
        c.put_content(site.id, NodeKind::Site, format!("{i}").into(), None)
            .await
            .unwrap();
    }
    let mut rx = subscribe(c.clone(), Some(1), SILENCE_LIMIT);
    assert!(connected(&mut rx).await, "a Part 2 platform replays");
    for expected in 2..=1001u64 {
        let (seq, event) = next_event(&mut rx).await;
        assert_eq!(seq, Some(expected), "in order, none twice, none missed");
        assert_eq!(event.node_id(), Some(site.id));
    }
    // Then live, with no duplicate of the replay.
    c.put_content(site.id, NodeKind::Site, "live".into(), None)
        .await
        .unwrap();
    let (seq, event) = next_event(&mut rx).await;
    assert_eq!(seq, Some(1002));
    let Event::NodeSaved(saved) = event else {
        panic!()
    };
    assert_eq!(saved.content.as_deref(), Some("live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_change_including_its_own() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let mut a = subscribe(c.clone(), None, SILENCE_LIMIT);
    let mut b = subscribe(p.client(), None, SILENCE_LIMIT);
    connected(&mut a).await;
    connected(&mut b).await;
    let f = c
        .create(NodeKind::Folder, "f", NodeId::ROOT, None)
        .await
        .unwrap();
    let up = c
        .create(NodeKind::Upload, "x.bin", f.id, Some(&[1, 2, 3]))
        .await
        .unwrap();
    c.rename(up.id, NodeKind::Upload, "y.bin").await.unwrap();
    c.delete(f.id, true).await.unwrap();
    c.control(&serde_json::json!({"type": "live-sync", "v": 1, "payload": {}}))
        .await
        .unwrap();
    for rx in [&mut a, &mut b] {
        let (_, e) = next_event(rx).await;
        assert!(
            matches!(e, Event::NodeSaved(ref s) if s.node_type == NodeKind::Folder && s.parent_id == Some(NodeId::ROOT))
        );
        let (_, e) = next_event(rx).await;
        let Event::NodeSaved(saved) = e else { panic!() };
        assert_eq!(
            (saved.path.as_str(), saved.size, saved.content.as_deref()),
            ("f/x.bin", Some(3), None)
        );
        let (_, e) = next_event(rx).await;
        let Event::NodeRenamed(r) = e else { panic!() };
        assert_eq!(
            (r.old_path.as_str(), r.new_path.as_str()),
            ("f/x.bin", "f/y.bin")
        );
        let (seq, e) = next_event(rx).await;
        assert_eq!(seq, Some(4));
        assert!(
            matches!(e, Event::NodeDeleted(ref d) if d.path == "f" && d.node_type == NodeKind::Folder)
        );
        let (seq, e) = next_event(rx).await;
        assert_eq!(seq, None, "browser traffic has no seq");
        assert!(
            matches!(e, Event::LiveSync(_)),
            "a live-sync frame is read as one: {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_platform_streams_without_ids_or_replay() {
    let p = TestPlatform::start(Mode::Plain).await;
    let c = p.client();
    let mut rx = subscribe(c.clone(), Some(5), SILENCE_LIMIT);
    assert!(
        !connected(&mut rx).await,
        "no replay: the consumer must compare a listing"
    );
    c.create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b"x"))
        .await
        .unwrap();
    let (seq, event) = next_event(&mut rx).await;
    assert_eq!(seq, None);
    assert!(matches!(event, Event::NodeSaved(_)));
    let raw = reqwest::Client::new()
        .get(format!("{}/_/sync/stream", p.url()))
        .header("X-API-Key", common::KEY)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let mut body = raw.bytes_stream();
    c.create(NodeKind::Site, "b.html", NodeId::ROOT, None)
        .await
        .unwrap();
    use futures::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("b.html") && !text.contains("a.html") && !text.contains("id:"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_an_idle_stream_open() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.ping_interval = Duration::from_millis(200))
        .await;
    let raw = reqwest::Client::new()
        .get(format!("{}/_/sync/stream", p.url()))
        .header("X-API-Key", common::KEY)
        .send()
        .await
        .unwrap();
    use futures::StreamExt;
    let mut body = raw.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(3), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&chunk[..], b": ping\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_by_itself_and_resumes_after_a_platform_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = PlatformProcess::spawn(dir.path(), &[]);
    let addr = platform.addr();
    let c = platform.client();
    let site = c
        .create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b"0"))
        .await
        .unwrap();
    let mut rx = subscribe(c.clone(), Some(1), SILENCE_LIMIT);
    assert!(connected(&mut rx).await);
    c.put_content(site.id, NodeKind::Site, "1".into(), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx).await.0, Some(2));

    platform.kill9();
    // Wait until the client noticed.
    loop {
        if let StreamItem::Disconnected { error, .. } = next(&mut rx).await {
            assert!(error.is_transient(), "{error}");
            break;
        }
    }
    let platform = PlatformProcess::spawn_on(dir.path(), &addr, &[]);
    let writer = platform.client();
    for i in 2..=200 {
        writer
            .put_content(site.id, NodeKind::Site, format!("{i}").into(), None)
            .await
            .unwrap();
    }
    for expected in 3..=201u64 {
        assert_eq!(next_event(&mut rx).await.0, Some(expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_snapshot_is_relayed_as_a_live_sync_frame_after_the_save() {
    for mode in [Mode::Full, Mode::Plain] {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let folder = c
            .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
            .await
            .unwrap();
        let site = c
            .create(NodeKind::Site, "post.html", folder.id, Some(b"v1"))
            .await
            .unwrap();
        let mut rx = subscribe(p.client(), None, SILENCE_LIMIT);
        connected(&mut rx).await;
        let snapshot = hyperclay::protocol::LiveSnapshot {
            html: "<html>as the tab shows it</html>".into(),
            sender: "device-a".into(),
        };
        c.put_content_edited(
            site.id,
            NodeKind::Site,
            "v2".into(),
            None,
            None,
            Some(snapshot.clone()),
        )
        .await
        .unwrap();
        let (_, saved) = next_event(&mut rx).await;
        assert!(
            matches!(saved, Event::NodeSaved(ref s) if s.content.as_deref() == Some("v2")),
            "{mode:?}: the save comes first: {saved:?}"
        );
        let (seq, frame) = next_event(&mut rx).await;
        assert_eq!(seq, None, "browser traffic has no place in the change log");
        assert_eq!(
            frame,
            Event::LiveSync(hyperclay::protocol::LiveSyncFrame {
                file: "blog/post.html".into(),
                html: snapshot.html.clone(),
                sender: "device-a".into(),
            }),
            "{mode:?}"
        );
        // A push without a snapshot relays nothing.
        c.put_content(site.id, NodeKind::Site, "v3".into(), None)
            .await
            .unwrap();
        let (_, saved) = next_event(&mut rx).await;
        assert!(matches!(saved, Event::NodeSaved(_)));
        c.put_content(site.id, NodeKind::Site, "v4".into(), None)
            .await
            .unwrap();
        let (_, next) = next_event(&mut rx).await;
        assert!(
            matches!(next, Event::NodeSaved(ref s) if s.content.as_deref() == Some("v4")),
            "{mode:?}: no frame between two plain saves: {next:?}"
        );
    }
}
