//! Finding (or mounting) tracefs and securityfs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::{parse, sys};

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

fn read_mounts() -> anyhow::Result<Vec<parse::MountEntry>> {
    let text = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
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
pub fn ensure_tracefs_with_origin() -> anyhow::Result<(PathBuf, MountOrigin)> {
    if let Some(path) = find_tracefs(&read_mounts()?) {
        return Ok((path, MountOrigin::WasMounted));
    }
    let target = Path::new(TRACEFS_DEFAULT);
    if !target.is_dir() {
        bail!(
            "tracefs is not mounted and {} does not exist (kernel built without CONFIG_TRACING?)",
            target.display()
        );
    }
    sys::mount_pseudo(c"tracefs", target).with_context(|| {
        format!(
            "tracefs is not mounted and mounting it at {} failed (needs root or CAP_SYS_ADMIN); \
             run `mount -t tracefs tracefs {}` as root",
            target.display(),
            target.display()
        )
    })?;
    Ok((target.to_path_buf(), MountOrigin::MountedNow))
}

/// Finds tracefs, mounting it at `/sys/kernel/tracing` if it is not mounted.
/// Tracepoint attachment needs it: aya reads tracepoint ids from it.
pub fn ensure_tracefs() -> anyhow::Result<PathBuf> {
    ensure_tracefs_with_origin().map(|(path, _)| path)
}

/// Same as [`ensure_tracefs_with_origin`] for securityfs, which holds the lockdown file.
pub fn ensure_securityfs() -> anyhow::Result<(PathBuf, MountOrigin)> {
    let mounts = read_mounts()?;
    if let Some(point) = parse::mount_points_of(&mounts, "securityfs").next() {
        return Ok((point.clone(), MountOrigin::WasMounted));
    }
    let target = Path::new(SECURITYFS_DEFAULT);
    sys::mount_pseudo(c"securityfs", target)
        .with_context(|| format!("mounting securityfs at {}", target.display()))?;
    Ok((target.to_path_buf(), MountOrigin::MountedNow))
}
