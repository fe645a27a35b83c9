//! Process file descriptors: a handle on another process, and duplicates of its
//! descriptors in this one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::owned_fd;

/// `pidfd_open(2)`: a descriptor that refers to process `pid` (Linux 5.3+).
pub fn open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    owned_fd(ret)
}

/// `pidfd_getfd(2)`: our own duplicate of descriptor `fd` of the process behind `pidfd`
/// (Linux 5.6+; needs ptrace access to it).
pub fn get_fd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a pidfd, a target fd number and flags, and returns a new
    // fd (a duplicate in this process) or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned_fd(ret)
}
