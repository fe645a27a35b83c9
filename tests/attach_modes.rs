//! Ways of choosing what to trace and where: `attach --port`, `attach --exe` with a
//! process started after the agent, IPv6 on both ends, and `sonde doctor`.

mod util;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use util::*;

/// Scenario 6: `sonde attach --port <port>` (no --pid) traces whatever listens there.
#[test]
fn attach_by_listening_port() {
    require_tracing!();
    let server = Server::python();
    let other = Server::python(); // not on the port: must not be traced
    let mut agent = AgentCmd::attach(&[])
        .arg("--port")
        .arg(server.port.to_string())
        .start();
    assert!(curl(&[&server.url("/by-port")]).status.success());
    assert!(curl(&[&other.url("/not-traced")]).status.success());
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /by-port")]);
    let s = tree.find(SERVER, "GET /by-port");
    eqnice!(
        tree,
        s.res_attr("process.pid"),
        Some(server.pid().to_string()),
        "process.pid is the server listening on the port"
    );
    tree.assert_attr(s, "server.port", &server.port.to_string());
    eqnice!(
        tree,
        agent.counter("processes_traced"),
        1,
        "processes_traced"
    );
}

/// Scenario 7: `sonde attach --exe '<dir>/node-sonde-*'` picks up a process started
/// after the agent. The Node binary is copied under a unique name so nothing else on
/// the host matches the glob.
#[test]
fn attach_by_exe_glob_picks_up_later_process() {
    require_tracing!();
    let bin_dir = TempDir::new("exe");
    let exe = bin_dir.join("node-sonde-e2e");
    std::fs::copy(node(), &exe).expect("copying node");
    let glob = format!("{}/node-sonde-*", bin_dir.path().display());
    let mut agent = AgentCmd::attach(&[]).arg("--exe").arg(&glob).start();

    // Started after the agent is ready.
    let port = free_port();
    let mut cmd = Command::new(&exe);
    cmd.arg(fixture("node_server.js"))
        .arg(port.to_string())
        .env_remove("OTEL_SERVICE_NAME");
    let server = Server::spawn("node-sonde-e2e", cmd, port, TempDir::new("node"));
    // The exec is noticed asynchronously: retry until a request is traced.
    let traced = wait_until(Duration::from_secs(10), || {
        assert!(curl(&[&server.url("/late")]).status.success());
        std::thread::sleep(Duration::from_millis(200));
        !agent.spans_now().is_empty()
    });
    let tree = agent.collect(1);
    check!(
        tree,
        traced,
        "no span from the process started after the agent ({glob})"
    );
    let spans = tree.all(SERVER, "GET /late");
    check!(tree, !spans.is_empty(), "a SERVER span GET /late");
    eqnice!(
        tree,
        spans.len(),
        tree.len(),
        "only the late process's spans"
    );
    for s in spans {
        eqnice!(
            tree,
            s.res_attr("process.pid"),
            Some(server.pid().to_string()),
            "process.pid of the late process"
        );
        eqnice!(
            tree,
            s.res_attr("process.executable.path").as_deref(),
            exe.to_str(),
            "process.executable.path is the copied binary"
        );
        tree.assert_attr(s, "http.response.status_code", "200");
    }
}

