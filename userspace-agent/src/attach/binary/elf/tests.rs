//! `Elf` on this machine's real binaries, checked against binutils (`nm`, `readelf`) run in
//! the test, and on built fixtures (MiniDebugInfo, compressed DWARF), garbage and
//! truncated or mutated files.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::attach::binary::testutil::{
    cc, have, nm, readelf_loads, run, scratch, skip, system_elf,
};
use crate::attach::binary::tls::OPENSSL_FUNCTIONS;

const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";

/// The file offset of `vaddr` by readelf's PT_LOAD rows: the independent computation.
fn readelf_offset(path: &str, vaddr: u64) -> u64 {
    let loads = readelf_loads(path).unwrap_or_else(|e| panic!("{e}"));
    let (offset, start, _) = loads
        .iter()
        .find(|(_, start, filesz)| vaddr >= *start && vaddr < start + filesz)
        .unwrap_or_else(|| panic!("{vaddr:#x} in no PT_LOAD of {path}"));
    vaddr - start + offset
}

fn nm_map(args: &[&str]) -> HashMap<String, u64> {
    nm(args)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect()
}

#[test]
fn libssl_functions_match_nm_and_offsets_match_readelf() {
    let Some(elf) = system_elf("libssl_functions", LIBSSL) else {
        return;
    };
    let dynamic = nm_map(&["-D", "--defined-only", LIBSSL]);
    for name in OPENSSL_FUNCTIONS {
        let symbol = elf
            .symbol(name)
            .unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(
            Some(&symbol.address),
            dynamic.get(name),
            "{name} address vs nm -D"
        );
        assert_eq!(symbol.source, SymbolSource::Dynsym, "{name}");
        assert!(symbol.size > 0, "{name} has a size");
        assert_eq!(
            elf.file_offset(symbol.address),
            Some(readelf_offset(LIBSSL, symbol.address)),
            "{name} file offset vs readelf -l"
        );
    }
    assert_eq!(elf.machine(), Machine::X86_64);
    assert!(!elf.imports("SSL_read"), "libssl defines SSL_read");
    assert!(
        elf.imports("BIO_read"),
        "libssl imports BIO_read from libcrypto"
    );
    assert_eq!(elf.symbol("no_such_function_anywhere"), None);
}

#[test]
fn build_id_matches_readelf() {
    let Some(elf) = system_elf("build_id", LIBSSL) else {
        return;
    };
    let notes = run(Command::new("readelf").args(["-n", LIBSSL])).unwrap_or_else(|e| panic!("{e}"));
    let notes = String::from_utf8_lossy(&notes);
    let expected = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("readelf prints a build ID");
    assert_eq!(elf.build_id_hex().as_deref(), Some(expected));
    assert_eq!(elf.build_id().map(<[u8]>::len), Some(20));
}

#[test]
fn node_carries_openssl_in_its_own_dynsym() {
    let path = "/usr/bin/node";
    let Some(elf) = system_elf("node_openssl", path) else {
        return;
    };
    let dynamic = nm_map(&["-D", "--defined-only", path]);
    for name in OPENSSL_FUNCTIONS {
        let symbol = elf.symbol(name).unwrap_or_else(|| panic!("node: {name}"));
        assert_eq!(Some(&symbol.address), dynamic.get(name), "node: {name}");
        assert_eq!(
            elf.file_offset(symbol.address),
            Some(readelf_offset(path, symbol.address)),
            "node: {name} offset"
        );
    }
}

#[test]
fn python_ssl_module_only_imports_openssl() {
    let dir = Path::new("/usr/lib/python3.11/lib-dynload");
    let found = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("_ssl."))
        })
    });
    let Some(path) = found else {
        skip(
            "python_ssl",
            "no _ssl*.so in /usr/lib/python3.11/lib-dynload",
        );
        return;
    };
    let elf = Elf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Python 3.11 calls the _ex pair; both are imported, none defined.
    assert!(elf.imports("SSL_read_ex") && elf.imports("SSL_write_ex"));
    assert_eq!(elf.symbol("SSL_read_ex"), None);
    assert_eq!(
        elf.lookup(&["SSL_read_ex", "SSL_read"]),
        vec![SymbolState::Undefined, SymbolState::Absent]
    );
}

