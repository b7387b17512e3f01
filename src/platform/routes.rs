//! The sync API's handlers: parse the request, call the store off the async runtime, answer JSON
//! (or raw bytes). No rule lives here that the store does not enforce itself.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::auth::{Authed, Paid};
use super::error::PlatformError;
use super::store::{ContentWrite, Store};
use super::AppState;
use crate::protocol::{
    decode_content, encode_content, format_time, ChangesResponse, Checksum, ContentResponse,
    CreateNodeRequest, CreateNodeResponse, DeleteResponse, LiveSnapshot, MoveRequest, MoveResponse,
    NodeKind, NodesResponse, PutContentRequest, PutContentResponse, RenameRequest, RenameResponse,
    StatusResponse, TokenResponse, VersionContentResponse, VersionsResponse, MAX_CONTENT_BYTES,
};
use crate::protocol::{NodeId, PlatformTime};

type Result<T> = std::result::Result<T, PlatformError>;

/// A JSON body may carry 20 MiB as base64 (4/3 larger) plus escaping; anything past this is
/// refused before it is read.
const JSON_BODY_LIMIT: usize = 48 * 1024 * 1024;

/// Runs a store call on the blocking pool: SQLite must not stall the async runtime.
async fn blocking<T: Send + 'static>(
    platform: &AppState,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let p = platform.clone();
    tokio::task::spawn_blocking(move || f(&p.store))
        .await
        .map_err(|e| PlatformError::Internal(e.to_string()))?
}

/// Reads at most `limit` bytes of a body; past that, 413 without keeping the rest.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    crate::body::read_capped(headers, body, limit)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => PlatformError::TooLarge,
            crate::body::BodyError::Unreadable(e) => {
                PlatformError::BadRequest(format!("could not read the body: {e}"))
            }
        })
}

async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T> {
    let bytes = read_limited(headers, body, JSON_BODY_LIMIT).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PlatformError::BadRequest(format!("bad JSON body: {e}")))
}

fn decode(kind: NodeKind, text: &str) -> Result<Vec<u8>> {
    let bytes = decode_content(kind, text)
        .map_err(|_| PlatformError::BadRequest("upload content is not valid base64".into()))?;
    if bytes.len() as u64 > MAX_CONTENT_BYTES {
        return Err(PlatformError::TooLarge);
    }
    Ok(bytes)
}

