//! Smoke test of the load benchmark: `benches/load.py --smoke` against this
//! build's binary (200 names, 2 s dnsperf runs, Knot DNS as reference) must
//! finish, exit 0 and print the meshdns/Knot table, with the latency floor
//! (`benches/udp_floor.rs`) if `cargo build --release --example udp_floor`
//! has built it (required with MESHDNS_E2E_REQUIRED=1).
//!
//! Without knotd or dnsperf it prints a "SKIPPED:" line and passes, unless
//! MESHDNS_E2E_REQUIRED=1, where it fails. Run:
//! `cargo test --release --test load_smoke -- --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// On PATH or in the sbin directories a non-root PATH often lacks (knotd).
fn have(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

#[test]
fn load_smoke() {
    if !have("knotd") || !have("dnsperf") {
        if std::env::var("MESHDNS_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("load smoke: knotd/dnsperf not installed and MESHDNS_E2E_REQUIRED=1 (apt-get install knot dnsperf)");
        }
        println!("SKIPPED: load smoke: knotd/dnsperf not installed");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("load.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("python3")
        .arg(repo.join("benches/load.py"))
        .args(["--smoke", "--meshdns", env!("CARGO_BIN_EXE_meshdns")])
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
    let status = status.unwrap_or_else(|| panic!("load.py --smoke still running after {LIMIT:?}"));
    assert!(status.success(), "load.py --smoke failed: {status}");
    assert!(output.contains("meshdns/Knot"), "no meshdns/Knot ratio table");
    assert!(
        output.lines().any(|l| l.starts_with("CPU µs/query")),
        "no CPU µs/query row"
    );
    let floor = Path::new(env!("CARGO_BIN_EXE_meshdns")).with_file_name("examples/udp_floor");
    if floor.is_file() {
        assert!(output.contains("floor (median)"), "no latency floor column");
    } else if std::env::var("MESHDNS_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!(
            "{} not built (cargo build --release --example udp_floor)",
            floor.display()
        );
    } else {
        println!("note: {} not built, so no floor column", floor.display());
    }
    println!("load smoke took {:?}", start.elapsed());
}
