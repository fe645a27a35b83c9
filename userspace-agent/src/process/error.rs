//! Errors from reading `/proc/PID`.

use std::io;

use thiserror::Error;

/// Why a process could not be described.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// `/proc/PID` does not exist (the process exited, or never existed), or the pid
    /// was reused by another process while we were reading.
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    /// Not allowed to read a file of this process (the agent lacks root or
    /// `CAP_SYS_PTRACE` over it).
    #[error("permission denied reading /proc/{pid}/{file}")]
    PermissionDenied { pid: u32, file: &'static str },
    /// The file did not have the format the kernel documents.
    #[error("malformed /proc/{pid}/{file}: {reason}")]
    Malformed {
        pid: u32,
        file: &'static str,
        reason: String,
    },
    /// Any other I/O failure.
    #[error("reading /proc/{pid}/{file}: {source}")]
    Io {
        pid: u32,
        file: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// Classifies an I/O error from reading `/proc/{pid}/{file}`.
    pub fn from_io(pid: u32, file: &'static str, err: io::Error) -> Self {
        // ESRCH shows up when the process dies between open() and read().
        if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) {
            ProcessError::Gone { pid }
        } else if err.kind() == io::ErrorKind::PermissionDenied {
            ProcessError::PermissionDenied { pid, file }
        } else {
            ProcessError::Io {
                pid,
                file,
                source: err,
            }
        }
    }

    /// The pid this error is about.
    pub fn pid(&self) -> u32 {
        match self {
            ProcessError::Gone { pid }
            | ProcessError::PermissionDenied { pid, .. }
            | ProcessError::Malformed { pid, .. }
            | ProcessError::Io { pid, .. } => *pid,
        }
    }
}
