//! Per-process OpenTelemetry resources, read from `/proc/PID`.
//!
//! Every span Sonde emits belongs to the process that handled the request; this
//! module describes that process as an OTel resource (`service.name`,
//! `service.instance.id`, `process.*`, `host.name`, ...), and caches the result.
//!
//! # How `service.name` is chosen
//!
//! First match wins:
//! 1. [`ResourceOverrides::service_name`] (`--service-name`), then a `service.name`
//!    key in [`ResourceOverrides::extra`];
//! 2. `OTEL_SERVICE_NAME` from the process's *initial* environment (`/proc/PID/environ`
//!    does not see later `setenv` calls);
//! 3. `service.name` in `OTEL_RESOURCE_ATTRIBUTES` from the same environment;
//! 4. for interpreters (python, node, ruby, java, perl, php), the program they run,
//!    see [`service_name`];
//! 5. the executable's basename (`/proc/PID/exe`), or `/proc/PID/comm` if that link
//!    cannot be read (kernel threads, zombies).
//!
//! Empty or whitespace-only values count as unset.

pub mod cache;
pub mod error;
pub mod otel_env;
pub mod proc_files;
pub mod redact;
pub mod resource;
pub mod service_name;
#[cfg(test)]
pub(crate) mod test_support;

pub use cache::ResourceCache;
pub use error::ProcessError;
pub use resource::{
    ProcessFacts, ResourceOverrides, minimal_resource, read_facts, resource_for,
    resource_from_facts,
};
