//! Go fixtures: which toolchain builds them (the machine's Go at `/usr/local/go`, and
//! Debian's Go 1.19 for one older-release check each), and the one way they are built:
//! offline (`GOTOOLCHAIN=local`, `GOPROXY=off`: standard library only), pure Go, with a
//! build cache shared by every test and run.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{fixture, tool_available};

/// The Go toolchain of these fixtures: `$SONDE_E2E_GO`, else `/usr/local/go/bin/go`.
/// Not Debian's `golang-go` (Go 1.19): `fixtures/go_tls/go.mod` says `go 1.26`, and the
/// Go programs Sonde meets in production are built by current Go. Go 1.19 builds one
/// program only, on purpose: [`build_go119_tls_client`].
pub fn go_toolchain() -> PathBuf {
    std::env::var_os("SONDE_E2E_GO")
        .map_or_else(|| PathBuf::from("/usr/local/go/bin/go"), PathBuf::from)
}

/// `go version`'s output from the toolchain `go`, if it runs.
fn go_version_of(go: &Path) -> Option<String> {
    Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `go1.MINOR` from `go version` output.
fn go_minor(version: &str) -> Option<u32> {
    let v = version.split_whitespace().nth(2)?.strip_prefix("go1.")?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Whether [`go_toolchain`] is Go 1.26 or newer (see [`tool_available`]).
pub fn go_available() -> bool {
    let go = go_toolchain();
    let version = go_version_of(&go);
    tool_available(
        version
            .as_deref()
            .and_then(go_minor)
            .is_some_and(|m| m >= 26),
        &format!(
            "Go 1.26+ is missing at {} ({}; set SONDE_E2E_GO to another go)",
            go.display(),
            version.as_deref().map_or("not runnable", str::trim)
        ),
    )
}

/// Debian's Go 1.19 (`golang-go`, `cargo xtask setup` installs it): `$SONDE_E2E_GO119`,
/// else `/usr/lib/go-1.19/bin/go`.
pub fn go119_toolchain() -> PathBuf {
    std::env::var_os("SONDE_E2E_GO119")
        .map_or_else(|| PathBuf::from("/usr/lib/go-1.19/bin/go"), PathBuf::from)
}

/// The Go build cache the fixtures share across tests and runs, one per user (a cache
/// root made cannot be written by another user).
fn go_cache(tag: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("sonde-e2e-gocache-{euid}{tag}"))
}

/// [`go119_toolchain`] when it is there and is Go 1.19; None, said, otherwise (a failure
/// under CI).
pub fn go119_available() -> Option<PathBuf> {
    let go = go119_toolchain();
    let version = go_version_of(&go);
    let is_119 = version.as_deref().and_then(go_minor) == Some(19);
    tool_available(
        is_119,
        &format!("Go 1.19 is missing at {} (golang-go)", go.display()),
    )
    .then_some(go)
}

/// `go build` of packages `packages` of `fixtures/<fixture_dir>` into `out` (a file, or a
/// directory when it ends in `/`), with `-ldflags=-s -w` when `stripped` (no symbol table,
/// no DWARF: only the pclntab names the functions). GOPATH under `scratch`, suffixed by
/// `tag` (one per toolchain).
pub fn go_build_command(
    go: &Path,
    fixture_dir: &str,
    stripped: bool,
    out: &Path,
    packages: &[&str],
    scratch: &Path,
    tag: &str,
) -> Command {
    let mut cmd = Command::new(go);
    cmd.arg("build");
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg("-o")
        .arg(out)
        .args(packages)
        .current_dir(fixture(fixture_dir))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOWORK", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", go_cache(tag))
        .env("GOMODCACHE", go_cache("-modules"))
        .env("GOPATH", scratch.join(format!("gopath{tag}")));
    cmd
}

/// [`go_build_command`] for a fixture with module dependencies (`go.mod`, `go.sum`): they
/// come from the Go module proxy (`$GOPROXY`, else Go's default), checked against `go.sum`.
pub fn go_build_command_online(
    go: &Path,
    fixture_dir: &str,
    out: &Path,
    scratch: &Path,
) -> Command {
    let mut cmd = go_build_command(go, fixture_dir, false, out, &["."], scratch, "");
    cmd.env_remove("GOPROXY");
    cmd
}
