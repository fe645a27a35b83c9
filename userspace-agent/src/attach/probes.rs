//! Loading the probe object and attaching its programs.
//!
//! The object is built by build.rs from `ebpf-probes/sonde.bpf.c` and embedded in the
//! binary. Which kernel hook runs each program is chosen here ([`HOOKS`]): socket-data
//! syscalls have fexit twins, attached when the kernel allows BPF trampolines (probed
//! at startup, as `sonde doctor` does), syscall tracepoints otherwise.
//!
//! Detaching: every attachment is owned by a file descriptor of this process, so the
//! kernel removes the programs when the agent exits for any reason, SIGKILL included.
//! The traced processes are never modified.

use anyhow::{Context, Result, bail};
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf, SkStorage, SockHash};
use aya::programs::{FExit, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use super::inject;
use crate::metrics::Counters;
use crate::{abi, doctor};

static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sonde.bpf.o"));

/// A kernel attachment point for one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A static tracepoint: `category/name` under tracefs `events/`.
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// fexit on a kernel function, through a BPF trampoline.
    ///
    /// Kernel requirements: BTF, BPF trampolines (x86_64, 5.5+), and a kernel that does
    /// not refuse them (these 6.18 hosts do); `sonde doctor` calls this `fentry`.
    Fexit { function: &'static str },
}

/// One program of the object and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct ProgramHook {
    pub program: &'static str,
    pub hook: Hook,
}

/// One event source and the programs that can provide it: a cheaper twin used when
/// the kernel allows its hook family, and a tracepoint that works everywhere. Exactly
/// one of the two is attached.
#[derive(Clone, Copy, Debug)]
pub struct HookSlot {
    pub twin: Option<ProgramHook>,
    pub tracepoint: ProgramHook,
}

const fn tp(program: &'static str, category: &'static str, name: &'static str) -> HookSlot {
    HookSlot {
        twin: None,
        tracepoint: ProgramHook {
            program,
            hook: Hook::Tracepoint { category, name },
        },
    }
}

/// A socket-data syscall: `sys_exit_<name>` tracepoint, or fexit on `__x64_sys_<name>`
/// (syscalls.bpf.c builds both over one handler).
macro_rules! syscall_exit {
    ($name:literal) => {
        HookSlot {
            twin: Some(ProgramHook {
                program: concat!("sonde_fexit_", $name),
                hook: Hook::Fexit {
                    function: concat!("__x64_sys_", $name),
                },
            }),
            tracepoint: ProgramHook {
                program: concat!("sonde_tp_exit_", $name),
                hook: Hook::Tracepoint {
                    category: "syscalls",
                    name: concat!("sys_exit_", $name),
                },
            },
        }
    };
}

/// Every event source the agent attaches, in attach order (lifecycle hooks first, so a
/// fork during attach is not missed by the data hooks).
pub const HOOKS: &[HookSlot] = &[
    tp("sonde_tp_sched_fork", "sched", "sched_process_fork"),
    tp("sonde_tp_sched_exec", "sched", "sched_process_exec"),
    tp("sonde_tp_sched_exit", "sched", "sched_process_exit"),
    tp("sonde_tp_sock_state", "sock", "inet_sock_set_state"),
    syscall_exit!("read"),
    syscall_exit!("recvfrom"),
    syscall_exit!("readv"),
    syscall_exit!("recvmsg"),
    syscall_exit!("write"),
    syscall_exit!("sendto"),
    syscall_exit!("writev"),
    syscall_exit!("sendmsg"),
    syscall_exit!("sendfile64"),
];

/// Which hooks carry socket data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// fexit twins when the kernel allows BPF trampolines (probed at startup),
    /// syscall tracepoints otherwise.
    #[default]
    Auto,
    /// Syscall tracepoints only.
    Tracepoints,
}

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
    /// Insert `traceparent` into outgoing HTTP/1 requests (sock_ops + sk_msg).
    pub inject: bool,
    /// Which hooks carry socket data.
    pub hooks: HookChoice,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            capture_bytes: 2048,
            watch_exec: false,
            empty_probes: false,
            ring_buffer_bytes: 8 << 20,
            inject: true,
            hooks: HookChoice::Auto,
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
    drops: PerCpuArray<MapData, u64>,
    inject_counts: PerCpuArray<MapData, u64>,
    attached: Vec<ProgramHook>,
    injecting: bool,
}

