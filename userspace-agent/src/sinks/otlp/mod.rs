//! OTLP export: encoding ([`encode`]), the reusable gRPC / HTTP client
//! ([`transport`]) and the batching, retrying span sink ([`exporter`]).

pub mod encode;
pub mod exporter;
pub mod transport;

pub use encode::encode_traces;
pub use exporter::{ExportOptions, OtlpSink};
pub use transport::{ExportError, ExportOutcome, OtlpClient};
