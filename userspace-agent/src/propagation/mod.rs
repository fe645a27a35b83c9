//! Trace context on the wire: parsing what arrives in request headers (one file per
//! format) and keeping outgoing connections ready for injection (`reenrol`).

pub mod reenrol;
pub mod w3c;
