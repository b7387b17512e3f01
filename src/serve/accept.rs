//! The local server's own accept loop (instead of `axum::serve`), so that who connected is known
//! before anything is read, and each connection's cost is bounded (issue 26):
//!
//! - the peer's owner is looked up once per connection, by the socket (`peer`: one netlink
//!   lookup, not a read of every socket of the machine), on the connection's own task, never in
//!   the loop that accepts;
//! - a connection of another user (or of an unknown one) is reset at once, before a byte of it is
//!   read: it holds no memory, no task and no file descriptor of ours afterwards (a reset, not a
//!   close, so no orphaned socket waits in FIN-WAIT for a peer that never answers);
//! - the owner's connections: at most `MAX_CONNECTIONS_PER_UID` at once, each sending a request
//!   head within `HEADER_READ_TIMEOUT` of opening or of its previous answer.
//!
//! Stopping the server (`RunningServer::stop`) drops the loop and with it every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::peer::{self, PeerOwner};

/// Connections of one uid held at once. Only the user running the server keeps connections
/// (everyone else's are reset), so this bounds what that user's own programs can hold: a browser
/// keeps at most 6 per host and 256 in all (Chromium's limits), so 256 leaves room for a few
/// browsers, tools and scripts, while 256 descriptors stay far below the usual limit of 1,024
/// per process that the mount needs for its own files.
pub const MAX_CONNECTIONS_PER_UID: usize = 256;

/// Time for a connection to send a complete request head: hyper starts this clock when the
/// connection is opened and again after each answer, so it is also how long a kept-alive
/// connection may sit idle between requests. A page's requests come at once over loopback; a
/// browser whose idle connection was closed opens another (and retries a request that met the
/// close). Decided: one clock for both, as hyper keeps it; 10 s, like Apache's `KeepAliveTimeout`
/// (5 s) and well under nginx's header timeout (60 s). A live-sync stream is not idle: it is in
/// its answer, and pings every 30 s.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the kernel holds for us before we accept them (capped by `net.core.somaxconn`,
/// 4096 by default). Another user connecting as fast as it can fills a queue of 1,024 while this
/// process waits its turn for a core on a busy machine, and a connection that finds the queue full
/// waits a second for its SYN to be sent again, the owner's too; a deeper queue rides out those
/// bursts. (Nothing stops a user from filling any queue on purpose: what it costs is kept small.)
const LISTEN_BACKLOG: u32 = 4096;

/// After an error from `accept` (out of descriptors: EMFILE), wait this long before the next, so
/// the loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How often a refused connection is logged (with the count since the last line): a flood of
/// them must not flood the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Open connections per uid, and the last refusal logged.
#[derive(Default)]
struct Connections {
    per_uid: Mutex<HashMap<u32, usize>>,
    refusals: Mutex<Refusals>,
}

#[derive(Default)]
struct Refusals {
    logged_at: Option<Instant>,
    since: u64,
}

/// One of a uid's connection slots, given back when the connection ends.
struct Slot {
    connections: Arc<Connections>,
    uid: u32,
}

impl Connections {
    fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_uid.entry(uid).or_default();
        if *count >= MAX_CONNECTIONS_PER_UID {
            return None;
        }
        *count += 1;
        Some(Slot {
            connections: self.clone(),
            uid,
        })
    }

    fn refused(&self, peer: SocketAddr, owner: PeerOwner, why: &'static str) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.since += 1;
        if r.logged_at
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(%peer, peer_uid = ?owner.0, refused = r.since, "{why}");
            r.logged_at = Some(Instant::now());
            r.since = 0;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_uid = self
            .connections
            .per_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_uid.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                per_uid.remove(&self.uid);
            }
        }
    }
}

/// The listening socket, with `LISTEN_BACKLOG` (as `TcpListener::bind`, which takes 1,024).
/// `SO_REUSEADDR` on Unix only (a restart binds at once past old connections in TIME-WAIT): on
/// Windows it would let another socket bind the same port over ours, and a taken port would not
/// be told.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until dropped. Each runs on a task of its own, owned by the loop: stopping
/// the loop ends them all.
pub async fn run(listener: TcpListener, app: Router) {
    let connections = Arc::new(Connections::default());
    let us = peer::current_uid();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    tasks.spawn(connection(stream, remote, us, app.clone(), connections.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the local server could not accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reaps finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Resets a connection: no FIN-WAIT left behind for a peer that never reads.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    us: u32,
    app: Router,
    connections: Arc<Connections>,
) {
    let Ok(local) = stream.local_addr() else {
        return reset(stream);
    };
    let owner = peer::owner(local, remote).await;
    if owner.0 != Some(us) {
        connections.refused(
            remote,
            owner,
            "refused local-server connections from another user",
        );
        return reset(stream);
    }
    let Some(_slot) = connections.take(us) else {
        connections.refused(
            remote,
            owner,
            "refused a local-server connection: too many open at once",
        );
        return reset(stream);
    };
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        // The guard checks it again on every request (`guard`).
        request.extensions_mut().insert(ConnectInfo(owner));
        app.clone().oneshot(request)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, %remote, "a local-server connection ended with an error");
    }
}
