//! Any web page the user visits can send requests to localhost, so every request must name a
//! loopback host (against DNS rebinding), and a request that changes anything must come from a
//! page this server served: a cross-site `Origin`, `Origin: null` or `Sec-Fetch-Site: cross-site`
//! is refused with 403 before anything is read or written. And only the user who runs the server
//! is served (`peer`): another local user's connection is reset before its request is read
//! (`accept`), and should one reach a handler anyway, it gets 403 here.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{answer, ServeState};

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

/// Splits `host[:port]` (with `[v6]` literals).
fn split_host(value: &str) -> (&str, Option<&str>) {
    if let Some(rest) = value.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &value[..end + 2];
            return (host, value[end + 2..].strip_prefix(':'));
        }
    }
    match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (value, None),
    }
}

pub async fn guard(State(state): State<ServeState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<super::peer::PeerOwner>>()
        .map(|c| c.0);
    if !peer.is_some_and(|p| p.is_us()) {
        tracing::warn!(peer_uid = ?peer.and_then(|p| p.0), "refused a local-server request from another user");
        return answer(
            StatusCode::FORBIDDEN,
            false,
            "this server serves only the user who runs it",
        );
    }
    // Waits its turn when MAX_REQUESTS are in flight; the permit lives as long as the request.
    let Ok(_permit) = state.0.requests.clone().acquire_owned().await else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            "the server is stopping",
        );
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(split_host(host).0) {
        return answer(
            StatusCode::FORBIDDEN,
            false,
            "this server only answers requests for localhost",
        );
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state {
        let fetch_site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        if fetch_site == Some("cross-site") {
            return answer(
                StatusCode::FORBIDDEN,
                false,
                "cross-site requests may not change files",
            );
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            if !same_origin(origin, state.port()) {
                return answer(
                    StatusCode::FORBIDDEN,
                    false,
                    "requests from other sites may not change files",
                );
            }
        }
    }
    next.run(request).await.into_response()
}

/// `Origin` names this server: http, a loopback host, and our port.
fn same_origin(origin: &str, port: u16) -> bool {
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    let (host, origin_port) = split_host(rest.trim_end_matches('/'));
    is_loopback_host(host) && origin_port.and_then(|p| p.parse::<u16>().ok()) == Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin("http://localhost:4321", 4321));
        assert!(same_origin("http://127.0.0.1:4321", 4321));
        assert!(same_origin("http://[::1]:4321", 4321));
        assert!(
            !same_origin("http://localhost:3000", 4321),
            "another local site"
        );
        assert!(!same_origin("null", 4321));
        assert!(!same_origin("https://evil.example", 4321));
        assert!(!same_origin("http://localhost.evil.example:4321", 4321));
    }
}
