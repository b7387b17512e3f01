//! `/local-auth`: the platform page where the signed-in user approves a device. The dev platform
//! has one signed-in user (the account it was started for). Approving redirects to the device's
//! loopback `redirect_uri` with a fresh token and the device's `state`.
//!
//! What protects the approval (docs/sync-api.md, "Sign-in"): a token is handed out only for a
//! POST that carries the one-time approval code the page embedded for that very request
//! (`redirect_uri` and `state`), used once, within 10 minutes, and whose `Origin` (which browsers
//! always send on a form POST) is the platform itself. Another web site can neither read the code
//! nor forge the Origin, so it can't approve a device behind the user's back. The token only
//! ever goes to a loopback `redirect_uri`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::error::PlatformError;
use super::AppState;

#[derive(Deserialize)]
pub struct DeviceRequest {
    redirect_uri: String,
    state: String,
}

#[derive(Deserialize)]
pub struct Approval {
    redirect_uri: String,
    state: String,
    #[serde(default)]
    approval: String,
}

/// How long an approval code stays good, and how many may wait at once (a page reloaded in a
/// loop can't grow memory).
const APPROVAL_TTL: Duration = Duration::from_secs(600);
const MAX_PENDING: usize = 256;

/// Approval codes the page offered: code -> (redirect_uri, state, when).
#[derive(Default)]
pub struct Approvals(Mutex<HashMap<String, (String, String, Instant)>>);

impl Approvals {
    fn offer(&self, redirect_uri: &str, state: &str) -> String {
        let code = format!("{:032x}", rand::random::<u128>());
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (_, _, at)| at.elapsed() < APPROVAL_TTL);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (_, _, at))| *at)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            code.clone(),
            (redirect_uri.to_string(), state.to_string(), Instant::now()),
        );
        code
    }

    /// Uses up `code` if it was offered for this very request and is still fresh.
    fn redeem(&self, code: &str, redirect_uri: &str, state: &str) -> bool {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match pending.remove(code) {
            Some((uri, st, at)) => {
                uri == redirect_uri && st == state && at.elapsed() < APPROVAL_TTL
            }
            None => false,
        }
    }
}

pub async fn page(
    State(platform): State<AppState>,
    Query(request): Query<DeviceRequest>,
) -> Result<Response, PlatformError> {
    let target = loopback_uri(&request.redirect_uri)?;
    if platform.auto_approve {
        return approve_to(&platform, target, &request.state);
    }
    let user = &platform.signed_in.username;
    let code = platform
        .approvals
        .offer(&request.redirect_uri, &request.state);
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Connect a device</title></head>\
         <body><h1>Connect hyperclay on this computer?</h1>\
         <p>Signed in as <b>{user}</b>. The program on this computer will be able to read and \
         change your sites, uploads and folders.</p>\
         <form method=post action=/local-auth>\
         <input type=hidden name=redirect_uri value=\"{uri}\">\
         <input type=hidden name=state value=\"{state}\">\
         <input type=hidden name=approval value=\"{code}\">\
         <button type=submit>Approve</button></form></body></html>",
        user = escape(user),
        uri = escape(&request.redirect_uri),
        state = escape(&request.state),
    ))
    .into_response())
}

pub async fn approve(
    State(platform): State<AppState>,
    headers: HeaderMap,
    Form(request): Form<Approval>,
) -> Result<Response, PlatformError> {
    let target = loopback_uri(&request.redirect_uri)?;
    if !same_origin(&headers) {
        return Err(PlatformError::Forbidden(
            "an approval must come from this platform's own page (Origin)".into(),
        ));
    }
    if !platform
        .approvals
        .redeem(&request.approval, &request.redirect_uri, &request.state)
    {
        return Err(PlatformError::Forbidden(
            "no such approval: open the sign-in page again and press Approve".into(),
        ));
    }
    approve_to(&platform, target, &request.state)
}

/// The request's `Origin` is this platform (the host the browser addressed).
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) else {
        return false;
    };
    url::Url::parse(origin).is_ok_and(|o| {
        let port = o.port().map(|p| format!(":{p}")).unwrap_or_default();
        matches!(o.scheme(), "http" | "https")
            && o.path() == "/"
            && format!("{}{port}", o.host_str().unwrap_or_default()) == host
    })
}

fn approve_to(
    platform: &AppState,
    mut target: url::Url,
    state: &str,
) -> Result<Response, PlatformError> {
    let (token, _) = platform.tokens.issue(&platform.signed_in)?;
    target
        .query_pairs_mut()
        .append_pair("token", &token)
        .append_pair("state", state);
    Ok(Redirect::to(target.as_str()).into_response())
}

/// Tokens are only ever handed to a program on this computer.
fn loopback_uri(uri: &str) -> Result<url::Url, PlatformError> {
    let url = url::Url::parse(uri)
        .map_err(|_| PlatformError::BadRequest("redirect_uri is not a URL".into()))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() != "http" || !loopback {
        return Err(PlatformError::BadRequest(
            "redirect_uri must be http on a loopback address".into(),
        ));
    }
    Ok(url)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
