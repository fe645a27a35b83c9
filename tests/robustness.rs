//! What must not break the agent or the traced program: non-socket I/O, garbage on a
//! traced port, a huge header line, half-open requests, targets that vanish or never
//! existed, and a SIGKILLed agent (the traced server must keep serving).

mod util;

use std::io::Write;
use std::time::Duration;

use util::*;

/// Scenario 13: HTTP bytes through a file and a pipe are not socket traffic: no span.
#[test]
fn file_and_pipe_io_produce_no_spans() {
    require_tracing!();
    let dir = TempDir::new("fileio");
    let cmd: Vec<std::ffi::OsString> = vec![
        python(),
        fixture("file_pipe_io.py").into_os_string(),
        dir.path().as_os_str().to_owned(),
    ];
    let (stopped, tree) = sonde_run(&cmd);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "file_pipe_io.py succeeded; stderr:\n{}",
        stopped.stderr
    );
    eqnice!(tree, tree.len(), 0, "file and pipe I/O never produce spans");
    eqnice!(
        tree,
        stopped.counters.get("connections_tracked").copied(),
        Some(0),
        "no connection was tracked"
    );
}

/// Scenario 14a: random bytes on a traced port: no span, counted as unknown protocol
/// or desync, and a valid request afterwards is still traced.
#[test]
fn garbage_bytes_then_valid_request() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    for seed in 1..=4u64 {
        let mut s = tcp(server.port);
        let mut bytes = garbage(seed * 7919, 4096);
        bytes[0] = 0x16; // never a method's first byte (a TLS record type, in fact)
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = read_to_close(&mut s);
    }
    // Text that looks almost like HTTP but is not.
    {
        let mut s = tcp(server.port);
        let _ = s.write_all(b"HELLO WORLD THIS IS NOT HTTP\r\n\r\n");
        let _ = read_to_close(&mut s);
    }
    let c = curl(&[&server.url("/after-garbage")]);
    assert!(c.status.success(), "the server still works: {}", c.stderr);

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /after-garbage")]);
    tree.assert_attr(
        tree.find(SERVER, "GET /after-garbage"),
        "http.response.status_code",
        "200",
    );
    let unknown = agent.counter("unknown_protocol_connections");
    let desyncs = agent.counter("http_desyncs");
    check!(
        tree,
        unknown + desyncs > 0,
        "garbage is counted (unknown_protocol_connections={unknown}, http_desyncs={desyncs}); counters: {:?}",
        agent.counters()
    );
}

/// Scenario 14b: a 1 MiB header line: no panic, no wrong span (at most one, and then
/// with the right method and path); the agent keeps tracing.
#[test]
fn one_mib_header_line() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    {
        let mut s = tcp(server.port);
        let mut req = b"GET /big-header HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1 << 20));
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&req);
        let resp = read_to_close(&mut s);
        assert!(
            resp.starts_with(b"HTTP/1."),
            "python answered something: {:?}",
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        );
    }
    let c = curl(&[&server.url("/after-big")]);
    assert!(c.status.success(), "{}", c.stderr);
    let tree = agent.collect(2);
    let after = tree.find(SERVER, "GET /after-big");
    tree.assert_attr(after, "http.response.status_code", "200");
    let others: Vec<_> = tree
        .spans
        .iter()
        .filter(|s| s.name() != "GET /after-big")
        .collect();
    check!(
        tree,
        others.len() <= 1,
        "at most one span for the huge request"
    );
    for s in others {
        eqnice!(
            tree,
            s.name(),
            "GET /big-header",
            "a span for the huge request has its method and path"
        );
        eqnice!(tree, s.kind(), SERVER, "kind");
    }
}

/// Scenario 14c: a client sends half a request and never finishes: no span; other
/// requests are traced meanwhile.
#[test]
fn half_open_request_gives_no_span() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    let mut half = tcp(server.port);
    half.write_all(b"GET /half HTTP/1.1\r\nHost: x\r\nUser-Ag")
        .expect("send");
    let mut half2 = tcp(server.port);
    half2
        .write_all(b"POST /half-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let c = curl(&[&server.url("/whole")]);
    assert!(c.status.success(), "{}", c.stderr);
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /whole")]);
    drop((half, half2));
}

