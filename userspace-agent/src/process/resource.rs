//! Building the OTel resource of one process from `/proc/PID`.

use std::fs;

use super::ProcessError;
use super::otel_env::{non_empty, parse_resource_attributes};
use super::proc_files::{
    basename, env_get, parse_cmdline, parse_environ, proc_path, read_bytes, read_bytes_limited,
    read_comm, read_exe, read_stat,
};
use super::redact::redact_args;
use super::service_name::program_name;
use crate::spans::{KeyValue, Resource, Value};

/// `process.command_line` is cut to this many bytes (spans carry it on every
/// export; a JVM classpath alone can be hundreds of KiB).
pub const MAX_COMMAND_LINE: usize = 4096;

/// How much of `/proc/PID/cmdline` is read: enough for the interpreter options and
/// program name, and for the bounded command line.
const CMDLINE_READ_LIMIT: u64 = 64 * 1024;

/// What the operator set on the command line; wins over anything detected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceOverrides {
    /// `--service-name`: the `service.name` of every traced process.
    pub service_name: Option<String>,
    /// Extra resource attributes; they replace detected ones with the same key. A
    /// `service.name` here is used when `service_name` is `None`.
    pub extra: Vec<KeyValue>,
}

/// Describes process `pid` as an OTel resource (see the [module docs](super) for
/// how `service.name` is chosen).
///
/// Attribute precedence, lowest first: detected (`process.*`, `host.name`,
/// `service.instance.id`, `telemetry.distro.*`) < `OTEL_RESOURCE_ATTRIBUTES` <
/// `overrides.extra`. The command line is redacted ([`super::redact`]) and bounded
/// to [`MAX_COMMAND_LINE`] bytes.
///
/// Errors: [`ProcessError::Gone`] if the process does not exist or exited (or its
/// pid was reused) while being read; [`ProcessError::PermissionDenied`] if the
/// agent may not read its environment or executable.
pub fn resource_for(pid: u32, overrides: &ResourceOverrides) -> Result<Resource, ProcessError> {
    Ok(resource_from_facts(&read_facts(pid)?, overrides))
}

/// Everything a resource is built from: read from `/proc`, or from the snapshot the
/// kernel takes at exec (for processes that are gone before `/proc` can be read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// Distinguishes two processes that had the same pid: the start time from
    /// `/proc/PID/stat`, or the exec timestamp for kernel snapshots.
    pub instance: String,
    pub exe_path: Option<String>,
    pub comm: String,
    /// NUL-separated argv.
    pub cmdline: Vec<u8>,
    /// NUL-separated environment (for kernel snapshots, a bounded prefix).
    pub environ: Vec<u8>,
    pub cwd: Option<String>,
}

impl ProcessFacts {
    /// From the kernel's exec snapshot (`abi::ExecSnapshot`).
    pub fn from_exec_snapshot(
        pid: u32,
        exec_ts_ns: u64,
        filename: &[u8],
        args: &[u8],
        env: &[u8],
    ) -> Self {
        let exe = String::from_utf8_lossy(filename).into_owned();
        Self {
            pid,
            instance: format!("exec{exec_ts_ns}"),
            comm: basename(&exe).to_owned(),
            exe_path: (!exe.is_empty()).then_some(exe),
            cmdline: args.to_vec(),
            environ: env.to_vec(),
            cwd: None,
        }
    }
}

