//! Sign-in on the platform side: `/local-auth`, tokens, expiry, refresh.

mod common;

use std::time::Duration;

use common::{Mode, TestPlatform};
use hyperclay::remote::{Client, Credential, RemoteError};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn token_from(location: &str, state: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs.get("state").map(String::as_str), Some(state));
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    pairs["token"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approve_redirects_with_a_working_token() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.auto_approve = true).await;
    let answer = no_redirects()
        .get(format!("{}/local-auth", p.url()))
        .query(&[
            ("redirect_uri", "http://127.0.0.1:5555/callback"),
            ("state", "s-123"),
        ])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_redirection());
    let token = token_from(answer.headers()["location"].to_str().unwrap(), "s-123");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let client = Client::new(&p.url(), Credential::Token(token.clone())).unwrap();
    assert_eq!(client.status().await.unwrap().username, "dev");
    client.nodes().await.unwrap();
    let refreshed = client.refresh_token().await.unwrap();
    assert_ne!(refreshed.token, token);
    let expires = hyperclay::protocol::parse_time(&refreshed.expires_at).unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((9.9..=10.0).contains(&days), "valid 10 days, got {days}");
    assert_eq!(client.credential(), Credential::Token(refreshed.token));
    client.nodes().await.unwrap();
}

/// The page's hidden one-time approval code.
fn approval_code(html: &str) -> String {
    let at = html
        .find("name=approval value=\"")
        .expect("the page carries an approval code");
    let rest = &html[at + "name=approval value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn approve(
    p: &TestPlatform,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = no_redirects()
        .post(format!("{}/local-auth", p.url()))
        .form(form);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_page_has_a_button_that_redirects() {
    let p = TestPlatform::start(Mode::Full).await;
    let page = reqwest::Client::new()
        .get(format!("{}/local-auth", p.url()))
        .query(&[
            ("redirect_uri", "http://localhost:7777/cb"),
            ("state", "<x>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<button type=submit>Approve</button>"));
    assert!(
        html.contains("&lt;x&gt;") && !html.contains("<x>"),
        "state is escaped"
    );
    let code = approval_code(&html);
    let form = [
        ("redirect_uri", "http://localhost:7777/cb"),
        ("state", "<x>"),
        ("approval", code.as_str()),
    ];
    let approved = approve(&p, Some(&p.url()), &form).await;
    assert!(approved.status().is_redirection());
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://localhost:7777/cb?token="));
    let again = approve(&p, Some(&p.url()), &form).await;
    assert_eq!(again.status(), 403, "an approval code works once");
}

/// A web page (or any caller) can't approve a device: without the code the platform's own page
/// embedded for that request, from another Origin, or for another redirect, nothing is handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_needs_the_pages_code_and_origin() {
    let p = TestPlatform::start(Mode::Full).await;
    let page = |state: &'static str| {
        let url = p.url();
        async move {
            let html = reqwest::Client::new()
                .get(format!("{url}/local-auth"))
                .query(&[
                    ("redirect_uri", "http://127.0.0.1:7777/cb"),
                    ("state", state),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            approval_code(&html)
        }
    };
    let uri = "http://127.0.0.1:7777/cb";
    let no_code = approve(&p, Some(&p.url()), &[("redirect_uri", uri), ("state", "s")]).await;
    let code = page("s").await;
    let other_site = approve(
        &p,
        Some("http://evil.example"),
        &[("redirect_uri", uri), ("state", "s"), ("approval", &code)],
    )
    .await;
    let no_origin = approve(
        &p,
        None,
        &[("redirect_uri", uri), ("state", "s"), ("approval", &code)],
    )
    .await;
    let other_request = approve(
        &p,
        Some(&p.url()),
        &[
            ("redirect_uri", uri),
            ("state", "another"),
            ("approval", &code),
        ],
    )
    .await;
    for (what, answer) in [
        ("no code", no_code),
        ("another Origin", other_site),
        ("no Origin", no_origin),
        ("a code for another request", other_request),
    ] {
        assert_eq!(answer.status(), 403, "{what}");
        assert!(answer.headers().get("location").is_none(), "{what}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "forbidden", "{what}");
    }
}

/// Errors are JSON `{msg, code}` everywhere, also where axum refuses a request by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let p = TestPlatform::start(Mode::Full).await;
    let http = reqwest::Client::new();
    for (method, path, body) in [
        ("GET", "/_/sync/nodes/not-a-number/content", None),
        ("PUT", "/_/sync/nodes/1/content", Some("{not json")),
        ("DELETE", "/_/sync/nodes/x", None),
        ("GET", "/nowhere", None),
    ] {
        let mut request = http
            .request(method.parse().unwrap(), format!("{}{path}", p.url()))
            .header("X-API-Key", common::KEY)
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        let answer = request.send().await.unwrap();
        assert!(answer.status().is_client_error(), "{method} {path}");
        let body: serde_json::Value = answer.json().await.expect("a JSON body");
        assert!(
            body["msg"].is_string() && body["code"].is_string(),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_only_go_to_loopback_addresses() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.auto_approve = true).await;
    for uri in [
        "http://evil.example/cb",
        "https://127.0.0.1:5/cb",
        "http://10.0.0.1/cb",
        "not a url",
    ] {
        let answer = no_redirects()
            .get(format!("{}/local-auth", p.url()))
            .query(&[("redirect_uri", uri), ("state", "s")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_forged_token_is_refused() {
    let p = TestPlatform::start_with(Mode::Full, |c| {
        c.auto_approve = true;
        c.token_ttl = Duration::from_secs(1);
    })
    .await;
    let answer = no_redirects()
        .get(format!(
            "{}/local-auth?redirect_uri=http://127.0.0.1:9/cb&state=s",
            p.url()
        ))
        .send()
        .await
        .unwrap();
    let token = token_from(answer.headers()["location"].to_str().unwrap(), "s");
    let client = Client::new(&p.url(), Credential::Token(token.clone())).unwrap();
    client.nodes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.nodes().await.unwrap_err(), RemoteError::Expired);
    assert_eq!(
        client.refresh_token().await.unwrap_err(),
        RemoteError::Expired
    );
    let mut forged = token.into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = Client::new(
        &p.url(),
        Credential::Token(String::from_utf8(forged).unwrap()),
    )
    .unwrap();
    assert!(matches!(
        forged.nodes().await.unwrap_err(),
        RemoteError::Unauthorized | RemoteError::Expired
    ));
}
