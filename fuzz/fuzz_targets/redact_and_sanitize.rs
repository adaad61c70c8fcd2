#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightdeck::fuzzing::redact_and_sanitize(data));
