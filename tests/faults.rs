//! Faults: a platform that refuses, resets, delays or fails, through a fault-injecting proxy on
//! loopback between the mount and the platform; and a local index deleted or damaged while no
//! mount ran. Edits made during each fault all arrive after it, no file is half-written, and the
//! mount does not storm the platform with retries.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, platform_files, wait_until, Mode, MountProcess, TestPlatform};
use hyperclay::protocol::NodeId;
use hyperclay::protocol::NodeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    Pass = 0,
    /// Connections are closed at once (as if nothing listened).
    Refuse = 1,
    /// The answer is cut after its first bytes.
    Reset = 2,
    /// Every request waits two seconds.
    Delay = 3,
    /// Every request is answered 503.
    Unavailable = 4,
    /// Connections are accepted and requests read, but nothing is ever answered.
    Hang = 5,
}

/// A TCP proxy on loopback whose behaviour can be switched; switching drops open connections.
struct FaultProxy {
    url: String,
    mode: Arc<AtomicU8>,
    connections: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Connections born before this generation stay open but pass nothing more downstream (a
    /// half-open connection: the event stream goes silent).
    silenced: Arc<AtomicU64>,
}

impl FaultProxy {
    async fn start(upstream: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let connections = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let silenced = Arc::new(AtomicU64::new(0));
        let (m, c, o, q) = (
            mode.clone(),
            connections.clone(),
            open.clone(),
            silenced.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let mode = m.load(Ordering::SeqCst);
                let upstream = upstream.clone();
                let quiet = Quiet {
                    born: q.load(Ordering::SeqCst),
                    silenced: q.clone(),
                };
                let task = tokio::spawn(async move { serve(client, upstream, mode, quiet).await });
                o.lock().unwrap().push(task);
            }
        });
        FaultProxy {
            url,
            mode,
            connections,
            open,
            silenced,
        }
    }

    /// Every connection open now goes silent (stays open, passes nothing more back); new ones
    /// work.
    fn silence_open_connections(&self) {
        self.silenced.fetch_add(1, Ordering::SeqCst);
    }

    fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Whether a connection has been silenced since it was born.
struct Quiet {
    born: u64,
    silenced: Arc<AtomicU64>,
}

impl Quiet {
    fn is_silent(&self) -> bool {
        self.silenced.load(Ordering::SeqCst) > self.born
    }
}