/// Scenario 8a: a server bound to `::1`, a client on `[::1]`: the peer is `::1`.
#[test]
fn ipv6_server_side() {
    require_tracing!();
    let server = Server::python_at("::1");
    let mut agent = Agent::attach(&[server.pid()]);
    let url = server.url("/v6");
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let c = curl(&["-g", &url]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(String::from_utf8_lossy(&c.body), "hello /v6\n");
    let local_port = c.writeouts[0].local_port;

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /v6")]);
    let s = tree.find(SERVER, "GET /v6");
    tree.assert_attr(s, "client.address", "::1");
    tree.assert_attr(s, "network.peer.address", "::1");
    tree.assert_attr(s, "client.port", &local_port.to_string());
    tree.assert_attr(s, "network.peer.port", &local_port.to_string());
    tree.assert_attr(s, "server.port", &server.port.to_string());
    tree.assert_attr(s, "http.response.status_code", "200");
}

/// Scenario 8b: a traced client (`sonde run -- curl`) to `[::1]`.
#[test]
fn ipv6_client_side() {
    require_tracing!();
    let server = Server::python_at("::1"); // not traced
    let url = server.url("/v6c?x=1");
    let (stopped, tree) = sonde_run(&["curl", "-g", "-sS", "--max-time", "20", &url]);
    check!(tree, stopped.status.success(), "sonde run exit status");
    tree.assert_names(&[(CLIENT, "GET /v6c")]);
    let s = tree.find(CLIENT, "GET /v6c");
    tree.assert_attr(s, "server.address", "::1");
    tree.assert_attr(s, "server.port", &server.port.to_string());
    tree.assert_attr(s, "network.peer.address", "::1");
    tree.assert_attr(s, "network.peer.port", &server.port.to_string());
    tree.assert_attr(
        s,
        "url.full",
        &format!("http://[::1]:{}/v6c?x=REDACTED", server.port),
    );
    tree.assert_attr(s, "http.response.status_code", "200");
}

/// Scenario 9: `sonde doctor` exits 0 here and names its checks; `--json` parses.
#[test]
fn doctor_text_and_json() {
    require_tracing!();
    let out = Command::new(sonde_bin())
        .arg("doctor")
        .output()
        .expect("running sonde doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sonde doctor failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let names = ["btf", "lockdown", "kprobes", "fentry", "tracefs"];
    for name in names {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "no `{name}` check line in:\n{text}"
        );
    }
    assert!(text.contains("Verdict:"), "a verdict:\n{text}");

    let v = doctor_json();
    let checks = v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks list: {v:#}"));
    for c in checks {
        assert!(
            c["name"].as_str().is_some_and(|n| !n.is_empty())
                && ["ok", "missing", "denied", "unknown"]
                    .iter()
                    .any(|s| c["state"] == *s)
                && c["detail"].is_string(),
            "a check has name, state, detail: {c:#}"
        );
    }
    for name in names {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "no {name} in the JSON checks: {v:#}"
        );
    }
    let btf = checks
        .iter()
        .find(|c| c["name"] == "btf")
        .expect("btf check");
    assert_eq!(btf["state"], "ok", "BTF is present on this host: {btf:#}");
}

/// The hooks the agent picks are the cheapest family `sonde doctor` finds here, and the
/// startup line says which: on kernels with the socket-layer tracepoints (6.4+, this
/// project's hosts), those; elsewhere the next family the doctor passes.
#[test]
fn auto_hooks_follow_the_doctor() {
    require_tracing!();
    let doctor = doctor_json();
    let expected = [
        ("socket_tracepoints", "socket-tracepoints"),
        ("fentry", "fexit"),
        ("kprobes", "kprobes"),
        ("syscall_tracepoints", "syscall-tracepoints"),
    ]
    .into_iter()
    .find(|(check, _)| check_ok(&doctor, check))
    .map(|(_, family)| family)
    .expect("some hook family works on a host that can trace");

    let server = Server::python_at("127.0.0.1");
    // An explicit `--hooks auto` (SONDE_TEST_HOOKS does not apply): this test is about it.
    let mut agent = AgentCmd::attach(&[server.pid()])
        .arg("--hooks")
        .arg("auto")
        .start();
    let stderr = agent.stderr();
    let ready = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sonde: ready: "))
        .unwrap_or_else(|| panic!("no ready line in:\n{stderr}"));
    assert!(
        ready.contains(&format!("({expected}: ")),
        "expected the {expected} hooks, the agent says: {ready}"
    );
    let c = curl(&[&server.url("/auto")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /auto")]);
}

/// Socket bytes that a socket-layer hook sees inside a syscall whose arguments do not
/// describe them (here sendmmsg) are counted as `socket_io_undecoded` and skipped: no
/// span is made of bytes Sonde could not locate, and the traced client is unharmed.
#[test]
fn undecodable_socket_io_is_counted_not_guessed() {
    require_tracing!();
    // Only the socket-layer families see inside sendmmsg; the syscall tracepoints do not
    // hook it at all. A kernel before 6.4 lacks them: nothing to test there (CI fails).
    if !tool_available(
        check_ok(&doctor_json(), "socket_tracepoints"),
        "this kernel has no socket-layer tracepoints (Linux 6.4+)",
    ) {
        return;
    }
    let dir = TempDir::new("mmsg");
    let exe = dir.join("mmsg_client");
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(fixture("mmsg_client.c"))
        .status()
        .expect("running cc");
    assert!(built.success(), "building mmsg_client.c: {built}");

    let server = Server::python_at("127.0.0.1");
    let mut agent = AgentCmd::run(&[
        exe.as_os_str(),
        server.port.to_string().as_ref(),
        "/mmsg".as_ref(),
    ])
    .arg("--hooks")
    .arg("socket-tracepoints")
    .spawn_unready();
    let stopped = agent.wait_exit_ok(Duration::from_secs(60), "the traced sendmmsg client");
    assert!(
        agent.counter("socket_io_undecoded") >= 1,
        "sendmmsg counted as undecoded:\n{}",
        stopped.stderr
    );
    assert!(
        stopped.spans.iter().all(|s| s["name"] != "GET /mmsg"),
        "no span from bytes Sonde could not read: {:#?}",
        stopped.spans
    );
}

/// `sonde doctor --json`, which must exit 0 on these hosts and print JSON.
fn doctor_json() -> Value {
    let out = Command::new(sonde_bin())
        .args(["doctor", "--json"])
        .output()
        .expect("running sonde doctor --json");
    assert!(out.status.success(), "sonde doctor --json: {}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sonde doctor --json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Whether the doctor's JSON report has check `name` ok.
fn check_ok(doctor: &Value, name: &str) -> bool {
    doctor["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["state"] == "ok")
}

/// Where cgroup2 is mounted, from /proc/mounts (hybrid hosts: /sys/fs/cgroup/unified).
fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| dir.to_owned())
        })
        .collect()
}

/// Without what injection needs (here: no cgroup2, in a mount namespace of the agent's
/// own), the agent says so and traces anyway instead of refusing to start.
#[test]
fn tracing_goes_on_without_injection_when_the_host_cannot_inject() {
    require_tracing!();
    if !tool_available(
        Command::new("unshare").arg("--help").output().is_ok(),
        "unshare (util-linux) runs the agent in a mount namespace without cgroup2",
    ) {
        return;
    }
    let server = Server::python();
    // sh unmounts every cgroup2 ("$@" before the `--`), then execs the agent.
    let script =
        "while [ \"$1\" != -- ]; do umount \"$1\" || exit 1; shift; done; shift; exec \"$@\"";
    let mut wrapper: Vec<String> = ["unshare", "--mount", "--propagation", "private"]
        .into_iter()
        .chain(["sh", "-c", script, "sh"])
        .map(str::to_owned)
        .collect();
    wrapper.extend(cgroup2_mounts());
    wrapper.push("--".to_owned());
    let mut agent = AgentCmd::attach(&[server.pid()]).wrapped(&wrapper).start();
    assert!(curl(&[&server.url("/no-inject-here")]).status.success());
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /no-inject-here")]);
    let stderr = agent.stopped().stderr.clone();
    check!(
        tree,
        stderr.contains("traceparent injection is off: cgroup2 is not mounted"),
        "the agent says why injection is off:\n{stderr}"
    );
    check!(
        tree,
        stderr.contains("no injection), 1 process(es) traced"),
        "the startup line says injection is off:\n{stderr}"
    );
}
