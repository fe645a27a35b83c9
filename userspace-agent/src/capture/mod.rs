//! Capture: ring-buffer records to typed events, and kernel time to wall-clock time.

pub mod clock;
