//! Live sync between the open tabs of one file, as Hyperclay Local hosts it (docs: local-host.md
//! §2.5 and §3). Each file is a channel with two lanes: edit-mode tabs listen on `live` and relay
//! their snapshots to it; view-mode tabs listen on `saved` and get the stored bytes after every
//! write. Frames are `{html, sender, seq, identityMap?}`; `seq` is the host's clock in
//! milliseconds, raised by one when two frames share a millisecond, so it grows across restarts
//! and a tab drops replays. The host echoes to the sender too: a tab drops frames with its own
//! `sender`. Writes made under the server (a save through the mount, a platform change pulled
//! down) go to both lanes as `file-watcher` / `sync-engine` frames, and edit tabs also get a
//! notification, so a stale tab never saves over them unseen.
//!
//! Both wires are served: the spec one (`GET`/`POST /_/sync`, `Document-URL`, `snapshot`) and the
//! legacy one (`/_/live-sync/stream`, `/_/live-sync/save`, `Page-URL`, `html`); either parameter
//! and either field is read on either path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use tokio::sync::broadcast;

use super::ServeState;
use crate::cache::RelPath;

/// Frames kept for a slow tab; it then misses the oldest, which is harmless: only the newest
/// state of a page matters, and the next frame carries all of it. A frame is held once for all
/// of a file's tabs and freed when the last has read it, so a stalled tab holds at most this
/// many pages.
const FRAMES_KEPT: usize = 4;
/// Open streams at once, all files together (each holds a connection and a queue of frames of
/// up to a page each): a page that opens streams in a loop can't take memory without end.
pub const MAX_STREAMS: usize = 64;
/// A relayed snapshot is a whole page, as large as a save may be, plus its identity map.
pub const MAX_RELAY_BYTES: usize = crate::protocol::MAX_CONTENT_BYTES as usize + 4 * 1024 * 1024;
/// A comment line this often keeps proxies and the browser from taking the stream for dead.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Which tabs a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Edit-mode tabs: relayed snapshots, outside changes, notifications.
    Live,
    /// View-mode tabs: what was stored, after each write.
    Saved,
}

struct Channel {
    live: broadcast::Sender<Arc<str>>,
    saved: broadcast::Sender<Arc<str>>,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            live: broadcast::channel(FRAMES_KEPT).0,
            saved: broadcast::channel(FRAMES_KEPT).0,
        }
    }

    fn lane(&self, lane: Lane) -> &broadcast::Sender<Arc<str>> {
        match lane {
            Lane::Live => &self.live,
            Lane::Saved => &self.saved,
        }
    }

    fn is_unused(&self) -> bool {
        self.live.receiver_count() == 0 && self.saved.receiver_count() == 0
    }
}

