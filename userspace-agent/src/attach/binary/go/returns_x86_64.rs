//! Every `RET` in an x86_64 function's bytes, so a Go function's returns can be probed with
//! plain uprobes: a uretprobe replaces the return address on the stack, and Go moves
//! (copies) goroutine stacks when they grow, after which the runtime finds a return address
//! it does not know and crashes the program. OBI (`goexec/instructions_amd64.go`) and pixie
//! do the same.
//!
//! Decoded linearly with `iced-x86` (decoder only): Go emits no data inside a function's
//! text (jump tables live in `.rodata`), so a linear sweep from the entry stays on
//! instruction boundaries; the padding after the last instruction (`INT3`, 0xCC) decodes as
//! instructions too. Bytes that do not decode (or a last instruction cut short) make the
//! whole answer an error: a function's bounds or bytes are then not what they seem.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use thiserror::Error;

/// The bytes do not decode as a run of whole instructions: not a function's code (or its
/// bounds are wrong). No RET is reported from such bytes, since a probe placed inside an
/// instruction would corrupt it.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("undecodable instruction at offset {offset:#x}")]
pub struct Undecodable {
    /// Where the bad (or truncated) instruction starts, from the start of the bytes.
    pub offset: u64,
}

/// `base + offset` of every near `RET` (`C3`, `C2 iw`, with any prefix) in `code`, in order.
/// Pass `base = 0` for offsets into `code`, or the function's file offset to get the file
/// offsets uprobes attach at. Bounded by `code.len()`: one decode per instruction.
pub fn return_offsets(base: u64, code: &[u8]) -> Result<Vec<u64>, Undecodable> {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return Err(Undecodable {
                offset: instruction.ip(),
            });
        }
        if instruction.mnemonic() == Mnemonic::Ret {
            out.push(base + instruction.ip());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_ret_form_at_its_offset() {
        let code = [
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp, rsp
            0xc3, // ret                        <- 4
            0x48, 0x8b, 0x44, 0x24, 0x08, // mov rax, [rsp+8]
            0xc2, 0x08, 0x00, // ret 8         <- 10
            0xf3, 0xc3, // rep ret             <- 13
            0xcc, 0xcc, // int3 padding
        ];
        assert_eq!(return_offsets(0, &code), Ok(vec![4, 10, 13]));
        assert_eq!(
            return_offsets(0x1000, &code),
            Ok(vec![0x1004, 0x100a, 0x100d])
        );
    }

    #[test]
    fn c3_inside_another_instruction_is_not_a_ret() {
        // mov eax, 0xc3c3c3c3; lea rax, [rip - 0x3d]: C3 bytes as immediates and displacement.
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, // mov eax, imm32
            0x48, 0x8d, 0x05, 0xc3, 0xff, 0xff, 0xff, // lea rax, [rip-0x3d]
            0xc3, // ret                      <- 12
        ];
        assert_eq!(return_offsets(0, &code), Ok(vec![12]));
    }

    #[test]
    fn far_returns_and_iret_are_not_near_returns() {
        let code = [0xcb, 0x48, 0xcf, 0xc3];
        assert_eq!(return_offsets(0, &code), Ok(vec![3]));
    }

    #[test]
    fn garbage_and_truncated_input_are_errors_not_guesses() {
        assert_eq!(return_offsets(0, &[]), Ok(vec![]));
        // A mov cut short: its C3 immediate byte is not a RET.
        assert_eq!(
            return_offsets(0, &[0xb8, 0xc3]),
            Err(Undecodable { offset: 0 })
        );
        // Undecodable in 64-bit mode (0x06 push es), even with a RET after it.
        assert_eq!(
            return_offsets(0, &[0x90, 0x06, 0xc3]),
            Err(Undecodable { offset: 1 })
        );
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for cut in [1, 7, 100, 4096] {
            if let Ok(offsets) = return_offsets(0, &noise[..cut]) {
                assert!(offsets.iter().all(|&o| o < cut as u64));
            }
        }
    }
}
