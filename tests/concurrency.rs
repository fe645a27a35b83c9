//! Right parents under concurrency: a front service whose handlers each wait 0-20 ms at
//! random and then call a downstream service, loaded by 8 concurrent keep-alive clients
//! (`fixtures/go_fanout`, role `load`, not traced). Each request `/req/ID` makes exactly
//! three spans: the front's SERVER span, its CLIENT span for `/down/ID`, and the
//! downstream's SERVER span; the downstream echoes the `traceparent` it received.
//!
//! - Go (`fixtures/go_fanout`, net/http on both sides): every tree exactly right, for every
//!   request, with calls made by the handler's goroutine, by a goroutine it starts, with an
//!   incoming `traceparent` continued, from a stripped binary, and from a binary built by
//!   Debian's Go 1.19 (offsets from the table by release); the `traceparent` on the wire
//!   names the front's CLIENT span. Parent source `goroutine`, nothing guessed.
//! - An event loop without a runtime Sonde reads (Node.js `fixtures/node_fanout.js`,
//!   Python asyncio `fixtures/py_asyncio_fanout.py`): its one thread is seen serving two
//!   requests at once (`multiplexed_threads` = 1), and from then on every call's parent
//!   is marked a guess (`thread_last_read`, counted in `parent_guessed`): no link that is
//!   wrong is given as certain.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use util::go::{
    go_available, go_build_command, go_build_command_online, go_toolchain, go119_available,
};
use util::*;

/// Requests per scenario, and clients sending them at once.
const REQUESTS: usize = 200;
const CONCURRENCY: usize = 8;

/// How the front calls downstream (`?mode=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// From the handler's own goroutine (or callback).
    Direct,
    /// From a goroutine the handler starts and waits for (Go).
    Goroutine,
}

impl Call {
    fn mode(self) -> &'static str {
        match self {
            Call::Direct => "direct",
            Call::Goroutine => "goroutine",
        }
    }
}

/// The incoming context the load sends with request `id` (as `go_fanout load ... ctx`).
fn incoming_trace(id: usize) -> String {
    format!("4bf92f3577b34da6a3ce929d0e0e{id:04x}")
}
fn incoming_span(id: usize) -> String {
    format!("00f067aa0ba9{id:04x}")
}

/// Builds `fixtures/go_fanout` with `go` into `dir`.
fn build_fanout(dir: &TempDir, go: &Path, stripped: bool, tag: &str) -> PathBuf {
    let out = dir.join(&format!("go_fanout{tag}"));
    let mut cmd = go_build_command(go, "go_fanout", stripped, &out, &["."], dir.path(), tag);
    run_ok("go build of fixtures/go_fanout", &mut cmd);
    out
}

/// The downstream (always `go_fanout down`) and the front, both traced by one agent.
struct Services {
    down: Server,
    front: Server,
    agent: Agent,
}

impl Services {
    /// The downstream, then the front (`front_program front_args... PORT DOWN_URL`), then
    /// the agent attached to both.
    fn start(fanout: &Path, front_program: &str, front_args: &[&str]) -> Self {
        let down_port = free_port();
        let mut down_cmd = Command::new(fanout);
        down_cmd.args(["down", &down_port.to_string()]);
        let down = Server::spawn("go_fanout down", down_cmd, down_port, TempDir::new("down"));
        let front_port = loop {
            let port = free_port();
            if port != down.port {
                break port;
            }
        };
        let mut front_cmd = Command::new(front_program);
        front_cmd
            .args(front_args)
            .arg(front_port.to_string())
            .arg(format!("http://127.0.0.1:{}", down.port));
        let front = Server::spawn(front_program, front_cmd, front_port, TempDir::new("front"));
        let agent = AgentCmd::attach(&[down.pid(), front.pid()]).start();
        Self { down, front, agent }
    }
}

