//! `hyperclay versions` and `hyperclay restore` against a real mount and the dev platform.

mod common;

use std::time::Duration;

use common::{eventually, node_at, Mode, MountProcess, TestPlatform};
use hyperclay::protocol::checksum;

/// Generous: a loaded two-core machine runs other tests beside these.
const WAIT: Duration = Duration::from_secs(30);

async fn platform_content(p: &TestPlatform, path: &str) -> Option<Vec<u8>> {
    let c = p.client();
    let id = node_at(&c, path).await?;
    c.content(id).await.ok().map(|(_, bytes)| bytes)
}

/// Writes `bytes` through the mount, as an editor saves, and waits until the platform has them.
async fn save(p: &TestPlatform, m: &MountProcess, rel: &str, bytes: &[u8]) {
    std::fs::write(m.path(rel), bytes).unwrap();
    assert!(
        eventually(WAIT, || async {
            platform_content(p, rel).await.as_deref() == Some(bytes)
        })
        .await,
        "the platform never got {:?}",
        String::from_utf8_lossy(bytes)
    );
}

fn versions_json(m: &MountProcess, path: &std::path::Path) -> serde_json::Value {
    let out = m
        .command()
        .arg("versions")
        .arg(path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "versions: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (id, place, checksum, time_ms) of every version listed for the one file.
fn listed(v: &serde_json::Value) -> Vec<(String, String, String, i64)> {
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{v:#}");
    files[0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["place"].as_str().unwrap().to_string(),
                e["checksum"].as_str().unwrap().to_string(),
                e["time_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn restore(m: &MountProcess, path: &std::path::Path, args: &[&str]) -> String {
    let out = m
        .command()
        .arg("restore")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_saves_are_listed_from_both_places_and_the_first_comes_back_as_a_save() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    let (v1, v2, v3): (&[u8], &[u8], &[u8]) = (
        b"<p>one</p>",
        b"<p>two, longer</p>",
        b"<p>three, the longest</p>",
    );
    save(&p, &m, "notes.html", v1).await;
    save(&p, &m, "notes.html", v2).await;
    // The content at this moment is v2 (v3 comes after).
    let while_two = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    save(&p, &m, "notes.html", v3).await;

    let file = m.path("notes.html");
    let list = listed(&versions_json(&m, &file));
    for (content, name) in [(v1, "v1"), (v2, "v2")] {
        for place in ["local", "platform"] {
            assert!(
                list.iter()
                    .any(|(_, pl, sum, _)| pl == place && *sum == checksum(content)),
                "{name} is not listed as a {place} version: {list:#?}"
            );
        }
    }
    assert!(
        list.windows(2).all(|w| w[0].3 >= w[1].3),
        "newest first: {list:#?}"
    );
    // v2 went up from this mount: its versions say it was made here.
    let listing = versions_json(&m, &file);
    let made_here: Vec<bool> = listing["files"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["checksum"] == checksum(v2).as_str())
        .map(|e| e["made_here"].as_bool().unwrap())
        .collect();
    assert!(
        !made_here.is_empty() && made_here.iter().all(|m| *m),
        "{listing:#}"
    );
    // The plain listing names every ID too.
    let out = m.command().arg("versions").arg(&file).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for (id, ..) in &list {
        assert!(text.contains(id.as_str()), "{id} not in\n{text}");
    }
    // The same file named through the mirror finds the same mount.
    let through_mirror = listed(&versions_json(&m, &m.mirror.join("notes.html")));
    assert_eq!(through_mirror.len(), list.len());

    // Restore the first content, by the platform's ID of it.
    let (first, ..) = list
        .iter()
        .rev()
        .find(|(_, pl, sum, _)| pl == "platform" && *sum == checksum(v1))
        .unwrap();
    let said = restore(&m, &file, &["--version", first]);
    assert!(said.contains("restored"), "{said}");
    assert!(
        eventually(WAIT, || async {
            platform_content(&p, "notes.html").await.as_deref() == Some(v1)
        })
        .await,
        "the platform's current content did not become the first version"
    );
    assert_eq!(std::fs::read(&file).unwrap(), v1);
    // What it replaced (v3) is kept, here and on the platform.
    let mut kept = Vec::new();
    assert!(
        common::wait_until(WAIT, || {
            kept = listed(&versions_json(&m, &file));
            ["local", "platform"].iter().all(|place| {
                kept.iter()
                    .any(|(_, pl, sum, _)| pl == place && *sum == checksum(v3))
            })
        })
        .is_some(),
        "the replaced content is not kept in both places: {kept:#?}"
    );

    // --at: the content the file had while it held v2.
    let at = while_two.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let said = restore(&m, &file, &["--at", &at]);
    assert!(said.contains("restored"), "{said}");
    assert!(
        eventually(WAIT, || async {
            platform_content(&p, "notes.html").await.as_deref() == Some(v2)
        })
        .await,
        "--at {at} did not bring back the content of that time"
    );

    // A version that does not exist is refused, naming the file, and nothing is written.
    let out = m
        .command()
        .arg("restore")
        .arg(&file)
        .args(["--version", "p999999"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version p999999"));
    assert_eq!(std::fs::read(&file).unwrap(), v2);
}
