//! `hyperclay mount MOUNTPOINT`: the account as a folder, until Ctrl-C, SIGTERM or
//! `hyperclay unmount`. The mount answers from the index at once; the platform is reached in the
//! background (the mount starts offline too). The FUSE mount is Linux's: elsewhere the plain
//! folder is kept.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hyperclay::config;
use hyperclay::credentials::{self, CredentialsError, Stored};
use hyperclay::fs;
#[cfg(target_os = "linux")]
use hyperclay::fs::MountFs;
use hyperclay::remote::{Client, Credential};
#[cfg(target_os = "linux")]
use hyperclay::sync::boot;
use hyperclay::sync::boot::{Boot, Running};
use hyperclay::sync::listed::Listing;
use hyperclay::sync::{self, Engine};
use hyperclay::sync::{FrontDoor, Settings};

use super::mirror_lock::MirrorLock;
use super::pidfile;

/// Set in the child of `--daemon`: print `ready` on stdout once mounted, then detach from it.
pub const READY_ENV: &str = "HYPERCLAY_NOTIFY_READY";

pub struct MountArgs {
    pub mountpoint: PathBuf,
    pub mirror: Option<PathBuf>,
    /// The local server's port; `None` runs no server.
    pub serve_port: Option<u16>,
    /// Keep the folder itself in sync (no FUSE): `--folder`.
    pub folder: bool,
    /// A plain folder whose program state is gone is rebuilt: `--rebuild`.
    pub rebuild: bool,
}

/// Whether the mirror holds any of the user's files (anything but the program's own folder and
/// the backups).
fn mirror_has_files(root: &std::path::Path) -> bool {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name();
            name != ".hyperclay" && name != hyperclay::cache::VERSIONS_DIR
        })
}

/// What the mount signs in with. Not signed in: the mount still works locally, and status says
/// to sign in.
fn credential(address: &config::PlatformAddress) -> anyhow::Result<(Credential, Option<Stored>)> {
    match credentials::resolve(address) {
        Ok((credential, stored)) => Ok((credential, stored)),
        Err(CredentialsError::SignedOut) => {
            tracing::warn!("not signed in: the mount works locally; run `hyperclay login` to sync");
            Ok((Credential::ApiKey(String::new()), None))
        }
        Err(e) => Err(e.into()),
    }
}

