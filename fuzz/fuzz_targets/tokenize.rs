#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gaterouter_fuzz::tokenize(data));
