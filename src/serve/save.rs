//! Saves from apps: `POST /save/NAME` (what the Hyperclay client library sends: NAME is the
//! `currentResource` cookie, the site found by name wherever it is) and `POST /_/save` with the
//! page's address in `Page-URL` (newer clients). The body is the whole document. Refusals, all
//! before anything is written: over 20 MiB 413 (without reading it all), a JSON body 415, a body
//! that is not an HTML document 422, a name that is not a site 400.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::resolve::Resolved;
use super::{answer, resolve_error, SaveTo, ServeState};
use crate::cache::save;
use crate::protocol::{names, NodeKind, MAX_CONTENT_BYTES};

pub async fn by_name(
    State(state): State<ServeState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let stem = name
        .strip_suffix(".htmlclay")
        .or_else(|| name.strip_suffix(".html"))
        .unwrap_or(&name)
        .to_string();
    if names::check_site(&format!("{stem}.html")).is_err() {
        return answer(
            StatusCode::BAD_REQUEST,
            false,
            &format!("{name:?} is not a site name"),
        );
    }
    let finding = state.clone();
    let found = tokio::task::spawn_blocking(move || finding.site_path(&stem))
        .await
        .ok()
        .flatten();
    let Some(rel) = found else {
        return answer(
            StatusCode::NOT_FOUND,
            false,
            &format!("no site named {name:?} in the mirror"),
        );
    };
    save_to(state, &rel, &headers, body).await
}

pub async fn by_page_url(
    State(state): State<ServeState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(page) = headers.get("page-url").and_then(|v| v.to_str().ok()) else {
        return answer(
            StatusCode::BAD_REQUEST,
            false,
            "the Page-URL header is missing",
        );
    };
    let Ok(url) = url::Url::parse(page)
        .or_else(|_| url::Url::parse("http://localhost").and_then(|b| b.join(page)))
    else {
        return answer(StatusCode::BAD_REQUEST, false, "Page-URL is not a URL");
    };
    let path = url.path().to_string();
    let resolving = state.clone();
    let resolved = match tokio::task::spawn_blocking(move || resolving.resolve(&path)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return resolve_error(e),
        Err(_) => return answer(StatusCode::INTERNAL_SERVER_ERROR, false, "internal error"),
    };
    match resolved {
        Resolved::File { rel, .. } if NodeKind::of_file_name(&rel) == NodeKind::Site => {
            save_to(state, &rel, &headers, body).await
        }
        _ => answer(StatusCode::BAD_REQUEST, false, "Page-URL is not a site"),
    }
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    match crate::body::read_capped(headers, body, MAX_CONTENT_BYTES as usize).await {
        Ok(b) => Ok(b),
        Err(crate::body::BodyError::TooLarge) => Err(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            false,
            "the page is larger than 20 MB, the platform's limit",
        )),
        Err(_) => Err(answer(
            StatusCode::BAD_REQUEST,
            false,
            "could not read the body",
        )),
    }
}

/// Whether `bytes` is an HTML document (what a page posts of itself).
fn is_html_document(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]);
    let start = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.starts_with("<!--")
}

async fn save_to(state: ServeState, rel: &str, headers: &HeaderMap, body: Body) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if json {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            false,
            "send the page's HTML as the body, not JSON",
        );
    }
    // At most MAX_SAVES bodies in memory at once; the others wait here, unread.
    let Ok(_permit) = state.0.saves.clone().acquire_owned().await else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            "the server is stopping",
        );
    };
    let bytes = match read_body(headers, body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if !is_html_document(&bytes) {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            false,
            "the body is not an HTML document",
        );
    }
    let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
    let saved = match state.0.save_to.clone() {
        SaveTo::Engine(engine) => {
            let rel = rel.to_string();
            // The copy being replaced must be on disk to be kept in sites-versions; when it cannot
            // be fetched (offline), the platform still keeps it as a version.
            if let Some(ino) = engine.ino_of_path(&rel) {
                let _ = engine.fetch(ino).await;
            }
            tokio::task::spawn_blocking(move || match engine.ino_of_path(&rel) {
                Some(ino) => engine.save_bytes(ino, &bytes).map_err(|e| e.to_string()),
                None => Err(format!("{rel} is not known to the mount")),
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        }
        SaveTo::Mirror => {
            let lock = {
                let mut locks = state.0.locks.lock().unwrap_or_else(|p| p.into_inner());
                locks.entry(rel.to_string()).or_default().clone()
            };
            let _one_at_a_time = lock.lock().await;
            let mirror = state.0.mirror.clone();
            let rel = match crate::cache::RelPath::parse(rel) {
                Ok(rel) => rel,
                Err(e) => return answer(StatusCode::BAD_REQUEST, false, &e.to_string()),
            };
            tokio::task::spawn_blocking(move || {
                let work = save::stage(&mirror, &rel, &bytes)?;
                save::replace(&mirror, &rel, NodeKind::Site, &work, false)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        }
    };
    match saved {
        Ok(()) => {
            tracing::info!(path = %rel, "saved from the browser");
            answer(StatusCode::OK, true, &format!("Saved {name}"))
        }
        Err(e) => {
            tracing::warn!(path = %rel, error = %e, "a save from the browser failed");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
                &format!("could not save {name}: {e}"),
            )
        }
    }
}
