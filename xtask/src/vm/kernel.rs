//! The kernels to boot: Debian's 6.1 cloud kernel (fetched with apt, cached under
//! `target/vm/`), or a kernel image given by path.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util::{exec, output};

/// A bootable kernel image and the name the report gives it.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// e.g. `6.1.0-56-cloud-amd64`, or the file name of a kernel given by path.
    pub name: String,
    pub vmlinuz: PathBuf,
}

impl Kernel {
    /// A local kernel image, e.g. `/boot/vmlinuz-6.1.0-56-cloud-amd64`.
    pub fn from_path(path: &Path) -> Result<Self> {
        if !path.is_file() {
            bail!("kernel image {} does not exist", path.display());
        }
        let file = path
            .file_name()
            .map_or_else(|| "kernel".to_owned(), |n| n.to_string_lossy().into_owned());
        let name = file.strip_prefix("vmlinuz-").unwrap_or(&file).to_owned();
        Ok(Self {
            name,
            vmlinuz: path.to_owned(),
        })
    }
}

/// Package names are `linux-image-6.1.0-<ABI>-cloud-amd64-unsigned`.
const PACKAGE_PREFIX: &str = "linux-image-6.1.0-";
const PACKAGE_SUFFIX: &str = "-cloud-amd64-unsigned";

/// The ABI number of a Debian 6.1 cloud kernel package name, if it is one.
fn abi_of(package: &str) -> Option<u32> {
    package
        .strip_prefix(PACKAGE_PREFIX)?
        .strip_suffix(PACKAGE_SUFFIX)?
        .parse()
        .ok()
}

/// The newest Debian 6.1 cloud kernel package among `names`.
fn newest_package<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|name| abi_of(name).map(|abi| (abi, name)))
        .max_by_key(|(abi, _)| *abi)
        .map(|(_, name)| name)
}

/// The Debian 6.1 cloud kernel: the newest one already extracted under `cache`, else the
/// newest apt knows of, downloaded (`apt-get download`, no install) and extracted there.
pub fn debian_6_1(cache: &Path) -> Result<Kernel> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let cached: Vec<String> = std::fs::read_dir(cache)
        .with_context(|| format!("listing {}", cache.display()))?
        .flatten()
        .filter(|e| e.path().join("boot").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(package) = newest_package(cached.iter().map(String::as_str)) {
        println!("vm-test: using the cached {package}");
        return extracted(cache, package);
    }

    let package = match available_package()? {
        Some(package) => package,
        None => {
            println!("vm-test: apt knows no Debian 6.1 cloud kernel; running apt-get update once");
            exec(Command::new("apt-get").arg("update"))?;
            available_package()?.with_context(|| {
                format!("apt offers no {PACKAGE_PREFIX}<N>{PACKAGE_SUFFIX} package (is the Debian 12 archive in the apt sources?)")
            })?
        }
    };
    let download = cache.join("download");
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    println!("vm-test: apt-get download {package}");
    exec(
        Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(&download),
    )?;
    let deb = std::fs::read_dir(&download)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    // Extract next to the final place, then rename: an interrupted run leaves no
    // half-extracted kernel that a later run would take for a cached one.
    let partial = cache.join(format!("{package}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    exec(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    std::fs::rename(&partial, cache.join(&package))?;
    std::fs::remove_file(&deb)?;
    extracted(cache, &package)
}

/// The newest package apt can download (from the local package lists).
fn available_package() -> Result<Option<String>> {
    let names = output(Command::new("apt-cache").args(["pkgnames", PACKAGE_PREFIX]))?;
    Ok(newest_package(names.lines()).map(str::to_owned))
}

fn extracted(cache: &Path, package: &str) -> Result<Kernel> {
    let boot = cache.join(package).join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))?;
    Kernel::from_path(&vmlinuz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_abi_not_the_last_in_text_order() {
        // As `apt-cache pkgnames linux-image-6.1.0-` prints them (unordered, mixed flavours).
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64",
            "linux-image-6.1.0-60-amd64-unsigned",
            "linux-image-6.1.0-47-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned.partial",
        ];
        assert_eq!(
            newest_package(names),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
        assert_eq!(newest_package(["linux-image-6.12.1-cloud-amd64"]), None);
    }
}
