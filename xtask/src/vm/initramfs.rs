//! The guest's root filesystem: a newc cpio archive the kernel unpacks into RAM.
//!
//! It holds busybox (static), an `/init` script, the programs the checks run and every
//! shared library `ldd` lists for them, at the same absolute paths as on the host, so
//! the dynamic loader finds them without configuration.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use cpio::newc::{Builder, ModeFileType};

enum Entry {
    Dir,
    /// Copied from the host at write time.
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
}

/// Files by their absolute path in the guest; parents are added as directories.
#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    pub fn new() -> Self {
        let mut fs = Self::default();
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        fs.insert("/dev/console", Entry::CharDevice { major: 5, minor: 1 });
        for dir in ["/proc", "/sys", "/tmp", "/run", "/root"] {
            fs.insert(dir, Entry::Dir);
        }
        fs
    }

    /// An executable script or file whose contents are given.
    pub fn add_bytes(&mut self, guest: &str, bytes: impl Into<Vec<u8>>) {
        self.insert(guest, Entry::Bytes(bytes.into()));
    }

    pub fn add_symlink(&mut self, guest: &str, target: &str) {
        self.insert(guest, Entry::Symlink(target.to_owned()));
    }

    /// A host executable at `guest`, with every shared library it needs.
    pub fn add_program(&mut self, guest: &str, host: &Path) -> Result<()> {
        for lib in shared_libraries(host)? {
            let guest_path = lib.to_string_lossy().into_owned();
            self.insert(&guest_path, Entry::HostFile(lib));
        }
        self.insert(guest, Entry::HostFile(host.to_owned()));
        Ok(())
    }

    fn insert(&mut self, guest: &str, entry: Entry) {
        let mut parent = Path::new(guest).parent();
        while let Some(dir) = parent.filter(|d| d.components().count() > 1) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = dir.parent();
        }
        self.entries.insert(guest.to_owned(), entry);
    }

    /// Writes the archive (directories sort before their contents, as cpio needs).
    pub fn write(&self, path: &Path) -> Result<()> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        for (ino, (guest, entry)) in (1u32..).zip(&self.entries) {
            let name = guest.trim_start_matches('/');
            let builder = Builder::new(name).ino(ino).nlink(1);
            out = match entry {
                Entry::Dir => write_entry(
                    builder
                        .mode(0o755)
                        .set_mode_file_type(ModeFileType::Directory),
                    &mut Cursor::new(Vec::new()),
                    out,
                )?,
                Entry::Bytes(bytes) => write_entry(
                    builder
                        .mode(0o755)
                        .set_mode_file_type(ModeFileType::Regular),
                    &mut Cursor::new(bytes.as_slice()),
                    out,
                )?,
                Entry::Symlink(target) => write_entry(
                    builder
                        .mode(0o777)
                        .set_mode_file_type(ModeFileType::Symlink),
                    &mut Cursor::new(target.as_bytes()),
                    out,
                )?,
                Entry::CharDevice { major, minor } => write_entry(
                    builder
                        .mode(0o600)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &mut Cursor::new(Vec::new()),
                    out,
                )?,
                Entry::HostFile(host) => {
                    let mut file =
                        File::open(host).with_context(|| format!("opening {}", host.display()))?;
                    write_entry(
                        builder
                            .mode(0o755)
                            .set_mode_file_type(ModeFileType::Regular),
                        &mut file,
                        out,
                    )
                    .with_context(|| format!("adding {}", host.display()))?
                }
            };
        }
        let mut out = cpio::newc::trailer(out)?;
        out.flush()?;
        Ok(())
    }
}

fn write_entry<W: Write>(builder: Builder, data: &mut (impl Read + Seek), out: W) -> Result<W> {
    let len = data.seek(std::io::SeekFrom::End(0))?;
    data.rewind()?;
    let len = u32::try_from(len).context("file too large for a newc cpio entry")?;
    let mut writer = builder.write(out, len);
    std::io::copy(data, &mut writer)?;
    Ok(writer.finish()?)
}

/// The shared libraries (and the dynamic loader) `ldd` lists for `program`.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .with_context(|| format!("running ldd {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd exits 1 with "not a dynamic executable" for static programs (busybox-static).
        let said =
            |bytes: &[u8]| String::from_utf8_lossy(bytes).contains("not a dynamic executable");
        if said(&out.stdout) || said(&out.stderr) {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed with {}", program.display(), out.status);
    }
    parse_ldd(&text)
}

/// Library paths from `ldd` output; fails on a library ldd could not find.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux... (0x...)`,
        // `linux-vdso.so.1 (0x...)` (in the kernel, no file), `libfoo.so => not found`.
        let path = match line.split_once(" => ") {
            Some((name, "not found")) => bail!("ldd: {name} not found"),
            Some((_, rest)) => rest,
            None => line,
        };
        let path = path.split(" (").next().unwrap_or(path);
        let path = Path::new(path);
        if path.is_absolute() && path.components().all(|c| c != Component::ParentDir) {
            libs.push(path.to_owned());
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ldd /usr/bin/curl` on the Debian 12 development host (trimmed to six lines).
    const CURL_LDD: &str = "\tlinux-vdso.so.1 (0x00007ffd4b3f1000)
\tlibcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4 (0x00007f5f0a8c5000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f5f0a8a6000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5f0a6c5000)
\tlibnghttp2.so.14 => /lib/x86_64-linux-gnu/libnghttp2.so.14 (0x00007f5f0a69a000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5f0a9b4000)
";

    #[test]
    fn ldd_lines_give_library_paths_and_the_loader_but_not_the_vdso() {
        let libs = parse_ldd(CURL_LDD).unwrap();
        let libs: Vec<&str> = libs.iter().filter_map(|p| p.to_str()).collect();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libcurl.so.4",
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libnghttp2.so.14",
                "/lib64/ld-linux-x86-64.so.2",
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let err = parse_ldd("\tlibgone.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libgone.so.1"), "{err}");
    }

    #[test]
    fn the_archive_lists_parents_before_children_and_unpacks_with_cpio() {
        let dir = std::env::temp_dir().join(format!("xtask-initramfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut fs = Initramfs::new();
        fs.add_bytes("/etc/deep/file", b"hello".to_vec());
        fs.add_symlink("/bin/sh", "busybox");
        let archive = dir.join("a.cpio");
        fs.write(&archive).unwrap();
        // The system cpio is the independent reader here.
        let out = Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        let listing = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = listing.lines().collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("etc") < pos("etc/deep") && pos("etc/deep") < pos("etc/deep/file"));
        assert!(names.contains(&"dev/console") && names.contains(&"bin/sh"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
