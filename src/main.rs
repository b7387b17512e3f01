//! The `hyperclay` command line.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use hyperclay::platform::{self, PlatformConfig};

/// `hyperclay --version`: the version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HYPERCLAY_BUILD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "hyperclay",
    version = VERSION,
    about = "The hyperclay.com platform mounted as a local folder"
)]
struct Cli {
    /// Log more: debug lines too, each naming the module that wrote it (RUST_LOG overrides the
    /// level).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the account at MOUNTPOINT (an empty folder) until Ctrl-C or `hyperclay unmount`.
    ///
    /// Never delete across: `rm`, `rmdir` and renames never delete anything on the platform.
    /// `rm` leaves the platform's copy (and a rename its old name) there, hidden here; `hyperclay
    /// status` counts them ("removed here, still on the platform").
    ///
    /// One mount owns a mirror: a second mount of the same mirror, or `hyperclay serve` of it,
    /// is refused in one line naming the running mount (`... is in use by the mount at PATH (pid
    /// N)`).
    Mount {
        mountpoint: PathBuf,
        /// The local mirror (offline copy and backups).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Return once the mount is ready, leaving it running in the background.
        #[arg(long)]
        daemon: bool,
        /// The local server's port (apps run and save at http://localhost:PORT).
        #[arg(long, default_value_t = 4321)]
        serve_port: u16,
        /// Do not run the local server.
        #[arg(long)]
        no_serve: bool,
        /// Keep MOUNTPOINT itself as a plain folder in sync instead of a FUSE mount: real files
        /// any program can use at disk speed, a watcher sending saves up. Used anyway where FUSE
        /// is missing. The folder holds the files, so --mirror does not apply.
        #[arg(long)]
        folder: bool,
        /// With --folder: rebuild the folder's sync state (.hyperclay/) after it was deleted.
        #[arg(long, requires = "folder")]
        rebuild: bool,
    },
    /// Run the apps in the mirror at http://localhost:PORT, with no account and no network.
    ///
    /// A mirror a mount is using is refused: saves kept there would never go up. Use the mount's
    /// own local server instead (`hyperclay mount` runs it, on --serve-port, 4321 by default;
    /// the refusal names its address, or says it runs none), which serves the same routes and
    /// sends saves up.
    Serve {
        /// The mirror to serve.
        #[arg(long)]
        mirror: Option<PathBuf>,
        #[arg(long, default_value_t = 4321)]
        port: u16,
    },
    /// End a mount: its pushes finish first. Also cleans up after a killed mount.
    Unmount { mountpoint: PathBuf },
    /// Whether sync is on, whether it is syncing, and the one problem to fix, if any.
    ///
    /// Also, per mount: one `conflict:` line per file changed here and on the platform in the
    /// last 24 hours, saying which side lost and where its copy is kept (in sites-versions/);
    /// "removed here, still on the platform: N" (deleted or renamed here, never deleted across);
    /// "deleted on the platform, kept here: N" (goes up again only if edited here). --json
    /// prints all of it for scripts, listing the paths (`conflicts`, `removed_here`,
    /// `deleted_there`).
    Status {
        /// One mount (all running mounts otherwise).
        mountpoint: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a file (or of each file in a folder) in a running mount: local backups and
    /// the platform's, newest first, each with an ID for `hyperclay restore`.
    Versions {
        /// A file or folder in the mount (or in its mirror).
        path: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make a file's content what a version holds, as a normal save through the mount: the
    /// content it replaces is kept as a version, and the restored one goes up at once.
    Restore {
        /// A file in the mount (or in its mirror).
        path: PathBuf,
        /// The version's ID, as `hyperclay versions` lists it.
        #[arg(
            long = "version",
            value_name = "ID",
            conflicts_with = "at",
            required_unless_present = "at"
        )]
        version_id: Option<String>,
        /// The content the file had at this time: 2026-11-01 09:30 (local time), 2026-11-01, or
        /// RFC 3339.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Pause (off) or resume (on) syncing; the mount keeps working on the mirror.
    Sync {
        /// on or off
        switch: String,
        mountpoint: Option<PathBuf>,
    },
    /// Sign in: opens the platform in the browser (or reads an API key with --api-key).
    Login {
        /// Read a platform API key (hcsk_...) from standard input instead.
        #[arg(long)]
        api_key: bool,
        /// Switch accounts without asking.
        #[arg(long)]
        force: bool,
    },
    /// Sign out: running mounts stop syncing; the mirror and its backups stay.
    Logout,
    /// Run the mount as a systemd user service: mounted at every login, restarted on failure.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish or powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (hyperclay.1 and one per command) into DIR.
    Man { dir: PathBuf },
    /// Serve the platform's sync API locally (SQLite), for development and tests.
    DevPlatform {
        /// Where the platform keeps its database.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// The account's API key (hcsk_...); a random one is made on first start otherwise.
        /// Better from HYPERCLAY_DEV_API_KEY or --api-key-file: a command line shows in `ps`.
        #[arg(long, env = "HYPERCLAY_DEV_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Reads the account's API key from this file (its first line).
        #[arg(long, conflicts_with = "api_key")]
        api_key_file: Option<PathBuf>,
        /// The account the platform's browser session is signed in as.
        #[arg(long, default_value = "dev")]
        username: String,
        /// The account has no paid plan: sync endpoints answer 402 payment_required.
        #[arg(long)]
        free: bool,
        /// The plan's site quota.
        #[arg(long)]
        max_sites: Option<u64>,
        /// `/local-auth` approves the device at once, with no button (for tests).
        #[arg(long)]
        auto_approve: bool,
        /// Serve exactly what hyperclay.com serves today (Part 1 of docs/sync-api.md).
        #[arg(long)]
        plain: bool,
        /// How long issued tokens stay valid, in seconds (10 days by default).
        #[arg(long, default_value_t = 10 * 24 * 3600)]
        token_ttl_secs: u64,
        /// Create a few sample sites (Hyperclay apps that save themselves), uploads and folders in
        /// an empty account.
        #[arg(long)]
        samples: bool,
    },
}

#[derive(Subcommand)]
enum ServiceAction {
    /// Write a systemd user unit for MOUNTPOINT (~/Hyperclay by default), named by it
    /// (hyperclay-home-me-Hyperclay.service), enable and start it.
    Install {
        mountpoint: Option<PathBuf>,
        /// The local mirror (offline copy and backups).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Only write the unit; do not enable or start it.
        #[arg(long)]
        no_start: bool,
        /// Keep MOUNTPOINT as a plain folder in sync (`hyperclay mount --folder`).
        #[arg(long)]
        folder: bool,
    },
    /// Stop the service of MOUNTPOINT (~/Hyperclay by default; it unmounts cleanly), disable it
    /// and remove its unit.
    Uninstall { mountpoint: Option<PathBuf> },
}

fn main() {
    // A panic is a bug: make sure it reaches the log, whatever happens to standard error.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "panic (a bug in hyperclay; please report it with this log)");
        default_hook(info);
    }));
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // The message may quote the platform or a file name: no terminal escapes.
        eprintln!(
            "hyperclay: {}",
            hyperclay::log::printable(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let verbose = cli.verbose;
    match cli.command {
        Command::Mount {
            mountpoint,
            mirror,
            daemon,
            serve_port,
            no_serve,
            folder,
            rebuild,
        } => {
            if daemon {
                return cli::mount::daemonize();
            }
            let log = hyperclay::config::log_path();
            hyperclay::log::init_with_file(&log, verbose)
                .with_context(|| format!("opening the log {}", log.display()))?;
            let serve_port = (!no_serve).then_some(serve_port);
            let runtime = runtime()?;
            let result = runtime.block_on(cli::mount::run(cli::mount::MountArgs {
                mountpoint,
                mirror,
                serve_port,
                folder,
                rebuild,
            }));
            // Everything that had to finish did (the pushes drained, the mount is gone): a
            // transfer a slow platform still trickles must not keep the process alive, as
            // dropping the runtime would (it waits for blocking work without end).
            runtime.shutdown_timeout(Duration::from_secs(2));
            result
        }
        Command::Serve { mirror, port } => {
            hyperclay::log::init_stderr(verbose);
            runtime()?.block_on(cli::serve::run(mirror, port))
        }
        Command::Unmount { mountpoint } => cli::unmount::run(&mountpoint),
        Command::Service { action } => match action {
            ServiceAction::Install {
                mountpoint,
                mirror,
                no_start,
                folder,
            } => cli::service::install(mountpoint, mirror, folder, !no_start),
            ServiceAction::Uninstall { mountpoint } => cli::service::uninstall(mountpoint),
        },
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "hyperclay", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => cli::man::write_pages(Cli::command(), &dir),
        Command::Login { api_key, force } => runtime()?.block_on(cli::login::login(api_key, force)),
        Command::Logout => runtime()?.block_on(cli::login::logout()),
        Command::Status { mountpoint, json } => {
            runtime()?.block_on(cli::status::status(mountpoint, json))
        }
        Command::Versions { path, json } => runtime()?.block_on(cli::history::versions(path, json)),
        Command::Restore {
            path,
            version_id,
            at,
        } => runtime()?.block_on(cli::history::restore(path, version_id, at)),
        Command::Sync { switch, mountpoint } => {
            let on = cli::status::parse_switch(&switch)?;
            runtime()?.block_on(cli::status::sync(on, mountpoint))
        }
        Command::DevPlatform {
            data,
            listen,
            api_key,
            api_key_file,
            username,
            free,
            max_sites,
            auto_approve,
            plain,
            token_ttl_secs,
            samples,
        } => {
            hyperclay::log::init_stderr(verbose);
            let mut config = PlatformConfig::new(
                data.unwrap_or_else(|| hyperclay::config::data_dir().join("dev-platform")),
            );
            config.listen = listen;
            config.api_key = match api_key_file {
                Some(file) => Some(
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading the API key from {}", file.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                ),
                None => api_key,
            };
            config.username = username;
            config.paid = !free;
            config.max_sites = max_sites;
            config.auto_approve = auto_approve;
            config.plain = plain;
            config.token_ttl = Duration::from_secs(token_ttl_secs);
            config.samples = samples;
            runtime()?.block_on(async move {
                let data_dir = config.data_dir.clone();
                let running = platform::start(config)
                    .await
                    .context("starting the dev platform")?;
                println!("hyperclay dev platform");
                println!("  HYPERCLAY_URL={}", running.url());
                println!("  HYPERCLAY_API_KEY={}", running.account.api_key);
                println!(
                    "  account: {}  data: {}",
                    running.account.username,
                    data_dir.display()
                );
                cli::signal().await;
                running.stop().await;
                Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
