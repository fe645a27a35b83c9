//! Loading the probe object and attaching its programs.
//!
//! The object is built by build.rs from `ebpf-probes/sonde.bpf.c` and embedded in the
//! binary. Which kernel hook runs each program is listed in [`super::hooks`]; the family
//! of socket-data hooks is chosen here by probing the kernel (as `sonde doctor` does).
//!
//! Detaching: every attachment is owned by a file descriptor of this process, so the
//! kernel removes the programs when the agent exits for any reason, SIGKILL included.
//! The traced processes are never modified.

use anyhow::{Context, Result, bail};
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf, SkStorage, SockHash};
use aya::programs::{BtfTracePoint, FExit, KProbe, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use super::hooks::{DataHooks, Hook, HookChoice, KernelHooks, LIFECYCLE, ProgramHook};
use super::inject;
use super::probe_log::{self, ProbeLog, ProbeLogLevel};
use crate::abi;
use crate::metrics::Counters;

static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sonde.bpf.o"));

/// Settings baked into the programs at load time.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Payload prefix copied per syscall (clamped to [`abi::MAX_CAPTURE`]).
    pub capture_bytes: u32,
    /// Report every exec on the host (for `--exe` globs).
    pub watch_exec: bool,
    /// Benchmark floor: attach everything, but every program returns at once.
    pub empty_probes: bool,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// When a record wakes the agent: unread bytes, and least time between wakeups.
    pub wakeup: Wakeup,
    /// Insert `traceparent` into outgoing HTTP/1 requests (sock_ops + sk_msg).
    pub inject: bool,
    /// Which hooks carry socket data.
    pub hooks: HookChoice,
    /// Probe diagnostics shown (`--probe-log`).
    pub probe_log: ProbeLogLevel,
}

/// When a record wakes the agent (`--wakeup-bytes`, `--wakeup-gap-us`): once `bytes` of
/// records wait unread, at most once per `gap_ns`. Below the threshold the agent reads
/// the ring on its 50 ms timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wakeup {
    pub bytes: u64,
    pub gap_ns: u64,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self {
            bytes: crate::cli::DEFAULT_WAKEUP_BYTES.into(),
            gap_ns: u64::from(crate::cli::DEFAULT_WAKEUP_GAP_US) * 1000,
        }
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            capture_bytes: 2048,
            watch_exec: false,
            empty_probes: false,
            ring_buffer_bytes: 8 << 20,
            wakeup: Wakeup::default(),
            inject: true,
            hooks: HookChoice::Auto,
            probe_log: ProbeLogLevel::Off,
        }
    }
}

/// What userspace needs to re-enrol keep-alive sockets for injection.
pub struct InjectionMaps {
    /// `inject_socks`, by socket cookie.
    pub sockhash: SockHash<MapData, u64>,
    /// `inject_marks`: how far each connect()ed socket got (MARK_* in inject.bpf.c).
    pub marks: SkStorage<MapData, u8>,
    /// `arm_requests` and the iterator that serves them: arming sockets opened before the
    /// agent attached (None when this kernel cannot).
    pub arming: Option<(HashMap<MapData, u64, u8>, inject::ArmIterator)>,
}

/// The loaded, attached probes and handles on their maps.
pub struct Probes {
    ebpf: Ebpf,
    traced: HashMap<MapData, u32, u32>,
    known_socks: HashMap<MapData, u64, abi::RawSockInfo>,
    drops: PerCpuArray<MapData, u64>,
    inject_counts: PerCpuArray<MapData, u64>,
    attached: Vec<ProgramHook>,
    data_hooks: DataHooks,
    injecting: bool,
    /// Attached with the other programs, handed over with the injection maps.
    arm_iterator: Option<inject::ArmIterator>,
    /// Reads the probes' diagnostics while they are attached (`--probe-log`).
    _probe_log: Option<ProbeLog>,
}

