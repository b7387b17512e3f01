//! `POST /_/upload`: a file the page uploads, stored beside it as Hyperclay Local stores it
//! (local-host.md §2.4): `<page's folder>/assets-<page stem>/<name stem>-<hash><ext>`, the hash
//! the first 6 hex digits of the bytes' SHA-256, two more each time other bytes already hold that
//! name (past 32: 409), so equal bytes share one file. It is written by the same save as
//! everything else, so with a mount it goes up to the platform at once.
//!
//! Both bodies are taken: the JSON hyperclayjs sends (`{fileName, fileBody}`, base64) and
//! Hyperclay Local's multipart form (the first file part named `file`). The answer carries both
//! shapes the library reads: `urls` (`uploadFile`) and `uploads[0].url` (hypercms).

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use sha2::Digest;

use super::ServeState;
use crate::cache::RelPath;
use crate::protocol::{names, MAX_CONTENT_BYTES};

/// An upload's bytes: the platform's limit for any file, since it must go up.
pub const MAX_UPLOAD_BYTES: usize = MAX_CONTENT_BYTES as usize;
/// The JSON body holds the bytes in base64 (4/3 of them) plus the name and extra fields.
const MAX_JSON_BODY: usize = MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024;
/// The largest body of either kind (a multipart form holds the bytes as they are, plus parts).
pub const MAX_BODY: usize = MAX_JSON_BODY;
/// Names that would run as code served from this origin (SVG is taken and served inert).
const REFUSED_EXTENSIONS: &[&str] = &[
    "html", "htm", "xhtml", "htmlclay", "js", "mjs", "cjs", "xml", "xht", "xsl", "xslt",
];

/// A refused upload: its status, Hyperclay Local's `code`, and a message for the toast.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: &'static str,
    msg: String,
}

fn refuse(status: StatusCode, code: &'static str, msg: &str) -> Refused {
    Refused {
        status,
        code,
        msg: msg.to_string(),
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"msg": self.msg, "msgType": "error", "code": self.code});
        (self.status, Json(body)).into_response()
    }
}

/// What was uploaded: a name and its bytes.
struct Upload {
    name: String,
    bytes: Vec<u8>,
}

pub async fn upload(State(state): State<ServeState>, request: Request) -> Response {
    match stored(state, request).await {
        Ok(response) => response,
        Err(refused) => refused.into_response(),
    }
}

async fn stored(state: ServeState, request: Request) -> Result<Response, Refused> {
    let bad = |msg: &str| refuse(StatusCode::BAD_REQUEST, "bad-request", msg);
    let address = super::address::from_headers(request.headers())
        .ok_or_else(|| bad("the Page-URL header is missing"))?;
    let page = match state.find_page(address).await {
        Ok(page) if page.exists => page,
        Ok(_) | Err(super::resolve::ResolveError::NotFound) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "not-found",
                "the page to upload beside is not in the mirror",
            ))
        }
        Err(e) => return Err(bad(&e.to_string())),
    };
    // Each upload holds its bytes in memory: at most MAX_SAVES at once.
    let _permit = state.0.saves.clone().acquire_owned().await.map_err(|_| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is stopping",
        )
    })?;
    let upload = read_upload(request).await?;
    let name = clean_name(&upload.name)?;
    let (url, stored_name, size) = store(&state, &page.rel, &name, upload.bytes).await?;
    tracing::info!(page = %page.rel, file = %stored_name, "uploaded from the browser");
    Ok(Json(serde_json::json!({
        "msg": "Uploaded",
        "msgType": "success",
        "uploads": [{"name": stored_name, "url": url, "bytes": size}],
        "urls": [url],
    }))
    .into_response())
}

async fn read_upload(request: Request) -> Result<Upload, Refused> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "the file is larger than 20 MiB, the platform's limit",
        )
    };
    if content_type.starts_with("multipart/form-data") {
        return read_multipart(request, too_large).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = crate::body::read_capped(&parts.headers, body, MAX_JSON_BODY)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => too_large(),
            _ => refuse(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "could not read the body",
            ),
        })?;
    #[derive(serde::Deserialize)]
    struct JsonUpload {
        #[serde(rename = "fileName")]
        file_name: String,
        #[serde(rename = "fileBody")]
        file_body: String,
    }
    let json: JsonUpload = serde_json::from_slice(&bytes).map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "expected {fileName, fileBody} with the file in base64, or a multipart form",
        )
    })?;
    // Up to 27 MiB of base64: decoded off the async threads.
    let body = json.file_body;
    let decoded = tokio::task::spawn_blocking(move || {
        base64::engine::general_purpose::STANDARD.decode(body.trim())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "fileBody is not base64",
        )
    })?;
    if decoded.len() > MAX_UPLOAD_BYTES {
        return Err(too_large());
    }
    Ok(Upload {
        name: json.file_name,
        bytes: decoded,
    })
}