/// Sends the requests to the front on `port`; returns each request's answer by ID.
fn load(fanout: &Path, port: u16, call: Call, with_ctx: bool) -> BTreeMap<usize, String> {
    let mut cmd = Command::new(fanout);
    cmd.args([
        "load",
        &format!("http://127.0.0.1:{port}"),
        &REQUESTS.to_string(),
        &CONCURRENCY.to_string(),
        call.mode(),
    ]);
    if with_ctx {
        cmd.arg("ctx");
    }
    let out = run_ok("go_fanout load", &mut cmd);
    let mut answers = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "ID 200 BODY"
        let mut fields = line.splitn(3, ' ');
        let id: usize = fields.next().and_then(|f| f.parse().ok()).expect(line);
        assert_eq!(fields.next(), Some("200"), "request {id}: {line}");
        answers.insert(id, fields.next().unwrap_or_default().to_owned());
    }
    assert_eq!(answers.len(), REQUESTS, "one answer per request");
    answers
}

/// The one span of `kind` whose `url.path` is `path` in `service`'s process.
fn one<'a>(tree: &'a SpanTree, kind: i64, path: &str, pid: u32) -> &'a Value {
    let found: Vec<&Value> = tree
        .of_kind(kind)
        .into_iter()
        .filter(|s| {
            s.attr_str("url.path").as_deref() == Some(path)
                && s.res_attr("process.pid").as_deref() == Some(&pid.to_string())
        })
        .collect();
    check!(
        tree,
        found.len() == 1,
        "expected one span kind={kind} {path} in pid {pid}, found {}",
        found.len()
    );
    found[0]
}

/// Every request's tree is exactly right (Go).
fn assert_exact_trees(
    tree: &SpanTree,
    services: &Services,
    answers: &BTreeMap<usize, String>,
    with_ctx: bool,
) {
    eqnice!(tree, tree.len(), 3 * REQUESTS, "three spans per request");
    let mut inserted = 0;
    for (&id, answer) in answers {
        let server = one(tree, SERVER, &format!("/req/{id}"), services.front.pid());
        let client = one(tree, CLIENT, &format!("/down/{id}"), services.front.pid());
        let down = one(tree, SERVER, &format!("/down/{id}"), services.down.pid());
        if with_ctx {
            eqnice!(tree, server.trace_id(), incoming_trace(id), "request {id}");
            eqnice!(
                tree,
                server.parent_id(),
                Some(incoming_span(id).as_str()),
                "request {id}: continues the incoming context"
            );
            tree.assert_attr(server, "sonde.parent.source", "header");
        } else {
            tree.assert_root(server);
        }
        tree.assert_child(server, client, "goroutine");
        inserted += usize::from(assert_downstream_link(tree, id, client, down, answer));
    }
    eprintln!("traceparent inserted into {inserted} of {REQUESTS} downstream requests");
}

/// The downstream's SERVER span is the child of the front's CLIENT span: through the
/// `traceparent` Sonde inserted, which then names that span on the wire (`injected`, or
/// `header` when the server's span was reported before the client's), or, on a keep-alive
/// connection that was not enrolled for insertion, joined on this host by 4-tuple
/// (`local_peer`: no header arrived). Returns whether the header was inserted.
fn assert_downstream_link(
    tree: &SpanTree,
    id: usize,
    client: &Value,
    down: &Value,
    answer: &str,
) -> bool {
    let received = answer
        .strip_prefix(&format!("{id} {id} traceparent="))
        .unwrap_or_else(|| panic!("request {id}: answer {answer:?}"));
    let source = down.attr_str("sonde.parent.source").unwrap_or_default();
    if received.is_empty() {
        tree.assert_child(client, down, "local_peer");
        return false;
    }
    eqnice!(
        tree,
        received,
        format!("00-{}-{}-01", client.trace_id(), client.span_id()),
        "request {id}: the traceparent the downstream received"
    );
    let source = if source == "header" {
        "header"
    } else {
        "injected"
    };
    tree.assert_child(client, down, source);
    true
}

