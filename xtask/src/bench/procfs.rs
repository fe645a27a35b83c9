//! What /proc says during a run: the load average, CPU time of a process tree and of the
//! host, and a process's peak memory.

/// The 1-minute load average (other work on the machine skews every figure).
pub(super) fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User + system CPU time of pid and its direct children (nginx's workers), in clock ticks.
pub(super) fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut total = cpu_ticks(pid)?;
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += cpu_ticks(child).unwrap_or(0);
    }
    Some(total)
}

/// utime + stime of one process from /proc/PID/stat (fields 14 and 15; the command name,
/// field 2, may hold spaces, so fields are counted after its closing parenthesis).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// (idle + iowait, all) CPU time of the host so far, in clock ticks (/proc/stat: user,
/// nice, system, idle, iowait, irq, softirq, steal; guest time, after them, is already
/// counted in user and nice).
pub(super) fn host_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

pub(super) fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Peak resident set size of a process, in KiB.
pub(super) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
