//! Notices when the system's network changes (a new Wi-Fi, a cable, a VPN, a wake from sleep),
//! so an offline mount checks for the platform at once instead of at its next quiet check.
//! Linux reports links, addresses and routes on rtnetlink's multicast groups; the socket is read
//! through tokio's `AsyncFd`. No crate wraps just this (rtnetlink brings a whole netlink stack to
//! learn "something changed"), and nix gives the socket calls. Where the socket can't be opened
//! the quiet checks alone remain, as they do on other systems (macOS, Windows: not watched).

#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, OwnedFd};

#[cfg(target_os = "linux")]
use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
#[cfg(target_os = "linux")]
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// A counter that moves on every batch of network changes; `None` where they can't be watched.
#[cfg(not(target_os = "linux"))]
pub fn network_changes() -> Option<watch::Receiver<u64>> {
    None
}

/// A counter that moves on every batch of network changes; `None` where they can't be watched.
#[cfg(target_os = "linux")]
pub fn network_changes() -> Option<watch::Receiver<u64>> {
    match open() {
        Ok(fd) => {
            let (tx, rx) = watch::channel(0);
            tokio::spawn(forward(fd, tx));
            Some(rx)
        }
        Err(e) => {
            tracing::debug!(error = %e, "network changes can't be watched; relying on quiet checks");
            None
        }
    }
}

#[cfg(target_os = "linux")]
fn open() -> std::io::Result<AsyncFd<OwnedFd>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV6_ROUTE;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups as u32))?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, which alone owns it until dropped: the
    // descriptor stays open and the same for the AsyncFd's whole life.
    Ok(unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?)
}

/// Reads every message as it comes (their content does not matter: any change is a reason to
/// look) and counts each batch, until nobody listens.
#[cfg(target_os = "linux")]
async fn forward(fd: AsyncFd<OwnedFd>, tx: watch::Sender<u64>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut ready = tokio::select! {
            ready = fd.readable() => match ready {
                Ok(ready) => ready,
                Err(_) => return,
            },
            _ = tx.closed() => return,
        };
        loop {
            match recv(fd.get_ref().as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(_) => continue,
                // The kernel dropped messages for a full buffer: still a change.
                Err(Errno::ENOBUFS) | Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    ready.clear_ready();
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stopped watching network changes");
                    return;
                }
            }
        }
        tx.send_modify(|n| *n += 1);
    }
}

/// Resolves on the next change; never where changes can't be watched.
pub async fn changed(rx: &mut Option<watch::Receiver<u64>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}
