//! Database calls inside TLS: the OpenSSL probes of `tls.rs` give a traced app's
//! PostgreSQL, Redis and MariaDB calls over TLS the spans `databases.rs` asserts in the
//! clear. PostgreSQL and MariaDB switch to TLS inside their protocol (an SSLRequest
//! answered 'S', a MySQL SSL request packet): the parser stops at the switch and resumes
//! on OpenSSL's plaintext. Redis is TLS from its first byte.
//!
//! What every test here holds the agent to:
//! - each call is the CLIENT span it is in the clear (name, `db.system.name`, redacted
//!   `db.query.text`, `server.port`, status and error code), a `thread` child of the web
//!   request's SERVER span, with `sonde.tls.library` = `openssl`;
//! - a traced database server's span of each call (its plaintext read through the
//!   server's own OpenSSL) is the call's child through the same-host join (`local_peer`),
//!   also marked `openssl`;
//! - the exit report: ciphertext skipped and never parsed (`tls.rs`'s counters), no
//!   database bytes skipped or calls dropped (`db_desync_bytes`, `db_dropped_calls` = 0).
//!
//! The servers take TLS clients only (`hostssl`, `--port 0`, `require_secure_transport`),
//! so a span proves the plaintext came from inside TLS. One test runs the app's psycopg2
//! on OpenSSL 1.1 (the psycopg2-binary wheel's own libssl), the others on Debian's 3.0. Without the probes (`--no-tls`),
//! a PostgreSQL connection that switched to TLS gives no span and no desync: counted in
//! `db_tls_connections`.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use util::db::{self, DbPorts};
use util::tls::*;
use util::*;

/// `sonde.tls.library` of a span built from OpenSSL's plaintext.
const OPENSSL: &str = "openssl";

const USERS_SQL: &str = "CREATE TABLE users (id int PRIMARY KEY, name text, visits int); \
                         INSERT INTO users VALUES (1, 'ada', 0), (2, 'bob', 0);";

/// One database call as its CLIENT span must show it.
struct Call {
    name: &'static str,
    query: &'static str,
    /// The server's error code (`db.response.status_code`), for a failed call.
    error: Option<&'static str>,
}

const fn ok(name: &'static str, query: &'static str) -> Call {
    Call {
        name,
        query,
        error: None,
    }
}

/// GETs `path` from the app, which must answer 200 with `body`.
fn get(app: &Server, path: &str, body: &str) {
    let c = curl(&[&app.url(path)]);
    assert!(c.status.success(), "curl {path}: {}", c.stderr);
    let got = String::from_utf8_lossy(&c.body);
    assert_eq!(
        (c.writeouts[0].http_code, got.as_ref()),
        (200, body),
        "{path}\n{}",
        app.logs()
    );
}

/// GETs `path` from the app on a connection kept open until `release` exists, and with
/// it the app's handler thread and that thread's database connections. A PostgreSQL
/// backend lives as long as its connection, and the agent reads a forked process's
/// resource from `/proc` when it builds its first span: a backend already gone then
/// would be `unknown_service`.
fn get_held(app: &Server, path: &str, release: &Path) -> Proc {
    raw_client_spawn(&serde_json::json!({
        "port": app.port,
        "steps": [
            {"send": format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n")},
            {"read": 1},
            {"wait_file": release, "timeout": 30},
        ],
    }))
}

/// The web request `path`'s SERVER span, a root read in the clear, and its database
/// calls in order: `calls`, each a `thread` child over TLS; with `db_server`, each call
/// has the database server's span of it as its only child.
fn assert_tls_calls<'a>(
    tree: &'a SpanTree,
    path: &str,
    system: &str,
    port: u16,
    calls: &[Call],
    db_server: bool,
) -> Vec<&'a Value> {
    let request = tree.find(SERVER, &format!("GET {path}"));
    tree.assert_root(request);
    check!(
        tree,
        request.attr("sonde.tls.library").is_none(),
        "the web request came in the clear"
    );
    let got: Vec<_> = tree.children_of(request);
    let names: Vec<_> = got.iter().map(|s| s.name()).collect();
    let want: Vec<_> = calls.iter().map(|c| c.name).collect();
    eqnice!(tree, names, want, "calls under GET {path}, in order");
    for (s, call) in got.iter().zip(calls) {
        tree.assert_child(request, s, "thread");
        eqnice!(tree, s.kind(), CLIENT, "kind of {}", s.summary());
        tree.assert_attr(s, "db.system.name", system);
        tree.assert_attr(s, "db.query.text", call.query);
        tree.assert_attr(s, "server.address", "127.0.0.1");
        tree.assert_attr(s, "server.port", &port.to_string());
        tree.assert_attr(s, "sonde.tls.library", OPENSSL);
        assert_status(tree, s, call);
        let served: Vec<_> = tree.children_of(s);
        if !db_server {
            eqnice!(tree, served.len(), 0, "nothing under {}", s.summary());
            continue;
        }
        eqnice!(
            tree,
            served.len(),
            1,
            "the server's span of {}",
            s.summary()
        );
        let server = served[0];
        eqnice!(tree, server.kind(), SERVER, "kind of {}", server.summary());
        eqnice!(tree, server.name(), call.name, "the same call");
        tree.assert_child(s, server, "local_peer");
        tree.assert_attr(server, "db.system.name", system);
        tree.assert_attr(server, "sonde.tls.library", OPENSSL);
        assert_status(tree, server, call);
        check!(
            tree,
            server.res_attr("process.pid") != s.res_attr("process.pid"),
            "{} is the database's own",
            server.summary()
        );
    }
    got
}

