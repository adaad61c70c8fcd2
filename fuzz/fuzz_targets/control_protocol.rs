#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightdeck::fuzzing::control_protocol(data));
