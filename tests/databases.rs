//! Database and cache calls become spans: a traced Python web app queries real
//! PostgreSQL, Redis, MariaDB and memcached servers on loopback. Each call is a CLIENT
//! span under the web request's SERVER span (same thread); errors are error spans with
//! the server's status code; when the database servers are traced too, their SERVER
//! spans are joined under the app's CLIENT spans (same host, by 4-tuple).
//!
//! These assertions need the real protocol parsers (`protocols/db/`).

mod util;

use serde_json::Value;
use util::db::{self, DbPorts};
use util::*;

const USERS_SQL: &str = "CREATE TABLE users (id int PRIMARY KEY, name text, visits int); \
                         INSERT INTO users VALUES (1, 'ada', 0), (2, 'bob', 0);";

/// GETs `path` from the app; must answer 200; returns the body.
fn get_ok(app: &Server, path: &str) -> String {
    let c = curl(&[&app.url(path)]);
    let body = String::from_utf8_lossy(&c.body).into_owned();
    assert!(c.status.success(), "curl {path}: {}", c.stderr);
    assert_eq!(
        c.writeouts[0].http_code,
        200,
        "{path}: {body}\n{}",
        app.logs()
    );
    body
}

/// PostgreSQL (table `users`), Redis, and the app that uses them.
fn pg_redis_app() -> (Server, Server, Server) {
    let pg = db::postgres(USERS_SQL);
    let redis = db::redis();
    let app = db::db_app(&DbPorts {
        postgres: pg.port,
        redis: redis.port,
        ..DbPorts::default()
    });
    (pg, redis, app)
}

/// The CLIENT spans of one database system, children of `parent` via its thread.
fn calls<'a>(tree: &'a SpanTree, parent: &Value, system: &str) -> Vec<&'a Value> {
    let calls: Vec<_> = tree
        .children_of(parent)
        .into_iter()
        .filter(|s| s.attr_str("db.system.name").as_deref() == Some(system))
        .collect();
    for c in &calls {
        tree.assert_child(parent, c, "thread");
        eqnice!(tree, c.kind(), CLIENT, "kind of {}", c.name());
    }
    calls
}

#[test]
fn a_web_request_shows_its_postgres_and_redis_calls_as_children() {
    require_tracing!();
    let (pg, redis, app) = pg_redis_app();
    let mut agent = Agent::attach(&[app.pid()]);
    assert_eq!(get_ok(&app, "/users"), "ada 2 ada");

    let tree = agent.collect(6);
    let server = tree.find(SERVER, "GET /users");
    tree.assert_root(server);
    let pg_calls = calls(&tree, server, "postgresql");
    let names: Vec<_> = pg_calls.iter().map(|s| s.name()).collect();
    eqnice!(
        tree,
        names,
        ["SELECT users", "SELECT users", "UPDATE users"],
        "postgres calls"
    );
    let first = pg_calls[0];
    tree.assert_attr(first, "db.operation.name", "SELECT");
    tree.assert_attr(first, "db.collection.name", "users");
    tree.assert_attr(first, "server.port", &pg.port.to_string());
    tree.assert_attr(first, "server.address", "127.0.0.1");
    tree.assert_attr(first, "db.namespace", "postgres");
    let text = first.attr_str("db.query.text").unwrap_or_default();
    check!(
        tree,
        text.contains("users") && !text.contains("= 1"),
        "query text is obfuscated by default: {text:?}"
    );
    let redis_calls = calls(&tree, server, "redis");
    let names: Vec<_> = redis_calls.iter().map(|s| s.name()).collect();
    eqnice!(tree, names, ["SET", "GET"], "redis calls");
    tree.assert_attr(redis_calls[0], "server.port", &redis.port.to_string());
    for s in pg_calls.iter().chain(&redis_calls) {
        eqnice!(tree, s.status_code(), 0, "status of {}", s.name());
    }
}