/// Unset for a call that succeeded; an error with the server's code for one that failed.
fn assert_status(tree: &SpanTree, s: &Value, call: &Call) {
    match call.error {
        None => eqnice!(tree, s.status_code(), 0, "status of {}", s.summary()),
        Some(code) => {
            eqnice!(tree, s.status_code(), 2, "status of {}", s.summary());
            tree.assert_attr(s, "db.response.status_code", code);
            tree.assert_attr(s, "error.type", code);
        }
    }
}

/// The exit report: `tls.rs`'s TLS counters, no database byte skipped or call dropped,
/// and `switched` connections that switched to TLS inside their protocol.
fn assert_db_tls_counters(tree: &SpanTree, counters: &BTreeMap<String, u64>, switched: u64) {
    assert_tls_counters(tree, counters);
    for name in ["db_desync_bytes", "db_dropped_calls"] {
        eqnice!(tree, counter(tree, counters, name), 0, "{name}");
    }
    eqnice!(
        tree,
        counter(tree, counters, "db_tls_connections"),
        switched,
        "connections that switched to TLS inside their protocol"
    );
}

// ===== PostgreSQL =====

/// The PostgreSQL calls of the app's `/pg` route.
const PG_CALLS: [Call; 4] = [
    ok("SELECT users", "SELECT id, name FROM users WHERE id = ?"),
    ok("SELECT users", "SELECT count(*) FROM users"),
    ok(
        "UPDATE users",
        "UPDATE users SET visits = visits + ? WHERE id = ?",
    ),
    Call {
        name: "SELECT no_such_table",
        query: "SELECT * FROM no_such_table WHERE id = ?",
        error: Some("42P01"),
    },
];

/// psycopg2 (libpq, `sslmode=require`) in a traced web app and a traced PostgreSQL 15
/// that takes TLS clients only: the app's SSLRequest is answered 'S', and the startup,
/// authentication and four queries (one failing) come as OpenSSL's plaintext on both
/// sides. Four CLIENT spans under the web request, each with the backend's SERVER span
/// under it; both connections' switch to TLS counted.
#[test]
fn postgres_sslmode_require_calls_are_spans_at_both_ends() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let pg = db::postgres_tls(USERS_SQL, &certs);
    let ports = DbPorts {
        postgres: pg.port,
        ..DbPorts::default()
    };
    let app = db::db_app_tls(&ports, &certs.ca);
    let mut agent = Agent::attach(&[app.pid(), pg.pid()]);
    pg_calls_at_both_ends(
        &app,
        pg.port,
        &mut agent,
        || {},
        |tree, calls| {
            for s in calls {
                tree.assert_attr(s, "db.namespace", "postgres");
            }
            tree.assert_attr(calls[0], "db.operation.name", "SELECT");
            tree.assert_attr(calls[0], "db.collection.name", "users");
        },
    );
}

