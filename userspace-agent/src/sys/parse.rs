//! Pure parsers for the text files the kernel offers (`/proc/mounts`, `/proc/<pid>/status`,
//! the lockdown file, kernel config). No I/O here, so every function is tested on
//! literal inputs (`sys/tests.rs`).

use std::path::PathBuf;

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// Parses `/proc/mounts` (same format as fstab; spaces in paths are octal-escaped).
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = unescape_octal(fields.next()?);
            let mount_point = PathBuf::from(unescape_octal(fields.next()?));
            let fstype = fields.next()?.to_owned();
            Some(MountEntry {
                source,
                mount_point,
                fstype,
            })
        })
        .collect()
}

/// The kernel writes ' ', '\t', '\n' and '\\' in mount fields as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(value) = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(octal_byte)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three ASCII octal digits as one byte (`b"040"` is a space).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits
        .iter()
        .try_fold(0u16, |acc, &d| match d {
            b'0'..=b'7' => Some(acc * 8 + u16::from(d - b'0')),
            _ => None,
        })
        .and_then(|v| u8::try_from(v).ok())
}

/// Mount points of every mount of `fstype`, in mount order.
pub fn mount_points_of<'a>(
    mounts: &'a [MountEntry],
    fstype: &'a str,
) -> impl Iterator<Item = &'a PathBuf> + 'a {
    mounts
        .iter()
        .filter(move |m| m.fstype == fstype)
        .map(|m| &m.mount_point)
}

/// How cgroups are laid out on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only cgroup2 (modern systemd default).
    Unified,
    /// cgroup2 mounted beside v1 controllers (e.g. at /sys/fs/cgroup/unified).
    Hybrid,
}

/// Where cgroup2 is mounted and whether v1 hierarchies sit beside it.
pub fn cgroup2_layout(mounts: &[MountEntry]) -> Option<(PathBuf, CgroupLayout)> {
    let point = mount_points_of(mounts, "cgroup2").next()?.clone();
    let layout = if mounts.iter().any(|m| m.fstype == "cgroup") {
        CgroupLayout::Hybrid
    } else {
        CgroupLayout::Unified
    };
    Some((point, layout))
}

/// The `CapEff:` mask from `/proc/<pid>/status`.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Whether capability number `cap` is set in `mask`.
pub fn has_cap(mask: u64, cap: u32) -> bool {
    cap < 64 && mask & (1u64 << cap) != 0
}

/// The active mode from `/sys/kernel/security/lockdown`, e.g.
/// `"none [integrity] confidentiality"` gives `"integrity"`.
pub fn parse_lockdown(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    let mode = text[start..start + len].trim();
    (!mode.is_empty()).then_some(mode)
}

/// A `CONFIG_*` option as it appears in a kernel config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// `CONFIG_X=value` (`y`, `m`, a number or a string).
    Set(String),
    /// `# CONFIG_X is not set`.
    NotSet,
    /// The option does not appear at all (unknown to this kernel version).
    Absent,
}

/// Looks up `option` (e.g. `"CONFIG_KPROBES"`) in kernel config text.
pub fn kernel_config(text: &str, option: &str) -> ConfigValue {
    for line in text.lines().map(str::trim) {
        if let Some(value) = line
            .strip_prefix(option)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return ConfigValue::Set(value.to_owned());
        }
        if line
            .strip_prefix("# ")
            .and_then(|rest| rest.strip_prefix(option))
            .is_some_and(|rest| rest == " is not set")
        {
            return ConfigValue::NotSet;
        }
    }
    ConfigValue::Absent
}

/// `(major, minor)` from a release such as `"6.18.44-fc-v669"`. Used only for
/// informational notes; feature decisions are made by probing.
pub fn kernel_major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
