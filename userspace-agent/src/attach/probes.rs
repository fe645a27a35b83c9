//! Loading the probe object and attaching its programs.
//!
//! The object, and which kernel hook runs each program, are described in
//! [`crate::programs`]; the family of socket-data hooks is chosen here, from what
//! [`super::hooks::KernelHooks`] found probing the kernel (as `sonde doctor` does).
//!
//! Detaching: every attachment is owned by a file descriptor of this process, so the
//! kernel removes the programs when the agent exits for any reason, SIGKILL included.
//! The traced processes are never modified.

use anyhow::{Context, Result, bail};
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf, SkStorage, SockHash};
use aya::programs::{BtfTracePoint, FExit, KProbe, TracePoint};
use aya::{Btf, Ebpf};

use super::go_runtime::GoRuntimeProbes;
use super::hooks::KernelHooks;
use super::inject::{self, InjectionMaps};
use super::probe_log::ProbeLog;
use super::tls::TlsProbes;
use crate::abi;
use crate::metrics::Counters;
use crate::programs::{
    DataHooks, Hook, HookChoice, LIFECYCLE, ProbeOptions, ProgramHook, load_object,
    verifier_context,
};

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
    /// The TLS library probes (None: `--no-tls`, or this kernel refused them).
    tls: Option<TlsProbes>,
    /// The Go runtime probes (None: this kernel refused them).
    go_runtime: Option<GoRuntimeProbes>,
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
        // Like injection, worth having, not worth refusing to trace for. Attached with
        // --empty-probes too, where their programs return at once: the benchmark's floor
        // includes the uprobes' own cost (a trap per call and return).
        let tls = if opts.tls {
            TlsProbes::load(&mut ebpf)
                .inspect_err(|e| {
                    eprintln!("sonde: TLS probes unavailable, tracing without them: {e:#}")
                })
                .ok()
        } else {
            None
        };
        // Without them Go programs are followed by thread, as any other program.
        let go_runtime = if opts.go_runtime {
            GoRuntimeProbes::load(&mut ebpf)
                .inspect_err(|e| {
                    eprintln!(
                        "sonde: Go runtime probes unavailable: Go programs are followed by \
                         thread, which misplaces calls wherever goroutines move: {e:#}"
                    )
                })
                .ok()
        } else {
            None
        };

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
            tls,
            go_runtime,
        })
    }

    /// Makes traced process `pid`'s trace contexts follow its goroutines if it runs a Go
    /// program (its executable probed once); call when it is first seen and after each
    /// exec. True when it does.
    pub fn follow_goroutines(&mut self, pid: u32) -> bool {
        match &mut self.go_runtime {
            Some(go) => go.follow(&mut self.ebpf, pid),
            None => false,
        }
    }

    /// Probes the TLS libraries process `pid` maps that are not probed yet. None: TLS
    /// probes are off.
    pub fn scan_tls(&mut self, pid: u32) -> Option<super::tls::Scanned> {
        let tls = self.tls.as_mut()?;
        Some(tls.scan(&mut self.ebpf, pid))
    }

    /// Probes the TLS libraries `executable` will map before it runs (`sonde run`).
    pub fn probe_tls_before_run(&mut self, executable: &std::path::Path) -> usize {
        match &mut self.tls {
            Some(tls) => tls.probe_before_run(&mut self.ebpf, executable),
            None => 0,
        }
    }

    /// Probes the system's TLS libraries for processes that start later (see
    /// [`TlsProbes::probe_system_libraries`]).
    pub fn probe_system_tls(&mut self) -> usize {
        match &mut self.tls {
            Some(tls) => tls.probe_system_libraries(&mut self.ebpf),
            None => 0,
        }
    }

    /// Every process the kernel traces (threads excluded), for rescans.
    pub fn traced_processes(&self) -> Vec<u32> {
        self.traced
            .keys()
            .filter_map(Result::ok)
            .filter(|pid| crate::sys::host::is_process(*pid))
            .collect()
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
        Counters::set(
            &counters.tls_ciphertext_records,
            drops[abi::DROP_TLS_CIPHERTEXT as usize],
        );
        Counters::set(
            &counters.tls_unmapped_calls,
            drops[abi::DROP_TLS_UNMAPPED as usize],
        );
        Counters::set(
            &counters.multiplexed_threads,
            drops[abi::DROP_MULTIPLEXED_THREAD as usize],
        );
        if let Some(go) = &self.go_runtime {
            Counters::set(&counters.go_processes, go.processes());
            Counters::set(&counters.go_runtime_failures, go.failures());
        }
        if let Some(tls) = &self.tls {
            Counters::set(&counters.tls_libraries_probed, tls.probed().count() as u64);
            Counters::set(&counters.tls_library_failures, tls.failures());
        }
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
        let programs = kernel.programs(family);
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
