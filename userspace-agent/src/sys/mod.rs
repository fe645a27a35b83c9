//! The seam between Sonde and the kernel: every raw system call, and the probes that
//! find out what this kernel offers, behind safe functions.
//!
//! The rest of the agent asks questions (where is tracefs? may this process create a
//! ring buffer?) and gets typed answers; it issues no bpf(2), mount(2) or ioctl(2) of
//! its own, and every `unsafe` those calls need is here. Probes try the feature rather
//! than trust version strings, and they tell "the kernel lacks it" from "the kernel
//! refuses it to us": the three-way answer `sonde doctor` reports. This module knows
//! nothing of attaching, the doctor or the command line; they all build on it.
//!
//! - `bpf`: bpf(2) commands (map create/update, throwaway program loads) and [`BpfError`]
//! - `features`: the kernel features the hook choice rests on (BTF, socket tracepoints,
//!   fentry, kprobes), each a three-way [`Feature`] answer
//! - `host`: uname, euid, rlimits, page size, capabilities, kernel config
//! - `fs`: finding or mounting tracefs and securityfs
//! - `pidfd`: handles on other processes and duplicates of their descriptors
//! - `socket`: a TCP socket's cookie, bytes moved and bytes queued
//! - `sockmap`: whether FIONREAD tells the truth on a sockhash-enrolled socket
//! - `parse`: pure parsers of the kernel's text files (no I/O, tested on literals)
//!
//! [`BpfError`]: bpf::BpfError
//! [`Feature`]: features::Feature

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub mod bpf;
pub mod features;
pub mod fs;
pub mod host;
pub mod parse;
pub mod pidfd;
pub mod socket;
pub mod sockmap;

/// The fresh descriptor a syscall returned, or its errno when it returned -1.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: on success these syscalls return a new fd that nothing else owns; OwnedFd
    // closes it when dropped.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests;
