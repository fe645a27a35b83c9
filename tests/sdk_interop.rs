//! Interoperability with the official OpenTelemetry Python SDK: an application that
//! traces itself (`fixtures/sdk_app.py`, exporting OTLP/HTTP to an in-test receiver) and
//! Python services traced by Sonde form one trace in both directions, and Sonde leaves
//! the SDK-instrumented process's spans to its SDK (`spans_suppressed_sdk`).

mod util;

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use util::otlp::Collector;
use util::*;

/// The interpreter of the venv `cargo xtask setup` makes with the SDK, or
/// `$SONDE_E2E_SDK_PYTHON`; `None` (skipped, or a failure under CI) if it cannot import
/// the SDK.
fn sdk_python() -> Option<OsString> {
    let python = std::env::var_os("SONDE_E2E_SDK_PYTHON")
        .unwrap_or_else(|| "/opt/sonde-test-venv/bin/python".into());
    let present = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let why = format!(
        "{} cannot import the OpenTelemetry SDK (cargo xtask setup makes that venv)",
        python.to_string_lossy()
    );
    tool_available(present, &why).then_some(python)
}

/// `fixtures/sdk_app.py`, exporting its spans to `collector`.
fn sdk_app(python: &OsString, collector: &Collector) -> Server {
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.arg(fixture("sdk_app.py"))
        .arg(port.to_string())
        .arg(format!("{}/v1/traces", collector.endpoint()));
    for var in [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_PROPAGATORS",
    ] {
        cmd.env_remove(var);
    }
    Server::spawn("sdk_app.py", cmd, port, TempDir::new("sdk"))
}

/// Waits until the receiver holds `n` SDK spans.
fn wait_sdk_spans(collector: &Collector, n: usize) {
    let got = wait_until(Duration::from_secs(10), || collector.span_count() >= n);
    assert!(
        got,
        "the SDK exported {} span(s), expected {n}:\n{}",
        collector.span_count(),
        collector.describe()
    );
}

/// Sonde's spans and the SDK's, together, for assertions that print both.
fn both(sonde: &SpanTree, sdk: &SpanTree) -> SpanTree {
    let spans = sonde.spans.iter().chain(&sdk.spans).cloned().collect();
    SpanTree::new(spans).with_context(&sonde.dump())
}

fn pid_of(span: &Value) -> Option<u32> {
    span.res_attr("process.pid").and_then(|p| p.parse().ok())
}

/// (a) curl -> SDK app -> Python service; Sonde traces both processes. The SDK's
/// SERVER and CLIENT spans and Sonde's SERVER span of the service are one trace, with
/// the service's span under the SDK's CLIENT span (taken from the SDK's header), and
/// Sonde emits nothing for the SDK process: its own context header on the call gives it
/// away before any of its spans is finished.
#[test]
fn sdk_app_calling_a_traced_service_is_one_trace_without_duplicates() {
    require_tracing!();
    let Some(python) = sdk_python() else { return };
    let collector = Collector::http();
    let service = Server::python();
    let app = sdk_app(&python, &collector);
    let mut agent = Agent::attach(&[app.pid(), service.pid()]);

    let c = curl(&[&format!(
        "{}?url={}",
        app.url("/call"),
        service.url("/size/10")
    )]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.body.len(), 10);
    // SimpleSpanProcessor: the CLIENT span is exported when the call returns, the SERVER
    // span after the response.
    wait_sdk_spans(&collector, 2);
    let sonde = agent.collect(1);
    let sdk = collector.span_tree();
    let all = both(&sonde, &sdk);

    sdk.assert_names(&[(SERVER, "GET /call"), (CLIENT, "GET")]);
    let sdk_server = sdk.find(SERVER, "GET /call");
    let sdk_client = sdk.find(CLIENT, "GET");
    sdk.assert_root(sdk_server);
    eqnice!(all, sdk_client.parent_id(), Some(sdk_server.span_id()));
    eqnice!(all, sdk_client.trace_id(), sdk_server.trace_id());

    // Only the service's span: none for the SDK app's request, call or OTLP exports.
    sonde.assert_names(&[(SERVER, "GET /size/10")]);
    let callee = sonde.find(SERVER, "GET /size/10");
    eqnice!(
        all,
        pid_of(callee),
        Some(service.pid()),
        "the service's span"
    );
    eqnice!(all, callee.trace_id(), sdk_server.trace_id(), "one trace");
    eqnice!(all, callee.parent_id(), Some(sdk_client.span_id()));
    all.assert_attr(callee, "sonde.parent.source", "header");
    all.assert_attr(callee, "sonde.parent.format", "tracecontext");

    // Its SERVER span and its call at least were built after it was recognised.
    let suppressed = agent.counter("spans_suppressed_sdk");
    check!(all, suppressed >= 2, "spans_suppressed_sdk = {suppressed}");
    let notice = format!(
        "pid {}: it sends trace context headers of its own",
        app.pid()
    );
    check!(
        all,
        agent.stopped().stderr.matches(&notice).count() == 1,
        "one notice naming the SDK app's pid ({notice:?})"
    );
}