/// Scenario 14d: the target exits while the agent attaches: a clear error or a clean
/// run, never a panic or a hang.
#[test]
fn pid_exits_while_attaching() {
    require_tracing!();
    let mut victim = Proc::spawn({
        let mut c = std::process::Command::new("sleep");
        c.arg("60");
        c
    });
    let pid = victim.pid();
    let mut agent = AgentCmd::attach(&[pid]).spawn_unready();
    std::thread::sleep(Duration::from_millis(30));
    victim.kill();
    match agent.wait_ready(Duration::from_secs(60)) {
        Readiness::Ready => {
            // It attached (or noticed the exit); it must still stop cleanly.
            std::thread::sleep(Duration::from_millis(300));
            let s = agent.stop_unchecked();
            assert_no_panic(&s.stderr);
            assert!(
                s.status.success() || s.stderr.contains("sonde: error"),
                "clean exit or a clear error, got {}:\n{}",
                s.status,
                s.stderr
            );
            assert!(s.spans.is_empty(), "no spans from `sleep`: {:?}", s.spans);
        }
        Readiness::Exited(_) => {
            let s = agent.wait_exit(Duration::from_secs(5));
            assert_no_panic(&s.stderr);
            assert!(!s.status.success(), "an exit before ready is an error exit");
            assert!(
                s.stderr.contains("sonde: error") && s.stderr.contains(&pid.to_string()),
                "the error names the pid {pid}:\n{}",
                s.stderr
            );
        }
        Readiness::TimedOut => panic!(
            "sonde neither ready nor exited after 60 s:\n{}",
            agent.stderr()
        ),
    }
}

/// Scenario 14e: a pid that does not exist: non-zero exit, an error naming it.
#[test]
fn nonexistent_pid_is_a_clear_error() {
    require_tracing!();
    let pid = unused_pid();
    let mut agent = AgentCmd::attach(&[pid]).spawn_unready();
    let s = agent.wait_exit(Duration::from_secs(60));
    assert_no_panic(&s.stderr);
    assert!(
        !s.status.success(),
        "attaching to a missing pid must fail, got {}:\n{}",
        s.status,
        s.stderr
    );
    assert!(
        s.stderr.contains("sonde: error") && s.stderr.contains(&pid.to_string()),
        "the error message names pid {pid}:\n{}",
        s.stderr
    );
    assert!(s.spans.is_empty());
}

/// `sonde attach` with options but no target fails at once with a clear message instead
/// of tracing nothing forever.
#[test]
fn attach_without_target_is_a_clear_error() {
    require_tracing!();
    let mut agent = AgentCmd::attach(&[]).spawn_unready();
    let s = agent.wait_exit(Duration::from_secs(30));
    assert_no_panic(&s.stderr);
    assert!(!s.status.success(), "no target must fail, got {}", s.status);
    assert!(
        s.stderr.contains("nothing to trace") && s.stderr.contains("--pid"),
        "the error says what to give:\n{}",
        s.stderr
    );
}

/// Out-of-range numbers (flags and `OTEL_*` variables) are refused before anything is
/// loaded or attached, with a message naming the flag or variable, the value and the
/// accepted range: a non-zero exit, never a panic.
#[test]
fn out_of_range_settings_are_clear_errors() {
    require_tracing!();
    let own_pid = std::process::id();
    let otlp_range = "accepted: more than 0 and at most 3600000 ms (1 hour)";
    let cases = [
        (
            &["--duration", "inf"][..],
            None,
            "invalid value 'inf' for '--duration <SECS>': \"inf\" is not finite; accepted: 0 to \
             31536000 seconds (365 days)"
                .to_owned(),
        ),
        (
            &["--otlp-timeout", "1e30"],
            None,
            format!(
                "invalid value '1e30' for '--otlp-timeout <MS>': \"1e30\" is above the maximum; \
                 {otlp_range}"
            ),
        ),
        (
            &[],
            Some(("OTEL_EXPORTER_OTLP_TIMEOUT", "1e30")),
            format!(
                "sonde: error: environment variable OTEL_EXPORTER_OTLP_TIMEOUT: \"1e30\" is above \
                 the maximum; {otlp_range}"
            ),
        ),
    ];
    for (args, var, message) in cases {
        let mut cmd = AgentCmd::attach(&[own_pid]);
        for a in args {
            cmd = cmd.arg(*a);
        }
        if let Some((k, v)) = var {
            cmd = cmd.env(k, v);
        }
        let s = cmd.spawn_unready().wait_exit(Duration::from_secs(30));
        assert_no_panic(&s.stderr);
        assert!(
            !s.status.success(),
            "{args:?} {var:?} must fail, got {}:\n{}",
            s.status,
            s.stderr
        );
        assert!(
            s.stderr.contains(&message),
            "{args:?} {var:?}: the error names the setting, the value and the range; want \
             {message:?} in:\n{}",
            s.stderr
        );
        assert!(
            !s.stderr.contains("sonde: ready"),
            "nothing was attached:\n{}",
            s.stderr
        );
    }
}

