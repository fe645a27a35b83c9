//! What the `trace_tls` check needs besides curl: the Go HTTPS server of the TLS tests
//! (`tests/fixtures/go_tls/server`, built here by the machine's Go, static) and a
//! self-signed certificate for 127.0.0.1 (the `openssl` CLI), in one directory that
//! the host leg reads in place and the guest gets at [`GUEST_DIR`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::util;

/// Where the files are in the guest (`xtask vm-guest --tls-dir`'s default).
pub const GUEST_DIR: &str = "/etc/sonde-vm";
/// The files, by name in the directory.
pub const SERVER: &str = "go_tls_server";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

/// The Go toolchain the TLS tests use (`SONDE_E2E_GO`, else the machine's Go 1.26).
fn go() -> PathBuf {
    std::env::var_os("SONDE_E2E_GO")
        .map_or_else(|| PathBuf::from("/usr/local/go/bin/go"), PathBuf::from)
}

/// Builds the server and makes the certificate in `dir`.
pub fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = util::workspace_root();
    let go = go();
    util::exec(
        Command::new(&go)
            .args(["build", "-o"])
            .arg(dir.join(SERVER))
            .arg("./server")
            .current_dir(root.join("tests/fixtures/go_tls"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0"),
    )
    .with_context(|| format!("building the Go TLS server with {} (Go 1.26)", go.display()))?;
    // An EC key: generated in milliseconds, and cheap to use under TCG.
    util::exec(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
            ])
            .arg(dir.join(KEY))
            .arg("-out")
            .arg(dir.join(CERT)),
    )
    .context("making the TLS check's certificate (openssl CLI)")?;
    Ok(())
}
