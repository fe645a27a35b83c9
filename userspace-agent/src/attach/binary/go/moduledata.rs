//! Where Go's text starts (`runtime.text`, `moduledata.text`): Go 1.18+ `.gopclntab` entries
//! are offsets from it, so a stripped binary's functions cannot be placed without it.
//!
//! The `.text` section address is not it: with external linking (cgo), the C linker puts
//! crt code first (seen here: `.text` at 0x402340, `runtime.text` at 0x402440), and Go's
//! newer linkers leave the pclntab header's copy at 0. In order:
//!
//! 1. the `runtime.text` symbol, when `.symtab` survives;
//! 2. the runtime's first `moduledata` (`runtime.firstmoduledata`), found in the writable
//!    data by its first word, the address of `.gopclntab`, and accepted only if its other
//!    fields agree with the table (function-name table and function table addresses, the
//!    function count, and `minpc == text + first entry`); in position-independent
//!    binaries the pointers are 0 in the file and their values are read from the
//!    `R_*_RELATIVE` relocations' addends;
//! 3. the pclntab header's text start, when a (Go 1.18–1.2x) linker wrote one.
//!
//! Otherwise unknown: nothing is guessed. The moduledata layout used (64-bit words):
//! `pcHeader` 0, `funcnametab` 1–3, `cutab` 4–6, `filetab` 7–9, `pctab` 10–12,
//! `pclntable` 13–15, `ftab` 16–18, `findfunctab` 19, `minpc` 20, `maxpc` 21, `text` 22,
//! `etext` 23, the same from Go 1.16 to 1.26 (`runtime/symtab.go`).

use std::cell::OnceCell;
use std::collections::HashMap;

use super::pclntab::Pclntab;
use crate::attach::binary::elf::Elf;

/// How many places holding the pclntab address are checked before giving up.
const MAX_CANDIDATES: usize = 64;
const WORDS: u64 = 24;

/// Where the text start came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextStartSource {
    /// The `runtime.text` symbol.
    Symbol,
    /// The runtime's `moduledata`, cross-checked against the table.
    Moduledata,
    /// The pclntab header's own field.
    PclntabHeader,
    /// None needed: Go 1.16 and 1.17 tables hold absolute addresses.
    NotNeeded,
}

/// The text start of `elf`, whose `.gopclntab` is `tab` loaded at `pclntab_addr`.
pub fn text_start(
    elf: &Elf,
    pclntab_addr: u64,
    tab: &Pclntab<'_>,
) -> Option<(u64, TextStartSource)> {
    if let Some(symbol) = elf.symbol("runtime.text") {
        return Some((symbol.address, TextStartSource::Symbol));
    }
    if tab.ptr_size() == 8
        && let Some(text) = from_moduledata(elf, pclntab_addr, tab)
    {
        return Some((text, TextStartSource::Moduledata));
    }
    tab.header_text_start()
        .map(|t| (t, TextStartSource::PclntabHeader))
}

/// Step 2 alone: the `text` field of the moduledata that agrees with `tab` (loaded at
/// `pclntab_addr`), whatever the symbol table says (tests compare it with `runtime.text`).
pub fn from_moduledata(elf: &Elf, pclntab_addr: u64, tab: &Pclntab<'_>) -> Option<u64> {
    Finder::new(elf).text(pclntab_addr, tab)
}

/// Looks for moduledata in one binary, reading its relocations at most once.
pub(crate) struct Finder<'e> {
    elf: &'e Elf,
    relocations: OnceCell<HashMap<u64, u64>>,
}

impl<'e> Finder<'e> {
    pub(crate) fn new(elf: &'e Elf) -> Self {
        Finder {
            elf,
            relocations: OnceCell::new(),
        }
    }

    /// See [`from_moduledata`].
    pub(crate) fn text(&self, pclntab_addr: u64, tab: &Pclntab<'_>) -> Option<u64> {
        let elf = self.elf;
        let none = HashMap::new();
        let in_file = candidates_in_file(elf, pclntab_addr);
        if let Some(text) = in_file
            .iter()
            .find_map(|&at| check(elf, &none, at, pclntab_addr, tab))
        {
            return Some(text);
        }
        let relocations = self
            .relocations
            .get_or_init(|| elf.relative_relocations().into_iter().collect());
        relocations
            .iter()
            .filter(|&(_, &addend)| addend == pclntab_addr)
            .map(|(&at, _)| at)
            .take(MAX_CANDIDATES)
            .find_map(|at| check(elf, relocations, at, pclntab_addr, tab))
    }
}

/// 8-byte-aligned addresses in writable segments whose file bytes hold `value`.
fn candidates_in_file(elf: &Elf, value: u64) -> Vec<u64> {
    let needle = value.to_le_bytes();
    let mut out = Vec::new();
    for load in elf.loads().iter().filter(|l| l.writable()) {
        let Some(bytes) = elf.bytes_at(load.vaddr, load.filesz) else {
            continue;
        };
        let skip = usize::try_from(load.vaddr.next_multiple_of(8) - load.vaddr).unwrap_or(0);
        let Some(aligned) = bytes.get(skip..) else {
            continue;
        };
        for (i, word) in aligned.chunks_exact(8).enumerate() {
            if word == needle {
                out.push(load.vaddr + (skip + i * 8) as u64);
                if out.len() >= MAX_CANDIDATES {
                    return out;
                }
            }
        }
    }
    out
}

/// The `text` field of a moduledata at `at`, if its fields agree with the table.
fn check(
    elf: &Elf,
    relocations: &HashMap<u64, u64>,
    at: u64,
    pclntab_addr: u64,
    tab: &Pclntab<'_>,
) -> Option<u64> {
    let raw = elf.bytes_at(at, WORDS * 8)?;
    let word = |i: usize| -> Option<u64> {
        let value = u64::from_le_bytes(raw.get(i * 8..i * 8 + 8)?.try_into().ok()?);
        if value != 0 {
            return Some(value);
        }
        Some(relocations.get(&(at + i as u64 * 8)).copied().unwrap_or(0))
    };
    let funcnametab = pclntab_addr.checked_add(tab.funcname_offset() as u64)?;
    let ftab = pclntab_addr.checked_add(tab.functab_offset() as u64)?;
    let nftab = (tab.len() as u64).checked_add(1)?;
    let (text, etext, minpc) = (word(22)?, word(23)?, word(20)?);
    let agrees = word(0)? == pclntab_addr
        && word(1)? == funcnametab
        && word(16)? == ftab
        && word(17)? == nftab
        && text != 0
        && text <= etext;
    if !agrees {
        return None;
    }
    if tab.needs_text_start() {
        // The first function is minpc, at its table offset from text.
        (text.checked_add(tab.raw_entry(0)?)? == minpc).then_some(text)
    } else {
        (tab.raw_entry(0)? == minpc).then_some(text)
    }
}
