//! The C side of probe diagnostics (`ebpf-probes/common/log.h`) against aya-log's own
//! reader.
//!
//! - Host build of the header (`host/log_host.c`): every call shape it offers, over many
//!   random and edge values (empty, longest, over-long, non-ASCII and unreadable strings,
//!   every integer type at its limits, the most fields and the longest message), decoded
//!   field by field against aya-log-common's own tag values, without privileges.
//! - As root, the same records relayed unchanged through a real `AYA_LOGS` ring buffer
//!   into aya-log's `EbpfLogger` (whose `flush` panics on a record it cannot parse), and a
//!   record built in the kernel by the header, each checked to the exact message a
//!   `log::Log` receives. Without root (or kernel BTF) these print `skipped:`; under `CI`
//!   they fail instead.

use std::ffi::{CString, c_char};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::programs::{UProbe, uprobe::UProbeScope};
use aya::{Ebpf, EbpfLoader};
use aya_log_common::{ArgumentKind, DisplayHint, Level as AyaLevel, RecordFieldKind};
use log::{Level, Log, Metadata, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ProbeLog, ProbeLogLevel, TARGET};
use crate::programs::ProbeOptions;
use crate::programs::{self as matrix, LoadState, VERIFIER_BUDGET};

static TEST_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/log_test.bpf.o"));

// ===== the host build of common/log.h =====

/// `struct sonde_log_host_args` in host/log_host.c.
#[repr(C)]
#[derive(Clone)]
struct HostArgs {
    u64: u64,
    i64: i64,
    u32: u32,
    i32: i32,
    u16: u16,
    i16: i16,
    u8: u8,
    i8: i8,
    flag: bool,
    ip4: [u8; 4],
    ip6: [u8; 16],
    _pad: [u8; 3],
    str: *const c_char,
}

unsafe extern "C" {
    fn sonde_log_host_build(
        shape: u32,
        level: u8,
        args: *const HostArgs,
        out: *mut u8,
        cap: u32,
    ) -> i32;
    fn sonde_log_host_shapes() -> u32;
}

/// The shapes of host/log_host.c, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    MessageOnly,
    Unsigned,
    Signed,
    Hex,
    Strings,
    Ips,
    Largest,
    DebugOnly,
}

const SHAPES: [Shape; 8] = [
    Shape::MessageOnly,
    Shape::Unsigned,
    Shape::Signed,
    Shape::Hex,
    Shape::Strings,
    Shape::Ips,
    Shape::Largest,
    Shape::DebugOnly,
];

/// LOG_STR_MAX and LOG_LIT_MAX in common/log.h.
const STR_MAX: usize = 64;
const LONGEST_MESSAGE: &str = "a message as long as a literal may be: one hundred and twenty \
                               bytes, which the compiler counts at build time............";

/// One set of values, with the string kept alive for the pointer in `args`.
struct Values {
    args: HostArgs,
    /// None: a NULL pointer, which the header reads as a fault (an empty string).
    string: Option<CString>,
}

impl Values {
    fn new(mut args: HostArgs, string: Option<Vec<u8>>) -> Self {
        let string = string.map(|s| CString::new(s).expect("no NUL inside"));
        args.str = string.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        Self { args, string }
    }

    fn bytes(&self) -> &[u8] {
        self.string.as_ref().map_or(&[], |s| s.as_bytes())
    }

    /// What the header makes of the string for a field of at most `max` bytes.
    fn shown(&self, max: usize) -> String {
        let bytes = &self.bytes()[..self.bytes().len().min(max)];
        bytes
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    }
}

fn build(shape: Shape, level: u8, values: &Values) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 4096];
    // SAFETY: args points to a live HostArgs (its string pointer to a live CString or
    // NULL), out to `cap` writable bytes; the C side writes at most cap bytes.
    let n = unsafe {
        sonde_log_host_build(
            shape as u32,
            level,
            &values.args,
            out.as_mut_ptr(),
            out.len() as u32,
        )
    };
    assert!(n >= 0, "{shape:?}: bad call");
    out.truncate(usize::try_from(n).ok()?);
    (n > 0).then_some(out)
}

