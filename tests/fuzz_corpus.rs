//! The fuzz targets' corpus and every crash they found, replayed on stable
//! as an ordinary test, so that what fuzzing once reached stays covered in
//! CI. The targets themselves are the files in `fuzz/src/`, included here
//! as they are; `scripts/fuzz.sh` runs them under libFuzzer. Inputs live in
//! `fuzz/corpus/<target>/` (minimized with `cargo fuzz cmin`) and
//! `fuzz/regressions/<target>/` (crashes, minimized, kept once fixed).

#[path = "../fuzz/src/input.rs"]
mod input;
#[path = "../fuzz/src/packet.rs"]
mod packet;
#[path = "../fuzz/src/serviceentries.rs"]
mod serviceentries;
#[path = "../fuzz/src/tcp_framing.rs"]
mod tcp_framing;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `target` on every input kept for it; fails naming each input that
/// panics.
fn replay(name: &str, target: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable directory").path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                inputs.push(path);
            }
        }
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs for {name}");
    let failed: Vec<_> = inputs
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable input");
            catch_unwind(AssertUnwindSafe(|| target(&data))).is_err()
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} of {} inputs fail: {failed:?}",
        failed.len(),
        inputs.len()
    );
    println!("{name}: {} inputs replayed", inputs.len());
}

#[test]
fn packet_corpus() {
    replay("packet", packet::run);
}

#[test]
fn serviceentries_corpus() {
    replay("serviceentries", serviceentries::run);
}

#[test]
fn tcp_framing_corpus() {
    replay("tcp_framing", tcp_framing::run);
}
