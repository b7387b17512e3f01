//! The backups' cleanup (`sites-versions/`, product.md's policy) as a mount starts.

mod common;

use std::time::Duration;

use common::{Mode, MountProcess, TestPlatform};

/// Generous: a loaded two-core machine runs other tests beside these.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_start_cleans_old_versions_and_leaves_other_names() {
    let p = TestPlatform::start(Mode::Full).await;
    let mut m = MountProcess::prepare(&p.url(), &[]);
    let dir = m.mirror.join("sites-versions/old");
    std::fs::create_dir_all(&dir).unwrap();
    let now = chrono::Utc::now();
    // 30 versions of old.html, all older than 60 days: the 10 oldest are past the policy.
    let mut names = Vec::new();
    for i in 0..30 {
        let t = (now - chrono::Duration::days(200 - i)).fixed_offset();
        let name = format!("{}.html", t.format("%Y-%m-%d-%H-%M-%S-%3f%z"));
        std::fs::write(dir.join(&name), b"old").unwrap();
        names.push(name);
    }
    // Names that only look like versions, and the user's own file: never touched.
    let look_alike = format!("{} copy.html", &names[0][..names[0].len() - 5]);
    for other in [look_alike.as_str(), "notes.txt"] {
        std::fs::write(dir.join(other), b"mine").unwrap();
    }
    m.spawn();
    let left = || {
        names
            .iter()
            .filter(|n| dir.join(n.as_str()).exists())
            .count()
    };
    assert!(
        common::wait_until(WAIT, || left() == 20).is_some(),
        "{} versions left, 20 expected",
        left()
    );
    assert!(
        names[10..].iter().all(|n| dir.join(n).exists()),
        "the newest 20 stay"
    );
    assert!(dir.join(&look_alike).exists() && dir.join("notes.txt").exists());
}
