//! `cargo xtask vm-test`: the same checks on the host kernel and on Debian's 6.1 kernel
//! booted under QEMU, with a per-kernel report.
//!
//! The guest is an initramfs only (no disk image, no Docker): busybox, `vm-tests/init`,
//! the release `sonde`, this xtask binary (which runs the checks: `xtask vm-guest`), curl
//! and their shared libraries. The checks ([`guest`]) print marker lines on the serial
//! console; [`results`] reads them back. The host leg runs the same `xtask vm-guest`
//! directly, so both kernels run one code path.

mod docs;
pub mod guest;
mod initramfs;
mod kernel;
mod qemu;
mod results;
mod tls_files;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::util::{self, output};
use initramfs::Initramfs;
use kernel::Kernel;
use qemu::Accel;
use results::Leg;

#[derive(Debug, Args)]
pub struct Options {
    /// Boot this kernel image instead of Debian's 6.1 cloud kernel (fetched with apt).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Keep the initramfs under target/vm/run/ (the console log is always kept).
    #[arg(long)]
    keep: bool,
    /// QEMU accelerator.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Seconds the guest gets from boot to power-off.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Skip the host-kernel leg.
    #[arg(long)]
    no_host: bool,
    /// Rewrite docs/kernels.md from this run's doctor reports and verifier matrices.
    #[arg(long)]
    write_docs: bool,
    /// Use the debug build of sonde (the one `cargo xtask test` just built: CI saves a
    /// release build of several minutes).
    #[arg(long)]
    debug: bool,
}

/// Inside the guest: the init script, at /init.
const INIT: &str = include_str!("../../../vm-tests/init");

pub fn run(opts: Options) -> Result<()> {
    let Options {
        kernel,
        keep,
        accel,
        timeout,
        no_host,
        write_docs,
        debug,
    } = opts;
    util::require_root("cargo xtask vm-test")?;
    util::catch_interrupts();
    let root = util::workspace_root();
    let work = root.join("target").join("vm");
    let run_dir = work.join("run");
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;

    let sonde = util::build_sonde(!debug)?;
    let kernel = match kernel {
        Some(path) => Kernel::from_path(&path)?,
        None => kernel::debian_6_1(&work)?,
    };
    let initrd = run_dir.join("initramfs.cpio");
    let tls_dir = run_dir.join("tls");
    tls_files::prepare(&tls_dir)?;
    build_initramfs(&sonde, &initrd, &tls_dir)?;

    let mut legs = Vec::new();
    if !no_host {
        legs.push(host_leg(&sonde, &tls_dir)?);
    }
    legs.push(vm_leg(
        &kernel,
        &initrd,
        accel,
        Duration::from_secs(timeout),
        &run_dir,
    )?);
    if !keep {
        for file in ["initramfs.cpio", "sonde", "xtask"] {
            let path = run_dir.join(file);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }

    println!("\n{}", results::render(&legs));
    if write_docs {
        let path = root.join("docs").join("kernels.md");
        std::fs::write(&path, docs::kernels_md(&legs))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("vm-test: wrote {}", path.display());
    }
    let failed: Vec<&str> = legs
        .iter()
        .filter(|l| !l.passed())
        .map(|l| l.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("vm-test failed on: {}", failed.join(", "));
    }
    println!("vm-test: all kernels passed");
    Ok(())
}

fn build_initramfs(sonde: &Path, initrd: &Path, tls_dir: &Path) -> Result<()> {
    let start = Instant::now();
    let mut fs = Initramfs::new();
    fs.add_bytes("/init", INIT);
    fs.add_program("/bin/busybox", &which("busybox")?)?;
    // The CGI script's `#!/bin/sh`; /init links the other applets.
    fs.add_symlink("/bin/sh", "busybox");
    fs.add_program("/bin/curl", &which("curl")?)?;
    let guest = |name| format!("{}/{name}", tls_files::GUEST_DIR);
    fs.add_program(&guest(tls_files::SERVER), &tls_dir.join(tls_files::SERVER))?;
    for name in [tls_files::CERT, tls_files::KEY] {
        let path = tls_dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        fs.add_bytes(&guest(name), bytes);
    }
    // Debug info is most of their size, and the guest unpacks every byte under TCG.
    let dir = initrd.parent().unwrap_or(Path::new("."));
    fs.add_program("/bin/sonde", &stripped(sonde, dir)?)?;
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    fs.add_program("/bin/xtask", &stripped(&xtask, dir)?)?;
    fs.write(initrd)?;
    let size = std::fs::metadata(initrd)?.len();
    println!(
        "vm-test: initramfs {} ({} MiB) in {:.1}s",
        initrd.display(),
        size >> 20,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A copy of `program` without debug info, in `dir`.
fn stripped(program: &Path, dir: &Path) -> Result<PathBuf> {
    let name = program
        .file_name()
        .context("program path has no file name")?;
    let out = dir.join(name);
    util::exec(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(program)
            .arg(&out),
    )?;
    Ok(out)
}

/// The absolute path of a program on PATH.
fn which(program: &str) -> Result<PathBuf> {
    let path = output(Command::new("sh").args(["-c", &format!("command -v {program}")]))
        .with_context(|| format!("{program} is not installed (cargo xtask setup installs it)"))?;
    Ok(PathBuf::from(path.trim()))
}

fn host_leg(sonde: &Path, tls_dir: &Path) -> Result<Leg> {
    let release = output(Command::new("uname").arg("-r"))?;
    let name = format!("host {}", release.trim());
    println!("vm-test: running the checks on the {name} kernel");
    let start = Instant::now();
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let port = util::free_port()?;
    let tls_port = util::free_port()?;
    let out = Command::new(xtask)
        .arg("vm-guest")
        .arg("--sonde")
        .arg(sonde)
        .args(["--port", &port.to_string()])
        .args(["--tls-port", &tls_port.to_string()])
        .arg("--tls-dir")
        .arg(tls_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running xtask vm-guest on the host")?;
    let mut leg = Leg::parse(&name, &String::from_utf8_lossy(&out.stdout));
    leg.finished = out.status.success();
    if !out.status.success() {
        leg.problem = Some(format!("xtask vm-guest exited with {}", out.status));
    }
    println!(
        "vm-test: host leg took {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(leg)
}

fn vm_leg(
    kernel: &Kernel,
    initrd: &Path,
    accel: Accel,
    timeout: Duration,
    run_dir: &Path,
) -> Result<Leg> {
    let name = format!("vm {}", kernel.name);
    let log = run_dir.join(format!("console-{}.log", kernel.name));
    println!("vm-test: booting {} ({accel:?})", kernel.vmlinuz.display());
    let boot = qemu::boot(&kernel.vmlinuz, initrd, accel, timeout, &log)?;
    println!(
        "vm-test: guest ran {:.1}s; console log {}",
        boot.elapsed.as_secs_f64(),
        log.display()
    );
    let mut leg = Leg::parse(&name, &boot.console);
    if boot.timed_out {
        leg.problem = Some(format!(
            "no power-off within {timeout:?}; see {}",
            log.display()
        ));
    } else if !leg.finished {
        leg.problem = Some(format!(
            "the guest stopped before its end marker; console tail:\n{}",
            util::tail(&log, 30)
        ));
    }
    Ok(leg)
}