fn expected(shape: Shape, v: &Values) -> (Level, String) {
    let a = &v.args;
    match shape {
        Shape::MessageOnly => (Level::Info, "message only".to_owned()),
        Shape::Unsigned => (
            Level::Debug,
            format!(
                "unsigned u8={} u16={} u32={} u64={}",
                a.u8, a.u16, a.u32, a.u64
            ),
        ),
        Shape::Signed => (
            Level::Warn,
            format!(
                "signed i8={} i16={} i32={} i64={}",
                a.i8, a.i16, a.i32, a.i64
            ),
        ),
        Shape::Hex => (
            Level::Trace,
            format!(
                "hex x32={:x} x64={:x} xi64={:x} flag={}",
                a.u32,
                a.u64,
                a.i64,
                u8::from(a.flag)
            ),
        ),
        Shape::Strings => (
            Level::Error,
            format!(
                "strings s16={} after={} s1={} max={}",
                v.shown(16),
                a.u32,
                v.shown(1),
                v.shown(STR_MAX)
            ),
        ),
        Shape::Ips => (
            Level::Info,
            format!(
                "addresses v4={} v6={}",
                Ipv4Addr::from(a.ip4),
                Ipv6Addr::from(a.ip6)
            ),
        ),
        Shape::Largest => {
            let s = v.shown(STR_MAX);
            (
                Level::Trace,
                format!("{LONGEST_MESSAGE} first={s} second={s} third={s} fourth={s}"),
            )
        }
        Shape::DebugOnly => (Level::Debug, format!("debug only u64={}", a.u64)),
    }
}

/// A string for a LOG_STR field: empty, exactly a field's length, over-long, with bytes
/// that are not printable ASCII (UTF-8 cut anywhere), or none (unreadable).
fn random_string(rng: &mut StdRng) -> Option<Vec<u8>> {
    let len = match rng.random_range(0..8) {
        0 => return None,
        1 => 0,
        2 => 1,
        3 => 16,
        4 => STR_MAX,
        5 => STR_MAX + 1,
        6 => rng.random_range(STR_MAX..300),
        _ => rng.random_range(0..STR_MAX),
    };
    let printable = rng.random_bool(0.5);
    Some(
        (0..len)
            .map(|_| {
                if printable {
                    rng.random_range(0x20..0x7f)
                } else if rng.random_bool(0.3) {
                    // Multi-byte UTF-8, to be cut at any byte.
                    "é€😀".as_bytes()[rng.random_range(0..9)]
                } else {
                    rng.random_range(1..=255)
                }
            })
            .collect(),
    )
}

fn edge<T: Copy>(rng: &mut StdRng, edges: &[T], random: impl FnOnce(&mut StdRng) -> T) -> T {
    if rng.random_bool(0.5) {
        edges[rng.random_range(0..edges.len())]
    } else {
        random(rng)
    }
}

fn random_values(rng: &mut StdRng) -> Values {
    let args = HostArgs {
        u64: edge(rng, &[0, 1, u64::MAX], |r| r.random()),
        i64: edge(rng, &[0, -1, i64::MIN, i64::MAX], |r| r.random()),
        u32: edge(rng, &[0, u32::MAX], |r| r.random()),
        i32: edge(rng, &[0, -1, i32::MIN, i32::MAX], |r| r.random()),
        u16: edge(rng, &[0, u16::MAX], |r| r.random()),
        i16: edge(rng, &[i16::MIN, i16::MAX], |r| r.random()),
        u8: edge(rng, &[0, u8::MAX], |r| r.random()),
        i8: edge(rng, &[i8::MIN, -1, i8::MAX], |r| r.random()),
        flag: rng.random(),
        ip4: rng.random(),
        ip6: edge(rng, &[[0; 16], [0xff; 16]], |r| r.random()),
        _pad: [0; 3],
        str: std::ptr::null(),
    };
    Values::new(args, random_string(rng))
}

