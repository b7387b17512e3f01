//! The control lane, end to end over HTTP through the dev platform's relay: a `POST control`
//! body reaches the account's other streams the way Hyperclay Local's control lane reads it,
//! `{"type":"control","envelope":BODY}` with the body as sent, and a body that lane would drop
//! as malformed is refused with 400 instead of answered 200 and lost (docs/sync-api.md).

mod common;

use std::time::Duration;

use common::{Mode, TestPlatform, KEY};
use futures::StreamExt;
use serde_json::{json, Value};

/// The next `data:` frame of a raw event stream, as JSON.
async fn next_frame(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let data: String = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.is_empty() {
                return serde_json::from_str(&data).expect("a frame is JSON");
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a frame within 10 s")
            .expect("the stream is open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_envelope_reaches_the_other_devices_as_sent() {
    let p = TestPlatform::start(Mode::Full).await;
    let http = reqwest::Client::new();
    let stream = http
        .get(format!("{}/_/sync/stream", p.url()))
        .header("X-API-Key", KEY)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success());
    let mut body = stream.bytes_stream();
    let mut buffer = String::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{}/_/sync/control", p.url());
        async move {
            http.post(url)
                .header("X-API-Key", KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    // What Hyperclay Local sends when a data-loss warning is dismissed.
    let dismiss = json!({"type": "data-loss/dismiss", "v": 1, "payload": {
        "fileKey": "blog/post.html", "recoverableDataHash": "9f86d081884c7d65", "nodeId": 7}});
    assert_eq!(post(dismiss.clone()).await.status(), 200);
    assert_eq!(
        next_frame(&mut body, &mut buffer).await,
        json!({"type": "control", "envelope": dismiss}),
        "nested under `envelope`, its own `type` kept"
    );

    // Each shape Hyperclay Local's `parseEnvelope` drops: refused, and nothing relayed.
    for malformed in [
        json!([1, 2]),
        json!("data-loss/dismiss"),
        json!({"payload": {}}),
        json!({"type": "", "payload": {}}),
        json!({"type": 3, "payload": {}}),
        json!({"type": "a/b"}),
        json!({"type": "a/b", "payload": null}),
        json!({"type": "a/b", "payload": [1]}),
        json!({"type": "a/b", "v": 0, "payload": {}}),
        json!({"type": "a/b", "v": 1.5, "payload": {}}),
        json!({"type": "a/b", "v": "1", "payload": {}}),
    ] {
        let answer = post(malformed.clone()).await;
        assert_eq!(answer.status(), 400, "{malformed} is refused");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["code"], "bad_request", "{error}");
    }
    // `v` may be left out (it defaults to 1 there): relayed as sent, without one added. Being
    // the next frame proves none of the refused bodies went out.
    let unversioned = json!({"type": "x/y", "payload": {"a": [1, 2]}});
    assert_eq!(post(unversioned.clone()).await.status(), 200);
    assert_eq!(
        next_frame(&mut body, &mut buffer).await,
        json!({"type": "control", "envelope": unversioned})
    );
    // hyperclay's own live-sync relay keeps its frame.
    let live = json!({"type": "live-sync", "file": "a.html", "html": "<p>x</p>", "sender": "d1"});
    assert_eq!(post(live.clone()).await.status(), 200);
    assert_eq!(next_frame(&mut body, &mut buffer).await, live);
}
