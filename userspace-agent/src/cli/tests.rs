//! The flags' side of the settings: OTLP flags over the environment and the file, and
//! every numeric flag refused out of range with a message naming it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::{Action, Cli, OtlpArgs};
use crate::config::file::FileConfig;
use crate::config::test_support::{env, write_file};
use crate::config::{Compression, OtlpSettings, Protocol, Source, display};

#[test]
fn defaults_follow_the_spec_and_leave_export_off() {
    let c = OtlpSettings::load(None, OtlpArgs::default().layers(), env(&[])).unwrap();
    let o = &c.traces;
    assert!(!o.enabled.value);
    assert_eq!(o.protocol.value, Protocol::HttpProtobuf);
    assert_eq!(o.endpoint.value, "http://localhost:4318/v1/traces");
    assert_eq!(o.endpoint.source, Source::Default);
    assert_eq!(o.timeout.value, Duration::from_secs(10));
    assert_eq!(o.compression.value, Compression::None);
    assert!(o.headers.value.is_empty());
    assert_eq!(o.certificate, None);

    // --otlp alone: on, with defaults; grpc's default port is 4317.
    let flags = OtlpArgs {
        otlp: true,
        otlp_protocol: Some(Protocol::Grpc),
        ..OtlpArgs::default()
    };
    let c = OtlpSettings::load(None, flags.layers(), env(&[])).unwrap();
    assert!(c.traces.enabled.value);
    assert_eq!(c.traces.enabled.source, Source::Flag("--otlp"));
    assert_eq!(c.traces.endpoint.value, "http://localhost:4317");
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let (_dir, path) = write_file(
        r#"
[otlp]
endpoint = "http://from-file:4318"
protocol = "grpc"
headers = { "x-file" = "f" }
timeout = "3s"
compression = "gzip"
certificate = "ca.pem"
"#,
    );
    // File only.
    let c = OtlpSettings::load(Some(&path), OtlpArgs::default().layers(), env(&[])).unwrap();
    let o = &c.traces;
    let file = Source::File(path.clone());
    assert!(o.enabled.value);
    assert_eq!(o.enabled.source, file);
    assert_eq!(o.endpoint.value, "http://from-file:4318");
    assert_eq!(o.protocol.value, Protocol::Grpc);
    assert_eq!(o.headers.value, [("x-file".to_owned(), "f".to_owned())]);
    assert_eq!(o.timeout.value, Duration::from_secs(3));
    assert_eq!(o.compression.value, Compression::Gzip);
    // Relative to the file's directory.
    assert_eq!(
        o.certificate.as_ref().unwrap().value,
        path.parent().unwrap().join("ca.pem")
    );

    // Env over file.
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-env:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "4000"),
    ];
    let c = OtlpSettings::load(Some(&path), OtlpArgs::default().layers(), env(&vars)).unwrap();
    assert_eq!(c.traces.endpoint.value, "http://from-env:4318/v1/traces");
    assert_eq!(
        c.traces.endpoint.source,
        Source::Env("OTEL_EXPORTER_OTLP_ENDPOINT".into())
    );
    assert_eq!(c.traces.protocol.value, Protocol::HttpProtobuf);
    assert_eq!(c.traces.timeout.value, Duration::from_secs(4));
    assert_eq!(
        c.traces.compression.source, file,
        "untouched settings stay from the file"
    );

    // Flags over env.
    let flags = OtlpArgs {
        otlp_endpoint: Some("http://from-flag:4317".into()),
        otlp_protocol: Some(Protocol::Grpc),
        otlp_headers: vec![("x-flag".into(), "1".into())],
        otlp_timeout: Some(Duration::from_millis(500)),
        otlp_compression: Some(Compression::None),
        ..OtlpArgs::default()
    };
    let c = OtlpSettings::load(Some(&path), flags.layers(), env(&vars)).unwrap();
    let o = &c.traces;
    assert_eq!(o.endpoint.value, "http://from-flag:4317");
    assert_eq!(o.endpoint.source, Source::Flag("--otlp-endpoint"));
    assert_eq!(o.protocol.source, Source::Flag("--otlp-protocol"));
    assert_eq!(o.headers.value, [("x-flag".to_owned(), "1".to_owned())]);
    assert_eq!(o.timeout.value, Duration::from_millis(500));
    assert_eq!(o.compression.value, Compression::None);
}

