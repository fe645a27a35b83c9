#![no_main]

use sonde::protocols::db::redis::RedisParser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::protocols::fuzz::db(RedisParser::new, data));
