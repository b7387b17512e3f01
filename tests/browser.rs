//! The local server as a Hyperclay host, end to end: real Chromium (Debian's, driven by
//! playwright-core from `tests/browser/`), the real hyperclayjs from npm (the server's own copy,
//! unmodified: the pages link the CDN and the network is closed), a real mount on a real dev
//! platform. Each test is one scenario of `tests/browser/drive.mjs`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{eventually, node_at, Mode, MountProcess, TestPlatform};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The library as apps load it: from the CDN, with the modules these tests use.
const LIBRARY: &str = "https://cdn.jsdelivr.net/npm/hyperclayjs@1/src/hyperclay.js?features=save-core,snapshot,save-system,edit-mode-helpers,toast,save-toast,live-sync,file-upload,export-to-window";

fn app(note: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>notes</title>
<script src="{LIBRARY}" type="module"></script>
</head><body><h1>Notes</h1><p id="note">{note}</p></body></html>
"#
    )
}

/// A platform holding `sites` (path, content) and a mount serving it on a port of its own.
async fn mounted(sites: &[(&str, String)]) -> (TestPlatform, MountProcess, u16) {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    for (name, content) in sites {
        c.create(
            NodeKind::of_file_name(name),
            name,
            NodeId::ROOT,
            Some(content.as_bytes()),
        )
        .await
        .unwrap();
    }
    let port = common::free_port();
    let m = MountProcess::start_with(&p.url(), &[("TEST_SERVE_PORT", &port.to_string())]);
    for (name, _) in sites {
        assert!(
            common::wait_until(Duration::from_secs(10), || m.path(name).exists()).is_some(),
            "{name} is in the mount"
        );
    }
    (p, m, port)
}