#[test]
fn database_errors_are_error_spans_with_the_servers_code() {
    require_tracing!();
    let (_pg, _redis, app) = pg_redis_app();
    let mut agent = Agent::attach(&[app.pid()]);
    assert_eq!(get_ok(&app, "/errors"), "UndefinedTable ResponseError");

    let tree = agent.collect(4);
    let server = tree.find(SERVER, "GET /errors");
    let bad_sql = calls(&tree, server, "postgresql");
    eqnice!(tree, bad_sql.len(), 1, "one postgres call");
    eqnice!(tree, bad_sql[0].status_code(), 2, "error status");
    tree.assert_attr(bad_sql[0], "db.response.status_code", "42P01");
    check!(
        tree,
        bad_sql[0].attr("error.type").is_some(),
        "error.type on the failed query"
    );
    let redis_calls = calls(&tree, server, "redis");
    let wrongtype = redis_calls
        .iter()
        .find(|s| s.name() == "GET")
        .expect("the GET on a hash");
    eqnice!(tree, wrongtype.status_code(), 2, "WRONGTYPE is an error");
    tree.assert_attr(wrongtype, "db.response.status_code", "WRONGTYPE");
}

#[test]
fn traced_database_servers_are_joined_under_the_client_calls() {
    require_tracing!();
    let (pg, redis, app) = pg_redis_app();
    let mut agent = Agent::attach(&[app.pid(), pg.pid(), redis.pid()]);
    get_ok(&app, "/users");

    let tree = agent.collect(11);
    let server = tree.find(SERVER, "GET /users");
    let clients: Vec<_> = calls(&tree, server, "postgresql")
        .into_iter()
        .chain(calls(&tree, server, "redis"))
        .collect();
    eqnice!(tree, clients.len(), 5, "3 postgres and 2 redis calls");
    for client in clients {
        let db_side: Vec<_> = tree
            .children_of(client)
            .into_iter()
            .filter(|s| s.kind() == SERVER)
            .collect();
        eqnice!(
            tree,
            db_side.len(),
            1,
            "database span under {}",
            client.name()
        );
        let db_span = db_side[0];
        tree.assert_child(client, db_span, "local_peer");
        eqnice!(tree, db_span.name(), client.name(), "same call");
        tree.assert_nested(client, db_span);
        check!(
            tree,
            db_span.res_attr("process.pid") != client.res_attr("process.pid"),
            "the database's own process"
        );
    }
}

#[test]
fn mariadb_queries_and_errors_are_spans() {
    require_tracing!();
    let maria = db::mariadb(
        "CREATE DATABASE IF NOT EXISTS test; CREATE TABLE test.items (id int PRIMARY KEY, name text); \
         INSERT INTO test.items VALUES (1, 'pen'), (2, 'ink');",
    );
    let app = db::db_app(&DbPorts {
        mysql: maria.port,
        ..DbPorts::default()
    });
    let mut agent = Agent::attach(&[app.pid()]);
    assert_eq!(get_ok(&app, "/mysql"), "ink ProgrammingError");

    let tree = agent.collect(3);
    let server = tree.find(SERVER, "GET /mysql");
    let mysql_calls: Vec<_> = tree
        .children_of(server)
        .into_iter()
        .filter(|s| s.attr_str("db.operation.name").as_deref() == Some("SELECT"))
        .collect();
    let names: Vec<_> = mysql_calls.iter().map(|s| s.name()).collect();
    eqnice!(
        tree,
        names,
        ["SELECT items", "SELECT no_such_table"],
        "mysql calls"
    );
    for s in &mysql_calls {
        tree.assert_child(server, s, "thread");
        let system = s.attr_str("db.system.name").unwrap_or_default();
        check!(
            tree,
            system == "mariadb" || system == "mysql",
            "db.system.name {system}"
        );
    }
    eqnice!(
        tree,
        mysql_calls[0].status_code(),
        0,
        "the SELECT succeeded"
    );
    eqnice!(tree, mysql_calls[1].status_code(), 2, "unknown table");
    tree.assert_attr(mysql_calls[1], "db.response.status_code", "1146");
}

#[test]
fn memcached_set_and_get_are_spans() {
    require_tracing!();
    let mc = db::memcached();
    let app = db::db_app(&DbPorts {
        memcached: mc.port,
        ..DbPorts::default()
    });
    let mut agent = Agent::attach(&[app.pid()]);
    assert_eq!(get_ok(&app, "/memcached"), "hello");

    let tree = agent.collect(3);
    let server = tree.find(SERVER, "GET /memcached");
    let mc_calls = calls(&tree, server, "memcached");
    let ops: Vec<_> = mc_calls
        .iter()
        .map(|s| {
            s.attr_str("db.operation.name")
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect();
    eqnice!(tree, ops, ["set", "get"], "memcached commands");
    tree.assert_attr(mc_calls[0], "server.port", &mc.port.to_string());
}
