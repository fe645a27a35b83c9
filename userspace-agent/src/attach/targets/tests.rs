//! Target parsing, and resolution against real processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::*;
use crate::process::test_support::{Guard, spawn, wait_for};

/// A python listener on `host`, and the port it got.
fn python_listener(family: &str, host: &str) -> (Guard, u16) {
    let script = format!(
        "import socket,time; s=socket.socket(socket.{family}); s.bind(('{host}',0)); s.listen(); \
         print(s.getsockname()[1], flush=True); time.sleep(30)"
    );
    let mut guard = spawn(
        Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped()),
    );
    let stdout = guard.0.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read port");
    let port = line.trim().parse().expect("python printed a port");
    (guard, port)
}

#[test]
fn exe_glob_parsing() {
    assert!(matches!(
        Target::exe_glob("/usr/sbin/nginx*"),
        Ok(Target::ExeGlob(_))
    ));
    let err = Target::exe_glob("/usr/[").expect_err("bad glob");
    assert!(
        err.to_string()
            .contains("invalid executable glob \"/usr/[\""),
        "{err}"
    );
    let err = Target::exe_glob("nginx").expect_err("not a path");
    assert!(err.to_string().contains("/**/nginx"), "{err}");
}

#[test]
fn glob_semantics() {
    let g = |p: &str, path: &str| {
        Pattern::new(p)
            .expect("glob")
            .matches_with(path, MATCH_OPTIONS)
    };
    assert!(g("/usr/sbin/nginx*", "/usr/sbin/nginx"));
    assert!(g("/usr/sbin/nginx*", "/usr/sbin/nginx-debug"));
    assert!(g("/**/nginx", "/usr/sbin/nginx"));
    assert!(!g("/usr/*", "/usr/sbin/nginx"), "* stays in one directory");
    assert!(!g("/usr/sbin/Nginx", "/usr/sbin/nginx"));
}

#[test]
fn spec_parsing() {
    assert_eq!("pid:42".parse::<Target>().ok(), Some(Target::Pid(42)));
    assert_eq!("port:8080".parse::<Target>().ok(), Some(Target::Port(8080)));
    let exe: Target = "exe:/usr/bin/*".parse().expect("exe spec");
    assert_eq!(exe.to_string(), "exe:/usr/bin/*");
    for bad in [
        "42",
        "pid:x",
        "pid:0",
        "port:0",
        "port:70000",
        "host:a",
        "exe:nginx",
    ] {
        assert!(bad.parse::<Target>().is_err(), "{bad}");
    }
}

#[test]
fn missing_pid_is_clear_error() {
    let err = resolve(&[Target::Pid(u32::MAX)]).expect_err("no such pid");
    assert_eq!(err.to_string(), format!("no process with pid {}", u32::MAX));
    assert!(matches!(
        resolve(&[Target::Pid(0)]),
        Err(TargetError::NoSuchPid(0))
    ));
}

#[test]
fn thread_id_maps_to_its_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() };
        let _ = tx.send(tid);
        let _ = done_rx.recv();
    });
    let tid = u32::try_from(rx.recv().expect("tid")).expect("positive tid");
    let resolved = resolve(&[Target::Pid(tid)]);
    let _ = done_tx.send(());
    let _ = thread.join();
    let resolved = resolved.expect("thread resolves");
    assert!(resolved.contains(std::process::id()));
    assert!(!resolved.contains(tid));
}

#[test]
fn pid_includes_descendants() {
    // sh -> sh -> sleep: the background jobs force real forks (no exec shortcut).
    let shell = spawn(Command::new("sh").args(["-c", "sh -c 'sleep 30 & wait' & wait"]));
    let root = shell.pid();
    let tree = wait_for("grandchild sleep", || {
        let tree = descendants(root);
        (tree.len() >= 2).then_some(tree)
    });
    let names: Vec<String> = tree
        .iter()
        .filter_map(|&pid| crate::process::proc_files::read_comm(pid).ok())
        .collect();
    assert!(names.iter().any(|n| n == "sleep"), "{names:?}");
    let resolved = resolve(&[Target::Pid(root)]).expect("resolve");
    assert!(resolved.contains(root));
    for pid in &tree {
        assert!(resolved.contains(*pid), "descendant {pid}");
    }
    assert!(!tree.contains(&root));
}

#[test]
fn exe_glob_finds_sleep() {
    let child = spawn(Command::new("sleep").arg("30"));
    let pid = child.pid();
    let exe = crate::process::proc_files::read_exe(pid)
        .expect("read exe")
        .expect("sleep has an exe");
    let glob = Target::exe_glob(&format!("{exe}*")).expect("glob");
    let resolved = resolve(std::slice::from_ref(&glob)).expect("resolve");
    assert!(resolved.contains(pid));
    assert_eq!(resolved.exe_globs.len(), 1);
    assert!(exe_matches(pid, &resolved.exe_globs));
    assert!(!exe_matches(std::process::id(), &resolved.exe_globs));
    assert!(
        !exe_matches(u32::MAX, &resolved.exe_globs),
        "vanished process"
    );
    assert!(!exe_matches(pid, &[]));

    let none = Target::exe_glob("/nonexistent/dir/*").expect("glob");
    let resolved = resolve(&[none]).expect("no match is not an error");
    assert!(resolved.pids.is_empty());
}

#[test]
fn port_finds_ipv4_listener() {
    let (child, port) = python_listener("AF_INET", "127.0.0.1");
    let resolved = resolve(&[Target::Port(port)]).expect("resolve port");
    assert!(resolved.contains(child.pid()), "{resolved:?}");
}

#[test]
fn port_finds_ipv6_listener() {
    let (child, port) = python_listener("AF_INET6", "::1");
    let resolved = resolve(&[Target::Port(port)]).expect("resolve port");
    assert!(resolved.contains(child.pid()), "{resolved:?}");
}

#[test]
fn port_without_listener_is_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = resolve(&[Target::Port(port)]).expect_err("nothing listens");
    assert_eq!(
        err.to_string(),
        format!("nothing is listening on TCP port {port}")
    );
}

#[test]
fn targets_combine() {
    let a = spawn(Command::new("sleep").arg("30"));
    let (b, port) = python_listener("AF_INET", "127.0.0.1");
    let resolved = resolve(&[Target::Pid(a.pid()), Target::Port(port)]).expect("resolve");
    assert!(resolved.contains(a.pid()) && resolved.contains(b.pid()));
}
