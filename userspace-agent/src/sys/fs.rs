//! Finding (or mounting) tracefs and securityfs.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::parse;

/// Where the agent mounts tracefs when nobody has.
pub const TRACEFS_DEFAULT: &str = "/sys/kernel/tracing";
/// The pre-4.1 location, still mounted by some distributions via debugfs.
const TRACEFS_LEGACY: &str = "/sys/kernel/debug/tracing";
/// Where securityfs (and so the lockdown file) lives.
pub const SECURITYFS_DEFAULT: &str = "/sys/kernel/security";

/// Whether a pseudo filesystem was already there or we just mounted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOrigin {
    WasMounted,
    MountedNow,
}

/// Why a pseudo filesystem could not be found or mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount table could not be read.
    #[error("reading /proc/mounts")]
    ReadMounts(#[source] io::Error),
    /// tracefs is not mounted and its mount point does not exist.
    #[error(
        "tracefs is not mounted and {} does not exist (kernel built without CONFIG_TRACING?)",
        .target.display()
    )]
    NoTracefsDir { target: PathBuf },
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracefs is not mounted and mounting it at {} failed (needs root or CAP_SYS_ADMIN); \
         run `mount -t tracefs tracefs {}` as root",
        .target.display(),
        .target.display()
    )]
    MountTracefs {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// securityfs is not mounted and mounting it failed.
    #[error("mounting securityfs at {}", .target.display())]
    MountSecurityfs {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl MountError {
    /// The failed system call's error, if one failed.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::ReadMounts(source)
            | Self::MountTracefs { source, .. }
            | Self::MountSecurityfs { source, .. } => Some(source),
            Self::NoTracefsDir { .. } => None,
        }
    }
}

fn read_mounts() -> Result<Vec<parse::MountEntry>, MountError> {
    let text = std::fs::read_to_string("/proc/mounts").map_err(MountError::ReadMounts)?;
    Ok(parse::parse_mounts(&text))
}

/// Picks the tracefs mount point to use from `/proc/mounts` entries, preferring the
/// modern location.
pub fn find_tracefs(mounts: &[parse::MountEntry]) -> Option<PathBuf> {
    let points: Vec<&PathBuf> = parse::mount_points_of(mounts, "tracefs").collect();
    [TRACEFS_DEFAULT, TRACEFS_LEGACY]
        .iter()
        .map(Path::new)
        .find(|p| points.iter().any(|m| m.as_path() == *p))
        .map(Path::to_path_buf)
        .or_else(|| points.first().map(|p| (*p).clone()))
}

/// Returns the tracefs path, mounting it at `/sys/kernel/tracing` if needed, and
/// whether it was already mounted.
pub fn ensure_tracefs_with_origin() -> Result<(PathBuf, MountOrigin), MountError> {
    if let Some(path) = find_tracefs(&read_mounts()?) {
        return Ok((path, MountOrigin::WasMounted));
    }
    let target = Path::new(TRACEFS_DEFAULT);
    if !target.is_dir() {
        return Err(MountError::NoTracefsDir {
            target: target.to_path_buf(),
        });
    }
    mount_pseudo(c"tracefs", target).map_err(|source| MountError::MountTracefs {
        target: target.to_path_buf(),
        source,
    })?;
    Ok((target.to_path_buf(), MountOrigin::MountedNow))
}

/// Finds tracefs, mounting it at `/sys/kernel/tracing` if it is not mounted.
/// Tracepoint attachment needs it: aya reads tracepoint ids from it.
pub fn ensure_tracefs() -> Result<PathBuf, MountError> {
    ensure_tracefs_with_origin().map(|(path, _)| path)
}

/// Same as [`ensure_tracefs_with_origin`] for securityfs, which holds the lockdown file.
pub fn ensure_securityfs() -> Result<(PathBuf, MountOrigin), MountError> {
    let mounts = read_mounts()?;
    if let Some(point) = parse::mount_points_of(&mounts, "securityfs").next() {
        return Ok((point.clone(), MountOrigin::WasMounted));
    }
    let target = Path::new(SECURITYFS_DEFAULT);
    mount_pseudo(c"securityfs", target).map_err(|source| MountError::MountSecurityfs {
        target: target.to_path_buf(),
        source,
    })?;
    Ok((target.to_path_buf(), MountOrigin::MountedNow))
}

/// `mount -t fstype fstype target`, for pseudo filesystems (tracefs, securityfs).
fn mount_pseudo(fstype: &CStr, target: &Path) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in mount target"))?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call;
    // `data` may be NULL for filesystems without options.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
