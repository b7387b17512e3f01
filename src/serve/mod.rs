//! The local static server (`hyperclay serve`, and inside `hyperclay mount` on port 4321): runs
//! every app in the mirror with no account and no network, and takes their saves. A save here
//! runs the mount's save code (backup, atomic write, version, immediate push) when a mount owns
//! the mirror; standalone, the same disk save without the push (the next mount sends it up).
//! Bound to loopback only; see `guard` for what a hostile web page cannot do.

mod accept;
mod address;
mod dataloss;
mod guard;
mod library;
mod listing;
mod live;
mod meta;
mod peer;
pub mod resolve;
mod save;
mod sites;
pub mod tailwind;
mod upload;
mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use tower::ServiceExt;

use crate::cache::Mirror;
use crate::protocol::NodeKind;
use crate::sync::Engine;
use resolve::{ResolveError, Resolved};

/// Where saves go.
#[derive(Clone)]
pub enum SaveTo {
    /// A mount owns the mirror: its engine saves and pushes.
    Engine(Arc<Engine>),
    /// No mount: the disk save alone.
    Mirror,
}

struct Inner {
    mirror: Arc<Mirror>,
    save_to: SaveTo,
    port: std::sync::atomic::AtomicU16,
    /// One save per file at a time (standalone, with no engine and so no cells; the engine's
    /// saves claim the file's cell). An entry lives while a save of its file runs or waits.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where sites were found by name.
    sites: sites::RememberedSites,
    /// Requests answered at once; more wait their turn (as tokio's mini-redis limits its
    /// connections): a flood of requests can't take memory without end.
    requests: Arc<tokio::sync::Semaphore>,
    /// Saves at once: each holds up to 20 MiB of body, so 40 parallel saves hold at most
    /// `MAX_SAVES` x 20 MiB, not a gigabyte.
    saves: Arc<tokio::sync::Semaphore>,
    /// The open tabs of each file, for live sync.
    live: live::Hub,
    /// Tailwind stylesheets compiled for pages.
    sheets: tailwind::Sheets,
    /// The data guard's state changes one at a time (each is a read, a compare and a write).
    guard_lock: Arc<Mutex<()>>,
}

/// Requests in flight at once (each streams a file or holds a site's HTML).
const MAX_REQUESTS: usize = 32;
/// Saves in flight at once (each holds its whole body, up to 20 MiB).
const MAX_SAVES: usize = 4;

#[derive(Clone)]
pub struct ServeState(Arc<Inner>);

