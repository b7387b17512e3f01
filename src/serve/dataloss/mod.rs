//! The data-loss guard (local-host.md §4): for pages whose `api` rules tag names their data, each
//! write is compared with a baseline of that data, and a write that destroyed it (a background
//! save that deleted items, an outside write that emptied values, any big clobber) opens an
//! incident: the data before it and the whole page before it are kept, the page's edit tabs are
//! told, and the library's panel offers to revert the page or dismiss the incident.
//!
//! State per page, in the mirror's own folder: `.hyperclay/guard/<page>.json` (baseline and
//! incident) and `.hyperclay/guard/<page>.recover.html` (the page before the clobbering write).
//! The baseline is seeded on first sight and then moves only with a gestured save that did not
//! fire; an incident closes itself once a write again holds every pinned value.
//!
//! Decided: "restore" (keep the page's other changes and write the pinned data back into it
//! through its rules) is not offered (`restorable: false`; a POST answers 422): writing through
//! the rules means editing the page's DOM as the library does, which a server without a DOM
//! can't do faithfully. "Revert entire page" brings back the page before the clobbering write,
//! and every save is in `sites-versions/` anyway.

mod detect;
pub mod rules;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use detect::Provenance;
use detect::{judge, Loss};
use rules::Island;

use super::ServeState;
use crate::cache::{Mirror, RelPath};