async fn read_multipart(
    request: Request,
    too_large: impl Fn() -> Refused,
) -> Result<Upload, Refused> {
    let bad = || {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "a malformed multipart form",
        )
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|_| bad())?;
    while let Some(mut field) = form.next_field().await.map_err(|_| bad())? {
        if field.name() != Some("file") || field.file_name().is_none() {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_string();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|_| bad())? {
            if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Upload { name, bytes });
    }
    Err(refuse(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "the form has no file part named \"file\"",
    ))
}

/// The upload's name without folder parts or leading dots, refused if it could run here or the
/// platform would not take it.
fn clean_name(raw: &str) -> Result<String, Refused> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let name = base.trim_start_matches('.').to_string();
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if REFUSED_EXTENSIONS.contains(&ext.as_str()) {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-type",
            &format!("a .{ext} file can't be uploaded: it would run as code on this page's origin"),
        ));
    }
    names::check_upload(&name)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad-request", &e.to_string()))?;
    Ok(name)
}

/// Stores the bytes beside the page; answers the URL relative to the page, the stored name and
/// the size.
async fn store(
    state: &ServeState,
    page: &RelPath,
    name: &str,
    bytes: Vec<u8>,
) -> Result<(String, String, usize), Refused> {
    let page_name = page.rsplit('/').next().unwrap_or(page);
    let stem = page_name.split('.').next().unwrap_or(page_name);
    let folder_name = format!("assets-{stem}");
    let folder = page
        .parent()
        .unwrap_or_else(RelPath::root)
        .join(&folder_name)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad-request", &e.to_string()))?;
    let (name_stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    let name_stem_owned = name_stem.to_string();
    // Hashing and comparing with what holds a name (up to 20 MiB each) run off the async
    // threads; the write is the mount's own save.
    let choosing = (state.0.mirror.clone(), folder.clone(), bytes);
    let (bytes, chosen) = tokio::task::spawn_blocking(move || {
        let (mirror, folder, bytes) = choosing;
        let chosen = choose_name(&mirror, &folder, name_stem_owned, &ext, &bytes);
        (bytes, chosen)
    })
    .await
    .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "error", "internal error"))?;
    let (rel, stored, write) = chosen?;
    let size = bytes.len();
    if write {
        state
            .write_file(&rel, bytes::Bytes::from(bytes))
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    &format!("could not store the upload: {e}"),
                )
            })?;
    }
    let url = format!("{}/{}", encode(&folder_name), encode(&stored));
    Ok((url, stored, size))
}

/// The stored name for `bytes` in `folder`, and whether it must be written: the shortest hash
/// prefix (6, 8, ... 32 digits) whose name is free or already holds the same bytes.
fn choose_name(
    mirror: &crate::cache::Mirror,
    folder: &RelPath,
    name_stem: String,
    ext: &str,
    bytes: &[u8],
) -> Result<(RelPath, String, bool), Refused> {
    let hash = hex(&sha2::Sha256::digest(bytes));
    for digits in (6..=32).step_by(2) {
        let stored = format!("{name_stem}-{}{ext}", &hash[..digits]);
        let rel = folder
            .join(&stored)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad-request", &e.to_string()))?;
        match mirror.read_at_most(&rel, MAX_UPLOAD_BYTES as u64) {
            // The same bytes are already there: shared.
            Ok(Some(existing)) if existing == bytes => return Ok((rel, stored, false)),
            // Other bytes hold this name: a longer hash.
            Ok(_) => continue,
            Err(_) => return Ok((rel, stored, true)),
        }
    }
    Err(refuse(
        StatusCode::CONFLICT,
        "conflict",
        "too many different files share this name",
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_folders_and_leading_dots_and_code_is_refused() {
        assert_eq!(clean_name("../../x/.photo.png").unwrap(), "photo.png");
        assert_eq!(clean_name("C:\\a\\b.jpg").unwrap(), "b.jpg");
        assert!(clean_name("evil.html").is_err());
        assert!(clean_name("app.MJS").is_err());
        assert!(clean_name("drawing.svg").is_ok());
        assert_eq!(encode("my photo-1.png"), "my%20photo-1.png");
    }
}
