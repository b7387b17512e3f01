//! `hyperclay dev-platform`: a faithful, self-contained implementation of the platform's sync API
//! (docs/sync-api.md, Part 1 and Part 2) over SQLite, so that the client is developed and tested
//! against a real server on loopback. `--plain` serves exactly Part 1, as hyperclay.com does today.

mod auth;
mod error;
mod local_auth;
mod routes;
mod samples;
mod store;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::http::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use error::PlatformError;
pub use store::{Account, Store, StoredContent};

/// How the dev platform is started.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The account the platform's browser session is signed in as (`/local-auth` approves for it).
    pub username: String,
    /// Fix the account's API key (scripts and tests need a known one).
    pub api_key: Option<String>,
    /// `false` makes the account answer `payment_required`.
    pub paid: bool,
    pub max_sites: Option<u64>,
    pub auto_approve: bool,
    /// Serve exactly Part 1 of the API.
    pub plain: bool,
    pub token_ttl: Duration,
    pub ping_interval: Duration,
    /// Create a few sample sites, uploads and folders when the account is empty.
    pub samples: bool,
    /// Whether `GET stream` answers; tests turn it off to exercise the polling fallback.
    pub stream_enabled: bool,
}

impl PlatformConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> PlatformConfig {
        PlatformConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            username: "dev".into(),
            api_key: None,
            paid: true,
            max_sites: None,
            auto_approve: false,
            plain: false,
            token_ttl: Duration::from_secs(10 * 24 * 3600),
            ping_interval: Duration::from_secs(15),
            samples: false,
            stream_enabled: true,
        }
    }
}

