//! The local server's host routes, as local-host.md states them (the contract hyperclayjs relies
//! on), against a real server on loopback over a real mirror folder: the reserved `/_/`, `/_/meta`,
//! saves by page address, uploads, live sync on both wires and lanes, the tail rule, inert SVG,
//! the owner cookies and the local copy of the library. The browser tests (tests/browser.rs) drive
//! the same routes through the real library.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use hyperclay::cache::Mirror;
use hyperclay::serve::{self, SaveTo};

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

async fn server(dir: &Path) -> (serve::RunningServer, String) {
    write(dir, "blog/post.html", b"<!doctype html><p>post</p>");
    write(
        dir,
        "meta.html",
        b"<!doctype html><p>a site called meta</p>",
    );
    let mirror = Arc::new(Mirror::open(dir).unwrap());
    let server = serve::start(mirror, SaveTo::Mirror, 0).await.unwrap();
    let url = server.url();
    (server, url)
}

async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_routes_meta_and_the_tail_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let http = reqwest::Client::new();
    for path in [
        "/_/nothing",
        "/_/save/x.html",
        "/_/",
        "/_/api/blog/post.html",
    ] {
        let (status, body) = json(http.get(format!("{url}{path}")).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["msgType"], "error", "{path}: a JSON 404, never a file");
    }
    let (status, meta) = json(http.get(format!("{url}/_/meta")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(meta["spec"], 1, "{meta}: not the user's meta.html");
    assert_eq!(meta["extensions"], serde_json::json!(["sync", "upload"]));
    assert!(meta.get("document").is_none(), "{meta}");
    let r = http
        .get(format!("{url}/_/meta"))
        .header("Document-URL", format!("{url}/post"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (_, meta) = json(r).await;
    assert_eq!(meta["document"]["writable"], true, "{meta}");
    assert_eq!(meta["document"]["maxBytes"], 20 * 1024 * 1024);

    // What follows a page's name is the page's own route.
    let r = http
        .get(format!("{url}/blog/post.html/settings/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "<!doctype html><p>post</p>");

    // Every answer carries the owner cookie; an SVG is a download, never sniffed.
    write(dir.path(), "img/x.svg", b"<svg onload=alert(1)></svg>");
    let r = http.get(format!("{url}/img/x.svg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-disposition"], "attachment");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert!(
        cookies.iter().any(|c| c
            .to_str()
            .unwrap()
            .starts_with("isAdminOfCurrentResource=true")),
        "{cookies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_by_address_create_and_resolve_as_get_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let http = reqwest::Client::new();
    let save = |header: &'static str, address: String, body: &'static str| {
        http.post(format!("{url}/_/save"))
            .header(header, address)
            .header("Save-Trigger", "user")
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
    };
    let post = || std::fs::read_to_string(dir.path().join("blog/post.html")).unwrap();
    // `/post` (by name), `/blog/post.html/route` (the tail rule): the same file.
    let (status, answer) = json(
        save(
            "Document-URL",
            format!("{url}/post"),
            "<!DOCTYPE html><html>one</html>",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, answer["msgType"].as_str()), (200, Some("success")));
    assert_eq!(post(), "<!DOCTYPE html><html>one</html>");
    let (status, _) = json(
        save(
            "Page-URL",
            "/blog/post.html/edit".into(),
            "<!DOCTYPE html><html>two</html>",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(post(), "<!DOCTYPE html><html>two</html>");
    // A new address is a new site, folders and all.
    let (status, _) = json(
        save(
            "Document-URL",
            format!("{url}/journal/today"),
            "<!DOCTYPE html><html>new</html>",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("journal/today.html")).unwrap(),
        "<!DOCTYPE html><html>new</html>"
    );
    // Refused, and nothing written: a name that can't be a site, a folder, no address.
    for (header, address) in [
        ("Document-URL", format!("{url}/Bad%20Name")),
        ("Page-URL", format!("{url}/blog/")),
    ] {
        let (status, answer) = json(
            save(header, address.clone(), "<!DOCTYPE html><html>x</html>")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{address}");
        assert_eq!(answer["msgType"], "error");
    }
    assert!(!dir.path().join("Bad Name.html").exists());
    let r = http
        .post(format!("{url}/_/save"))
        .body("<!DOCTYPE html><html>x</html>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no address");
    let r = http
        .post(format!("{url}/_/save"))
        .header("Page-URL", "/post")
        .header("Content-Type", "application/ld+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(post(), "<!DOCTYPE html><html>two</html>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_is_served_locally_and_the_file_keeps_the_cdn_link() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let cdn = "https://cdn.jsdelivr.net/npm/hyperclayjs@1/src/hyperclay.js?preset=minimal";
    let page = format!("<!DOCTYPE html><html><head><script src=\"{cdn}\" type=\"module\"></script></head><body>app</body></html>");
    write(dir.path(), "app.html", page.as_bytes());
    let http = reqwest::Client::new();
    let served = http
        .get(format!("{url}/app"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let local = "/_/cdn/jsdelivr/npm/hyperclayjs@1/src/hyperclay.js?preset=minimal";
    assert!(served.contains(local), "{served}");
    let loader = http.get(format!("{url}{local}")).send().await.unwrap();
    assert_eq!(loader.status(), 200);
    assert!(loader.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert!(loader.text().await.unwrap().contains("HyperclayJS v1.38.0"));
    let module = http
        .get(format!(
            "{url}/_/cdn/jsdelivr/npm/hyperclayjs@1/src/core/savePageCore.js"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), 200, "the loader's modules are beside it");
    let license = http
        .get(format!(
            "{url}/_/cdn/jsdelivr/npm/hyperclayjs@1.38.0/LICENSE"
        ))
        .send()
        .await
        .unwrap();
    assert!(license.text().await.unwrap().contains("MIT"));
    let other = http
        .get(format!(
            "{url}/_/cdn/jsdelivr/npm/hyperclayjs@1.20.0/src/hyperclay.js"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only the version it carries");
    // The page saves what it was served; the file keeps the CDN's address.
    let r = http
        .post(format!("{url}/_/save"))
        .header("Page-URL", format!("{url}/app"))
        .body(served.replace("app</body>", "edited</body>"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let saved = std::fs::read_to_string(dir.path().join("app.html")).unwrap();
    assert_eq!(saved, page.replace("app</body>", "edited</body>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_stored_beside_the_page_and_shared_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let http = reqwest::Client::new();
    let upload = |name: &str, bytes: &[u8], page: Option<&str>| {
        let body = serde_json::json!({
            "fileName": name,
            "fileBody": base64::engine::general_purpose::STANDARD.encode(bytes),
        });
        let mut r = http.post(format!("{url}/_/upload")).json(&body);
        if let Some(page) = page {
            r = r.header("Page-URL", format!("{url}{page}"));
        }
        r.send()
    };
    let (status, first) = json(
        upload("../../pic.png", b"one", Some("/post"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let first_url = first["urls"][0].as_str().unwrap().to_string();
    assert!(
        first_url.starts_with("assets-post/pic-") && first_url.ends_with(".png"),
        "{first}"
    );
    assert_eq!(first["uploads"][0]["url"], first_url.as_str());
    assert_eq!(first["uploads"][0]["bytes"], 3);
    assert_eq!(
        std::fs::read(dir.path().join("blog").join(&first_url)).unwrap(),
        b"one"
    );
    // Equal bytes share the file; other bytes under the same name get a longer hash.
    let (_, again) = json(
        upload("pic.png", b"one", Some("/blog/post.html"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again["urls"][0], first_url.as_str());
    let (_, other) = json(upload("pic.png", b"two", Some("/post")).await.unwrap()).await;
    assert_ne!(other["urls"][0], first_url.as_str());
    assert_eq!(
        std::fs::read_dir(dir.path().join("blog/assets-post"))
            .unwrap()
            .count(),
        2
    );
    // Served back where the page, found by name, links it.
    let r = http.get(format!("{url}/{first_url}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"one");
    // A multipart form, as Hyperclay Local takes it.
    // Larger than axum's default body limit (2 MB): the route's own limit applies.
    let form_bytes: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(form_bytes.clone()).file_name("notes.txt"),
    );
    let (status, answer) = json(
        http.post(format!("{url}/_/upload"))
            .header("Document-URL", format!("{url}/post"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let stored = answer["urls"][0].as_str().unwrap();
    assert!(
        std::fs::read(dir.path().join("blog").join(stored)).unwrap() == form_bytes,
        "the form's file is stored as sent"
    );
    // Refusals: code, no page, a missing page, over 20 MiB.
    let (status, answer) = json(upload("run.js", b"alert(1)", Some("/post")).await.unwrap()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (415, Some("unsupported-type"))
    );
    let (status, _) = json(upload("a.png", b"x", None).await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = json(upload("a.png", b"x", Some("/nosuchpage")).await.unwrap()).await;
    assert_eq!(status, 404);
    let big = vec![7u8; 20 * 1024 * 1024 + 1];
    let (status, answer) = json(upload("big.bin", &big, Some("/post")).await.unwrap()).await;
    assert_eq!((status, answer["code"].as_str()), (413, Some("too-large")));
    assert_eq!(
        std::fs::read_dir(dir.path().join("blog/assets-post"))
            .unwrap()
            .count(),
        3
    );
}

/// An open event stream, read frame by frame.
struct Stream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Stream {
    async fn open(url: String) -> Stream {
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut s = Stream {
            body: Box::pin(r.bytes_stream()),
            buffer: String::new(),
        };
        assert_eq!(s.next_block().await.as_deref(), Some(": connected"));
        s
    }

    /// The next block (up to a blank line), or None if none comes within a second.
    async fn next_block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].trim().to_string();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(1), self.body.next()).await;
            match chunk {
                Ok(Some(Ok(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    async fn frame(&mut self) -> Option<serde_json::Value> {
        let block = self.next_block().await?;
        let data = block
            .strip_prefix("data: ")
            .or_else(|| block.strip_prefix("data:"))?;
        Some(serde_json::from_str(data).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sync_relays_to_the_files_tabs_on_both_wires() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    // Three tabs of blog/post.html, named three ways, and one of another file.
    let mut spec = Stream::open(format!(
        "{url}/_/sync?document-url={}&lane=live&resume-id=x",
        enc(&format!("{url}/post"))
    ))
    .await;
    let mut legacy = Stream::open(format!(
        "{url}/_/live-sync/stream?page-url={}&lane=live",
        enc("/blog/post.html")
    ))
    .await;
    let mut viewer = Stream::open(format!(
        "{url}/_/sync?document-url={}&lane=saved",
        enc(&format!("{url}/blog/post"))
    ))
    .await;
    let mut elsewhere = Stream::open(format!(
        "{url}/_/sync?document-url={}&lane=live",
        enc(&format!("{url}/meta"))
    ))
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/_/live-sync/save"))
        .header("Page-URL", format!("{url}/blog/post.html"))
        .json(&serde_json::json!({"html": "<html>A</html>", "sender": "tab-a", "identityMap": {"0": "tab-a:1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await, (200, serde_json::json!({"success": true})));
    let first = spec
        .frame()
        .await
        .expect("the spec-wire tab got the snapshot");
    assert_eq!(first["html"], "<html>A</html>");
    assert_eq!(
        first["sender"], "tab-a",
        "echoed to the sender too: the tab drops its own"
    );
    assert_eq!(first["identityMap"]["0"], "tab-a:1");
    assert_eq!(
        legacy.frame().await.unwrap(),
        first,
        "the legacy wire, the same channel"
    );
    assert!(
        viewer.frame().await.is_none(),
        "view-mode tabs get saves, not snapshots"
    );
    assert!(
        elsewhere.frame().await.is_none(),
        "another file's tabs get nothing"
    );
    // The spec wire's relay; then a save, whose stored bytes go to the view-mode tab.
    let r = http
        .post(format!("{url}/_/sync"))
        .header("Document-URL", format!("{url}/post"))
        .json(&serde_json::json!({"snapshot": "<html>B</html>", "sender": "tab-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = legacy.frame().await.unwrap();
    assert_eq!(second["html"], "<html>B</html>");
    assert!(
        second["seq"].as_i64() > first["seq"].as_i64(),
        "seq grows: {first} {second}"
    );
    let r = http
        .post(format!("{url}/_/save"))
        .header("Document-URL", format!("{url}/post"))
        .body("<!DOCTYPE html><html>saved</html>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stored = viewer
        .frame()
        .await
        .expect("the view-mode tab got the save");
    assert_eq!(stored["html"], "<!DOCTYPE html><html>saved</html>");
    assert_eq!(stored["sender"], "server-save");
    // Refused: no snapshot, no address; a stream without its page.
    let r = http
        .post(format!("{url}/_/sync"))
        .header("Document-URL", format!("{url}/post"))
        .json(&serde_json::json!({"sender": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{url}/_/sync"))
        .json(&serde_json::json!({"snapshot": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::get(format!("{url}/_/sync?lane=live"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_on_one_device_is_relayed_to_the_tabs_of_another() {
    use common::{Mode, MountProcess, TestPlatform};
    let p = TestPlatform::start(Mode::Full).await;
    p.client()
        .create(
            hyperclay::protocol::NodeKind::Site,
            "shared.html",
            hyperclay::protocol::NodeId::ROOT,
            Some(b"<!DOCTYPE html><html>v1</html>"),
        )
        .await
        .unwrap();
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let a = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port_a.to_string())]);
    let b = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port_b.to_string())]);
    for m in [&a, &b] {
        assert!(
            common::wait_until(Duration::from_secs(10), || m.path("shared.html").exists())
                .is_some()
        );
    }
    let (url_a, url_b) = (
        format!("http://localhost:{port_a}"),
        format!("http://localhost:{port_b}"),
    );
    let stream = |url: &str| format!("{url}/_/sync?document-url={url}%2Fshared&lane=live");
    let mut tab_a = Stream::open(stream(&url_a)).await;
    let mut tab_b = Stream::open(stream(&url_b)).await;
    let r = reqwest::Client::new()
        .post(format!("{url_a}/_/sync"))
        .header("Document-URL", format!("{url_a}/shared.html"))
        .json(&serde_json::json!({"snapshot": "<html>typed on device A</html>", "sender": "tab-on-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let local = tab_a
        .frame()
        .await
        .expect("device A's own tab got it from its server");
    assert_eq!(local["sender"], "tab-on-a");
    let mut relayed = None;
    for _ in 0..10 {
        if let Some(f) = tab_b.frame().await {
            relayed = Some(f);
            break;
        }
    }
    let relayed = relayed.expect("device B's tab got device A's snapshot through the platform");
    assert_eq!(relayed["html"], "<html>typed on device A</html>");
    let sender = relayed["sender"].as_str().unwrap();
    assert!(
        sender != "tab-on-a" && !sender.is_empty(),
        "the sender is device A: {relayed}"
    );
    assert!(
        tab_a.frame().await.is_none(),
        "device A drops its own frame coming back from the platform"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_guard_keeps_what_a_save_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let page = |items: &str| {
        format!(
            r#"<!DOCTYPE html><html><head><script type="application/json" data-rules-name="api" data-rules-version="1">{{"notes": ["li", {{"id": "@data-id", "text": "."}}]}}</script></head><body><ul>{items}</ul></body></html>"#
        )
    };
    let full =
        page(r#"<li data-id="1">one</li><li data-id="2">two</li><li data-id="3">three</li>"#);
    write(dir.path(), "notes.html", full.as_bytes());
    let http = reqwest::Client::new();
    let ask = || {
        http.get(format!("{url}/_/data-loss?file={url}/notes"))
            .send()
    };
    let save = |body: String, trigger: &'static str| {
        http.post(format!("{url}/_/save"))
            .header("Page-URL", format!("{url}/notes"))
            .header("Save-Trigger", trigger)
            .body(body)
            .send()
    };
    let (_, first) = json(ask().await.unwrap()).await;
    assert_eq!(
        first,
        serde_json::json!({"event": null}),
        "seeds the baseline"
    );
    // A deliberate delete of one item is an edit, not a loss.
    let two = page(r#"<li data-id="1">one</li><li data-id="3">three</li>"#);
    assert_eq!(save(two.clone(), "user").await.unwrap().status(), 200);
    let event = || async {
        for _ in 0..50 {
            let (_, answer) = json(ask().await.unwrap()).await;
            if !answer["event"].is_null() {
                return answer["event"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serde_json::Value::Null
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, none) = json(ask().await.unwrap()).await;
    assert!(none["event"].is_null(), "{none}");
    // A background save that empties the list is.
    assert_eq!(save(page(""), "auto").await.unwrap().status(), 200);
    let incident = event().await;
    assert_eq!(incident["canRevert"], true, "{incident}");
    assert_eq!(incident["restorable"], false);
    assert_eq!(incident["lossSummary"]["removedItems"], 2, "{incident}");
    assert_eq!(incident["lossSummary"]["provenance"], "ui-background");
    let id = incident["id"].as_str().unwrap().to_string();
    let choose = |id: String, choice: &str| {
        http.post(format!("{url}/_/data-loss/{id}"))
            .header("Page-URL", format!("{url}/notes"))
            .json(&serde_json::json!({"choice": choice}))
            .send()
    };
    assert_eq!(
        choose("other".into(), "dismiss").await.unwrap().status(),
        409
    );
    assert_eq!(choose(id.clone(), "shred").await.unwrap().status(), 400);
    assert_eq!(choose(id.clone(), "restore").await.unwrap().status(), 422);
    let (status, answer) = json(choose(id.clone(), "revert").await.unwrap()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("reverted")),
        "{answer}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.html")).unwrap(),
        two,
        "the page before the wiping save is back"
    );
    assert_eq!(choose(id, "dismiss").await.unwrap().status(), 404, "closed");
    // A loss undone by hand closes itself.
    assert_eq!(save(page(""), "auto").await.unwrap().status(), 200);
    assert!(!event().await.is_null());
    assert_eq!(save(two.clone(), "auto").await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, healed) = json(ask().await.unwrap()).await;
    assert!(healed["event"].is_null(), "{healed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_change_pulled_down_reaches_the_open_tabs() {
    use common::{node_at, Mode, MountProcess, TestPlatform};
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(
        hyperclay::protocol::NodeKind::Site,
        "board.html",
        hyperclay::protocol::NodeId::ROOT,
        Some(b"<!DOCTYPE html><html>v1</html>"),
    )
    .await
    .unwrap();
    let port = common::free_port();
    let m = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port.to_string())]);
    assert!(
        common::wait_until(Duration::from_secs(10), || m.path("board.html").exists()).is_some()
    );
    let url = format!("http://localhost:{port}");
    let mut editing =
        Stream::open(format!("{url}/_/sync?document-url={url}%2Fboard&lane=live")).await;
    let mut viewing = Stream::open(format!(
        "{url}/_/sync?document-url={url}%2Fboard&lane=saved"
    ))
    .await;
    let id = node_at(&c, "board.html").await.unwrap();
    c.put_content(
        id,
        hyperclay::protocol::NodeKind::Site,
        "<!DOCTYPE html><html>edited on the platform</html>".into(),
        None,
    )
    .await
    .unwrap();
    let mut frames = Vec::new();
    for _ in 0..10 {
        if let Some(f) = viewing.frame().await {
            frames.push(f);
            break;
        }
    }
    let seen = frames
        .pop()
        .expect("the view-mode tab got the platform's change");
    assert_eq!(
        seen["html"],
        "<!DOCTYPE html><html>edited on the platform</html>"
    );
    assert_eq!(seen["sender"], "sync-engine");
    let content = editing.frame().await.expect("the edit tab got it too");
    assert_eq!(content["sender"], "sync-engine");
    let notice = editing.frame().await.expect("and a notice");
    assert_eq!(notice["type"], "notification", "{notice}");
    drop(m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_routes_refuse_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = server(dir.path()).await;
    let http = reqwest::Client::new();
    for path in [
        "/_/upload",
        "/_/sync",
        "/_/live-sync/save",
        "/_/data-loss/x",
        "/_/save",
    ] {
        for (header, value) in [
            ("Origin", "https://evil.example"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "cross-site"),
        ] {
            let r = http
                .post(format!("{url}{path}"))
                .header(header, value)
                .header("Page-URL", format!("{url}/post"))
                .json(&serde_json::json!({"fileName": "a.png", "fileBody": "AA==", "snapshot": "x", "choice": "dismiss"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with {header}: {value}");
        }
    }
    let r = http
        .get(format!("{url}/_/meta"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a foreign Host (DNS rebinding)");
    assert!(
        !dir.path().join("blog/assets-post").exists(),
        "nothing was stored"
    );
}