/// Reads [`ProcessFacts`] from `/proc/PID`.
pub fn read_facts(pid: u32) -> Result<ProcessFacts, ProcessError> {
    let stat = read_stat(pid)?;
    // A zombie has exited: its environ and exe are already gone.
    if matches!(stat.state, 'Z' | 'X') {
        return Err(ProcessError::Gone { pid });
    }
    let exe_path = read_exe(pid)?;
    let (cmdline, environ) = read_cmdline_and_environ(pid, exe_path.is_some())?;
    // Only for naming generic scripts ("node index.js"): failure is not an error.
    let cwd = fs::read_link(proc_path(pid, "cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());

    // Everything above may mix two processes if the pid was reused meanwhile; the
    // start time tells.
    if read_stat(pid)?.start_time != stat.start_time {
        return Err(ProcessError::Gone { pid });
    }
    Ok(ProcessFacts {
        pid,
        instance: stat.start_time.to_string(),
        exe_path,
        comm: stat.comm,
        cmdline,
        environ,
        cwd,
    })
}

/// Builds the resource (see the [module docs](super) for how `service.name` is chosen).
pub fn resource_from_facts(facts: &ProcessFacts, overrides: &ResourceOverrides) -> Resource {
    let pid = facts.pid;
    let args = parse_cmdline(&facts.cmdline);
    let env = parse_environ(&facts.environ);
    let exe_name = match &facts.exe_path {
        Some(path) => basename(path).to_owned(),
        None => facts.comm.clone(),
    };
    let otel_attrs = env_get(&env, "OTEL_RESOURCE_ATTRIBUTES")
        .map(parse_resource_attributes)
        .unwrap_or_default();

    let service_name = explicit_service_name(overrides)
        .or_else(|| non_empty(env_get(&env, "OTEL_SERVICE_NAME")))
        .or_else(|| {
            let from_attrs = otel_attrs.iter().find(|(k, _)| k == "service.name");
            non_empty(from_attrs.map(|(_, v)| v.as_str()))
        })
        .or_else(|| program_name(&exe_name, &args, facts.cwd.as_deref()))
        .or_else(|| non_empty(Some(&exe_name)))
        .unwrap_or_else(|| format!("unknown_service:{pid}"));

    let host = host_name();
    let mut attrs = vec![
        KeyValue::new(
            "service.instance.id",
            format!("{host}:{pid}:{}", facts.instance),
        ),
        KeyValue::new("process.pid", i64::from(pid)),
        KeyValue::new("process.executable.name", exe_name),
    ];
    if let Some(path) = &facts.exe_path {
        attrs.push(KeyValue::new("process.executable.path", path.clone()));
    }
    if !args.is_empty() {
        attrs.push(KeyValue::new(
            "process.command_line",
            bounded_command_line(&redact_args(&args)),
        ));
    }
    attrs.push(KeyValue::new("host.name", host));
    attrs.extend(distro_attributes());

    for (key, value) in otel_attrs {
        set(&mut attrs, KeyValue::new(key, value));
    }
    for kv in &overrides.extra {
        set(&mut attrs, kv.clone());
    }
    finish(service_name, attrs)
}

/// Raw `/proc/PID/cmdline` and `environ`.
///
/// Why the retry: during execve the new address space exists (and `exe` already
/// points at the new binary) before the kernel has copied argv and envp into it;
/// both files then read as empty. A freshly spawned process is often caught there,
/// so wait a little for the exec to finish. Kernel threads (no exe) are always empty.
fn read_cmdline_and_environ(pid: u32, has_exe: bool) -> Result<(Vec<u8>, Vec<u8>), ProcessError> {
    const ATTEMPTS: u32 = 20;
    let mut attempt = 1;
    loop {
        let cmdline = read_bytes_limited(pid, "cmdline", CMDLINE_READ_LIMIT)?;
        if !cmdline.is_empty() || !has_exe || attempt == ATTEMPTS {
            return Ok((cmdline, read_bytes(pid, "environ")?));
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The resource of a process that cannot be read (exited, or not permitted):
/// `service.name` is the override if any, else `unknown_service:<comm>` (OTel's
/// convention for an unknown service), `comm` being the pid when unknown too.
pub fn minimal_resource(pid: u32, comm: Option<&str>, overrides: &ResourceOverrides) -> Resource {
    let service_name = explicit_service_name(overrides).unwrap_or_else(|| match non_empty(comm) {
        Some(comm) => format!("unknown_service:{comm}"),
        None => format!("unknown_service:{pid}"),
    });
    let mut attrs = vec![
        KeyValue::new("process.pid", i64::from(pid)),
        KeyValue::new("host.name", host_name()),
    ];
    attrs.extend(distro_attributes());
    for kv in &overrides.extra {
        set(&mut attrs, kv.clone());
    }
    finish(service_name, attrs)
}

/// [`minimal_resource`] with whatever `comm` can still be read.
pub(crate) fn fallback_resource(pid: u32, overrides: &ResourceOverrides) -> Resource {
    minimal_resource(pid, read_comm(pid).ok().as_deref(), overrides)
}

fn explicit_service_name(overrides: &ResourceOverrides) -> Option<String> {
    non_empty(overrides.service_name.as_deref()).or_else(|| {
        overrides
            .extra
            .iter()
            .filter(|kv| kv.key == "service.name")
            .find_map(|kv| match &kv.value {
                Value::Str(s) => non_empty(Some(s)),
                _ => None,
            })
    })
}

fn distro_attributes() -> [KeyValue; 2] {
    [
        KeyValue::new("telemetry.distro.name", "sonde"),
        KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
    ]
}

fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Joins arguments with spaces, cut to [`MAX_COMMAND_LINE`] bytes on a char boundary.
fn bounded_command_line(args: &[String]) -> String {
    let mut line = args.join(" ");
    if line.len() > MAX_COMMAND_LINE {
        let mut end = MAX_COMMAND_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Inserts or replaces `kv` by key.
fn set(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    match attrs.iter_mut().find(|a| a.key == kv.key) {
        Some(existing) => *existing = kv,
        None => attrs.push(kv),
    }
}

/// Puts `service.name` first, replacing any other `service.name`.
fn finish(service_name: String, mut attrs: Vec<KeyValue>) -> Resource {
    attrs.retain(|kv| kv.key != "service.name");
    attrs.insert(0, KeyValue::new("service.name", service_name.clone()));
    Resource {
        service_name,
        attributes: attrs,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::process::test_support::{spawn, wait_for};

    fn str_attr<'a>(r: &'a Resource, key: &str) -> Option<&'a str> {
        match r.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn command_line_bounded_on_char_boundary() {
        let args = vec!["é".repeat(3000)];
        let line = bounded_command_line(&args);
        assert!(line.len() <= MAX_COMMAND_LINE && line.len() >= MAX_COMMAND_LINE - 1);
        assert_eq!(bounded_command_line(&["a".into(), "b".into()]), "a b");
    }

    #[test]
    fn minimal_resource_names() {
        let none = ResourceOverrides::default();
        assert_eq!(
            minimal_resource(7, Some("nginx"), &none).service_name,
            "unknown_service:nginx"
        );
        assert_eq!(
            minimal_resource(7, None, &none).service_name,
            "unknown_service:7"
        );
        let r = minimal_resource(7, Some(""), &none);
        assert_eq!(r.service_name, "unknown_service:7");
        assert_eq!(r.get("process.pid"), Some(&Value::Int(7)));
        assert_eq!(str_attr(&r, "service.name"), Some("unknown_service:7"));
        let named = ResourceOverrides {
            service_name: Some("web".into()),
            extra: vec![],
        };
        assert_eq!(minimal_resource(7, None, &named).service_name, "web");
    }

    #[test]
    fn gone_process_is_typed_error() {
        let err = resource_for(u32::MAX, &ResourceOverrides::default()).expect_err("no such pid");
        assert!(matches!(err, ProcessError::Gone { pid: u32::MAX }), "{err}");
        assert_eq!(err.pid(), u32::MAX);
    }

    #[test]
    fn zombie_is_gone() {
        let child = spawn(&mut Command::new("true"));
        let pid = child.pid();
        // Not reaped until the guard drops: it stays a zombie meanwhile.
        wait_for("zombie", || {
            (read_stat(pid).ok()?.state == 'Z').then_some(())
        });
        let err = resource_for(pid, &ResourceOverrides::default()).expect_err("zombie");
        assert!(matches!(err, ProcessError::Gone { .. }), "{err}");
    }

    #[test]
    fn sleep_with_otel_service_name() {
        let child = spawn(
            Command::new("sleep")
                .arg("30")
                .env("OTEL_SERVICE_NAME", "checkout")
                .env(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=ignored, deployment.environment=prod,team=a%2Cb,bad",
                ),
        );
        let pid = child.pid();
        let r = resource_for(pid, &ResourceOverrides::default()).expect("resource");
        assert_eq!(r.service_name, "checkout");
        assert_eq!(r.attributes[0], KeyValue::new("service.name", "checkout"));
        assert_eq!(
            r.attributes
                .iter()
                .filter(|kv| kv.key == "service.name")
                .count(),
            1
        );
        assert_eq!(r.get("process.pid"), Some(&Value::Int(i64::from(pid))));
        assert_eq!(str_attr(&r, "process.executable.name"), Some("sleep"));
        assert!(str_attr(&r, "process.executable.path").is_some_and(|p| p.ends_with("/sleep")));
        assert_eq!(str_attr(&r, "process.command_line"), Some("sleep 30"));
        assert_eq!(str_attr(&r, "deployment.environment"), Some("prod"));
        assert_eq!(str_attr(&r, "team"), Some("a,b"));
        assert_eq!(str_attr(&r, "telemetry.distro.name"), Some("sonde"));
        assert_eq!(
            str_attr(&r, "telemetry.distro.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let host = host_name();
        assert_eq!(str_attr(&r, "host.name"), Some(host.as_str()));
        let start = read_stat(pid).expect("stat").start_time;
        let instance = format!("{host}:{pid}:{start}");
        assert_eq!(str_attr(&r, "service.instance.id"), Some(instance.as_str()));
    }

    #[test]
    fn service_name_precedence() {
        let child = spawn(
            // sh stays alive (no exec: a command follows) with the secret in argv.
            Command::new("sh")
                .args(["-c", "sleep 30; :", "sh", "--password=hunter2"])
                .env_remove("OTEL_SERVICE_NAME")
                .env("OTEL_RESOURCE_ATTRIBUTES", "service.name=%20cart%20,k=v"),
        );
        let pid = child.pid();
        let r = resource_for(pid, &ResourceOverrides::default()).expect("resource");
        assert_eq!(r.service_name, "cart");
        assert_eq!(
            str_attr(&r, "process.command_line"),
            Some("sh -c sleep 30; : sh --password=****")
        );

        let overrides = ResourceOverrides {
            service_name: Some("forced".into()),
            extra: vec![KeyValue::new("k", "override"), KeyValue::new("tier", 3i64)],
        };
        let r = resource_for(pid, &overrides).expect("resource");
        assert_eq!(r.service_name, "forced");
        assert_eq!(str_attr(&r, "k"), Some("override"));
        assert_eq!(r.get("tier"), Some(&Value::Int(3)));
    }

    #[test]
    fn executable_name_fallback_and_python_script() {
        let plain = spawn(Command::new("sleep").arg("30").env_clear());
        let r = resource_for(plain.pid(), &ResourceOverrides::default()).expect("resource");
        assert_eq!(r.service_name, "sleep");

        let dir = std::env::temp_dir().join(format!("sonde-resource-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let script = dir.join("app.py");
        fs::write(&script, "import time\ntime.sleep(30)\n").expect("write script");
        let py = spawn(
            Command::new("python3")
                .arg(&script)
                .env_remove("OTEL_SERVICE_NAME"),
        );
        // The pyenv shim (if any) execs the real interpreter: wait for it.
        let r = wait_for("python to exec", || {
            let r = resource_for(py.pid(), &ResourceOverrides::default()).ok()?;
            let exe = str_attr(&r, "process.executable.name")?;
            exe.starts_with("python").then_some(r)
        });
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(r.service_name, "app");
    }
}