#[test]
fn static_openssl_program_has_its_functions_in_symtab() {
    if !have("cc") {
        skip("static_openssl", "no C compiler");
        return;
    }
    let source = r#"
#include <openssl/ssl.h>
int main(int argc, char **argv) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    char buf[16]; size_t n;
    if (argc > 5) {
        SSL_read(ssl, buf, 16); SSL_write(ssl, buf, 16);
        SSL_read_ex(ssl, buf, 16, &n); SSL_write_ex(ssl, buf, 16, &n);
        SSL_do_handshake(ssl);
    }
    SSL_free(ssl); SSL_CTX_free(ctx);
    return 0;
}
"#;
    let binary = match cc(
        "ssl-static",
        source,
        &[
            "-static",
            "-O1",
            "-l:libssl.a",
            "-l:libcrypto.a",
            "-lpthread",
        ],
    ) {
        Ok(binary) => binary,
        Err(e) => {
            skip(
                "static_openssl",
                &format!("cannot link OpenSSL statically: {e}"),
            );
            return;
        }
    };
    let path = binary.to_string_lossy().into_owned();
    let elf = Elf::open(&binary).unwrap_or_else(|e| panic!("{e}"));
    let symtab = nm_map(&["--defined-only", &path]);
    for name in OPENSSL_FUNCTIONS {
        let symbol = elf.symbol(name).unwrap_or_else(|| panic!("static: {name}"));
        assert_eq!(
            symbol.source,
            SymbolSource::Symtab,
            "a static binary has no .dynsym"
        );
        assert_eq!(Some(&symbol.address), symtab.get(name), "static: {name}");
        let offset = elf.file_offset(symbol.address).expect("in PT_LOAD");
        assert_eq!(offset, readelf_offset(&path, symbol.address));
        // Non-PIE: the offset is not the address, so the conversion is really exercised.
        assert_ne!(offset, symbol.address);
    }
}

const FIXTURE_C: &str = r#"
#include <stdio.h>
__attribute__((noinline)) static int sonde_hidden_probe(int x) { return x * 3 + 1; }
__attribute__((noinline)) int sonde_exported(int x) { return sonde_hidden_probe(x) + 2; }
int main(int argc, char **argv) { printf("%d\n", sonde_exported(argc)); return 0; }
"#;

