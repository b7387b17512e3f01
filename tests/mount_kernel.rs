//! What the mount keeps for the kernel is bounded by what the kernel holds: a real FUSE mount,
//! in-process so the mount's own count can be read. Before (issue 24) the content each file was
//! last opened with and the times made through the mount were maps of their own that grew with
//! every inode the mount ever showed; now they live in the file's cell while the kernel holds
//! its inode, and go when the kernel forgets it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Mode, TestPlatform, KEY};
use hyperclay::fs::{self, MountFs};
use hyperclay::remote::Credential;
use hyperclay::sync::Boot;

const FILES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_the_kernel_forgets_is_forgotten_here_too() {
    let p = TestPlatform::start(Mode::Full).await;
    let mirror = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let (sink, notices) = fs::notice_channel();
    let running = Boot::new(mirror.path(), &p.url(), Credential::ApiKey(KEY.into()))
        .notices(sink)
        .start()
        .await
        .unwrap();
    let mount_fs = Arc::new(MountFs::new(running.engine().clone()));
    let mounted = fs::mount(
        mount_fs.clone(),
        mountpoint.path(),
        notices,
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let dir = mountpoint.path().join("many");

    let work = {
        let dir = dir.clone();
        move || {
            std::fs::create_dir(&dir).unwrap();
            for i in 0..FILES {
                std::fs::write(dir.join(format!("f{i}.txt")), format!("file {i}")).unwrap();
            }
        }
    };
    tokio::task::spawn_blocking(work).await.unwrap();
    let held = mount_fs.kernel_held();
    assert!(
        held > FILES,
        "every file made is held by the kernel, and counted: {held}"
    );

    let remove = {
        let dir = dir.clone();
        move || {
            // A listing gives the kernel every entry again (readdirplus), `.` and `..` aside.
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), FILES);
            for i in 0..FILES {
                std::fs::remove_file(dir.join(format!("f{i}.txt"))).unwrap();
            }
            std::fs::remove_dir(&dir).unwrap();
        }
    };
    tokio::task::spawn_blocking(remove).await.unwrap();
    // An unlinked inode is evicted at once and its `forget` follows: only the root stays.
    let fs2 = mount_fs.clone();
    let forgotten = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), || fs2.kernel_held() == 1)
    })
    .await
    .unwrap();
    assert!(
        forgotten.is_some(),
        "the kernel forgot the removed files, and so did the mount: {} still held",
        mount_fs.kernel_held()
    );

    mounted.unmount().unwrap();
    assert!(running.stop(Duration::from_secs(30)).await.drained);
}