/// Seeded from SONDE_PROBE_LOG_SEED, else the clock (printed, to replay a failure).
fn rng() -> StdRng {
    let seed = std::env::var("SONDE_PROBE_LOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("SONDE_PROBE_LOG_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

// ===== decoding, field by field, with aya-log-common's tag values =====

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    target: String,
    level: Level,
    module: String,
    file: String,
    line: u32,
    message: String,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// One `u8 tag, u16 length, value` field, as aya-log's `try_read`.
    fn field(&mut self) -> Result<(u8, &'a [u8]), String> {
        if self.buf.len() < 3 {
            return Err(format!("field header cut: {} bytes left", self.buf.len()));
        }
        let tag = self.buf[0];
        let len = usize::from(u16::from_ne_bytes([self.buf[1], self.buf[2]]));
        let rest = &self.buf[3..];
        if rest.len() < len {
            return Err(format!("field of {len} bytes, {} left", rest.len()));
        }
        let (value, rest) = rest.split_at(len);
        self.buf = rest;
        Ok((tag, value))
    }

    fn header_str(&mut self, kind: RecordFieldKind) -> Result<String, String> {
        let (tag, value) = self.field()?;
        if tag != u8::from(kind) {
            return Err(format!("expected {kind:?}, found tag {tag}"));
        }
        String::from_utf8(value.to_vec()).map_err(|e| format!("{kind:?}: {e}"))
    }

    fn header_u32(&mut self, kind: RecordFieldKind) -> Result<u32, String> {
        let (tag, value) = self.field()?;
        if tag != u8::from(kind) {
            return Err(format!("expected {kind:?}, found tag {tag}"));
        }
        Ok(u32::from_ne_bytes(value.try_into().map_err(|_| {
            format!("{kind:?}: length {}", value.len())
        })?))
    }
}

fn level_of(byte: u8) -> Result<Level, String> {
    [
        (AyaLevel::Error, Level::Error),
        (AyaLevel::Warn, Level::Warn),
        (AyaLevel::Info, Level::Info),
        (AyaLevel::Debug, Level::Debug),
        (AyaLevel::Trace, Level::Trace),
    ]
    .into_iter()
    .find(|(aya, _)| u8::from(*aya) == byte)
    .map(|(_, level)| level)
    .ok_or_else(|| format!("level byte {byte} is no aya_log_common::Level"))
}

fn hint_of(byte: u8) -> Result<DisplayHint, String> {
    [
        DisplayHint::Default,
        DisplayHint::LowerHex,
        DisplayHint::UpperHex,
        DisplayHint::Ip,
        DisplayHint::LowerMac,
        DisplayHint::UpperMac,
        DisplayHint::Pointer,
    ]
    .into_iter()
    .find(|h| u8::from(*h) == byte)
    .ok_or_else(|| format!("hint byte {byte} is no aya_log_common::DisplayHint"))
}

/// An integer argument formatted as aya-log does (its `impl_format!`; `Ip` only for u32,
/// which this header never writes).
fn int(
    value: &[u8],
    hint: Option<DisplayHint>,
    width: usize,
    signed: bool,
) -> Result<String, String> {
    if value.len() != width {
        return Err(format!("{width}-byte integer of {} bytes", value.len()));
    }
    let mut bytes = [0u8; 8];
    bytes[..width].copy_from_slice(value);
    let unsigned = u64::from_le_bytes(bytes);
    let shift = 64 - 8 * width as u32;
    let signed_value = ((unsigned << shift) as i64) >> shift;
    Ok(match hint {
        None | Some(DisplayHint::Default) if signed => signed_value.to_string(),
        None | Some(DisplayHint::Default) => unsigned.to_string(),
        // Rust's {:x} of a negative iN is its two's complement in N bits.
        Some(DisplayHint::LowerHex) => format!("{unsigned:x}"),
        Some(DisplayHint::UpperHex) => format!("{unsigned:X}"),
        Some(h) => {
            return Err(format!(
                "hint {h:?} on an integer: aya-log fails the record"
            ));
        }
    })
}

/// Decodes a record as aya-log's `log_buf` does, but strictly: header fields in their
/// order, every tag and hint a value of aya-log-common's enums, every length right, every
/// hint one aya-log accepts for its value, and nothing left over inside `size`.
fn decode(record: &[u8]) -> Result<Decoded, String> {
    if record.len() < 2 {
        return Err("no size".to_owned());
    }
    let size = usize::from(u16::from_ne_bytes([record[0], record[1]]));
    if size < 2 || size > record.len() {
        return Err(format!(
            "size {size} outside the {}-byte record",
            record.len()
        ));
    }
    let mut r = Reader {
        buf: &record[2..size],
    };
    let target = r.header_str(RecordFieldKind::Target)?;
    let (tag, value) = r.field()?;
    if tag != u8::from(RecordFieldKind::Level) || value.len() != 1 {
        return Err(format!("level field: tag {tag}, {} bytes", value.len()));
    }
    let level = level_of(value[0])?;
    let module = r.header_str(RecordFieldKind::Module)?;
    let file = r.header_str(RecordFieldKind::File)?;
    let line = r.header_u32(RecordFieldKind::Line)?;
    let num_args = r.header_u32(RecordFieldKind::NumArgs)?;

    let mut message = String::new();
    let mut hint = None;
    for _ in 0..num_args {
        let (tag, value) = r.field()?;
        let kind = |k: ArgumentKind| tag == u8::from(k);
        if kind(ArgumentKind::DisplayHint) {
            if value.len() != 1 {
                return Err(format!("hint of {} bytes", value.len()));
            }
            hint = Some(hint_of(value[0])?);
            continue;
        }
        let hint = hint.take();
        let piece = if kind(ArgumentKind::Str) {
            String::from_utf8(value.to_vec()).map_err(|e| format!("str: {e}"))?
        } else if kind(ArgumentKind::U8) {
            int(value, hint, 1, false)?
        } else if kind(ArgumentKind::I8) {
            int(value, hint, 1, true)?
        } else if kind(ArgumentKind::U16) {
            int(value, hint, 2, false)?
        } else if kind(ArgumentKind::I16) {
            int(value, hint, 2, true)?
        } else if kind(ArgumentKind::U32) {
            int(value, hint, 4, false)?
        } else if kind(ArgumentKind::I32) {
            int(value, hint, 4, true)?
        } else if kind(ArgumentKind::U64) {
            int(value, hint, 8, false)?
        } else if kind(ArgumentKind::I64) {
            int(value, hint, 8, true)?
        } else if kind(ArgumentKind::Ipv4Addr) || kind(ArgumentKind::Ipv6Addr) {
            if !matches!(hint, None | Some(DisplayHint::Default | DisplayHint::Ip)) {
                return Err(format!(
                    "hint {hint:?} on an address: aya-log fails the record"
                ));
            }
            match <[u8; 4]>::try_from(value) {
                Ok(v4) if kind(ArgumentKind::Ipv4Addr) => Ipv4Addr::from(v4).to_string(),
                _ => Ipv6Addr::from(
                    <[u8; 16]>::try_from(value)
                        .map_err(|_| format!("address of {} bytes", value.len()))?,
                )
                .to_string(),
            }
        } else {
            return Err(format!("argument tag {tag}: not one this header writes"));
        };
        message.push_str(&piece);
    }
    if !r.buf.is_empty() {
        return Err(format!("{} bytes left after the arguments", r.buf.len()));
    }
    Ok(Decoded {
        target,
        level,
        module,
        file,
        line,
        message,
    })
}

#[test]
fn the_host_build_has_every_shape_this_test_knows() {
    // SAFETY: no arguments, no preconditions.
    assert_eq!(unsafe { sonde_log_host_shapes() } as usize, SHAPES.len());
}

#[test]
fn every_host_record_decodes_to_its_message() {
    let mut rng = rng();
    for round in 0..3000 {
        let values = random_values(&mut rng);
        for shape in SHAPES {
            let record = build(shape, ProbeLogLevel::Trace.kernel_level(), &values)
                .unwrap_or_else(|| panic!("{shape:?}: no record at trace"));
            let decoded = decode(&record)
                .unwrap_or_else(|e| panic!("round {round}, {shape:?}: {e}\nrecord: {record:02x?}"));
            let (level, message) = expected(shape, &values);
            assert_eq!(decoded.target, TARGET);
            assert_eq!(decoded.module, TARGET);
            assert_eq!(decoded.file, "log_host.c");
            assert!(decoded.line > 0);
            assert_eq!(
                (decoded.level, decoded.message),
                (level, message),
                "{shape:?}"
            );
        }
    }
}

#[test]
fn a_record_below_the_level_is_not_built() {
    let values = Values::new(random_values(&mut rng()).args, None);
    assert_eq!(
        build(Shape::DebugOnly, ProbeLogLevel::Off.kernel_level(), &values),
        None
    );
    assert_eq!(
        build(
            Shape::DebugOnly,
            ProbeLogLevel::Info.kernel_level(),
            &values
        ),
        None
    );
    assert!(
        build(
            Shape::DebugOnly,
            ProbeLogLevel::Debug.kernel_level(),
            &values
        )
        .is_some()
    );
    assert_eq!(
        build(Shape::Hex, ProbeLogLevel::Debug.kernel_level(), &values),
        None
    );
    assert!(build(Shape::Strings, ProbeLogLevel::Error.kernel_level(), &values).is_some());
}

#[test]
fn the_largest_record_is_the_one_the_header_sized() {
    let values = Values::new(random_values(&mut rng()).args, Some(vec![b'x'; 300]));
    let record = build(Shape::Largest, 5, &values).expect("a record");
    let size = usize::from(u16::from_ne_bytes([record[0], record[1]]));
    // Every string at its longest: the record fills exactly what was reserved.
    assert_eq!(size, record.len());
    assert!(decode(&record).is_ok());
    let short = Values::new(values.args.clone(), Some(Vec::new()));
    let record = build(Shape::Largest, 5, &short).expect("a record");
    let size = usize::from(u16::from_ne_bytes([record[0], record[1]]));
    assert_eq!(
        size + 4 * STR_MAX,
        record.len(),
        "empty strings leave their room as slack"
    );
    // Past the size: the last string's room ('?' for the zeroed buffer's bytes, which are
    // not printable) and bytes never written (the host's fill), never stale data.
    assert!(
        record[size..].iter().all(|&b| b == b'?' || b == 0xa5),
        "slack: {:02x?}",
        &record[size..]
    );
}

#[test]
fn the_level_order_is_aya_logs() {
    for (level, aya) in [
        (ProbeLogLevel::Error, AyaLevel::Error),
        (ProbeLogLevel::Warn, AyaLevel::Warn),
        (ProbeLogLevel::Info, AyaLevel::Info),
        (ProbeLogLevel::Debug, AyaLevel::Debug),
        (ProbeLogLevel::Trace, AyaLevel::Trace),
    ] {
        assert_eq!(level.kernel_level(), u8::from(aya));
    }
    assert_eq!(ProbeLogLevel::Off.kernel_level(), 0);
}

// ===== through the kernel and aya-log's own reader (root) =====

/// Whether kernel tests can run here; prints why not (and fails under CI).
fn kernel_tests_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        "needs root"
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        "needs kernel BTF"
    } else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI must not skip it"
    );
    eprintln!("skipped: {test}: {why}");
    false
}

