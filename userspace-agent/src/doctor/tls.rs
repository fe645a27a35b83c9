//! `sonde doctor --pid`: the TLS libraries each process maps, how Sonde found each
//! (shared library, linked into the program, a Go program and where its probe points came
//! from), and which functions it would probe, or why it cannot; and for a Go program, how
//! its goroutines would be followed (`attach/go_runtime.rs`). Read from the files the
//! process maps, as the agent reads them; nothing is attached.

use std::io::{self, Write};

use serde::Serialize;

use crate::attach::go_runtime;
use crate::attach::tls::{FileReport, process_report};
use crate::process::proc_files::read_comm;

/// One process's TLS libraries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessTls {
    pub pid: u32,
    /// `comm`, when readable.
    pub name: Option<String>,
    /// False when the process is gone or its maps are unreadable.
    pub found: bool,
    pub libraries: Vec<TlsFile>,
    /// A Go program: how its goroutines would be followed (`Ok`), or why not (`Err`);
    /// None for any other program.
    pub go_runtime: Option<Result<String, String>>,
}

/// One TLS library file of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFile {
    pub path: String,
    /// What it is (`OpenSSL`, `GnuTLS`, `Go crypto/tls (go1.26.8, ...)`); None when it
    /// could not be told.
    pub library: Option<String>,
    /// The functions Sonde would probe.
    pub functions: Vec<String>,
    /// Why Sonde cannot probe it.
    pub error: Option<String>,
}

impl From<FileReport> for TlsFile {
    fn from(report: FileReport) -> Self {
        let path = report.path.display().to_string();
        match report.outcome {
            Ok((library, functions)) => TlsFile {
                path,
                library: Some(library.to_string()),
                functions: functions.into_iter().map(str::to_owned).collect(),
                error: None,
            },
            Err(error) => TlsFile {
                path,
                library: None,
                functions: Vec::new(),
                error: Some(error),
            },
        }
    }
}

/// Reads the TLS libraries of each of `pids`.
pub fn inspect(pids: &[u32]) -> Vec<ProcessTls> {
    pids.iter()
        .map(|&pid| {
            let name = read_comm(pid).ok();
            let report = process_report(pid);
            ProcessTls {
                pid,
                name,
                found: report.is_some(),
                libraries: report
                    .unwrap_or_default()
                    .into_iter()
                    .map(TlsFile::from)
                    .collect(),
                go_runtime: go_runtime::process_report(pid),
            }
        })
        .collect()
}

/// Writes the TLS section of the text report.
pub fn print(processes: &[ProcessTls], out: &mut impl Write) -> io::Result<()> {
    for p in processes {
        let name = p.name.as_deref().unwrap_or("?");
        writeln!(out)?;
        writeln!(out, "TLS libraries of process {} ({name})", p.pid)?;
        if !p.found {
            writeln!(out, "  process gone, or its memory map is unreadable")?;
            continue;
        }
        if p.libraries.is_empty() {
            writeln!(
                out,
                "  none found: its TLS (if any) is in a library Sonde cannot probe \
                 (stripped and static, Java, rustls); HTTPS from it gives no spans"
            )?;
        }
        match &p.go_runtime {
            Some(Ok(how)) => writeln!(out, "  Go runtime: goroutines followed ({how})")?,
            Some(Err(why)) => writeln!(
                out,
                "  Go runtime: NOT FOLLOWED, its requests are followed by thread: {why}"
            )?,
            None => {}
        }
        for lib in &p.libraries {
            match (&lib.library, &lib.error) {
                (Some(library), _) => writeln!(
                    out,
                    "  ok       {}: {library}; probes {}",
                    lib.path,
                    lib.functions.join(", ")
                )?,
                (None, Some(error)) => writeln!(out, "  NOT PROBED {}: {error}", lib.path)?,
                (None, None) => {}
            }
        }
    }
    Ok(())
}