/// The app's `GET /pg` (held open until its spans are in, so its backend still runs when
/// they are built; `while_held` runs then): 200 with the expected body, nine spans, the
/// four calls as [`assert_tls_calls`] has them (`check` looks further), both connections'
/// switch to TLS counted.
fn pg_calls_at_both_ends(
    app: &Server,
    pg_port: u16,
    agent: &mut Agent,
    while_held: impl FnOnce(),
    check: impl FnOnce(&SpanTree, &[&Value]),
) {
    let held = TempDir::new("held");
    let release = held.join("release");
    let client = get_held(app, "/pg", &release);
    agent.wait_for_spans(9, Duration::from_secs(10));
    while_held();
    std::fs::write(&release, "").expect("touch release");
    let report = raw_client_report(&client.output());
    let response = &report["responses"][0];
    assert_eq!(
        (&response["status"], &response["body"]),
        (&Value::from(200), &Value::from("ada 2 UndefinedTable")),
        "{report}\n{}",
        app.logs()
    );

    let tree = agent.collect(9);
    eqnice!(tree, tree.len(), 9, "GET /pg, 4 calls, 4 server spans");
    let calls = assert_tls_calls(&tree, "/pg", "postgresql", pg_port, &PG_CALLS, true);
    check(&tree, &calls);
    // The app's connection and the backend's each switched to TLS.
    assert_db_tls_counters(&tree, &agent.counters(), 2);
}

/// The psycopg2 of the OpenSSL 1.1 venv (`cargo xtask setup`): the psycopg2-binary 2.9.5
/// wheel bundles libpq with OpenSSL 1.1.1 (`libssl-*.so.1.1`, loaded with the module).
const OPENSSL11_PYTHON: &str = "/opt/sonde-test-venv-openssl11/bin/python";

