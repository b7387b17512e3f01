//! Who is on the other end of a loopback connection. The local server serves only the user who
//! runs it (the mount itself is owner-only): any other local user could otherwise read the
//! mirror and overwrite an app through `localhost:4321`, and the change would be pushed to the
//! account.
//!
//! Linux tells a socket's owner in `/proc/net/tcp` (and `tcp6`): the peer's socket is the row whose
//! local address is the connection's remote address and whose remote address is ours; its `uid`
//! column is the owner. Where it can't be found (no /proc, the peer already gone), the answer is
//! "unknown", and an unknown peer is refused.
//!
//! Decided: only the uid that runs hyperclay is served, root's connections included only when
//! hyperclay runs as root. Root can read the mirror anyway, but a root service that fetches URLs
//! for others (a proxy, a monitoring agent) must not become a way in.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

/// The owner of the peer of a connection, worked out once when it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOwner(pub Option<u32>);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerOwner {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        let local = stream.io().local_addr().ok();
        let remote = *stream.remote_addr();
        PeerOwner(local.and_then(|local| uid_of_peer(local, remote)))
    }
}

impl PeerOwner {
    /// Whether this peer may be served: it belongs to the user running this process.
    pub fn is_us(&self) -> bool {
        self.0 == Some(nix::unistd::getuid().as_raw())
    }
}

/// The uid owning the socket at `peer` that is connected to `ours`.
pub fn uid_of_peer(ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    if !peer.ip().is_loopback() && !is_mapped_loopback(peer.ip()) {
        return None;
    }
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

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// The uid of the row whose local address is `local` and remote address `remote`.
fn find_owner(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (l, r, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (same_addr(parse_addr(l)?, local) && same_addr(parse_addr(r)?, remote))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Equal addresses, an IPv4 address matching its v4-mapped IPv6 form.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:10E1` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each 32-bit word
/// of the address in host byte order.
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
    fn a_real_loopback_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let uid = uid_of_peer(listener.local_addr().unwrap(), peer);
        assert_eq!(uid, Some(nix::unistd::getuid().as_raw()));
    }
}
