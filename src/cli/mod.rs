//! The commands' edges: they assemble the library's parts and turn failures into one-line,
//! actionable messages (anyhow with context).

pub mod history;
pub mod login;
pub mod man;
pub mod mirror_lock;
pub mod mount;
pub mod pidfile;
pub mod serve;
#[cfg(target_os = "linux")]
pub mod service;
#[cfg(not(target_os = "linux"))]
#[path = "service_elsewhere.rs"]
pub mod service;
pub mod status;
pub mod unmount;

/// Waits for Ctrl-C or SIGTERM (or a stop asked over the control socket).
#[cfg(unix)]
pub async fn signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = hyperclay::control::stop_requested() => {}
        }
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hyperclay::control::stop_requested() => {}
    }
}

/// Waits for Ctrl-C or Ctrl-Break, the console closing, a log-off or shutdown (Windows' nearest
/// to SIGTERM; Windows gives a closing console about 5 s), or a stop asked over the control pipe
/// (`hyperclay unmount`).
#[cfg(windows)]
pub async fn signal() {
    use tokio::signal::windows;
    // One console event; never, where it can't be listened for.
    macro_rules! event {
        ($listen:expr) => {
            async {
                if let Ok(mut events) = $listen {
                    if events.recv().await.is_some() {
                        return;
                    }
                }
                std::future::pending::<()>().await
            }
        };
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = event!(windows::ctrl_break()) => {}
        _ = event!(windows::ctrl_close()) => {}
        _ = event!(windows::ctrl_shutdown()) => {}
        _ = event!(windows::ctrl_logoff()) => {}
        _ = hyperclay::control::stop_requested() => {}
    }
}

/// A mount point as every command names it: absolute, with no `.` part and no trailing `/`, so
/// that `~/Hyperclay/` and `~/Hyperclay` are the same mount (its pid file and control socket are
/// found by this path).
pub fn mount_path(path: &std::path::Path) -> std::path::PathBuf {
    hyperclay::fs::absolute(path).components().collect()
}
