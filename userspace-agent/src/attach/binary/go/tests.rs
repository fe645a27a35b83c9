//! The Go layer on Go programs built at test time (see `fixtures`), linked six ways with the
//! machine's Go and two ways with Debian's Go 1.19, and on the Go programs that happen to be
//! on this machine image (optional).
//!
//! Checked: the version string; both `crypto/tls` methods found in every build (symtab when
//! unstripped, pclntab when stripped); pclntab and symtab entries equal on unstripped builds,
//! and the text start from `moduledata` equal to `runtime.text`; at least one RET per
//! method, every one inside it and equal to what binutils' `objdump` decodes; DWARF offsets
//! found and equal to the table's row for that release.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::fixtures::{self, Built, Link};
use super::*;
use crate::attach::binary::testutil::{have, readelf_loads, run, skip, skip_optional};
use crate::attach::binary::tls::{TlsLibrary, tls_library};

fn open(path: &Path) -> Elf {
    Elf::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The machine's Go builds, or a skip (a failure under CI).
fn main_go(test: &str) -> Option<&'static Built> {
    match fixtures::main_go() {
        Ok(built) => Some(built),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// The binary for `link`, or a skip (cgo builds need a C compiler).
fn binary<'b>(test: &str, built: &'b Built, link: Link) -> Option<&'b Path> {
    match built.get(link) {
        Ok(path) => Some(path),
        Err(why) => {
            skip(test, &format!("{link:?}: {why}"));
            None
        }
    }
}

#[test]
fn version_and_module_from_buildinfo() {
    let Some(built) = main_go("go_buildinfo") else {
        return;
    };
    for link in Link::ALL {
        let Some(path) = binary("go_buildinfo", built, link) else {
            continue;
        };
        let elf = open(path);
        let info = buildinfo::read(&elf).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        assert_eq!(info.go_version, built.version_string, "{link:?}");
        assert_eq!(info.version, GoVersion::parse(&built.version_string));
        assert_eq!(
            info.main_module.as_deref(),
            Some(fixtures::MODULE),
            "{link:?}"
        );
        assert_eq!(info.path.as_deref(), Some(fixtures::MODULE), "{link:?}");
        assert!(is_go(&elf));
        assert!(matches!(
            tls_library(&elf),
            Some(TlsLibrary::Go { version: Some(_) })
        ));
    }
}

/// Every build: both methods found; unstripped builds give the same entry by symtab and by
/// pclntab, and the same text start by `runtime.text` and by moduledata.
#[test]
fn functions_by_symtab_and_by_pclntab_agree() {
    let Some(built) = main_go("go_functions") else {
        return;
    };
    for link in Link::ALL {
        let Some(path) = binary("go_functions", built, link) else {
            continue;
        };
        let elf = open(path);
        let (tab, pclntab_addr) = pclntab_of(&elf).expect("pclntab");
        assert_eq!(tab.version(), pclntab::PclntabVersion::Go120, "{link:?}");
        let from_moduledata = moduledata::from_moduledata(&elf, pclntab_addr, &tab);
        for name in [CONN_WRITE, CONN_READ] {
            let found = find_function(&elf, name).expect("no error").expect(name);
            let by_pclntab = pclntab_function(&elf, name).expect("pclntab").expect(name);
            if link.unstripped() {
                let by_symtab = symtab_function(&elf, name).expect("symtab");
                assert_eq!(found, by_symtab, "{link:?} {name}");
                assert_eq!(
                    by_pclntab.address, by_symtab.address,
                    "{link:?} {name}: entry"
                );
                // The pclntab's end is the next function's start: symbol end plus padding.
                assert!(by_pclntab.end >= by_symtab.end && by_pclntab.end - by_symtab.end < 64);
                let text = elf.symbol("runtime.text").expect("runtime.text").address;
                assert_eq!(from_moduledata, Some(text), "{link:?}: moduledata text");
            } else {
                assert_eq!(symtab_function(&elf, name), None, "{link:?} is stripped");
                assert_eq!(found, by_pclntab);
                assert_eq!(
                    found.source,
                    FunctionSource::Pclntab(TextStartSource::Moduledata)
                );
                // Same text layout as the unstripped twin: -s -w drop non-loaded sections only.
                let twin = open(built.get(link.twin()).expect("twin"));
                let twin_fn = symtab_function(&twin, name).expect("twin symtab");
                assert_eq!(
                    found.address, twin_fn.address,
                    "{link:?} {name} vs its twin"
                );
            }
        }
        if matches!(link, Link::External) {
            // Why `.text` is not the text start: the C linker put crt code before Go's.
            let text_section = elf.section(".text").expect("ok").expect(".text").address;
            let runtime_text = elf.symbol("runtime.text").expect("runtime.text").address;
            eprintln!("external link: .text {text_section:#x}, runtime.text {runtime_text:#x}");
        }
    }
}