const AREA: &str = "guard";
/// A page's guard state holds its data twice at most (baseline, pinned copy).
const MAX_STATE_BYTES: u64 = 2 * crate::protocol::MAX_CONTENT_BYTES + 64 * 1024;
/// Preview rows shown in the panel.
const PREVIEW_ROWS: usize = 20;
/// Characters of a value shown in a preview row.
const PREVIEW_CHARS: usize = 200;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuardState {
    baseline: Option<Baseline>,
    event: Option<Incident>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    data: Value,
    at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incident {
    id: String,
    recoverable_data: Value,
    first_detected_at: String,
    last_write_at: String,
    provenance: Provenance,
    loss: Loss,
    /// The data as the clobbering write left it (for the preview's "now").
    now: Value,
}

/// What the page's edit tabs are told after a write.
pub enum Told {
    Raised(Value),
    Resolved(String),
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn load(mirror: &Mirror, rel: &RelPath) -> GuardState {
    mirror
        .read_state(AREA, rel, "json", MAX_STATE_BYTES)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn store(mirror: &Mirror, rel: &RelPath, state: &GuardState) {
    let written = serde_json::to_vec(state)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            mirror
                .write_state(AREA, rel, "json", &b)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::warn!(path = %rel, error = %e, "could not keep the data guard's state");
    }
}

/// The page before `new` was written: `old` when the writer had it, else the newest version
/// in `sites-versions/` that differs from `new`.
fn before(mirror: &Mirror, rel: &RelPath, old: Option<Vec<u8>>, new: &[u8]) -> Option<Vec<u8>> {
    if old.is_some() {
        return old;
    }
    let dir = crate::cache::versions::dir_for(&mirror.versions_root(), rel);
    crate::cache::versions::list(&dir)
        .into_iter()
        .rev()
        .filter_map(|(_, path)| std::fs::read(path).ok())
        .find(|bytes| bytes != new)
}

/// Runs the guard on a write of `new` over `old` (the page before, when the writer had it).
/// Blocking; never fails the write.
pub fn after_write(
    mirror: &Mirror,
    rel: &RelPath,
    old: Option<Vec<u8>>,
    new: &[u8],
    by: Provenance,
) -> Option<Told> {
    let island = rules::island(&String::from_utf8_lossy(new));
    let mut state = load(mirror, rel);
    let Some(baseline) = &state.baseline else {
        if let Island::Data(data) = island {
            state.baseline = Some(Baseline { data, at: now() });
            store(mirror, rel, &state);
        }
        return None;
    };
    if let Some(event) = &mut state.event {
        // Open already: closed by a write that brings the data back.
        if let Island::Data(data) = &island {
            if detect::holds_all(&event.recoverable_data, data) {
                let id = event.id.clone();
                state.event = None;
                state.baseline = Some(Baseline {
                    data: data.clone(),
                    at: now(),
                });
                store(mirror, rel, &state);
                return Some(Told::Resolved(id));
            }
        }
        event.last_write_at = now();
        store(mirror, rel, &state);
        return None;
    }
    let current = match &island {
        Island::Data(d) => Some(d),
        Island::NoRules => None,
        // A rules tag that does not parse is let through, as the library does.
        Island::BadRules => return None,
    };
    match judge(&baseline.data, current, by) {
        Some(loss) => {
            let Some(page_before) = before(mirror, rel, old, new) else {
                tracing::warn!(path = %rel, "a write destroyed the page's data, but no copy of the page before it was found");
                return None;
            };
            if let Err(e) = mirror.write_state(AREA, rel, "recover.html", &page_before) {
                tracing::warn!(path = %rel, error = %e, "could not keep the page before a data loss");
                return None;
            }
            let at = now();
            let event = Incident {
                id: format!("{:016x}", rand::random::<u64>()),
                recoverable_data: baseline.data.clone(),
                first_detected_at: at.clone(),
                last_write_at: at,
                provenance: by,
                loss,
                now: current.cloned().unwrap_or(Value::Null),
            };
            tracing::warn!(path = %rel, removed = event.loss.removed_items, destroyed = event.loss.destroyed_atoms, ?by, "a write destroyed the page's data: kept the page before it; the page offers to revert");
            let shown = display(&event);
            state.event = Some(event);
            store(mirror, rel, &state);
            Some(Told::Raised(shown))
        }
        None => {
            if let (Provenance::UiGestured, Some(data)) = (by, current) {
                state.baseline = Some(Baseline {
                    data: data.clone(),
                    at: now(),
                });
                store(mirror, rel, &state);
            }
            None
        }
    }
}

/// The value at a dotted path (`todos.1.text`).
fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(v, |v, key| match v {
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            Value::Object(fields) => fields.get(key),
            _ => None,
        })
}

fn shown(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => "(empty)".to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => "(empty)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    text.chars().take(PREVIEW_CHARS).collect()
}

/// The incident as the panel reads it: display strings and flags, never the raw data.
fn display(e: &Incident) -> Value {
    let preview: Vec<Value> = e
        .loss
        .paths
        .iter()
        .take(PREVIEW_ROWS)
        .map(|p| json!({"key": p, "now": shown(at_path(&e.now, p)), "yours": shown(at_path(&e.recoverable_data, p))}))
        .collect();
    json!({
        "id": e.id,
        "firstDetectedAt": e.first_detected_at,
        "lastWriteAt": e.last_write_at,
        "lossSummary": {
            "provenance": e.provenance,
            "destroyedAtoms": e.loss.destroyed_atoms,
            "removedItems": e.loss.removed_items,
            "modifiedAtoms": e.loss.modified_atoms,
            "paths": e.loss.paths,
        },
        "fieldCount": e.loss.paths.len(),
        "preview": preview,
        "droppedAdditions": 0,
        "restorable": false,
        "canRevert": true,
        "status": "open",
    })
}

#[derive(Deserialize)]
pub struct FileQuery {
    file: Option<String>,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": msg}))).into_response()
}

/// The page a guard request is about: `file` (query or body), else `Page-URL`/`Document-URL`.
async fn page_of(state: &ServeState, file: Option<String>, headers: &HeaderMap) -> Option<RelPath> {
    let address = file.or_else(|| super::address::from_headers(headers))?;
    state
        .find_page(address)
        .await
        .ok()
        .filter(|page| page.exists)
        .map(|page| page.rel)
}

/// `GET /_/data-loss?file=HREF`: the page's open incident, or `{event: null}`. Seeds a missing
/// baseline, and closes an incident the page no longer shows.
pub async fn incident(
    State(state): State<ServeState>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(rel) = page_of(&state, q.file, &headers).await else {
        return Json(json!({"event": null})).into_response();
    };
    let mirror = state.0.mirror.clone();
    let lock = state.0.guard_lock.clone();
    let event = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let page = mirror
            .read_at_most(&rel, crate::protocol::MAX_CONTENT_BYTES)
            .ok()??;
        let mut guard = load(&mirror, &rel);
        if guard.baseline.is_none() {
            after_write(&mirror, &rel, None, &page, Provenance::UiUnknown);
            return None;
        }
        let event = guard.event.clone()?;
        if let Island::Data(data) = rules::island(&String::from_utf8_lossy(&page)) {
            if detect::holds_all(&event.recoverable_data, &data) {
                guard.event = None;
                store(&mirror, &rel, &guard);
                return None;
            }
        }
        Some(display(&event))
    })
    .await
    .ok()
    .flatten();
    Json(json!({"event": event})).into_response()
}

