//! Pure protocol parsers: bytes in, values out. No eBPF, no I/O.

pub mod http1;