/// `sonde run`: SIGTERM to the agent is passed on to the command, which is never left
/// running untraced; the exit status follows the shell's 128 + signal convention.
#[test]
fn run_passes_sigterm_to_its_command() {
    require_tracing!();
    let mut agent = AgentCmd::run(&["sleep", "30"]).start();
    let child = wait_for_child(agent.pid());
    // SAFETY: signalling the agent process this test started.
    unsafe { libc::kill(agent.pid() as libc::pid_t, libc::SIGTERM) };
    let s = agent.wait_exit(Duration::from_secs(20));
    assert_no_panic(&s.stderr);
    assert_eq!(s.status.code(), Some(128 + libc::SIGTERM), "{}", s.stderr);
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists(),
        "the command (pid {child}) must not outlive the agent"
    );
}

fn wait_for_child(parent: u32) -> u32 {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
        found.is_some()
    });
    found.expect("sonde run started its command")
}

/// SIGUSR1 prints the counters and keeps tracing.
#[test]
fn sigusr1_prints_counters_and_keeps_running() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    assert!(curl(&[&server.url("/one")]).status.success());
    agent.wait_for_spans(1, Duration::from_secs(10));
    send_signal(agent.pid(), libc::SIGUSR1);
    let printed = wait_until(Duration::from_secs(5), || {
        parse_counters(&agent.stderr()).contains_key("spans_built")
    });
    assert!(printed, "SIGUSR1 printed no counters:\n{}", agent.stderr());
    assert!(curl(&[&server.url("/two")]).status.success());
    let tree = agent.collect(2);
    tree.assert_names(&[(SERVER, "GET /one"), (SERVER, "GET /two")]);
    eqnice!(tree, agent.counter("spans_built"), 2, "spans_built");
}

/// Scenario 15: after SIGKILL of the agent (no cleanup of its own), the traced servers
/// keep serving correct bytes: a Python server, and nginx proxying to it (sockhash and
/// sk_msg programs must go with the agent).
#[test]
fn server_keeps_serving_after_agent_sigkill() {
    require_tracing!();
    let upstream = Server::python();
    let nginx = Server::nginx(
        "nginx_proxy.conf",
        &[("UPSTREAM", upstream.port.to_string())],
        |_| {},
    );
    let mut agent = Agent::attach(&[nginx.pid(), upstream.pid()]);
    for url in [upstream.url("/size/1000"), nginx.url("/size/1000")] {
        let c = curl(&[&url]);
        assert!(c.status.success(), "{}", c.stderr);
    }
    agent.wait_for_spans(4, Duration::from_secs(10));
    agent.kill_hard();
    std::thread::sleep(Duration::from_millis(300));

    for n in [10usize, 100_000, 3_000_000] {
        for url in [
            upstream.url(&format!("/size/{n}")),
            nginx.url(&format!("/size/{n}")),
        ] {
            let t0 = std::time::Instant::now();
            let c = curl(&["--max-time", "10", &url]);
            assert!(
                c.status.success(),
                "{url} after the agent was killed: {} ({:?})",
                c.stderr,
                t0.elapsed()
            );
            assert_eq!(c.body.len(), n, "{url}: right length");
            assert!(c.body.iter().all(|&b| b == b'x'), "{url}: right bytes");
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{url} took {:?}",
                t0.elapsed()
            );
        }
    }
    // Keep-alive still fine too.
    let urls: Vec<String> = (0..5)
        .map(|i| upstream.url(&format!("/size/{}", 100 + i)))
        .collect();
    let args: Vec<&str> = urls.iter().map(String::as_str).collect();
    let c = curl(&args);
    assert!(c.status.success(), "{}", c.stderr);
    assert_eq!(c.body.len(), 100 + 101 + 102 + 103 + 104);
}