impl Probes {
    /// Loads the object (the kernel verifier runs here) and attaches every hook.
    pub fn load_and_attach(opts: &ProbeOptions) -> Result<Self> {
        let mut ebpf = load_object(opts)?;
        // Probed once: its parsed BTF (some 10 MB) serves every attach below, and is gone
        // before the ring buffer is mapped.
        let kernel = KernelHooks::probe();

        let mut attached = Vec::new();
        for hook in LIFECYCLE {
            attach_one(&mut ebpf, hook, None)
                .with_context(|| format!("attaching {} to {:?}", hook.program, hook.hook))?;
            attached.push(*hook);
        }
        let (data_hooks, data) = attach_data_hooks(&mut ebpf, opts.hooks, &kernel)?;
        attached.extend(data);

        // Injection is worth having, not worth refusing to trace for (no cgroup2, no
        // CAP_NET_ADMIN, a verifier that refuses its programs): say so and go on.
        let mut injecting = false;
        let mut arm_iterator = None;
        if opts.inject {
            match inject::attach(&mut ebpf) {
                Ok(()) => {
                    injecting = true;
                    let btf = kernel.btf.as_ref().map_err(String::as_str);
                    arm_iterator = inject::ArmIterator::attach(&mut ebpf, btf);
                }
                Err(e) => log::warn!(
                    "traceparent injection is off: {e:#}. Spans are built as usual, but a \
                     service on another host starts its own trace (--no-inject says this is \
                     intended)"
                ),
            }
        }
        drop(kernel);
        let probe_log = ProbeLog::start(&mut ebpf, opts.probe_log)?;

        let traced = HashMap::try_from(
            ebpf.take_map("traced_pids")
                .context("map traced_pids missing")?,
        )?;
        let known_socks = HashMap::try_from(
            ebpf.take_map("known_socks")
                .context("map known_socks missing")?,
        )?;
        let drops = PerCpuArray::try_from(ebpf.take_map("drops").context("map drops missing")?)?;
        let inject_counts = PerCpuArray::try_from(
            ebpf.take_map("inject_counts")
                .context("map inject_counts missing")?,
        )?;
        Ok(Self {
            ebpf,
            traced,
            known_socks,
            drops,
            inject_counts,
            attached,
            data_hooks,
            injecting,
            arm_iterator,
            _probe_log: probe_log,
        })
    }

    /// The ring buffer events arrive on. Can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("events")
            .context("ring buffer already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Starts tracing a process (its threads and, through the fork hook, its future children).
    pub fn trace_pid(&mut self, tgid: u32) -> Result<()> {
        self.traced
            .insert(tgid, 1, 0)
            .with_context(|| format!("adding pid {tgid} to the traced set"))
    }

    /// What the kernel keeps about the socket at kernel address `sock` (its folded egress
    /// included), or None once it closed.
    pub fn sock_info(&self, sock: u64) -> Option<abi::RawSockInfo> {
        self.known_socks.get(&sock, 0).ok()
    }

    /// The traced-pid map's fd, for a child to enroll itself between fork and exec.
    pub fn traced_map_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::{AsFd, AsRawFd};
        let map: &MapData = aya::maps::IterableMap::map(&self.traced);
        map.fd().as_fd().as_raw_fd()
    }

    /// Copies the kernel-side counters (drops, injection outcomes) into `counters`.
    pub fn sync_counters(&self, counters: &Counters) {
        let drops = sum_per_cpu::<{ abi::DROP_MAX as usize }>(&self.drops);
        Counters::set(
            &counters.ringbuf_drops,
            drops[abi::DROP_RINGBUF_FULL as usize],
        );
        Counters::set(&counters.read_faults, drops[abi::DROP_READ_FAULT as usize]);
        Counters::set(
            &counters.socket_io_undecoded,
            drops[abi::DROP_UNDECODED as usize],
        );
        let inject = sum_per_cpu::<{ abi::INJ_MAX as usize }>(&self.inject_counts);
        for (slot, counter) in [
            (abi::INJ_ENROLLED, &counters.inject_sockets_enrolled),
            (abi::INJ_ENROL_FAILED, &counters.inject_enrol_failures),
            (abi::INJ_DONE, &counters.inject_done),
            (abi::INJ_APP_HEADER, &counters.inject_app_header),
            (abi::INJ_SKIPPED, &counters.inject_skipped),
            (abi::INJ_FAILED, &counters.inject_failed),
            (abi::INJ_TCP_OPT_SENT, &counters.tcp_option_sent),
            (abi::INJ_TCP_OPT_RECV, &counters.tcp_option_received),
            (abi::INJ_ARMED_LATE, &counters.inject_armed_late),
        ] {
            Counters::set(counter, inject[slot as usize]);
        }
    }

