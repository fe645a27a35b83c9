#![no_main]

use sonde::protocols::db::mysql::MysqlParser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::protocols::fuzz::db(MysqlParser::new, data));