/// The channels of every file with an open tab.
pub struct Hub {
    channels: Mutex<HashMap<RelPath, Channel>>,
    last_seq: Mutex<i64>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            channels: Mutex::new(HashMap::new()),
            last_seq: Mutex::new(0),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl Hub {
    fn next_seq(&self) -> i64 {
        let mut last = self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
        *last = chrono::Utc::now().timestamp_millis().max(*last + 1);
        *last
    }

    fn subscribe(&self, rel: &RelPath, lane: Lane) -> broadcast::Receiver<Arc<str>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, c| !c.is_unused());
        channels
            .entry(rel.clone())
            .or_insert_with(Channel::new)
            .lane(lane)
            .subscribe()
    }

    /// Sends a frame to one lane of a file's tabs (nothing when none is open).
    fn send(&self, rel: &RelPath, lane: Lane, frame: serde_json::Value) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(rel) {
            let _ = channel.lane(lane).send(Arc::from(frame.to_string()));
        }
    }

    /// Whether any tab of the file is open.
    pub fn has_tabs(&self, rel: &RelPath) -> bool {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.get(rel).is_some_and(|c| !c.is_unused())
    }

    /// Whether a tab listens on that lane of the file (a frame is built only then: it copies
    /// the whole page).
    fn listened(&self, rel: &RelPath, lane: Lane) -> bool {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .get(rel)
            .is_some_and(|c| c.lane(lane).receiver_count() > 0)
    }

    /// A content frame: `html` from `sender`.
    pub fn content(
        &self,
        rel: &RelPath,
        lane: Lane,
        html: &str,
        sender: &str,
        identity_map: Option<serde_json::Value>,
    ) {
        if !self.listened(rel, lane) {
            return;
        }
        let mut frame = serde_json::json!({"html": html, "sender": sender, "seq": self.next_seq()});
        if let Some(map) = identity_map.filter(|m| m.is_object()) {
            frame["identityMap"] = map;
        }
        self.send(rel, lane, frame);
    }

    /// A notification for the edit tabs (a toast, and `hyperclay:notification` in the page).
    pub fn notify(&self, rel: &RelPath, msg_type: &str, msg: &str, action: Option<&str>) {
        let mut frame =
            serde_json::json!({"type": "notification", "msgType": msg_type, "msg": msg});
        if let Some(action) = action {
            frame["action"] = action.into();
        }
        self.send(rel, Lane::Live, frame);
    }

    /// A data-guard notification for the edit tabs (`raised` with the incident, `resolved`).
    pub fn notify_data(&self, rel: &RelPath, action: &str, data: serde_json::Value) {
        let msg = match action {
            "raised" => "A save overwrote this page's data; it can be brought back.",
            _ => "The page's data is back.",
        };
        let frame = serde_json::json!({"type": "notification", "msgType": "data-loss", "msg": msg, "action": action, "data": data});
        self.send(rel, Lane::Live, frame);
    }

    /// After the server stored a page: view-mode tabs get the stored bytes.
    pub fn stored(&self, rel: &RelPath, html: &str) {
        if !self.listened(rel, Lane::Saved) {
            return;
        }
        // As the tabs were served it: with the local library's links.
        let html = super::library::localize_links(html);
        self.content(rel, Lane::Saved, &html, "server-save", None);
    }

    /// A write made under the server: every tab gets the new content, edit tabs a notice too.
    pub fn changed_outside(&self, rel: &RelPath, html: &str, sender: &str) {
        let html = super::library::localize_links(html);
        self.content(rel, Lane::Saved, &html, sender, None);
        self.content(rel, Lane::Live, &html, sender, None);
        let msg = match sender {
            "sync-engine" => "This page changed on the platform; showing the new version.",
            _ => "This page was changed by another program; showing the new version.",
        };
        self.notify(rel, "info", msg, None);
    }
}

/// The stream's query: the page (`document-url` or `page-url`) and the lane.
#[derive(serde::Deserialize)]
pub struct StreamQuery {
    #[serde(rename = "document-url")]
    document_url: Option<String>,
    #[serde(rename = "page-url")]
    page_url: Option<String>,
    lane: Option<String>,
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": msg})),
    )
        .into_response()
}

/// `GET /_/sync` and `GET /_/live-sync/stream`: the file's frames as Server-Sent Events.
pub async fn stream(State(state): State<ServeState>, Query(q): Query<StreamQuery>) -> Response {
    let Some(address) = q.document_url.or(q.page_url) else {
        return bad_request("the document-url parameter is missing");
    };
    let lane = if q.lane.as_deref() == Some("saved") {
        Lane::Saved
    } else {
        Lane::Live
    };
    let Ok(permit) = state.0.live.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "too many live-sync streams are open"})),
        )
            .into_response();
    };
    let page = match state.find_page(address).await {
        Ok(page) => page,
        Err(e) => return bad_request(&e.to_string()),
    };
    let receiver = state.0.live.subscribe(&page.rel, lane);
    Sse::new(frames(receiver, permit))
        .keep_alive(KeepAlive::new().interval(PING_EVERY).text("ping"))
        .into_response()
        .with_headers()
}

trait SseHeaders {
    fn with_headers(self) -> Response;
}

impl SseHeaders for Response {
    /// What Hyperclay Local sends with its streams: no caching, and no buffering by a proxy.
    fn with_headers(mut self) -> Response {
        let h = self.headers_mut();
        h.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-cache"),
        );
        h.insert(
            "x-accel-buffering",
            axum::http::HeaderValue::from_static("no"),
        );
        self
    }
}