impl ServeState {
    pub fn port(&self) -> u16 {
        self.0.port.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the site called `stem` is, mirror-relative. Blocking (it may walk the mirror).
    fn site_path(&self, stem: &str) -> Option<String> {
        if !sites::can_be_site(stem) {
            return None;
        }
        self.0
            .sites
            .find(self.0.mirror.root(), stem, || match &self.0.save_to {
                SaveTo::Engine(engine) => sites::in_index(engine, stem),
                SaveTo::Mirror => None,
            })
    }

    /// Resolves a request path (see `resolve`), finding sites by name. Blocking.
    fn resolve(&self, raw_path: &str) -> Result<Resolved, ResolveError> {
        resolve::resolve(self.0.mirror.root(), raw_path, |stem| self.site_path(stem))
    }
}

/// A server running on loopback.
pub struct RunningServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:port` (0 picks a free port) and serves the mirror.
pub async fn start(
    mirror: Arc<Mirror>,
    save_to: SaveTo,
    port: u16,
) -> anyhow::Result<RunningServer> {
    // The message names no flag: each command adds its own (`--serve-port` for the mount,
    // `--port` for `serve`).
    let listener = accept::listen(SocketAddr::from(([127, 0, 0, 1], port)))
        .with_context(|| format!("port {port} on 127.0.0.1 is taken"))?;
    let addr = listener.local_addr()?;
    let state = ServeState(Arc::new(Inner {
        mirror,
        save_to,
        port: std::sync::atomic::AtomicU16::new(addr.port()),
        locks: Mutex::new(HashMap::new()),
        sites: sites::RememberedSites::default(),
        requests: Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS)),
        saves: Arc::new(tokio::sync::Semaphore::new(MAX_SAVES)),
        live: live::Hub::default(),
        sheets: tailwind::sheets(),
        guard_lock: Arc::new(Mutex::new(())),
    }));
    if let SaveTo::Engine(engine) = &state.0.save_to {
        tokio::spawn(live::follow_engine(state.clone(), engine.clone()));
    }
    // A path the page's own routes share with a site's name (`/save/...`) still serves GETs.
    let app = Router::new()
        .route("/save/{name}", post(save::by_name).fallback(serve_path))
        .route("/save", post(save::by_page_url).fallback(serve_path))
        .route("/_/save", post(save::by_page_url))
        .route("/_/meta", get(meta::meta))
        // The upload reads its body itself, with its own limit (axum's default of 2 MB would
        // refuse a multipart form before it).
        .route(
            "/_/upload",
            post(upload::upload).layer(axum::extract::DefaultBodyLimit::max(upload::MAX_BODY)),
        )
        .route("/_/sync", get(live::stream).post(live::relay))
        .route("/_/live-sync/stream", get(live::stream))
        .route("/_/live-sync/save", post(live::relay))
        .route("/_/cdn/{*path}", get(library::serve))
        .route(
            "/_/data-loss",
            get(dataloss::incident).post(dataloss::choose),
        )
        .route("/_/data-loss/{id}", post(dataloss::choose))
        .route("/_", any(reserved))
        .route("/_/", any(reserved))
        .route("/_/{*rest}", any(reserved))
        .fallback(serve_path)
        .layer(axum::middleware::map_response(owner_cookies))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state);
    // Our own accept loop, not `axum::serve`: another user's connection is reset before a byte
    // of it is read, and each connection's time and number are bounded (`accept`).
    let task = tokio::spawn(accept::run(listener, app));
    Ok(RunningServer { addr, task })
}

/// The JSON answer apps expect: `{msg, msgType}`.
pub fn answer(status: StatusCode, success: bool, msg: &str) -> Response {
    let body =
        serde_json::json!({"msg": msg, "msgType": if success { "success" } else { "error" }});
    (status, Json(body)).into_response()
}

/// `/_/` belongs to the host: nothing under it is ever a file.
async fn reserved() -> Response {
    answer(
        StatusCode::NOT_FOUND,
        false,
        "no such host route (paths under /_/ are the local server's own)",
    )
}

/// Every answer says the visitor owns the page: on a local host the user owns every file, and
/// hyperclayjs turns on editing only with `isAdminOfCurrentResource` set.
async fn owner_cookies(mut response: Response) -> Response {
    for cookie in ["isAdminOfCurrentResource=true", "isLoggedIn=true"] {
        let value = HeaderValue::from_str(&format!("{cookie}; Path=/; SameSite=Lax"));
        if let Ok(v) = value {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Types a browser shows as data and never as a document that runs script (with `nosniff`, it
/// does not guess another): raster images (not SVG, an XML document that can carry script when
/// opened), fonts, audio and video, CSS, JavaScript and JSON (shown as text when opened; as a
/// script they run only where a page already chose to load them), plain text and CSV, PDF (its
/// viewer runs apart from the origin, and breaks under a sandbox), WebAssembly. Kept short: a
/// type missing here only costs a download.
fn inert(mime: &mime_guess::Mime) -> bool {
    use mime_guess::mime;
    match mime.type_() {
        mime::IMAGE => mime.subtype() != mime::SVG,
        mime::FONT | mime::AUDIO | mime::VIDEO => true,
        mime::TEXT => matches!(
            mime.subtype().as_str(),
            "css" | "javascript" | "plain" | "csv"
        ),
        mime::APPLICATION => {
            mime.suffix().is_none()
                && matches!(
                    mime.subtype().as_str(),
                    "json" | "javascript" | "pdf" | "wasm"
                )
        }
        _ => false,
    }
}

fn resolve_error(e: ResolveError) -> Response {
    let status = match e {
        ResolveError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ResolveError::NotFound => StatusCode::NOT_FOUND,
        ResolveError::Forbidden => StatusCode::FORBIDDEN,
    };
    answer(status, false, &e.to_string())
}

async fn serve_path(State(state): State<ServeState>, request: Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            false,
            "only GET and HEAD here; saves go to /save/NAME",
        );
    }
    let path = request.uri().path().to_string();
    // A browser asking for a page gets one, also for a path that names nothing.
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let not_found = |path: &str| -> Response {
        match wants_html {
            true => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                listing::not_found_page(path),
            )
                .into_response(),
            false => answer(StatusCode::NOT_FOUND, false, "not found"),
        }
    };
    if path.starts_with("/tailwindcss/") {
        if let Some(response) = tailwind::serve(&state, &path).await {
            return response;
        }
    }
    let resolving = state.clone();
    let asked = path.clone();
    let resolved = match tokio::task::spawn_blocking(move || resolving.resolve(&asked)).await {
        Ok(Ok(r)) => r,
        Ok(Err(ResolveError::NotFound)) => return not_found(&path),
        Ok(Err(e)) => return resolve_error(e),
        Err(_) => return answer(StatusCode::INTERNAL_SERVER_ERROR, false, "internal error"),
    };
    match resolved {
        Resolved::Dir { path: dir, rel } => {
            let waiting = match &state.0.save_to {
                SaveTo::Engine(engine) => {
                    let engine = engine.clone();
                    tokio::task::spawn_blocking(move || engine.waiting_paths())
                        .await
                        .ok()
                }
                SaveTo::Mirror => None,
            };
            match listing::render(&dir, &rel, waiting.as_deref()) {
                Ok(html) => {
                    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
                }
                Err(_) => not_found(&path),
            }
        }
        Resolved::File { path, rel } if NodeKind::of_file_name(&rel) == NodeKind::Site => {
            serve_site(&path, &rel, request.method())
        }
        Resolved::File { path, .. } => serve_upload(&path, request).await,
    }
}

/// A site: its HTML, with the cookie older Hyperclay client libraries read to know where to save
/// (`owner_cookies` adds the ones that allow editing).
fn serve_site(path: &std::path::Path, rel: &str, method: &Method) -> Response {
    let Ok(html) = std::fs::read(path) else {
        return answer(StatusCode::NOT_FOUND, false, "not found");
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let stem = name
        .strip_suffix(".htmlclay")
        .or_else(|| name.strip_suffix(".html"))
        .unwrap_or(name);
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        match library::localize_links(&String::from_utf8_lossy(&html)) {
            std::borrow::Cow::Owned(served) => served.into_bytes(),
            std::borrow::Cow::Borrowed(_) => html,
        }
    };
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let cookie = format!(
        "currentResource={}; Path=/; SameSite=Lax",
        percent_encoding::utf8_percent_encode(stem, percent_encoding::NON_ALPHANUMERIC)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.append(header::SET_COOKIE, v);
    }
    response
}

/// Any other file (not a site): its content type, range requests and `Last-Modified`
/// validation, never sniffed (`nosniff`). Decided by what the browser would do with the served
/// type, not by a list of bad extensions: a type on the short `inert` list is shown as it is;
/// anything else (HTML under any extension, `.shtml`, `.hxt`, XML and its kin, SVG, and every
/// type we don't know) is a download, and sandboxed should a browser render it anyway, so a file
/// a page uploaded can never run script as a page of this origin, where every page may save
/// every app. Subresources are unaffected: `<img>`, `<script>`, `fetch` ignore both headers.
async fn serve_upload(path: &std::path::Path, request: Request) -> Response {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let active = !inert(&mime);
    let service = tower_http::services::ServeFile::new_with_mime(path, &mime);
    match service.oneshot(request).await {
        Ok(mut response) => {
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            if active {
                h.insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
                // An opaque origin with no script, for a browser that shows it anyway.
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("sandbox"),
                );
            }
            response.map(Body::new).into_response()
        }
        Err(_) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            false,
            "could not read the file",
        ),
    }
}