/// Builds a binary whose only copy of `sonde_hidden_probe` is in MiniDebugInfo, as GDB's
/// manual ("MiniDebugInfo") describes it, and checks it is found there.
#[test]
fn minidebuginfo_symbols_are_found() {
    for tool in ["cc", "objcopy", "strip", "xz"] {
        if !have(tool) {
            skip("minidebuginfo", &format!("no {tool}"));
            return;
        }
    }
    let original = cc("mini", FIXTURE_C, &["-g", "-O1"]).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch(&format!("mini-{}", std::process::id()));
    let file = |name: &str| dir.join(name);
    std::fs::write(file("keep"), "sonde_hidden_probe\n").expect("write keep list");
    let step = |cmd: &mut Command| run(cmd).unwrap_or_else(|e| panic!("{e}"));
    step(
        Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&original)
            .arg(file("debug")),
    );
    step(
        Command::new("objcopy")
            .args([
                "-S",
                "--remove-section",
                ".gdb_index",
                "--remove-section",
                ".comment",
            ])
            .arg(format!("--keep-symbols={}", file("keep").display()))
            .arg(file("debug"))
            .arg(file("mini")),
    );
    step(
        Command::new("strip")
            .args(["--strip-all", "-R", ".comment", "-o"])
            .arg(file("stripped"))
            .arg(&original),
    );
    let xz = step(Command::new("xz").args(["-c", "-9"]).arg(file("mini")));
    std::fs::write(file("mini.xz"), xz).expect("write xz");
    step(
        Command::new("objcopy")
            .arg(format!(
                "--add-section=.gnu_debugdata={}",
                file("mini.xz").display()
            ))
            .arg(file("stripped"))
            .arg(file("with-mini")),
    );

    let expected = nm_map(&["--defined-only", &original.to_string_lossy()])["sonde_hidden_probe"];
    let stripped = Elf::open(&file("stripped")).expect("stripped");
    assert_eq!(stripped.symbol("sonde_hidden_probe"), None);
    assert_eq!(stripped.minidebuginfo(), &MiniDebugInfo::Absent);

    let elf = Elf::open(&file("with-mini")).expect("with MiniDebugInfo");
    assert_eq!(elf.minidebuginfo(), &MiniDebugInfo::Loaded);
    let symbol = elf
        .symbol("sonde_hidden_probe")
        .expect("found in MiniDebugInfo");
    assert_eq!(symbol.source, SymbolSource::MiniDebugInfo);
    assert_eq!(symbol.address, expected);
    assert!(elf.file_offset(symbol.address).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The one binary of this machine image that carries `.gnu_debugdata` (a wheel's libffi
/// in the Google Cloud SDK); optional, as it is not the project's.
#[test]
fn minidebuginfo_of_a_real_binary() {
    let path = "/usr/lib/google-cloud-sdk/platform/bundledpythonunix/lib/python3.12/site-packages/cffi.libs/libffi-af4ed708.so.6.0.1";
    if !Path::new(path).exists() {
        crate::attach::binary::testutil::skip_optional(
            "minidebuginfo_real",
            "no libffi with .gnu_debugdata here",
        );
        return;
    }
    let elf = Elf::open(Path::new(path)).expect("libffi");
    assert_eq!(elf.minidebuginfo(), &MiniDebugInfo::Loaded);
    let from_mini: Vec<_> = elf
        .functions()
        .into_iter()
        .filter(|(_, s)| s.source == SymbolSource::MiniDebugInfo)
        .collect();
    assert!(!from_mini.is_empty(), "MiniDebugInfo adds functions");
    for (name, symbol) in from_mini.iter().take(20) {
        assert!(elf.file_offset(symbol.address).is_some(), "{name} placed");
    }
}

#[test]
fn an_xz_bomb_in_gnu_debugdata_is_refused() {
    if !have("xz") {
        skip("xz_bomb", "no xz");
        return;
    }
    let dir = scratch(&format!("bomb-{}", std::process::id()));
    let zeros = dir.join("zeros");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).expect("write zeros");
    let xz = run(Command::new("xz").args(["-c", "-9"]).arg(&zeros)).expect("xz");
    assert!(xz.len() < 4096, "4 MiB of zeros packs small");
    let err = debugdata::unpack(&xz, 1 << 20).expect_err("over the cap");
    assert!(err.contains("more than"), "{err}");
    // Under the cap it unpacks, and is refused only for not being an ELF file.
    let err = debugdata::unpack(&xz, 8 << 20).expect_err("not ELF");
    assert!(err.contains("ELF"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `SHF_COMPRESSED` (zlib-gabi) and `.zdebug_*` (zlib-gnu) sections inflate to what the
/// uncompressed file holds; a header claiming more than the cap, or a wrong size, is an error.
#[test]
fn compressed_sections_inflate_within_bounds() {
    if !have("cc") || !have("objcopy") {
        skip("compressed_sections", "no cc or objcopy");
        return;
    }
    let plain = cc("dwarf", FIXTURE_C, &["-g", "-O1"]).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch(&format!("zdebug-{}", std::process::id()));
    let reference = Elf::open(&plain).expect("plain");
    let expected = reference
        .section(".debug_info")
        .expect("ok")
        .expect("has .debug_info")
        .data
        .into_owned();
    for style in ["zlib-gabi", "zlib-gnu"] {
        let out = dir.join(style);
        if let Err(e) = run(Command::new("objcopy")
            .arg(format!("--compress-debug-sections={style}"))
            .arg(&plain)
            .arg(&out))
        {
            skip(
                "compressed_sections",
                &format!("objcopy cannot write {style}: {e}"),
            );
            continue;
        }
        let elf = Elf::open(&out).expect("compressed");
        let section = elf
            .section(".debug_info")
            .expect("inflates")
            .expect("present");
        assert_eq!(section.data.as_ref(), expected.as_slice(), "{style}");
        assert!(
            matches!(section.data, Cow::Owned(_)),
            "{style} was compressed"
        );
    }

    // Patch the gabi header's ch_size (Elf64_Chdr: type u32, reserved u32, size u64).
    let gabi = std::fs::read(dir.join("zlib-gabi")).expect("read");
    let headers = run(Command::new("readelf")
        .args(["-SW"])
        .arg(dir.join("zlib-gabi")))
    .expect("readelf");
    let headers = String::from_utf8_lossy(&headers);
    let row = headers
        .lines()
        .find(|l| l.contains(" .debug_info "))
        .expect("row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    let at = cols.iter().position(|c| *c == ".debug_info").expect("name");
    let offset = usize::from_str_radix(cols[at + 3], 16).expect("offset");
    let size_at = offset + 8;
    let patched = |size: u64| {
        let mut bytes = gabi.clone();
        bytes[size_at..size_at + 8].copy_from_slice(&size.to_le_bytes());
        Elf::parse(bytes).expect("headers still parse")
    };
    assert!(matches!(
        patched(u64::MAX / 2).section(".debug_info"),
        Err(ElfError::SectionTooLarge { .. })
    ));
    assert!(matches!(
        patched(expected.len() as u64 + 1).section(".debug_info"),
        Err(ElfError::Decompress { .. })
    ));
    assert!(matches!(
        patched(expected.len() as u64 - 1).section(".debug_info"),
        Err(ElfError::Decompress { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_is_not_elf() {
    assert!(matches!(Elf::parse(Vec::new()), Err(ElfError::NotElf)));
    assert!(matches!(
        Elf::parse(b"hello world".to_vec()),
        Err(ElfError::NotElf)
    ));
    let noise: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    assert!(matches!(Elf::parse(noise), Err(ElfError::NotElf)));
    // An ELF magic with junk after it.
    let mut junk = b"\x7fELF\x02\x01\x01".to_vec();
    junk.resize(200, 0xff);
    assert!(Elf::parse(junk).is_err());
    // A 32-bit ELF identification.
    let mut elf32 = b"\x7fELF\x01\x01\x01".to_vec();
    elf32.resize(64, 0);
    assert!(Elf::parse(elf32).is_err());
}

#[test]
fn missing_and_oversized_files_are_errors() {
    assert!(matches!(
        Elf::open(Path::new("/nonexistent/sonde/binary")),
        Err(ElfError::Io { .. })
    ));
    if !Path::new(LIBSSL).exists() {
        skip("oversized_files", "no libssl");
        return;
    }
    assert!(matches!(
        Elf::open_with_limit(Path::new(LIBSSL), 4096),
        Err(ElfError::FileTooLarge { .. })
    ));
}

/// Every prefix length class of a real library: an error or a usable `Elf`, never a panic,
/// and every query on what parses stays in bounds.
#[test]
fn truncated_files_never_panic() {
    let Ok(full) = std::fs::read(LIBSSL) else {
        skip("truncated_files", "no libssl");
        return;
    };
    let lengths = [
        0,
        4,
        16,
        63,
        64,
        65,
        200,
        4096,
        full.len() / 3,
        full.len() / 2,
        full.len() - 1,
    ];
    for len in lengths {
        exercise(full[..len].to_vec());
    }
}

/// Deterministic mutations of a small real binary (headers, section and program header
/// tables, symbol tables): whatever parses must answer every query without panicking.
#[test]
fn mutated_files_never_panic() {
    if !have("cc") {
        skip("mutated_files", "no C compiler");
        return;
    }
    let path = cc("mutate", FIXTURE_C, &["-g", "-O1"]).unwrap_or_else(|e| panic!("{e}"));
    let original = std::fs::read(&path).expect("read fixture");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..1500 {
        let mut bytes = original.clone();
        let flips = 1 + next() % 8;
        for _ in 0..flips {
            // Half the flips hit the first 4 KiB (headers), the rest anywhere.
            let span = if round % 2 == 0 {
                4096.min(bytes.len())
            } else {
                bytes.len()
            };
            let at = (next() % span as u64) as usize;
            bytes[at] = next() as u8;
        }
        exercise(bytes);
    }
}

fn exercise(bytes: Vec<u8>) {
    let Ok(elf) = Elf::parse(bytes) else {
        return;
    };
    let _ = elf.build_id_hex();
    let states = elf.lookup(&[
        "SSL_read",
        "main",
        "sonde_hidden_probe",
        "crypto/tls.(*Conn).Write",
    ]);
    for state in states {
        if let SymbolState::Defined(symbol) = state {
            let _ = elf.file_offset(symbol.address);
            let _ = elf.bytes_at(symbol.address, symbol.size.min(1 << 20));
        }
    }
    let _ = elf.functions();
    let _ = elf.section(".debug_info");
    let _ = elf.section(".gopclntab");
    let _ = elf.relative_relocations();
    let _ = crate::attach::binary::tls::tls_library(&elf);
    let _ = crate::attach::binary::tls::imported_tls(&elf);
    let _ = crate::attach::binary::go::go_tls(&elf);
    let _ = crate::attach::binary::go::dwarf::member_offsets(
        &elf,
        &crate::attach::binary::go::ConnField::ALL.map(crate::attach::binary::go::ConnField::query),
    );
}
