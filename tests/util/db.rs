//! Throwaway database and cache servers on loopback for the database tests: a free port,
//! a temp dir, killed (process group) on drop through [`Server`]. PostgreSQL, Redis and
//! MariaDB also serve TLS only, with a test's [`Certs`].

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::tls::Certs;
use super::{Server, TempDir, free_port, python, run_ok};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Numeric uid and gid of a system user (`id -u`, `id -g`).
fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {user} (install postgresql)"))
    };
    (id("-u"), id("-g"))
}

/// PostgreSQL: `initdb` (trust auth) and `postgres` as user `postgres`, listening on
/// 127.0.0.1 only; `setup_sql` runs through `psql` once it accepts connections.
/// The server's pid is the postmaster: backends are its children.
pub fn postgres(setup_sql: &str) -> Server {
    start_postgres(setup_sql, None)
}

/// [`postgres`] with TLS on (`certs`' server certificate) and TLS only: `pg_hba.conf`
/// accepts TCP clients through `hostssl` alone.
pub fn postgres_tls(setup_sql: &str, certs: &Certs) -> Server {
    start_postgres(setup_sql, Some(certs))
}

/// The server's copies of `certs`' certificate and key in `dir`, and an `hba_file` that
/// admits TCP clients over TLS only: `-c` settings for `postgres`. The key is made
/// private (0600) before `dir` is given to the postgres user: the server refuses a key
/// others may read.
fn postgres_tls_settings(dir: &Path, certs: &Certs) -> Vec<String> {
    let copy = |from: &Path, name: &str| -> PathBuf {
        let to = dir.join(name);
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        to
    };
    let cert = copy(&certs.cert, "server.pem");
    let key = copy(&certs.key, "server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    let hba = dir.join("pg_hba_tls.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("writing pg_hba_tls.conf");
    let file = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    vec![
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", file(&cert)),
        format!("ssl_key_file={}", file(&key)),
        format!("hba_file={}", file(&hba)),
    ]
}

fn start_postgres(setup_sql: &str, tls: Option<&Certs>) -> Server {
    let (uid, gid) = ids_of("postgres");
    let dir = TempDir::new("pg");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("pg data dir");
    let settings = tls.map_or_else(Vec::new, |certs| postgres_tls_settings(dir.path(), certs));
    run_ok(
        "chown",
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path()),
    );
    run_ok(
        "initdb",
        Command::new(Path::new(PG_BIN).join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .uid(uid)
            .gid(gid),
    );
    let port = free_port();
    let mut cmd = Command::new(Path::new(PG_BIN).join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-k"])
        .arg(dir.path())
        .uid(uid)
        .gid(gid);
    for setting in &settings {
        cmd.args(["-c", setting]);
    }
    let server = Server::spawn("postgres", cmd, port, dir);
    // The port accepts before recovery ends ("the database system is starting up").
    let ready = super::wait_until(std::time::Duration::from_secs(30), || {
        Command::new(Path::new(PG_BIN).join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(ready, "postgres on {port} never became ready");
    run_ok(
        "psql",
        Command::new(Path::new(PG_BIN).join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1"])
            .args(["-p", &port.to_string(), "-c", setup_sql]),
    );
    server
}

/// `redis-server` without persistence.
pub fn redis() -> Server {
    start_redis(None)
}

/// [`redis`] serving TLS only (`certs`' server certificate; clients need none).
pub fn redis_tls(certs: &Certs) -> Server {
    start_redis(Some(certs))
}

fn start_redis(tls: Option<&Certs>) -> Server {
    let port = free_port().to_string();
    let dir = TempDir::new("redis");
    let mut cmd = Command::new("redis-server");
    match tls {
        None => cmd.args(["--port", &port]),
        Some(certs) => cmd
            .args(["--port", "0", "--tls-port", &port])
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .args(["--tls-auth-clients", "no"]),
    };
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path());
    Server::spawn("redis-server", cmd, port.parse().expect("a port"), dir)
}

/// MariaDB: `mariadb-install-db` then `mariadbd` without grant tables (any user, no
/// password) on 127.0.0.1; `setup_sql` runs through `mariadb` once it accepts.
pub fn mariadb(setup_sql: &str) -> Server {
    start_mariadb(setup_sql, None)
}

/// [`mariadb`] with TLS (`certs`' server certificate), required of TCP clients.
pub fn mariadb_tls(setup_sql: &str, certs: &Certs) -> Server {
    start_mariadb(setup_sql, Some(certs))
}

fn start_mariadb(setup_sql: &str, tls: Option<&Certs>) -> Server {
    let dir = TempDir::new("mariadb");
    let data = dir.join("data");
    run_ok(
        "mariadb-install-db",
        Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=normal"]),
    );
    let port = free_port();
    let socket = dir.join("mysqld.sock");
    let mut cmd = Command::new("mariadbd");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-grant-tables",
        ])
        .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M"]);
    if let Some(certs) = tls {
        let path = |flag: &str, p: &Path| format!("--{flag}={}", p.display());
        cmd.arg(path("ssl-cert", &certs.cert))
            .arg(path("ssl-key", &certs.key))
            .arg(path("ssl-ca", &certs.ca))
            .arg("--require-secure-transport=ON");
    }
    let server = Server::spawn("mariadbd", cmd, port, dir);
    run_ok(
        "mariadb",
        Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", setup_sql]),
    );
    server
}

/// memcached (TCP only).
pub fn memcached() -> Server {
    let port = free_port();
    let mut cmd = Command::new("memcached");
    cmd.args(["-p", &port.to_string(), "-U", "0", "-u", "nobody"])
        .args(["-l", "127.0.0.1"]);
    Server::spawn("memcached", cmd, port, TempDir::new("memcached"))
}

/// Ports of the databases `tests/fixtures/py_db_app.py` uses (0: not used).
#[derive(Default)]
pub struct DbPorts {
    pub postgres: u16,
    pub redis: u16,
    pub mysql: u16,
    pub memcached: u16,
}

/// `tests/fixtures/py_db_app.py`: a web app whose routes query the given databases.
pub fn db_app(ports: &DbPorts) -> Server {
    start_db_app(ports, None, &python())
}

/// [`db_app`] whose PostgreSQL, Redis and MySQL connections use TLS, trusting `ca`.
pub fn db_app_tls(ports: &DbPorts, ca: &Path) -> Server {
    start_db_app(ports, Some(ca), &python())
}

/// [`db_app_tls`] run by the interpreter `python` (a venv with other drivers), the
/// modules `preload` imported at start (their libraries mapped before an agent attaches).
pub fn db_app_tls_with(
    ports: &DbPorts,
    ca: &Path,
    python: &std::ffi::OsStr,
    preload: &str,
) -> Server {
    start_db_app_env(ports, Some(ca), python, &[("PY_DB_APP_PRELOAD", preload)])
}

fn start_db_app(ports: &DbPorts, ca: Option<&Path>, python: &std::ffi::OsStr) -> Server {
    start_db_app_env(ports, ca, python, &[])
}

fn start_db_app_env(
    ports: &DbPorts,
    ca: Option<&Path>,
    python: &std::ffi::OsStr,
    env: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.envs(env.iter().copied());
    cmd.arg(super::fixture("py_db_app.py"))
        .arg(port.to_string())
        .args([ports.postgres, ports.redis, ports.mysql, ports.memcached].map(|p| p.to_string()))
        .args(ca)
        .env_remove("OTEL_SERVICE_NAME");
    Server::spawn("py_db_app.py", cmd, port, TempDir::new("dbapp"))
}
