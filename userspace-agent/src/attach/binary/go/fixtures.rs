//! Go programs built at test time, once per test process, into a temp directory keyed by
//! the toolchain, source and flags (so later runs reuse them): a TLS client that calls
//! `(*tls.Conn).Write` and `Read`, linked several ways.
//!
//! Which Go: `/usr/local/go/bin/go` (the machine's Go, 1.26.8 here; its absence skips, and
//! fails under `CI`) and Debian's `/usr/lib/go-1.19/bin/go` (package `golang-1.19-go`;
//! optional, skipped if absent even under `CI`). `GOCACHE`/`GOPATH` live in the temp
//! directory, `GOTOOLCHAIN=local` so no other toolchain is fetched, `GOFLAGS` is cleared.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::attach::binary::testutil::{run, scratch};

/// The machine's Go.
pub(crate) const GO_MAIN: &str = "/usr/local/go/bin/go";
/// Debian's Go 1.19 (optional).
pub(crate) const GO_119: &str = "/usr/lib/go-1.19/bin/go";

/// The module the program is built in (buildinfo's `mod` line).
pub(crate) const MODULE: &str = "example.com/sonde/tlsclient";
const GO_MOD: &str = "module example.com/sonde/tlsclient\n\ngo 1.19\n";

const PROGRAM: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

// Dials nothing useful: it only has to link (*tls.Conn).Write and Read.
func main() {
	conn, err := tls.Dial("tcp", "127.0.0.1:1", &tls.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("ping"))
	buf := make([]byte, 16)
	_, _ = conn.Read(buf)
}
"#;

/// How a fixture is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Link {
    /// `CGO_ENABLED=0 go build`: static, `.symtab` and DWARF.
    Plain,
    /// The same with `-ldflags=-s -w`: no `.symtab`, no DWARF.
    Stripped,
    /// `-buildmode=pie` (cgo on: dynamically linked, pointers relocated at load).
    Pie,
    /// `-buildmode=pie -ldflags=-s -w`.
    PieStripped,
    /// `-ldflags=-linkmode=external` (cgo, the C linker: `.text` no longer starts at
    /// `runtime.text`).
    External,
    /// `-ldflags='-linkmode=external -s -w'`.
    ExternalStripped,
}

impl Link {
    pub(crate) const ALL: [Link; 6] = [
        Link::Plain,
        Link::Stripped,
        Link::Pie,
        Link::PieStripped,
        Link::External,
        Link::ExternalStripped,
    ];

    fn args(self) -> (&'static str, Vec<&'static str>) {
        match self {
            Link::Plain => ("0", vec![]),
            Link::Stripped => ("0", vec!["-ldflags=-s -w"]),
            Link::Pie => ("1", vec!["-buildmode=pie"]),
            Link::PieStripped => ("1", vec!["-buildmode=pie", "-ldflags=-s -w"]),
            Link::External => ("1", vec!["-ldflags=-linkmode=external"]),
            Link::ExternalStripped => ("1", vec!["-ldflags=-linkmode=external -s -w"]),
        }
    }

    /// Whether the build keeps `.symtab` and DWARF.
    pub(crate) fn unstripped(self) -> bool {
        matches!(self, Link::Plain | Link::Pie | Link::External)
    }

    /// The unstripped twin.
    pub(crate) fn twin(self) -> Link {
        match self {
            Link::Plain | Link::Stripped => Link::Plain,
            Link::Pie | Link::PieStripped => Link::Pie,
            Link::External | Link::ExternalStripped => Link::External,
        }
    }
}

/// The programs one toolchain built.
pub(crate) struct Built {
    /// `go version`'s output, e.g. `go version go1.26.8 linux/amd64`.
    pub(crate) go_version: String,
    /// The version as buildinfo writes it, e.g. `go1.26.8`.
    pub(crate) version_string: String,
    builds: Vec<(Link, Result<PathBuf, String>)>,
}

impl Built {
    /// The binary built with `link`, or why it could not be (e.g. no C compiler for cgo).
    pub(crate) fn get(&self, link: Link) -> Result<&Path, &str> {
        self.builds
            .iter()
            .find(|(l, _)| *l == link)
            .map_or(Err("not built"), |(_, r)| {
                r.as_deref().map_err(String::as_str)
            })
    }
}

/// The machine's Go builds, or why there are none (no Go).
pub(crate) fn main_go() -> Result<&'static Built, &'static str> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_all(GO_MAIN, &Link::ALL))
        .as_ref()
        .map_err(String::as_str)
}

/// Debian Go 1.19's builds (plain and stripped only), or why there are none.
pub(crate) fn go_119() -> Result<&'static Built, &'static str> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_all(GO_119, &[Link::Plain, Link::Stripped]))
        .as_ref()
        .map_err(String::as_str)
}

fn build_all(go: &str, links: &[Link]) -> Result<Built, String> {
    if !Path::new(go).exists() {
        return Err(format!("{go} is not installed"));
    }
    let go_version = String::from_utf8_lossy(&run(Command::new(go).arg("version"))?)
        .trim()
        .to_owned();
    let version_string = go_version
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| format!("unexpected `go version` output {go_version:?}"))?
        .to_owned();
    let root = scratch("go");
    let source_dir = root.join(format!("src-{:016x}", hash(&(PROGRAM, GO_MOD))));
    std::fs::create_dir_all(&source_dir).map_err(|e| e.to_string())?;
    for (name, text) in [("main.go", PROGRAM), ("go.mod", GO_MOD)] {
        let path = source_dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
        }
    }
    let builds = links
        .iter()
        .map(|&link| (link, build(go, &go_version, &root, &source_dir, link)))
        .collect();
    Ok(Built {
        go_version,
        version_string,
        builds,
    })
}

fn build(
    go: &str,
    go_version: &str,
    root: &Path,
    source: &Path,
    link: Link,
) -> Result<PathBuf, String> {
    let (cgo, flags) = link.args();
    let out = root.join(format!(
        "tlsclient-{:016x}",
        hash(&(go, go_version, PROGRAM, GO_MOD, format!("{link:?}"), &flags))
    ));
    if out.exists() {
        return Ok(out);
    }
    // Build beside, then rename: another test process may be building the same file.
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    let mut cmd = Command::new(go);
    cmd.arg("build")
        .args(&flags)
        .arg("-o")
        .arg(&partial)
        .arg(".")
        .current_dir(source)
        .env("GOCACHE", root.join("gocache"))
        .env("GOPATH", root.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("GOOS", "linux")
        .env("GOARCH", "amd64")
        .env("CGO_ENABLED", cgo);
    run(&mut cmd)?;
    std::fs::rename(&partial, &out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
