//! A hostile platform for the security tests: it speaks enough of the sync API for a mount to
//! start (status, listing, content, the event stream, and accepting writes), and then lies the
//! way an attacker (or anything between us and the platform) would: names that climb out of the
//! mirror, ids twice, cycles, bodies without end, bytes that trickle, frames without end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

/// What a content request gets.
#[derive(Clone)]
pub enum Content {
    /// These bytes, honestly checksummed.
    Bytes(Vec<u8>),
    /// Zeros without end, as fast as the connection takes them.
    Endless,
    /// One byte every `gap`, without end.
    Trickle(Duration),
}

/// The platform's script.
#[derive(Clone, Default)]
pub struct Script {
    pub username: String,
    /// The listing's nodes, as sent.
    pub nodes: Vec<Value>,
    /// The listing's whole body, sent instead of `nodes` (a listing too large to keep as
    /// values: bench/memory.rs).
    pub listing: Option<Bytes>,
    /// The listing is a body without end.
    pub endless_listing: bool,
    /// The listing is answered after this long.
    pub listing_delay: Duration,
    pub content: HashMap<u64, Content>,
    /// Frames sent (as `data:` lines) to every stream that connects, after `delay`.
    pub events: Vec<Value>,
    pub events_delay: Duration,
    /// After the events, a frame whose data never ends.
    pub endless_frame: bool,
    /// The stream is answered and closed at once (a platform that drops every stream).
    pub drop_streams: bool,
}

/// What the hostile platform saw.
#[derive(Default)]
pub struct Seen {
    /// Every request: method and path.
    pub requests: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Seen>>,
}

pub struct HostilePlatform {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl HostilePlatform {
    pub async fn start(script: Script) -> HostilePlatform {
        let shared = Shared {
            script: Arc::new(Mutex::new(script)),
            seen: Arc::new(Mutex::new(Seen::default())),
        };
        let sync = Router::new()
            .route("/status", get(status))
            .route("/nodes", get(nodes).post(create))
            .route("/nodes/{id}/content", get(content).put(write))
            .route("/nodes/{id}/rename", put(ok).patch(ok))
            .route("/stream", get(stream))
            .route("/control", axum::routing::post(ok));
        let app = Router::new()
            .nest("/_/sync", sync)
            .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"msg": "no"}))) })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HostilePlatform {
            addr,
            script: shared.script,
            seen: shared.seen,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().requests.clone()
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }
}

impl Drop for HostilePlatform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A node of the listing, the way the platform spells it.
pub fn node(id: u64, kind: &str, name: &str, path: &str, parent: u64, content: &[u8]) -> Value {
    let mut n = json!({"id": id, "type": kind, "name": name, "path": path, "parentId": parent});
    if kind != "folder" {
        n["size"] = json!(content.len());
        n["modifiedAt"] = json!("2026-11-01T00:00:00.000Z");
        n["checksum"] = json!(hyperclay::protocol::checksum(content));
    }
    n
}

/// A listing's body (issue 26's huge listing): the site `index.html` (node 1, `site` its
/// content), the folder `m` (node 2), and `folders` empty folders in it named by number (nodes
/// 100 on). 700,001 of them make 700,003 nodes in 46.5 MiB, under the 48 MiB listing cap.
pub fn folders_listing(folders: u64, site: &[u8]) -> Bytes {
    use std::fmt::Write;
    let mut body = String::with_capacity(70 * folders as usize + 512);
    write!(
        body,
        r#"{{"nodes":[{},{}"#,
        node(1, "site", "index.html", "", 0, site),
        node(2, "folder", "m", "", 0, b"")
    )
    .unwrap();
    for i in 0..folders {
        write!(
            body,
            r#",{{"id":{},"type":"folder","name":"{i}","path":"m","parentId":2}}"#,
            100 + i
        )
        .unwrap();
    }
    body.push_str("]}");
    Bytes::from(body)
}

async fn record(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.seen
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}