/// `: connected`, then each frame as it comes; a lagging tab skips to the newest frames. The
/// stream holds its place among `MAX_STREAMS` until the tab goes away.
fn frames(
    receiver: broadcast::Receiver<Arc<str>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    use futures::StreamExt;
    let connected = futures::stream::once(async { Ok(Event::default().comment("connected")) });
    let frames = tokio_stream::wrappers::BroadcastStream::new(receiver)
        .filter_map(|frame| async move { frame.ok().map(|f| Ok(Event::default().data(&*f))) });
    connected.chain(frames).map(move |event| {
        let _held = &permit;
        event
    })
}

/// `POST /_/sync` and `POST /_/live-sync/save`: a tab's snapshot, relayed to the file's edit tabs.
/// Nothing is written: the tab's save does that.
pub async fn relay(
    State(state): State<ServeState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(address) = super::address::from_headers(&headers) else {
        return bad_request("the Document-URL header is missing");
    };
    let Ok(_permit) = state.0.saves.clone().acquire_owned().await else {
        return bad_request("the server is stopping");
    };
    let bytes = match crate::body::read_capped(&headers, body, MAX_RELAY_BYTES).await {
        Ok(b) => b,
        Err(crate::body::BodyError::TooLarge) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(serde_json::json!({"error": "the snapshot is too large"})),
            )
                .into_response()
        }
        Err(_) => return bad_request("could not read the body"),
    };
    #[derive(serde::Deserialize)]
    struct Snapshot {
        snapshot: Option<serde_json::Value>,
        html: Option<serde_json::Value>,
        sender: Option<String>,
        #[serde(rename = "identityMap")]
        identity_map: Option<serde_json::Value>,
    }
    let Ok(message) = serde_json::from_slice::<Snapshot>(&bytes) else {
        return bad_request("the body is not a JSON snapshot");
    };
    let Some(serde_json::Value::String(html)) = message.snapshot.or(message.html) else {
        return bad_request("the snapshot is missing");
    };
    let page = match state.find_page(address).await {
        Ok(page) => page,
        Err(e) => return bad_request(&e.to_string()),
    };
    let sender = message.sender.unwrap_or_default();
    state
        .0
        .live
        .content(&page.rel, Lane::Live, &html, &sender, message.identity_map);
    // And to the account's other devices, with the CDN links the file has.
    if let super::SaveTo::Engine(engine) = &state.0.save_to {
        let engine = engine.clone();
        let html =
            String::from_utf8_lossy(&super::library::restore_links(html.as_bytes())).into_owned();
        tokio::spawn(async move { engine.relay_snapshot(&page.rel, html).await });
    }
    Json(serde_json::json!({"success": true})).into_response()
}

/// Tells open tabs about writes made under the server (a mount's saves, pulled platform changes)
/// and hands them other devices' live-sync frames.
pub async fn follow_engine(state: ServeState, engine: Arc<crate::sync::Engine>) {
    use crate::sync::ChangedBy;
    let mut changes = engine.subscribe_changes();
    let mut frames = engine.subscribe_live();
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            frame = frames.recv() => {
                match frame {
                    Ok(f) => {
                        let html = super::library::localize_links(&f.html);
                        state.0.live.content(&f.rel, Lane::Live, &html, &f.sender, None);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let change = match change {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let sender = match change.by {
            // The server's own writes are announced where they are made.
            ChangedBy::Server => continue,
            ChangedBy::Mount | ChangedBy::Folder => "file-watcher",
            ChangedBy::Platform => "sync-engine",
        };
        // Read only for a page with open tabs or one the data guard watches.
        let tabs = state.0.live.has_tabs(&change.rel);
        if crate::protocol::NodeKind::of_file_name(&change.rel) != crate::protocol::NodeKind::Site
            || !(tabs || super::dataloss::guarded(&state, &change.rel))
        {
            continue;
        }
        let (mirror, rel) = (state.0.mirror.clone(), change.rel.clone());
        let read = tokio::task::spawn_blocking(move || {
            mirror.read_at_most(&rel, crate::protocol::MAX_CONTENT_BYTES)
        })
        .await;
        let Ok(Ok(Some(bytes))) = read else {
            continue;
        };
        if tabs {
            let html = String::from_utf8_lossy(&bytes);
            state.0.live.changed_outside(&change.rel, &html, sender);
        }
        if super::dataloss::guarded(&state, &change.rel) {
            super::dataloss::check(
                &state,
                &change.rel,
                None,
                bytes::Bytes::from(bytes),
                super::dataloss::Provenance::External,
            )
            .await;
        }
    }
}
