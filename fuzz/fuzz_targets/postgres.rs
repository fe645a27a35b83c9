#![no_main]

use sonde::protocols::db::postgres::PostgresParser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::protocols::fuzz::db(PostgresParser::new, data));
