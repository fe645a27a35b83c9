//! Which kernel hook runs each program of the object, and the families of socket-data
//! hooks.
//!
//! Process lifecycle and TCP state changes always come from static tracepoints. Socket
//! data comes from one of four hook families (`ebpf-probes/socket_layer.bpf.c` and
//! `syscalls.bpf.c`, one shared handler); the agent takes the first one the kernel offers
//! in this order (`attach::hooks`):
//!
//! | family | hooks | needs |
//! |---|---|---|
//! | socket-tracepoints | tp_btf `sock_send_length`, `sock_recv_length` | Linux 6.4+, BTF |
//! | fexit | fexit `inet{,6}_{send,recv}msg` | BPF trampolines |
//! | kprobes | kretprobe on the same functions | kprobes |
//! | syscall-tracepoints | `syscalls/sys_exit_*` of 9 syscalls | tracefs |
//!
//! The first three fire only for socket I/O. The last switches every process on the
//! host onto the slow syscall path as long as it is attached (docs/benchmarks.md), which is
//! what the others avoid.

/// A kernel attachment point for one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A static tracepoint: `category/name` under tracefs `events/`.
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// A BTF-typed raw tracepoint (`tp_btf`): no tracefs, no trampoline.
    BtfTracepoint { name: &'static str },
    /// fexit on a kernel function, through a BPF trampoline.
    Fexit { function: &'static str },
    /// A kretprobe on a kernel function.
    Kretprobe { function: &'static str },
}

/// One program of the object and where it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHook {
    pub program: &'static str,
    pub hook: Hook,
}

const fn tracepoint(
    program: &'static str,
    category: &'static str,
    name: &'static str,
) -> ProgramHook {
    ProgramHook {
        program,
        hook: Hook::Tracepoint { category, name },
    }
}

/// Process fork/exec/exit and TCP state changes: attached first, whatever the data
/// hooks, so a fork during attach is not missed.
pub const LIFECYCLE: &[ProgramHook] = &[
    tracepoint("sonde_tp_sched_fork", "sched", "sched_process_fork"),
    tracepoint("sonde_tp_sched_exec", "sched", "sched_process_exec"),
    tracepoint("sonde_tp_sched_exit", "sched", "sched_process_exit"),
    tracepoint("sonde_tp_sock_state", "sock", "inet_sock_set_state"),
];

const SOCKET_TRACEPOINTS: &[ProgramHook] = &[
    ProgramHook {
        program: "sonde_sock_send",
        hook: Hook::BtfTracepoint {
            name: "sock_send_length",
        },
    },
    ProgramHook {
        program: "sonde_sock_recv",
        hook: Hook::BtfTracepoint {
            name: "sock_recv_length",
        },
    },
];

/// Where sendfile is seen when it does not go through sendmsg (before Linux 6.5).
const SENDFILE_FUNCTION: &str = "__x64_sys_sendfile64";

/// `fexit!("inet_sendmsg")` hooks that kernel function with program
/// `sonde_fexit_inet_sendmsg`; `fexit!("name", FUNCTION)` names the program apart.
macro_rules! fexit {
    ($function:literal) => {
        fexit!($function, $function)
    };
    ($name:literal, $function:expr) => {
        ProgramHook {
            program: concat!("sonde_fexit_", $name),
            hook: Hook::Fexit {
                function: $function,
            },
        }
    };
}

/// `kretprobe!("inet_sendmsg")` hooks that kernel function with program
/// `sonde_kret_inet_sendmsg`; `kretprobe!("name", FUNCTION)` names the program apart.
macro_rules! kretprobe {
    ($function:literal) => {
        kretprobe!($function, $function)
    };
    ($name:literal, $function:expr) => {
        ProgramHook {
            program: concat!("sonde_kret_", $name),
            hook: Hook::Kretprobe {
                function: $function,
            },
        }
    };
}

const FEXIT: &[ProgramHook] = &[
    fexit!("inet_sendmsg"),
    fexit!("inet6_sendmsg"),
    fexit!("inet_recvmsg"),
    fexit!("inet6_recvmsg"),
];
const FEXIT_SENDFILE: ProgramHook = fexit!("sendfile64", SENDFILE_FUNCTION);

const KPROBES: &[ProgramHook] = &[
    kretprobe!("inet_sendmsg"),
    kretprobe!("inet6_sendmsg"),
    kretprobe!("inet_recvmsg"),
    kretprobe!("inet6_recvmsg"),
];
const KPROBE_SENDFILE: ProgramHook = kretprobe!("sendfile64", SENDFILE_FUNCTION);

macro_rules! syscall_exit {
    ($name:literal) => {
        tracepoint(
            concat!("sonde_tp_exit_", $name),
            "syscalls",
            concat!("sys_exit_", $name),
        )
    };
}

const SYSCALL_SENDFILE: ProgramHook = syscall_exit!("sendfile64");
const SYSCALL_TRACEPOINTS: &[ProgramHook] = &[
    syscall_exit!("read"),
    syscall_exit!("recvfrom"),
    syscall_exit!("readv"),
    syscall_exit!("recvmsg"),
    syscall_exit!("write"),
    syscall_exit!("sendto"),
    syscall_exit!("writev"),
    syscall_exit!("sendmsg"),
    SYSCALL_SENDFILE,
];

/// A family of hooks that together see every byte a process moves through a TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataHooks {
    SocketTracepoints,
    Fexit,
    Kprobes,
    SyscallTracepoints,
}