fn seconds_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Keeps a signed-in token fresh: one older than a day is renewed (10 more days), checked hourly.
async fn refresh_tokens(client: Arc<Client>, mut stored: Stored) {
    let every = seconds_from_env("HYPERCLAY_REFRESH_CHECK_SECS", 3600);
    let after = seconds_from_env("HYPERCLAY_REFRESH_AFTER_SECS", 24 * 3600);
    loop {
        let age = stored
            .obtained()
            .map(|t| (chrono::Utc::now() - t).num_seconds().max(0) as u64)
            .unwrap_or(u64::MAX);
        if age >= after.as_secs() {
            match client.refresh_token().await {
                Ok(fresh) => {
                    stored.secret = fresh.token;
                    stored.obtained_at = hyperclay::protocol::format_time(chrono::Utc::now());
                    match credentials::store(&stored) {
                        Ok(()) => {
                            tracing::info!(expires = %fresh.expires_at, "renewed the sign-in")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "renewed the sign-in but could not store it")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the sign-in"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The backups' cleanup (product.md: per file, the newest 20 plus everything from the last 60
/// days) at start and then daily.
async fn clean_versions(root: std::path::PathBuf) {
    let every = Duration::from_secs(24 * 3600);
    loop {
        let dir = root.clone();
        let now = chrono::Utc::now();
        match tokio::task::spawn_blocking(move || {
            hyperclay::cache::versions::prune_all(&dir, now)
        })
        .await
        {
            Ok(0) => tracing::debug!("backups cleanup: nothing to remove"),
            Ok(n) => tracing::info!(
                removed = n,
                "backups cleanup: removed old versions (kept per file the newest 20 and the last 60 days)"
            ),
            Err(e) => tracing::warn!(error = %e, "backups cleanup failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Where FUSE's device lives. Without it nothing can be mounted.
#[cfg(target_os = "linux")]
const DEV_FUSE: &str = "/dev/fuse";

/// Why FUSE can't mount here: no FUSE mount of ours but Linux's.
#[cfg(not(target_os = "linux"))]
fn fuse_missing() -> Option<String> {
    Some("this system has no FUSE mount of ours".into())
}

/// Why FUSE can't mount here, if it can't: no device, or no `fusermount3` to mount with.
#[cfg(target_os = "linux")]
fn fuse_missing() -> Option<String> {
    if !Path::new(DEV_FUSE).exists() {
        return Some(format!("there is no {DEV_FUSE}"));
    }
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").is_file())
    });
    (!on_path).then(|| "there is no fusermount3 (package fuse3)".to_string())
}

/// How the account is kept locally.
enum Door {
    /// The FUSE mount over the mirror.
    #[cfg(target_os = "linux")]
    Mount {
        mount_fs: Arc<MountFs>,
        mounted: fs::Mounted,
    },
    /// The folder itself is the mirror, watched.
    Folder(hyperclay::folder::FolderSync),
}

/// Where a plain folder's program state was: a folder synced before keeps a note outside itself,
/// so that its state deleted from inside is told apart from a first start.
fn folder_note(folder: &Path) -> PathBuf {
    let key = hyperclay::protocol::checksum(folder.as_os_str().as_encoded_bytes());
    config::data_dir().join("folders").join(&key.as_str()[..16])
}

/// Refuses to start a plain folder whose program state was deleted (unless rebuilding is asked
/// for): starting afresh would bring back every file deleted here from the platform.
fn check_folder_state(folder: &Path, rebuild: bool) -> anyhow::Result<()> {
    let index = folder.join(hyperclay::cache::INDEX_DIR).join("index.db");
    if index.exists() || !folder_note(folder).exists() || rebuild {
        return Ok(());
    }
    bail!(
        "{} is gone: it held this folder's sync state (it was deleted or moved). Nothing is lost, but files deleted here before may come back from the platform; to rebuild it from the folder and the platform, run `hyperclay mount {} --folder --rebuild`",
        index.display(),
        folder.display()
    )
}

fn remember_folder(folder: &Path) {
    let note = folder_note(folder);
    if let Some(dir) = note.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&note, folder.as_os_str().as_encoded_bytes());
}

pub async fn run(args: MountArgs) -> anyhow::Result<()> {
    let mountpoint = super::mount_path(&args.mountpoint);
    // The plain folder when asked for, or where FUSE can't mount (said in one line).
    let folder_why = match (args.folder, fuse_missing()) {
        (true, _) => Some("asked for with --folder".to_string()),
        (false, Some(why)) => {
            println!(
                "hyperclay: FUSE is missing here ({why}): keeping {} as a plain folder in sync instead (for the FUSE mount: `sudo apt install fuse3` and `sudo modprobe fuse`, or in a container `--device /dev/fuse --cap-add SYS_ADMIN`)",
                mountpoint.display()
            );
            Some(format!("FUSE is missing: {why}"))
        }
        (false, None) => None,
    };
    let folder = folder_why.is_some();
    let mirror_dir = if folder {
        if args.mirror.is_some() {
            bail!("--mirror does not go with a plain folder: the folder itself holds the files (and its program state in .hyperclay/)");
        }
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("creating the folder {}", mountpoint.display()))?;
        check_folder_state(&mountpoint, args.rebuild)?;
        mountpoint.clone()
    } else {
        #[cfg(target_os = "linux")]
        fs::check_mountpoint(&mountpoint)?;
        args.mirror.unwrap_or_else(config::default_mirror)
    };
    let address = config::platform_address()?;
    let url = address.url.clone();
    let (credential, stored) = credential(&address)?;
    // A key from the environment is fixed there: `hyperclay login` would not replace it.
    let key_from_env =
        stored.is_none() && matches!(&credential, Credential::ApiKey(k) if !k.is_empty());
    // One owner per mirror, from before anything in it is opened until the process ends.
    let lock = MirrorLock::acquire(&mirror_dir, Some(&mountpoint))?;
    let (sink, notices) = fs::notice_channel();
    let mut settings = Settings::from_env();
    if folder {
        settings.front_door = FrontDoor::Folder;
    }
    let engine = Boot::new(&mirror_dir, &url, credential)
        .settings(settings)
        .notices(sink)
        .open()?;
    let mirror = engine.mirror.clone();
    let cleanup = tokio::spawn(clean_versions(mirror.versions_root()));
    // An empty index over a mirror that holds files: it was lost (or damaged and set aside). A
    // plain folder's first start adopts what it holds.
    let index_lost = engine.index.is_empty()
        && mirror_has_files(mirror.root())
        && (!folder || folder_note(&mountpoint).exists());
    let client = engine.client.clone();
    client.set_url_source(address.source.to_string());
    if let Ok(secs) = std::env::var("HYPERCLAY_PROGRESS_TIMEOUT_SECS") {
        // A test knob: the hostile-platform tests trickle bytes slower than this.
        if let Ok(secs) = secs.parse::<u64>() {
            client.set_progress_timeout(Duration::from_secs(secs.max(1)));
        }
    }
    let refresher = stored
        .filter(|s| s.kind == "token")
        .map(|s| tokio::spawn(refresh_tokens(client.clone(), s)));
    if let Some(why) = &folder_why {
        engine
            .status
            .set_mode(format!("a plain folder kept in sync ({why})"));
    }
    if key_from_env {
        engine.status.set_credentials_refused(
            "The platform refused the API key in HYPERCLAY_API_KEY: fix the variable (or unset it and sign in with `hyperclay login`). The mount keeps working locally.".to_string(),
        );
    }
    let door = if folder {
        // Watching first, then the whole folder compared: nothing changed between is missed.
        let watching = hyperclay::folder::FolderSync::start(engine.clone())?;
        let compared = watching.ask_compare();
        tokio::task::spawn_blocking(move || compared.recv())
            .await?
            .ok();
        remember_folder(&mountpoint);
        drop(notices);
        Door::Folder(watching)
    } else {
        #[cfg(target_os = "linux")]
        {
            // What changed in the mirror while no mount ran is settled before the mount serves anyone.
            match boot::compare(&engine).await {
                Ok(()) => {}
                // Nothing is lost by going on: the files stay in the mirror, and the next start looks again.
                Err(e) => tracing::warn!(error = %e, "could not compare the mirror with the index"),
            }
            let mount_fs = Arc::new(MountFs::new(engine.clone()));
            let mounted = fs::mount(
                mount_fs.clone(),
                &mountpoint,
                notices,
                tokio::runtime::Handle::current(),
            )?;
            Door::Mount { mount_fs, mounted }
        }
        // Without FUSE the folder is kept: `fuse_missing()` is always `Some` here.
        #[cfg(not(target_os = "linux"))]
        unreachable!("no FUSE mount on this system")
    };
    if index_lost {
        let message = "The index was lost or damaged and is rebuilt from the mirror and the platform: files deleted here before may come back from the platform (nothing is lost).";
        tracing::warn!("{message}");
        engine.status.report(
            hyperclay::sync::status::ProblemKind::Other,
            None,
            message.to_string(),
        );
    }
    pidfile::write(&mountpoint).context("writing the pid file")?;
    let control = hyperclay::control::serve(engine.clone(), mountpoint.clone())
        .context("opening the control socket")?;
    let running = Running::follow(engine.clone());
    // Why the local server asked for does not run, to say with "mounted".
    let mut no_server = None;
    let server = match args.serve_port {
        Some(port) => match hyperclay::serve::start(
            mirror.clone(),
            hyperclay::serve::SaveTo::Engine(engine.clone()),
            port,
        )
        .await
        {
            Ok(server) => {
                tracing::info!(url = %server.url(), "serving the apps");
                lock.set_apps(&server.url());
                Some(server)
            }
            Err(e) => {
                // The mount matters more than the server: go on without it.
                let why = format!("{e:#}; another port: --serve-port N, or none: --no-serve");
                tracing::warn!(error = %why, "the local server could not start; the mount works without it");
                no_server = Some(why);
                None
            }
        },
        None => None,
    };
    // Registered before the wait: a stop asked for while the account is listed is a clean stop.
    let mut stop_signal = Box::pin(super::signal());
    let stopped_early = tokio::select! {
        _ = &mut stop_signal => true,
        listing = first_listing(&engine) => {
            let how = if folder { "kept in sync at" } else { "mounted at" };
            tracing::info!(mountpoint = %mountpoint.display(), platform = %url, mirror = %mirror.root().display(), folder, "mounted");
            println!("hyperclay: {url} {how} {}", mountpoint.display());
            if let Listing::NotListed(why) = listing {
                // The reason may quote the platform's answer: no terminal escapes.
                let why = hyperclay::protocol::printable(why.trim_end_matches('.'), 300);
                tracing::warn!("not listed yet: {why}; the mount shows what the mirror holds");
                println!("  not listed yet: {why}; showing what the mirror holds");
            }
            if folder {
                println!("  a plain folder: edit it with any program; backups in {}  log: {}", mirror.versions_root().display(), config::log_path().display());
            } else {
                println!(
                    "  mirror: {}  log: {}",
                    mirror.root().display(),
                    config::log_path().display()
                );
            }
            if let Some(server) = &server {
                println!("  apps: {}", server.url());
            }
            if let Some(why) = &no_server {
                println!("  apps: not served: {why}");
            }
            false
        }
    };
    if !stopped_early {
        announce_ready();
        #[cfg(target_os = "linux")]
        tell_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("mounted at {}", mountpoint.display())),
        ]);
        match &door {
            #[cfg(target_os = "linux")]
            Door::Mount { mounted, .. } => tokio::select! {
                _ = &mut stop_signal => {}
                _ = ended(mounted) => tracing::info!("the mount was removed from outside"),
            },
            Door::Folder(_) => (&mut stop_signal).await,
        }
    }
    #[cfg(target_os = "linux")]
    tell_systemd(&[sd_notify::NotifyState::Stopping]);
    // Finish what was saved before the mount goes away.
    if let Some(server) = server {
        server.stop();
    }
    let unmounted: anyhow::Result<()> = match door {
        #[cfg(target_os = "linux")]
        Door::Mount { mount_fs, mounted } => {
            mount_fs.save_all();
            let _ = engine.drain(Duration::from_secs(60)).await;
            // The kernel side goes next: from then on no request comes in. Whatever was saved in
            // the meantime (a save acknowledged after the stop signal) is finished like the
            // ones before.
            let unmounted = tokio::task::spawn_blocking(move || mounted.unmount()).await?;
            mount_fs.save_all();
            unmounted.map_err(anyhow::Error::from)
        }
        Door::Folder(watching) => {
            // What was saved up to now is looked at before the pushes drain.
            tokio::task::spawn_blocking(move || watching.stop()).await?;
            Ok(())
        }
    };
    running.stop(Duration::from_secs(60)).await;
    if let Some(r) = refresher {
        r.abort();
    }
    cleanup.abort();
    pidfile::remove(&mountpoint);
    control.abort();
    let _ = std::fs::remove_file(hyperclay::control::socket_for(&mountpoint));
    unmounted.with_context(|| format!("unmounting {}", mountpoint.display()))?;
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    Ok(())
}

/// Waits for the account's first listing (at once on a remount), at most FIRST_LISTING_LIMIT
/// (HYPERCLAY_FIRST_LISTING_SECS in tests).
async fn first_listing(engine: &Engine) -> Listing {
    let limit = seconds_from_env(
        "HYPERCLAY_FIRST_LISTING_SECS",
        sync::listed::FIRST_LISTING_LIMIT.as_secs(),
    );
    match tokio::time::timeout(limit, engine.first_listing.settled()).await {
        Ok(listing) => listing,
        Err(_) => {
            let why = format!(
                "the platform did not list the account within {} s",
                limit.as_secs()
            );
            engine.first_listing.not_listed(&why);
            engine.first_listing.now()
        }
    }
}

#[cfg(target_os = "linux")]
async fn ended(mounted: &fs::Mounted) {
    while !mounted.has_ended() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Under systemd (`Type=notify`, NOTIFY_SOCKET set): READY=1 once the account is listed, the
/// moment `--daemon` returns. Elsewhere nothing is sent.
#[cfg(target_os = "linux")]
fn tell_systemd(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not tell systemd the mount's state");
    }
}

/// In a `--daemon` child: tell the parent the mount is ready, then stop writing to its pipes.
fn announce_ready() {
    if std::env::var_os(READY_ENV).is_none() {
        return;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the process's own standard descriptors; `null` outlives the calls.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
    #[cfg(windows)]
    let _ = hyperclay::os::windows::stdio_to_null();
}

/// `--daemon`: runs the mount in a detached child and returns once it is ready.
pub fn daemonize() -> anyhow::Result<()> {
    use std::io::BufRead;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(&args)
        .env(READY_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    // SAFETY: setsid is async-signal-safe; it detaches the child from the terminal's session.
    #[cfg(unix)]
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    #[cfg(windows)]
    std::os::windows::process::CommandExt::creation_flags(
        &mut command,
        hyperclay::os::windows::DETACHED,
    );
    let mut child = command.spawn().context("starting the mount process")?;
    let stdout = child.stdout.take().context("the mount's stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if line.trim() == "ready" {
            return Ok(());
        }
        println!("{line}");
    }
    let status = child.wait()?;
    bail!(
        "the mount did not start ({status}); see the messages above and {}",
        config::log_path().display()
    )
}
