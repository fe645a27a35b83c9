//! Who is at each end of a connection, as the traced process sees it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Endpoints of the connection, as the traced process sees them, with the addresses
/// rendered once per connection and shared by its spans' attributes.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    local_ip: Arc<str>,
    remote_ip: Arc<str>,
}

impl Endpoints {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local,
            remote,
            local_ip: ip_string(&local).into(),
            remote_ip: ip_string(&remote).into(),
        }
    }

    pub fn local_ip(&self) -> &Arc<str> {
        &self.local_ip
    }

    pub fn remote_ip(&self) -> &Arc<str> {
        &self.remote_ip
    }

    /// Whether these are the endpoints `local` and `remote`.
    pub fn are(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.local == local && self.remote == remote
    }

    /// Whether the peer is on this host, as far as the addresses tell: a loopback
    /// address, or the local address itself.
    pub fn peer_on_this_host(&self) -> bool {
        let canonical = |a: &SocketAddr| a.ip().to_canonical();
        let peer = canonical(&self.remote);
        peer.is_loopback() || peer == canonical(&self.local)
    }
}

fn ip_string(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}

/// An address as the probes report it: family, 16 address bytes, port.
pub fn socket_addr(family: u8, addr: &[u8; 16], port: u16) -> SocketAddr {
    const AF_INET6: u8 = 10;
    let ip = if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    // A dual-stack server ([::]:port) sees IPv4 peers as ::ffff:a.b.c.d; the same-host
    // join compares with the client's plain IPv4 tuple.
    SocketAddr::new(ip.to_canonical(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
        let a = socket_addr(10, &mapped, 80);
        assert_eq!(a, "127.0.0.1:80".parse::<SocketAddr>().expect("addr"));
    }

    #[test]
    fn mapped_ipv4_prints_as_ipv4() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:80".parse().expect("addr");
        assert_eq!(ip_string(&a), "127.0.0.1");
    }

    #[test]
    fn a_peer_on_this_host_is_loopback_or_the_local_address() {
        let ends = |l: &str, r: &str| Endpoints::new(l.parse().unwrap(), r.parse().unwrap());
        assert!(ends("127.0.0.1:443", "127.0.0.1:5000").peer_on_this_host());
        assert!(ends("[::1]:443", "[::1]:5000").peer_on_this_host());
        assert!(ends("[::ffff:127.0.0.1]:443", "[::ffff:127.0.0.1]:5000").peer_on_this_host());
        assert!(ends("10.0.0.5:443", "10.0.0.5:5000").peer_on_this_host());
        assert!(!ends("10.0.0.5:443", "10.0.0.6:5000").peer_on_this_host());
    }
}
