//! `GET /_/meta` (local-host.md §2.3): what this host serves, so the page's live sync picks the
//! spec wire (`/_/sync`); with `Document-URL` naming a page in the mirror, what may be done with
//! that page.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ServeState;
use crate::protocol::MAX_CONTENT_BYTES;

pub async fn meta(State(state): State<ServeState>, headers: HeaderMap) -> Response {
    let mut body = serde_json::json!({"spec": 1, "extensions": ["sync", "upload"]});
    if let Some(address) = super::address::from_headers(&headers) {
        if let Ok(page) = state.find_page(address).await {
            if page.exists {
                body["document"] = serde_json::json!({
                    "writable": true,
                    "maxBytes": MAX_CONTENT_BYTES,
                    "upload": {"allowed": true, "maxBytes": super::upload::MAX_UPLOAD_BYTES},
                });
            }
        }
    }
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
