//! The local static server: resolution, saves (standalone and inside a mount, checked on the
//! platform), refusals, the security rules, and a real headless browser saving an app.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, node_at, Mode, MountProcess, TestPlatform};
use hyperclay::cache::{versions, Mirror};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use hyperclay::serve::{self, SaveTo};

/// A mirror with sites in folders, uploads, a dotfile and a backup.
fn sample_mirror(dir: &Path) -> Arc<Mirror> {
    let m = Arc::new(Mirror::open(dir).unwrap());
    let w = |rel: &str, bytes: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w("a/b/x.html", b"<!doctype html><p>x</p>");
    w("blog/post.html", b"<!doctype html><p>post</p>");
    w("app.htmlclay", b"<!doctype html><p>clay</p>");
    w("img/logo.png", &(0..100u8).collect::<Vec<_>>());
    w("data.json", b"{\"a\":1}");
    w("<b>&.txt", b"odd name");
    w(".secret", b"hidden");
    w(
        "sites-versions/blog/post/2026-01-01-00-00-00-000+0000.html",
        b"old",
    );
    m
}

async fn standalone(dir: &Path) -> (serve::RunningServer, String) {
    let mirror = sample_mirror(dir);
    let server = serve::start(mirror, SaveTo::Mirror, 0).await.unwrap();
    let url = server.url();
    (server, url)
}