    /// The sockhash and the connect marks, for re-enrolling keep-alive sockets (None when
    /// injection is off, or when already taken).
    pub fn take_injection_maps(&mut self) -> Result<Option<InjectionMaps>> {
        if !self.injecting {
            return Ok(None);
        }
        let hash = SockHash::try_from(
            self.ebpf
                .take_map("inject_socks")
                .context("map inject_socks missing or taken")?,
        )?;
        let marks = SkStorage::try_from(
            self.ebpf
                .take_map("inject_marks")
                .context("map inject_marks missing or taken")?,
        )?;
        let arming = match self.arm_iterator.take() {
            Some(iter) => Some((
                HashMap::try_from(
                    self.ebpf
                        .take_map("arm_requests")
                        .context("map arm_requests missing or taken")?,
                )?,
                iter,
            )),
            None => None,
        };
        Ok(Some(InjectionMaps {
            sockhash: hash,
            marks,
            arming,
        }))
    }

    /// Whether outgoing requests get a `traceparent` inserted.
    pub fn injecting(&self) -> bool {
        self.injecting
    }

    pub fn attached(&self) -> &[ProgramHook] {
        &self.attached
    }

    /// What runs, for the startup line: `socket-tracepoints: 2, lifecycle tracepoints: 4,
    /// sock_ops+sk_msg`.
    pub fn hook_summary(&self) -> String {
        let data = self.attached.len() - LIFECYCLE.len();
        let injection = if self.injecting {
            "sock_ops+sk_msg"
        } else {
            "no injection"
        };
        format!(
            "{}: {data}, lifecycle tracepoints: {}, {injection}",
            self.data_hooks.name(),
            LIFECYCLE.len()
        )
    }
}

/// Creates the object's maps with `opts` baked into its globals. No program is loaded
/// yet: each is loaded (verified) on its own, by its attach step or the verifier matrix.
pub(crate) fn load_object(opts: &ProbeOptions) -> Result<Ebpf> {
    if !opts.ring_buffer_bytes.is_power_of_two() || opts.ring_buffer_bytes < 4096 {
        bail!(
            "ring buffer size must be a power of two of at least 4096 bytes, got {}",
            opts.ring_buffer_bytes
        );
    }
    let capture = opts.capture_bytes.min(abi::MAX_CAPTURE as u32);
    let watch_exec = u8::from(opts.watch_exec);
    let empty = u8::from(opts.empty_probes);
    let inject = u8::from(opts.inject);
    let log_level = opts.probe_log.kernel_level();
    if opts.wakeup.bytes > u64::from(opts.ring_buffer_bytes) / 2 {
        bail!(
            "--wakeup-bytes {} must be at most half the ring buffer ({} bytes)",
            opts.wakeup.bytes,
            opts.ring_buffer_bytes
        );
    }
    EbpfLoader::new()
        .override_global("wakeup_bytes", &opts.wakeup.bytes, true)
        .override_global("wakeup_gap_ns", &opts.wakeup.gap_ns, true)
        .override_global("capture_bytes", &capture, true)
        .override_global("watch_exec", &watch_exec, true)
        .override_global("empty_probes", &empty, true)
        .override_global("inject_enabled", &inject, true)
        .override_global(aya_log::LEVEL, &log_level, true)
        .map_max_entries("events", opts.ring_buffer_bytes)
        .map_max_entries(probe_log::MAP, opts.probe_log.ring_bytes())
        .load(PROBE_OBJECT)
        .context("loading the eBPF probes (is this root, with BTF at /sys/kernel/btf/vmlinux? `sonde doctor` tells)")
}

/// Every slot of a per-CPU counter array, summed over CPUs (unreadable slots are 0).
fn sum_per_cpu<const N: usize>(array: &PerCpuArray<MapData, u64>) -> [u64; N] {
    let mut out = [0u64; N];
    for (slot, total) in out.iter_mut().enumerate() {
        if let Ok(values) = array.get(&(slot as u32), 0) {
            *total = values.iter().sum();
        }
    }
    out
}

