//! TLS fixtures for `tls.rs`: throwaway certificates made per test with the `openssl`
//! CLI (never a committed key), HTTPS servers (Python `ssl`, nginx, Node), a start gate
//! for a client that must not run before the agent attached, the statically linked and
//! stripped OpenSSL client (`fixtures/static_tls_client.c`, built with `cc`), and the Go
//! crypto/tls programs of `fixtures/go_tls/` (built with the Go at `/usr/local/go`).
//!
//! Every URL names `localhost` (the certificate's DNS name; it also holds `127.0.0.1`),
//! and every server listens on 127.0.0.1.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::go::{go_build_command, go_toolchain, go119_available};
use super::{
    Proc, Server, SpanTree, TempDir, check, counter, eqnice, fixture, free_port, node, python,
    run_ok, tool_available, wait_until,
};

// ===== certificates =====

/// `openssl` extension sections: a CA that may sign, and a server leaf for `localhost`
/// and `127.0.0.1` (what Python, Node, Go and curl all verify without complaint).
const OPENSSL_CONF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = sonde-e2e
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Whether the `openssl` CLI is there to make certificates (see [`tool_available`]).
pub fn openssl_available() -> bool {
    let present = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    tool_available(
        present,
        "the openssl CLI is missing (apt-get install openssl): it makes the test certificates",
    )
}

/// A throwaway CA and a server certificate it signed, for `localhost` and `127.0.0.1`
/// (EC P-256, valid two days), in a temp dir removed with this value.
pub struct Certs {
    /// The CA certificate clients trust (PEM).
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, unencrypted).
    pub key: PathBuf,
    dir: TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = TempDir::new("certs");
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONF).expect("writing openssl.cnf");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| panic!("running openssl {args:?}: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-new",
            "-days",
            "2",
            "-config",
            "openssl.cnf",
        ];
        ca.extend(ec);
        ca.extend(["-extensions", "ca", "-subj", "/CN=sonde-e2e throwaway CA"]);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&ca);
        let mut csr = vec!["req", "-new", "-config", "openssl.cnf"];
        csr.extend(ec);
        csr.extend(["-subj", "/CN=localhost", "-keyout", "server.key"]);
        csr.extend(["-out", "server.csr"]);
        openssl(&csr);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-CAserial",
            "ca.srl",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "leaf",
            "-out",
            "server.pem",
        ]);
        Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `https://localhost:<port><path>`: the name the certificate holds.
pub fn https_url(port: u16, path: &str) -> String {
    format!("https://localhost:{port}{path}")
}

/// Whether Python has `requests` (see [`tool_available`]).
pub fn requests_available() -> bool {
    let present = Command::new(python())
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    tool_available(
        present,
        "Python `requests` is missing (apt-get install python3-requests)",
    )
}

// ===== the exit report =====

/// The exit report after TLS traffic read through OpenSSL: ciphertext recognised and
/// skipped (counted), never parsed (no desync, no unknown protocol), every plaintext
/// call mapped to its connection.
pub fn assert_tls_counters(tree: &SpanTree, counters: &BTreeMap<String, u64>) {
    eqnice!(
        tree,
        counter(tree, counters, "http_desyncs"),
        0,
        "ciphertext is never parsed: no desync"
    );
    eqnice!(
        tree,
        counter(tree, counters, "unknown_protocol_connections"),
        0,
        "TLS connections are recognised, not counted as an unknown protocol"
    );
    check!(
        tree,
        counter(tree, counters, "tls_ciphertext_records") > 0,
        "the socket hooks saw ciphertext records and skipped them"
    );
    eqnice!(
        tree,
        counter(tree, counters, "tls_unmapped_calls"),
        0,
        "every SSL_read/SSL_write was mapped to its connection"
    );
    eqnice!(
        tree,
        counter(tree, counters, "tls_unreadable_connections"),
        0,
        "every TLS connection's plaintext was read"
    );
}

// ===== servers =====

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `fixtures/py_tls_server.py`: `py_server.py`'s routes over TLS (Python `ssl`, that is
/// OpenSSL's libssl.so.3), keep-alive, on `Server::port`.
pub fn py_tls_server(certs: &Certs) -> Server {
    let port = free_port();
    let mut cmd = Command::new(python());
    cmd.arg(fixture("py_tls_server.py"))
        .arg(&certs.cert)
        .arg(&certs.key)
        .arg(port.to_string())
        .env_remove("OTEL_SERVICE_NAME");
    Server::spawn("py_tls_server.py", cmd, port, TempDir::new("pytls"))
}

/// [`py_tls_server`] that also serves plaintext HTTP, from the same process, on the
/// returned port (`Server::port` is the TLS one).
pub fn py_tls_and_plain_server(certs: &Certs) -> (Server, u16) {
    let (port, plain) = (free_port(), free_port());
    let mut cmd = Command::new(python());
    cmd.arg(fixture("py_tls_server.py"))
        .arg(&certs.cert)
        .arg(&certs.key)
        .arg(port.to_string())
        .arg(plain.to_string())
        .env_remove("OTEL_SERVICE_NAME");
    let server = Server::spawn("py_tls_server.py", cmd, port, TempDir::new("pytls"));
    let up = wait_until(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", plain)).is_ok()
    });
    assert!(
        up,
        "plaintext port {plain} not listening:\n{}",
        server.logs()
    );
    (server, plain)
}