impl Probes {
    /// Loads the object (the kernel verifier runs here) and attaches every hook.
    pub fn load_and_attach(opts: &ProbeOptions) -> Result<Self> {
        let mut ebpf = load_object(opts)?;

        let mut twins = match opts.hooks {
            HookChoice::Auto => Twins::probe(),
            HookChoice::Tracepoints => Twins::Off,
        };
        let mut attached = Vec::with_capacity(HOOKS.len());
        for slot in HOOKS {
            attached.push(attach_slot(&mut ebpf, slot, &mut twins)?);
        }

        if opts.inject {
            inject::attach(&mut ebpf).context("attaching the context injection programs")?;
        }

        let traced = HashMap::try_from(
            ebpf.take_map("traced_pids")
                .context("map traced_pids missing")?,
        )?;
        let drops = PerCpuArray::try_from(ebpf.take_map("drops").context("map drops missing")?)?;
        let inject_counts = PerCpuArray::try_from(
            ebpf.take_map("inject_counts")
                .context("map inject_counts missing")?,
        )?;
        Ok(Self {
            ebpf,
            traced,
            drops,
            inject_counts,
            attached,
            injecting: opts.inject,
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
        let arming = match inject::ArmIterator::attach(&mut self.ebpf) {
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

    /// Which hook families run, for the startup line: `fexit 9, tracepoint 4,
    /// sock_ops+sk_msg`.
    pub fn hook_summary(&self) -> String {
        let count =
            |family: fn(&Hook) -> bool| self.attached.iter().filter(|h| family(&h.hook)).count();
        let fexit = count(|h| matches!(h, Hook::Fexit { .. }));
        let tracepoints = count(|h| matches!(h, Hook::Tracepoint { .. }));
        let injection = if self.injecting {
            "sock_ops+sk_msg"
        } else {
            "no injection"
        };
        let mut parts = Vec::new();
        if fexit > 0 {
            parts.push(format!("fexit {fexit}"));
        }
        parts.push(format!("tracepoint {tracepoints}"));
        parts.push(injection.to_owned());
        parts.join(", ")
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
    EbpfLoader::new()
        .override_global("capture_bytes", &capture, true)
        .override_global("watch_exec", &watch_exec, true)
        .override_global("empty_probes", &empty, true)
        .override_global("inject_enabled", &inject, true)
        .map_max_entries("events", opts.ring_buffer_bytes)
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

/// Whether fexit twins are tried, decided once per start.
enum Twins {
    /// The kernel loads and attaches an empty fentry program; its BTF names the targets.
    On(Btf),
    Off,
}

impl Twins {
    /// The same probe as `sonde doctor`'s `fentry` check: an empty program, loaded and
    /// attached for an instant, so a refusing kernel never sees Sonde's own programs.
    fn probe() -> Self {
        let check = doctor::fentry_check();
        if check.state != doctor::State::Ok {
            log::info!(
                "fexit twins unavailable ({}); using tracepoints",
                check.detail
            );
            return Self::Off;
        }
        match Btf::from_sys_fs() {
            Ok(btf) => Self::On(btf),
            Err(e) => {
                log::info!("fexit twins unavailable (reading kernel BTF: {e}); using tracepoints");
                Self::Off
            }
        }
    }
}

/// Attaches the twin of `slot` if twins are on, else (or if that fails) its tracepoint.
/// A twin that fails although the probe passed is a bug worth a warning; twins are then
/// turned off for the rest of the slots, so the fallback is one predictable path.
fn attach_slot(ebpf: &mut Ebpf, slot: &HookSlot, twins: &mut Twins) -> Result<ProgramHook> {
    if let (Some(twin), Twins::On(btf)) = (slot.twin, &*twins) {
        match attach_one(ebpf, &twin, Some(btf)) {
            Ok(()) => return Ok(twin),
            Err(e) => {
                log::warn!(
                    "{} on {:?} failed, using tracepoints from here on: {e:#}",
                    twin.program,
                    twin.hook
                );
                *twins = Twins::Off;
            }
        }
    }
    let tp = slot.tracepoint;
    attach_one(ebpf, &tp, None)
        .with_context(|| format!("attaching {} to {:?}", tp.program, tp.hook))?;
    Ok(tp)
}

fn attach_one(ebpf: &mut Ebpf, hook: &ProgramHook, btf: Option<&Btf>) -> Result<()> {
    let program = ebpf
        .program_mut(hook.program)
        .with_context(|| format!("program {} missing from the object", hook.program))?;
    match hook.hook {
        Hook::Tracepoint { category, name } => {
            let tp: &mut TracePoint = program.try_into()?;
            tp.load().map_err(verifier_context)?;
            tp.attach(category, name)?;
        }
        Hook::Fexit { function } => {
            let btf = btf.context("fexit needs the kernel's BTF")?;
            let fexit: &mut FExit = program.try_into()?;
            fexit.load(function, btf).map_err(verifier_context)?;
            fexit.attach()?;
        }
    }
    Ok(())
}

/// The kernel function an fexit program of [`HOOKS`] attaches to (for the verifier
/// matrix, which loads every program, attached or not).
pub fn fexit_target(program: &str) -> Option<&'static str> {
    HOOKS
        .iter()
        .filter_map(|slot| slot.twin)
        .find(|twin| twin.program == program)
        .and_then(|twin| match twin.hook {
            Hook::Fexit { function } => Some(function),
            Hook::Tracepoint { .. } => None,
        })
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
