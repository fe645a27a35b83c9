//! Pure protocol parsers: bytes in, values out. No eBPF, no I/O.

pub mod db;
#[doc(hidden)]
pub mod fuzz;
pub mod http1;
pub mod segment;

pub use segment::Segment;

/// A non-negative ASCII decimal that fits in u64 (no sign, no spaces), as protocol length
/// and count fields are written.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}