async fn status(State(s): State<Shared>) -> Json<Value> {
    let username = s.script.lock().unwrap().username.clone();
    Json(json!({
        "serverTime": hyperclay::protocol::format_time(chrono::Utc::now()),
        "username": username,
        "features": ["raw"],
    }))
}

fn endless(prefix: &'static [u8]) -> Body {
    let chunk = Bytes::from(vec![b'A'; 64 * 1024]);
    let head =
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from_static(prefix)) });
    let tail = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Body::from_stream(futures::StreamExt::chain(head, tail))
}

async fn nodes(State(s): State<Shared>) -> Response {
    let script = s.script.lock().unwrap().clone();
    tokio::time::sleep(script.listing_delay).await;
    if let Some(body) = script.listing {
        return ([("content-type", "application/json")], body).into_response();
    }
    if script.endless_listing {
        return (
            [("content-type", "application/json")],
            endless(b"{\"nodes\":[\""),
        )
            .into_response();
    }
    Json(json!({ "nodes": script.nodes })).into_response()
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10_000);

async fn create(Json(body): Json<Value>) -> Json<Value> {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Json(json!({"node": {
        "id": id, "type": body["type"], "name": body["name"],
        "parentId": body["parentId"], "path": ""
    }}))
}

async fn write(Path(id): Path<u64>, body: Bytes) -> Json<Value> {
    Json(
        json!({"nodeId": id, "checksum": hyperclay::protocol::checksum(&body), "size": body.len()}),
    )
}

async fn ok() -> Json<Value> {
    Json(json!({}))
}

async fn content(
    State(s): State<Shared>,
    Path(id): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let raw = q.get("raw").is_some_and(|v| v == "1");
    let content = s.script.lock().unwrap().content.get(&id).cloned();
    let Some(content) = content else {
        return (StatusCode::NOT_FOUND, Json(json!({"msg": "not found"}))).into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-node-type", "upload".parse().unwrap());
    headers.insert("x-modified-at", "2026-11-01T00:00:00.000Z".parse().unwrap());
    let sum = match &content {
        Content::Bytes(b) => hyperclay::protocol::checksum(b),
        _ => "0000000000000000".into(),
    };
    headers.insert("x-checksum", sum.as_str().parse().unwrap());
    let body = match (content, raw) {
        (Content::Bytes(b), true) => Body::from(b),
        (Content::Bytes(b), false) => Body::from(
            json!({"content": hyperclay::protocol::encode_content(hyperclay::protocol::NodeKind::Upload, &b),
                   "nodeType": "upload", "modifiedAt": "2026-11-01T00:00:00.000Z", "checksum": sum, "size": b.len()})
            .to_string(),
        ),
        (Content::Endless, true) => endless(b""),
        (Content::Endless, false) => endless(b"{\"content\":\""),
        (Content::Trickle(gap), _) => {
            let bytes = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(gap).await;
                Some((Ok::<_, std::io::Error>(Bytes::from_static(b"A")), ()))
            });
            Body::from_stream(bytes)
        }
    };
    (headers, body).into_response()
}

async fn stream(State(s): State<Shared>) -> Response {
    let script = s.script.lock().unwrap().clone();
    if script.drop_streams {
        return ([("content-type", "text/event-stream")], ": bye\n\n").into_response();
    }
    let mut frames: Vec<Bytes> = vec![Bytes::from_static(b": hello\n\n")];
    for e in &script.events {
        frames.push(Bytes::from(format!("data: {e}\n\n")));
    }
    let delay = script.events_delay;
    let head =
        futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b": hi\n\n")) });
    let events = futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(Bytes::from(frames.concat()))
    });
    let tail: std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>> =
        if script.endless_frame {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Box::pin(futures::StreamExt::chain(
                futures::stream::once(async { Ok(Bytes::from_static(b"data: ")) }),
                futures::stream::repeat_with(move || Ok(chunk.clone())),
            ))
        } else {
            Box::pin(futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok(Bytes::from_static(b": ping\n\n")), ()))
            }))
        };
    let body = futures::StreamExt::chain(futures::StreamExt::chain(head, events), tail);
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}
