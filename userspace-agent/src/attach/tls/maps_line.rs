//! Lines of `/proc/PID/maps`: which executable files a process maps.

use super::FileId;

/// One line of `/proc/PID/maps`: an executable mapping of a file.
pub(super) struct Mapping<'a> {
    pub(super) id: FileId,
    pub(super) path: &'a str,
}

impl<'a> Mapping<'a> {
    /// `address perms offset dev inode path`; None for anything but an executable
    /// mapping of a file with an absolute path.
    pub(super) fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        let _range = fields.next()?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let dev = fields.next()?;
        let inode: u64 = fields.next()?.parse().ok()?;
        let path = fields.next()?;
        if !perms.contains('x') || inode == 0 || !path.starts_with('/') {
            return None;
        }
        let (major, minor) = dev.split_once(':')?;
        let dev = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        Some(Self {
            id: FileId { dev, inode },
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_executable_file_mappings() {
        let line = "7f1c8e1d2000-7f1c8e271000 r-xp 00022000 fe:01 1315204                    /usr/lib/x86_64-linux-gnu/libssl.so.3";
        let m = Mapping::parse(line).expect("an executable file mapping");
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(
            m.id,
            FileId {
                dev: (0xfe, 1),
                inode: 1315204
            }
        );
        for other in [
            "7f1c8e1d2000-7f1c8e271000 r--p 00000000 fe:01 1315204 /usr/lib/libssl.so.3",
            "7ffd1a2b3000-7ffd1a2d4000 rw-p 00000000 00:00 0                          [stack]",
            "7ffd1a3f0000-7ffd1a3f2000 r-xp 00000000 00:00 0                          [vdso]",
            "garbage",
            "",
        ] {
            assert!(Mapping::parse(other).is_none(), "{other}");
        }
    }
}
