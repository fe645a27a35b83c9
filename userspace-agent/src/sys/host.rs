//! Facts about the host and this process: kernel release, architecture, effective uid
//! and capabilities, RLIMIT_MEMLOCK, page size, the kernel's build configuration.

use std::io;
use std::process::Command;

use super::parse;

/// Linux capability numbers (include/uapi/linux/capability.h).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// `uname -r` and `uname -m`.
pub fn uname() -> io::Result<(String, String)> {
    // SAFETY: utsname is plain old data; all-zero bytes are a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        c_chars_to_string(&uts.release),
        c_chars_to_string(&uts.machine),
    ))
}

fn c_chars_to_string(chars: &[libc::c_char]) -> String {
    // c_char is i8 or u8 depending on the target; reinterpret each as a byte.
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Soft RLIMIT_MEMLOCK in bytes; `None` means unlimited.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
}

/// The system page size (ring buffer sizes must be a multiple of it).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// This process's effective capability mask (`CapEff:` in /proc/self/status), if it can
/// be read; test a bit with [`parse::has_cap`].
pub fn effective_caps() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse::parse_cap_eff(&s))
}

/// Kernel config text and where it came from, if any source is readable.
pub fn kernel_config(release: Option<&str>) -> Option<(String, String)> {
    // /proc/config.gz needs gunzip; shelling out avoids a compression crate for one read.
    let gz = Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok());
    if let Some(text) = gz {
        return Some(("/proc/config.gz".to_owned(), text));
    }
    let path = format!("/boot/config-{}", release?);
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// `clock`'s time in nanoseconds (`clock_gettime`); 0 if the clock cannot be read.
pub fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Sends `sig` to process `pid` (`kill(2)`). The caller makes sure the pid is still its
/// process (a child not yet reaped cannot have been reused).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `pid` is a process (a thread group leader), not another thread of one: a
/// thread's /proc entry exists too, but its Tgid is its leader's.
pub fn is_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            == Some(pid)
    })
}