fn check_go(fanout: &Path, call: Call, with_ctx: bool) {
    let program = fanout.to_str().expect("a UTF-8 path");
    let mut services = Services::start(fanout, program, &["front"]);
    // What `sonde doctor --pid` says of the front, from its executable alone.
    let doctor = Command::new(sonde_bin())
        .args(["doctor", "--json", "--pid"])
        .arg(services.front.pid().to_string())
        .output()
        .expect("running sonde doctor");
    let report: Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    let how = report["processes"][0]["go_runtime"]["Ok"]
        .as_str()
        .unwrap_or_default();
    assert!(
        how.contains("goid at 152") && how.contains("net/http client hand-off probed"),
        "doctor: goroutines followed: {report}"
    );
    let answers = load(fanout, services.front.port, call, with_ctx);
    let tree = services.agent.collect(3 * REQUESTS);
    assert_exact_trees(&tree, &services, &answers, with_ctx);
    assert_counters(
        &tree,
        &services.agent,
        &[
            ("go_processes", 2, "both Go processes followed by goroutine"),
            ("parent_guessed", 0, "nothing guessed"),
            ("multiplexed_threads", 0, "no thread seen as an event loop"),
        ],
    );
}

/// Each `(counter, value, why)` of the stopped agent.
fn assert_counters(tree: &SpanTree, agent: &Agent, expected: &[(&str, u64, &str)]) {
    let counters = agent.counters();
    for &(name, want, why) in expected {
        eqnice!(tree, counter(tree, &counters, name), want, "{name}: {why}");
    }
}

#[test]
fn go_handlers_calling_downstream() {
    require_tracing!();
    if !go_available() {
        return;
    }
    let dir = TempDir::new("go-fanout");
    let fanout = build_fanout(&dir, &go_toolchain(), false, "");
    check_go(&fanout, Call::Direct, false);
}

#[test]
fn go_goroutines_started_by_handlers_with_incoming_context() {
    require_tracing!();
    if !go_available() {
        return;
    }
    let dir = TempDir::new("go-fanout");
    let fanout = build_fanout(&dir, &go_toolchain(), false, "");
    check_go(&fanout, Call::Goroutine, true);
}

/// No symbol table, no DWARF: functions from the pclntab, `goid` from the table row.
#[test]
fn go_stripped_binary() {
    require_tracing!();
    if !go_available() {
        return;
    }
    let dir = TempDir::new("go-fanout-stripped");
    let fanout = build_fanout(&dir, &go_toolchain(), true, "");
    check_go(&fanout, Call::Goroutine, true);
}

/// An older release (Debian's Go 1.19), stripped.
#[test]
fn go_119_stripped_binary() {
    require_tracing!();
    let Some(go) = go119_available() else {
        return;
    };
    let dir = TempDir::new("go-fanout-119");
    let fanout = build_fanout(&dir, &go, true, "-119");
    check_go(&fanout, Call::Direct, true);
}

/// database/sql with lib/pq (from the Go module proxy) on a pool of 4 connections shared by
/// every handler: each query, named by its column alias (`SELECT ? AS r<ID>`), is the child
/// of its request, made on the handler's goroutine or on one it starts.
fn check_go_database_sql(call: Call) {
    let dir = TempDir::new("go-dbapp");
    let fanout = build_fanout(&dir, &go_toolchain(), false, "");
    let app = dir.join("go_dbapp");
    run_ok(
        "go build of fixtures/go_dbapp (lib/pq from the module proxy)",
        &mut go_build_command_online(&go_toolchain(), "go_dbapp", &app, dir.path()),
    );
    let pg = db::postgres("SELECT 1");
    let port = free_port();
    let mut cmd = Command::new(&app);
    cmd.arg(port.to_string()).arg(format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        pg.port
    ));
    let server = Server::spawn("go_dbapp", cmd, port, TempDir::new("dbapp"));
    let mut agent = AgentCmd::attach(&[server.pid()]).start();
    let answers = load(&fanout, port, call, false);
    let tree = agent.collect(2 * REQUESTS);
    eqnice!(
        tree,
        tree.len(),
        2 * REQUESTS,
        "a SERVER and a query span per request"
    );
    for (&id, answer) in &answers {
        eqnice!(
            tree,
            answer.as_str(),
            format!("{id} {id}"),
            "request {id}'s answer"
        );
        let request = one(&tree, SERVER, &format!("/req/{id}"), server.pid());
        let text = format!("SELECT ? AS r{id}");
        let queries: Vec<&Value> = tree
            .of_kind(CLIENT)
            .into_iter()
            .filter(|s| s.attr_str("db.query.text").as_deref() == Some(text.as_str()))
            .collect();
        check!(
            tree,
            queries.len() == 1,
            "one span for {text:?}: {}",
            queries.len()
        );
        tree.assert_child(request, queries[0], "goroutine");
        tree.assert_attr(queries[0], "db.system.name", "postgresql");
    }
    assert_counters(
        &tree,
        &agent,
        &[
            ("go_processes", 1, "the Go service followed by goroutine"),
            ("parent_guessed", 0, "nothing guessed"),
        ],
    );
}

