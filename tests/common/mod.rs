//! Shared test fixtures: a real dev platform on loopback (in-process or as a child process) and a
//! client for it. No mocks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use hyperclay::platform::{self, PlatformConfig, RunningPlatform};
use hyperclay::remote::{Client, Credential};

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
        let running = platform::start(config).await.unwrap();
        TestPlatform { running, dir, mode }
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
            .args(["--listen", listen, "--api-key", KEY])
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