/// (b) curl -> Python service (traced) -> SDK app: the SDK continues the `traceparent`
/// Sonde inserted, so its SERVER span is the child of Sonde's CLIENT span, in Sonde's
/// trace. The SDK app is traced too, and never makes calls: only its OTLP exports give
/// it away, after its first SERVER span was finished (not recalled, see
/// docs/propagation.md); from the second request on Sonde emits nothing for it.
#[test]
fn traced_service_calling_an_sdk_app_is_continued_by_the_sdk() {
    require_tracing!();
    let Some(python) = sdk_python() else { return };
    let collector = Collector::http();
    let app = sdk_app(&python, &collector);
    let service = Server::python();
    let mut agent = Agent::attach(&[service.pid(), app.pid()]);

    let paths = ["/first", "/second"];
    for (i, path) in paths.iter().enumerate() {
        let c = curl(&[&format!("{}?url={}", service.url("/call"), app.url(path))]);
        assert!(c.status.success(), "curl failed: {}", c.stderr);
        assert_eq!(String::from_utf8_lossy(&c.body), format!("sdk {path}\n"));
        // The export of this request's span is seen before the next request is made.
        wait_sdk_spans(&collector, i + 1);
    }
    // The service's SERVER and CLIENT span per request.
    agent.wait_for_spans(2 * paths.len(), Duration::from_secs(10));
    let suppressed = agent.wait_counter("spans_suppressed_sdk", 1, Duration::from_secs(5));
    let sonde = agent.collect(2 * paths.len());
    let sdk = collector.span_tree();
    let all = both(&sonde, &sdk);

    sdk.assert_names(&[(SERVER, "GET /first"), (SERVER, "GET /second")]);
    for path in paths {
        let sdk_server = sdk.find(SERVER, &format!("GET {path}"));
        let call = sonde.find(CLIENT, &format!("GET {path}"));
        eqnice!(all, pid_of(call), Some(service.pid()));
        all.assert_attr(call, "sonde.inject", "injected");
        eqnice!(all, sdk_server.parent_id(), Some(call.span_id()), "{path}");
        eqnice!(all, sdk_server.trace_id(), call.trace_id(), "{path}");
        let front = sonde.parent_of(call);
        check!(
            all,
            front.is_some_and(|f| f.name() == "GET /call" && pid_of(f) == Some(service.pid())),
            "{path}: Sonde's CLIENT span is the child of the service's SERVER span"
        );
    }
    let second = sdk.find(SERVER, "GET /second");
    let from_app: Vec<&Value> = sonde
        .spans
        .iter()
        .filter(|s| pid_of(s) == Some(app.pid()))
        .collect();
    check!(
        all,
        from_app.iter().all(|s| s.trace_id() != second.trace_id()),
        "no Sonde span for the SDK app once it exported: {from_app:?}"
    );
    check!(all, suppressed >= 1, "spans_suppressed_sdk = {suppressed}");
    check!(
        all,
        agent
            .stopped()
            .stderr
            .contains(&format!("pid {}: it exports OTLP traces", app.pid())),
        "a notice naming the SDK app's pid"
    );
}
