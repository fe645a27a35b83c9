//! The pclntab reader on hand-built tables of each format, and on malformed ones; real
//! tables are read in `go/tests.rs`.

use super::*;

/// A table of `funcs` (name, entry) ending at `end`, in the format of `magic` (ptr size 8).
/// Entries are offsets from the text start for 1.18+, addresses for 1.16.
fn build(magic: u32, funcs: &[(&str, u64)], end: u64) -> Vec<u8> {
    let new = magic != MAGIC_GO116;
    let words = if new { 8 } else { 7 };
    let header_len = 8 + 8 * words;
    let mut names = Vec::new();
    let mut name_offs = Vec::new();
    for (name, _) in funcs {
        name_offs.push(names.len() as u64);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let funcname_off = header_len as u64;
    let pcln_off = funcname_off + names.len() as u64;
    let field = if new { 4 } else { 8 };
    let functab_len = (2 * funcs.len() + 1) * field;
    let put =
        |out: &mut Vec<u8>, v: u64, size: usize| out.extend_from_slice(&v.to_le_bytes()[..size]);

    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&[0, 0, 1, 8]);
    let header_words: Vec<u64> = if new {
        vec![funcs.len() as u64, 0, 0, funcname_off, 0, 0, 0, pcln_off]
    } else {
        vec![funcs.len() as u64, 0, funcname_off, 0, 0, 0, pcln_off]
    };
    for w in header_words {
        put(&mut out, w, 8);
    }
    out.extend_from_slice(&names);
    // functab, then the _func records right after it.
    let func_size = field + 4;
    for (i, (_, entry)) in funcs.iter().enumerate() {
        put(&mut out, *entry, field);
        put(&mut out, (functab_len + i * func_size) as u64, field);
    }
    put(&mut out, end, field);
    for (i, (_, entry)) in funcs.iter().enumerate() {
        put(&mut out, *entry, field);
        put(&mut out, name_offs[i], 4);
    }
    out
}

const FUNCS: [(&str, u64); 3] = [
    ("runtime.main", 0x0),
    ("crypto/tls.(*Conn).Write", 0x140),
    ("crypto/tls.(*Conn).Read", 0x400),
];

#[test]
fn go_1_20_entries_are_offsets_from_the_text_start() {
    let data = build(MAGIC_GO120, &FUNCS, 0x700);
    let tab = Pclntab::parse(&data).expect("parses");
    assert_eq!(tab.version(), PclntabVersion::Go120);
    assert_eq!(tab.len(), 3);
    assert_eq!(tab.header_text_start(), None, "0 means not written");
    assert_eq!(
        tab.find("crypto/tls.(*Conn).Read"),
        Err(PclntabError::NoTextStart)
    );
    assert!(
        tab.contains("crypto/tls.(*Conn).Read"),
        "names need no text start"
    );
    assert!(!tab.contains("crypto/tls.(*Conn).Close"));
    let tab = tab.with_text_start(0x40_1000);
    let write = tab
        .find("crypto/tls.(*Conn).Write")
        .expect("ok")
        .expect("found");
    assert_eq!((write.entry, write.end), (0x40_1140, 0x40_1400));
    let read = tab
        .find("crypto/tls.(*Conn).Read")
        .expect("ok")
        .expect("found");
    assert_eq!(
        (read.entry, read.end),
        (0x40_1400, 0x40_1700),
        "the last ends at the table's end"
    );
    assert_eq!(tab.find("nope"), Ok(None));
    let names: Vec<&[u8]> = tab.funcs().map(|f| f.expect("ok").name).collect();
    assert_eq!(names, FUNCS.map(|(n, _)| n.as_bytes()).to_vec());
}

#[test]
fn go_1_18_has_the_same_layout() {
    let data = build(MAGIC_GO118, &FUNCS, 0x700);
    let tab = Pclntab::parse(&data)
        .expect("parses")
        .with_text_start(0x1000);
    assert_eq!(tab.version(), PclntabVersion::Go118);
    assert_eq!(
        tab.find("runtime.main").expect("ok").map(|f| f.entry),
        Some(0x1000)
    );
}

#[test]
fn go_1_16_entries_are_addresses() {
    let funcs = FUNCS.map(|(n, e)| (n, e + 0x40_1000));
    let data = build(MAGIC_GO116, &funcs, 0x40_1700);
    let tab = Pclntab::parse(&data).expect("parses");
    assert!(!tab.needs_text_start());
    let write = tab
        .find("crypto/tls.(*Conn).Write")
        .expect("ok")
        .expect("found");
    assert_eq!((write.entry, write.end), (0x40_1140, 0x40_1400));
}

#[test]
fn old_unknown_and_malformed_tables_are_errors() {
    let good = build(MAGIC_GO120, &FUNCS, 0x700);
    let with = |at: usize, bytes: &[u8]| {
        let mut d = good.clone();
        d[at..at + bytes.len()].copy_from_slice(bytes);
        d
    };
    assert_eq!(
        Pclntab::parse(&with(0, &MAGIC_GO12.to_le_bytes())).err(),
        Some(PclntabError::TooOld)
    );
    assert_eq!(
        Pclntab::parse(&with(0, &0x1234_5678u32.to_le_bytes())).err(),
        Some(PclntabError::UnsupportedMagic(0x1234_5678))
    );
    // Big-endian magic is not read.
    assert!(Pclntab::parse(&with(0, &MAGIC_GO120.to_be_bytes())).is_err());
    assert!(Pclntab::parse(&with(4, &[1])).is_err(), "pad must be 0");
    assert!(
        Pclntab::parse(&with(7, &[3])).is_err(),
        "pointer size 4 or 8"
    );
    // nfunc so large the function table cannot fit.
    assert!(Pclntab::parse(&with(8, &u64::MAX.to_le_bytes())).is_err());
    assert!(Pclntab::parse(&with(8, &(1u64 << 40).to_le_bytes())).is_err());
    // pcln_off past the end.
    assert!(Pclntab::parse(&with(8 + 7 * 8, &u64::MAX.to_le_bytes())).is_err());
    for len in 0..good.len() {
        if let Ok(tab) = Pclntab::parse(&good[..len]) {
            let tab = tab.with_text_start(0x1000);
            for f in tab.funcs() {
                let _ = f;
            }
        }
    }
    // A name offset past the name table: that function is an error, the others still read.
    let functab = Pclntab::parse(&good).expect("ok").functab_offset();
    let func_records = functab + (2 * FUNCS.len() + 1) * 4;
    let bad_name = with(func_records + 4, &0xffff_fff0u32.to_le_bytes());
    let tab = Pclntab::parse(&bad_name)
        .expect("header fine")
        .with_text_start(0);
    assert!(tab.func(0).is_err());
    assert!(tab.func(1).is_ok());
    assert!(tab.find("crypto/tls.(*Conn).Read").expect("ok").is_some());
    // An entry beyond the next one (end before entry) is malformed.
    let backwards = with(functab, &0x9999u32.to_le_bytes());
    assert!(
        Pclntab::parse(&backwards)
            .expect("ok")
            .with_text_start(0)
            .func(0)
            .is_err()
    );
}
