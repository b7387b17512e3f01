//! Sign-in: the browser flow against the dev platform, state checking, expiry, the daily refresh,
//! logout, file permissions, a free account, and a switch of account.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, node_at, wait_until, Mode, MountProcess, TestPlatform};
use hyperclay::platform::{self, PlatformConfig};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;

const WAIT: Duration = Duration::from_secs(8);

/// A stand-in for the user's browser: follows the sign-in page's redirect to the callback, as
/// a browser does after the user approves (the dev platform runs with --auto-approve).
fn browser_script(dir: &std::path::Path, forge_state: bool) -> String {
    let path = dir.join(if forge_state {
        "forging-browser"
    } else {
        "browser"
    });
    let body = if forge_state {
        "import sys, urllib.parse, urllib.request\nq = urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query)\nurllib.request.urlopen(q['redirect_uri'][0] + '?token=forged&state=not-the-one').read()\n"
    } else {
        "import sys, urllib.request\nurllib.request.urlopen(sys.argv[1]).read()\n"
    };
    std::fs::write(&path, format!("#!/usr/bin/env python3\n{body}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// `hyperclay login` with the stand-in browser that approves.
fn login_with_browser(m: &MountProcess) -> std::process::Output {
    let browser = browser_script(m.home.path(), false);
    m.command()
        .arg("login")
        .env("BROWSER", &browser)
        .output()
        .unwrap()
}

fn stored_credentials() -> [(&'static str, &'static str); 1] {
    [("HYPERCLAY_API_KEY", "")]
}

fn login_with_key(m: &MountProcess, key: &str, force: bool) -> std::process::Output {
    let mut cmd = m.command();
    cmd.arg("login").arg("--api-key");
    if force {
        cmd.arg("--force");
    }
    run_with_key(cmd, key)
}

/// Runs `cmd` (a `login --api-key`) with `key` on its standard input.
fn run_with_key(mut cmd: std::process::Command, key: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{key}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_flow_signs_in_and_the_mount_syncs_with_it() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.auto_approve = true).await;
    let mut m = MountProcess::prepare(&p.url(), &stored_credentials());
    let browser = browser_script(m.home.path(), false);
    let out = m
        .command()
        .arg("login")
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/local-auth?redirect_uri=http%3A%2F%2F127.0.0.1"),
        "the address is printed: {text}"
    );
    assert!(text.contains("signed in as dev"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(m.credentials_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.credentials_path()).unwrap()).unwrap();
    assert_eq!(stored["kind"], "token");
    assert_eq!(stored["secret"].as_str().unwrap().split('.').count(), 3);
    m.spawn();
    std::fs::write(m.path("hello.txt"), b"signed in").unwrap();
    let c = p.client();
    assert!(
        eventually(WAIT, || {
            let c = c.clone();
            async move { node_at(&c, "hello.txt").await.is_some() }
        })
        .await
    );
    assert!(
        !m.log().contains(stored["secret"].as_str().unwrap()),
        "the token never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_state_is_refused() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.auto_approve = true).await;
    let m = MountProcess::prepare(&p.url(), &stored_credentials());
    let browser = browser_script(m.home.path(), true);
    let out = m
        .command()
        .arg("login")
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("state does not match"));
    assert!(!m.credentials_path().exists(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sign_in_says_to_sign_in_again_while_the_mount_works() {
    let p = TestPlatform::start_with(Mode::Full, |c| {
        c.auto_approve = true;
        c.token_ttl = Duration::from_secs(2);
    })
    .await;
    let mut m = MountProcess::prepare(
        &p.url(),
        &[
            ("HYPERCLAY_API_KEY", ""),
            ("HYPERCLAY_REFRESH_AFTER_SECS", "999999"),
        ],
    );
    assert!(login_with_browser(&m).status.success());
    // Token times are whole seconds: past 3.5 s a 2-second token is expired for sure.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    m.spawn();
    std::fs::write(m.path("local.txt"), b"still works").unwrap();
    assert_eq!(std::fs::read(m.path("local.txt")).unwrap(), b"still works");
    let said = wait_until(WAIT, || {
        m.status_json()["mounts"][0]["problem"]["message"]
            .as_str()
            .is_some_and(|t| t.contains("sign in again"))
    });
    assert!(said.is_some(), "{}", m.status_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_old_token_is_refreshed_while_running() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.auto_approve = true).await;
    let mut m = MountProcess::prepare(
        &p.url(),
        &[
            ("HYPERCLAY_API_KEY", ""),
            ("HYPERCLAY_REFRESH_AFTER_SECS", "1"),
            ("HYPERCLAY_REFRESH_CHECK_SECS", "1"),
        ],
    );
    assert!(login_with_browser(&m).status.success());
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.credentials_path()).unwrap()).unwrap();
    m.spawn();
    let renewed = wait_until(WAIT, || {
        let now: serde_json::Value =
            serde_json::from_slice(&std::fs::read(m.credentials_path()).unwrap()).unwrap();
        now["secret"] != first["secret"]
    });
    assert!(renewed.is_some(), "{}", m.log());
    // The credentials are stored first, then the line is logged.
    assert!(
        wait_until(WAIT, || m.log().contains("renewed the sign-in")).is_some(),
        "{}",
        m.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_stops_syncing_and_keeps_the_mirror() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    c.create(NodeKind::Site, "kept.html", NodeId::ROOT, Some(b"mine"))
        .await
        .unwrap();
    let mut m = MountProcess::prepare(&p.url(), &stored_credentials());
    assert!(login_with_key(&m, common::KEY, false).status.success());
    m.spawn();
    assert!(wait_until(WAIT, || m.mirror.join("kept.html").exists()).is_some());
    let out = m.command().arg("logout").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped syncing"));
    assert!(!m.credentials_path().exists());
    std::fs::write(m.path("after.txt"), b"local only now").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(node_at(&c, "after.txt").await, None);
    assert_eq!(
        std::fs::read(m.mirror.join("kept.html")).unwrap(),
        b"mine",
        "the mirror stays"
    );
    let status = m.status_json();
    assert_eq!(status["mounts"][0]["sync_on"], false);
    assert!(status["mounts"][0]["problem"]["message"]
        .as_str()
        .unwrap()
        .contains("Signed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_readable_by_others_are_refused() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::prepare(&p.url(), &stored_credentials());
    assert!(login_with_key(&m, common::KEY, false).status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(m.credentials_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = m
        .command()
        .arg("mount")
        .arg(&m.mountpoint)
        .arg("--no-serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_account_says_sync_needs_a_paid_plan() {
    let p = TestPlatform::start_with(Mode::Full, |c| c.paid = false).await;
    let mut m = MountProcess::prepare(&p.url(), &stored_credentials());
    assert!(login_with_key(&m, common::KEY, false).status.success());
    m.spawn();
    std::fs::write(m.path("works.txt"), b"locally").unwrap();
    let said = wait_until(WAIT, || {
        m.status_json()["mounts"][0]["problem"]["message"]
            .as_str()
            .is_some_and(|t| t.contains("Sync needs a paid Hyperclay plan"))
    });
    assert!(said.is_some(), "{}", m.status_json());
    assert_eq!(std::fs::read(m.path("works.txt")).unwrap(), b"locally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_accounts_never_syncs_the_old_mirror_into_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let start = |user: &str, key: &str, listen: std::net::SocketAddr| {
        let mut config = PlatformConfig::new(dir.path().join("p"));
        config.listen = listen;
        config.username = user.into();
        config.api_key = Some(key.into());
        platform::start(config)
    };
    let alice_platform = start("alice", "hcsk_alice", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = alice_platform.addr;
    let mut m = MountProcess::prepare(&alice_platform.url(), &stored_credentials());
    assert!(login_with_key(&m, "hcsk_alice", false).status.success());
    m.spawn();
    std::fs::write(m.path("alice.html"), b"alice's site").unwrap();
    let alice = hyperclay::remote::Client::new(
        &alice_platform.url(),
        hyperclay::remote::Credential::ApiKey("hcsk_alice".into()),
    )
    .unwrap();
    assert!(
        eventually(WAIT, || {
            let a = &alice;
            async move { node_at(a, "alice.html").await.is_some() }
        })
        .await
    );
    m.stop();
    alice_platform.stop().await;
    let platform = start("bob", "hcsk_bob", addr).await.unwrap();
    let refused = login_with_key(&m, "hcsk_bob", false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still signed in as alice"));
    assert!(login_with_key(&m, "hcsk_bob", true).status.success());
    m.spawn();
    std::fs::write(m.path("new.html"), b"written after the switch").unwrap();
    let said = wait_until(WAIT, || {
        m.status_json()["mounts"][0]["problem"]["message"]
            .as_str()
            .is_some_and(|t| t.contains("belongs to alice"))
    });
    assert!(said.is_some(), "{}", m.status_json());
    let bob = hyperclay::remote::Client::new(
        &platform.url(),
        hyperclay::remote::Credential::ApiKey("hcsk_bob".into()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bob.nodes().await.unwrap().nodes.is_empty(),
        "nothing of alice's mirror reached bob's account"
    );
}

/// The platform address: `HYPERCLAY_URL` in the environment wins over `./.env`, which wins over
/// the config directory's `.env`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_address_comes_from_the_environment_then_dot_env_files() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::prepare(
        &p.url(),
        &[("HYPERCLAY_URL", ""), ("HYPERCLAY_API_KEY", "")],
    );
    let config = m.home.path().join("home/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join(".env"), format!("HYPERCLAY_URL={}\n", p.url())).unwrap();
    let elsewhere = m.home.path().join("elsewhere");
    let project = m.home.path().join("project");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    // Nothing listens on port 9 of loopback.
    std::fs::write(
        project.join(".env"),
        "# this project's platform\nHYPERCLAY_URL=\"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let login = |dir: &std::path::Path, url: Option<&str>| {
        let mut cmd = m.command();
        cmd.args(["login", "--api-key", "--force"]).current_dir(dir);
        if let Some(url) = url {
            cmd.env("HYPERCLAY_URL", url);
        }
        run_with_key(cmd, common::KEY)
    };
    let from_config = login(&elsewhere, None);
    assert!(
        from_config.status.success(),
        "the config directory's .env: {}",
        String::from_utf8_lossy(&from_config.stderr)
    );
    let from_project = login(&project, None);
    assert!(!from_project.status.success(), "./.env comes first");
    let stderr = String::from_utf8_lossy(&from_project.stderr);
    assert!(
        stderr.contains("can't reach the platform at http://127.0.0.1:9 (HYPERCLAY_URL in ./.env)"),
        "the error says which address and where it came from: {stderr}"
    );
    let from_env = login(&project, Some(&p.url()));
    assert!(
        from_env.status.success(),
        "the environment comes first: {}",
        String::from_utf8_lossy(&from_env.stderr)
    );
}

/// A server on loopback that records every byte it is sent (a thief's server that a cloned
/// repository's `.env` points at) and answers 500.
struct Capture {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Capture {
    fn start() -> Capture {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16 * 1024];
                use std::io::Read;
                if let Ok(n) = stream.read(&mut buf) {
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Capture { addr, seen }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

/// A `.env` in the current folder (a cloned repository's) naming another platform never gets
/// the user's credentials: not HYPERCLAY_API_KEY, not the stored sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_env_file_never_receives_the_credentials() {
    let p = TestPlatform::start(Mode::Full).await;
    let thief = Capture::start();
    let m = MountProcess::prepare(&p.url(), &[("HYPERCLAY_URL", "")]);
    let project = m.home.path().join("cloned-repo");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join(".env"),
        format!("HYPERCLAY_URL=http://{}\n", thief.addr),
    )
    .unwrap();
    let mount_from_project = |env_key: bool| {
        let mut cmd = m.command();
        cmd.arg("mount")
            .arg(&m.mountpoint)
            .arg("--no-serve")
            .current_dir(&project);
        if !env_key {
            cmd.env_remove("HYPERCLAY_API_KEY");
        }
        cmd.output().unwrap()
    };
    // With HYPERCLAY_API_KEY in the environment.
    let with_key = mount_from_project(true);
    assert!(!with_key.status.success());
    let stderr = String::from_utf8_lossy(&with_key.stderr);
    assert!(
        stderr.contains("HYPERCLAY_API_KEY is not sent to") && stderr.contains("./.env"),
        "says why: {stderr}"
    );
    // With the stored sign-in, issued by the real platform.
    let mut login = m.command();
    login
        .args(["login", "--api-key"])
        .env("HYPERCLAY_URL", p.url())
        .env_remove("HYPERCLAY_API_KEY");
    assert!(run_with_key(login, common::KEY).status.success());
    let with_stored = mount_from_project(false);
    assert!(!with_stored.status.success());
    let stderr = String::from_utf8_lossy(&with_stored.stderr);
    assert!(
        stderr.contains(&format!("signed in to {}", p.url())) && stderr.contains("./.env"),
        "says why: {stderr}"
    );
    assert!(!hyperclay::fs::is_mounted(&m.mountpoint));
    let seen = thief.seen();
    assert!(
        !seen.contains(common::KEY),
        "the key never reached the thief: {seen}"
    );
    assert!(!seen.to_ascii_lowercase().contains("x-api-key"), "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("authorization"),
        "{seen}"
    );
}

/// An address of another machine from `./.env` is not taken at all; plain http to another
/// machine is refused from anywhere (checked before any connection is made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_comes_from_a_projects_env_and_plain_http_stays_on_loopback() {
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::prepare(
        &p.url(),
        &[("HYPERCLAY_URL", ""), ("HYPERCLAY_API_KEY", "")],
    );
    let config = m.home.path().join("home/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join(".env"), format!("HYPERCLAY_URL={}\n", p.url())).unwrap();
    let project = m.home.path().join("cloned-repo");
    std::fs::create_dir_all(&project).unwrap();
    // An address no test may reach (TEST-NET-1): it must never be tried.
    std::fs::write(project.join(".env"), "HYPERCLAY_URL=https://192.0.2.1\n").unwrap();
    let mut login = m.command();
    login
        .args(["login", "--api-key", "--force"])
        .current_dir(&project);
    let out = run_with_key(login, common::KEY);
    assert!(
        out.status.success(),
        "the config folder's address is used: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&p.url()));
    let mut plain = m.command();
    plain
        .args(["login", "--api-key"])
        .env("HYPERCLAY_URL", "http://192.0.2.1:8787");
    let out = run_with_key(plain, common::KEY);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("plain http to another machine"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
