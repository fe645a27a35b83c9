//! `cargo xtask setup`: prepare a machine (Debian 12, root) to build and run Sonde.
//!
//! Idempotent: apt runs only when something is missing (`apt-get update` once, then one
//! `apt-get install -y`), the test venvs (the OpenTelemetry SDK, psycopg2 on OpenSSL 1.1)
//! are made only when they lack the pinned versions, tracefs is mounted only when it is
//! not. Prints what it did.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::util::{self, exec, on_path, succeeds};

#[derive(Debug, Args)]
pub struct Options {}

/// A requirement: the Debian package to install, and how to tell it is already there.
struct Need {
    package: &'static str,
    /// Also satisfied by any of these installed packages.
    alternatives: &'static [&'static str],
    /// Also satisfied if this program is on PATH (e.g. node or python3 from elsewhere).
    program: Option<&'static str>,
}

const NEEDS: &[Need] = &[
    Need {
        package: "clang-19",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "llvm-19",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "clang-format-19",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "libbpf-dev",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "bpftool",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "nginx-light",
        alternatives: &["nginx", "nginx-core", "nginx-full"],
        program: Some("nginx"),
    },
    Need {
        package: "curl",
        alternatives: &[],
        program: Some("curl"),
    },
    Need {
        package: "wrk",
        alternatives: &[],
        program: Some("wrk"),
    },
    Need {
        package: "python3",
        alternatives: &[],
        program: Some("python3"),
    },
    Need {
        package: "nodejs",
        alternatives: &[],
        program: Some("node"),
    },
    // Injection tests (tests/inject.rs): a Go net/http client and Python `requests`.
    Need {
        package: "golang-go",
        alternatives: &[],
        program: Some("go"),
    },
    Need {
        package: "python3-requests",
        alternatives: &[],
        program: None,
    },
    // TLS tests (tests/tls.rs): the openssl CLI makes each test's throwaway certificates,
    // libssl-dev's static archives build the stripped, statically linked client, wget is
    // the GnuTLS client.
    Need {
        package: "openssl",
        alternatives: &[],
        program: Some("openssl"),
    },
    Need {
        package: "libssl-dev",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "wget",
        alternatives: &[],
        program: Some("wget"),
    },
    // The OpenTelemetry SDK venv (tests/sdk_interop.rs).
    Need {
        package: "python3-venv",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "iproute2",
        alternatives: &[],
        program: Some("ip"),
    },
    Need {
        package: "postgresql",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "redis-server",
        alternatives: &[],
        program: Some("redis-server"),
    },
    Need {
        package: "mariadb-server",
        alternatives: &[],
        program: Some("mariadbd"),
    },
    Need {
        package: "memcached",
        alternatives: &[],
        program: Some("memcached"),
    },
    Need {
        package: "python3-psycopg2",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "python3-redis",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "python3-pymysql",
        alternatives: &[],
        program: None,
    },
    Need {
        package: "python3-pymemcache",
        alternatives: &[],
        program: None,
    },
    // `cargo xtask vm-test`: the 6.1 kernel under QEMU, with a busybox initramfs.
    Need {
        package: "qemu-system-x86",
        alternatives: &[],
        program: Some("qemu-system-x86_64"),
    },
    Need {
        package: "busybox-static",
        // A dynamic busybox works too: its libraries go into the initramfs.
        alternatives: &["busybox"],
        program: None,
    },
    Need {
        package: "cpio",
        alternatives: &[],
        program: Some("cpio"),
    },
];

const TRACEFS: &str = "/sys/kernel/tracing";

/// The venv tests/sdk_interop.rs runs its SDK-instrumented app with (the tests look
/// here unless `SONDE_E2E_SDK_PYTHON` names another interpreter).
const SDK_VENV: &str = "/opt/sonde-test-venv";
/// The official OpenTelemetry Python SDK and its OTLP/HTTP exporter, pinned; Debian
/// packages neither.
const SDK_PACKAGES: &[(&str, &str)] = &[
    ("opentelemetry-sdk", "1.45.2"),
    ("opentelemetry-exporter-otlp-proto-http", "1.45.2"),
];