/// `objdump -d` over [start, end): the addresses of its `ret` lines (binutils, an
/// independent decoder).
fn objdump_rets(path: &Path, start: u64, end: u64) -> Result<BTreeSet<u64>, String> {
    let out = run(Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "intel"])
        .arg(format!("--start-address={start:#x}"))
        .arg(format!("--stop-address={end:#x}"))
        .arg(path))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| {
            let (address, rest) = line.trim_start().split_once(':')?;
            let mnemonic = rest
                .split_whitespace()
                .find(|w| !w.starts_with("rep") && !w.starts_with("bnd"))?;
            (mnemonic == "ret")
                .then(|| u64::from_str_radix(address, 16).ok())
                .flatten()
        })
        .collect())
}

#[test]
fn return_sites_are_inside_the_function_and_match_objdump() {
    let Some(built) = main_go("go_returns") else {
        return;
    };
    for link in Link::ALL {
        let Some(path) = binary("go_returns", built, link) else {
            continue;
        };
        let elf = open(path);
        let loads = readelf_loads(&path.to_string_lossy()).expect("readelf");
        for name in [CONN_WRITE, CONN_READ] {
            let function = find_function(&elf, name).expect("ok").expect(name);
            let probe = probe_points(&elf, name, &function).expect("probe points");
            let len = function.end - function.address;
            // Entry offset by readelf's PT_LOAD rows.
            let (offset, vaddr, _) = loads
                .iter()
                .find(|(_, v, size)| function.address >= *v && function.address < v + size)
                .expect("in a PT_LOAD");
            assert_eq!(
                probe.entry_offset,
                function.address - vaddr + offset,
                "{link:?} {name}"
            );
            assert!(!probe.return_offsets.is_empty(), "{link:?} {name}: a RET");
            for &ret in &probe.return_offsets {
                assert!(
                    ret > probe.entry_offset && ret < probe.entry_offset + len,
                    "{link:?} {name}"
                );
                let byte = elf.bytes()[usize::try_from(ret).expect("offset")];
                assert!(
                    matches!(byte, 0xc3 | 0xc2 | 0xf3 | 0xf2),
                    "{link:?} {name}: {byte:#x}"
                );
            }
            if have("objdump") {
                let expected = objdump_rets(path, function.address, function.end).expect("objdump");
                let ours: BTreeSet<u64> = probe
                    .return_offsets
                    .iter()
                    .map(|off| off - probe.entry_offset + function.address)
                    .collect();
                assert_eq!(ours, expected, "{link:?} {name}: RETs vs objdump");
            }
        }
    }
}

/// DWARF offsets on the unstripped builds, equal to the table's row for the release; the
/// stripped builds get the same offsets from the table.
#[test]
fn dwarf_offsets_match_the_table() {
    let Some(built) = main_go("go_dwarf") else {
        return;
    };
    check_dwarf_and_table(built, &[Link::Plain, Link::Pie, Link::External]);
}

fn check_dwarf_and_table(built: &Built, unstripped: &[Link]) {
    let version = GoVersion::parse(&built.version_string).expect("a release");
    for &link in unstripped {
        let Some(path) = binary("go_dwarf", built, link) else {
            continue;
        };
        let elf = open(path);
        let queries = ConnField::ALL.map(ConnField::query);
        let found = dwarf::member_offsets(&elf, &queries).expect("DWARF");
        eprintln!(
            "{} {link:?}: {:?} = {found:?}",
            built.go_version,
            ConnField::ALL
        );
        let offsets = ConnOffsets::from_fields(&found).expect("every field in DWARF");
        let row = offsets::for_version(&version).unwrap_or_else(|| {
            panic!(
                "no offsets table row for {}: add {{ release: ({}, {}), measured_on: \"{}\", offsets: {offsets:?} }}",
                built.version_string, version.major, version.minor, built.version_string
            )
        });
        assert_eq!(row.offsets, offsets, "{link:?}: table row vs DWARF");
    }
}

