//! Whether client sockets may stay in the injection sockhash for good, so that every request
//! on a keep-alive connection gets its `traceparent`, not only those sent while the agent
//! had the socket re-enrolled (`reenrol.rs`).
//!
//! An enrolled socket with only the sk_msg program answers FIONREAD from the psock's empty
//! queue (0), which stalls applications that size reads with it (nginx upstreams): hence
//! sockets leave the sockhash when a request is sent. With a stream verdict program that
//! passes everything beside it (`sonde_sk_skb_pass`), received data goes through the psock
//! queue and FIONREAD counts it (measured on Linux 6.18: docs/spikes/sockmap_verdict/).
//! Whether this kernel does so is not assumed: the verdict program is attached, a loopback
//! socket of the agent's own is enrolled in the real sockhash, sent bytes, and FIONREAD
//! compared with what is readable. Right: `inject_stay` is set and sockets stay. Wrong, or
//! anything failing: the verdict program is detached and sockets leave on send, as before.
//! Run before sock_ops is attached, so that no traced socket is enrolled meanwhile.
//!
//! Only on kernels whose receive path through the verdict program has been run under the
//! whole end-to-end suite (nginx over keep-alive upstreams with 10 MB bodies, the randomized
//! byte-for-byte client): Linux 6.18 on. Debian's 6.1 passes the FIONREAD check too, but
//! has only been run with single small exchanges that way, so it keeps the idle rule.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::Ebpf;
use aya::maps::sock::SockMapFd;
use aya::maps::{Array, MapData, SockHash};
use aya::programs::SkSkb;

use crate::sys::socket;

const VERDICT_PROGRAM: &str = "sonde_sk_skb_pass";
const STAY_MAP: &str = "inject_stay";
const SOCKHASH: &str = "inject_socks";
/// Bytes the self-test's peer sends.
const PROBE_BYTES: usize = 1000;
/// The oldest kernel release (major, minor) validated with sockets staying enrolled.
const VALIDATED_SINCE: (u32, u32) = (6, 18);

/// Whether `release` (`uname -r`: `6.18.44-fc-v1300`) is at least [`VALIDATED_SINCE`].
fn validated(release: &str) -> bool {
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= VALIDATED_SINCE,
        _ => false,
    }
}

/// Attaches the verdict program and keeps it if this kernel's FIONREAD is right with it;
/// true when sockets stay enrolled.
pub(super) fn try_stay(ebpf: &mut Ebpf, sockhash_fd: &SockMapFd) -> bool {
    let release = crate::sys::host::uname()
        .map(|(release, _)| release)
        .unwrap_or_default();
    if !validated(&release) {
        log::info!(
            "injection: client sockets leave the sockhash when a request is sent on Linux \
             {release} (sockets stay enrolled only on {}.{}+, where that was validated)",
            VALIDATED_SINCE.0,
            VALIDATED_SINCE.1
        );
        return false;
    }
    match attach_and_check(ebpf, sockhash_fd) {
        Ok(true) => {
            log::info!(
                "injection: client sockets stay enrolled (FIONREAD is right with the verdict \
                 program on this kernel): every request gets its traceparent"
            );
            true
        }
        Ok(false) => false,
        Err(e) => {
            log::info!(
                "injection: client sockets leave the sockhash when a request is sent \
                 (keep-alive requests get a traceparent only when re-enrolled in time): {e:#}"
            );
            false
        }
    }
}

fn attach_and_check(ebpf: &mut Ebpf, sockhash_fd: &SockMapFd) -> Result<bool> {
    let verdict: &mut SkSkb = ebpf
        .program_mut(VERDICT_PROGRAM)
        .context("program sonde_sk_skb_pass missing")?
        .try_into()?;
    verdict
        .load()
        .context("loading the stream verdict program")?;
    let link = verdict
        .attach(sockhash_fd)
        .context("attaching the stream verdict program")?;
    let checked = self_test(ebpf);
    if !matches!(checked, Ok(())) {
        let verdict: &mut SkSkb = ebpf
            .program_mut(VERDICT_PROGRAM)
            .context("program sonde_sk_skb_pass missing")?
            .try_into()?;
        verdict
            .detach(link)
            .context("detaching the stream verdict program")?;
        checked?;
    }
    let mut stay: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(STAY_MAP).context("map inject_stay missing")?)?;
    stay.set(0, 1, 0).context("setting inject_stay")?;
    Ok(true)
}

/// Enrols one end of a loopback connection, sends it bytes, and checks FIONREAD and the
/// bytes read; the socket is taken out again whatever happens.
fn self_test(ebpf: &mut Ebpf) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    let cookie = socket::cookie(client.as_fd()).context("socket cookie")?;
    let mut hash: SockHash<&mut MapData, u64> =
        SockHash::try_from(ebpf.map_mut(SOCKHASH).context("map inject_socks missing")?)?;
    hash.insert(cookie, client.as_raw_fd(), 0)
        .context("enrolling the self-test socket")?;
    let outcome = (|| -> Result<()> {
        server.write_all(&[b'x'; PROBE_BYTES])?;
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut one = [0u8; 1];
        // MSG_PEEK waits until the bytes are there without taking them.
        client.peek(&mut one)?;
        std::thread::sleep(Duration::from_millis(20));
        let waiting = socket::unread_bytes(client.as_fd())? as usize;
        let mut buf = [0u8; PROBE_BYTES];
        client.read_exact(&mut buf)?;
        if waiting != PROBE_BYTES {
            bail!("FIONREAD said {waiting} of {PROBE_BYTES} bytes with the verdict program");
        }
        Ok(())
    })();
    let _ = hash.remove(&cookie);
    outcome
}

#[cfg(test)]
mod tests {
    use super::validated;

    #[test]
    fn kernel_releases_validated_for_staying_enrolled() {
        assert!(validated("6.18.44-fc-v1300"));
        assert!(validated("6.19.0"));
        assert!(validated("7.0.1-arch1"));
        assert!(!validated("6.1.0-57-cloud-amd64"));
        assert!(!validated("6.17.9"));
        assert!(!validated("5.15.0-1"));
        assert!(!validated("garbage"));
        assert!(!validated(""));
    }
}