/// `fixtures/node_tls_server.js`: Node `https` (its OpenSSL is linked into the node
/// binary, which exports the `SSL_*` symbols; no libssl.so.3 is loaded).
pub fn node_tls_server(certs: &Certs) -> Server {
    let port = free_port();
    let mut cmd = Command::new(node());
    cmd.arg(fixture("node_tls_server.js"))
        .arg(&certs.cert)
        .arg(&certs.key)
        .arg(port.to_string())
        .env_remove("OTEL_SERVICE_NAME");
    Server::spawn("node_tls_server.js", cmd, port, TempDir::new("nodetls"))
}

/// nginx from `fixtures/nginx_tls.conf` (HTTPS, one worker, keep-alive) with this
/// test's certificate; `setup` fills the docroot.
pub fn nginx_tls(certs: &Certs, setup: impl FnOnce(&Path)) -> Server {
    Server::nginx(
        "nginx_tls.conf",
        &[
            ("CERT", path_str(&certs.cert).to_owned()),
            ("KEY", path_str(&certs.key).to_owned()),
        ],
        setup,
    )
}

// ===== a client held until the agent is attached =====

/// A named pipe a client blocks on before it starts (`sh` reads a line from it, then
/// execs the client, which keeps the pid): for clients such as curl that cannot wait
/// for a file themselves. Unlike a polling loop, it forks nothing while it waits, so
/// the agent sees one process and one exec.
pub struct Gate {
    fifo: PathBuf,
    _dir: TempDir,
}

impl Gate {
    pub fn new() -> Gate {
        let dir = TempDir::new("gate");
        let fifo = dir.join("gate");
        let c = CString::new(fifo.as_os_str().as_bytes()).expect("temp path without NUL");
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        Gate { fifo, _dir: dir }
    }

    /// Spawns `program args...`, held until [`Gate::open`]; its pid is already the
    /// client's.
    pub fn spawn<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"read _ < "$0" && exec "$@""#)
            .arg(&self.fifo)
            .arg(program)
            .args(args);
        Proc::spawn(cmd)
    }

    /// Lets the held client go (waits up to 10 s for it to be reading the pipe).
    pub fn open(&self) {
        let mut opened = None;
        let ready = wait_until(Duration::from_secs(10), || {
            // Non-blocking: ENXIO until the reader is there, rather than hanging.
            opened = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.fifo)
                .ok();
            opened.is_some()
        });
        let mut pipe = opened
            .filter(|_| ready)
            .unwrap_or_else(|| panic!("nobody reads {} after 10 s", self.fifo.display()));
        pipe.write_all(b"go\n").expect("writing to the gate");
    }
}

// ===== ELF =====

/// The section names of an ELF64 little-endian file (enough to tell a stripped binary:
/// no `.symtab`). An error, not a panic, for a file that is not such an ELF.
pub fn elf_section_names(path: &Path) -> Result<Vec<String>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head)
        .map_err(|e| format!("{}: ELF header: {e}", path.display()))?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(format!(
            "{} is not an ELF64 little-endian file",
            path.display()
        ));
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let shoff = u64_at(&head, 0x28);
    let shentsize = usize::from(u16_at(&head, 0x3a));
    let shnum = usize::from(u16_at(&head, 0x3c));
    let shstrndx = usize::from(u16_at(&head, 0x3e));
    if shentsize < 64 || shstrndx >= shnum {
        return Err(format!("{}: odd section header table", path.display()));
    }
    let mut table = vec![0u8; shentsize * shnum];
    f.seek(SeekFrom::Start(shoff))
        .and_then(|_| f.read_exact(&mut table))
        .map_err(|e| format!("{}: section headers: {e}", path.display()))?;
    let header = |i: usize| &table[i * shentsize..(i + 1) * shentsize];
    let strtab = header(shstrndx);
    let (str_off, str_size) = (u64_at(strtab, 0x18), u64_at(strtab, 0x20));
    let mut names = vec![0u8; usize::try_from(str_size).map_err(|e| e.to_string())?];
    f.seek(SeekFrom::Start(str_off))
        .and_then(|_| f.read_exact(&mut names))
        .map_err(|e| format!("{}: section names: {e}", path.display()))?;
    Ok((0..shnum)
        .map(|i| {
            // sh_name: the name's offset in the section-name table.
            let h = header(i);
            let at =
                usize::try_from(u32::from_le_bytes([h[0], h[1], h[2], h[3]])).unwrap_or(usize::MAX);
            let name = names.get(at..).unwrap_or_default();
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        })
        .collect())
}