/// OpenSSL 1.1 as a shared library: the app's psycopg2 is the wheel that carries its own
/// OpenSSL 1.1.1, the server's OpenSSL 3. The same four calls as above, their CLIENT spans
/// read from OpenSSL 1.1's plaintext (`tls.protocol.version` read from its `ssl_st`), and
/// `sonde doctor --pid` names the bundled 1.1 library as the app's probed OpenSSL.
#[test]
fn postgres_through_openssl_1_1() {
    require_tracing!();
    let venv_ok = std::process::Command::new(OPENSSL11_PYTHON)
        .args(["-c", "import psycopg2"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl_available() || !tool_available(venv_ok, "the OpenSSL 1.1 psycopg2 venv is missing")
    {
        return;
    }
    let certs = Certs::new();
    let pg = db::postgres_tls(USERS_SQL, &certs);
    let ports = DbPorts {
        postgres: pg.port,
        ..DbPorts::default()
    };
    // psycopg2 imported at start: its OpenSSL 1.1 is mapped, hence probed, when the agent
    // attaches. (Imported on the first request, the library would be probed a moment after
    // its dlopen, racing the queries that follow at once.)
    let app = db::db_app_tls_with(&ports, &certs.ca, OPENSSL11_PYTHON.as_ref(), "psycopg2");
    let mut agent = Agent::attach(&[app.pid(), pg.pid()]);
    // While the app holds its connection: which OpenSSL it uses, as doctor reads it.
    let doctor_says_openssl_1_1 = || {
        let doctor = run_ok(
            "sonde doctor --pid",
            std::process::Command::new(sonde_bin())
                .args(["doctor", "--json", "--pid"])
                .arg(app.pid().to_string()),
        );
        let report: Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
        let libraries: Vec<&str> = report["processes"][0]["libraries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["library"] == "OpenSSL")
            .filter_map(|l| l["path"].as_str())
            .collect();
        assert!(
            libraries
                .iter()
                .any(|p| p.contains("psycopg2_binary.libs/libssl-") && p.ends_with(".so.1.1")),
            "the app's probed OpenSSL is the wheel's 1.1: {libraries:?}"
        );
    };
    pg_calls_at_both_ends(
        &app,
        pg.port,
        &mut agent,
        doctor_says_openssl_1_1,
        |tree, calls| {
            for s in calls {
                tree.assert_attr(s, "tls.protocol.version", "1.3");
            }
        },
    );
}

/// The same app without the TLS probes (`--no-tls`): the connection switched to TLS
/// after its SSLRequest and no plaintext comes: no call span, nothing parsed from the
/// ciphertext (no desync, nothing skipped as lost), the switch counted.
#[test]
fn postgres_tls_without_probes_is_counted_not_parsed() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let pg = db::postgres_tls(USERS_SQL, &certs);
    let ports = DbPorts {
        postgres: pg.port,
        ..DbPorts::default()
    };
    let app = db::db_app_tls(&ports, &certs.ca);
    let mut agent = AgentCmd::attach(&[app.pid()]).arg("--no-tls").start();
    get(&app, "/pg", "ada 2 UndefinedTable");

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /pg")]);
    let counters = agent.counters();
    for (name, want) in [
        ("db_tls_connections", 1),
        ("db_calls", 0),
        ("db_desync_bytes", 0),
        ("db_dropped_calls", 0),
        ("http_desyncs", 0),
        ("unknown_protocol_connections", 0),
    ] {
        eqnice!(tree, counter(&tree, &counters, name), want, "{name}");
    }
}

// ===== Redis =====

/// The Redis calls of the app's `/redis` route.
const REDIS_CALLS: [Call; 4] = [
    ok("SET", "SET ? ?"),
    ok("GET", "GET ?"),
    ok("HSET", "HSET ? ? ?"),
    Call {
        name: "GET",
        query: "GET ?",
        error: Some("WRONGTYPE"),
    },
];

/// redis-py (`ssl=True`, Python's `ssl`) in a traced web app and a traced redis-server 7
/// on its TLS port only: TLS from the first byte, the commands in OpenSSL's plaintext on
/// both sides. Four CLIENT spans (the last a WRONGTYPE error) under the web request,
/// each with redis-server's SERVER span under it.
#[test]
fn redis_over_tls_calls_are_spans_at_both_ends() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let redis = db::redis_tls(&certs);
    let ports = DbPorts {
        redis: redis.port,
        ..DbPorts::default()
    };
    let app = db::db_app_tls(&ports, &certs.ca);
    let mut agent = Agent::attach(&[app.pid(), redis.pid()]);
    get(&app, "/redis", "ada ResponseError");

    let tree = agent.collect(9);
    eqnice!(tree, tree.len(), 9, "GET /redis, 4 calls, 4 server spans");
    assert_tls_calls(&tree, "/redis", "redis", redis.port, &REDIS_CALLS, true);
    assert_db_tls_counters(&tree, &agent.counters(), 0);
}

// ===== MariaDB =====

/// The MariaDB calls of the app's `/mysql` route.
const MARIADB_CALLS: [Call; 2] = [
    ok("SELECT items", "SELECT name FROM items WHERE id = ?"),
    Call {
        name: "SELECT no_such_table",
        query: "SELECT * FROM no_such_table",
        error: Some("1146"),
    },
];

/// PyMySQL (`ssl_ca`, Python's `ssl`) in a traced web app and a traced MariaDB 10.11
/// that requires TLS: after the greeting the app sends an SSL request packet, and the
/// handshake response, authentication and two queries (one failing) come as OpenSSL's
/// plaintext on both sides. Two CLIENT spans under the web request, each with
/// mariadbd's SERVER span under it; both ends' switch to TLS counted.
#[test]
fn mariadb_over_tls_calls_are_spans_at_both_ends() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let maria = db::mariadb_tls(
        "CREATE DATABASE IF NOT EXISTS test; CREATE TABLE test.items (id int PRIMARY KEY, name text); \
         INSERT INTO test.items VALUES (1, 'pen'), (2, 'ink');",
        &certs,
    );
    let ports = DbPorts {
        mysql: maria.port,
        ..DbPorts::default()
    };
    let app = db::db_app_tls(&ports, &certs.ca);
    let mut agent = Agent::attach(&[app.pid(), maria.pid()]);
    get(&app, "/mysql", "ink ProgrammingError");

    let tree = agent.collect(5);
    eqnice!(tree, tree.len(), 5, "GET /mysql, 2 calls, 2 server spans");
    let calls = assert_tls_calls(&tree, "/mysql", "mariadb", maria.port, &MARIADB_CALLS, true);
    for s in &calls {
        tree.assert_attr(s, "db.namespace", "test");
    }
    assert_db_tls_counters(&tree, &agent.counters(), 2);
}