/// Every record a logger received.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Decoded>>>);

impl Recording {
    fn records(&self) -> Vec<Decoded> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    fn wait_for(&self, n: usize) -> Vec<Decoded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.records()
    }
}

impl Log for Recording {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        self.0.lock().unwrap().push(Decoded {
            target: record.target().to_owned(),
            level: record.level(),
            module: record.module_path().unwrap_or_default().to_owned(),
            file: record.file().unwrap_or_default().to_owned(),
            line: record.line().unwrap_or_default(),
            message: record.args().to_string(),
        });
    }

    fn flush(&self) {}
}

/// Probed by `sonde_test_log_emit` (tests/log_test.bpf.c).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sonde_probe_log_test_emit(a: u64, b: i32, c: u64) {
    std::hint::black_box((a, b, c));
}

/// Probed by `sonde_test_log_relay`: the kernel copies `len` bytes at `record` to AYA_LOGS.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sonde_probe_log_test_relay(record: *const u8, len: u64) {
    std::hint::black_box((record, len));
}

fn load_test_object(level: ProbeLogLevel, program: &str, target_fn: &str) -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .override_global(aya_log::LEVEL, &level.kernel_level(), true)
        .load(TEST_OBJECT)
        .expect("loading tests/log_test.bpf.o");
    let probe: &mut UProbe = ebpf
        .program_mut(program)
        .expect("program in the object")
        .try_into()
        .expect("a uprobe");
    probe.load().expect("verifier accepts it");
    probe
        .attach(target_fn, "/proc/self/exe", UProbeScope::CallingProcess)
        .expect("attaching to the test binary");
    ebpf
}

