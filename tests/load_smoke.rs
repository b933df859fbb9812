//! Smoke tests of the benchmarks against this build's binary. The load
//! benchmark, with Knot DNS as reference: `benches/load.py --smoke` (200
//! names, 2 s dnsperf runs) must finish, exit 0 and print the meshdns/Knot
//! table, with a `--baseline` build run as a binary of its own, and with the
//! latency floor (`benches/udp_floor.rs`, built by
//! `cargo build --release --example udp_floor`); so must its flood mode
//! (`--flood --smoke`) and its TCP mode (`--tcp-probes --smoke`). The
//! Kubernetes start-up benchmark, `benches/kube_startup.py --smoke` (500
//! ServiceEntries in a real kube-apiserver, one meshdns start), must print
//! its table and breakdown. `benches/slice.py` (the scheduler slice's
//! modes at a fixed rate, a CPU hog beside) must print its medians.
//!
//! They need knotd, dnsperf and that example, or kube-apiserver and etcd, so
//! they are `#[ignore]`d: with `-- --include-ignored` they run and fail if one
//! is missing. Run:
//! `cargo test --release --test load_smoke -- --include-ignored --nocapture`.

#[path = "e2e/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `load.py ARGS --meshdns <this build>` to completion within
/// [`LIMIT`]; returns its output.
fn load_py(args: &[&str]) -> String {
    bench_py("load.py", args)
}

/// Runs `benches/SCRIPT ARGS --meshdns <this build>` to completion within
/// [`LIMIT`]; returns its output.
fn bench_py(script: &str, args: &[&str]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("bench.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("python3")
        .arg(repo.join("benches").join(script))
        .args(args)
        .args(["--meshdns", env!("CARGO_BIN_EXE_meshdns")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn python3 benches/{script}: {e}"));

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            // The script's children die with it (PR_SET_PDEATHSIG); SIGKILL
            // skips kube_startup.py's cleanup, so this is the last resort.
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap();
    println!("{output}");
    let status = status.unwrap_or_else(|| panic!("{script} {args:?} still running after {LIMIT:?}"));
    assert!(status.success(), "{script} {args:?} failed: {status}");
    println!("{script} {args:?} took {:?}", start.elapsed());
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
    // --baseline runs a build of its own: here a script that execs this
    // build, so its digest differs while its answers stay right.
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline");
    std::fs::write(
        &baseline,
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", env!("CARGO_BIN_EXE_meshdns")),
    )
    .unwrap();
    std::fs::set_permissions(&baseline, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = load_py(&["--smoke", "--baseline", baseline.to_str().unwrap()]);
    // The default variant runs the binary's default flags: --workers auto.
    assert!(output.contains("meshdns-auto/Knot"), "no meshdns-auto/Knot ratio table");
    assert!(output.contains("meshdns-base/Knot"), "no meshdns-base/Knot ratio table");
    let digest = |label: &str| {
        let line = output
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{label}: ")))
            .unwrap_or_else(|| panic!("no line naming {label}'s binary"));
        line.rsplit("sha256 ").next().unwrap().trim().to_string()
    };
    assert_ne!(
        digest("meshdns-auto"),
        digest("meshdns-base"),
        "--baseline ran the same binary"
    );
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

#[test]
#[ignore = "needs dnsperf"]
fn slice_smoke() {
    common::require_tool("dnsperf");
    let output = bench_py(
        "slice.py",
        &[
            "--size",
            "200",
            "--rounds",
            "1",
            "--seconds",
            "2",
            "--qps",
            "2000",
            "--hogs",
            "1",
        ],
    );
    for variant in ["slice auto", "slice 100us", "slice 0"] {
        assert!(
            output
                .lines()
                .any(|l| l.trim_start().starts_with(variant) && l.contains("µs/q")),
            "no median for {variant}"
        );
    }
}

#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn kube_startup_smoke() {
    common::require_tool("etcd");
    let cache = std::env::var("MESHDNS_KUBE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/meshdns/kube-1.20.2")
        });
    for bin in ["kube-apiserver", "kubectl"] {
        assert!(
            cache.join("bin").join(bin).is_file(),
            "{bin} not built (tests/kube/apiserver.sh build); this test needs it under --include-ignored"
        );
    }
    let output = bench_py("kube_startup.py", &["--smoke"]);
    for row in [
        "create (POST, python)",
        "plain LIST limit=500 (as meshdns)",
        "meshdns start -> /readyz",
        "meshdns start -> first answer",
        "RSS at ready",
        "  watching -> list complete (list)",
    ] {
        assert!(output.lines().any(|l| l.starts_with(row)), "no {row:?} row");
    }
    let events = output
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("meshdns_kube_events_total{type=\"init_apply\"}")
        })
        .expect("no init_apply events row");
    assert_eq!(events.split_whitespace().nth(1), Some("500"), "{events}");
    assert!(output.contains("dominant: "), "no verdict");
}
