//! Outgoing context propagation: the sock_ops program that enrols client sockets of traced
//! processes, and the sk_msg program that inserts `traceparent` into their HTTP/1 requests
//! (`ebpf-probes/inject.bpf.c` explains the FIONREAD-safe enrolment rule). `reenrol` puts
//! idle keep-alive client sockets back into the sockhash for their next request.
//!
//! sock_ops attaches to the cgroup2 root through a BPF link, so it covers every process
//! and goes away with the agent. The sockhash lives only as long as the programs that use
//! it: when the agent exits (SIGKILL included) the kernel frees it, which takes every
//! socket out and restores its normal TCP operations.

pub mod reenrol;

use std::fs::File;
use std::path::PathBuf;

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, SkStorage, SockHash};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, Iter, SkMsg, SockOps};
use aya::{Btf, Ebpf};

use crate::programs::verifier_context;
use crate::sys::{bpf, parse};

pub const SOCKOPS_PROGRAM: &str = "sonde_sockops";
pub const SK_MSG_PROGRAM: &str = "sonde_sk_msg";
pub const ARM_ITER_PROGRAM: &str = "sonde_iter_arm";
const SOCKHASH: &str = "inject_socks";

/// What userspace needs to re-enrol keep-alive sockets for injection.
pub struct InjectionMaps {
    /// `inject_socks`, by socket cookie.
    pub sockhash: SockHash<MapData, u64>,
    /// `inject_marks`: how far each connect()ed socket got (MARK_* in inject.bpf.c).
    pub marks: SkStorage<MapData, u8>,
    /// `arm_requests` and the iterator that serves them: arming sockets opened before the
    /// agent attached (None when this kernel cannot).
    pub arming: Option<(HashMap<MapData, u64, u8>, ArmIterator)>,
}

/// Where cgroup2 is mounted (hybrid hosts: /sys/fs/cgroup/unified).
fn cgroup2_root() -> Result<PathBuf> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    parse::cgroup2_layout(&parse::parse_mounts(&mounts))
        .map(|(point, _)| point)
        .context("cgroup2 is not mounted; it is needed for sock_ops (mount -t cgroup2 none /sys/fs/cgroup)")
}

/// Loads and attaches both programs. On error nothing stays attached: the sk_msg
/// program is attached first, and taken out again if sock_ops (which enrols) fails.
pub fn attach(ebpf: &mut Ebpf) -> Result<()> {
    let sockhash_fd = {
        let map = ebpf.map(SOCKHASH).context("map inject_socks missing")?;
        let hash: aya::maps::SockHash<_, u64> = aya::maps::SockHash::try_from(map)?;
        hash.fd()
            .try_clone()
            .context("duplicating the sockhash fd")?
    };
    let msg: &mut SkMsg = ebpf
        .program_mut(SK_MSG_PROGRAM)
        .context("program sonde_sk_msg missing")?
        .try_into()?;
    msg.load().map_err(verifier_context)?;
    msg.attach(&sockhash_fd)
        .context("attaching the sk_msg program to its sockhash")?;

    let ops = attach_sock_ops(ebpf);
    if ops.is_err()
        && let Some(program) = ebpf.program_mut(SK_MSG_PROGRAM)
        && let Ok(msg) = <&mut SkMsg>::try_from(program)
        && let Err(e) = msg.unload()
    {
        log::debug!("unloading {SK_MSG_PROGRAM}: {e}");
    }
    ops
}

/// sock_ops on the cgroup2 root: enrols client sockets of traced processes.
fn attach_sock_ops(ebpf: &mut Ebpf) -> Result<()> {
    let root = cgroup2_root()?;
    let cgroup = File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let ops: &mut SockOps = ebpf
        .program_mut(SOCKOPS_PROGRAM)
        .context("program sonde_sockops missing")?
        .try_into()?;
    ops.load().map_err(verifier_context)?;
    // Through a BPF link, which always coexists with other programs on the cgroup
    // (link_create takes no ALLOW_MULTI flag).
    ops.attach(&cgroup, CgroupAttachMode::Single)
        .with_context(|| format!("attaching sock_ops to the cgroup {}", root.display()))?;
    Ok(())
}

/// The tcp iterator that arms sockets opened before the agent attached (inject.bpf.c
/// `sonde_iter_arm`): each [`ArmIterator::run`] walks the host's TCP sockets once.
pub struct ArmIterator {
    /// Our own descriptor of the iterator's BPF link: it lives as long as the agent.
    link: OwnedFd,
}

impl ArmIterator {
    /// Loads and attaches the iterator (`btf`: the kernel's). `None` (with the reason
    /// logged) when this kernel cannot: such sockets then stay out of injection.
    pub fn attach(ebpf: &mut Ebpf, btf: Result<&Btf, &str>) -> Option<Self> {
        match btf
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|btf| Self::try_attach(ebpf, btf))
        {
            Ok(it) => Some(it),
            Err(e) => {
                log::info!(
                    "connections opened before the agent attached will not get traceparent: {e:#}"
                );
                None
            }
        }
    }

    fn try_attach(ebpf: &mut Ebpf, btf: &Btf) -> Result<Self> {
        let prog: &mut Iter = ebpf
            .program_mut(ARM_ITER_PROGRAM)
            .context("program sonde_iter_arm missing")?
            .try_into()?;
        prog.load("tcp", btf).map_err(verifier_context)?;
        let link_id = prog.attach().context("attaching the tcp iterator")?;
        let link: FdLink = prog
            .take_link(link_id)
            .context("taking the iterator link")?
            .try_into()
            .context("the iterator link has no fd")?;
        let id = link.info().context("iterator link info")?.id();
        let link = bpf::link_fd_by_id(id)
            .map_err(io::Error::from)
            .context("opening the iterator link by id")?;
        Ok(Self { link })
    }

    /// One pass over the host's TCP sockets (the program does its work as it goes).
    pub fn run(&self) -> io::Result<()> {
        let fd = bpf::iter_create(self.link.as_fd())?;
        let mut seq = std::fs::File::from(fd);
        let mut sink = [0u8; 512];
        // The program prints nothing; reading to the end drives the walk.
        while seq.read(&mut sink)? > 0 {}
        Ok(())
    }
}
