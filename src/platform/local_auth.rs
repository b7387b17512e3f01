//! `/local-auth`: the platform page where the signed-in user approves a device. The dev platform
//! has one signed-in user (the account it was started for). Approving redirects to the device's
//! loopback `redirect_uri` with a fresh token and the device's `state`.

use axum::extract::{Query, State};
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

pub async fn page(
    State(platform): State<AppState>,
    Query(request): Query<DeviceRequest>,
) -> Result<Response, PlatformError> {
    let target = loopback_uri(&request.redirect_uri)?;
    if platform.auto_approve {
        return approve_to(&platform, target, &request.state);
    }
    let user = &platform.signed_in.username;
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Connect a device</title></head>\
         <body><h1>Connect hyperclay on this computer?</h1>\
         <p>Signed in as <b>{user}</b>. The program on this computer will be able to read and \
         change your sites, uploads and folders.</p>\
         <form method=post action=/local-auth>\
         <input type=hidden name=redirect_uri value=\"{uri}\">\
         <input type=hidden name=state value=\"{state}\">\
         <button type=submit>Approve</button></form></body></html>",
        user = escape(user),
        uri = escape(&request.redirect_uri),
        state = escape(&request.state),
    ))
    .into_response())
}

pub async fn approve(
    State(platform): State<AppState>,
    Form(request): Form<DeviceRequest>,
) -> Result<Response, PlatformError> {
    let target = loopback_uri(&request.redirect_uri)?;
    approve_to(&platform, target, &request.state)
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
