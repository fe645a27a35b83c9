//! Spawning real processes in tests, and always cleaning them up.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spawned process in its own process group; the group (the child and anything
/// it started) is killed on drop, pass or fail.
pub(crate) struct Guard(pub(crate) Child);

impl Guard {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the group is ours
            // (spawned with process_group(0)).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` in a new process group with stdin from /dev/null.
pub(crate) fn spawn(cmd: &mut Command) -> Guard {
    Guard(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn test process"),
    )
}

/// Polls `f` until it returns `Some`, for at most 10 s.
pub(crate) fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
