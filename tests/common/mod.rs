//! Shared test fixtures: a real dev platform on loopback (in-process or as a child process) and a
//! client for it. No mocks.
#![allow(dead_code, clippy::expect_fun_call)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use hyperclay::platform::{self, PlatformConfig, RunningPlatform};
use hyperclay::remote::{Client, Credential};

pub mod hostile;

pub const KEY: &str = "hcsk_test_key";

/// Which API the platform serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Plain,
}

pub struct TestPlatform {
    pub running: RunningPlatform,
    pub dir: tempfile::TempDir,
    pub mode: Mode,
    config: PlatformConfig,
}

impl TestPlatform {
    pub async fn start(mode: Mode) -> TestPlatform {
        Self::start_with(mode, |_| {}).await
    }

    pub async fn start_with(mode: Mode, adjust: impl FnOnce(&mut PlatformConfig)) -> TestPlatform {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PlatformConfig::new(dir.path().join("platform"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.api_key = Some(KEY.into());
        config.plain = mode == Mode::Plain;
        adjust(&mut config);
        let running = platform::start(config.clone()).await.unwrap();
        config.listen = running.addr;
        TestPlatform {
            running,
            dir,
            mode,
            config,
        }
    }

    /// Stops the platform (unreachable, as if its machine went away) for `down`, then starts it
    /// again on the same address with the same data.
    pub async fn restart_after(&mut self, down: std::time::Duration, during: impl FnOnce()) {
        self.go_down().await;
        during();
        tokio::time::sleep(down).await;
        self.come_back().await;
    }

    /// Stops the platform: its address refuses connections until [`TestPlatform::come_back`].
    /// (A placeholder on another address keeps `running` valid meanwhile.)
    pub async fn go_down(&mut self) {
        let placeholder = platform::start({
            let mut c = self.config.clone();
            c.data_dir = self.dir.path().join("placeholder");
            c.listen = "127.0.0.1:0".parse().unwrap();
            c
        })
        .await
        .unwrap();
        let running = std::mem::replace(&mut self.running, placeholder);
        running.stop().await;
    }

    /// Starts the platform again on its address, with its data.
    pub async fn come_back(&mut self) {
        let config = self.config.clone();
        let placeholder =
            std::mem::replace(&mut self.running, platform::start(config).await.unwrap());
        placeholder.stop().await;
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    pub fn client(&self) -> Arc<Client> {
        Arc::new(Client::new(&self.url(), Credential::ApiKey(KEY.into())).unwrap())
    }
}

/// The dev platform as a child process (for restarts, `kill -9` and memory measurements).
pub struct PlatformProcess {
    pub child: Child,
    pub url: String,
}

impl PlatformProcess {
    pub fn spawn(data: &Path, extra: &[&str]) -> PlatformProcess {
        Self::spawn_on(data, "127.0.0.1:0", extra)
    }

    pub fn spawn_on(data: &Path, listen: &str, extra: &[&str]) -> PlatformProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyperclay"))
            .arg("dev-platform")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .env("HYPERCLAY_DEV_API_KEY", KEY)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the hyperclay binary runs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("dev-platform printed its URL").unwrap();
            if let Some(url) = line.trim().strip_prefix("HYPERCLAY_URL=") {
                break url.to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        PlatformProcess { child, url }
    }

    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    pub fn client(&self) -> Arc<Client> {
        Arc::new(Client::new(&self.url, Credential::ApiKey(KEY.into())).unwrap())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory of the process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for PlatformProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// `hyperclay mount` as a child process over a temp home, mirror and mount point.
pub struct MountProcess {
    pub child: Option<Child>,
    pub home: tempfile::TempDir,
    pub mountpoint: PathBuf,
    pub mirror: PathBuf,
    pub url: String,
    pub env: Vec<(String, String)>,
}

impl MountProcess {
    pub fn start(url: &str) -> MountProcess {
        Self::start_with(url, &[])
    }

    pub fn start_with(url: &str, env: &[(&str, &str)]) -> MountProcess {
        let mut m = Self::prepare(url, env);
        m.spawn();
        m
    }

    /// The home, mirror and mount point, with nothing started yet.
    pub fn prepare(url: &str, env: &[(&str, &str)]) -> MountProcess {
        let home = tempfile::tempdir().unwrap();
        let mountpoint = home.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let mirror = home.path().join("mirror");
        let m = MountProcess {
            child: None,
            home,
            mountpoint,
            mirror,
            url: url.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        m
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hyperclay"));
        c.env("HYPERCLAY_HOME", self.home.path().join("home"))
            .env("HYPERCLAY_URL", &self.url)
            .env("HYPERCLAY_API_KEY", KEY)
            .env("RUST_LOG", "hyperclay=debug,warn");
        for (k, v) in &self.env {
            // An empty value removes the variable (e.g. sign in with stored credentials).
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        c
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.home.path().join("home/config/credentials.json")
    }

    /// `hyperclay status --json` for this mount.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self
            .command()
            .args(["status", "--json"])
            .arg(&self.mountpoint)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Starts (or restarts) the mount and waits until it is ready: until it says "mounted"
    /// (the account listed, or known not to be listable now). Waiting for the kernel alone is
    /// wrong after a `kill -9`: the dead mount is still there and the new one not yet.
    pub fn spawn(&mut self) {
        let mut child = self.mount_command().stdout(Stdio::piped()).spawn().unwrap();
        let (said, ready) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        std::thread::spawn(move || {
            if lines.any(|l| {
                l.is_ok_and(|l| l.contains(" mounted at ") || l.contains(" kept in sync at "))
            }) {
                let _ = said.send(());
            }
            // The rest is drained, so the mount never writes into a full pipe.
            lines.for_each(drop);
        });
        self.child = Some(child);
        ready
            .recv_timeout(std::time::Duration::from_secs(45))
            .expect("the mount did not say it was mounted");
        assert_eq!(
            hyperclay::fs::is_mounted(&self.mountpoint),
            !self.is_folder()
        );
    }

    /// Starts the mount and returns as soon as the kernel shows it, before it is ready (to see
    /// what a program looking at once gets).
    pub fn spawn_unready(&mut self) {
        let child = self.mount_command().stdout(Stdio::null()).spawn().unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !hyperclay::fs::is_mounted(&self.mountpoint) {
            assert!(
                std::time::Instant::now() < deadline,
                "the mount did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `hyperclay unmount MOUNTPOINT`, as a user types it; it must succeed.
    pub fn unmount(&self) {
        let out = self
            .command()
            .arg("unmount")
            .arg(&self.mountpoint)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "unmount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The plain folder (`--folder`) instead of the FUSE mount: set by [`MountProcess::prepare_folder`].
    pub fn is_folder(&self) -> bool {
        self.env.iter().any(|(k, v)| k == "TEST_FOLDER" && v == "1")
    }

    /// [`MountProcess::prepare`] for `hyperclay mount DIR --folder`: the folder is the mirror.
    pub fn prepare_folder(url: &str, env: &[(&str, &str)]) -> MountProcess {
        let mut m = Self::prepare(url, env);
        m.env.push(("TEST_FOLDER".into(), "1".into()));
        m.mirror = m.mountpoint.clone();
        m
    }

    fn mount_command(&self) -> Command {
        let mut c = self.command();
        c.arg("mount").arg(&self.mountpoint);
        if self.is_folder() {
            c.arg("--folder");
        } else {
            c.arg("--mirror").arg(&self.mirror);
        }
        c.args(self.serve_args()).stderr(Stdio::inherit());
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// Tests run many mounts at once: the local server only where a test asks for a port.
    fn serve_args(&self) -> Vec<String> {
        match self.env.iter().find(|(k, _)| k == "TEST_SERVE_PORT") {
            Some((_, port)) => vec!["--serve-port".into(), port.clone()],
            None => vec!["--no-serve".into()],
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("home/state/sync.log")).unwrap_or_default()
    }
}

impl Drop for MountProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if hyperclay::fs::is_mounted(&self.mountpoint) {
            let _ = hyperclay::fs::fusermount_unmount(&self.mountpoint);
        }
    }
}

/// Polls `f` until it is true or `limit` passes; answers how long it took.
pub fn wait_until(
    limit: std::time::Duration,
    mut f: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Runs a shell command, asserting success; answers its stdout.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file on the platform: full path → content.
pub async fn platform_files(
    c: &hyperclay::remote::Client,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for n in c.nodes().await.unwrap().nodes {
        if n.kind.is_file() {
            files.insert(n.full_path(), c.content(n.id).await.unwrap().1);
        }
    }
    files
}

/// Every folder on the platform, by full path.
pub async fn platform_folders(c: &hyperclay::remote::Client) -> std::collections::BTreeSet<String> {
    c.nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .filter(|n| !n.kind.is_file())
        .map(|n| n.full_path())
        .collect()
}

/// The node id of a full path on the platform.
pub async fn node_at(
    c: &hyperclay::remote::Client,
    path: &str,
) -> Option<hyperclay::protocol::NodeId> {
    c.nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.full_path() == path)
        .map(|n| n.id)
}

/// Waits (polling the platform) until `check` holds, at most `limit`.
pub async fn eventually<F, Fut>(limit: std::time::Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_every(limit, std::time::Duration::from_millis(20), check).await
}

/// [`eventually`], looking every `every` (a check that lists thousands of nodes would take the
/// cores from what it waits for if it ran every 20 ms).
pub async fn eventually_every<F, Fut>(
    limit: std::time::Duration,
    every: std::time::Duration,
    mut check: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Adds a harmless route (a blackhole for one TEST-NET-2 address) and removes it when dropped:
/// a network change the mount sees. Needs root.
pub struct TestRoute(&'static str);

impl TestRoute {
    pub fn add(dest: &'static str) -> TestRoute {
        let _ = std::process::Command::new("ip")
            .args(["route", "del", "blackhole", dest])
            .output();
        let out = std::process::Command::new("ip")
            .args(["route", "add", "blackhole", dest])
            .output()
            .expect("`ip` (iproute2) runs");
        assert!(
            out.status.success(),
            "adding a route needs root (CI has it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestRoute(dest)
    }
}

impl Drop for TestRoute {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["route", "del", "blackhole", self.0])
            .output();
    }
}

/// Fails at once, saying why, when the tests do not run as root (CI does): `doing` needs it.
pub fn assert_root(doing: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test {doing}: run the tests as root (CI does)"
    );
}

/// A loopback port nobody listens on now (for a mount's local server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a Python script with `dir` as its argument; its last line of output, as JSON.
pub fn python_json(script: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("timeout")
        .args(["60", "python3", "-c", script])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}
