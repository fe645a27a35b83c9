use std::path::PathBuf;
use std::time::Duration;

use super::env::export_interval;
use super::file::FileConfig;
use super::test_support::{env, write_file};
use super::*;

#[test]
fn http_appends_the_signal_path_to_the_generic_endpoint_only() {
    let c = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
    )
    .unwrap();
    assert!(c.traces.enabled.value);
    assert_eq!(
        c.traces.enabled.source,
        Source::Env("OTEL_EXPORTER_OTLP_ENDPOINT".into())
    );
    assert_eq!(c.traces.endpoint.value, "http://collector:4318/v1/traces");
    assert_eq!(
        c.for_signal(Signal::Metrics).unwrap().endpoint.value,
        "http://collector:4318/v1/metrics"
    );

    let c = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.traces.endpoint.value, "http://traces:9999/custom");
    assert_eq!(
        c.traces.endpoint.source,
        Source::Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into())
    );
    // The metrics signal still uses the generic endpoint, with its path.
    assert_eq!(
        c.for_signal(Signal::Metrics).unwrap().endpoint.value,
        "http://collector:4318/base/v1/metrics"
    );

    // gRPC never appends a path.
    assert_eq!(
        signal_url("http://c:4317", Protocol::Grpc, Signal::Traces),
        "http://c:4317"
    );
}

#[test]
fn per_signal_variables_override_generic_ones() {
    let c = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces.pem"),
            // Empty means unset.
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ]),
    )
    .unwrap();
    let o = &c.traces;
    assert!(!o.enabled.value, "no endpoint configured");
    assert_eq!(o.protocol.value, Protocol::Grpc);
    assert_eq!(o.endpoint.value, "http://localhost:4317");
    assert_eq!(o.timeout.value, Duration::from_millis(2500));
    assert_eq!(o.headers.value, [("b".to_owned(), "2".to_owned())]);
    assert_eq!(o.compression.value, Compression::Gzip);
    assert_eq!(
        o.certificate.as_ref().unwrap().value,
        PathBuf::from("/traces.pem")
    );
    // Metrics only sees the generic ones.
    let m = c.for_signal(Signal::Metrics).unwrap();
    assert_eq!(m.protocol.value, Protocol::HttpProtobuf);
    assert_eq!(m.timeout.value, Duration::from_millis(1000));
}

#[test]
fn a_higher_source_generic_endpoint_beats_a_lower_per_signal_one() {
    let (_dir, path) = write_file("[otlp]\ntraces_endpoint = \"http://file:1/x\"\n");
    let c = OtlpSettings::load(
        Some(&path),
        FlagLayers::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")]),
    )
    .unwrap();
    assert_eq!(c.traces.endpoint.value, "http://env:4318/v1/traces");
    let c = OtlpSettings::load(Some(&path), FlagLayers::default(), env(&[])).unwrap();
    assert_eq!(c.traces.endpoint.value, "http://file:1/x");
}

#[test]
fn headers_are_parsed_and_percent_decoded() {
    assert_eq!(
        parse_headers(" api-key = se%20cret%2C1 ,x-b=a=b,, Authorization=Basic%20dXNlcjpwdw==")
            .unwrap(),
        [
            ("api-key".to_owned(), "se cret,1".to_owned()),
            ("x-b".to_owned(), "a=b".to_owned()),
            ("Authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned()),
        ]
    );
    assert!(parse_headers("").unwrap().is_empty());
    assert!(parse_headers("novalue").is_err());
    assert!(parse_headers("=v").is_err());
    assert!(parse_headers("k=%zz").is_err());
    assert!(parse_headers("bad key=v").is_err());
    let err = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[("OTEL_EXPORTER_OTLP_HEADERS", "oops")]),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("OTEL_EXPORTER_OTLP_HEADERS"),
        "{err:#}"
    );
}

#[test]
fn file_headers_as_list_or_string() {
    let f = FileConfig::parse("[otlp]\nheaders = [\"a=1\", \"b=x%3Dy\"]\n").unwrap();
    let l = f
        .layer(std::path::Path::new("/etc/sonde.toml"), Signal::Traces)
        .unwrap();
    assert_eq!(
        l.headers.unwrap().value,
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "x=y".to_owned())
        ]
    );
    let f = FileConfig::parse("[otlp]\nheaders = \"a=1,b=2\"\ntimeout = 250\n").unwrap();
    let l = f
        .layer(std::path::Path::new("/etc/sonde.toml"), Signal::Traces)
        .unwrap();
    assert_eq!(l.headers.unwrap().value.len(), 2);
    assert_eq!(l.timeout.unwrap().value, Duration::from_millis(250));
}

#[test]
fn bad_values_are_rejected_with_their_source() {
    assert!(FileConfig::parse("[otlp]\nendpoit = \"x\"\n").is_err());
    assert!(FileConfig::parse("[otpl]\n").is_err());
    assert!(Protocol::parse("http/json").is_err());
    assert!(Protocol::parse("udp").is_err());
    assert!(Compression::parse("zstd").is_err());
    assert!(parse_timeout("0").is_err());
    assert!(parse_timeout("soon").is_err());
    assert_eq!(parse_timeout("1500").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
    let err = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("env OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{err:#}"
    );
    let err = OtlpSettings::load(
        Some(std::path::Path::new("/nonexistent/sonde.toml")),
        FlagLayers::default(),
        env(&[]),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/sonde.toml"));
}

#[test]
fn interval_from_env_with_spec_default() {
    assert_eq!(export_interval(|_| None), Duration::from_secs(60));
    assert_eq!(
        export_interval(|_| Some("1500".into())),
        Duration::from_millis(1500)
    );
    assert_eq!(
        export_interval(|_| Some("junk".into())),
        Duration::from_secs(60)
    );
    assert_eq!(
        export_interval(|_| Some("0".into())),
        Duration::from_secs(60)
    );
    // Beyond the documented maximum: ignored like any other bad value.
    assert_eq!(
        export_interval(|_| Some("18446744073709551615".into())),
        Duration::from_secs(60)
    );
    let c = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[("OTEL_METRIC_EXPORT_INTERVAL", "500")]),
    )
    .unwrap();
    assert_eq!(c.metric_export_interval, Duration::from_millis(500));
}

#[test]
fn huge_timeouts_are_errors_naming_their_source() {
    let range = "accepted: more than 0 and at most 3600000 ms (1 hour); a bare number is ms, \
                 or give a unit: 250ms, 10s, 1m";
    for var in [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        let err =
            OtlpSettings::load(None, FlagLayers::default(), env(&[(var, "1e30")])).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("environment variable {var}: \"1e30\" is above the maximum; {range}")
        );
    }
    // The metrics signal's own variable fails when the metrics exporter resolves.
    let c = OtlpSettings::load(
        None,
        FlagLayers::default(),
        env(&[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "inf")]),
    )
    .unwrap();
    let err = c.for_signal(Signal::Metrics).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "environment variable OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: \"inf\" is not finite; {range}"
        )
    );

    let (_dir, path) = write_file("[otlp]\ntimeout = 18446744073709551615\n");
    let err = OtlpSettings::load(Some(&path), FlagLayers::default(), env(&[])).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "config file {}: [otlp] timeout: \"18446744073709551615\" is above the maximum; {range}",
            path.display()
        )
    );
    let (_dir, path) = write_file("[otlp]\ntimeout = \"NaN s\"\n");
    let err = OtlpSettings::load(Some(&path), FlagLayers::default(), env(&[])).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "config file {}: [otlp] timeout: \"NaN s\" is not a number; {range}",
            path.display()
        )
    );
}
