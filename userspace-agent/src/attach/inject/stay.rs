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

/// Attaches the verdict program and keeps it if this kernel's FIONREAD is right with it;
/// true when sockets stay enrolled.
pub(super) fn try_stay(ebpf: &mut Ebpf, sockhash_fd: &SockMapFd) -> bool {
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
