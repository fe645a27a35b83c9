#![no_main]

use sonde::protocols::db::memcached::MemcachedParser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::protocols::fuzz::db(MemcachedParser::new, data));