/// A raw HTTP/1.1 request, so paths reach the server exactly as written.
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(addr: &str, path: &str) -> u16 {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_types_ranges_cookies_and_listings() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = standalone(dir.path()).await;
    let http = reqwest::Client::new();
    let text = |path: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move { http.get(format!("{url}{path}")).send().await.unwrap() }
    };
    let x = text("/x").await;
    assert_eq!(x.status(), 200);
    let cookies: Vec<String> = x
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.contains(&"isAdminOfCurrentResource=true; Path=/; SameSite=Lax".to_string()),
        "{cookies:?}"
    );
    assert!(cookies.contains(&"isLoggedIn=true; Path=/; SameSite=Lax".to_string()));
    assert!(cookies.contains(&"currentResource=x; Path=/; SameSite=Lax".to_string()));
    assert_eq!(
        x.text().await.unwrap(),
        "<!doctype html><p>x</p>",
        "/x finds a/b/x.html"
    );
    assert_eq!(
        text("/a/b/x.html").await.text().await.unwrap(),
        "<!doctype html><p>x</p>"
    );
    // Moved: found in its new place (the old one is checked, not trusted); removed: 404.
    std::fs::create_dir_all(dir.path().join("c")).unwrap();
    std::fs::rename(dir.path().join("a/b/x.html"), dir.path().join("c/x.html")).unwrap();
    assert_eq!(
        text("/x").await.text().await.unwrap(),
        "<!doctype html><p>x</p>"
    );
    assert_eq!(
        text("/a/b/x.html").await.status(),
        200,
        "the old path finds it by name"
    );
    std::fs::rename(dir.path().join("c/x.html"), dir.path().join("a/b/x.html")).unwrap();
    assert_eq!(text("/favicon.ico").await.status(), 404);
    assert_eq!(
        text("/blog/post").await.text().await.unwrap(),
        "<!doctype html><p>post</p>"
    );
    assert_eq!(
        text("/app").await.text().await.unwrap(),
        "<!doctype html><p>clay</p>"
    );
    let logo = text("/img/logo.png").await;
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert!(logo.headers().contains_key("last-modified"));
    assert_eq!(
        text("/data.json").await.headers()["content-type"],
        "application/json"
    );
    let ranged = http
        .get(format!("{url}/img/logo.png"))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.bytes().await.unwrap().to_vec(),
        (10..20u8).collect::<Vec<_>>()
    );
    let listing = text("/").await.text().await.unwrap();
    assert!(
        listing.contains("&lt;b&gt;&amp;.txt") && listing.contains("href=\"/%3Cb%3E%26.txt\""),
        "{listing}"
    );
    assert!(
        !listing.contains(".secret") && !listing.contains("sites-versions"),
        "{listing}"
    );
    assert!(text("/blog/")
        .await
        .text()
        .await
        .unwrap()
        .contains("href=\"/blog/post.html\""));
    assert_eq!(text("/nothing-here").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_rules_hold() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), b"secret").unwrap();
    let (server, url) = standalone(dir.path()).await;
    std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("escape.txt"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    let addr = server.addr.to_string();
    for (path, want) in [
        ("/../../etc/passwd", 400),
        ("/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/a/%2E%2E/%2E%2E/x", 400),
        ("/a%2f..%2f..%2fetc", 400),
        ("/a%zz", 400),
        ("/.hyperclay/index.db", 404),
        ("/.secret", 404),
        (
            "/sites-versions/blog/post/2026-01-01-00-00-00-000+0000.html",
            404,
        ),
        ("/escape.txt", 403),
        ("/out/passwd", 403),
    ] {
        assert_eq!(get(&addr, path), want, "{path}");
    }
    let (status, _) = raw(
        &addr,
        "GET /x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 403, "DNS rebinding: a foreign Host is refused");
    let http = reqwest::Client::new();
    let before = std::fs::read(dir.path().join("blog/post.html")).unwrap();
    for (name, value) in [
        ("Origin", "http://evil.example".to_string()),
        ("Origin", "null".to_string()),
        ("Origin", "http://localhost:1".to_string()),
        ("Sec-Fetch-Site", "cross-site".to_string()),
    ] {
        let r = http
            .post(format!("{url}/save/post"))
            .header(name, value.clone())
            .body("<!doctype html><p>pwned</p>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("blog/post.html")).unwrap(),
        before,
        "nothing was written"
    );
    let same = http
        .post(format!("{url}/save/post"))
        .header("Origin", url.clone())
        .header("Sec-Fetch-Site", "same-origin")
        .body("<!doctype html><p>mine</p>")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200, "a page of this server may save");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = standalone(dir.path()).await;
    let http = reqwest::Client::new();
    let before = std::fs::read(dir.path().join("blog/post.html")).unwrap();
    let big = format!("<!doctype html>{}", "x".repeat(20 * 1024 * 1024));
    let cases = [
        (format!("{url}/save/post"), big, "text/html", 413),
        (
            format!("{url}/save/post"),
            "{\"html\":\"x\"}".to_string(),
            "application/json",
            415,
        ),
        (
            format!("{url}/save/post"),
            "just some text".to_string(),
            "text/plain",
            422,
        ),
        (
            format!("{url}/save/Not%20A%20Site"),
            "<!doctype html>".to_string(),
            "text/html",
            400,
        ),
        (
            format!("{url}/save/nosuchsite"),
            "<!doctype html>".to_string(),
            "text/html",
            404,
        ),
    ];
    for (target, body, ctype, want) in cases {
        let r = http
            .post(&target)
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{target}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["msgType"], "error");
        assert!(json["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        std::fs::read(dir.path().join("blog/post.html")).unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_never_mix_and_keep_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = standalone(dir.path()).await;
    let http = reqwest::Client::new();
    let bodies: Vec<String> = (0..10)
        .map(|i| format!("<!doctype html><p>{}</p>", i.to_string().repeat(50_000)))
        .collect();
    let saves: Vec<_> = bodies
        .iter()
        .map(|b| {
            let (http, url, b) = (http.clone(), url.clone(), b.clone());
            tokio::spawn(async move {
                http.post(format!("{url}/save/x"))
                    .body(b)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for s in saves {
        assert_eq!(s.await.unwrap(), 200);
    }
    let final_content =
        String::from_utf8(std::fs::read(dir.path().join("a/b/x.html")).unwrap()).unwrap();
    assert!(
        bodies.contains(&final_content),
        "exactly one of the bodies, never a mix"
    );
    let kept = versions::list(&dir.path().join("sites-versions/a/b/x"));
    assert_eq!(kept.len(), 11, "the original and ten saves");
    // Through Page-URL too.
    let r = http
        .post(format!("{url}/_/save"))
        .header("Page-URL", format!("{url}/blog/post"))
        .body("<!doctype html><p>via page url</p>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        std::fs::read(dir.path().join("blog/post.html")).unwrap(),
        b"<!doctype html><p>via page url</p>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_in_a_mount_are_backed_up_and_pushed() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let blog = c
        .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
        .await
        .unwrap();
    let post = c
        .create(
            NodeKind::Site,
            "post.html",
            blog.id,
            Some(b"<!doctype html><p>v0</p>"),
        )
        .await
        .unwrap();
    let port = common::free_port();
    let m = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port.to_string())]);
    assert!(
        common::wait_until(Duration::from_secs(5), || m.path("blog/post.html").exists()).is_some()
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/save/post"))
        .body("<!doctype html><p>v1</p>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["msgType"],
        "success"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let c = c.clone();
            async move { c.content(post.id).await.unwrap().1 == b"<!doctype html><p>v1</p>" }
        })
        .await
    );
    let r = http
        .post(format!("{url}/_/save"))
        .header("Page-URL", format!("{url}/blog/post.html"))
        .body("<!doctype html><p>v2</p>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), || {
            let c = c.clone();
            async move { c.content(post.id).await.unwrap().1 == b"<!doctype html><p>v2</p>" }
        })
        .await
    );
    assert_eq!(
        std::fs::read(m.path("blog/post.html")).unwrap(),
        b"<!doctype html><p>v2</p>",
        "the mount shows it"
    );
    let kept: Vec<Vec<u8>> = versions::list(&m.mirror.join("sites-versions/blog/post"))
        .into_iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(
        kept,
        vec![
            b"<!doctype html><p>v0</p>".to_vec(),
            b"<!doctype html><p>v1</p>".to_vec(),
            b"<!doctype html><p>v2</p>".to_vec()
        ]
    );
    assert_eq!(c.versions(post.id).await.unwrap().len(), 2);
    assert_eq!(node_at(&c, "blog/post.html").await, Some(post.id));
}

/// A small self-saving app that saves the way the Hyperclay library does: it reads the
/// `currentResource` cookie and posts its own HTML to `/save/NAME`.
const APP: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>counter</title></head>
<body><p id="count">0</p>
<script>
  const cookie = Object.fromEntries(document.cookie.split('; ').map(c => c.split('=')));
  const p = document.getElementById('count');
  if (cookie.isAdminOfCurrentResource === 'true' && p.textContent === '0') {
    p.textContent = 'edited in the browser';
    const html = '<!DOCTYPE html>\n' + document.documentElement.outerHTML;
    fetch('/save/' + cookie.currentResource, {method: 'POST', body: html})
      .then(r => r.json()).then(j => { document.title = 'saved:' + j.msgType; });
  }
</script></body></html>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_saves_an_app() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    });
    let chromium = chromium.expect("chromium is installed (.ci/run installs Debian's chromium)");
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let apps = c
        .create(NodeKind::Folder, "apps", NodeId::ROOT, None)
        .await
        .unwrap();
    let app = c
        .create(
            NodeKind::Site,
            "counter.html",
            apps.id,
            Some(APP.as_bytes()),
        )
        .await
        .unwrap();
    let port = common::free_port();
    let m = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port.to_string())]);
    assert!(common::wait_until(Duration::from_secs(5), || m
        .path("apps/counter.html")
        .exists())
    .is_some());
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://localhost:{port}/counter"))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("chromium finished")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("saved:success"),
        "the app saved: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = std::fs::read_to_string(m.mirror.join("apps/counter.html")).unwrap();
    assert!(saved.contains("edited in the browser"), "{saved}");
    assert!(
        versions::contains(
            &m.mirror.join("sites-versions"),
            "apps/counter.html",
            APP.as_bytes()
        ),
        "the original is kept"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let c = c.clone();
            async move {
                String::from_utf8_lossy(&c.content(app.id).await.unwrap().1)
                    .contains("edited in the browser")
            }
        })
        .await,
        "the edit reached the platform"
    );
}

