//! meshdns's fuzz targets, as plain functions of the input bytes
//! (`run(&[u8])`), free of libFuzzer and nightly: `fuzz_targets/*.rs` hand
//! them libFuzzer's input, and `tests/fuzz_corpus.rs` in the main crate
//! includes these same files to replay the corpus and every crash found on
//! stable. See `scripts/fuzz.sh` for running them.

pub mod input;
pub mod packet;
pub mod serviceentries;
pub mod tcp_framing;
