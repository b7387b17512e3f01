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
    // Started from the bench's main thread (see `end_with_bench`).
    let child = end_with_bench(Command::new("rclone").args(["mount", ":webdav:"]))
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
pub fn bindfs_mount(source: &Path, mnt: &Path) -> Option<Started> {
    std::fs::create_dir_all(mnt).unwrap();
    let mut child = end_with_bench(
        Command::new("bindfs")
            .arg("-f")
            .arg(source)
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .ok()?;
    let mounted = wait_mounted_by(&mut child, mnt);
    let started = Started::mount(child, mnt);
    mounted.expect("bindfs did not mount");
    Some(started)
}

/// A process the bench started (a mount's, or `stress-ng`), stopped when this is dropped: at the
/// end of its use, or when a workload fails or the bench panics on the way. Stopping it is
/// SIGTERM to its own PID, a wait, and, for a mount, `fusermount3 -u` of its own mount point if
/// it is still mounted; nothing else is touched.
pub struct Started {
    child: Option<Child>,
    mnt: Option<PathBuf>,
}

impl Started {
    /// A FUSE server's process and the mount point it serves.
    pub fn mount(child: Child, mnt: &Path) -> Self {
        Started {
            child: Some(child),
            mnt: Some(mnt.to_path_buf()),
        }
    }

    /// A process that mounts nothing.
    pub fn process(child: Child) -> Self {
        Started {
            child: Some(child),
            mnt: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it now (as dropping it does).
    pub fn stop(self) {}
}

impl Drop for Started {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match &self.mnt {
            Some(mnt) => stop(child, mnt),
            None => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::SIGTERM,
                );
                let _ = child.wait();
            }
        }
    }
}

/// Asks the kernel to send SIGTERM to the process `command` starts when the bench dies, so a
/// killed bench leaves no FUSE server nor `stress-ng` behind (a FUSE server unmounts itself on
/// SIGTERM); and lifts the child's limit of open files to the hard limit (libfuse's
/// `passthrough_ll` holds a descriptor per inode). The kernel sends it when the *thread* that
/// spawned the child ends: spawn only from the bench's main thread (where `#[tokio::main]` runs
/// `main`'s body), never from a `spawn_blocking` thread, which ends when idle.
fn end_with_bench(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (prctl, getrlimit, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
            Ok(())
        })
    }
}

/// Waits until `mnt` is mounted by `child`; why not when the process ends first or 120 s pass.
fn wait_mounted_by(child: &mut Child, mnt: &Path) -> Result<(), String> {
    let start = Instant::now();
    while !hyperclay::fs::is_mounted(mnt) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("ended before it mounted ({status})"));
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err("not mounted after 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Where libfuse's examples are: Debian's `libfuse3-dev`.
pub const FUSE_EXAMPLES: &str = "/usr/share/doc/libfuse3-dev/examples";

/// Builds libfuse's own low-level passthrough (`passthrough_ll.c` from Debian's `libfuse3-dev`,
/// gzipped or not) into `dir`/passthrough_ll with `gcc ... $(pkg-config fuse3 --cflags --libs)`;
/// the program, or why it could not be built.
pub fn build_passthrough_ll(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let examples = Path::new(FUSE_EXAMPLES);
    for name in ["passthrough_ll.c", "passthrough_helpers.h"] {
        let plain = examples.join(name);
        let gz = examples.join(format!("{name}.gz"));
        let text = if plain.exists() {
            std::fs::read(&plain).map_err(|e| format!("{}: {e}", plain.display()))?
        } else if gz.exists() {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(&gz)
                .output()
                .map_err(|e| format!("gzip: {e}"))?;
            if !out.status.success() {
                return Err(format!("gzip -dc {} failed", gz.display()));
            }
            out.stdout
        } else {
            return Err(format!(
                "libfuse3-dev is not installed (no {} or .gz; apt-get install libfuse3-dev)",
                plain.display()
            ));
        };
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let flags = Command::new("pkg-config")
        .args(["fuse3", "--cflags", "--libs"])
        .output()
        .map_err(|e| format!("pkg-config is not installed (apt-get install pkg-config): {e}"))?;
    if !flags.status.success() {
        return Err("pkg-config knows no fuse3 (apt-get install libfuse3-dev)".into());
    }
    let flags = String::from_utf8_lossy(&flags.stdout).to_string();
    let program = dir.join("passthrough_ll");
    let out = Command::new("gcc")
        .args(["-O2", "-Wall"])
        .arg(dir.join("passthrough_ll.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&program)
        .output()
        .map_err(|e| format!("gcc is not installed (apt-get install gcc): {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "gcc failed: {}",
            err.lines().find(|l| l.contains("error")).unwrap_or("?")
        ));
    }
    Ok(program)
}

/// libfuse's `passthrough_ll` (built by [`build_passthrough_ll`]) of `source` at `mnt`, in the
/// foreground, with the kernel's writeback cache and long caching (`-o
/// source=SOURCE,writeback,cache=always`): the other FUSE floor beside bindfs, libfuse's
/// low-level API with no path lookups of its own.
pub fn passthrough_ll_mount(program: &Path, source: &Path, mnt: &Path) -> Result<Started, String> {
    std::fs::create_dir_all(mnt).unwrap();
    let source = source.to_string_lossy();
    // libfuse's option parser splits at commas.
    assert!(!source.contains(','), "a comma in {source}");
    let mut child = end_with_bench(
        Command::new(program)
            .arg("-f")
            .arg("-o")
            .arg(format!("source={source},writeback,cache=always"))
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .map_err(|e| e.to_string())?;
    match wait_mounted_by(&mut child, mnt) {
        Ok(()) => Ok(Started::mount(child, mnt)),
        Err(e) => {
            drop(Started::mount(child, mnt));
            Err(e)
        }
    }
}

/// `stress-ng --cpu 2 --cpu-load 50` (two workers, each busy half the time): the "busy machine"
/// of issue 25, run beside a whole bench; stopped by its PID when the result is dropped.
pub fn busy() -> Result<Started, String> {
    let child = end_with_bench(
        Command::new("stress-ng")
            .args(["--cpu", "2", "--cpu-load", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .map_err(|e| format!("stress-ng is not installed (apt-get install stress-ng): {e}"))?;
    Ok(Started::process(child))
}

/// `rclone serve webdav` of `data` on a free loopback port; its URL.
pub fn rclone_webdav(data: &Path) -> (Child, String) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = end_with_bench(Command::new("rclone").args(["serve", "webdav"]))
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