pub async fn status(
    State(platform): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<StatusResponse>> {
    let cursor = match platform.plain {
        true => None,
        false => {
            let a = account.clone();
            Some(blocking(&platform, move |s| s.cursor(&a)).await?)
        }
    };
    Ok(Json(StatusResponse {
        server_time: format_time(chrono::Utc::now()),
        username: account.username,
        features: (!platform.plain).then(|| {
            ["changes", "raw", "versions", "token"]
                .iter()
                .map(|f| f.to_string())
                .collect()
        }),
        cursor,
    }))
}

pub async fn list(
    State(platform): State<AppState>,
    Paid(account): Paid,
) -> Result<Json<NodesResponse>> {
    let (nodes, cursor) = blocking(&platform, move |s| s.list(&account)).await?;
    Ok(Json(NodesResponse {
        nodes,
        cursor: (!platform.plain).then_some(cursor),
        left_out: Vec::new(),
    }))
}

pub async fn create(
    State(platform): State<AppState>,
    Paid(account): Paid,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CreateNodeResponse>> {
    let _writing = platform.writes.begin();
    let request: CreateNodeRequest = read_json(&headers, body).await?;
    // A slow platform (tests): creates wait like content writes.
    let delay = platform
        .write_delay_ms
        .load(std::sync::atomic::Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let content = match &request.content {
        Some(text) if request.kind.is_file() => Some(decode(request.kind, text)?),
        _ => None,
    };
    let plain = platform.plain;
    let node = blocking(&platform, move |s| {
        s.create(
            &account,
            request.kind,
            &request.name,
            request.parent_id.unwrap_or(NodeId::ROOT),
            content,
            request.modified_at.map(PlatformTime::into_string),
            // Part 2 only: a Part 1 platform has no edit times.
            request
                .edited_at
                .filter(|_| !plain)
                .map(PlatformTime::into_string),
        )
    })
    .await?;
    Ok(Json(CreateNodeResponse { node }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContentQuery {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    base_checksum: Option<String>,
}

impl ContentQuery {
    fn raw(&self, platform: &AppState) -> bool {
        !platform.plain && matches!(self.raw.as_deref(), Some("1") | Some("true"))
    }
}

pub async fn get_content(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
    Query(query): Query<ContentQuery>,
) -> Result<Response> {
    let stored = blocking(&platform, move |s| s.content(&account, id)).await?;
    if query.raw(&platform) {
        return Ok(raw_response(&stored));
    }
    Ok(Json(ContentResponse {
        content: encode_content(stored.kind, &stored.bytes),
        node_type: stored.kind,
        modified_at: PlatformTime::new(stored.modified_at),
        size: stored.bytes.len() as u64,
        checksum: stored.checksum,
        edited_at: stored.edited_at.map(PlatformTime::new),
    })
    .into_response())
}

fn raw_response(stored: &super::StoredContent) -> Response {
    let mut response = Response::new(Body::from(stored.bytes.clone()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in [
        ("x-checksum", stored.checksum.as_str()),
        ("x-modified-at", stored.modified_at.as_str()),
        ("x-node-type", stored.kind.as_str()),
        (
            "x-edited-at",
            stored.edited_at.as_deref().unwrap_or_default(),
        ),
    ] {
        if value.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    response
}

pub async fn put_content(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
    Query(query): Query<ContentQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PutContentResponse>> {
    let _writing = platform.writes.begin();
    let (bytes, base, modified_at, edited_at, live) = if query.raw(&platform) {
        let bytes = read_limited(&headers, body, MAX_CONTENT_BYTES as usize)
            .await?
            .to_vec();
        let header_text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let base = query
            .base_checksum
            .clone()
            .or_else(|| header_text("x-base-checksum"))
            .map(Checksum::new);
        (
            bytes,
            base,
            header_text("x-modified-at"),
            header_text("x-edited-at"),
            None,
        )
    } else {
        let request: PutContentRequest = read_json(&headers, body).await?;
        let a = account.clone();
        let kind = blocking(&platform, move |s| s.node_kind(&a, id)).await?;
        let base = request.base_checksum.filter(|_| !platform.plain);
        let edited_at = request
            .edited_at
            .filter(|_| !platform.plain)
            .map(PlatformTime::into_string);
        // Relayed by hyperclay.com too (inferred from its client and livesync-hyperclay): kept
        // in `--plain`.
        let live = match (request.snapshot_html, request.sender_id) {
            (Some(html), Some(sender)) => Some(LiveSnapshot { html, sender }),
            _ => None,
        };
        (
            decode(kind, &request.content)?,
            base,
            request.modified_at.map(PlatformTime::into_string),
            edited_at,
            live,
        )
    };
    let delay = platform
        .write_delay_ms
        .load(std::sync::atomic::Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if platform
        .fail_writes
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        platform
            .failed_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return Err(PlatformError::Internal("writes are failing (test)".into()));
    }
    let (checksum, size) = blocking(&platform, move |s| {
        let write = ContentWrite {
            base,
            client_modified_at: modified_at,
            edited_at,
            live,
        };
        s.put_content(&account, id, bytes, write)
    })
    .await?;
    Ok(Json(PutContentResponse {
        node_id: id,
        checksum,
        size,
    }))
}

pub async fn rename(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RenameResponse>> {
    let request: RenameRequest = read_json(&headers, body).await?;
    let new_name = request.new_name.clone();
    let old_name = blocking(&platform, move |s| {
        s.rename(&account, id, &request.new_name)
    })
    .await?;
    Ok(Json(RenameResponse {
        node_id: id,
        old_name,
        new_name,
    }))
}

pub async fn move_node(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<MoveResponse>> {
    let request: MoveRequest = read_json(&headers, body).await?;
    let (from_path, to_path) = blocking(&platform, move |s| {
        s.move_node(
            &account,
            id,
            request.target_parent_id,
            request.new_name.as_deref(),
        )
    })
    .await?;
    Ok(Json(MoveResponse {
        node_id: id,
        from_path,
        to_path,
    }))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    cascade: Option<String>,
}

pub async fn delete(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<DeleteResponse>> {
    let cascade = matches!(query.cascade.as_deref(), Some("true") | Some("1"));
    let kind = blocking(&platform, move |s| s.delete(&account, id, cascade)).await?;
    Ok(Json(DeleteResponse { node_id: id, kind }))
}

pub async fn control(
    State(platform): State<AppState>,
    Paid(account): Paid,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>> {
    let body: serde_json::Value = read_json(&headers, body).await?;
    let frame = control_frame(body)
        .map_err(|why| PlatformError::BadRequest(format!("not a control envelope: {why}")))?;
    platform.store.publish_control(&account, frame.to_string());
    Ok(Json(serde_json::json!({ "ok": true })))
}

/// The stream frame for a `POST control` body. Hyperclay Local's control lane (its
/// `control-lane-core`, shared with hyperclay.com) reads `{"type":"control","envelope":E}` with
/// `E` the body exactly as posted, and drops as malformed an envelope that is not an object with
/// a non-empty string `type`, an object `payload` and, if present, a positive integer `v`.
/// Decided: such a body is refused with 400 here, rather than answered 200 and then dropped by
/// every device. A `live-sync` body (hyperclay's mount relaying an open tab's snapshot, as
/// hyperclay.com relays Hyperclay Local's) stays a `live-sync` frame of its own.
pub fn control_frame(body: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
    let Some(object) = body.as_object() else {
        return Err("the body is not a JSON object".into());
    };
    let kind = object.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if kind == "live-sync" {
        return Ok(body);
    }
    if kind.is_empty() {
        return Err("its `type` is not a non-empty string".into());
    }
    if !object.get("payload").is_some_and(|p| p.is_object()) {
        return Err("its `payload` is not a JSON object".into());
    }
    if let Some(v) = object.get("v") {
        // As JavaScript's `Number.isInteger(v) && v >= 1`: `2.0` is an integer too.
        let integer = v.as_u64().map(|v| v as f64).or_else(|| v.as_f64());
        if !integer.is_some_and(|v| v >= 1.0 && v.fract() == 0.0) {
            return Err("its `v` is not a positive integer".into());
        }
    }
    Ok(serde_json::json!({ "type": "control", "envelope": body }))
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<u64>,
}

pub async fn changes(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<ChangesResponse>> {
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let (changes, cursor, has_more) = blocking(&platform, move |s| {
        s.changes_since(&account, query.since, limit)
    })
    .await?;
    Ok(Json(ChangesResponse {
        changes,
        cursor,
        has_more,
    }))
}

pub async fn versions(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path(id): Path<NodeId>,
) -> Result<Json<VersionsResponse>> {
    let versions = blocking(&platform, move |s| s.versions(&account, id)).await?;
    Ok(Json(VersionsResponse { versions }))
}

pub async fn version(
    State(platform): State<AppState>,
    Paid(account): Paid,
    Path((id, version_id)): Path<(NodeId, u64)>,
    Query(query): Query<ContentQuery>,
) -> Result<Response> {
    let stored = blocking(&platform, move |s| s.version(&account, id, version_id)).await?;
    let v = stored.version;
    if query.raw(&platform) {
        return Ok(raw_response(&super::StoredContent {
            kind: stored.kind,
            bytes: stored.bytes,
            modified_at: v.created_at.clone(),
            checksum: v.checksum.clone(),
            edited_at: None,
        }));
    }
    Ok(Json(VersionContentResponse {
        version_id: v.version_id,
        content: encode_content(stored.kind, &stored.bytes),
        node_type: stored.kind,
        created_at: v.created_at,
        checksum: v.checksum,
        size: v.size,
    })
    .into_response())
}

pub async fn refresh_token(
    State(platform): State<AppState>,
    Authed(account): Authed,
) -> Result<Json<TokenResponse>> {
    let (token, expires_at) = platform.tokens.issue(&account)?;
    Ok(Json(TokenResponse { token, expires_at }))
}

/// What an unknown route answers: JSON like every other error.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"msg": "no such endpoint", "code": "not_found"})),
    )
        .into_response()
}