/// The venv tests/tls_databases.rs runs a psycopg2 client on OpenSSL 1.1 with: the
/// psycopg2-binary wheel of this release bundles libpq with OpenSSL 1.1.1
/// (`psycopg2_binary.libs/libssl-*.so.1.1`), which Debian 12 no longer ships. System
/// site packages stay visible (the app's Redis and MySQL drivers).
const OPENSSL11_VENV: &str = "/opt/sonde-test-venv-openssl11";
const OPENSSL11_PACKAGES: &[(&str, &str)] = &[("psycopg2-binary", "2.9.5")];

pub fn run(opts: Options) -> Result<()> {
    let Options {} = opts;
    util::require_root("cargo xtask setup")?;
    install_packages()?;
    make_venv(SDK_VENV, SDK_PACKAGES, &[])?;
    make_venv(
        OPENSSL11_VENV,
        OPENSSL11_PACKAGES,
        &["--system-site-packages"],
    )?;
    mount_tracefs()?;
    Ok(())
}

fn installed(package: &str) -> bool {
    // `dpkg -s` also succeeds for removed-but-configured packages; check the status line.
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.ends_with(b"install ok installed"))
}

/// What satisfies a need (the package, an alternative, or a program on PATH), if anything.
fn present(need: &Need) -> Option<String> {
    if installed(need.package) {
        return Some(need.package.to_owned());
    }
    if let Some(alt) = need.alternatives.iter().find(|alt| installed(alt)) {
        return Some((*alt).to_owned());
    }
    need.program
        .filter(|program| on_path(program))
        .map(|program| format!("{program} on PATH"))
}

fn install_packages() -> Result<()> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for need in NEEDS {
        match present(need) {
            Some(what) => found.push(what),
            None => missing.push(need.package),
        }
    }
    println!("setup: present: {}", found.join(", "));
    if missing.is_empty() {
        println!("setup: nothing to install; apt skipped");
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    // One update per run, and only when apt has never fetched lists or the install fails
    // on stale ones.
    let lists_empty = std::fs::read_dir("/var/lib/apt/lists").map_or(true, |d| {
        !d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
    });
    let mut updated = false;
    if lists_empty {
        exec(&mut apt(&["update"]))?;
        updated = true;
    }
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(&missing);
    if let Err(e) = exec(&mut install) {
        if updated {
            return Err(e);
        }
        println!("setup: install failed ({e:#}); refreshing package lists once and retrying");
        exec(&mut apt(&["update"]))?;
        exec(&mut install)?;
    }
    println!("setup: installed {}", missing.join(" "));
    Ok(())
}

/// A venv at `path` (from the Debian python, so the traced executable is
/// /usr/bin/python3.*; `venv_args` for `python3 -m venv`) with the pinned `packages`,
/// made or fixed only when they are not all there.
fn make_venv(path: &str, packages: &[(&str, &str)], venv_args: &[&str]) -> Result<()> {
    let venv = Path::new(path);
    let python = venv.join("bin/python");
    let checks: Vec<String> = packages
        .iter()
        .map(|(name, version)| format!("version({name:?}) == {version:?}"))
        .collect();
    let check = format!(
        "from importlib.metadata import version; import sys; sys.exit(0 if {} else 1)",
        checks.join(" and ")
    );
    let pins: Vec<String> = packages
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if succeeds(Command::new(&python).args(["-c", &check])) {
        println!("setup: {path} already has {}", pins.join(" "));
        return Ok(());
    }
    if !python.exists() {
        exec(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .args(venv_args)
                .arg(path),
        )?;
    }
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&pins),
    )?;
    println!("setup: {path}: installed {}", pins.join(" "));
    Ok(())
}

fn tracefs_mounted() -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(TRACEFS) && fstype == Some("tracefs")
    }))
}

fn mount_tracefs() -> Result<()> {
    if tracefs_mounted()? {
        println!("setup: tracefs already mounted at {TRACEFS}");
        return Ok(());
    }
    if !Path::new(TRACEFS).is_dir() {
        std::fs::create_dir_all(TRACEFS).with_context(|| format!("creating {TRACEFS}"))?;
    }
    exec(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))?;
    println!("setup: mounted tracefs at {TRACEFS}");
    if !Path::new(TRACEFS).join("events/syscalls").exists() {
        println!(
            "setup: warning: {TRACEFS}/events/syscalls is missing (kernel without syscall tracepoints?)"
        );
    }
    Ok(())
}