#[test]
fn go_tls_summary_of_each_build() {
    let Some(built) = main_go("go_tls") else {
        return;
    };
    let mut seen: Option<ConnOffsets> = None;
    for link in Link::ALL {
        let Some(path) = binary("go_tls", built, link) else {
            continue;
        };
        let elf = open(path);
        let tls = go_tls(&elf).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        assert_eq!(tls.go_version, built.version_string);
        if link.unstripped() {
            assert_eq!(tls.functions_from, FunctionSource::Symtab, "{link:?}");
            assert_eq!(tls.offsets_from, OffsetsSource::Dwarf, "{link:?}");
        } else {
            assert_eq!(
                tls.functions_from,
                FunctionSource::Pclntab(TextStartSource::Moduledata),
                "{link:?}"
            );
            assert!(
                matches!(tls.offsets_from, OffsetsSource::VersionTable { .. }),
                "{link:?}"
            );
        }
        assert!(!tls.write.return_offsets.is_empty() && !tls.read.return_offsets.is_empty());
        assert_eq!(*seen.get_or_insert(tls.offsets), tls.offsets, "{link:?}");
    }
}

/// With `.gopclntab` renamed away (as LLD merges it into `.data.rel.ro`), the table is still
/// found: by the `runtime.pclntab` symbol when unstripped, by scanning for a header that
/// moduledata points at when stripped; same address, same functions.
#[test]
fn pclntab_found_without_its_section() {
    let Some(built) = main_go("go_pclntab_fallback") else {
        return;
    };
    if !have("objcopy") {
        skip("go_pclntab_fallback", "no objcopy");
        return;
    }
    let dir = crate::attach::binary::testutil::scratch(&format!("renamed-{}", std::process::id()));
    for link in [Link::Plain, Link::Stripped, Link::PieStripped] {
        let Some(path) = binary("go_pclntab_fallback", built, link) else {
            continue;
        };
        let original = open(path);
        let (_, address) = pclntab_of(&original).expect("pclntab");
        let renamed_path = dir.join(format!("{link:?}"));
        run(Command::new("objcopy")
            .arg("--rename-section")
            .arg(".gopclntab=.rodata.renamed")
            .arg(path)
            .arg(&renamed_path))
        .unwrap_or_else(|e| panic!("{e}"));
        let renamed = open(&renamed_path);
        assert!(!renamed.has_section(".gopclntab"), "{link:?}");
        let (_, found_at) = pclntab_of(&renamed).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        assert_eq!(found_at, address, "{link:?}");
        for name in [CONN_WRITE, CONN_READ] {
            assert_eq!(
                pclntab_function(&renamed, name)
                    .expect("ok")
                    .map(|f| f.address),
                pclntab_function(&original, name)
                    .expect("ok")
                    .map(|f| f.address),
                "{link:?} {name}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ===== Debian's Go 1.19 (optional) =====

fn go_119(test: &str) -> Option<&'static Built> {
    match fixtures::go_119() {
        Ok(built) => Some(built),
        Err(why) => {
            skip_optional(test, why);
            None
        }
    }
}

#[test]
fn go_119_builds() {
    let Some(built) = go_119("go_119") else {
        return;
    };
    for link in [Link::Plain, Link::Stripped] {
        let Some(path) = binary("go_119", built, link) else {
            continue;
        };
        let elf = open(path);
        let info = buildinfo::read(&elf).expect("buildinfo");
        assert_eq!(info.go_version, built.version_string);
        let (tab, _) = pclntab_of(&elf).expect("pclntab");
        assert_eq!(
            tab.version(),
            pclntab::PclntabVersion::Go118,
            "1.19 writes the 1.18 format"
        );
        let tls = go_tls(&elf).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        if link.unstripped() {
            for name in [CONN_WRITE, CONN_READ] {
                let by_symtab = symtab_function(&elf, name).expect("symtab");
                let by_pclntab = pclntab_function(&elf, name).expect("ok").expect(name);
                assert_eq!(by_symtab.address, by_pclntab.address, "{name}");
            }
        } else {
            assert!(matches!(tls.functions_from, FunctionSource::Pclntab(_)));
            let twin = go_tls(&open(built.get(Link::Plain).expect("twin"))).expect("twin");
            assert_eq!(tls.write.entry_offset, twin.write.entry_offset);
            assert_eq!(tls.read.entry_offset, twin.read.entry_offset);
            assert_eq!(tls.offsets, twin.offsets);
        }
    }
    check_dwarf_and_table(built, &[Link::Plain]);
    check_runtime(built, &[Link::Plain, Link::Stripped]);
}

/// The goroutine probes' facts on every build: `g` at -8 from the thread pointer (cgo or
/// not), `runtime.g.goid` and `parentGoid` (go1.21+) from DWARF on unstripped builds and
/// from the table by release on stripped ones, the same values both ways; `newproc1`'s RETs found; no net/http client in
/// the fixture, so no hand-off probes.
fn check_runtime(built: &Built, links: &[Link]) {
    let version = GoVersion::parse(&built.version_string).expect("a release");
    let row = offsets::for_version(&version).expect("a table row");
    for &link in links {
        let Some(path) = binary("go_runtime", built, link) else {
            continue;
        };
        let elf = open(path);
        let rt = runtime::go_runtime(&elf).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        eprintln!(
            "{} {link:?}: g at {}, goid at {} ({:?}), newproc1 RETs {}",
            built.version_string,
            rt.g_tls_offset,
            rt.g_goid,
            rt.offsets_from,
            rt.newproc1.return_offsets.len()
        );
        assert_eq!(rt.g_tls_offset, -8, "{link:?}");
        assert_eq!(rt.g_goid, row.g_goid, "{link:?}: goid vs the table's row");
        assert_eq!(
            rt.g_parent_goid, row.g_parent_goid,
            "{link:?}: parentGoid vs the table's row"
        );
        if link.unstripped() {
            assert_eq!(rt.offsets_from, OffsetsSource::Dwarf, "{link:?}");
        } else {
            assert!(
                matches!(rt.offsets_from, OffsetsSource::VersionTable { .. }),
                "{link:?}"
            );
        }
        assert!(!rt.newproc1.return_offsets.is_empty(), "{link:?}");
        assert_eq!(
            rt.http_client, None,
            "{link:?}: the fixture has no net/http"
        );
    }
}

#[test]
fn go_runtime_of_each_build() {
    let Some(built) = main_go("go_runtime") else {
        return;
    };
    check_runtime(built, &Link::ALL);
}

// ===== Go programs of this machine image (optional) =====

/// Third-party Go programs on this machine image: stripped of DWARF (`-w`), most keep
/// `.symtab`, built by Go 1.21 to 1.24, some PIE.
const MACHINE_GO_PROGRAMS: &[&str] = &[
    "/usr/local/bin/docker",
    "/usr/local/bin/terraform",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.27",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.30",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
    "/usr/lib/google-cloud-sdk/bin/gke-gcloud-auth-plugin",
    "/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/gateway_main",
    "/usr/lib/google-cloud-sdk/platform/google_appengine/go-app-stager",
    "/usr/lib/go-1.19/bin/go",
];

#[test]
fn go_programs_of_this_machine() {
    let mut checked = 0;
    for path in MACHINE_GO_PROGRAMS {
        if !Path::new(path).exists() {
            continue;
        }
        checked += 1;
        let elf = open(Path::new(path));
        let info = buildinfo::read(&elf).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut line = format!("{path}: {}", info.go_version);
        for name in [CONN_WRITE, CONN_READ] {
            let by_pclntab = pclntab_function(&elf, name)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .unwrap_or_else(|| panic!("{path}: {name}"));
            if let Some(by_symtab) = symtab_function(&elf, name) {
                assert_eq!(by_pclntab.address, by_symtab.address, "{path} {name}");
            }
            let probe =
                probe_points(&elf, name, &by_pclntab).unwrap_or_else(|e| panic!("{path}: {e}"));
            line += &format!(", {name}: {} RETs", probe.return_offsets.len());
        }
        // With DWARF (docker), its offsets must equal the table's row, when there is one.
        let queries = ConnField::ALL.map(ConnField::query);
        if let Ok(found) = dwarf::member_offsets(&elf, &queries) {
            let offsets = ConnOffsets::from_fields(&found);
            line += &format!(", DWARF {offsets:?}");
            if let (Some(offsets), Some(row)) = (
                offsets,
                info.version.as_ref().and_then(offsets::for_version),
            ) {
                assert_eq!(row.offsets, offsets, "{path}: table row vs its DWARF");
            }
        }
        // The goroutine facts, and goid's DWARF offset against the table's row.
        line += &match runtime::go_runtime(&elf) {
            Ok(rt) => {
                let row = info.version.as_ref().and_then(offsets::for_version);
                if let (OffsetsSource::Dwarf, Some(row)) = (rt.offsets_from, row) {
                    assert_eq!(rt.g_goid, row.g_goid, "{path}: goid, table row vs DWARF");
                    assert_eq!(rt.g_parent_goid, row.g_parent_goid, "{path}: parentGoid");
                }
                format!(
                    ", runtime: g at {}, goid at {} ({:?}), net/http client {}",
                    rt.g_tls_offset,
                    rt.g_goid,
                    rt.offsets_from,
                    rt.http_client.is_some()
                )
            }
            Err(e) => format!(", runtime: {e}"),
        };
        line += &match go_tls(&elf) {
            Ok(tls) => format!(
                ", go_tls: {:?} / {:?}",
                tls.functions_from, tls.offsets_from
            ),
            Err(e) => format!(", go_tls: {e}"),
        };
        eprintln!("{line}");
    }
    if checked == 0 {
        skip_optional(
            "go_programs_of_this_machine",
            "none of the listed Go programs is here",
        );
    }
}

// ===== hostile input =====

#[test]
fn non_go_and_truncated_go_binaries_are_errors() {
    if let Ok(elf) = Elf::open(Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3")) {
        assert!(!is_go(&elf));
        assert!(matches!(go_tls(&elf), Err(GoTlsError::NotGo)));
    }
    let Some(built) = main_go("go_truncated") else {
        return;
    };
    let Some(path) = binary("go_truncated", built, Link::Stripped) else {
        return;
    };
    let bytes = std::fs::read(path).expect("read");
    for len in [
        64,
        4096,
        bytes.len() / 4,
        bytes.len() / 2,
        bytes.len() - 4096,
    ] {
        if let Ok(elf) = Elf::parse(bytes[..len].to_vec()) {
            assert!(
                go_tls(&elf).is_err(),
                "a truncated Go binary is refused ({len} bytes)"
            );
        }
    }
}

/// The real `.gopclntab` with deterministic byte mutations: errors or results, no panic.
#[test]
fn mutated_pclntab_never_panics() {
    let Some(built) = main_go("go_pclntab_mutations") else {
        return;
    };
    let Some(path) = binary("go_pclntab_mutations", built, Link::Stripped) else {
        return;
    };
    let elf = open(path);
    let (tab, _) = pclntab_of(&elf).expect("pclntab");
    let original = elf
        .section(".gopclntab")
        .expect("ok")
        .expect("section")
        .data
        .into_owned();
    let text = elf.section(".text").expect("ok").expect(".text").address;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let header = 8 + 8 * 8;
    let functab = tab.functab_offset();
    for round in 0..400 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 4 {
            // Header, function table, or anywhere.
            let at = match round % 3 {
                0 => next() as usize % header,
                1 => functab + next() as usize % 4096,
                _ => next() as usize % bytes.len(),
            };
            if let Some(b) = bytes.get_mut(at) {
                *b = next() as u8;
            }
        }
        if let Ok(tab) = Pclntab::parse(&bytes) {
            let tab = tab.with_text_start(text);
            let _ = tab.find(CONN_WRITE);
            let _ = tab.contains(CONN_READ);
            for f in tab.funcs().take(2000) {
                let _ = f;
            }
        }
    }
}
