//! Contract tests: the client against the dev platform on loopback, every endpoint and error, in
//! both modes (Part 1 + Part 2, and `--plain` Part 1 only, to prove the client's fallbacks).

mod common;

use common::{Mode, TestPlatform, KEY};
use hyperclay::protocol::{checksum, names, NodeKind, OUT_OF_SITES_MSG};
use hyperclay::protocol::{NodeId, PlatformTime};
use hyperclay::remote::{Client, Credential, RemoteError};

const MODES: [Mode; 2] = [Mode::Full, Mode::Plain];

fn find<'a>(
    nodes: &'a [hyperclay::protocol::Node],
    full_path: &str,
) -> &'a hyperclay::protocol::Node {
    nodes
        .iter()
        .find(|n| n.full_path() == full_path)
        .unwrap_or_else(|| panic!("{full_path} is listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_features_only_in_full_mode() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let status = c.status().await.unwrap();
        assert_eq!(status.username, "dev");
        assert!(hyperclay::protocol::parse_time(&status.server_time).is_some());
        let f = c.features().await.unwrap();
        match mode {
            Mode::Full => {
                assert!(f.changes && f.raw && f.versions && f.token);
                assert_eq!(status.cursor, Some(0));
            }
            Mode::Plain => {
                assert!(!f.changes && !f.raw && !f.versions && !f.token);
                assert_eq!(status.cursor, None);
            }
        }
        // The bare /sync/ form answers too.
        let bare = reqwest::Client::new()
            .get(format!("{}/sync/status", p.url()))
            .header("X-API-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 200, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_and_read_back_every_kind() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let blog = c
            .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
            .await
            .unwrap();
        assert_eq!((blog.path.as_str(), blog.kind), ("", NodeKind::Folder));
        let y2024 = c
            .create(NodeKind::Folder, "2024", blog.id, None)
            .await
            .unwrap();
        assert_eq!(y2024.path, "blog");
        let html = "<!doctype html><p>héllo</p>";
        let post = c
            .create(NodeKind::Site, "post.html", y2024.id, Some(html.as_bytes()))
            .await
            .unwrap();
        assert_eq!(post.path, "blog/2024");
        let png: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let logo = c
            .create(NodeKind::Upload, "logo.png", NodeId::ROOT, Some(&png))
            .await
            .unwrap();
        let empty = c
            .create(NodeKind::Upload, "empty.txt", NodeId::ROOT, None)
            .await
            .unwrap();

        let listing = c.nodes().await.unwrap();
        assert_eq!(listing.nodes.len(), 5, "{mode:?}");
        assert_eq!(listing.cursor.is_some(), mode == Mode::Full);
        let listed_post = find(&listing.nodes, "blog/2024/post.html");
        assert_eq!(
            listed_post.checksum.as_ref().map(|c| c.as_str()),
            Some(checksum(html.as_bytes()).as_str())
        );
        assert_eq!(listed_post.size, Some(html.len() as u64));
        assert_eq!(listed_post.parent(), y2024.id);
        assert!(listed_post.modified_at.is_some());
        let listed_logo = find(&listing.nodes, "logo.png");
        assert_eq!(
            (listed_logo.kind, listed_logo.parent()),
            (NodeKind::Upload, NodeId::ROOT)
        );
        assert_eq!(
            find(&listing.nodes, "empty.txt")
                .checksum
                .as_ref()
                .map(|c| c.as_str()),
            Some("e3b0c44298fc1c14")
        );

        let (meta, bytes) = c.content(post.id).await.unwrap();
        assert_eq!(bytes, html.as_bytes());
        assert_eq!(
            (meta.kind, meta.checksum.as_str()),
            (NodeKind::Site, checksum(html.as_bytes()).as_str())
        );
        let (meta, bytes) = c.content(logo.id).await.unwrap();
        assert_eq!(bytes, png, "binary content survives ({mode:?})");
        assert_eq!(meta.size, png.len() as u64);
        let (_, bytes) = c.content(empty.id).await.unwrap();
        assert!(bytes.is_empty());

        // Streaming to a file gives the same bytes.
        let file = p.dir.path().join("logo.png");
        let mut out = tokio::fs::File::create(&file).await.unwrap();
        c.download(logo.id, &mut out).await.unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), png);

        // A folder has no content.
        assert!(matches!(
            c.content(blog.id).await,
            Err(RemoteError::BadRequest(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_content_replaces_and_keeps_the_old_content_as_a_version() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let site = c
            .create(NodeKind::Site, "app.html", NodeId::ROOT, Some(b"v1"))
            .await
            .unwrap();
        let put = c
            .put_content(site.id, NodeKind::Site, "v2".into(), None)
            .await
            .unwrap();
        assert_eq!(
            (put.node_id, put.checksum.clone(), put.size),
            (site.id, checksum(b"v2"), 2)
        );
        let upload = c
            .create(NodeKind::Upload, "data.bin", NodeId::ROOT, Some(&[0, 1, 2]))
            .await
            .unwrap();
        c.put_content(upload.id, NodeKind::Upload, vec![9u8, 0, 255].into(), None)
            .await
            .unwrap();
        assert_eq!(c.content(upload.id).await.unwrap().1, vec![9u8, 0, 255]);
        assert_eq!(c.content(site.id).await.unwrap().1, b"v2");
        match mode {
            Mode::Full => {
                let versions = c.versions(site.id).await.unwrap();
                assert_eq!(versions.len(), 1);
                assert_eq!(versions[0].checksum, checksum(b"v1"));
                let (v, bytes) = c.version(site.id, versions[0].version_id).await.unwrap();
                assert_eq!((v.size, bytes), (2, b"v1".to_vec()));
                c.put_content(site.id, NodeKind::Site, "v3".into(), None)
                    .await
                    .unwrap();
                let versions = c.versions(site.id).await.unwrap();
                assert_eq!(versions.len(), 2);
                assert_eq!(versions[0].checksum, checksum(b"v2"), "newest first");
            }
            Mode::Plain => {
                assert!(matches!(
                    c.versions(site.id).await,
                    Err(RemoteError::Unsupported(_))
                ));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_write_refuses_a_stale_base() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let site = c
            .create(NodeKind::Site, "app.html", NodeId::ROOT, Some(b"base"))
            .await
            .unwrap();
        c.put_content(site.id, NodeKind::Site, "browser edit".into(), None)
            .await
            .unwrap();
        let stale = c
            .put_content(
                site.id,
                NodeKind::Site,
                "local edit".into(),
                Some(&checksum(b"base")),
            )
            .await;
        match mode {
            Mode::Full => {
                let Err(RemoteError::ChangedRemotely {
                    checksum: now,
                    modified_at,
                }) = stale
                else {
                    panic!("expected changed_remotely, got {stale:?}");
                };
                assert_eq!(now, checksum(b"browser edit"));
                assert!(!modified_at.as_str().is_empty());
                assert_eq!(
                    c.content(site.id).await.unwrap().1,
                    b"browser edit",
                    "nothing written"
                );
                let fresh = c
                    .put_content(
                        site.id,
                        NodeKind::Site,
                        "local edit".into(),
                        Some(&checksum(b"browser edit")),
                    )
                    .await
                    .unwrap();
                assert_eq!(fresh.checksum, checksum(b"local edit"));
            }
            Mode::Plain => {
                // Part 1 has no optimistic write: the last write wins.
                stale.unwrap();
                assert_eq!(c.content(site.id).await.unwrap().1, b"local edit");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_move_update_paths() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let a = c
            .create(NodeKind::Folder, "a", NodeId::ROOT, None)
            .await
            .unwrap();
        let b = c.create(NodeKind::Folder, "b", a.id, None).await.unwrap();
        let site = c
            .create(NodeKind::Site, "one.html", NodeId::ROOT, Some(b"x"))
            .await
            .unwrap();
        let up = c
            .create(NodeKind::Upload, "pic.jpg", NodeId::ROOT, Some(b"y"))
            .await
            .unwrap();

        let r = c.rename(site.id, NodeKind::Site, "two.html").await.unwrap();
        assert_eq!(
            (r.old_name.as_str(), r.new_name.as_str()),
            ("one.html", "two.html")
        );
        let m = c
            .move_node(up.id, NodeKind::Upload, b.id, Some("photo.jpg"))
            .await
            .unwrap();
        assert_eq!(
            (m.from_path.as_str(), m.to_path.as_str()),
            ("pic.jpg", "a/b/photo.jpg")
        );
        let m = c
            .move_node(site.id, NodeKind::Site, a.id, None)
            .await
            .unwrap();
        assert_eq!(m.to_path, "a/two.html");
        let nodes = c.nodes().await.unwrap().nodes;
        assert_eq!(find(&nodes, "a/b/photo.jpg").id, up.id);
        assert_eq!(find(&nodes, "a/two.html").id, site.id);

        // A folder cannot move into its own subtree; a site cannot become an upload.
        assert!(matches!(
            c.move_node(a.id, NodeKind::Folder, b.id, None).await,
            Err(RemoteError::BadRequest(_))
        ));
        let kind_change = reqwest::Client::new()
            .patch(format!("{}/_/sync/nodes/{}/rename", p.url(), site.id))
            .header("X-API-Key", KEY)
            .json(&serde_json::json!({"newName": "two.png"}))
            .send()
            .await
            .unwrap();
        assert_eq!(kind_change.status(), 400);
        // Moving a folder to the root renames the subtree's paths with it.
        c.move_node(b.id, NodeKind::Folder, NodeId::ROOT, None)
            .await
            .unwrap();
        let nodes = c.nodes().await.unwrap().nodes;
        assert_eq!(find(&nodes, "b/photo.jpg").id, up.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_soft_and_a_full_folder_needs_cascade() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let f = c
            .create(NodeKind::Folder, "f", NodeId::ROOT, None)
            .await
            .unwrap();
        let s = c
            .create(NodeKind::Site, "s.html", f.id, Some(b"x"))
            .await
            .unwrap();
        assert!(
            matches!(c.delete(f.id, false).await, Err(RemoteError::BadRequest(_))),
            "{mode:?}"
        );
        let d = c.delete(f.id, true).await.unwrap();
        assert_eq!((d.node_id, d.kind), (f.id, NodeKind::Folder));
        assert!(c.nodes().await.unwrap().nodes.is_empty());
        assert_eq!(c.content(s.id).await.unwrap_err(), RemoteError::NotFound);
        assert_eq!(
            c.delete(f.id, true).await.unwrap_err(),
            RemoteError::NotFound
        );
        // The name is free again once its holder is deleted.
        c.create(NodeKind::Site, "s.html", NodeId::ROOT, Some(b"again"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_status_and_code() {
    for mode in MODES {
        let p = TestPlatform::start_with(mode, |c| c.max_sites = Some(2)).await;
        let c = p.client();
        let wrong = Client::new(&p.url(), Credential::ApiKey("hcsk_wrong".into())).unwrap();
        assert_eq!(wrong.nodes().await.unwrap_err(), RemoteError::Unauthorized);
        let none = reqwest::get(format!("{}/_/sync/nodes", p.url()))
            .await
            .unwrap();
        assert_eq!(none.status(), 401);
        let body: serde_json::Value = none.json().await.unwrap();
        assert_eq!(
            body["code"].as_str(),
            (mode == Mode::Full).then_some("unauthorized")
        );

        assert_eq!(
            c.content(NodeId::new(999)).await.unwrap_err(),
            RemoteError::NotFound
        );
        let f = c
            .create(NodeKind::Folder, "f", NodeId::ROOT, None)
            .await
            .unwrap();
        c.create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b""))
            .await
            .unwrap();
        // Site names are unique in the account, whatever the folder.
        let taken = c
            .create(NodeKind::Site, "a.html", f.id, Some(b""))
            .await
            .unwrap_err();
        assert!(matches!(taken, RemoteError::NameTaken(_)), "{taken:?}");
        // Upload names are unique per folder only.
        c.create(NodeKind::Upload, "x.png", NodeId::ROOT, None)
            .await
            .unwrap();
        c.create(NodeKind::Upload, "x.png", f.id, None)
            .await
            .unwrap();
        assert!(matches!(
            c.create(NodeKind::Upload, "x.png", NodeId::ROOT, None)
                .await,
            Err(RemoteError::NameTaken(_))
        ));
        // The site quota (2): the third site is refused with the exact message.
        c.create(NodeKind::Site, "b.html", NodeId::ROOT, None)
            .await
            .unwrap();
        let out = c
            .create(NodeKind::Site, "c.html", NodeId::ROOT, None)
            .await
            .unwrap_err();
        assert_eq!(out, RemoteError::OutOfSites);
        assert_eq!(out.to_string(), OUT_OF_SITES_MSG);
        // Too deep: five levels are fine, a sixth is refused by the platform.
        let mut parent = NodeId::ROOT;
        for level in 1..=5 {
            parent = c
                .create(NodeKind::Folder, &format!("l{level}"), parent, None)
                .await
                .unwrap()
                .id;
        }
        let deep = c
            .create(NodeKind::Folder, "l6", parent, None)
            .await
            .unwrap_err();
        match mode {
            Mode::Full => assert!(matches!(deep, RemoteError::InvalidName(_)), "{deep:?}"),
            Mode::Plain => assert!(matches!(deep, RemoteError::BadRequest(_)), "{deep:?}"),
        }
        // A name the client knows is refused never leaves.
        assert!(matches!(
            c.create(NodeKind::Site, "Bad.html", NodeId::ROOT, None)
                .await,
            Err(RemoteError::InvalidName(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_account_gets_payment_required() {
    for mode in MODES {
        let p = TestPlatform::start_with(mode, |c| c.paid = false).await;
        let c = p.client();
        assert_eq!(
            c.status().await.unwrap().username,
            "dev",
            "status answers a free account"
        );
        assert_eq!(c.nodes().await.unwrap_err(), RemoteError::PaymentRequired);
        let e = c
            .create(NodeKind::Site, "a.html", NodeId::ROOT, None)
            .await
            .unwrap_err();
        assert_eq!(e, RemoteError::PaymentRequired);
        assert!(e.to_string().contains("Sync needs a paid Hyperclay plan"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_node_ids_answer_404() {
    let dir = tempfile::tempdir().unwrap();
    let start = |user: &'static str, key: &'static str| {
        let mut config = hyperclay::platform::PlatformConfig::new(dir.path().join("p"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.username = user.into();
        config.api_key = Some(key.into());
        hyperclay::platform::start(config)
    };
    let alice_platform = start("alice", "hcsk_alice").await.unwrap();
    let alice = Client::new(
        &alice_platform.url(),
        Credential::ApiKey("hcsk_alice".into()),
    )
    .unwrap();
    let secret = alice
        .create(
            NodeKind::Site,
            "secret.html",
            NodeId::ROOT,
            Some(b"alice's"),
        )
        .await
        .unwrap();
    alice_platform.stop().await;
    let platform = start("bob", "hcsk_bob").await.unwrap();
    let bob = Client::new(&platform.url(), Credential::ApiKey("hcsk_bob".into())).unwrap();
    assert_eq!(
        bob.content(secret.id).await.unwrap_err(),
        RemoteError::NotFound
    );
    assert_eq!(
        bob.put_content(secret.id, NodeKind::Site, "x".into(), None)
            .await
            .unwrap_err(),
        RemoteError::NotFound
    );
    assert_eq!(
        bob.delete(secret.id, true).await.unwrap_err(),
        RemoteError::NotFound
    );
    assert!(bob.nodes().await.unwrap().nodes.is_empty());
    // Alice's key still works against the same platform, and sees her site intact.
    let alice = Client::new(&platform.url(), Credential::ApiKey("hcsk_alice".into())).unwrap();
    assert_eq!(alice.content(secret.id).await.unwrap().1, b"alice's");
}

/// (kind, name, accepted)
const NAME_TABLE: &[(NodeKind, &str, bool)] = &[
    (NodeKind::Folder, "blog", true),
    (NodeKind::Folder, "my_folder-2", true),
    (NodeKind::Folder, "My Folder", false),
    (NodeKind::Folder, "Blog", false),
    (NodeKind::Folder, "a.b", false),
    (NodeKind::Site, "index.html", true),
    (NodeKind::Site, "my-app.htmlclay", true),
    (NodeKind::Site, "a_b-c9.html", true),
    (NodeKind::Site, "Index.html", false),
    (NodeKind::Site, "-app.html", false),
    (NodeKind::Site, "app-.html", false),
    (NodeKind::Site, "my--app.html", false),
    (NodeKind::Site, "con.html", false),
    (NodeKind::Site, "COM1.html", false),
    (NodeKind::Site, "lpt9.html", false),
    (NodeKind::Site, "my app.html", false),
    (NodeKind::Site, "app.HTML", false),
    (NodeKind::Site, ".html", false),
    (NodeKind::Upload, "logo.png", true),
    (NodeKind::Upload, "Photo 2024 (1).JPG", true),
    (NodeKind::Upload, "données.json", true),
    (NodeKind::Upload, "archive.tar.gz", true),
    (NodeKind::Upload, ".hidden", false),
    (NodeKind::Upload, "trailing.", false),
    (NodeKind::Upload, "a:b.txt", false),
    (NodeKind::Upload, "a?b", false),
    (NodeKind::Upload, "a*b", false),
    (NodeKind::Upload, "a|b", false),
    (NodeKind::Upload, "a\"b", false),
    (NodeKind::Upload, "a<b>", false),
    (NodeKind::Upload, "a\\b", false),
    (NodeKind::Upload, "tab\there", false),
    (NodeKind::Upload, "nul.txt", false),
    (NodeKind::Upload, "aux", false),
    (NodeKind::Upload, "page.html", false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_rules_table_is_enforced_by_client_and_platform() {
    let long_upload = "a".repeat(256);
    let long_ok = format!("{}.txt", "a".repeat(251));
    let mut table: Vec<(NodeKind, String, bool)> = NAME_TABLE
        .iter()
        .map(|(k, n, ok)| (*k, n.to_string(), *ok))
        .collect();
    table.push((NodeKind::Upload, long_upload, false));
    table.push((NodeKind::Upload, long_ok, true));
    table.push((NodeKind::Folder, "f".repeat(255), true));
    table.push((NodeKind::Folder, "f".repeat(256), false));
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let http = reqwest::Client::new();
        for (kind, name, accepted) in &table {
            assert_eq!(
                names::check(*kind, name).is_ok(),
                *accepted,
                "client rule for {kind:?} {name:?}"
            );
            // Straight to the platform, past the client's own check.
            let answer = http
                .post(format!("{}/_/sync/nodes", p.url()))
                .header("X-API-Key", KEY)
                .json(&serde_json::json!({"type": kind, "name": name, "parentId": 0}))
                .send()
                .await
                .unwrap();
            let want = if *accepted { 200 } else { 400 };
            assert_eq!(
                answer.status(),
                want,
                "platform answer for {kind:?} {name:?} ({mode:?})"
            );
            if !accepted && mode == Mode::Full {
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(body["code"], "invalid_name");
                assert!(
                    body["msg"].as_str().unwrap().contains("name"),
                    "the rule is said: {body}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_page_through_the_log_with_a_cursor() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let s = c
        .create(NodeKind::Site, "a.html", NodeId::ROOT, Some(b"1"))
        .await
        .unwrap();
    c.put_content(s.id, NodeKind::Site, "2".into(), None)
        .await
        .unwrap();
    c.rename(s.id, NodeKind::Site, "b.html").await.unwrap();
    let f = c
        .create(NodeKind::Folder, "f", NodeId::ROOT, None)
        .await
        .unwrap();
    c.move_node(s.id, NodeKind::Site, f.id, None).await.unwrap();
    c.delete(s.id, false).await.unwrap();
    let first = c.changes(0, 4).await.unwrap();
    assert_eq!(
        first.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(first.has_more);
    assert_eq!(first.cursor, 4);
    let rest = c.changes(first.cursor, 100).await.unwrap();
    assert_eq!(
        rest.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert!(!rest.has_more);
    assert_eq!(rest.cursor, 6);
    assert_eq!(c.nodes().await.unwrap().cursor, Some(6));
    use hyperclay::protocol::Event;
    let kinds: Vec<&str> = first
        .changes
        .iter()
        .chain(&rest.changes)
        .map(|c| match &c.event {
            Event::NodeSaved(_) => "saved",
            Event::NodeRenamed(_) => "renamed",
            Event::NodeMoved(_) => "moved",
            Event::NodeDeleted(_) => "deleted",
            Event::LiveSync(_) | Event::Other => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["saved", "saved", "renamed", "saved", "moved", "deleted"]
    );
    let Event::NodeMoved(moved) = &rest.changes[0].event else {
        panic!()
    };
    assert_eq!(
        (moved.old_path.as_str(), moved.new_path.as_str()),
        ("b.html", "f/b.html")
    );
    // The first save's content was replaced: a replay does not carry stale HTML as current.
    let Event::NodeSaved(first_save) = &first.changes[0].event else {
        panic!()
    };
    assert_eq!(first_save.content, None);

    let plain = TestPlatform::start(Mode::Plain).await;
    assert!(matches!(
        plain.client().changes(0, 10).await,
        Err(RemoteError::Unsupported(_))
    ));
    let route = reqwest::Client::new()
        .get(format!("{}/_/sync/changes?since=0", plain.url()))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 404, "--plain has no changes endpoint");
}

/// Names a mirror keeps for itself are refused by the dev platform with a clear 400: a
/// `.`-name anywhere, `sites-versions` at the top (create, rename and move alike). Below the
/// top, `sites-versions` is an ordinary folder name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_mirror_keeps_for_itself_are_refused() {
    let p = TestPlatform::start(Mode::Full).await;
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let (http, url) = (http.clone(), p.url());
        async move {
            http.post(format!("{url}/_/sync/nodes"))
                .header("X-API-Key", KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for (kind, name) in [
        ("folder", "sites-versions"),
        ("upload", "sites-versions"),
        ("folder", ".hyperclay"),
        ("upload", ".bashrc"),
        ("upload", ".hyperclay"),
    ] {
        let answer = post(serde_json::json!({"type": kind, "name": name, "parentId": 0})).await;
        assert_eq!(answer.status(), 400, "{kind} {name}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "invalid_name", "{kind} {name}");
    }
    let c = p.client();
    let blog = c
        .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
        .await
        .unwrap();
    let inner = c
        .create(NodeKind::Folder, "sites-versions", blog.id, None)
        .await
        .expect("below the top it is an ordinary name");
    let top = c
        .create(NodeKind::Folder, "other", NodeId::ROOT, None)
        .await
        .unwrap();
    assert!(matches!(
        c.rename(top.id, NodeKind::Folder, "sites-versions").await,
        Err(RemoteError::InvalidName(_))
    ));
    assert!(matches!(
        c.move_node(inner.id, NodeKind::Folder, NodeId::ROOT, None)
            .await,
        Err(RemoteError::InvalidName(_))
    ));
}

/// Part 2 `editedAt`: the edit time a client sends with a write is kept (never later than the
/// platform's own clock) and answered in the listing, the content (JSON and raw) and a 409;
/// a Part 1 platform neither keeps nor answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edit_time_is_kept_and_answered() {
    for mode in MODES {
        let p = TestPlatform::start(mode).await;
        let c = p.client();
        let earlier = "2026-01-02T03:04:05.678Z";
        let earlier_at = PlatformTime::new(earlier);
        let created = c
            .create_edited(
                NodeKind::Site,
                "edited.html",
                NodeId::ROOT,
                Some(b"<p>1</p>"),
                Some(&earlier_at),
            )
            .await
            .unwrap();
        let listed = c.nodes().await.unwrap().nodes;
        let node = listed.iter().find(|n| n.id == created.id).unwrap();
        let (meta, _) = c.content(created.id).await.unwrap();
        match mode {
            Mode::Full => {
                assert_eq!(
                    node.edited_at.as_ref().map(|t| t.as_str()),
                    Some(earlier),
                    "in the listing"
                );
                assert_eq!(meta.modified_at, earlier, "with the content (raw header)");
            }
            Mode::Plain => {
                assert_eq!(node.edited_at, None, "Part 1 has no edit times");
                assert_ne!(meta.modified_at, earlier);
            }
        }
        // A claim from the future is held to the platform's clock.
        let future = "2099-01-01T00:00:00.000Z";
        c.put_content_edited(
            created.id,
            NodeKind::Site,
            "<p>2</p>".into(),
            None,
            Some(&PlatformTime::new(future)),
            None,
        )
        .await
        .unwrap();
        let node = c
            .nodes()
            .await
            .unwrap()
            .nodes
            .into_iter()
            .find(|n| n.id == created.id)
            .unwrap();
        if mode == Mode::Full {
            let kept =
                hyperclay::protocol::parse_time(node.edited_at.as_ref().unwrap().as_str()).unwrap();
            assert!(kept <= chrono::Utc::now(), "not later than now: {kept}");
            // A stale base: the 409 says when the current content was edited.
            match c
                .put_content_edited(
                    created.id,
                    NodeKind::Site,
                    "<p>3</p>".into(),
                    Some(&"0000000000000000".into()),
                    None,
                    None,
                )
                .await
            {
                Err(RemoteError::ChangedRemotely { modified_at, .. }) => {
                    assert_eq!(
                        Some(modified_at),
                        node.edited_at,
                        "the 409 carries editedAt"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
