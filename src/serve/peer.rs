//! Who is on the other end of a loopback connection. The local server serves only the user who
//! runs it (the mount itself is owner-only): any other local user could otherwise read the
//! mirror and overwrite an app through `localhost:4321`, and the change would be pushed to the
//! account.
//!
//! The peer's socket is the one whose local address is the connection's remote address and whose
//! remote address is ours; its owner is the uid that opened it. Linux answers that by netlink
//! `sock_diag`: one exact lookup by the 4-tuple (`inet_diag_req_v2` without `NLM_F_DUMP`), a hash
//! lookup in the kernel, so telling who connected costs the same with 10 or 20,000 sockets open
//! (crates `netlink-packet-sock-diag` and `netlink-sys`). Decided: not `/proc/net/tcp`, which
//! lists every socket of the machine: read once per connection, another user holding thousands
//! of idle connections made each of the owner's connections wait seconds (issue 26). The table is
//! read only when netlink itself is unavailable (a kernel without `inet_diag`, a sandbox that
//! forbids netlink sockets), and then off the async threads.
//!
//! Where the owner can't be found (the peer already gone, a socket no process holds: orphaned or
//! in time-wait, which the kernel reports as uid 0), the answer is "unknown", and an unknown peer
//! is refused.
//!
//! Decided: only the uid that runs hyperclay is served, root's connections included only when
//! hyperclay runs as root. Root can read the mirror anyway, but a root service that fetches URLs
//! for others (a proxy, a monitoring agent) must not become a way in.
//!
//! Other systems (decided; docs/local-server.md, "Who may connect"):
//! - Windows: the machine's TCP table (`GetExtendedTcpTable`) names the process owning the
//!   peer's socket, and that process's token names its user, compared with ours by SID. The
//!   table lists every connection of the machine, so it is read off the async threads, as the
//!   Linux fallback is. A process that can't be opened (another user's, a protected one) is not
//!   ours: refused. A uid stands for the user in the counts and logs: the SID's last part.
//! - macOS: not told. A TCP connection there has no owner call (`LOCAL_PEERPID` is for Unix
//!   sockets); `proc_pidfdinfo` over each of this user's processes' sockets would find it, but
//!   it needs XNU's `socket_fdinfo` layout, which no maintained crate offers without Apple's SDK
//!   at build time, and an unsafe layout copied by hand, untested on a Mac, must not be what
//!   guards the server. So every loopback peer is served, with a warning in the log; on a Mac
//!   shared with other users, run without the server (`--no-serve`).

use std::net::{IpAddr, SocketAddr};
#[cfg(not(windows))]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_os = "linux")]
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
#[cfg(target_os = "linux")]
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
#[cfg(target_os = "linux")]
use netlink_packet_sock_diag::{SockDiagMessage, AF_INET, AF_INET6, IPPROTO_TCP, TCP_LISTEN};

/// The owner of the peer of a connection, worked out once when it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOwner(pub Option<u32>);

impl PeerOwner {
    /// Whether this peer may be served: it belongs to the user running this process.
    pub fn is_us(&self) -> bool {
        self.0 == Some(current_uid())
    }
}

/// The user running this process, as a number: the uid on Unix; on Windows the last part of the
/// user's SID (`u32::MAX` if it can't be read, which no peer matches).
pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        nix::unistd::getuid().as_raw()
    }
    #[cfg(windows)]
    {
        crate::os::windows::current_user().map_or(u32::MAX, |sid| sid.rid())
    }
}

/// Windows: the owner of the peer's socket is ours when its process runs as our user (see the
/// module's head). The TCP table is read on a blocking thread.
#[cfg(windows)]
pub async fn owner(ours: SocketAddr, peer: SocketAddr) -> PeerOwner {
    if !is_loopback(peer.ip()) {
        return PeerOwner(None);
    }
    let pid = tokio::task::spawn_blocking(move || crate::os::windows::tcp_owner_pid(peer, ours))
        .await
        .ok();
    match pid {
        Some(Ok(Some(pid))) => {
            let ours =
                tokio::task::spawn_blocking(move || crate::os::windows::process_is_ours(pid))
                    .await
                    .unwrap_or(false);
            PeerOwner(ours.then(current_uid))
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, %peer, "could not tell who connected");
            PeerOwner(None)
        }
        _ => PeerOwner(None),
    }
}