fn assert_symtab(bin: &Path, want: bool) {
    let names = elf_section_names(bin).unwrap_or_else(|e| panic!("reading {e}"));
    assert_eq!(
        names.iter().any(|n| n == ".symtab"),
        want,
        "{} should {}have a .symtab; sections: {names:?}",
        bin.display(),
        if want { "" } else { "not " }
    );
}

// ===== the stripped, statically linked OpenSSL client =====

/// Whether `cc` and OpenSSL's static archives (libssl-dev) are there to build
/// [`build_static_tls_client`] (see [`tool_available`]).
pub fn static_tls_client_buildable() -> bool {
    let archive = |name: &str| {
        Command::new("cc")
            .arg(format!("-print-file-name={name}"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            // cc prints the bare name back when it finds no such file.
            .is_some_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).is_absolute())
    };
    let strip = Command::new("strip")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    tool_available(
        archive("libssl.a") && archive("libcrypto.a") && strip,
        "cc, strip or OpenSSL's static libraries are missing (apt-get install gcc libssl-dev)",
    )
}

/// Builds `fixtures/static_tls_client.c` into `dir` with libssl.a and libcrypto.a linked
/// in (libc stays dynamic), then `strip --strip-all`: OpenSSL's code is in the binary,
/// but no symbol table, and its dynamic symbols name only libc. Checked: no `.symtab`.
pub fn build_static_tls_client(dir: &Path) -> PathBuf {
    let bin = dir.join("static_tls_client");
    run_ok(
        "building static_tls_client.c",
        Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(fixture("static_tls_client.c"))
            .args(["-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic"]),
    );
    run_ok(
        "stripping static_tls_client",
        Command::new("strip").arg("--strip-all").arg(&bin),
    );
    assert_symtab(&bin, false);
    bin
}

// ===== Go (crypto/tls) =====

/// `fixtures/go_tls/client` built by Debian's Go 1.19 with `-ldflags=-s -w` into `dir`:
/// an older release, stripped, whose struct offsets only the table by release gives
/// (`Conn.vers` sits 8 bytes earlier than from go1.21 on). None, said, when Go 1.19 is
/// missing (fails under CI). The client's code builds with 1.19; `go.mod`'s `go 1.26`
/// line is advisory to that toolchain.
pub fn build_go119_tls_client(dir: &Path) -> Option<PathBuf> {
    let go = go119_available()?;
    let out = dir.join("client-go119");
    let mut cmd = go_build_command(&go, "go_tls", true, &out, &["./client"], dir, "-119");
    run_ok("go1.19 build of fixtures/go_tls/client", &mut cmd);
    assert_symtab(&out, false);
    Some(out)
}

/// The two programs of `fixtures/go_tls/`, built.
pub struct GoTls {
    pub server: PathBuf,
    pub client: PathBuf,
}

/// Builds `fixtures/go_tls/` (`server` and `client`) into `dir`; `stripped` adds
/// `-ldflags=-s -w` (no symbol table, no DWARF: only the pclntab still names the
/// functions). Checked: `.symtab` present exactly when not stripped. Pure Go
/// (`CGO_ENABLED=0`), no download (`GOTOOLCHAIN=local`, `GOPROXY=off`: stdlib only). The
/// build cache is shared by every test run (`$TMPDIR/sonde-e2e-gocache-<euid>`, Go locks it):
/// a cold build of net/http takes half a minute on these machines.
pub fn build_go_tls(dir: &Path, stripped: bool) -> GoTls {
    let out_dir = dir.join(if stripped { "go-stripped" } else { "go" });
    std::fs::create_dir_all(&out_dir).expect("creating the Go output dir");
    // A trailing slash: `-o` names a directory, one binary per package.
    let mut o = OsString::from(out_dir.as_os_str());
    o.push("/");
    let mut cmd = go_build_command(
        &go_toolchain(),
        "go_tls",
        stripped,
        Path::new(&o),
        &["./server", "./client"],
        dir,
        "",
    );
    run_ok("go build of fixtures/go_tls", &mut cmd);
    let built = GoTls {
        server: out_dir.join("server"),
        client: out_dir.join("client"),
    };
    assert_symtab(&built.server, !stripped);
    assert_symtab(&built.client, !stripped);
    built
}

impl GoTls {
    /// Starts the Go HTTPS server on a free port.
    pub fn start_server(&self, certs: &Certs) -> Server {
        let port = free_port();
        let mut cmd = Command::new(&self.server);
        cmd.arg(&certs.cert)
            .arg(&certs.key)
            .arg(port.to_string())
            .env_remove("OTEL_SERVICE_NAME");
        Server::spawn("go_tls server", cmd, port, TempDir::new("gotls"))
    }

    /// The client's command line: trust `certs`' CA, GET each URL in turn (one
    /// keep-alive connection), print `<status> <body bytes>` per URL.
    pub fn client_command(&self, certs: &Certs, urls: &[String]) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg(&certs.ca).args(urls);
        cmd
    }
}