#[derive(Deserialize)]
pub struct Choice {
    choice: Option<String>,
    file: Option<String>,
    id: Option<String>,
}

/// `POST /_/data-loss/ID` (or `/_/data-loss` with `id` in the body): `dismiss` or `revert`.
pub async fn choose(
    State(state): State<ServeState>,
    id: Option<Path<String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(choice) = serde_json::from_slice::<Choice>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not a JSON choice");
    };
    let Some(id) = id.map(|Path(id)| id).or(choice.id) else {
        return error(StatusCode::BAD_REQUEST, "which incident: the id is missing");
    };
    let Some(rel) = page_of(&state, choice.file, &headers).await else {
        return error(
            StatusCode::BAD_REQUEST,
            "which page: no file or Page-URL names one",
        );
    };
    let choice = choice.choice.unwrap_or_default();
    if !matches!(choice.as_str(), "dismiss" | "revert" | "restore") {
        return error(
            StatusCode::BAD_REQUEST,
            "choice is dismiss, revert or restore",
        );
    }
    let guard = load(&state.0.mirror, &rel);
    let Some(event) = guard.event else {
        return error(StatusCode::NOT_FOUND, "this page has no open incident");
    };
    if event.id != id {
        return error(
            StatusCode::CONFLICT,
            "another incident is open on this page",
        );
    }
    let status = match choice.as_str() {
        "restore" => return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "restoring the data into the changed page is not offered here: revert the page instead",
        ),
        "revert" => {
            let Some(page) = state.0.mirror.read_state(
                AREA,
                &rel,
                "recover.html",
                crate::protocol::MAX_CONTENT_BYTES,
            ) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the page before the loss was not kept",
                );
            };
            if let Err(e) = state
                .write_file(&rel, bytes::Bytes::from(page.clone()))
                .await
            {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("could not revert the page: {e}"),
                );
            }
            state.0.live.stored(&rel, &String::from_utf8_lossy(&page));
            "reverted"
        }
        _ => "dismissed",
    };
    // The page as it is now is the new baseline; the incident is closed.
    let mirror = state.0.mirror.clone();
    let closing = rel.clone();
    let lock = state.0.guard_lock.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let page = mirror
            .read_at_most(&closing, crate::protocol::MAX_CONTENT_BYTES)
            .ok()
            .flatten();
        let data = page.and_then(|p| match rules::island(&String::from_utf8_lossy(&p)) {
            Island::Data(d) => Some(d),
            _ => None,
        });
        let guard = GuardState {
            baseline: data.map(|data| Baseline { data, at: now() }),
            event: None,
        };
        store(&mirror, &closing, &guard);
    })
    .await;
    tracing::info!(path = %rel, choice = %status, "data guard incident closed");
    state
        .0
        .live
        .notify_data(&rel, "resolved", json!({"id": id}));
    Json(json!({"ok": true, "choice": choice, "status": status})).into_response()
}

/// Whether the guard keeps a baseline for `rel`.
pub fn guarded(state: &ServeState, rel: &RelPath) -> bool {
    state.0.mirror.has_state(AREA, rel, "json")
}

/// Whether the guard looks at a write of `new` to `rel`: the page has rules, or had them.
pub fn watches(state: &ServeState, rel: &RelPath, new: &[u8]) -> bool {
    memchr::memmem::find(new, b"data-rules-name").is_some() || guarded(state, rel)
}

/// Runs the guard after the server or something under it wrote `rel`, and tells the tabs.
pub async fn check(
    state: &ServeState,
    rel: &RelPath,
    old: Option<Vec<u8>>,
    new: bytes::Bytes,
    by: Provenance,
) {
    if crate::protocol::NodeKind::of_file_name(rel) != crate::protocol::NodeKind::Site {
        return;
    }
    let mirror = state.0.mirror.clone();
    let lock = state.0.guard_lock.clone();
    let checked = rel.clone();
    let told = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        after_write(&mirror, &checked, old, &new, by)
    })
    .await
    .ok()
    .flatten();
    match told {
        Some(Told::Raised(event)) => state.0.live.notify_data(rel, "raised", event),
        Some(Told::Resolved(id)) => state.0.live.notify_data(rel, "resolved", json!({"id": id})),
        None => {}
    }
}
