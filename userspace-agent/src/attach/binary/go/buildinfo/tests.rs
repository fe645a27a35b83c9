//! The build-info decoder on synthetic blobs of both layouts, and on malformed ones.

use std::collections::HashMap;

use super::*;

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// cmd/go's framing: 16 bytes of sentinel each side, a newline 17 bytes from the end.
fn framed(modinfo: &str) -> Vec<u8> {
    let mut out = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    out.extend_from_slice(modinfo.as_bytes());
    out.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    out
}

const MODINFO: &str =
    "path\texample.com/app/cmd/app\nmod\texample.com/app\t(devel)\t\nbuild\t-compiler=gc\n";

fn inline_blob(version: &str, modinfo: &[u8]) -> Vec<u8> {
    let mut blob = MAGIC.to_vec();
    blob.push(8);
    blob.push(FLAG_INLINE);
    blob.resize(HEADER_SIZE, 0);
    varint(version.len(), &mut blob);
    blob.extend_from_slice(version.as_bytes());
    varint(modinfo.len(), &mut blob);
    blob.extend_from_slice(modinfo);
    blob
}

fn no_memory(_: u64, _: u64) -> Option<&'static [u8]> {
    None
}

#[test]
fn versions_parse_and_devel_does_not() {
    let v = |s| GoVersion::parse(s);
    assert_eq!(
        v("go1.26.8"),
        Some(GoVersion {
            major: 1,
            minor: 26,
            patch: 8
        })
    );
    assert_eq!(
        v("go1.21rc2"),
        Some(GoVersion {
            major: 1,
            minor: 21,
            patch: 0
        })
    );
    assert_eq!(
        v("go1.22-20231128-RC02"),
        Some(GoVersion {
            major: 1,
            minor: 22,
            patch: 0
        })
    );
    assert_eq!(
        v("go1.26.8 X:boringcrypto"),
        Some(GoVersion {
            major: 1,
            minor: 26,
            patch: 8
        })
    );
    assert_eq!(
        v("go1.19"),
        Some(GoVersion {
            major: 1,
            minor: 19,
            patch: 0
        })
    );
    assert_eq!(v("devel go1.27-abcdef Mon Jan 1"), None);
    assert_eq!(v("go"), None);
    assert_eq!(v("go1."), None);
    assert_eq!(v("go99999999999999.1"), None);
    assert!(
        GoVersion {
            major: 1,
            minor: 17,
            patch: 0
        }
        .has_register_abi()
    );
    assert!(
        !GoVersion {
            major: 1,
            minor: 16,
            patch: 15
        }
        .has_register_abi()
    );
    assert_eq!(
        GoVersion {
            major: 1,
            minor: 26,
            patch: 8
        }
        .to_string(),
        "go1.26.8"
    );
}

#[test]
fn inline_strings_go_1_18_and_later() {
    let blob = inline_blob("go1.26.8", &framed(MODINFO));
    let info = decode(&blob, &no_memory).expect("decodes");
    assert_eq!(info.go_version, "go1.26.8");
    assert_eq!(info.version, GoVersion::parse("go1.26.8"));
    assert_eq!(info.path.as_deref(), Some("example.com/app/cmd/app"));
    assert_eq!(info.main_module.as_deref(), Some("example.com/app"));
    assert_eq!(info.modinfo, MODINFO);
    // Without modinfo (GOPATH mode, -buildvcs=false and no module): the version alone.
    let info = decode(&inline_blob("go1.20.1", b""), &no_memory).expect("decodes");
    assert_eq!(info.path, None);
    assert_eq!(info.modinfo, "");
}

#[test]
fn pointers_to_string_headers_before_go_1_18() {
    // Fake memory: a string header at 0x1000 -> "go1.16.15" at 0x1100, and one at 0x2000 ->
    // modinfo at 0x2100.
    let modinfo = framed(MODINFO);
    let mut memory: HashMap<u64, Vec<u8>> = HashMap::new();
    let header = |ptr: u64, len: usize| {
        let mut h = ptr.to_le_bytes().to_vec();
        h.extend_from_slice(&(len as u64).to_le_bytes());
        h
    };
    memory.insert(0x1000, header(0x1100, 9));
    memory.insert(0x1100, b"go1.16.15".to_vec());
    memory.insert(0x2000, header(0x2100, modinfo.len()));
    memory.insert(0x2100, modinfo);
    let memory: &'static HashMap<u64, Vec<u8>> = Box::leak(Box::new(memory));
    let read_at = |addr: u64, len: u64| -> Option<&'static [u8]> {
        memory
            .get(&addr)
            .and_then(|v| v.get(..usize::try_from(len).ok()?))
    };
    let mut blob = MAGIC.to_vec();
    blob.push(8);
    blob.push(0);
    blob.extend_from_slice(&0x1000u64.to_le_bytes());
    blob.extend_from_slice(&0x2000u64.to_le_bytes());
    let info = decode(&blob, &read_at).expect("decodes");
    assert_eq!(info.go_version, "go1.16.15");
    assert_eq!(info.main_module.as_deref(), Some("example.com/app"));
    // A dangling version pointer is an error, not a panic.
    let mut dangling = blob.clone();
    dangling[16..24].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    assert!(decode(&dangling, &read_at).is_err());
    // An unknown pointer size.
    let mut bad = blob;
    bad[14] = 3;
    assert!(decode(&bad, &read_at).is_err());
}

#[test]
fn malformed_blobs_are_errors() {
    let good = inline_blob("go1.26.8", &framed(MODINFO));
    for len in 0..good.len() {
        // Every truncation: an error (or, once the version is whole, a result), no panic.
        let _ = decode(&good[..len], &no_memory);
    }
    assert!(decode(&good[..HEADER_SIZE - 1], &no_memory).is_err());
    assert!(
        decode(&good[..HEADER_SIZE + 3], &no_memory).is_err(),
        "version cut short"
    );
    let mut no_magic = good.clone();
    no_magic[0] = 0;
    assert_eq!(
        decode(&no_magic, &no_memory),
        Err(BuildInfoError::Malformed("no magic"))
    );
    // A ten-byte varint of 0xff: no terminator.
    let mut huge = good[..HEADER_SIZE].to_vec();
    huge.extend_from_slice(&[0xff; 10]);
    assert!(decode(&huge, &no_memory).is_err());
    // A length far past the data, and one over the cap.
    let mut long = good[..HEADER_SIZE].to_vec();
    varint(1 << 40, &mut long);
    assert!(decode(&long, &no_memory).is_err());
    let mut empty = good[..HEADER_SIZE].to_vec();
    empty.extend_from_slice(&[0, 0]);
    assert_eq!(
        decode(&empty, &no_memory),
        Err(BuildInfoError::Malformed("empty version"))
    );
}

#[test]
fn magic_is_found_only_when_aligned() {
    let mut data = vec![0u8; 64];
    data[3..17].copy_from_slice(MAGIC); // misaligned copy
    data[32..46].copy_from_slice(MAGIC);
    let (address, rest) = find_magic(0x1000, &data).expect("found");
    assert_eq!(address, 0x1020);
    assert!(rest.starts_with(MAGIC));
    // The same bytes loaded at an address 3 below alignment make the first copy aligned.
    assert_eq!(find_magic(0x0ffd, &data).map(|(a, _)| a), Some(0x1000));
    assert_eq!(find_magic(0x1000, &data[..40]), None);
}