/// macOS (and any Unix without netlink): every loopback peer is taken for ours, with a warning
/// once (see the module's head).
#[cfg(all(unix, not(target_os = "linux")))]
pub async fn owner(_ours: SocketAddr, peer: SocketAddr) -> PeerOwner {
    if !is_loopback(peer.ip()) {
        return PeerOwner(None);
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("on this system the local server can't tell which local user connected: it answers every local user (on a computer shared with others, mount with --no-serve)");
    }
    PeerOwner(Some(current_uid()))
}

/// Why the kernel could not be asked.
#[cfg(target_os = "linux")]
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// No netlink `sock_diag` here: the caller falls back to `/proc/net/tcp`.
    #[error("netlink sock_diag is unavailable: {0}")]
    Unavailable(std::io::Error),
    #[error("netlink sock_diag answered something unexpected: {0}")]
    Protocol(String),
}

/// The uid owning the socket at `peer` that is connected to `ours`, by netlink, or from
/// `/proc/net/tcp` where netlink is unavailable. Quick with netlink (one syscall round trip);
/// the fallback reads the whole table, so it runs on a blocking thread.
#[cfg(target_os = "linux")]
pub async fn owner(ours: SocketAddr, peer: SocketAddr) -> PeerOwner {
    if !is_loopback(peer.ip()) {
        return PeerOwner(None);
    }
    match diag_owner(ours, peer) {
        Ok(uid) => PeerOwner(uid),
        Err(DiagError::Unavailable(e)) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "netlink sock_diag is unavailable: the local server reads /proc/net/tcp to tell who connected (slower with many sockets open)");
            }
            let uid = tokio::task::spawn_blocking(move || proc_owner(ours, peer))
                .await
                .ok()
                .flatten();
            PeerOwner(uid)
        }
        Err(e) => {
            tracing::debug!(error = %e, %peer, "could not tell who connected");
            PeerOwner(None)
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback() || is_mapped_loopback(ip)
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// The uid of the TCP socket whose local address is `peer` and remote address `ours`, by netlink:
/// `None` when there is no such socket or no process holds it.
#[cfg(target_os = "linux")]
pub fn diag_owner(ours: SocketAddr, peer: SocketAddr) -> Result<Option<u32>, DiagError> {
    match diag_lookup(peer, ours)? {
        // The kernel's lookup falls back to a listener on that port: not a peer, whoever's.
        Some(found) if found.state == TCP_LISTEN => Ok(None),
        // inode 0: no process holds the socket (orphaned, or a time-wait entry, whose uid the
        // kernel reports as 0): its owner is unknown, not root.
        Some(found) => Ok((found.inode != 0).then_some(found.uid)),
        // Gone, or a kernel whose sock_diag has no TCP handler (`inet_diag` not built), which
        // answers ENOENT for every socket: our own side of the connection tells which.
        None => match diag_lookup(ours, peer)? {
            Some(_) => Ok(None),
            None => Err(DiagError::Unavailable(std::io::Error::other(
                "sock_diag does not find this server's own socket",
            ))),
        },
    }
}

/// What the kernel says of a socket.
#[cfg(target_os = "linux")]
struct Found {
    uid: u32,
    inode: u32,
    state: u8,
}

/// One exact `sock_diag` lookup of the TCP socket whose local address is `local` and remote
/// address `remote`, or `None` when the kernel finds no such socket.
#[cfg(target_os = "linux")]
fn diag_lookup(local: SocketAddr, remote: SocketAddr) -> Result<Option<Found>, DiagError> {
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as KernelAddr};
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut header = NetlinkHeader::default();
    // A request without NLM_F_DUMP is the exact lookup (`inet_diag_find_one_icsk`).
    header.flags = NLM_F_REQUEST;
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: local.port(),
                destination_port: remote.port(),
                source_address: local.ip(),
                destination_address: remote.ip(),
                interface_id: 0,
                // All ones: "no cookie", match by the addresses alone (a zero cookie would have
                // to equal the socket's own and be refused with ESTALE).
                cookie: [0xff; 8],
            },
        })
        .into(),
    );
    message.finalize();
    let mut request = vec![0; message.buffer_len()];
    message.serialize(&mut request);

    let socket = Socket::new(NETLINK_SOCK_DIAG).map_err(DiagError::Unavailable)?;
    socket
        .send_to(&request, &KernelAddr::new(0, 0), 0)
        .map_err(DiagError::Unavailable)?;
    // The kernel answers while handling the send, so the answer is queued already: a
    // non-blocking read never waits (and can't hang the caller if that ever changed).
    socket
        .set_non_blocking(true)
        .map_err(|e| DiagError::Protocol(e.to_string()))?;
    let mut answer = vec![0u8; 8192];
    let size = socket
        .recv(&mut &mut answer[..], 0)
        .map_err(|e| DiagError::Protocol(format!("no answer: {e}")))?;
    let reply = <NetlinkMessage<SockDiagMessage>>::deserialize(&answer[..size])
        .map_err(|e| DiagError::Protocol(e.to_string()))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            let h = response.header;
            Ok(Some(Found {
                uid: h.uid,
                inode: h.inode,
                state: h.state,
            }))
        }
        // ENOENT: no such socket.
        NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => Ok(None),
        NetlinkPayload::Error(e) => Err(DiagError::Protocol(e.to_io().to_string())),
        other => Err(DiagError::Protocol(format!(
            "message type {}",
            other.message_type()
        ))),
    }
}

