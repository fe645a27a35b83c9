//! What a TCP socket says about itself: its cookie, the bytes it moved, the bytes
//! waiting in its queues.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_COOKIE` from asm-generic/socket.h.
const SO_COOKIE: libc::c_int = 57;

/// `SO_COOKIE`: the kernel's id for the socket, the key BPF socket maps use.
pub fn cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// `TCP_INFO`, whole: a kernel that fills in less than this build's `tcp_info` is an
/// error, not zeroes.
pub fn tcp_info(socket: BorrowedFd<'_>) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < mem::size_of::<libc::tcp_info>() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the kernel's tcp_info is shorter than ours",
        ));
    }
    Ok(info)
}

/// `TIOCOUTQ`: bytes written by the application and not yet acknowledged by the peer.
pub fn unacked_bytes(socket: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_count(socket, libc::TIOCOUTQ)
}

/// `FIONREAD`: bytes received and not yet read by the application.
pub fn unread_bytes(socket: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_count(socket, libc::FIONREAD)
}

/// An ioctl that writes one byte count (a non-negative c_int).
fn ioctl_count(socket: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: these ioctls write one c_int through the valid pointer.
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut value) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(value).unwrap_or(0))
}