/// Copies the platform's answer back until the connection is silenced; then holds it open,
/// passing nothing.
async fn pump_down(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    quiet: &Quiet,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if quiet.is_silent() {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve(mut client: TcpStream, upstream: String, mode: u8, quiet: Quiet) {
    match mode {
        m if m == Fault::Refuse as u8 => {}
        m if m == Fault::Hang as u8 => {
            let mut buf = [0u8; 4096];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        m if m == Fault::Unavailable as u8 => {
            let mut buf = [0u8; 4096];
            let _ = client.read(&mut buf).await;
            let _ = client
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 27\r\nconnection: close\r\n\r\n{\"msg\":\"down for a moment\"}")
                .await;
        }
        m => {
            if m == Fault::Delay as u8 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let Ok(mut server) = TcpStream::connect(upstream.trim_start_matches("http://")).await
            else {
                return;
            };
            if m == Fault::Reset as u8 {
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = sr.read(&mut buf).await {
                        let _ = cw.write_all(&buf[..n.min(40)]).await;
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
                return;
            }
            let (mut cr, cw) = client.split();
            let (sr, mut sw) = server.split();
            let up = tokio::io::copy(&mut cr, &mut sw);
            tokio::select! { _ = up => {}, _ = pump_down(sr, cw, &quiet) => {} }
        }
    }
}

async fn holds(p: &TestPlatform, expected: &BTreeMap<String, Vec<u8>>, limit: Duration) -> bool {
    let c = p.client();
    eventually(limit, || {
        let c = c.clone();
        let e = expected.clone();
        async move {
            let on = platform_files(&c).await;
            e.iter().all(|(k, v)| on.get(k) == Some(v))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_during_platform_faults_all_arrive_after_them() {
    let p = TestPlatform::start(Mode::Full).await;
    let proxy = FaultProxy::start(p.url()).await;
    let m = MountProcess::start(&proxy.url);
    std::fs::write(m.path("start.txt"), b"before the faults").unwrap();
    let mut expected = BTreeMap::from([("start.txt".to_string(), b"before the faults".to_vec())]);
    assert!(
        holds(&p, &expected, Duration::from_secs(8)).await,
        "{}",
        m.log()
    );
    for fault in [
        Fault::Refuse,
        Fault::Reset,
        Fault::Unavailable,
        Fault::Delay,
        Fault::Hang,
    ] {
        let before = proxy.connections.load(Ordering::SeqCst);
        proxy.set(fault);
        let name = format!("during-{fault:?}.html").to_lowercase();
        let content = format!("<p>saved while the platform was {fault:?}</p>");
        std::fs::write(m.path(&name), &content).unwrap();
        std::fs::write(m.path("start.txt"), format!("edited during {fault:?}")).unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let during = proxy.connections.load(Ordering::SeqCst) - before;
        assert!(
            during < 40,
            "{fault:?}: {during} connections in 4 s is a retry storm"
        );
        // Locally everything is whole meanwhile.
        assert_eq!(std::fs::read(m.path(&name)).unwrap(), content.as_bytes());
        proxy.set(Fault::Pass);
        expected.insert(name, content.into_bytes());
        expected.insert(
            "start.txt".into(),
            format!("edited during {fault:?}").into_bytes(),
        );
        assert!(
            holds(&p, &expected, Duration::from_secs(40)).await,
            "{fault:?}: edits did not arrive after the fault\n{}",
            m.log()
        );
    }
    // Nothing half-written in the mirror.
    for (name, content) in &expected {
        assert_eq!(
            &std::fs::read(m.mirror.join(name)).unwrap(),
            content,
            "{name}"
        );
    }
    let log = m.log();
    assert!(
        log.matches("offline: the platform can't be reached")
            .count()
            <= 4,
        "one notice per outage: {log}"
    );
}

/// A platform with one upload, `notes.txt` ("first"), and a mount reaching it through a fault
/// proxy. Fields drop in order: the mount first, the platform last.
struct NotesBehindAProxy {
    m: MountProcess,
    proxy: FaultProxy,
    node: NodeId,
    c: Arc<hyperclay::remote::Client>,
    p: TestPlatform,
}

async fn notes_behind_a_proxy(env: &[(&str, &str)]) -> NotesBehindAProxy {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let node = c
        .create(NodeKind::Upload, "notes.txt", NodeId::ROOT, Some(b"first"))
        .await
        .unwrap()
        .id;
    let proxy = FaultProxy::start(p.url()).await;
    let m = MountProcess::start_with(&proxy.url, env);
    NotesBehindAProxy {
        m,
        proxy,
        node,
        c,
        p,
    }
}

/// Whether the mount shows `want` in `notes.txt` within `limit` seconds.
fn notes_show(m: &MountProcess, want: &[u8], limit: u64) -> bool {
    wait_until(Duration::from_secs(limit), || {
        std::fs::read(m.path("notes.txt")).is_ok_and(|b| b == want)
    })
    .is_some()
}

/// Tests that change the network, or that need it to stay unchanged, take turns.
static NETWORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A half-open connection: the event stream stays open but delivers nothing more, no events and
/// no pings. The mount takes it for dead after the silence limit (45 s; 3 s here) and reconnects,
/// replaying what it missed, so a platform edit made during the silence still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_goes_silent_is_replaced_and_platform_edits_still_arrive() {
    // A network change would replace the stream before the silence limit: none while this runs.
    let _network = NETWORK.lock().await;
    let NotesBehindAProxy {
        p: _p,
        c,
        node,
        proxy,
        m,
    } = notes_behind_a_proxy(&[("HYPERCLAY_STREAM_SILENCE_SECS", "3")]).await;
    let shows = |want: &'static [u8], limit: u64| notes_show(&m, want, limit);
    assert!(shows(b"first", 8), "{}", m.log());
    // The stream works: an edit arrives live.
    c.put_content(node, NodeKind::Upload, "second".into(), None)
        .await
        .unwrap();
    assert!(shows(b"second", 5), "{}", m.log());
    proxy.silence_open_connections();
    c.put_content(
        node,
        NodeKind::Upload,
        "third, during the silence".into(),
        None,
    )
    .await
    .unwrap();
    assert!(
        shows(b"third, during the silence", 20),
        "the edit never arrived through the silent stream\n{}",
        m.log()
    );
    assert!(
        m.log().contains("the event stream went silent"),
        "the silence was noticed as such\n{}",
        m.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_damaged_index_is_rebuilt_without_losing_local_edits() {
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let blog = c
        .create(NodeKind::Folder, "blog", NodeId::ROOT, None)
        .await
        .unwrap();
    c.create(NodeKind::Site, "post.html", blog.id, Some(b"post"))
        .await
        .unwrap();
    c.create(NodeKind::Upload, "data.json", NodeId::ROOT, Some(b"{}"))
        .await
        .unwrap();
    let mut m = MountProcess::start(&p.url());
    assert!(wait_until(Duration::from_secs(8), || m
        .mirror
        .join("blog/post.html")
        .exists()
        && m.mirror.join("data.json").exists())
    .is_some());
    let nodes_before = c.nodes().await.unwrap().nodes.len();
    for (round, damage) in ["delete", "garbage"].into_iter().enumerate() {
        m.stop();
        let edit = format!("post, edited while the mount was down ({round})");
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::fs::write(m.mirror.join("blog/post.html"), &edit).unwrap();
        let index = m.mirror.join(".hyperclay/index.db");
        match damage {
            "delete" => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
                }
            }
            _ => {
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
                }
                std::fs::write(&index, vec![0x5a; 8192]).unwrap();
            }
        }
        m.spawn();
        let expected = BTreeMap::from([
            ("blog/post.html".to_string(), edit.into_bytes()),
            ("data.json".to_string(), b"{}".to_vec()),
        ]);
        assert!(
            holds(&p, &expected, Duration::from_secs(10)).await,
            "{damage}: {}",
            m.log()
        );
        assert_eq!(
            c.nodes().await.unwrap().nodes.len(),
            nodes_before,
            "{damage}: no duplicate nodes"
        );
        assert_eq!(std::fs::read(m.path("data.json")).unwrap(), b"{}");
        // Status says so: local deletions were forgotten with the index.
        let problem = m.status_json()["mounts"][0]["problem"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            problem.contains("The index was lost or damaged"),
            "{damage}: {problem}"
        );
    }
    assert!(m.log().contains("the index is damaged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_through_the_mount_get_clean_errors() {
    use std::os::unix::ffi::OsStrExt;
    let p = TestPlatform::start(Mode::Full).await;
    let m = MountProcess::start(&p.url());
    // Not UTF-8: refused cleanly, nothing created anywhere.
    let bad = m
        .mountpoint
        .join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe.txt"));
    let err = std::fs::write(&bad, b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    // Too long for the kernel, and the longest a name may be.
    let too_long = m.path(&"a".repeat(256));
    assert!(std::fs::write(&too_long, b"x").is_err());
    let longest = format!("{}.txt", "b".repeat(251));
    std::fs::write(m.path(&longest), b"long").unwrap();
    // A name the platform refuses stays local.
    std::fs::write(m.path("a:b.txt"), b"colon").unwrap();
    std::fs::write(m.path("fine.txt"), b"fine").unwrap();
    let expected = BTreeMap::from([
        (longest.clone(), b"long".to_vec()),
        ("fine.txt".to_string(), b"fine".to_vec()),
    ]);
    assert!(holds(&p, &expected, Duration::from_secs(8)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!platform_files(&p.client()).await.contains_key("a:b.txt"));
    assert_eq!(
        std::fs::read(m.path("a:b.txt")).unwrap(),
        b"colon",
        "kept locally"
    );
    assert!(
        m.log().contains("a:b.txt"),
        "the log names the refused file"
    );
    assert!(!m.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_saves_cleanly_and_damages_nothing() {
    common::assert_root("mounts a small tmpfs for the mirror");
    let p = TestPlatform::start(Mode::Full).await;
    let c = p.client();
    let mut m = MountProcess::prepare(&p.url(), &[]);
    std::fs::create_dir_all(&m.mirror).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&m.mirror)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs for the mirror");
    // Unmounted however the test ends (declared after the mount process: dropped before it).
    struct Tmpfs(std::path::PathBuf);
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("--lazy")
                .arg(&self.0)
                .status();
        }
    }
    let tmpfs = Tmpfs(m.mirror.clone());
    m.spawn();
    std::fs::write(m.path("keep.txt"), b"saved before the disk filled").unwrap();
    let kept = BTreeMap::from([(
        "keep.txt".to_string(),
        b"saved before the disk filled".to_vec(),
    )]);
    assert!(holds(&p, &kept, Duration::from_secs(8)).await);

    // More than the disk holds: the save fails with the disk's error...
    let err = std::fs::write(m.path("big.bin"), vec![1u8; 6 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // ...and overwriting a saved file that way leaves its saved content whole, everywhere.
    assert!(std::fs::write(m.path("keep.txt"), vec![2u8; 6 << 20]).is_err());
    assert_eq!(
        std::fs::read(m.path("keep.txt")).unwrap(),
        b"saved before the disk filled"
    );
    assert_eq!(
        std::fs::read(m.mirror.join("keep.txt")).unwrap(),
        b"saved before the disk filled"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        holds(&p, &kept, Duration::from_secs(1)).await,
        "nothing partial reached the platform"
    );
    // The new file whose only save failed holds nothing saved: it stays local, counted apart
    // with what to do, so "nothing waiting" is true; and it does not go up empty after a
    // restart either (before, it waited for ever and went up empty at the next mount).
    let held = |m: &MountProcess| {
        let status = m.status_json();
        let mount = &status["mounts"][0];
        (mount["waiting"].clone(), mount["stays_local"].clone())
    };
    let (waiting, stays_local) = held(&m);
    assert_eq!(waiting, 0, "{stays_local}");
    assert_eq!(
        stays_local["its only save failed (disk full?): save it again, or delete it"], 1,
        "{stays_local}"
    );
    m.stop();
    m.spawn();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(held(&m).0, 0, "still held after a restart");
    assert!(
        !platform_files(&c).await.contains_key("big.bin"),
        "and it did not go up empty"
    );

    // Space is back (the failed working copies are gone): saves work again.
    let _ = std::fs::remove_file(m.path("big.bin"));
    std::fs::write(m.path("keep.txt"), b"after space returned").unwrap();
    let after = BTreeMap::from([("keep.txt".to_string(), b"after space returned".to_vec())]);
    assert!(
        holds(&p, &after, Duration::from_secs(8)).await,
        "{}",
        m.log()
    );
    assert!(c
        .nodes()
        .await
        .unwrap()
        .nodes
        .iter()
        .all(|n| n.name != "big.bin"));
    m.stop();
    drop(tmpfs);
}

/// The same half-open stream, with the real silence limit (45 s): a network change (here a new
/// route) makes the mount replace the stream at once, and the edit made meanwhile arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_change_replaces_a_stream_that_died_with_the_old_network() {
    let _network = NETWORK.lock().await;
    common::assert_root("adds a route");
    let NotesBehindAProxy {
        p: _p,
        c,
        node,
        proxy,
        m,
    } = notes_behind_a_proxy(&[]).await;
    let shows = |want: &'static [u8], limit: u64| notes_show(&m, want, limit);
    assert!(shows(b"first", 8), "{}", m.log());
    proxy.silence_open_connections();
    c.put_content(node, NodeKind::Upload, "second".into(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _route = common::TestRoute::add("198.51.100.78/32");
    assert!(
        shows(b"second", 5),
        "the edit did not arrive within 5 s of the network change\n{}",
        m.log()
    );
    assert!(m
        .log()
        .contains("the network changed; reconnecting the event stream"));
}

/// A create sent on a connection that died without a word (it stays open, nothing comes back:
/// a half-open connection) is not held to the 60 s request limit: its answer's head has 15 s,
/// then it goes again on a new connection; once the platform answers again, pushes still hanging
/// are sent again at once. (It arrived only after 60 s before, and the test above failed about
/// one CI run in three.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sent_on_a_dead_connection_is_sent_again_soon() {
    let p = TestPlatform::start(Mode::Full).await;
    let proxy = FaultProxy::start(p.url()).await;
    let m = MountProcess::start(&proxy.url);
    std::fs::write(m.path("start.txt"), b"up").unwrap();
    let mut expected = BTreeMap::from([("start.txt".to_string(), b"up".to_vec())]);
    assert!(holds(&p, &expected, Duration::from_secs(8)).await);
    // The pooled connection the next push will use goes dead.
    proxy.silence_open_connections();
    let saved = std::time::Instant::now();
    std::fs::write(m.path("made-on-a-dead-line.html"), b"<p>hung</p>").unwrap();
    expected.insert("made-on-a-dead-line.html".into(), b"<p>hung</p>".to_vec());
    assert!(
        holds(&p, &expected, Duration::from_secs(45)).await,
        "the create did not arrive\n{}",
        m.log()
    );
    // The mount knows it arrived (its push is settled, not hanging on the dead line).
    let settled = common::wait_until(Duration::from_secs(45), || {
        m.status_json()["mounts"][0]["waiting"] == 0
    });
    let took = saved.elapsed();
    eprintln!("settled {took:?} after the save");
    assert!(settled.is_some(), "the push never settled\n{}", m.log());
    assert!(took < Duration::from_secs(30), "settled after {took:?}");
    assert!(
        holds(&p, &expected, Duration::from_secs(1)).await,
        "one node, no duplicate"
    );
}

/// Whether the platform holds `name` with `content`.
async fn platform_has(c: &hyperclay::remote::Client, name: &str, content: &[u8]) -> bool {
    let Ok(listing) = c.nodes().await else {
        return false;
    };
    match listing.nodes.iter().find(|n| n.full_path() == name) {
        Some(n) => c.content(n.id).await.is_ok_and(|(_, b)| b == content),
        None => false,
    }
}

/// The problem `hyperclay status --json` shows, if any.
async fn status_problem(m: &MountProcess) -> Option<String> {
    let json = tokio::task::block_in_place(|| m.status_json());
    json["mounts"][0]
        .get("problem")
        .filter(|p| !p.is_null())
        .map(|p| p.to_string())
}

/// Issue 26: a stalled platform showed no problem for 15.5 s while saves waited, and after a
/// fault cleared, saves made during it were up 6-8 s later. Now a save that does not go up
/// shows in status within about a second, and what was saved during a fault is up within about
/// a second of the platform answering again (the first answer wakes the pushes waiting out
/// their retry delay, and an outage's first 30 s are checked every second). The figures are
/// printed; the assertions leave room for a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_shows_at_once_and_saves_are_up_soon_after_it_clears() {
    let mut p = TestPlatform::start(Mode::Full).await;
    let proxy = FaultProxy::start(p.url()).await;
    let m = MountProcess::start(&proxy.url);
    let c = p.client();
    std::fs::write(m.path("start.txt"), b"before the faults").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || platform_has(
            &c,
            "start.txt",
            b"before the faults"
        ))
        .await,
        "{}",
        m.log()
    );
    let mut figures = Vec::new();
    for case in ["kill", "refuse", "reset", "500", "503", "stall"] {
        // No problem left from the case before.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while status_problem(&m).await.is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "{case}: a problem stays\n{}",
                m.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match case {
            "kill" => p.go_down().await,
            "refuse" => proxy.set(Fault::Refuse),
            "reset" => proxy.set(Fault::Reset),
            "500" => p.running.set_fail_writes(true),
            "503" => proxy.set(Fault::Unavailable),
            _ => proxy.set(Fault::Hang),
        }
        let began = std::time::Instant::now();
        // A new file and an edit of one the platform has (the dev platform's failing writes
        // are edits: a create still goes through).
        let name = format!("during-{case}.txt");
        let content = format!("saved during {case}");
        std::fs::write(m.path(&name), &content).unwrap();
        let edit = format!("edited during {case}");
        std::fs::write(m.path("start.txt"), &edit).unwrap();
        let saved = std::time::Instant::now();
        let mut shown = None;
        while saved.elapsed() < Duration::from_secs(20) {
            if status_problem(&m).await.is_some() {
                shown = Some(saved.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shown = shown.unwrap_or_else(|| panic!("{case}: no problem in status\n{}", m.log()));
        // The fault lasts 11 s: when it clears, the old quiet checks (after 1, 2, 4, 8 s) and
        // the push's retries (1, 2, 3, 4, 5 s apart) were both 4 s away (failing writes alone
        // are not an outage: only a write tells when they work again, the scout's every second).
        let lasts = 11;
        tokio::time::sleep(Duration::from_secs(lasts).saturating_sub(began.elapsed())).await;
        match case {
            "kill" => p.come_back().await,
            "500" => p.running.set_fail_writes(false),
            _ => proxy.set(Fault::Pass),
        }
        let cleared = std::time::Instant::now();
        assert!(
            eventually(Duration::from_secs(30), || async {
                platform_has(&c, &name, content.as_bytes()).await
                    && platform_has(&c, "start.txt", edit.as_bytes()).await
            })
            .await,
            "{case}: the saves did not go up\n{}",
            m.log()
        );
        let up = cleared.elapsed();
        eprintln!("{case}: a problem in status {shown:.2?} after the save; up {up:.2?} after the fault cleared");
        figures.push((case, shown, up));
    }
    // Targets: 2 s each; asserted with room for a loaded 2-core machine (before: 15 s to show
    // a stall, 11 s to show failing writes, about 4 s to be up after an 11 s fault, and 4 s
    // after 11 s of failing writes, which waited for the push's retry delay).
    for (case, shown, up) in figures {
        assert!(
            shown < Duration::from_secs(4),
            "{case}: shown after {shown:?}"
        );
        assert!(
            up < Duration::from_secs(3),
            "{case}: up {up:?} after the fault cleared"
        );
    }
}
