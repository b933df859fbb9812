//! libFuzzer entry for [`meshdns_fuzz::serviceentries`], where the target lives.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshdns_fuzz::serviceentries::run(data));