#[test]
fn a_record_built_in_the_kernel_reaches_the_logger_exactly() {
    if !kernel_tests_run("a_record_built_in_the_kernel_reaches_the_logger_exactly") {
        return;
    }
    let mut ebpf = load_test_object(
        ProbeLogLevel::Info,
        "sonde_test_log_emit",
        "sonde_probe_log_test_emit",
    );
    let recording = Recording::default();
    let reader = ProbeLog::start_with(&mut ebpf, recording.clone()).expect("aya-log reader");
    sonde_probe_log_test_emit(42, -7, 0xdead_beef);
    sonde_probe_log_test_emit(u64::MAX, i32::MIN, 0);

    let comm = std::fs::read("/proc/thread-self/comm").expect("own comm");
    let comm: String = comm
        .strip_suffix(b"\n")
        .unwrap_or(&comm)
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    let records = recording.wait_for(2);
    drop(reader);
    let messages: Vec<(Level, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.level,
                r.target.as_str(),
                r.file.as_str(),
                r.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (
                Level::Info,
                TARGET,
                "log_test.bpf.c",
                format!("probe log test a=42 b=-7 c=deadbeef comm={comm}").as_str()
            ),
            (
                Level::Info,
                TARGET,
                "log_test.bpf.c",
                format!(
                    "probe log test a={} b={} c=0 comm={comm}",
                    u64::MAX,
                    i32::MIN
                )
                .as_str()
            ),
        ],
        "the debug record stays in the kernel at --probe-log info"
    );
    assert_eq!(recording.records(), Vec::new(), "nothing more");
}

