//! Operations, with the release binary: graceful shutdown, the metrics
//! exposition checked by `promtool` and scraped by a real Prometheus,
//! overload (a TCP connection flood, a UDP flood from dnsperf), and how the
//! binary is linked (packed relocations, which keep its RSS down).

#[path = "e2e/common.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Meshdns, Proc, example_file, free_port, http_get, loopback, poll_until, query_tcp, query_udp, query_udp_once,
    require_tool, run_bounded,
};
use hickory_proto::rr::RecordType;

#[test]
fn sigterm_drains_then_exits_zero() {
    let example = example_file();
    let mut m = Meshdns::serve(&[&example], &["--shutdown-grace", "2s"]);
    let sent = Instant::now();
    m.proc.signal("TERM");
    poll_until(Duration::from_millis(500), Duration::from_millis(5), || {
        http_get(m.admin, "/readyz").is_ok_and(|(code, _)| code == 503)
    })
    .expect("/readyz turns 503 at once");
    // Still answering while draining.
    while sent.elapsed() < Duration::from_millis(1500) {
        let r = query_udp(m.dns, "httpbin.bar.global.", RecordType::A).expect("answered during the drain");
        assert_eq!(r.answers.len(), 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = m
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    assert!(status.success(), "{status}");
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "exited after {took:?}"
    );
    println!("SIGTERM → exit 0 after {took:?} (grace 2 s)");
}

#[test]
fn sighup_is_logged_and_ignored() {
    let example = example_file();
    let mut m = Meshdns::serve(&[&example], &[]);
    m.proc.signal("HUP");
    poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        m.proc.log().contains("SIGHUP ignored")
    })
    .expect("SIGHUP is logged");
    m.proc.assert_alive();
    assert!(http_get(m.admin, "/readyz").is_ok_and(|(code, _)| code == 200));
    assert_eq!(
        query_udp(m.dns, "httpbin.bar.global.", RecordType::A)
            .unwrap()
            .answers
            .len(),
        1
    );
}

#[test]
fn second_signal_exits_at_once() {
    let example = example_file();
    let mut m = Meshdns::serve(&[&example], &["--shutdown-grace", "60s"]);
    m.proc.signal("TERM");
    poll_until(Duration::from_secs(1), Duration::from_millis(5), || {
        http_get(m.admin, "/readyz").is_ok_and(|(code, _)| code == 503)
    })
    .expect("draining");
    let sent = Instant::now();
    m.proc.signal("INT");
    let status = m
        .proc
        .wait_exit(Duration::from_secs(2))
        .expect("second signal exits at once");
    assert!(status.success());
    println!("second signal → exit after {:?}", sent.elapsed());
}

/// Sends a mix of queries; returns how many.
fn traffic(m: &Meshdns) -> u64 {
    let mut n = 0;
    for i in 0..40 {
        for (name, rtype) in [
            ("httpbin.bar.global.", RecordType::A),
            ("httpbin.bar.global.", RecordType::AAAA),
            ("nope.global.", RecordType::A),
            (".", RecordType::NS),
        ] {
            if i % 7 != 3 || rtype != RecordType::NS {
                query_udp(m.dns, name, rtype).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
#[ignore = "needs promtool"]
fn metrics_pass_promtool() {
    let promtool = require_tool("promtool");
    let example = example_file();
    let m = Meshdns::serve(&[&example], &[]);
    traffic(&m);
    let (code, body) = http_get(m.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "meshdns_dns_requests_total{proto=\"udp\",type=\"A\"}",
        "meshdns_dns_responses_total{rcode=\"NXDOMAIN\"}",
        "meshdns_dns_request_duration_seconds_bucket",
        "meshdns_serviceentries 5",
        "meshdns_records{type=\"AAAA\"} 2",
        "meshdns_ready 1",
        "meshdns_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &body).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("'{}' check metrics < '{}'", promtool.display(), file.display()));
    let out = run_bounded(cmd, Duration::from_secs(20));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[test]
#[ignore = "needs prometheus"]
fn prometheus_counts_every_query() {
    let prometheus = require_tool("prometheus");
    let example = example_file();
    let m = Meshdns::serve(&[&example], &[]);
    let sent = traffic(&m);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n- job_name: meshdns\n  static_configs:\n  - targets: ['{}']\n",
            m.admin
        ),
    )
    .unwrap();
    let web = loopback(free_port());
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={web}"));
    let mut p = Proc::spawn("prometheus", cmd, &dir.path().join("prometheus.log"));
    let query = "/api/v1/query?query=sum%28meshdns_dns_requests_total%29";
    let mut last = String::new();
    let seen = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        p.assert_alive();
        let Ok((200, body)) = http_get(web, query) else {
            return false;
        };
        last = body;
        let value: Option<f64> = serde_json::from_str::<serde_json::Value>(&last)
            .ok()
            .and_then(|v| v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok()));
        value == Some(sent as f64)
    });
    assert!(
        seen.is_some(),
        "Prometheus never reported {sent} queries; last answer: {last}\nlog:\n{}",
        p.log()
    );
    println!(
        "Prometheus scraped sum(meshdns_dns_requests_total) = {sent} after {:?}",
        seen.unwrap()
    );
}

/// A metric's value from /metrics text (the sum over matching lines), 0
/// when absent. `series` is the name with its labels as printed.
fn scrape(m: &Meshdns, series: &str) -> f64 {
    let (_, body) = http_get(m.admin, "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn tcp_connection_flood_leaves_udp_and_new_tcp_clients_served() {
    // Default flags: 1024 connections at most.
    let example = example_file();
    let m = Meshdns::serve(&[&example], &[]);
    let rss_before = m.rss_kib();
    let mut held = Vec::new();
    for _ in 0..3000 {
        held.push(std::net::TcpStream::connect(m.dns).unwrap());
    }
    let capped = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        scrape(&m, "meshdns_dns_tcp_connections_closed_total{reason=\"reclaimed\"}") >= 1976.0
    });
    assert!(capped.is_some(), "the oldest connections were not reclaimed");
    assert!(scrape(&m, "meshdns_dns_tcp_connections") <= 1024.0);
    // New clients still get answers, over TCP and UDP.
    for _ in 0..20 {
        assert_eq!(
            query_tcp(m.dns, "httpbin.bar.global.", RecordType::A)
                .unwrap()
                .answers
                .len(),
            1
        );
        assert_eq!(
            query_udp_once(m.dns, "httpbin.bar.global.", RecordType::A)
                .unwrap()
                .answers
                .len(),
            1
        );
    }
    let rss_after = m.rss_kib();
    println!(
        "3000 idle TCP connections: {} open, {} reclaimed, RSS {rss_before} → {rss_after} KiB",
        scrape(&m, "meshdns_dns_tcp_connections"),
        scrape(&m, "meshdns_dns_tcp_connections_closed_total{reason=\"reclaimed\"}")
    );
    assert!(rss_after < rss_before + 32 * 1024, "RSS {rss_before} → {rss_after} KiB");
}

