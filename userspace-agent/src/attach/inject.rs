//! Outgoing context propagation: the sock_ops program that enrols client sockets of traced
//! processes, and the sk_msg program that inserts `traceparent` into their HTTP/1 requests
//! (`ebpf-probes/inject.bpf.c` explains the FIONREAD-safe enrolment rule).
//!
//! sock_ops attaches to the cgroup2 root through a BPF link, so it covers every process
//! and goes away with the agent. The sockhash lives only as long as the programs that use
//! it: when the agent exits (SIGKILL included) the kernel frees it, which takes every
//! socket out and restores its normal TCP operations.

use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::Ebpf;
use aya::programs::{CgroupAttachMode, SkMsg, SockOps};

use super::probes::verifier_context;
use crate::doctor::parse;

pub const SOCKOPS_PROGRAM: &str = "sonde_sockops";
pub const SK_MSG_PROGRAM: &str = "sonde_sk_msg";
const SOCKHASH: &str = "inject_socks";

/// Where cgroup2 is mounted (hybrid hosts: /sys/fs/cgroup/unified).
fn cgroup2_root() -> Result<PathBuf> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    parse::cgroup2_layout(&parse::parse_mounts(&mounts))
        .map(|(point, _)| point)
        .context("cgroup2 is not mounted; it is needed for sock_ops (mount -t cgroup2 none /sys/fs/cgroup)")
}

/// Loads and attaches both programs. On error nothing stays enrolled: the sk_msg
/// program is attached first, and sock_ops (which enrols) last.
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