/// The uid owning the socket at `peer` connected to `ours`, from `/proc/net/tcp` (and `tcp6`):
/// the fallback when netlink is unavailable. Reads every socket of the machine.
#[cfg(target_os = "linux")]
pub fn proc_owner(ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        if let Some(uid) = find_owner(&text, peer, ours) {
            return Some(uid);
        }
    }
    None
}

/// The uid of the row whose local address is `local` and remote address `remote`, when a
/// process holds that socket (a nonzero inode).
#[cfg(target_os = "linux")]
fn find_owner(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (l, r, uid, inode) = (
            fields.get(1)?,
            fields.get(2)?,
            fields.get(7)?,
            fields.get(9)?,
        );
        (same_addr(parse_addr(l)?, local) && same_addr(parse_addr(r)?, remote) && *inode != "0")
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Equal addresses, an IPv4 address matching its v4-mapped IPv6 form.
#[cfg(target_os = "linux")]
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:10E1` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each 32-bit word
/// of the address in host byte order.
#[cfg(target_os = "linux")]
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::from(word(ip)?),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(target_os = "linux")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_proc_net_tcp_are_read() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:10E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:D431 0100007F:10E1 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n";
        let ours: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(find_owner(table, peer, ours), Some(1000));
            assert_eq!(find_owner(table, ours, peer), None);
        }
    }

    #[test]
    fn a_real_loopback_connection_is_ours_by_netlink_and_by_the_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(ours).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(diag_owner(ours, peer).unwrap(), Some(me), "netlink");
        assert_eq!(proc_owner(ours, peer), Some(me), "/proc/net/tcp");
        // The other way round it finds the server's own side of the connection.
        assert_eq!(diag_owner(peer, ours).unwrap(), Some(me));
        // A socket that does not exist: no owner (not an error).
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(diag_owner(ours, nobody).unwrap(), None);
        // A listener at the peer's address is not a peer.
        assert_eq!(diag_owner(nobody, ours).unwrap(), None);
        drop(client);
    }
}
