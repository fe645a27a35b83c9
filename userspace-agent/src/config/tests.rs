use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::file::FileConfig;
use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write_file(text: &str) -> (tempdir::TempDir, PathBuf) {
    let dir = tempdir::TempDir::new();
    let path = dir.0.join("sonde.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A throwaway directory (no tempfile crate needed).
mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "sonde-config-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn defaults_follow_the_spec_and_leave_export_off() {
    let c = Config::load(None, &OtlpArgs::default(), env(&[])).unwrap();
    let o = &c.otlp;
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
    let c = Config::load(None, &flags, env(&[])).unwrap();
    assert!(c.otlp.enabled.value);
    assert_eq!(c.otlp.enabled.source, Source::Flag("--otlp"));
    assert_eq!(c.otlp.endpoint.value, "http://localhost:4317");
}

#[test]
fn http_appends_the_signal_path_to_the_generic_endpoint_only() {
    let c = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
    )
    .unwrap();
    assert!(c.otlp.enabled.value);
    assert_eq!(
        c.otlp.enabled.source,
        Source::Env("OTEL_EXPORTER_OTLP_ENDPOINT".into())
    );
    assert_eq!(c.otlp.endpoint.value, "http://collector:4318/v1/traces");
    assert_eq!(
        c.otlp_for(Signal::Metrics).unwrap().endpoint.value,
        "http://collector:4318/v1/metrics"
    );

    let c = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.otlp.endpoint.value, "http://traces:9999/custom");
    assert_eq!(
        c.otlp.endpoint.source,
        Source::Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into())
    );
    // The metrics signal still uses the generic endpoint, with its path.
    assert_eq!(
        c.otlp_for(Signal::Metrics).unwrap().endpoint.value,
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
    let c = Config::load(
        None,
        &OtlpArgs::default(),
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
    let o = &c.otlp;
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
    let m = c.otlp_for(Signal::Metrics).unwrap();
    assert_eq!(m.protocol.value, Protocol::HttpProtobuf);
    assert_eq!(m.timeout.value, Duration::from_millis(1000));
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
    let c = Config::load(Some(&path), &OtlpArgs::default(), env(&[])).unwrap();
    let o = &c.otlp;
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
    let c = Config::load(Some(&path), &OtlpArgs::default(), env(&vars)).unwrap();
    assert_eq!(c.otlp.endpoint.value, "http://from-env:4318/v1/traces");
    assert_eq!(
        c.otlp.endpoint.source,
        Source::Env("OTEL_EXPORTER_OTLP_ENDPOINT".into())
    );
    assert_eq!(c.otlp.protocol.value, Protocol::HttpProtobuf);
    assert_eq!(c.otlp.timeout.value, Duration::from_secs(4));
    assert_eq!(
        c.otlp.compression.source, file,
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
    let c = Config::load(Some(&path), &flags, env(&vars)).unwrap();
    let o = &c.otlp;
    assert_eq!(o.endpoint.value, "http://from-flag:4317");
    assert_eq!(o.endpoint.source, Source::Flag("--otlp-endpoint"));
    assert_eq!(o.protocol.source, Source::Flag("--otlp-protocol"));
    assert_eq!(o.headers.value, [("x-flag".to_owned(), "1".to_owned())]);
    assert_eq!(o.timeout.value, Duration::from_millis(500));
    assert_eq!(o.compression.value, Compression::None);
}

#[test]
fn a_higher_source_generic_endpoint_beats_a_lower_per_signal_one() {
    let (_dir, path) = write_file("[otlp]\ntraces_endpoint = \"http://file:1/x\"\n");
    let c = Config::load(
        Some(&path),
        &OtlpArgs::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")]),
    )
    .unwrap();
    assert_eq!(c.otlp.endpoint.value, "http://env:4318/v1/traces");
    let c = Config::load(Some(&path), &OtlpArgs::default(), env(&[])).unwrap();
    assert_eq!(c.otlp.endpoint.value, "http://file:1/x");
}

#[test]
fn exporter_variables_and_enabled_switch() {
    let c = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]),
    )
    .unwrap();
    assert!(!c.otlp.enabled.value);
    let c = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[("OTEL_TRACES_EXPORTER", "otlp")]),
    )
    .unwrap();
    assert!(c.otlp.enabled.value);
    let (_dir, path) = write_file("[otlp]\nenabled = false\nendpoint = \"http://c:4318\"\n");
    let c = Config::load(Some(&path), &OtlpArgs::default(), env(&[])).unwrap();
    assert!(!c.otlp.enabled.value);
    // --otlp wins over the file's enabled = false.
    let flags = OtlpArgs {
        otlp: true,
        ..OtlpArgs::default()
    };
    assert!(
        Config::load(Some(&path), &flags, env(&[]))
            .unwrap()
            .otlp
            .enabled
            .value
    );
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
    let err = Config::load(
        None,
        &OtlpArgs::default(),
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
    let err = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("env OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{err:#}"
    );
    let err = Config::load(
        Some(std::path::Path::new("/nonexistent/sonde.toml")),
        &OtlpArgs::default(),
        env(&[]),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/sonde.toml"));
}

#[test]
fn display_shows_sources_and_masks_secrets() {
    let flags = OtlpArgs {
        otlp_endpoint: Some("https://user:hunter2@collector.example:4318".into()),
        otlp_headers: vec![("x-api-key".into(), "topsecret".into())],
        ..OtlpArgs::default()
    };
    let c = Config::load(
        None,
        &flags,
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

#[test]
fn huge_timeouts_are_errors_naming_their_source() {
    let range = "accepted: more than 0 and at most 3600000 ms (1 hour); a bare number is ms, \
                 or give a unit: 250ms, 10s, 1m";
    for var in [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        let err = Config::load(None, &OtlpArgs::default(), env(&[(var, "1e30")])).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("environment variable {var}: \"1e30\" is above the maximum; {range}")
        );
    }
    // The metrics signal's own variable fails when the metrics exporter resolves.
    let c = Config::load(
        None,
        &OtlpArgs::default(),
        env(&[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "inf")]),
    )
    .unwrap();
    let err = c.otlp_for(Signal::Metrics).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "environment variable OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: \"inf\" is not finite; {range}"
        )
    );

    let (_dir, path) = write_file("[otlp]\ntimeout = 18446744073709551615\n");
    let err = Config::load(Some(&path), &OtlpArgs::default(), env(&[])).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "config file {}: [otlp] timeout: \"18446744073709551615\" is above the maximum; {range}",
            path.display()
        )
    );
    let (_dir, path) = write_file("[otlp]\ntimeout = \"NaN s\"\n");
    let err = Config::load(Some(&path), &OtlpArgs::default(), env(&[])).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "config file {}: [otlp] timeout: \"NaN s\" is not a number; {range}",
            path.display()
        )
    );
}
