//! libFuzzer entry for [`meshdns_fuzz::tcp_framing`], where the target lives.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshdns_fuzz::tcp_framing::run(data));
