//! What the benches share: starting `hyperclay mount` (a FUSE mount, or `--folder`, the plain
//! folder) as its own process, waiting for it, stopping it, and reading its memory.

#![allow(dead_code)] // Each bench uses its part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "hcsk_bench";

/// `hyperclay mount HOME/mnt --mirror HOME/mirror` against `url`, quiet, ready to spawn.
/// BENCH_MOUNT_WRAPPER (e.g. "heaptrack -o FILE") runs it under a profiler; the figures are then
/// the wrapper's, not to be reported.
pub fn mount_command(home: &Path, url: &str) -> Command {
    let mut command = hyperclay_command(home, url);
    command
        .arg("mount")
        .arg(home.join("mnt"))
        .arg("--mirror")
        .arg(home.join("mirror"));
    command
}

/// `hyperclay mount HOME/folder --folder` against `url`: the plain folder kept in sync (the
/// folder is its own mirror), quiet, ready to spawn. BENCH_MOUNT_WRAPPER applies as for
/// [`mount_command`].
pub fn folder_command(home: &Path, url: &str) -> Command {
    let mut command = hyperclay_command(home, url);
    command
        .arg("mount")
        .arg(home.join("folder"))
        .arg("--folder");
    command
}

/// The hyperclay binary (under BENCH_MOUNT_WRAPPER when set) with the bench's environment.
fn hyperclay_command(home: &Path, url: &str) -> Command {
    let wrapper = std::env::var("BENCH_MOUNT_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(env!("CARGO_BIN_EXE_hyperclay"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_hyperclay")),
    };
    command
        .env("HYPERCLAY_HOME", home.join("home"))
        .env("HYPERCLAY_URL", url)
        .env("HYPERCLAY_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts `hyperclay mount` without its local server; answers once the mount is there.
/// Ready means what the mount prints "mounted" for: the kernel shows it and the whole tree is
/// listed in the index (a first mount waits for the listing).
pub fn hyperclay_mount(home: &Path, url: &str) -> (Child, PathBuf, Duration) {
    use std::io::BufRead;
    let mnt = home.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let t = Instant::now();
    let mut child = mount_command(home, url)
        .arg("--no-serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let said_mounted = lines.any(|l| l.is_ok_and(|l| l.contains("mounted at")));
    let ready = t.elapsed();
    assert!(said_mounted, "the mount ended before it was ready");
    // The rest is drained, so the mount never writes into a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    wait_mounted(&mnt);
    (child, mnt, ready)
}

/// Starts `hyperclay mount HOME/folder --folder` without its local server; answers once it says
/// it keeps the folder in sync: the whole folder was compared with the index (anything changed
/// while it was stopped is recorded) and the account is listed. Returns the folder.
pub fn hyperclay_folder(home: &Path, url: &str) -> (Child, PathBuf, Duration) {
    use std::io::BufRead;
    let t = Instant::now();
    let mut child = folder_command(home, url)
        .arg("--no-serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let said_ready = lines.any(|l| l.is_ok_and(|l| l.contains("kept in sync at")));
    let ready = t.elapsed();
    assert!(said_ready, "the folder mode ended before it was ready");
    std::thread::spawn(move || lines.for_each(drop));
    (child, home.join("folder"), ready)
}

/// How many inotify watches process `pid` holds (its inotify descriptors' `wd:` lines).
pub fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// `rclone mount` (`--vfs-cache-mode full`, uploads at once) of the webdav server at `webdav`,
/// at DIR/rclone-mnt with its cache in DIR/rclone-cache.
pub fn rclone_mount(dir: &Path, webdav: &str) -> (Child, PathBuf, Duration) {
    let mnt = dir.join("rclone-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let t = Instant::now();
    let child = Command::new("rclone")
        .args(["mount", ":webdav:"])
        .arg(&mnt)
        .args([
            "--webdav-url",
            webdav,
            "--vfs-cache-mode",
            "full",
            "--vfs-write-back",
            "0s",
        ])
        .arg("--cache-dir")
        .arg(dir.join("rclone-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_mounted(&mnt);
    (child, mnt, t.elapsed())
}

/// `bindfs` (a C FUSE passthrough, no network, no cache of its own) of `source` at `mnt`, in
/// the foreground: the floor any FUSE mount pays (kernel round trips, context switches) over the
/// same disk. None when bindfs is not installed (`apt-get install bindfs`).
pub fn bindfs_mount(source: &Path, mnt: &Path) -> Option<Child> {
    std::fs::create_dir_all(mnt).unwrap();
    let child = Command::new("bindfs")
        .arg("-f")
        .arg(source)
        .arg(mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_mounted(mnt);
    Some(child)
}

/// `rclone serve webdav` of `data` on a free loopback port; its URL.
pub fn rclone_webdav(data: &Path) -> (Child, String) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("rclone")
        .args(["serve", "webdav"])
        .arg(data)
        .args(["--addr", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    (child, format!("http://{addr}"))
}

pub fn wait_mounted(path: &Path) {
    let start = Instant::now();
    while !hyperclay::fs::is_mounted(path) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} did not mount",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGTERM, wait, and make sure nothing is left mounted.
pub fn stop(mut child: Child, mountpoint: &Path) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
    if hyperclay::fs::is_mounted(mountpoint) {
        let _ = hyperclay::fs::fusermount_unmount(mountpoint);
    }
}

/// A field of /proc/PID/status in MB (`VmRSS:`, `VmHWM:`).
pub fn proc_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The dev platform in this process, on a free loopback port, with the bench's key; and a
/// client for it.
pub async fn start_platform(
    data: &Path,
) -> (
    hyperclay::platform::RunningPlatform,
    std::sync::Arc<hyperclay::remote::Client>,
) {
    let mut config = hyperclay::platform::PlatformConfig::new(data.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.api_key = Some(KEY.into());
    let running = hyperclay::platform::start(config).await.unwrap();
    let client = hyperclay::remote::Client::new(
        &running.url(),
        hyperclay::remote::Credential::ApiKey(KEY.into()),
    )
    .unwrap();
    (running, std::sync::Arc::new(client))
}

/// Files under `dir`, walking it (dot-names, such as temp files and the index, and
/// `sites-versions/` skipped).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') || name == "sites-versions" {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
        }
    }
    out
}

/// Seeds `nodes` nodes: folders of 100, sites of 1-3 KB. Returns the number of files.
pub async fn seed(client: &std::sync::Arc<hyperclay::remote::Client>, nodes: usize) -> usize {
    use futures::StreamExt;
    let folders = nodes / 100;
    let mut parents = Vec::with_capacity(folders);
    for f in 0..folders {
        // One folder in ten goes inside the one before it.
        let parent = if f % 10 == 9 {
            parents[f - 1]
        } else {
            hyperclay::protocol::NodeId::ROOT
        };
        let node = client
            .create(
                hyperclay::protocol::NodeKind::Folder,
                &format!("d{f}"),
                parent,
                None,
            )
            .await
            .unwrap();
        parents.push(node.id);
    }
    let files: Vec<(hyperclay::protocol::NodeId, String, Vec<u8>)> = (0..folders)
        .flat_map(|f| {
            let parent = parents[f];
            (0..99).map(move |s| {
                let html = format!("<p>{f}-{s}</p>\n").repeat(100 + (f * 7 + s * 13) % 200);
                (parent, format!("s{f}-{s}.html"), html.into_bytes())
            })
        })
        .collect();
    let count = files.len();
    futures::stream::iter(files)
        .map(|(parent, name, body)| {
            let client = client.clone();
            async move {
                client
                    .create(
                        hyperclay::protocol::NodeKind::Site,
                        &name,
                        parent,
                        Some(&body),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    count
}