#[test]
fn go_database_sql_queries() {
    require_tracing!();
    if !go_available() {
        return;
    }
    check_go_database_sql(Call::Direct);
}

#[test]
fn go_database_sql_from_started_goroutines() {
    require_tracing!();
    if !go_available() {
        return;
    }
    check_go_database_sql(Call::Goroutine);
}

/// An event loop Sonde cannot read: every call's parent is either right and certain (before
/// the loop is seen with two requests open) or marked a guess; never wrong and certain.
fn check_event_loop(front_program: &str, front_args: &[&str]) {
    let dir = TempDir::new("event-loop");
    let fanout = build_fanout(&dir, &go_toolchain(), false, "");
    let mut services = Services::start(&fanout, front_program, front_args);
    let answers = load(&fanout, services.front.port, Call::Direct, false);
    let tree = services.agent.collect(3 * REQUESTS);
    eqnice!(tree, tree.len(), 3 * REQUESTS, "three spans per request");

    let (mut right, mut guessed) = (0, 0u64);
    for (&id, answer) in &answers {
        let server = one(&tree, SERVER, &format!("/req/{id}"), services.front.pid());
        let client = one(&tree, CLIENT, &format!("/down/{id}"), services.front.pid());
        let down = one(&tree, SERVER, &format!("/down/{id}"), services.down.pid());
        assert_downstream_link(&tree, id, client, down, answer);
        match client.attr_str("sonde.parent.source").as_deref() {
            Some("thread_last_read") => guessed += 1,
            Some("thread") => {
                check!(
                    tree,
                    client.parent_id() == Some(server.span_id()),
                    "request {id}: a certain link must be right: {client:#}"
                );
                right += 1;
            }
            None => check!(
                tree,
                client.parent_id().is_none(),
                "request {id}: {client:#}"
            ),
            other => panic!("request {id}: unexpected parent source {other:?}"),
        }
    }
    eprintln!("{front_program}: {right} certain and right, {guessed} marked as guesses");
    assert_counters(
        &tree,
        &services.agent,
        &[
            ("multiplexed_threads", 1, "the one event-loop thread"),
            ("parent_guessed", guessed, "every guess counted"),
        ],
    );
    check!(
        tree,
        guessed >= REQUESTS as u64 / 2,
        "most calls are made while other requests are open: {guessed}"
    );
}

#[test]
fn node_event_loop_links_are_marked_as_guesses() {
    require_tracing!();
    if !go_available() {
        return;
    }
    let script = fixture("node_fanout.js");
    check_event_loop(
        node().to_str().expect("utf-8"),
        &[script.to_str().expect("utf-8")],
    );
}

#[test]
fn python_asyncio_links_are_marked_as_guesses() {
    require_tracing!();
    if !go_available() {
        return;
    }
    let script = fixture("py_asyncio_fanout.py");
    check_event_loop(
        python().to_str().expect("utf-8"),
        &[script.to_str().expect("utf-8")],
    );
}
