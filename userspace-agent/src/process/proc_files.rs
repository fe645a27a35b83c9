//! Reading and parsing the few `/proc/PID` files Sonde needs.
//!
//! Parsers take literal bytes/strings so they can be unit-tested; readers map I/O
//! errors to [`ProcessError`]. Shared with `attach::targets`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::ProcessError;

/// Suffix the kernel appends to `/proc/PID/exe` when the binary was unlinked
/// (typically replaced by a package upgrade while running).
const DELETED_SUFFIX: &str = " (deleted)";

/// The fields of `/proc/PID/stat` Sonde uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// Command name (max 15 bytes, may contain spaces and parentheses).
    pub comm: String,
    /// One-letter state: R, S, D, Z, ...
    pub state: char,
    pub ppid: u32,
    /// Field 22: start time in clock ticks since boot. Together with the pid it
    /// identifies one process incarnation (pids are reused, start times are not).
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`.
///
/// Why the last `)`: comm is arbitrary (a process can name itself `a) S 1 (`), but
/// nothing after it can contain `)`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let open = text.find('(').ok_or("no '(' before comm")?;
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let pid = text[..open]
        .trim()
        .parse()
        .map_err(|e| format!("bad pid: {e}"))?;
    let comm = text[open + 1..close].to_owned();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| format!("missing field {n}"))
    };
    let state = field(3)?.chars().next().ok_or("empty state")?;
    let ppid = field(4)?
        .parse()
        .map_err(|e| format!("bad ppid (field 4): {e}"))?;
    let start_time = field(22)?
        .parse()
        .map_err(|e| format!("bad starttime (field 22): {e}"))?;
    Ok(Stat {
        pid,
        comm,
        state,
        ppid,
        start_time,
    })
}

/// Splits NUL-separated `/proc/PID/environ` into `(name, value)` pairs, in order.
/// Entries without `=` are skipped; bytes that are not UTF-8 are replaced.
pub fn parse_environ(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            let name = String::from_utf8_lossy(&entry[..eq]).into_owned();
            (!name.is_empty())
                .then(|| (name, String::from_utf8_lossy(&entry[eq + 1..]).into_owned()))
        })
        .collect()
}

/// First value of `name` in a parsed environment (what `getenv` would return).
pub fn env_get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Splits NUL-separated `/proc/PID/cmdline` into arguments.
///
/// A process that rewrote its title (`setproctitle`, e.g. "nginx: master process")
/// may have a single space-separated argument; it is returned as is.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Removes the kernel's " (deleted)" marker from an exe link target.
pub fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(DELETED_SUFFIX).unwrap_or(path)
}

/// The last path component of `path` (the whole string if it has no `/`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `/proc/{pid}/{file}`.
pub fn proc_path(pid: u32, file: &str) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join(file)
}

/// Reads `/proc/{pid}/{file}` whole.
pub fn read_bytes(pid: u32, file: &'static str) -> Result<Vec<u8>, ProcessError> {
    fs::read(proc_path(pid, file)).map_err(|e| ProcessError::from_io(pid, file, e))
}

/// Reads at most `limit` bytes of `/proc/{pid}/{file}` (cmdline can be megabytes).
pub fn read_bytes_limited(
    pid: u32,
    file: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ProcessError> {
    let read = || -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        fs::File::open(proc_path(pid, file))?
            .take(limit)
            .read_to_end(&mut buf)?;
        Ok(buf)
    };
    read().map_err(|e| ProcessError::from_io(pid, file, e))
}

/// Reads and parses `/proc/{pid}/stat`.
pub fn read_stat(pid: u32) -> Result<Stat, ProcessError> {
    let bytes = read_bytes(pid, "stat")?;
    parse_stat(&String::from_utf8_lossy(&bytes)).map_err(|reason| ProcessError::Malformed {
        pid,
        file: "stat",
        reason,
    })
}

/// Reads `/proc/{pid}/comm` without its trailing newline.
pub fn read_comm(pid: u32) -> Result<String, ProcessError> {
    let bytes = read_bytes(pid, "comm")?;
    Ok(String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_owned())
}

/// The executable path (`/proc/{pid}/exe` target, " (deleted)" removed).
///
/// `Ok(None)` when the link cannot be resolved although the process may exist:
/// kernel threads and zombies have no executable.
pub fn read_exe(pid: u32) -> Result<Option<String>, ProcessError> {
    match fs::read_link(proc_path(pid, "exe")) {
        Ok(target) => Ok(Some(strip_deleted(&target.to_string_lossy()).to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProcessError::from_io(pid, "exe", e)),
    }
}

/// Tgid from `/proc/{pid}/status`: differs from `pid` when `pid` is a thread id.
pub fn read_tgid(pid: u32) -> Result<u32, ProcessError> {
    let bytes = read_bytes(pid, "status")?;
    parse_status_tgid(&String::from_utf8_lossy(&bytes)).ok_or_else(|| ProcessError::Malformed {
        pid,
        file: "status",
        reason: "no Tgid line".into(),
    })
}

/// The `Tgid:` value of a `/proc/PID/status` text.
pub fn parse_status_tgid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every numeric entry of `/proc`: one per process (TGID). Threads are hidden from
/// `/proc`'s listing, so this never returns thread ids.
pub fn list_pids() -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_TAIL: &str = "S 1 1234 1234 0 -1 4194560 250 0 0 0 1 2 0 0 20 0 1 0 987654 12345678 300 18446744073709551615";

    #[test]
    fn stat_plain() {
        let s = parse_stat(&format!("1234 (nginx) {STAT_TAIL}\n")).expect("parses");
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "nginx");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let s = parse_stat(&format!(
            "42 (a) S 7 (b c)) {}",
            STAT_TAIL.replacen("S 1 ", "R 99 ", 1)
        ))
        .expect("parses");
        assert_eq!(s.comm, "a) S 7 (b c)");
        assert_eq!(s.state, 'R');
        assert_eq!(s.ppid, 99);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_empty_comm() {
        let s = parse_stat(&format!("5 () {STAT_TAIL}")).expect("parses");
        assert_eq!(s.comm, "");
    }

    #[test]
    fn stat_malformed() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 nginx S 1").is_err());
        assert!(parse_stat("12 (nginx) S 1 2 3").is_err(), "truncated");
        assert!(parse_stat("x (nginx) S 1 2 3").is_err());
        assert!(parse_stat(&format!("12 (n) {}", STAT_TAIL.replacen(" 1 ", " -1 ", 1))).is_err());
        assert!(parse_stat(") 12 (").is_err());
    }

    #[test]
    fn environ_with_nuls() {
        let env = parse_environ(
            b"PATH=/usr/bin\0OTEL_SERVICE_NAME=checkout\0EMPTY=\0NOEQ\0=novalue\0A=b=c\0\0",
        );
        assert_eq!(
            env,
            vec![
                ("PATH".into(), "/usr/bin".into()),
                ("OTEL_SERVICE_NAME".into(), "checkout".into()),
                ("EMPTY".into(), "".into()),
                ("A".into(), "b=c".into()),
            ]
        );
        assert_eq!(env_get(&env, "OTEL_SERVICE_NAME"), Some("checkout"));
        assert_eq!(env_get(&env, "MISSING"), None);
    }

    #[test]
    fn environ_first_duplicate_wins_and_invalid_utf8() {
        let env = parse_environ(b"X=1\0X=2\0Y=\xff");
        assert_eq!(env_get(&env, "X"), Some("1"));
        assert_eq!(env_get(&env, "Y"), Some("\u{fffd}"));
        assert!(parse_environ(b"").is_empty());
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            parse_cmdline(b"python3\0-m\0http.server\0"),
            ["python3", "-m", "http.server"]
        );
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(
            parse_cmdline(b"nginx: master process /usr/sbin/nginx"),
            ["nginx: master process /usr/sbin/nginx"]
        );
        assert!(parse_cmdline(b"").is_empty());
        assert!(parse_cmdline(b"\0").is_empty());
    }

    #[test]
    fn exe_helpers() {
        assert_eq!(
            strip_deleted("/usr/sbin/nginx (deleted)"),
            "/usr/sbin/nginx"
        );
        assert_eq!(strip_deleted("/usr/sbin/nginx"), "/usr/sbin/nginx");
        assert_eq!(basename("/usr/sbin/nginx"), "nginx");
        assert_eq!(basename("nginx"), "nginx");
    }

    #[test]
    fn status_tgid() {
        assert_eq!(
            parse_status_tgid("Name:\tx\nUmask:\t0022\nState:\tS\nTgid:\t4321\nPid:\t4322\n"),
            Some(4321)
        );
        assert_eq!(parse_status_tgid("Name:\tx\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let stat = read_stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        assert!(read_exe(me).expect("own exe").is_some());
        assert_eq!(read_tgid(me).expect("own status"), me);
        assert!(list_pids().expect("list /proc").contains(&me));
        assert!(matches!(
            read_stat(u32::MAX),
            Err(ProcessError::Gone { pid: u32::MAX })
        ));
    }
}
