//! Saves from apps: `POST /_/save` (and bare `/save`) with the page's address in `Document-URL`
//! or `Page-URL` (what hyperclayjs sends), resolved as GET resolves it, a new address making a new
//! site; and `POST /save/NAME` (older clients: NAME is the `currentResource` cookie, the site found
//! by name wherever it is). The body is the whole document. Refusals, all before anything is
//! written: over 20 MiB 413 (without reading it all), a JSON body 415, a body that is not an HTML
//! document 422, an address that names no site 400. After the write, the file's view-mode tabs
//! get the stored bytes (live sync).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::{answer, resolve_error, ServeState};
use crate::cache::RelPath;
use crate::protocol::{names, MAX_CONTENT_BYTES};

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
    match RelPath::parse(&rel) {
        Ok(rel) => save_to(state, &rel, &headers, body).await,
        Err(e) => answer(StatusCode::BAD_REQUEST, false, &e.to_string()),
    }
}

pub async fn by_page_url(
    State(state): State<ServeState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(address) = super::address::from_headers(&headers) else {
        return answer(
            StatusCode::BAD_REQUEST,
            false,
            "the Document-URL (or Page-URL) header is missing",
        );
    };
    let page = match state.find_page(address).await {
        Ok(page) => page,
        Err(e) => return resolve_error(e),
    };
    save_to(state, &page.rel, &headers, body).await
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    match crate::body::read_capped(headers, body, MAX_CONTENT_BYTES as usize).await {
        Ok(b) => Ok(b),
        Err(crate::body::BodyError::TooLarge) => Err(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            false,
            "the page is larger than 20 MiB (20,971,520 bytes), the platform's limit",
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

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| t == "application/json" || t.ends_with("+json"))
}

async fn save_to(state: ServeState, rel: &RelPath, headers: &HeaderMap, body: Body) -> Response {
    if is_json(headers) {
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
    // `user` (a gesture came with the change) or `auto`: logged; the platform's API has no field
    // for it yet.
    let trigger = headers
        .get("save-trigger")
        .and_then(|v| v.to_str().ok())
        .filter(|t| matches!(*t, "user" | "auto"))
        .unwrap_or("unknown");
    // Off the async threads (a page may be 20 MiB): the page was served with the local
    // library's links and the file keeps the CDN's; and the data guard compares the page before
    // and after (read only for pages it watches).
    let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
    let preparing = (state.clone(), rel.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        let (state, rel) = preparing;
        let bytes = match super::library::restore_links(&bytes) {
            std::borrow::Cow::Owned(restored) => bytes::Bytes::from(restored),
            std::borrow::Cow::Borrowed(_) => bytes,
        };
        let guarded = super::dataloss::watches(&state, &rel, &bytes);
        let before = guarded
            .then(|| {
                state
                    .0
                    .mirror
                    .read_at_most(&rel, MAX_CONTENT_BYTES)
                    .ok()
                    .flatten()
            })
            .flatten();
        (bytes, guarded, before)
    })
    .await;
    let Ok((bytes, guarded, before)) = prepared else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, false, "internal error");
    };
    match state.write_file(rel, bytes.clone()).await {
        Ok(()) => {
            tracing::info!(path = %rel, trigger, "saved from the browser");
            if state.0.live.has_tabs(rel) {
                state.0.live.stored(rel, &String::from_utf8_lossy(&bytes));
            }
            if guarded {
                let (state, rel, bytes) = (state.clone(), rel.clone(), bytes.clone());
                let by = super::dataloss::Provenance::of_trigger(Some(trigger));
                // The answer does not wait for the guard, which never fails the save.
                tokio::spawn(async move {
                    super::dataloss::check(&state, &rel, before, bytes, by).await
                });
            }
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
