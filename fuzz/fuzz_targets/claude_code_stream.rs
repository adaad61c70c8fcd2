#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightdeck::fuzzing::claude_code_stream(data));
