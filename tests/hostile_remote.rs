//! A platform (or a proxy in front of it) that answers with redirects, against a real mount and
//! `hyperclay login` (docs/reliability.md, "Security"). The platform's API never redirects; a
//! client that followed one would carry `X-API-Key` (reqwest drops only `Authorization` on a
//! cross-host redirect) and, with a 307, the body of the user's edit to the address it names.
//! Each test runs a second listener on loopback as that address and asserts it hears nothing.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{wait_until, MountProcess, KEY};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const PAGE: &[u8] = b"<html>before</html>";

/// What the capture listener heard: one line per request (method, path, the key if any) and
/// every body.
#[derive(Default)]
struct Heard {
    requests: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

/// The second address: records everything, answers 200 `{}`.
async fn capture() -> (SocketAddr, Arc<Mutex<Heard>>, tokio::task::JoinHandle<()>) {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let app = Router::new()
        .fallback(
            |State(h): State<Arc<Mutex<Heard>>>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                let key = headers
                    .get("x-api-key")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                // Not poisoned by a failed assertion elsewhere: it keeps recording.
                let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
                h.requests.push(format!("{method} {uri} key={key}"));
                h.bodies.push(body.to_vec());
                Json(json!({}))
            },
        )
        .with_state(heard.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, heard, task)
}

/// Which answers redirect to the capture listener.
#[derive(Clone, Default)]
struct Redirects {
    /// `GET status` answers 302.
    status: bool,
    /// `GET nodes` answers 302.
    listing: bool,
    /// `PUT` and `POST` of content answer 307 (the body would follow).
    writes: bool,
}

#[derive(Clone)]
struct Platform {
    to: SocketAddr,
    redirects: Redirects,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A redirect to the same path (as asked: `OriginalUri`, before the nested router strips
/// `/_/sync`) at `to`.
fn redirect(status: StatusCode, to: SocketAddr, uri: &Uri) -> Response {
    (
        status,
        [("location", format!("http://{to}{uri}"))],
        Body::empty(),
    )
        .into_response()
}

/// A platform that speaks enough of the sync API for a mount (one site, `page.html`, node 1)
/// and redirects what `redirects` says to `to`.
async fn redirecting_platform(
    to: SocketAddr,
    redirects: Redirects,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let state = Platform {
        to,
        redirects,
        requests: requests.clone(),
    };
    let sync = Router::new()
        .route("/status", get(status))
        .route("/nodes", get(nodes).post(write))
        .route("/nodes/{id}/content", get(content).put(write))
        .route("/stream", get(stream));
    let app = Router::new()
        .nest("/_/sync", sync)
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"msg": "no"}))) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |State(p): State<Platform>,
             request: axum::extract::Request,
             next: axum::middleware::Next| async move {
                p.requests.lock().unwrap().push(format!(
                    "{} {}",
                    request.method(),
                    request.uri().path()
                ));
                next.run(request).await
            },
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, requests, task)
}

async fn status(State(p): State<Platform>, OriginalUri(uri): OriginalUri) -> Response {
    if p.redirects.status {
        return redirect(StatusCode::FOUND, p.to, &uri);
    }
    Json(json!({
        "serverTime": hyperclay::protocol::format_time(chrono::Utc::now()),
        "username": "mallory",
        "features": ["raw"],
    }))
    .into_response()
}

async fn nodes(State(p): State<Platform>, OriginalUri(uri): OriginalUri) -> Response {
    if p.redirects.listing {
        return redirect(StatusCode::FOUND, p.to, &uri);
    }
    Json(json!({"nodes": [{
        "id": 1, "type": "site", "name": "page.html", "path": "", "parentId": 0,
        "size": PAGE.len(), "modifiedAt": "2026-11-01T00:00:00.000Z",
        "checksum": hyperclay::protocol::checksum(PAGE),
    }]}))
    .into_response()
}

async fn content(Path(id): Path<u64>) -> Response {
    if id != 1 {
        return (StatusCode::NOT_FOUND, Json(json!({"msg": "not found"}))).into_response();
    }
    let sum = hyperclay::protocol::checksum(PAGE);
    (
        [
            ("x-node-type", "site".to_string()),
            ("x-modified-at", "2026-11-01T00:00:00.000Z".to_string()),
            ("x-checksum", sum.to_string()),
        ],
        PAGE,
    )
        .into_response()
}

async fn write(State(p): State<Platform>, OriginalUri(uri): OriginalUri) -> Response {
    if p.redirects.writes {
        return redirect(StatusCode::TEMPORARY_REDIRECT, p.to, &uri);
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"msg": "no"})),
    )
        .into_response()
}