/// Attaches the first family of socket-data hooks that `choice` allows and the kernel
/// offers. A family that fails half-way is unloaded (its links go with it) before the
/// next is tried, so exactly one family ever runs.
fn attach_data_hooks(
    ebpf: &mut Ebpf,
    choice: HookChoice,
    kernel: &KernelHooks,
) -> Result<(DataHooks, Vec<ProgramHook>)> {
    let mut refusals = Vec::new();
    for &family in choice.candidates() {
        if let Some(why) = kernel.unavailable(family) {
            refusals.push(format!("{}: {why}", family.name()));
            continue;
        }
        let programs = family.programs(kernel);
        let btf = kernel.btf.as_ref().ok();
        match programs
            .iter()
            .try_for_each(|hook| attach_one(ebpf, hook, btf))
        {
            Ok(()) => {
                if !refusals.is_empty() {
                    log::info!(
                        "socket data through {} ({})",
                        family.name(),
                        refusals.join("; ")
                    );
                }
                return Ok((family, programs));
            }
            Err(e) => {
                // Expected to work after the probe: worth a warning, then the next family.
                log::warn!("attaching the {} hooks failed: {e:#}", family.name());
                refusals.push(format!("{}: {e:#}", family.name()));
                for hook in &programs {
                    unload(ebpf, hook.program);
                }
            }
        }
    }
    bail!(
        "no hooks for socket data can run here ({}); `sonde doctor` tells what this host allows",
        refusals.join("; ")
    )
}

/// Unloads `program` if it was loaded, detaching its links (best effort: used only to
/// back out of a family that failed).
fn unload(ebpf: &mut Ebpf, program: &str) {
    use aya::programs::Program;
    let result = match ebpf.program_mut(program) {
        Some(Program::TracePoint(p)) => p.unload(),
        Some(Program::BtfTracePoint(p)) => p.unload(),
        Some(Program::FExit(p)) => p.unload(),
        Some(Program::KProbe(p)) => p.unload(),
        _ => Ok(()),
    };
    // NotLoaded is the normal case for the programs after the one that failed.
    if let Err(e) = result
        && !matches!(e, aya::programs::ProgramError::NotLoaded)
    {
        log::debug!("unloading {program}: {e}");
    }
}

fn attach_one(ebpf: &mut Ebpf, hook: &ProgramHook, btf: Option<&Btf>) -> Result<()> {
    let program = ebpf
        .program_mut(hook.program)
        .with_context(|| format!("program {} missing from the object", hook.program))?;
    let btf = || btf.context("this hook needs the kernel's BTF");
    match hook.hook {
        Hook::Tracepoint { category, name } => {
            let tp: &mut TracePoint = program.try_into()?;
            tp.load().map_err(verifier_context)?;
            tp.attach(category, name)?;
        }
        Hook::BtfTracepoint { name } => {
            let tp: &mut BtfTracePoint = program.try_into()?;
            tp.load(name, btf()?).map_err(verifier_context)?;
            tp.attach()?;
        }
        Hook::Fexit { function } => {
            let fexit: &mut FExit = program.try_into()?;
            fexit.load(function, btf()?).map_err(verifier_context)?;
            fexit.attach()?;
        }
        Hook::Kretprobe { function } => {
            let kprobe: &mut KProbe = program.try_into()?;
            kprobe.load().map_err(verifier_context)?;
            kprobe.attach(function, 0)?;
        }
    }
    Ok(())
}

/// aya puts the verifier log inside the error; keep all of it in the message.
pub(crate) fn verifier_context(err: aya::programs::ProgramError) -> anyhow::Error {
    match err {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            anyhow::anyhow!("the kernel verifier rejected the program: {io_error}\n{verifier_log}")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked before anything reaches the kernel: no privileges needed.
    #[test]
    fn a_wakeup_threshold_the_ring_cannot_reach_is_refused() {
        let opts = ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            wakeup: Wakeup {
                bytes: 1 << 20,
                gap_ns: 0,
            },
            ..ProbeOptions::default()
        };
        let err = load_object(&opts).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("--wakeup-bytes 1048576 must be at most half")),
            "{err:?}"
        );
    }
}