#[test]
#[ignore = "needs dnsperf"]
fn udp_flood_is_bounded_counted_and_legitimate_queries_answered() {
    let dnsperf = require_tool("dnsperf");
    let example = example_file();
    // Default flags.
    let m = Meshdns::serve(&[&example], &[]);
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "httpbin.bar.global A\nnope.bar.global A\n".repeat(500)).unwrap();
    let rss_before = m.rss_kib();

    const FLOOD_S: u64 = 6;
    let mut cmd = Command::new(&dnsperf);
    cmd.args(["-s", "127.0.0.1", "-p", &m.dns.port().to_string(), "-d"])
        .arg(&queries)
        .args(["-c", "50", "-q", "5000", "-l", &FLOOD_S.to_string(), "-t", "1"]);
    let flood = std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(FLOOD_S + 30)));

    // A legitimate client at about 100 qps while the flood runs, retrying
    // as a resolver would.
    std::thread::sleep(Duration::from_millis(500));
    let (mut latencies, mut retried, mut rss_max) = (Vec::new(), 0, rss_before);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(FLOOD_S - 2) {
        let sent = Instant::now();
        let mut answer = query_udp_once(m.dns, "httpbin.bar.global.", RecordType::A);
        if answer.is_err() {
            retried += 1;
            answer = query_udp(m.dns, "httpbin.bar.global.", RecordType::A);
        }
        assert_eq!(answer.expect("answered within retries").answers.len(), 1);
        latencies.push(sent.elapsed());
        rss_max = rss_max.max(m.rss_kib());
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = flood.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dnsperf:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: f64 = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries sent:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("dnsperf's Queries sent");

    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    // Every datagram that reached the socket was answered or counted.
    let legit = latencies.len() as f64 + f64::from(retried);
    let counted =
        || scrape(&m, "meshdns_dns_requests_total") + scrape(&m, "meshdns_dns_dropped_total{reason=\"queue_full\"}");
    let balanced = poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        counted() >= sent + legit
    });
    let drops = scrape(&m, "meshdns_dns_dropped_total{reason=\"queue_full\"}");
    println!(
        "flood: {sent} sent by dnsperf, {drops} dropped at the full queue; legitimate: {} answered, {retried} \
         retried, p99 {p99:?}; RSS {rss_before} KiB before, max {rss_max} KiB",
        latencies.len()
    );
    assert!(
        balanced.is_some(),
        "answered + dropped = {} < sent {}",
        counted(),
        sent + legit
    );
    assert!(
        rss_max < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_max} KiB"
    );
    assert!(m.ready());
}

/// build.rs packs the binary's relative relocations (DT_RELR) when the build
/// machine's glibc applies them (2.36 on); `readelf` shows what was linked.
#[test]
#[ignore = "needs readelf"]
fn relocations_are_packed_where_glibc_applies_them() {
    let readelf = require_tool("readelf");
    let readelf = |flag: &str| {
        let out = Command::new(&readelf)
            .args([flag, env!("CARGO_BIN_EXE_meshdns")])
            .output()
            .unwrap();
        assert!(out.status.success(), "readelf {flag}");
        String::from_utf8(out.stdout).unwrap()
    };
    // "glibc 2.36"; nothing on a C library other than glibc.
    let glibc = Command::new("getconf").arg("GNU_LIBC_VERSION").output().unwrap();
    let glibc = String::from_utf8_lossy(&glibc.stdout).trim().to_string();
    let version = glibc.strip_prefix("glibc ").and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    let packed = env!("MESHDNS_LINKED_RELR") == "1";
    if std::env::var_os("MESHDNS_RELR").is_none() {
        assert_eq!(packed, version.is_some_and(|v| v >= (2, 36)), "{glibc:?}");
    }
    let dynamic = readelf("-dW");
    assert_eq!(dynamic.contains("(RELR)"), packed, "{dynamic}");
    // What stays in .rela.dyn: relocations against symbols, a few KiB.
    let sections = readelf("-SW");
    let rela = sections
        .lines()
        .find(|l| l.contains(" .rela.dyn "))
        .map(|l| {
            let size = l
                .split(" .rela.dyn ")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap();
            u64::from_str_radix(size, 16).unwrap()
        })
        .unwrap_or(0);
    println!("{glibc:?}: RELR {packed}, .rela.dyn {rela} bytes");
    if packed {
        assert!(rela < 64 << 10, ".rela.dyn is {rela} bytes:\n{sections}");
    }
}
