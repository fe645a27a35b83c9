//! Test helpers: this machine's binaries as fixtures, skips that say why (and fail under
//! `CI` where the fixture is part of the machine), and a scratch directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::elf::Elf;

/// Prints `skipped: <test>: <why>`; panics instead under `CI` (CI must not go green by
/// skipping).
pub(crate) fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI must not skip it"
    );
    eprintln!("skipped: {test}: {why}");
}

/// Prints `skipped: <test>: <why>`, also under `CI`: for fixtures the project does not
/// install (third-party programs that happen to be on this machine).
pub(crate) fn skip_optional(test: &str, why: &str) {
    eprintln!("skipped: {test}: {why} (optional fixture)");
}

/// The ELF file at `path`, a file of the machine image: skipped (failing under CI) if absent.
pub(crate) fn system_elf(test: &str, path: &str) -> Option<Elf> {
    if !Path::new(path).exists() {
        skip(test, &format!("{path} is not on this machine"));
        return None;
    }
    match Elf::open(Path::new(path)) {
        Ok(elf) => Some(elf),
        Err(e) => panic!("{test}: {path}: {e}"),
    }
}

/// A directory under the system temp dir for this test binary's fixtures, made on demand.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("sonde-binary-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Runs `cmd`, returning stdout, or a message naming the command and its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// Whether `tool` runs (`tool --version` exits 0).
pub(crate) fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `nm`-style lines `ADDR TYPE NAME` of `args` (e.g. `["-D", "--defined-only", path]`),
/// as (name, address) pairs.
pub(crate) fn nm(args: &[&str]) -> Result<Vec<(String, u64)>, String> {
    let out = run(Command::new("nm").args(args))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let address = u64::from_str_radix(parts.next()?, 16).ok()?;
            let _kind = parts.next()?;
            let name = parts.next()?;
            // Strip a symbol version (`SSL_read@@OPENSSL_3.0.0`).
            let name = name.split('@').next()?;
            Some((name.to_owned(), address))
        })
        .collect())
}

/// The `readelf -lW` PT_LOAD rows of `path` as (offset, vaddr, filesz).
pub(crate) fn readelf_loads(path: &str) -> Result<Vec<(u64, u64, u64)>, String> {
    let out = run(Command::new("readelf").args(["-lW", path]))?;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&"LOAD")).then_some(())?;
            Some((hex(cols.get(1)?)?, hex(cols.get(2)?)?, hex(cols.get(4)?)?))
        })
        .collect())
}

/// Compiles C `source` with `cc args...` into the scratch directory (once: the output is
/// keyed by source and arguments), returning the binary's path.
pub(crate) fn cc(name: &str, source: &str, args: &[&str]) -> Result<PathBuf, String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (source, args).hash(&mut hasher);
    let dir = scratch("c");
    let out = dir.join(format!("{name}-{:016x}", hasher.finish()));
    if out.exists() {
        return Ok(out);
    }
    let src = dir.join(format!("{name}-{:016x}.c", hasher.finish()));
    std::fs::write(&src, source).map_err(|e| e.to_string())?;
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    run(Command::new("cc")
        .arg("-o")
        .arg(&partial)
        .arg(&src)
        .args(args))?;
    std::fs::rename(&partial, &out).map_err(|e| e.to_string())?;
    Ok(out)
}