#[test]
fn exporter_variables_and_enabled_switch() {
    let c = OtlpSettings::load(
        None,
        OtlpArgs::default().layers(),
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]),
    )
    .unwrap();
    assert!(!c.traces.enabled.value);
    let c = OtlpSettings::load(
        None,
        OtlpArgs::default().layers(),
        env(&[("OTEL_TRACES_EXPORTER", "otlp")]),
    )
    .unwrap();
    assert!(c.traces.enabled.value);
    let (_dir, path) = write_file("[otlp]\nenabled = false\nendpoint = \"http://c:4318\"\n");
    let c = OtlpSettings::load(Some(&path), OtlpArgs::default().layers(), env(&[])).unwrap();
    assert!(!c.traces.enabled.value);
    // --otlp wins over the file's enabled = false.
    let flags = OtlpArgs {
        otlp: true,
        ..OtlpArgs::default()
    };
    assert!(
        OtlpSettings::load(Some(&path), flags.layers(), env(&[]))
            .unwrap()
            .traces
            .enabled
            .value
    );
}

#[test]
fn display_shows_sources_and_masks_secrets() {
    let flags = OtlpArgs {
        otlp_endpoint: Some("https://user:hunter2@collector.example:4318".into()),
        otlp_headers: vec![("x-api-key".into(), "topsecret".into())],
        ..OtlpArgs::default()
    };
    let c = OtlpSettings::load(
        None,
        flags.layers(),
        env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
    )
    .unwrap();
    let text = display::render(&c);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(!text.contains("user:"), "{text}");
    assert!(
        text.contains("\"https://****@collector.example:4318/v1/traces\""),
        "{text}"
    );
    assert!(text.contains("x-api-key = \"****\""), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    assert!(line("endpoint").ends_with("# flag --otlp-endpoint"));
    assert!(line("compression").ends_with("# env OTEL_EXPORTER_OTLP_COMPRESSION"));
    assert!(line("protocol").ends_with("# default"));
    assert!(line("enabled").contains("true"));
    // The output (minus comments) is valid TOML that reads back as a config file.
    let parsed = FileConfig::parse(&text.replace("\"****@", "\"")).unwrap();
    assert_eq!(parsed.otlp.compression.as_deref(), Some("gzip"));

    assert_eq!(
        display::mask_url("http://a:b@h:1/p?q=1"),
        "http://****@h:1/p?q=1"
    );
    assert_eq!(display::mask_url("http://h:1/p@x"), "http://h:1/p@x");
    assert_eq!(display::mask_url("not a url"), "not a url");
}

/// The first line of clap's error for `args`.
fn flag_error(args: &[&str]) -> String {
    let err = Cli::try_parse_from(args).expect_err("the flags must be refused");
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn attach_with(flag: &str, value: &str) -> String {
    flag_error(&["sonde", "attach", "--pid", "1", &format!("{flag}={value}")])
}

#[test]
fn out_of_range_flags_are_refused_naming_flag_value_and_range() {
    let duration = "accepted: 0 to 31536000 seconds (365 days)";
    assert_eq!(
        attach_with("--duration", "inf"),
        format!(
            "error: invalid value 'inf' for '--duration <SECS>': \"inf\" is not finite; {duration}"
        )
    );
    assert_eq!(
        attach_with("--duration", "1e30"),
        format!(
            "error: invalid value '1e30' for '--duration <SECS>': \"1e30\" is above the maximum; \
             {duration}"
        )
    );
    assert_eq!(
        attach_with("--duration", "NaN"),
        format!(
            "error: invalid value 'NaN' for '--duration <SECS>': \"NaN\" is not a number; {duration}"
        )
    );
    assert_eq!(
        attach_with("--duration", "-1"),
        format!(
            "error: invalid value '-1' for '--duration <SECS>': \"-1\" is negative; {duration}"
        )
    );
    assert_eq!(
        attach_with("--otlp-timeout", "1e30"),
        "error: invalid value '1e30' for '--otlp-timeout <MS>': \"1e30\" is above the maximum; \
         accepted: more than 0 and at most 3600000 ms (1 hour); a bare number is ms, or give a \
         unit: 250ms, 10s, 1m"
    );
    assert_eq!(
        attach_with("--request-timeout", "0"),
        "error: invalid value '0' for '--request-timeout <SECS>': \"0\" is zero; accepted: 0.001 \
         to 86400 seconds (1 day)"
    );
    assert_eq!(
        attach_with("--request-timeout", "inf"),
        "error: invalid value 'inf' for '--request-timeout <SECS>': \"inf\" is not finite; \
         accepted: 0.001 to 86400 seconds (1 day)"
    );
    assert_eq!(
        attach_with("--ring-buffer-mib", "3"),
        "error: invalid value '3' for '--ring-buffer-mib <MIB>': \"3\" is not a power of two; \
         accepted: a power of two from 1 to 2048 MiB"
    );
    assert_eq!(
        attach_with("--ring-buffer-mib", "4096"),
        "error: invalid value '4096' for '--ring-buffer-mib <MIB>': \"4096\" is above the \
         maximum; accepted: a power of two from 1 to 2048 MiB"
    );
    assert_eq!(
        attach_with("--capture-bytes", "5000"),
        "error: invalid value '5000' for '--capture-bytes <CAPTURE_BYTES>': \"5000\" is above \
         the maximum; accepted: 64 to 4096 bytes"
    );
    assert_eq!(
        attach_with("--wakeup-bytes", "512"),
        "error: invalid value '512' for '--wakeup-bytes <BYTES>': \"512\" is below the minimum; \
         accepted: 1024 bytes up to half the ring buffer (--ring-buffer-mib)"
    );
    assert_eq!(
        attach_with("--wakeup-gap-us", "2000000"),
        "error: invalid value '2000000' for '--wakeup-gap-us <US>': \"2000000\" is above the \
         maximum; accepted: 0 to 1000000 µs (1 second)"
    );
    assert_eq!(
        attach_with("--quiet-ms", "18446744073709551616"),
        "error: invalid value '18446744073709551616' for '--quiet-ms <MS>': \
         \"18446744073709551616\" is above the maximum; accepted: 0 to 3600000 ms (1 hour)"
    );
    // `sonde run` shares the options.
    assert_eq!(
        flag_error(&["sonde", "run", "--duration", "inf", "--", "true"]),
        format!(
            "error: invalid value 'inf' for '--duration <SECS>': \"inf\" is not finite; {duration}"
        )
    );
}

/// The settings `sonde run` gets with no option: the defaults the flags always had.
#[test]
fn defaults_reach_the_settings_unchanged() {
    let cli = Cli::try_parse_from(["sonde", "run", "--", "true"]).unwrap();
    let Ok(Action::Trace { settings, .. }) = cli.into_action(env(&[])) else {
        panic!("sonde run traces");
    };
    let t = settings.trace;
    assert_eq!(t.output, crate::config::OutputFormat::Tree);
    assert_eq!(t.service_name, None);
    assert_eq!(t.duration, None);
    assert_eq!(t.capture_bytes, 2048);
    assert_eq!(t.request_timeout, Duration::from_secs(30));
    assert_eq!(t.ring_buffer_bytes, 8 << 20);
    assert_eq!(
        t.wakeup,
        crate::config::Wakeup {
            bytes: super::DEFAULT_WAKEUP_BYTES,
            gap: Duration::from_micros(super::DEFAULT_WAKEUP_GAP_US.into()),
        }
    );
    assert_eq!(t.tree_quiet, Duration::from_secs(1));
    assert_eq!(t.prometheus_listen, None);
    assert_eq!(t.ready_file, None);
    assert!(t.inject);
    assert_eq!(t.db_query_text, crate::config::DbQueryText::Obfuscated);
    assert_eq!(t.hooks, crate::programs::HookChoice::Auto);
    assert!(!t.empty_probes);
    assert!(!settings.otlp.traces.enabled.value);
}

#[test]
fn every_flag_reaches_the_settings() {
    let cli = Cli::try_parse_from([
        "sonde",
        "attach",
        "--pid",
        "7",
        "-o",
        "json",
        "--service-name",
        "svc",
        "--duration",
        "2.5",
        "--capture-bytes",
        "64",
        "--request-timeout",
        "0.25",
        "--ring-buffer-mib",
        "2048",
        "--wakeup-bytes",
        "65536",
        "--wakeup-gap-us",
        "500",
        "--quiet-ms",
        "0",
        "--prometheus-listen",
        "127.0.0.1:9464",
        "--ready-file",
        "/tmp/ready",
        "--no-inject",
        "--db-query-text",
        "off",
        "--hooks",
        "syscall-tracepoints",
        "--empty-probes",
        "--otlp-timeout",
        "2s",
    ])
    .unwrap();
    let Ok(Action::Trace { settings, .. }) = cli.into_action(env(&[])) else {
        panic!("sonde attach traces");
    };
    let t = settings.trace;
    assert_eq!(t.output, crate::config::OutputFormat::Json);
    assert_eq!(t.service_name.as_deref(), Some("svc"));
    assert_eq!(t.duration, Some(Duration::from_millis(2500)));
    assert_eq!(t.capture_bytes, 64);
    assert_eq!(t.request_timeout, Duration::from_millis(250));
    assert_eq!(t.ring_buffer_bytes, 1 << 31);
    assert_eq!(t.wakeup.bytes, 65536);
    assert_eq!(t.wakeup.gap, Duration::from_micros(500));
    assert_eq!(t.tree_quiet, Duration::ZERO);
    assert_eq!(t.prometheus_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(t.ready_file, Some(PathBuf::from("/tmp/ready")));
    assert!(!t.inject);
    assert_eq!(t.db_query_text, crate::config::DbQueryText::Off);
    assert_eq!(t.hooks, crate::programs::HookChoice::SyscallTracepoints);
    assert!(t.empty_probes);
    assert_eq!(settings.otlp.traces.timeout.value, Duration::from_secs(2));
    assert_eq!(
        settings.otlp.traces.timeout.source,
        Source::Flag("--otlp-timeout")
    );
}

#[test]
fn environment_and_target_errors_come_from_into_action() {
    let message = |args: &[&str], vars: &[(&str, &str)]| {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.into_action(env(vars)) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("{args:?} with {vars:?} must fail"),
        }
    };
    assert_eq!(
        message(
            &["sonde", "attach", "--pid", "1"],
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1e30")]
        ),
        "environment variable OTEL_EXPORTER_OTLP_TIMEOUT: \"1e30\" is above the maximum; \
         accepted: more than 0 and at most 3600000 ms (1 hour); a bare number is ms, or give a \
         unit: 250ms, 10s, 1m"
    );
    assert_eq!(
        message(
            &["sonde", "config"],
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "inf")]
        ),
        "environment variable OTEL_EXPORTER_OTLP_TIMEOUT: \"inf\" is not finite; accepted: more \
         than 0 and at most 3600000 ms (1 hour); a bare number is ms, or give a unit: 250ms, \
         10s, 1m"
    );
    assert_eq!(
        message(&["sonde", "attach", "-o", "json"], &[]),
        "nothing to trace: give --pid, --exe or --port (see `sonde attach --help`)"
    );
}