/// `curl` run as another local user (uid 65534, "nobody"): answers the HTTP status (`000`: no
/// answer).
fn curl_as_nobody(args: &[&str]) -> String {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"])
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("setpriv and curl run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Another user on the same machine can neither read the mirror nor write an app through the
/// local server; the user who runs it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_user_who_runs_the_server_is_served() {
    common::assert_root("runs a request as a second user");
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = standalone(dir.path()).await;
    let before = std::fs::read(dir.path().join("blog/post.html")).unwrap();
    let page = format!("{url}/blog/post.html");
    let body = "<!doctype html><p>written by someone else</p>";
    let attempts: [(&str, Vec<&str>); 3] = [
        ("GET", vec![page.as_str()]),
        (
            "POST /save/NAME",
            vec![
                "-X",
                "POST",
                "-H",
                "Content-Type: text/html",
                "--data-binary",
                body,
            ],
        ),
        (
            "POST /_/save",
            vec![
                "-X",
                "POST",
                "-H",
                "Content-Type: text/html",
                "--data-binary",
                body,
            ],
        ),
    ];
    let save_by_name = format!("{url}/save/post");
    let save_by_page = format!("{url}/_/save");
    let page_header = format!("Page-URL: {page}");
    for (what, mut args) in attempts {
        match what {
            "POST /save/NAME" => args.push(&save_by_name),
            "POST /_/save" => {
                args.extend(["-H", page_header.as_str()]);
                args.push(&save_by_page);
            }
            _ => {}
        }
        // No answer at all: the connection is reset before its request is read (curl's 000).
        assert_eq!(curl_as_nobody(&args), "000", "{what} from another user");
    }
    assert_eq!(
        std::fs::read(dir.path().join("blog/post.html")).unwrap(),
        before,
        "nothing written"
    );
    // The same requests from the user running the server work.
    let own = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &page])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&own.stdout), "200");
    server.stop();
}