async fn stream() -> Response {
    let pings = futures::stream::unfold(true, |first| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some((
            Ok::<_, std::io::Error>(Bytes::from_static(b": ping\n\n")),
            false,
        ))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(pings),
    )
        .into_response()
}

fn status_text(m: &MountProcess) -> String {
    let out = m
        .command()
        .arg("status")
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn heard_nothing(heard: &Arc<Mutex<Heard>>) {
    let h = heard.lock().unwrap();
    assert!(
        h.requests.is_empty(),
        "the redirect's address heard nothing: {:?}",
        h.requests
    );
    assert!(
        !h.requests.iter().any(|r| r.contains(KEY)),
        "never the key: {:?}",
        h.requests
    );
}

/// A `302` on `GET nodes` and on `GET status` (the mount's listing, `hyperclay login`): the key
/// never reaches the address it names, and status says why nothing is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_listing_or_login_never_carries_the_key_away() {
    let (to, heard, _capture) = capture().await;
    let (url, requests, _platform) = redirecting_platform(
        to,
        Redirects {
            listing: true,
            ..Redirects::default()
        },
    )
    .await;
    let mut m = MountProcess::prepare(&url, &[]);
    m.spawn();
    // Until the listing was refused, or (before the fix) followed to the capture.
    let heard_anything = || !heard.lock().unwrap().requests.is_empty();
    assert!(
        wait_until(WAIT, || heard_anything()
            || status_text(&m).contains("redirect"))
        .is_some(),
        "status names the refusal: {}",
        status_text(&m)
    );
    heard_nothing(&heard);
    let status = status_text(&m);
    assert!(
        status.contains(&format!("redirect (302) to http://{to}")),
        "status names where it pointed: {status}"
    );
    assert!(
        status.contains("HYPERCLAY_URL"),
        "and what to check: {status}"
    );
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r == "GET /_/sync/nodes"),
        "the listing was asked for"
    );
    heard_nothing(&heard);
    m.unmount();

    // `hyperclay login --api-key` checks the key with `GET status`: redirected, refused.
    let (login_url, login_requests, _login_platform) = redirecting_platform(
        to,
        Redirects {
            status: true,
            ..Redirects::default()
        },
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let mut login = std::process::Command::new(env!("CARGO_BIN_EXE_hyperclay"))
        .args(["login", "--api-key"])
        .env("HYPERCLAY_HOME", home.path())
        .env("HYPERCLAY_URL", &login_url)
        .env_remove("HYPERCLAY_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = login.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "login refuses: {stderr}");
    assert!(stderr.contains("redirect"), "and says why: {stderr}");
    assert!(
        login_requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r == "GET /_/sync/status"),
        "the status was asked for"
    );
    heard_nothing(&heard);
}

/// A `307` on `PUT content` (and on `POST nodes`): neither the key nor the edit's content
/// reaches the address it names, and status names the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_write_never_carries_the_key_or_the_edit_away() {
    let (to, heard, _capture) = capture().await;
    let (url, requests, _platform) = redirecting_platform(
        to,
        Redirects {
            writes: true,
            ..Redirects::default()
        },
    )
    .await;
    let mut m = MountProcess::prepare(&url, &[]);
    m.spawn();
    assert!(
        wait_until(WAIT, || std::fs::read(m.path("page.html"))
            .is_ok_and(|b| b == PAGE))
        .is_some(),
        "the page comes down"
    );
    let edit = b"<html>the user's private edit</html>";
    std::fs::write(m.path("page.html"), edit).unwrap();
    std::fs::write(m.path("new.html"), b"<html>a new private page</html>").unwrap();
    let puts = || {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("PUT /_/sync/nodes/1/content") || *r == "POST /_/sync/nodes")
            .count()
    };
    let heard_anything = || !heard.lock().unwrap().requests.is_empty();
    assert!(
        wait_until(WAIT, || {
            puts() >= 2 && (heard_anything() || status_text(&m).contains("redirect"))
        })
        .is_some(),
        "both writes were sent and refused: {:?}\n{}",
        requests.lock().unwrap(),
        status_text(&m)
    );
    heard_nothing(&heard);
    let status = status_text(&m);
    assert!(
        status.contains(&format!("redirect (307) to http://{to}")),
        "status names the refusal: {status}"
    );
    let h = heard.lock().unwrap();
    assert!(
        !h.bodies
            .iter()
            .any(|b| b.windows(7).any(|w| w == b"private")),
        "never the content"
    );
    drop(h);
    assert!(m.log().contains("not followed"), "the log says so");
}
