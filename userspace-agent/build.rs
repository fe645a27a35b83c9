//! Builds the eBPF probes (clang, BPF target, CO-RE) and the ABI layout table.
//!
//! clang is required: set `SONDE_CLANG` to pick a binary; otherwise `clang-19` and then
//! `clang` are tried. `cargo xtask setup` (or .ci/run) installs it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let probes = manifest.join("../ebpf-probes");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    rerun_if_changed(&probes);
    println!("cargo:rerun-if-env-changed=SONDE_CLANG");

    build_bpf(&probes, "sonde.bpf.c", &out.join("sonde.bpf.o"));
    // Loaded by the root tests of attach/probe_log.rs only.
    build_bpf(&probes, "tests/log_test.bpf.c", &out.join("log_test.bpf.o"));
    build_abi_layout(&probes, &out);
    build_ctx_parser(&probes);
    build_log_host(&probes);
}

fn rerun_if_changed(dir: &Path) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rerun_if_changed(&path);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h")) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn clang() -> String {
    if let Some(c) = env::var_os("SONDE_CLANG") {
        return c.to_string_lossy().into_owned();
    }
    for candidate in ["clang-19", "clang"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate.to_owned();
        }
    }
    panic!(
        "no clang found: the eBPF probes need clang with the BPF target \
         (apt-get install clang-19 llvm-19 libbpf-dev, or run `cargo xtask setup`); \
         set SONDE_CLANG to choose one"
    );
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}

fn build_bpf(probes: &Path, source: &str, obj: &Path) {
    run(Command::new(clang())
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .arg(format!("-I{}", probes.join("include").display()))
        .arg(format!("-I{}", probes.display()))
        .arg("-c")
        .arg(probes.join(source))
        .arg("-o")
        .arg(obj));
}

/// The kernel's trace-context parser (trace_ctx/ctx_parse.h) compiled for the host, so unit
/// tests exercise the same C code the probes run (`propagation/kernel_parser_tests.rs`).
fn build_ctx_parser(probes: &Path) {
    cc::Build::new()
        .file(probes.join("host").join("ctx_parse_host.c"))
        .include(probes.join("include"))
        .include(probes)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("sonde_ctx_parse");
}

/// The probes' aya-log record builder (common/log.h) compiled for the host, so unit tests
/// decode records of every shape with aya-log itself (`attach/probe_log/tests.rs`).
fn build_log_host(probes: &Path) {
    cc::Build::new()
        .file(probes.join("host").join("log_host.c"))
        .include(probes.join("include"))
        .include(probes)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("sonde_log_host");
}

fn build_abi_layout(probes: &Path, out: &Path) {
    let exe = out.join("abi_layout");
    run(
        Command::new(env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
            .arg(format!("-I{}", probes.join("include").display()))
            .arg(probes.join("host").join("abi_layout.c"))
            .arg("-o")
            .arg(&exe),
    );
    let output = Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    assert!(output.status.success(), "{} failed", exe.display());
    std::fs::write(out.join("abi_layout.rs"), output.stdout).expect("writing abi_layout.rs");
}