/// A child process that is killed when this goes out of scope.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Saves wait their turn beyond a few at once: 40 parallel 8 MiB saves never hold 40 bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_large_saves_are_held_a_few_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    sample_mirror(dir.path());
    for i in 0..40 {
        std::fs::write(dir.path().join(format!("s{i}.html")), b"<!doctype html>").unwrap();
    }
    let port = common::free_port();
    // Killed when the test ends, also when it fails.
    let serve = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_hyperclay"))
            .args(["serve", "--port", &port.to_string(), "--mirror"])
            .arg(dir.path())
            .env("HYPERCLAY_HOME", dir.path().join(".home"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    // A browser waits for its turn as long as it takes. reqwest's default TCP_USER_TIMEOUT
    // (30 s) aborts a connection whose body has sat unread that long (ETIMEDOUT: the last of
    // the 40 saves wait their turn longer than that on a busy machine, with a debug build).
    let http = reqwest::Client::builder()
        .tcp_user_timeout(None)
        .build()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/s0")).send().await.is_ok() }
        })
        .await
    );
    let mut html = b"<!doctype html>".to_vec();
    html.resize(8 * 1024 * 1024, b'x');
    let html = bytes::Bytes::from(html);
    let saves = (0..40).map(|i| {
        let (http, url, html) = (http.clone(), url.clone(), html.clone());
        async move {
            http.post(format!("{url}/save/s{i}"))
                .header("Content-Type", "text/html")
                .body(html)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(saves).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.0.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    drop(serve);
    eprintln!(
        "the server's peak RSS over 40 parallel 8 MiB saves: {} MB",
        peak_kb / 1000
    );
    // Uncapped, the 40 bodies (and the copies each save reads to compare and back up) took
    // 394 MB; four at a time, about 150 MB.
    assert!(peak_kb < 250 * 1024, "peak {peak_kb} kB");
}
