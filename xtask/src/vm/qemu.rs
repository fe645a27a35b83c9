//! Booting a kernel with an initramfs under QEMU and capturing its serial console.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use crate::util;

/// How QEMU runs the guest's instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// Software emulation: slow, but works on every host (the default).
    Tcg,
    /// Hardware virtualisation through /dev/kvm (a trial boot hung on these VMs).
    Kvm,
}

impl Accel {
    fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Self::Tcg => ["-accel", "tcg", "-cpu", "max"],
            Self::Kvm => ["-accel", "kvm", "-cpu", "host"],
        }
    }
}

/// How long QEMU gets to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(2);

/// How the boot ended.
pub struct Boot {
    /// Everything the guest printed on its serial console.
    pub console: String,
    pub elapsed: Duration,
    /// QEMU was killed at the deadline.
    pub timed_out: bool,
}

/// Boots `vmlinuz` with `initrd`, writes the console to `console_log` as it comes, and
/// kills QEMU at `timeout`. The guest's /init powers off when it is done.
pub fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    accel: Accel,
    timeout: Duration,
    console_log: &Path,
) -> Result<Boot> {
    let log =
        File::create(console_log).with_context(|| format!("creating {}", console_log.display()))?;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(accel.qemu_args())
        .args(["-smp", "2", "-m", "1024", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // loglevel=1: kernel messages would interleave with the result lines.
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    println!("vm-test: {}", util::show(&cmd));
    let start = Instant::now();
    let mut child = util::ChildGuard::spawn("qemu", &mut cmd, libc::SIGTERM, GRACE)?;
    let mut timed_out = false;
    while child.try_wait()?.is_none() {
        if start.elapsed() > timeout {
            timed_out = true;
            break;
        }
        util::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(child);
    let console =
        std::fs::read(console_log).with_context(|| format!("reading {}", console_log.display()))?;
    Ok(Boot {
        console: String::from_utf8_lossy(&console).replace('\r', ""),
        elapsed: start.elapsed(),
        timed_out,
    })
}
