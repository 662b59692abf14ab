//! cargo-fuzz target: see `xcatd_fuzz_common::exlist` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xcatd_fuzz_common::exlist(data));
