//! Struct member offsets from a binary's DWARF, with `gimli`: the offset of `Sysfd` in
//! `internal/poll.FD` as this very binary's compiler laid it out, `None` when the DWARF does
//! not say (no such type, no such member, or a location that is not a plain constant),
//! never a guess.
//!
//! Sections are loaded through [`Elf::section`], which inflates the zlib-compressed DWARF Go
//! writes (`SHF_COMPRESSED`, or `.zdebug_*` from older linkers) under a size cap; the walk
//! is gimli's `simple` example: every unit, every entry depth-first, once, for all the
//! members asked. Go names a struct type by its package path and name
//! (`DW_TAG_structure_type` "crypto/tls.Conn"), with one `DW_TAG_member` child per field
//! carrying `DW_AT_data_member_location` as a constant. A member found with two different
//! offsets (two types of one name) gives `None`.

use std::borrow::Cow;

use gimli::{AttributeValue, EndianSlice, LittleEndian, SectionId};
use thiserror::Error;

use crate::attach::binary::elf::{Elf, ElfError};

/// The sections a walk over type entries reads: entries, their abbreviations, the string
/// tables names may point into, and the line table (gimli parses a unit's line program
/// header with the unit). Location, range, frame and address tables are left unloaded.
const NEEDED: [SectionId; 6] = [
    SectionId::DebugAbbrev,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugLineStr,
];

/// The most DWARF loaded at once, the sections read taken together (512 MiB, uncompressed).
pub const MAX_DWARF_BYTES: u64 = 512 << 20;

/// Why the DWARF could not be read at all (a member simply not found is `None`, not this).
#[derive(Debug, Error)]
pub enum DwarfError {
    /// No `.debug_info` (stripped with `-w`, or never written).
    #[error("no DWARF (.debug_info) in the binary")]
    Absent,
    /// A DWARF section could not be loaded (too large, bad compression).
    #[error("cannot load DWARF: {0}")]
    Section(#[from] ElfError),
    /// The sections together are larger than [`MAX_DWARF_BYTES`].
    #[error("DWARF larger than {MAX_DWARF_BYTES} bytes")]
    TooLarge,
    /// gimli found the DWARF malformed.
    #[error("malformed DWARF: {0}")]
    Malformed(#[from] gimli::Error),
}

/// A struct member asked for: `member` of the type named `type_name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberQuery<'q> {
    /// The type as Go names it in DWARF: `crypto/tls.Conn`, `internal/poll.FD`.
    pub type_name: &'q str,
    /// The field: `conn`, `Sysfd`.
    pub member: &'q str,
}

/// The byte offset of each queried member, in query order, from one pass over `elf`'s DWARF.
pub fn member_offsets(
    elf: &Elf,
    queries: &[MemberQuery<'_>],
) -> Result<Vec<Option<u64>>, DwarfError> {
    if !elf.has_section(".debug_info") {
        return Err(DwarfError::Absent);
    }
    let mut total = 0u64;
    let sections = gimli::DwarfSections::load(|id: SectionId| {
        if !NEEDED.contains(&id) {
            return Ok(Cow::Borrowed(&[][..]));
        }
        let data = elf
            .section(id.name())?
            .map_or(Cow::Borrowed(&[][..]), |s| s.data);
        total += data.len() as u64;
        if total > MAX_DWARF_BYTES {
            return Err(DwarfError::TooLarge);
        }
        Ok(data)
    })?;
    let dwarf = sections.borrow(|data| EndianSlice::new(data, LittleEndian));

    // Per query: the offsets seen (normally one).
    let mut seen: Vec<Option<Result<u64, ()>>> = vec![None; queries.len()];
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        // The struct being walked: its depth and which queries name it.
        let mut inside: Option<(isize, Vec<usize>)> = None;
        while let Some(entry) = entries.next_dfs()? {
            let depth = entry.depth();
            if inside.as_ref().is_some_and(|(d, _)| depth <= *d) {
                inside = None;
            }
            match entry.tag() {
                gimli::DW_TAG_structure_type => {
                    if entry.attr_value(gimli::DW_AT_declaration).is_some() {
                        continue;
                    }
                    let Some(name) = name_of(&dwarf, &unit, entry) else {
                        continue;
                    };
                    let wanted: Vec<usize> = queries
                        .iter()
                        .enumerate()
                        .filter(|(_, q)| q.type_name.as_bytes() == name)
                        .map(|(i, _)| i)
                        .collect();
                    if !wanted.is_empty() {
                        inside = Some((depth, wanted));
                    }
                }
                gimli::DW_TAG_member => {
                    let Some((struct_depth, wanted)) = &inside else {
                        continue;
                    };
                    if depth != struct_depth + 1 {
                        continue;
                    }
                    let Some(name) = name_of(&dwarf, &unit, entry) else {
                        continue;
                    };
                    for &i in wanted {
                        if queries[i].member.as_bytes() != name {
                            continue;
                        }
                        let location = entry
                            .attr_value(gimli::DW_AT_data_member_location)
                            .and_then(|v| constant(&v));
                        seen[i] = match (seen[i], location) {
                            (None, Some(offset)) => Some(Ok(offset)),
                            (Some(Ok(known)), Some(offset)) if known == offset => Some(Ok(known)),
                            // Two different offsets, or a location we cannot read: unknown.
                            _ => Some(Err(())),
                        };
                    }
                }
                _ => {}
            }
        }
    }
    Ok(seen.into_iter().map(|s| s.and_then(Result::ok)).collect())
}

fn name_of<'a>(
    dwarf: &gimli::Dwarf<EndianSlice<'a, LittleEndian>>,
    unit: &gimli::Unit<EndianSlice<'a, LittleEndian>>,
    entry: &gimli::DebuggingInformationEntry<EndianSlice<'a, LittleEndian>>,
) -> Option<&'a [u8]> {
    let value = entry.attr_value(gimli::DW_AT_name)?;
    dwarf.attr_string(unit, value).ok().map(|s| s.slice())
}

/// A member location given as a constant (what Go and C compilers write for struct
/// fields); a DWARF 2 `DW_OP_plus_uconst N` expression is read as N; anything else is `None`.
fn constant(value: &AttributeValue<EndianSlice<'_, LittleEndian>>) -> Option<u64> {
    if let Some(offset) = value.udata_value() {
        return Some(offset);
    }
    let expression = value.exprloc_value()?;
    let mut ops = expression.operations(gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 2,
        address_size: 8,
    });
    match (ops.next().ok()?, ops.next().ok()?) {
        (Some(gimli::Operation::PlusConstant { value }), None) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_plus_uconst_are_offsets_other_expressions_are_not() {
        assert_eq!(constant(&AttributeValue::Udata(16)), Some(16));
        assert_eq!(constant(&AttributeValue::Data1(8)), Some(8));
        assert_eq!(constant(&AttributeValue::Sdata(-1)), None);
        // DW_OP_plus_uconst 24
        let plus = [0x23, 24];
        let expr = gimli::Expression(EndianSlice::new(&plus, LittleEndian));
        assert_eq!(constant(&AttributeValue::Exprloc(expr)), Some(24));
        // DW_OP_lit1 DW_OP_plus: not a plain offset.
        let other = [0x31, 0x22];
        let expr = gimli::Expression(EndianSlice::new(&other, LittleEndian));
        assert_eq!(constant(&AttributeValue::Exprloc(expr)), None);
    }
}
