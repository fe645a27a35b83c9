//! Throwaway database and cache servers on loopback for the database tests: a free port,
//! a temp dir, killed (process group) on drop through [`Server`].

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::{Server, TempDir, free_port, python};

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

fn run_ok(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} ({cmd:?})"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL: `initdb` (trust auth) and `postgres` as user `postgres`, listening on
/// 127.0.0.1 only; `setup_sql` runs through `psql` once it accepts connections.
/// The server's pid is the postmaster: backends are its children.
pub fn postgres(setup_sql: &str) -> Server {
    let (uid, gid) = ids_of("postgres");
    let dir = TempDir::new("pg");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("pg data dir");
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
    let port = free_port();
    let dir = TempDir::new("redis");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path());
    Server::spawn("redis-server", cmd, port, dir)
}

/// MariaDB: `mariadb-install-db` then `mariadbd` without grant tables (any user, no
/// password) on 127.0.0.1; `setup_sql` runs through `mariadb` once it accepts.
pub fn mariadb(setup_sql: &str) -> Server {
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
    let port = free_port();
    let mut cmd = Command::new(python());
    cmd.arg(super::fixture("py_db_app.py"))
        .arg(port.to_string())
        .args([ports.postgres, ports.redis, ports.mysql, ports.memcached].map(|p| p.to_string()))
        .env_remove("OTEL_SERVICE_NAME");
    Server::spawn("py_db_app.py", cmd, port, TempDir::new("dbapp"))
}
