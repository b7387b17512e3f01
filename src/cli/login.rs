//! `hyperclay login` and `hyperclay logout`. Login opens the platform's `/local-auth` page in the
//! browser (`BROWSER` picks the program; the address is printed too) and takes the token back on
//! a one-shot loopback listener, checking the `state` it sent; `--api-key` reads a platform key
//! from standard input instead. One account at a time: switching asks first (or `--force`).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use hyperclay::config;
use hyperclay::control::{self, Request};
use hyperclay::credentials::{self, Stored};
use hyperclay::protocol::format_time;
use hyperclay::remote::{Client, Credential, RemoteError};
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Deserialize)]
struct Callback {
    token: Option<String>,
    state: Option<String>,
}

type Answer = mpsc::Sender<(Option<String>, Option<String>)>;

async fn callback(State(tx): State<Answer>, Query(cb): Query<Callback>) -> Html<&'static str> {
    let _ = tx.send((cb.token, cb.state)).await;
    Html("<!doctype html><meta charset=utf-8><title>hyperclay</title><p>Done: you can close this tab and go back to the terminal.</p>")
}

/// The programs that open an address in the user's browser when `BROWSER` is unset.
#[cfg(all(unix, not(target_os = "macos")))]
const DEFAULT_BROWSERS: &[&str] = &["xdg-open", "sensible-browser"];
#[cfg(target_os = "macos")]
const DEFAULT_BROWSERS: &[&str] = &["open"];
#[cfg(windows)]
const DEFAULT_BROWSERS: &[&str] = &["rundll32 url.dll,FileProtocolHandler"];

/// What separates the programs in `BROWSER`: `:` as on Unix; `;` on Windows, where `:` is in
/// every path.
const BROWSER_SEPARATOR: char = if cfg!(windows) { ';' } else { ':' };

/// Opens `url` with `$BROWSER` (a `:`-separated list, `;` on Windows; `%s` stands for the
/// address), else xdg-open (macOS: `open`; Windows: the URL handler). Answers whether a program
/// was started.
fn open_browser(url: &str) -> bool {
    let candidates: Vec<String> = match std::env::var("BROWSER") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(BROWSER_SEPARATOR).map(str::to_string).collect()
        }
        _ => DEFAULT_BROWSERS.iter().map(|b| b.to_string()).collect(),
    };
    for program in candidates {
        let mut parts = program
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if parts.is_empty() {
            continue;
        }
        let has_placeholder = parts.iter().any(|p| p.contains("%s"));
        for p in parts.iter_mut() {
            *p = p.replace("%s", url);
        }
        let mut command = std::process::Command::new(&parts[0]);
        command.args(&parts[1..]);
        if !has_placeholder {
            command.arg(url);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if command.spawn().is_ok() {
            return true;
        }
    }
    false
}

async fn browser_flow(platform: &str) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("opening a loopback port for the sign-in")?;
    let port = listener.local_addr()?.port();
    let state = format!("{:032x}", rand::random::<u128>());
    let (tx, mut rx) = mpsc::channel(4);
    let app = axum::Router::new()
        .route("/callback", get(callback))
        .with_state(tx);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut url =
        url::Url::parse(&format!("{platform}/local-auth")).context("HYPERCLAY_URL is not a URL")?;
    url.query_pairs_mut()
        .append_pair("redirect_uri", &format!("http://127.0.0.1:{port}/callback"))
        .append_pair("state", &state);
    println!("Sign in at: {url}");
    if open_browser(url.as_str()) {
        println!("(opened in your browser; approve this computer there)");
    } else {
        println!("(no browser found: open the address above yourself)");
    }
    let answer = tokio::time::timeout(Duration::from_secs(300), rx.recv()).await;
    server.abort();
    let Ok(Some((token, returned_state))) = answer else {
        bail!("no answer from the browser within 5 minutes; run `hyperclay login` again");
    };
    if returned_state.as_deref() != Some(state.as_str()) {
        bail!("the sign-in answer did not come from this request (its state does not match); nothing was stored, run `hyperclay login` again");
    }
    token
        .filter(|t| !t.is_empty())
        .context("the platform sent no token; run `hyperclay login` again")
}

fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

pub async fn login(api_key: bool, force: bool) -> anyhow::Result<()> {
    let config::PlatformAddress {
        url: platform,
        source,
    } = config::platform_address()?;
    let existing = credentials::load()?;
    let (credential, kind) = if api_key {
        let mut key = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut key)
            .context("reading the API key from standard input")?;
        let key = key.trim().to_string();
        if !key.starts_with("hcsk_") {
            bail!("that is not a platform API key (they start with hcsk_)");
        }
        (Credential::ApiKey(key), "api_key")
    } else {
        (Credential::Token(browser_flow(&platform).await?), "token")
    };
    let client = Client::new(&platform, credential.clone())?;
    let status = match client.status().await {
        Ok(status) => status,
        Err(RemoteError::Unreachable(detail)) => bail!(
            "can't reach the platform at {platform} ({source}): {detail}; check the address and the network"
        ),
        Err(RemoteError::Unauthorized | RemoteError::Expired) if api_key => bail!(
            "the platform at {platform} ({source}) refused that API key: nothing was stored; check the key (it is made on the platform) and run `hyperclay login --api-key` again"
        ),
        Err(RemoteError::Unauthorized | RemoteError::Expired) => bail!(
            "the platform at {platform} ({source}) refused the sign-in it just gave: nothing was stored; run `hyperclay login` again"
        ),
        Err(e) => return Err(e).context("checking the sign-in with the platform"),
    };
    if let Some(old) =
        existing.filter(|old| old.username != status.username || old.platform != platform)
    {
        let question = format!(
            "Signed in as {} at {}. Switch to {} at {platform}?",
            old.username, old.platform, status.username
        );
        if !force && !confirm(&question) {
            bail!(
                "still signed in as {}; to switch to {}, run again with --force (or answer yes)",
                old.username,
                status.username
            );
        }
    }
    let secret = match &credential {
        Credential::ApiKey(s) | Credential::Token(s) => s.clone(),
    };
    credentials::store(&Stored {
        kind: kind.into(),
        secret,
        username: status.username.clone(),
        platform: platform.clone(),
        obtained_at: format_time(chrono::Utc::now()),
    })?;
    println!("hyperclay: signed in as {} at {platform}", status.username);
    Ok(())
}

pub async fn logout() -> anyhow::Result<()> {
    for socket in control::all_sockets() {
        if let Ok(r) = control::ask(&socket, &Request::Logout).await {
            println!("hyperclay: stopped syncing {}", r.mountpoint);
        }
    }
    match credentials::remove()? {
        true => println!("hyperclay: signed out; the mirror and its backups stay where they are"),
        false => println!("hyperclay: not signed in"),
    }
    Ok(())
}