impl DataHooks {
    /// The order `--hooks auto` tries them in: cheapest first, the one that works
    /// everywhere last.
    pub const PREFERENCE: [DataHooks; 4] = [
        DataHooks::SocketTracepoints,
        DataHooks::Fexit,
        DataHooks::Kprobes,
        DataHooks::SyscallTracepoints,
    ];

    /// The name `--hooks` and the startup line use.
    pub fn name(self) -> &'static str {
        match self {
            DataHooks::SocketTracepoints => "socket-tracepoints",
            DataHooks::Fexit => "fexit",
            DataHooks::Kprobes => "kprobes",
            DataHooks::SyscallTracepoints => "syscall-tracepoints",
        }
    }

    /// The programs of this family where sendfile does (or does not) reach sendmsg: the
    /// socket-layer families add a sendfile hook where it does not.
    pub fn programs_where(self, sendfile_via_sendmsg: bool) -> impl Iterator<Item = ProgramHook> {
        let (base, sendfile) = match self {
            DataHooks::SocketTracepoints => (SOCKET_TRACEPOINTS, Some(SYSCALL_SENDFILE)),
            DataHooks::Fexit => (FEXIT, Some(FEXIT_SENDFILE)),
            DataHooks::Kprobes => (KPROBES, Some(KPROBE_SENDFILE)),
            DataHooks::SyscallTracepoints => (SYSCALL_TRACEPOINTS, None),
        };
        let sendfile = sendfile.filter(|_| !sendfile_via_sendmsg);
        base.iter().copied().chain(sendfile)
    }

    /// Every program any family may attach, for the verifier matrix.
    pub fn every_program() -> impl Iterator<Item = ProgramHook> {
        // Each once: the socket-tracepoint family borrows the syscall family's sendfile
        // hook, so only the syscall family lists it.
        DataHooks::PREFERENCE.into_iter().flat_map(|family| {
            family
                .programs_where(false)
                .filter(move |h| family == DataHooks::SyscallTracepoints || *h != SYSCALL_SENDFILE)
        })
    }
}

/// The program behind `program`, with its hook (lifecycle or data), if it has one.
pub fn hook_of(program: &str) -> Option<ProgramHook> {
    LIFECYCLE
        .iter()
        .copied()
        .chain(DataHooks::every_program())
        .find(|h| h.program == program)
}

/// `--hooks`: which family carries socket data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// The first family this kernel offers: socket-tracepoints, fexit, kprobes,
    /// syscall-tracepoints.
    #[default]
    Auto,
    /// tp_btf on sock_send_length/sock_recv_length (Linux 6.4+).
    SocketTracepoints,
    /// fexit on inet{,6}_sendmsg/recvmsg (BPF trampolines).
    Fexit,
    /// kretprobes on inet{,6}_sendmsg/recvmsg.
    Kprobes,
    /// sys_exit tracepoints of the socket-data syscalls (any kernel; costs every process).
    #[value(alias = "tracepoints")]
    SyscallTracepoints,
}

impl HookChoice {
    /// The families to try, in order.
    pub fn candidates(self) -> &'static [DataHooks] {
        match self {
            HookChoice::Auto => &DataHooks::PREFERENCE,
            HookChoice::SocketTracepoints => &[DataHooks::SocketTracepoints],
            HookChoice::Fexit => &[DataHooks::Fexit],
            HookChoice::Kprobes => &[DataHooks::Kprobes],
            HookChoice::SyscallTracepoints => &[DataHooks::SyscallTracepoints],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_has_one_hook() {
        let mut names: Vec<&str> = LIFECYCLE
            .iter()
            .copied()
            .chain(DataHooks::every_program())
            .map(|h| h.program)
            .collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "a program is listed twice");
    }

    #[test]
    fn auto_tries_every_family_cheapest_first() {
        assert_eq!(HookChoice::Auto.candidates(), &DataHooks::PREFERENCE);
        assert_eq!(
            DataHooks::PREFERENCE.last(),
            Some(&DataHooks::SyscallTracepoints)
        );
    }
}
