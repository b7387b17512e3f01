//! The commands' edges: they assemble the library's parts and turn failures into one-line,
//! actionable messages (anyhow with context).

pub mod history;
pub mod login;
pub mod man;
pub mod mirror_lock;
pub mod mount;
pub mod pidfile;
pub mod serve;
pub mod service;
pub mod status;
pub mod unmount;

/// Waits for Ctrl-C or SIGTERM.
pub async fn signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A mount point as every command names it: absolute, with no `.` part and no trailing `/`, so
/// that `~/Hyperclay/` and `~/Hyperclay` are the same mount (its pid file and control socket are
/// found by this path).
pub fn mount_path(path: &std::path::Path) -> std::path::PathBuf {
    hyperclay::fs::absolute(path).components().collect()
}
