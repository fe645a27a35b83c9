//! Trace-context formats: parsing what arrives in request headers. One file per format.
//!
//! Today only incoming W3C `traceparent` is read (in userspace, from the parsed request
//! head). Injection into outgoing requests, B3, Jaeger and X-Ray belong to the
//! propagation work (sk_msg), which will move the incoming decision into the kernel.

pub mod w3c;
