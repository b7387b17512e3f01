//! The `hyperclay` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyperclay::platform::{self, PlatformConfig};

#[derive(Parser)]
#[command(
    name = "hyperclay",
    version,
    about = "The hyperclay.com platform mounted as a local folder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the platform's sync API locally (SQLite), for development and tests.
    DevPlatform {
        /// Where the platform keeps its database.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// The account's API key (hcsk_...); a random one is made on first start otherwise.
        #[arg(long)]
        api_key: Option<String>,
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
        /// Create a few sample sites, uploads and folders in an empty account.
        #[arg(long)]
        samples: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::DevPlatform {
            data,
            listen,
            api_key,
            username,
            free,
            max_sites,
            auto_approve,
            plain,
            token_ttl_secs,
            samples,
        } => {
            let mut config = PlatformConfig::new(
                data.unwrap_or_else(|| hyperclay::config::data_dir().join("dev-platform")),
            );
            config.listen = listen;
            config.api_key = api_key;
            config.username = username;
            config.paid = !free;
            config.max_sites = max_sites;
            config.auto_approve = auto_approve;
            config.plain = plain;
            config.token_ttl = Duration::from_secs(token_ttl_secs);
            config.samples = samples;
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
            wait_for_signal().await?;
            running.stop().await;
            Ok(())
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