pub struct Platform {
    store: Store,
    tokens: auth::Tokens,
    signed_in: Account,
    plain: bool,
    auto_approve: bool,
    ping_interval: Duration,
    stream_enabled: Arc<AtomicBool>,
    /// Milliseconds every content write waits before it is stored (tests: a slow platform).
    write_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Milliseconds each live event waits before it goes out (tests: a stream slower than the
    /// answers to the writes it reports).
    stream_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Content writes answer 500 (tests: a platform that is up but failing).
    fail_writes: Arc<AtomicBool>,
    /// How many content writes answered 500 that way.
    failed_writes: Arc<std::sync::atomic::AtomicU64>,
    /// Creates and content writes under way, and the most at once (tests: a burst's pushes
    /// are bounded).
    pub(crate) writes: Arc<WritesAtOnce>,
    /// Turns true when the platform stops: open event streams end with it.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Device approvals the `/local-auth` page offered, not yet used.
    approvals: local_auth::Approvals,
}

pub type AppState = Arc<Platform>;

/// Creates and content writes under way, and the most there were at once.
#[derive(Default)]
pub(crate) struct WritesAtOnce {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl WritesAtOnce {
    /// One write begins; it ends when the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> WriteUnderWay {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        WriteUnderWay(self.clone())
    }
}

pub(crate) struct WriteUnderWay(Arc<WritesAtOnce>);

impl Drop for WriteUnderWay {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A dev platform serving on loopback until stopped.
pub struct RunningPlatform {
    pub addr: SocketAddr,
    pub account: Account,
    stream_enabled: Arc<AtomicBool>,
    write_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    stream_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    fail_writes: Arc<AtomicBool>,
    failed_writes: Arc<std::sync::atomic::AtomicU64>,
    writes: Arc<WritesAtOnce>,
    shutdown: Option<oneshot::Sender<()>>,
    stopping: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPlatform {
    /// The value for `HYPERCLAY_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `GET stream` answer 503 (new connections), or serve again.
    pub fn set_stream_enabled(&self, enabled: bool) {
        self.stream_enabled.store(enabled, Ordering::SeqCst);
    }

    /// Makes every content write and create wait `delay` before it is stored (a slow platform).
    pub fn set_write_delay(&self, delay: Duration) {
        self.write_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes content writes answer 500 (a platform up but failing), or work again.
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// How many content writes answered 500 because of `set_fail_writes` so far.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::SeqCst)
    }

    /// The most creates and content writes that were under way at once so far.
    pub fn most_writes_at_once(&self) -> usize {
        self.writes.most.load(Ordering::SeqCst)
    }

    /// Makes every live event wait `delay` before it is sent (a slow event stream).
    pub fn set_stream_delay(&self, delay: Duration) {
        self.stream_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stops: no new connections, open streams end, idle connections close; after 2 s whatever
    /// is left is dropped. Afterwards the platform is unreachable, as if its machine went away.
    pub async fn stop(mut self) {
        let _ = self.stopping.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

/// Opens the data directory, prepares the account, binds and serves in a background task.
pub async fn start(config: PlatformConfig) -> anyhow::Result<RunningPlatform> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let db = config.data_dir.join("platform.db");
    let store = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let account = store.ensure_account(
        &config.username,
        config.api_key.as_deref(),
        config.paid,
        config.max_sites,
    )?;
    if config.samples {
        samples::seed(&store, &account)?;
    }
    let secret = store.token_secret()?;
    let stream_enabled = Arc::new(AtomicBool::new(config.stream_enabled));
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let write_delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream_delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fail_writes = Arc::new(AtomicBool::new(false));
    let failed_writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writes = Arc::new(WritesAtOnce::default());
    let platform = Arc::new(Platform {
        store,
        tokens: auth::Tokens::new(&secret, config.token_ttl),
        signed_in: account.clone(),
        plain: config.plain,
        auto_approve: config.auto_approve,
        ping_interval: config.ping_interval,
        stream_enabled: stream_enabled.clone(),
        write_delay_ms: write_delay_ms.clone(),
        stream_delay_ms: stream_delay_ms.clone(),
        fail_writes: fail_writes.clone(),
        failed_writes: failed_writes.clone(),
        writes: writes.clone(),
        stopping,
        approvals: local_auth::Approvals::default(),
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = router(platform);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "dev platform stopped");
        }
    });
    Ok(RunningPlatform {
        addr,
        account,
        stream_enabled,
        write_delay_ms,
        stream_delay_ms,
        fail_writes,
        failed_writes,
        writes,
        shutdown: Some(tx),
        stopping: stopping_tx,
        task,
    })
}

fn router(platform: AppState) -> Router {
    let plain = platform.plain;
    let mut sync = Router::new()
        .route("/status", get(routes::status))
        .route("/nodes", get(routes::list).post(routes::create))
        .route("/nodes/{id}", axum::routing::delete(routes::delete))
        .route(
            "/nodes/{id}/content",
            get(routes::get_content).put(routes::put_content),
        )
        .route("/nodes/{id}/rename", patch(routes::rename))
        .route("/nodes/{id}/move", patch(routes::move_node))
        .route("/control", post(routes::control))
        .route("/stream", get(stream::stream));
    if !plain {
        sync = sync
            .route("/changes", get(routes::changes))
            .route("/nodes/{id}/versions", get(routes::versions))
            .route("/nodes/{id}/versions/{version}", get(routes::version))
            .route("/token/refresh", post(routes::refresh_token));
    }
    let app = Router::new()
        .nest("/_/sync", sync.clone())
        .nest("/sync", sync)
        .route(
            "/local-auth",
            get(local_auth::page).post(local_auth::approve),
        )
        .fallback(routes::not_found)
        .with_state(platform)
        .layer(axum::middleware::map_response(errors_as_json));
    match plain {
        true => app.layer(axum::middleware::map_response(without_error_codes)),
        false => app,
    }
}

/// Every error is JSON `{msg, code}`, also the ones axum's extractors answer by themselves (an
/// unparseable id, a malformed JSON body: plain text otherwise).
async fn errors_as_json(response: Response<Body>) -> Response<Body> {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status.as_u16() {
        400 | 405 | 415 | 422 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        413 => "too_large",
        _ => "internal",
    };
    let msg = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let body = serde_json::json!({ "msg": msg, "code": code });
    axum::response::IntoResponse::into_response((status, axum::Json(body)))
}

/// Part 1 error bodies carry no `code`: strip it, so the client's fallbacks are really tested.
async fn without_error_codes(response: Response<Body>) -> Response<Body> {
    if response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let stripped = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("code");
            serde_json::to_vec(&map).unwrap_or_else(|_| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(stripped))
}
