#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::protocols::fuzz::http1(data));
