//! Pure protocol parsers: bytes in, values out. No eBPF, no I/O.

pub mod db;
#[doc(hidden)]
pub mod fuzz;
pub mod http1;
pub mod segment;

pub use segment::Segment;
