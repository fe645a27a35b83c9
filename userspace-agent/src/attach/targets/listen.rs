//! Listening TCP sockets and the processes holding them.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::TargetError;
use crate::process::proc_files::proc_path;

/// `st` value of a listening socket (`TCP_LISTEN`).
const TCP_LISTEN: u8 = 0x0A;

/// A listening socket from `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenSocket {
    pub addr: IpAddr,
    pub port: u16,
    /// Socket inode, as in the `socket:[INODE]` fd links.
    pub inode: u64,
}

/// The listening sockets in a `/proc/net/tcp` or `/proc/net/tcp6` text. Other
/// states, the header and malformed lines are skipped.
///
/// Line format: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout
/// inode ...`, addresses as `HEX_IP:HEX_PORT`. The IP is printed as 32-bit words in
/// host byte order, so its bytes are recovered with `to_ne_bytes`.
pub fn parse_net_tcp(text: &str) -> Vec<ListenSocket> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ListenSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    if state != TCP_LISTEN {
        return None;
    }
    let (ip_hex, port_hex) = fields.get(1)?.split_once(':')?;
    Some(ListenSocket {
        addr: parse_ip(ip_hex)?,
        port: u16::from_str_radix(port_hex, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let chunk = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(chunk, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// The inode in an fd link target `socket:[INODE]`.
pub fn parse_socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inodes of the sockets listening on `port` (any address, IPv4 and IPv6) in the
/// agent's network namespace.
pub(super) fn listening_inodes(port: u16) -> Result<HashSet<u64>, TargetError> {
    let mut inodes = HashSet::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            // No tcp6 when IPv6 is disabled.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(TargetError::Io {
                    path: path.into(),
                    source,
                });
            }
        };
        inodes.extend(
            parse_net_tcp(&text)
                .into_iter()
                // Inode 0: the socket is being torn down, nobody owns it.
                .filter(|s| s.port == port && s.inode != 0)
                .map(|s| s.inode),
        );
    }
    Ok(inodes)
}

/// The processes among `pids` with an fd on one of `inodes`; a listening socket
/// is usually shared (forked workers), so all holders are returned. Processes
/// that vanish or whose fds are unreadable are skipped.
pub(super) fn pids_holding(inodes: &HashSet<u64>, pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|&pid| holds_any(pid, inodes))
        .collect()
}

fn holds_any(pid: u32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = fs::read_dir(proc_path(pid, "fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|target| parse_socket_inode(target.to_str()?))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1
   3: garbage
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D431 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn ipv4_listeners() {
        let socks = parse_net_tcp(TCP);
        assert_eq!(socks.len(), 2, "header, established and garbage skipped");
        assert_eq!((socks[0].port, socks[0].inode), (8080, 31337));
        assert_eq!((socks[1].port, socks[1].inode), (80, 4242));
        assert_eq!(socks[1].addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        #[cfg(target_endian = "little")]
        assert_eq!(socks[0].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn ipv6_listeners() {
        let socks = parse_net_tcp(TCP6);
        assert_eq!(socks.len(), 2, "TIME_WAIT skipped");
        assert_eq!((socks[0].port, socks[0].inode), (8081, 777));
        assert_eq!((socks[1].port, socks[1].inode), (443, 0));
        assert_eq!(socks[1].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        #[cfg(target_endian = "little")]
        assert_eq!(socks[0].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn bad_lines() {
        assert!(parse_net_tcp("").is_empty());
        assert!(parse_net_tcp("0: 0100007F 00000000:0000 0A 0 0 0 0 0 1").is_empty());
        assert!(parse_net_tcp("0: 0100007F:XYZ 00000000:0000 0A 0 0 0 0 0 1").is_empty());
        assert!(parse_net_tcp("0: 01007F:0050 00000000:0000 0A 0 0 0 0 0 1").is_empty());
        assert!(parse_net_tcp("0: 0100007F:0050 00000000:0000 0A 0 0 0 0 0").is_empty());
        assert_eq!(
            parse_net_tcp("0: 0100007F:0050 00000000:0000 0A 0 0 0 0 0 1").len(),
            1
        );
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_inode("socket:[31337]"), Some(31337));
        assert_eq!(parse_socket_inode("pipe:[31337]"), None);
        assert_eq!(parse_socket_inode("socket:[]"), None);
        assert_eq!(parse_socket_inode("/dev/null"), None);
    }
}