#[test]
fn host_built_records_of_every_shape_pass_through_aya_logs_reader() {
    if !kernel_tests_run("host_built_records_of_every_shape_pass_through_aya_logs_reader") {
        return;
    }
    let mut ebpf = load_test_object(
        ProbeLogLevel::Off,
        "sonde_test_log_relay",
        "sonde_probe_log_test_relay",
    );
    let recording = Recording::default();
    // aya-log's EbpfLogger::flush unwraps its parse: a malformed record panics in the
    // reader, which then stops (ProbeLog) and the wait below comes up short.
    let reader = ProbeLog::start_with(&mut ebpf, recording.clone()).expect("aya-log reader");
    let mut rng = rng();
    for _ in 0..100 {
        let mut sent = Vec::new();
        for _ in 0..4 {
            let values = random_values(&mut rng);
            for shape in SHAPES {
                let record = build(shape, 5, &values).expect("a record at trace");
                sonde_probe_log_test_relay(record.as_ptr(), record.len() as u64);
                sent.push(expected(shape, &values));
            }
        }
        let received = recording.wait_for(sent.len());
        let received: Vec<(Level, String)> = received
            .into_iter()
            .map(|r| {
                assert_eq!((r.target.as_str(), r.file.as_str()), (TARGET, "log_host.c"));
                (r.level, r.message)
            })
            .collect();
        assert_eq!(received, sent);
    }
    drop(reader);
}

#[test]
fn every_program_loads_with_every_diagnostic_on() {
    if !kernel_tests_run("every_program_loads_with_every_diagnostic_on") {
        return;
    }
    let opts = ProbeOptions {
        probe_log: ProbeLogLevel::Trace,
        ..ProbeOptions::default()
    };
    let btf = crate::sys::features::kernel_btf();
    let btf = btf.as_ref().map_err(String::as_str);
    let fentry = crate::sys::features::fentry(btf);
    let matrix = matrix::load_every_program_at(&opts, btf, &fentry).expect("the object opens");
    for p in &matrix.programs {
        eprintln!("{:<28} {:?} {:?}", p.program, p.state, p.verified_insns);
        assert_ne!(
            p.state,
            LoadState::Rejected,
            "{}: {} {:?}",
            p.program,
            p.error,
            p.log_tail
        );
        assert!(
            p.verified_insns.unwrap_or(0) <= VERIFIER_BUDGET,
            "{} over budget with --probe-log trace: {:?}",
            p.program,
            p.verified_insns
        );
    }
}
