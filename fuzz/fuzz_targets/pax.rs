//! cargo-fuzz target: see `xcatd_fuzz_common::pax` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xcatd_fuzz_common::pax(data));
