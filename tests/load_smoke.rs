//! Smoke tests of the load benchmark against this build's binary, with Knot
//! DNS as reference: `benches/load.py --smoke` (200 names, 2 s dnsperf runs)
//! must finish, exit 0 and print the meshdns/Knot table, with the latency
//! floor (`benches/udp_floor.rs`, built by
//! `cargo build --release --example udp_floor`); so must its flood mode
//! (`--flood --smoke`) and its TCP mode (`--tcp-probes --smoke`).
//!
//! It needs knotd, dnsperf and that example, so it is `#[ignore]`d: with
//! `-- --include-ignored` it runs and fails if one is missing. Run:
//! `cargo test --release --test load_smoke -- --include-ignored --nocapture`.

#[path = "e2e/common.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `load.py ARGS --meshdns <this build>` to completion within
/// [`LIMIT`]; returns its output.
fn load_py(args: &[&str]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("load.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("python3")
        .arg(repo.join("benches/load.py"))
        .args(args)
        .args(["--meshdns", env!("CARGO_BIN_EXE_meshdns")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn python3 benches/load.py");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            // The script's servers and dnsperf die with it (PR_SET_PDEATHSIG).
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap();
    println!("{output}");
    let status = status.unwrap_or_else(|| panic!("load.py {args:?} still running after {LIMIT:?}"));
    assert!(status.success(), "load.py {args:?} failed: {status}");
    println!("load.py {args:?} took {:?}", start.elapsed());
    output
}

#[test]
#[ignore = "needs knotd, dnsperf and the udp_floor example"]
fn load_smoke() {
    common::require_tool("knotd");
    common::require_tool("dnsperf");
    let floor = Path::new(env!("CARGO_BIN_EXE_meshdns")).with_file_name("examples/udp_floor");
    assert!(
        floor.is_file(),
        "{} not built (cargo build --release --example udp_floor)",
        floor.display()
    );
    let output = load_py(&["--smoke"]);
    // The default variant runs the binary's default flags: --workers auto.
    assert!(output.contains("meshdns-auto/Knot"), "no meshdns-auto/Knot ratio table");
    assert!(
        output.lines().any(|l| l.starts_with("CPU µs/query")),
        "no CPU µs/query row"
    );
    assert!(output.contains("floor (median)"), "no latency floor column");
}

#[test]
#[ignore = "needs knotd and dnsperf"]
fn flood_smoke() {
    common::require_tool("knotd");
    common::require_tool("dnsperf");
    let output = load_py(&["--flood", "--smoke"]);
    assert!(output.contains("=== flood"), "no flood table");
    for row in [
        "legit p99 ms",
        "legit lost %",
        "flood answered QPS",
        "kernel rcvbuf drops",
    ] {
        assert!(output.lines().any(|l| l.starts_with(row)), "no {row} row");
    }
    assert!(output.contains("meshdns-auto/Knot"), "no meshdns-auto/Knot ratio");
}

#[test]
#[ignore = "needs knotd"]
fn tcp_probes_smoke() {
    common::require_tool("knotd");
    let output = load_py(&["--tcp-probes", "--smoke"]);
    assert!(output.contains("=== TCP probes"), "no TCP table");
    let row = output
        .lines()
        .find(|l| l.starts_with("1 byte of prefix"))
        .expect("no stalled-prefix row");
    // meshdns closes a stalled client within its 1 s default.
    let meshdns: f64 = row.rsplit('|').next().unwrap().trim().parse().expect(row);
    assert!(meshdns < 1.5, "{row}");
}
