//! `hyperclay serve`: the local server alone, over a mirror, with no account and no network.
//! Saves are kept in the mirror with their versions; the next mount sends them up. A mirror a
//! mount is using is refused: its saves would never go up (the mount serves the same routes).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use hyperclay::cache::Mirror;
use hyperclay::config;
use hyperclay::serve::{self, SaveTo};

use super::mirror_lock::MirrorLock;

pub async fn run(mirror: Option<PathBuf>, port: u16) -> anyhow::Result<()> {
    let dir = mirror.unwrap_or_else(config::default_mirror);
    // One owner per mirror, from before anything in it is opened until the process ends.
    let lock = MirrorLock::acquire(&dir, None)?;
    let mirror = Arc::new(
        Mirror::open(&dir).with_context(|| format!("opening the mirror {}", dir.display()))?,
    );
    let server = serve::start(mirror.clone(), SaveTo::Mirror, port)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; another port: --port N"))?;
    lock.set_apps(&server.url());
    println!(
        "hyperclay: serving {} at {}",
        mirror.root().display(),
        server.url()
    );
    super::signal().await;
    server.stop();
    Ok(())
}
