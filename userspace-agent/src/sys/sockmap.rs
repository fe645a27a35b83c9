//! Does FIONREAD still tell the truth on a socket enrolled in a sockhash?
//!
//! Context injection runs an sk_msg program on client sockets, which requires them to be
//! in a sockhash. On some kernels an enrolled socket answers FIONREAD from the (empty)
//! sockmap queue instead of the TCP receive queue, so an application that sizes its reads
//! with FIONREAD (nginx upstreams) sees 0 bytes and can stall. This probe measures it on a
//! loopback connection of our own; Sonde's enrolment rule (inject.bpf.c) keeps traced
//! applications safe either way, and the probe tells the operator which case applies.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use aya_obj::generated::bpf_map_type;

use super::bpf::{self, BpfError};
use super::socket;

/// Bytes the peer sends before FIONREAD is asked.
const PROBE_BYTES: usize = 1000;

#[derive(Debug)]
pub enum FionreadProbe {
    /// FIONREAD reported what was waiting.
    Correct,
    /// FIONREAD reported `reported` bytes while PROBE_BYTES were readable.
    Broken { reported: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("creating a sockhash: {0}")]
    Bpf(#[from] BpfError),
    #[error("loopback connection: {0}")]
    Io(#[from] io::Error),
}

impl FionreadProbe {
    pub fn bytes() -> usize {
        PROBE_BYTES
    }
}

/// Enrols one end of a loopback connection in a fresh sockhash, sends it bytes from the
/// other end, and compares FIONREAD with what is really readable. Everything is closed
/// on return (closing the sockhash takes the socket out again).
pub fn probe_fionread() -> Result<FionreadProbe, ProbeError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    let map = bpf::create_map(bpf_map_type::BPF_MAP_TYPE_SOCKHASH, 8, 4, 1)?;
    bpf::update_u64_u32(&map, 1, client.as_raw_fd() as u32)?;

    server.write_all(&[b'x'; PROBE_BYTES])?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 1];
    // MSG_PEEK waits until the bytes are there without taking them.
    client.peek(&mut buf)?;
    let waiting = socket::unread_bytes(client.as_fd())?;
    drop(map);
    let reported = waiting as usize;
    Ok(if reported == PROBE_BYTES {
        FionreadProbe::Correct
    } else {
        FionreadProbe::Broken { reported }
    })
}