/// A running scenario: its output lines, and its input for the steps where it waits.
struct Drive {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Drive {
    fn start(scenario: &str, port: u16, args: &[&str]) -> Drive {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        assert!(
            dir.join("node_modules/playwright-core").exists(),
            "playwright-core is installed (scripts/test.sh runs `npm ci --prefix tests/browser`)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("drive.mjs"))
            .arg(scenario)
            .arg(format!("http://localhost:{port}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (Node.js 20+)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Drive { child, lines }
    }

    /// The next event the scenario prints.
    async fn event(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the browser scenario answers")
            .unwrap()
            .expect("the browser scenario printed an event");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not an event: {line}"))
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The final result, which must carry no error and show that nothing left loopback.
    async fn done(&mut self) -> serde_json::Value {
        let result = self.event().await;
        assert_eq!(result["event"], "done", "{result:#}");
        assert!(
            result.get("error").is_none(),
            "the scenario failed: {result:#}"
        );
        assert_eq!(
            result["blocked"],
            serde_json::json!([]),
            "nothing was asked of the network (the library came from the local server): {result:#}"
        );
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_saved_in_one_tab_appears_in_the_other_at_once() {
    let (p, m, port) = mounted(&[("notes.html", app("first"))]).await;
    let mut drive = Drive::start("two_tabs", port, &["/notes"]);
    let result = drive.done().await;
    assert_eq!(result["saved"], true, "{result:#}");
    let shown = result["shown_after_ms"].as_u64();
    eprintln!("tab B showed tab A's saved edit after {shown:?} ms");
    assert!(
        shown.is_some_and(|ms| ms < 1000),
        "tab B showed tab A's edit within 1 s: {result:#}"
    );
    let requested = result["requested"].to_string();
    assert!(
        requested.contains("/_/meta") && requested.contains("/_/sync?document-url="),
        "the library read /_/meta and took the spec wire it announces: {requested}"
    );
    assert!(!requested.contains("/_/live-sync/stream"), "{requested}");
    let wanted = result["wanted"].as_str().unwrap().to_string();
    let saved = std::fs::read_to_string(m.path("notes.html")).unwrap();
    assert!(saved.contains(&wanted), "the save is in the file: {saved}");
    assert!(
        saved.contains(LIBRARY),
        "the file keeps the CDN's address, not the local copy's: {saved}"
    );
    let c = p.client();
    let id = node_at(&c, "notes.html").await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let c = c.clone();
            let wanted = wanted.clone();
            async move { String::from_utf8_lossy(&c.content(id).await.unwrap().1).contains(&wanted) }
        })
        .await,
        "the save reached the platform"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_through_the_mount_appears_in_an_open_tab() {
    let (_p, m, port) = mounted(&[("notes.html", app("before"))]).await;
    let mut drive = Drive::start("outside_edit", port, &["/notes.html"]);
    assert_eq!(drive.event().await["event"], "ready");
    let wanted = format!("changed in an editor {}", std::process::id());
    std::fs::write(m.path("notes.html"), app(&wanted)).unwrap();
    drive.send(&wanted).await;
    let result = drive.done().await;
    eprintln!(
        "the tab showed the mount's edit after {} ms",
        result["shown_after_ms"]
    );
    assert!(
        result["shown_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 2000),
        "the open tab shows the mount's edit: {result:#}"
    );
}

/// The first thing a new user opens: the sample sites of `hyperclay dev-platform --samples` (the
/// real binary, as `scripts/mount.sh` starts it), mounted, each opened from the mount's server.
/// Every one is a Hyperclay app: it loads the library (its CDN address, served from the local
/// copy), is editable for its owner, and saves itself. Edited as a user would (a click in the
/// text, typing, the page's save button), the edit is in the mount, the mirror and on the
/// platform, the reloaded page shows it, and the saved file still loads the library from its CDN
/// address, as hyperclay.com serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_site_saves_itself_from_the_browser() {
    let data = tempfile::tempdir().unwrap();
    let platform = common::PlatformProcess::spawn(data.path(), &["--samples"]);
    let c = platform.client();
    let sites: Vec<String> = c
        .nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Site)
        .map(|n| n.full_path())
        .collect();
    assert!(sites.len() >= 2, "the samples hold sites: {sites:?}");
    let port = common::free_port();
    let m = MountProcess::start_with(&platform.url, &[("TEST_SERVE_PORT", &port.to_string())]);
    for site in &sites {
        assert!(
            common::wait_until(Duration::from_secs(10), || m.path(site).exists()).is_some(),
            "{site} is in the mount"
        );
    }
    let paths: Vec<String> = sites.iter().map(|s| format!("/{s}")).collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut drive = Drive::start("edit_samples", port, &args);
    let result = drive.done().await;
    let pages = result["pages"].as_array().unwrap();
    assert_eq!(pages.len(), sites.len(), "{result:#}");
    for (site, page) in sites.iter().zip(pages) {
        assert_eq!(
            page["library"], true,
            "{site} loads hyperclayjs (window.hyperclay.savePage): {result:#}"
        );
        assert_eq!(
            page["editable"], true,
            "{site} has something editable for its owner: {result:#}"
        );
        assert_eq!(
            page["saved"], true,
            "{site}: the library said the save landed: {result:#}"
        );
        assert_eq!(page["status"], "saved", "{result:#}");
        assert_eq!(
            page["dialogs"],
            serde_json::json!([]),
            "no unsaved-changes warning: {result:#}"
        );
        let wanted = page["wanted"].as_str().unwrap().to_string();
        assert!(
            page["after"]
                .as_str()
                .unwrap_or_default()
                .ends_with(&wanted),
            "{site}: the reloaded page shows the edit: {result:#}"
        );
        for (where_, file) in [("mount", m.path(site)), ("mirror", m.mirror.join(site))] {
            let saved = std::fs::read_to_string(&file).unwrap();
            assert!(
                saved.contains(&wanted),
                "{site}: the edit is in the {where_}: {saved}"
            );
            assert!(
                saved.contains("https://cdn.jsdelivr.net/npm/hyperclayjs@1/"),
                "{site}: the saved file loads the library from its CDN address: {saved}"
            );
        }
        let versions = m
            .mirror
            .join("sites-versions")
            .join(site.trim_end_matches(".html"));
        assert!(
            std::fs::read_dir(&versions).is_ok_and(|mut d| d.next().is_some()),
            "{site}: the page it replaced is kept in {}",
            versions.display()
        );
        let id = node_at(&c, site).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || {
                let c = c.clone();
                let wanted = wanted.clone();
                async move {
                    let content = c.content(id).await.unwrap().1;
                    let content = String::from_utf8_lossy(&content);
                    content.contains(&wanted)
                        && content.contains("https://cdn.jsdelivr.net/npm/hyperclayjs@1/")
                }
            })
            .await,
            "{site}: the edit reached the platform"
        );
    }
    let saves = result["requested"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| *r == &format!("POST http://localhost:{port}/_/save"))
        .count();
    assert!(
        saves >= sites.len(),
        "each page saved through the local server's /_/save: {result:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_lands_beside_the_page_goes_up_and_is_served_back() {
    let (p, m, port) = mounted(&[("gallery.html", app("pictures"))]).await;
    let mut drive = Drive::start("upload", port, &["/gallery"]);
    let result = drive.done().await;
    assert_eq!(result["status"], 200, "{result:#}");
    assert_eq!(
        result["same"], true,
        "the served file is the uploaded bytes: {result:#}"
    );
    let url = result["answer"]["urls"][0].as_str().unwrap().to_string();
    assert!(
        url.starts_with("assets-gallery/photo-") && url.ends_with(".png"),
        "{result:#}"
    );
    assert_eq!(result["answer"]["uploads"][0]["url"], url.as_str());
    let stored = std::fs::read(m.path(&url)).unwrap();
    assert_eq!(stored.len(), 3000);
    let c = p.client();
    assert!(
        eventually(Duration::from_secs(10), || {
            let c = c.clone();
            let url = url.clone();
            async move { node_at(&c, &url).await.is_some() }
        })
        .await,
        "the upload reached the platform"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_linking_the_tailwind_sheet_gets_styles() {
    let page = format!(
        r#"<!DOCTYPE html>
<html><head><script src="{LIBRARY}" type="module"></script>
<link rel="stylesheet" href="/tailwindcss/styled.css"></head>
<body><div id="box" class="p-4 flex">styled</div></body></html>
"#
    );
    let (_p, _m, port) = mounted(&[("styled.html", page)]).await;
    let mut drive = Drive::start("tailwind", port, &["/styled"]);
    let result = drive.done().await;
    assert_eq!(result["padding"], "16px", "{result:#}");
    assert_eq!(result["display"], "flex", "{result:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_wipes_the_data_shows_the_panel_and_reverting_brings_it_back() {
    let library = LIBRARY.replace("file-upload", "data-loss-panel");
    let page = format!(
        r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="{library}" type="module"></script>
<script type="application/json" data-rules-name="api" data-rules-version="1">{{"todos": ["#todos li", {{"id": "@data-id", "text": "."}}]}}</script>
</head><body><ul id="todos"><li data-id="1">buy milk</li><li data-id="2">call mom</li><li data-id="3">fix the bike</li></ul></body></html>
"##
    );
    let (_p, m, port) = mounted(&[("todos.html", page)]).await;
    let mut drive = Drive::start("data_loss", port, &["/todos"]);
    let result = drive.done().await;
    assert_eq!(result["before"], 3, "{result:#}");
    assert_eq!(
        result["title"], "Saved data overwritten",
        "the panel showed: {result:#}"
    );
    assert_eq!(
        result["after"],
        serde_json::json!(["buy milk", "call mom", "fix the bike"]),
        "reverting brought the data back: {result:#}"
    );
    assert_eq!(result["chipAfter"], 0, "the incident is closed: {result:#}");
    let on_disk = std::fs::read_to_string(m.path("todos.html")).unwrap();
    assert!(on_disk.contains("fix the bike"), "{on_disk}");
    let versions = m.mirror.join("sites-versions/todos");
    let wiped = std::fs::read_dir(&versions)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .any(|v| v.contains("<ul id=\"todos\"></ul>"));
    assert!(wiped, "the wiping save is kept as a version too");
}

/// A file a page uploads (`.shtml`, `.hxt`, `.SHTML`, served as HTML by its type; `.aspx`,
/// `.config`, `.dtd`, served as XML; `.svg`), holding a script that would save over
/// another app: opened as a page or framed, the script never runs with the server's origin. A
/// site holding the same script shows that a script that runs is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_in_an_uploaded_file_never_runs_as_this_origin() {
    let dir = tempfile::tempdir().unwrap();
    let victim = "<!doctype html><p>the victim app</p>";
    std::fs::write(
        dir.path().join("gallery.html"),
        "<!doctype html><title>gallery</title><p>pictures</p>",
    )
    .unwrap();
    std::fs::write(dir.path().join("victim.html"), victim).unwrap();
    std::fs::write(
        dir.path().join("control.html"),
        "<!doctype html><script>fetch('/ran-by-upload?control=' + encodeURIComponent(location.origin))</script>",
    )
    .unwrap();
    let mirror = std::sync::Arc::new(hyperclay::cache::Mirror::open(dir.path()).unwrap());
    let server = hyperclay::serve::start(mirror, hyperclay::serve::SaveTo::Mirror, 0)
        .await
        .unwrap();
    let mut drive = Drive::start(
        "hostile_upload",
        server.addr.port(),
        &["/gallery", "/control"],
    );
    let result = drive.done().await;
    eprintln!(
        "uploads opened: {}",
        serde_json::to_string(&result["opened"]).unwrap()
    );
    let urls = result["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 7, "{result:#}");
    for u in urls {
        assert_eq!(
            u["status"], 200,
            "every name is taken and stored: {result:#}"
        );
    }
    let requested = result["requested"].to_string();
    let origin = format!("localhost%3A{}", server.addr.port());
    assert!(
        requested.contains(&format!("ran-by-upload?control=http%3A%2F%2F{origin}")),
        "the control site's script ran (so a script that runs is seen): {requested}"
    );
    let ran: Vec<&str> = requested
        .split('"')
        .filter(|r| r.contains("/ran-by-upload?x."))
        .collect();
    assert!(
        ran.is_empty(),
        "no uploaded file's script ran: {ran:#?}\n{result:#}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim.html")).unwrap(),
        victim,
        "the victim app is as it was"
    );
    server.stop();
}

/// The folder listing of a mount's server: folders then files, each with its size and
/// modification time, a parent link, the files waiting to go up marked (and counted, for a
/// folder); a path that names nothing is a page for a browser, JSON for a script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_listing_shows_sizes_dates_the_parent_and_what_waits_to_go_up() {
    use hyperclay::cache::ROOT_INO;
    use hyperclay::remote::Credential;
    use hyperclay::sync::Boot;

    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(
        NodeKind::Site,
        "published.html",
        NodeId::ROOT,
        Some(b"<p>on the platform</p>"),
    )
    .await
    .unwrap();
    let docs = c
        .create(NodeKind::Folder, "docs", NodeId::ROOT, None)
        .await
        .unwrap();
    c.create(NodeKind::Upload, "guide.txt", docs.id, Some(&[b'g'; 2048]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = Boot::new(dir.path(), &p.url(), Credential::ApiKey(common::KEY.into()))
        .start()
        .await
        .unwrap();
    let engine = running.engine().clone();
    let mirror = engine.mirror.clone();
    assert!(
        eventually(Duration::from_secs(30), || {
            let e = engine.clone();
            async move { e.first_listing.is_listed() && e.index.lookup(ROOT_INO, "docs").is_some() }
        })
        .await,
        "the account is listed"
    );
    // Offline, two new files wait to go up: one at the top, one in the folder.
    engine.set_sync(false).unwrap();
    let docs_ino = engine.index.lookup(ROOT_INO, "docs").unwrap().ino;
    let saving = engine.clone();
    tokio::task::spawn_blocking(move || {
        for (parent, name, bytes) in [
            (ROOT_INO, "draft.html", &b"<p>not yet</p>"[..]),
            (docs_ino, "new notes.txt", &b"later"[..]),
        ] {
            let e = saving.create_file(parent, name, None).unwrap();
            saving.save_bytes(e.ino, bytes).unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(
        engine.waiting_paths(),
        vec!["docs/new notes.txt", "draft.html"]
    );
    let server =
        hyperclay::serve::start(mirror, hyperclay::serve::SaveTo::Engine(engine.clone()), 0)
            .await
            .unwrap();
    // The screenshots: kept to look at with KEEP_SCREENSHOTS set, removed otherwise.
    let shots_dir = tempfile::Builder::new()
        .prefix("hyperclay-listing-")
        .tempdir()
        .unwrap();
    let shots = shots_dir.path().to_path_buf();
    let mut drive = Drive::start("listing", server.addr.port(), &[shots.to_str().unwrap()]);
    let result = drive.done().await;
    let root = &result["root"];
    assert_eq!(root["status"], 200, "{result:#}");
    assert_eq!(root["h1"], "/");
    assert_eq!(
        root["headers"],
        serde_json::json!(["Name", "Size", "Modified", "Sync"])
    );
    assert_eq!(
        root["parent"],
        serde_json::Value::Null,
        "the top has no parent"
    );
    assert!(
        root["summary"]
            .as_str()
            .unwrap()
            .contains("2 files waiting to go up"),
        "{result:#}"
    );
    let rows = root["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["docs/", "draft.html", "published.html"],
        "{result:#}"
    );
    let row = |rows: &[serde_json::Value], name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    let folder_row = row(rows, "docs/");
    assert_eq!(folder_row["kind"], "folder");
    assert_eq!(folder_row["sync"], "1 file waiting to go up");
    assert_eq!(folder_row["size"], "");
    let draft = row(rows, "draft.html");
    assert_eq!(draft["sync"], "waiting to go up");
    assert_eq!(draft["size"], "14 B");
    let published = row(rows, "published.html");
    assert_eq!(published["sync"], "", "on the platform already: {result:#}");
    assert_eq!(published["bytes"], "22 bytes");
    for r in rows {
        let when = r["modified"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(when).is_ok(),
            "{} has a modification time: {when:?}",
            r["name"]
        );
    }
    // The folder: reached by its link, with a parent link that leads back to the top.
    let folder = &result["folder"];
    assert!(
        folder["url"].as_str().unwrap().ends_with("/docs/"),
        "{result:#}"
    );
    assert_eq!(folder["h1"], "/docs");
    assert_eq!(folder["parent"], "/");
    let rows = folder["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["guide.txt", "new notes.txt"]);
    assert_eq!(row(rows, "guide.txt")["size"], "2.0 KiB");
    assert_eq!(row(rows, "guide.txt")["sync"], "");
    assert_eq!(row(rows, "new notes.txt")["sync"], "waiting to go up");
    assert_eq!(row(rows, "new notes.txt")["href"], "/docs/new%20notes.txt");
    assert!(result["back"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}/", server.addr.port())));
    // Nothing there: a page for the browser, with links up.
    let missing = &result["notFound"];
    assert_eq!(missing["status"], 404, "{result:#}");
    assert!(missing["type"].as_str().unwrap().starts_with("text/html"));
    assert_eq!(missing["h1"], "Not found");
    assert_eq!(missing["links"], serde_json::json!(["/no/", "/"]));
    // A script asking the same gets JSON, as before.
    let json = reqwest::get(format!(
        "http://localhost:{}/no/such-page",
        server.addr.port()
    ))
    .await
    .unwrap();
    assert_eq!(json.status(), 404);
    assert_eq!(
        json.json::<serde_json::Value>().await.unwrap()["msgType"],
        "error"
    );
    for shot in ["listing-top.png", "listing-folder.png", "not-found.png"] {
        assert!(
            std::fs::metadata(shots.join(shot)).unwrap().len() > 1000,
            "{shot} was taken"
        );
    }
    if std::env::var_os("KEEP_SCREENSHOTS").is_some() {
        eprintln!("screenshots in {}", shots_dir.keep().display());
    }
    server.stop();
    running.stop(Duration::from_secs(30)).await;
}
