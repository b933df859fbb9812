//! deploy/monitoring/: the alert rules and their PrometheusRule hold the same
//! groups; `promtool` checks the rules and runs their unit tests
//! (deploy/monitoring/tests/); and every metric that the rules and the
//! Grafana dashboard query exists in a live scrape of the release binary,
//! serving files and a real kube-apiserver's ServiceEntries at once (the
//! `meshdns_kube_*` families exist only with a cluster, so the scrape has
//! one rather than registering them for show).
//!
//! The tests that need promtool or the kube-apiserver build are
//! `#[ignore = "needs …"]`, as in tests/ops.rs and tests/kube.rs.

#[path = "kube/cluster.rs"]
mod cluster;
#[path = "e2e/common.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::{Cluster, se};
use common::{Meshdns, http_get, poll_until, query_tcp, query_udp, require_tool, run_bounded};
use hickory_proto::rr::RecordType;
use serde_json::Value;

const RULES: &str = "deploy/monitoring/meshdns-rules.yaml";
const PROMETHEUS_RULE: &str = "deploy/monitoring/meshdns-prometheusrule.yaml";
const RULE_TESTS: &str = "deploy/monitoring/tests/meshdns-rules-test.yaml";
const DASHBOARD: &str = "deploy/monitoring/meshdns-dashboard.json";

/// One cluster at a time, as in tests/kube.rs: each needs a core to start.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn rules() -> Vec<Value> {
    yaml(RULES)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// Every PromQL expression of the rules and of the dashboard's panels.
fn expressions() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = rules()
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let title = panel["title"].as_str().unwrap();
            all.push((format!("panel {title:?}"), target["expr"].as_str().unwrap().to_string()));
        }
    }
    all
}

#[test]
fn the_prometheusrule_holds_the_rules_files_groups() {
    let plain = yaml(RULES);
    let operator = yaml(PROMETHEUS_RULE);
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(
        plain.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["groups"],
        "a plain rules file"
    );
    assert!(plain["groups"].as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(operator["spec"]["groups"], plain["groups"]);
}

#[test]
fn every_alert_has_for_severity_and_a_runbook() {
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(names.len(), rules.len(), "alert names repeat");
    for want in [
        "MeshdnsNotReady",
        "MeshdnsServfailRatioHigh",
        "MeshdnsKubeWatchErrors",
        "MeshdnsKubeSyncStale",
        "MeshdnsFileReloadErrors",
        "MeshdnsQueriesDropped",
        "MeshdnsRefusedRatioHigh",
        "MeshdnsLatencyHigh",
    ] {
        assert!(names.contains(want), "no {want}");
    }
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        assert!(r["for"].is_string(), "{name}: no for:");
        assert!(
            matches!(r["labels"]["severity"].as_str(), Some("warning" | "critical")),
            "{name}: severity"
        );
        assert!(r["annotations"]["summary"].is_string(), "{name}: summary");
        let description = r["annotations"]["description"].as_str().unwrap_or_default();
        assert!(
            description.to_lowercase().contains("check "),
            "{name}: the description says what to check"
        );
    }
    // A quiet cluster sends no events: no alert may rest on the event age.
    for r in &rules {
        let expr = r["expr"].as_str().unwrap();
        assert!(!expr.contains("last_event_age"), "{}: {expr}", r["alert"]);
    }
}

/// Every alert has a unit test where it fires and one where it stays silent.
#[test]
fn every_alert_has_firing_and_silent_unit_tests() {
    let tests = yaml(RULE_TESTS);
    assert_eq!(tests["rule_files"], serde_json::json!(["../meshdns-rules.yaml"]));
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let name = case["alertname"].as_str().unwrap().to_string();
            let fires = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            let entry = seen.entry(name).or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    for r in rules() {
        let name = r["alert"].as_str().unwrap();
        assert_eq!(seen.get(name), Some(&(true, true)), "{name}: (fires, silent) cases");
    }
}

fn promtool(args: &[&str]) -> String {
    let mut cmd = Command::new(require_tool("promtool"));
    cmd.current_dir(repo("deploy/monitoring")).args(args);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{report}");
    report
}

#[test]
#[ignore = "needs promtool"]
fn promtool_checks_the_rules() {
    let report = promtool(&["check", "rules", "meshdns-rules.yaml"]);
    let count = rules().len();
    assert!(report.contains(&format!("SUCCESS: {count} rules found")), "{report}");
    println!("{}", report.trim());
}

#[test]
#[ignore = "needs promtool"]
fn promtool_unit_tests_pass() {
    let report = promtool(&["test", "rules", "tests/meshdns-rules-test.yaml"]);
    assert!(report.contains("SUCCESS"), "{report}");
    println!("{}", report.trim());
}

/// The dashboard's expressions are PromQL that Prometheus parses: each
/// becomes a recording rule, with Grafana's variables filled in.
#[test]
#[ignore = "needs promtool"]
fn promtool_parses_the_dashboard_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, (_, expr)) in expressions().iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        assert!(!expr.contains('$'), "an unknown variable in {expr}");
        text.push_str(&format!(
            "  - record: dashboard:query_{i}\n    expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&file, text).unwrap();
    let report = promtool(&["check", "rules", file.to_str().unwrap()]);
    println!("{}", report.trim());
}

// ---------------------------------------------------------------------------
// Metric names

/// The metric names a PromQL expression reads: identifiers outside strings,
/// label matchers, ranges and grouping lists, that are not functions,
/// aggregations, keywords, numbers or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut grouping_list = false;
    let mut i = 0;
    // Skips from an opening character to its closing one, over strings.
    let skip = |mut i: usize, close: char| -> usize {
        i += 1;
        while i < chars.len() && chars[i] != close {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip(i, c);
        } else if c == '{' {
            i = skip(i, '}');
        } else if c == '[' {
            i = skip(i, ']');
        } else if c == '(' && grouping_list {
            grouping_list = false;
            i = skip(i, ')');
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration: 0.99, 1e-05, 5m.
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                grouping_list = next == Some(&'(');
            } else if c == '$'
                || next == Some(&'(')
                || AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.to_lowercase().as_str())
            {
                // A variable, a function or aggregation, or a keyword.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job=~"$job", x="{not_me}"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names(
            "sum without (rcode) (rate(b_total{rcode=\"SERVFAIL\"}[5m])) / on (instance) group_left (version) c > 1e-05"
        ),
        ["b_total", "c"]
    );
    assert_eq!(names("time() - d offset 5m > bool 900 and e unless f"), ["d", "e", "f"]);
    assert_eq!(
        names("sum(rate(g[1m])) by (le) / count(h:recorded)"),
        ["g", "h:recorded"]
    );
}

/// The sample names and each family's type, from the text exposition.
struct Scrape {
    samples: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(body: &str) -> Scrape {
        let mut samples = BTreeSet::new();
        let mut types = BTreeMap::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                types.insert(words.next().unwrap().to_string(), words.next().unwrap().to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_string());
            }
        }
        Scrape { samples, types }
    }

    /// Whether `name` is a sample of a family the scrape has: the family
    /// itself, or a histogram's `_bucket`/`_sum`/`_count` (a summary's
    /// `_sum`/`_count`).
    fn has(&self, name: &str) -> bool {
        let family = self.types.get(name).map(|_| name).or_else(|| {
            ["_bucket", "_sum", "_count"].into_iter().find_map(|suffix| {
                let family = name.strip_suffix(suffix)?;
                match (self.types.get(family)?.as_str(), suffix) {
                    ("histogram", _) | ("summary", "_sum" | "_count") => Some(family),
                    _ => None,
                }
            })
        });
        family.is_some() && self.samples.contains(name)
    }
}

#[test]
fn histogram_suffixes_belong_to_histograms_only() {
    let scrape = Scrape::parse(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n\
         # TYPE c_total counter\nc_total 3\n# TYPE g gauge\ng{x=\"y\"} 1\n",
    );
    for name in ["h_bucket", "h_sum", "h_count", "c_total", "g"] {
        assert!(scrape.has(name), "{name}");
    }
    for name in ["h", "c", "c_total_count", "g_bucket", "missing"] {
        assert!(!scrape.has(name), "{name}");
    }
}

/// Every metric the alert rules and the dashboard query is in a live scrape:
/// meshdns with `--file` (one reload fails) and `--kubernetes` against a real
/// kube-apiserver, after UDP and TCP queries and watch events.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn every_queried_metric_is_in_a_live_scrape() {
    let wanted: BTreeMap<String, Vec<String>> =
        expressions()
            .into_iter()
            .fold(BTreeMap::new(), |mut wanted, (owner, expr)| {
                for name in metric_names(&expr) {
                    wanted.entry(name).or_insert_with(Vec::new).push(owner.clone());
                }
                wanted
            });
    for name in [
        "meshdns_kube_last_sync_timestamp_seconds",
        "meshdns_dns_request_duration_seconds_bucket",
        "meshdns_dns_request_duration_seconds_count",
        "meshdns_file_reload_errors_total",
        "meshdns_dns_tcp_connections",
        "meshdns_records",
    ] {
        assert!(wanted.contains_key(name), "nothing queries {name}: {wanted:?}");
    }

    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let _serial = serial();
    let c = Cluster::start();
    c.create("v1", "default", "before", se(&["before.bar.global"], &["240.0.0.10"]));
    let files = tempfile::tempdir().unwrap();
    std::fs::copy(common::example_file(), files.path().join("examples.yaml")).unwrap();
    let dir = files.path().to_str().unwrap();
    let mut m = Meshdns::spawn(
        None,
        &[
            "--file",
            dir,
            "--kubernetes",
            "--kubeconfig",
            &c.env["ADMIN_KUBECONFIG"],
        ],
    );
    let started = now();
    m.wait_ready(Duration::from_secs(60));

    // Watch events: an apply, one with a skipped CIDR, and a delete.
    c.create("v1", "default", "after", se(&["after.bar.global"], &["240.0.0.11"]));
    c.create("v1", "default", "wide", se(&["wide.bar.global"], &["240.0.1.0/24"]));
    m.wait_for("after.bar.global.", &["240.0.0.11"], Duration::from_secs(10));
    c.delete("default", "before");
    m.wait_for("before.bar.global.", &[], Duration::from_secs(10));
    // A file that does not parse: a failed reload.
    std::fs::write(files.path().join("broken.yaml"), "spec: [\n").unwrap();
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        m.metric("meshdns_file_reload_errors_total") >= 1.0
    })
    .unwrap_or_else(|| panic!("no reload error counted; log:\n{}", m.proc.log()));
    // Queries over both transports, answered and refused.
    for name in ["httpbin.bar.global.", "nope.bar.global.", "example.com."] {
        query_udp(m.dns, name, RecordType::A).unwrap();
        query_tcp(m.dns, name, RecordType::AAAA).unwrap();
    }

    let (code, body) = http_get(m.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    let scrape = Scrape::parse(&body);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !scrape.has(name))
        .map(|(name, owners)| format!("{name} (used by {})", owners.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the scrape:\n  {}\nscrape:\n{body}",
        missing.join("\n  ")
    );
    // The sync time is real: set since meshdns started (by its list and events).
    let last_sync = m.metric("meshdns_kube_last_sync_timestamp_seconds");
    assert!(
        last_sync >= started - 1.0 && last_sync <= now() + 1.0,
        "meshdns_kube_last_sync_timestamp_seconds {last_sync}, started at {started}"
    );
    println!(
        "{} metric names from {} expressions, all in the scrape: {}",
        wanted.len(),
        expressions().len(),
        wanted.keys().cloned().collect::<Vec<_>>().join(" ")
    );
}

/// A TCP relay on loopback to `upstream`, whose connections can all be cut
/// at once: a network that drops the watch's connection, while the API
/// server itself stays up.
struct Relay {
    addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let conns = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, open }
    }

    /// Cuts every connection made so far; returns how many sockets it shut.
    fn cut(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        for s in open.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        std::mem::take(&mut *open).len()
    }
}

/// What `meshdns_kube_last_sync_timestamp_seconds` rests on in a quiet
/// cluster, against the real API server: the watch's connection is cut and
/// kube-rs reopens the watch from the same resourceVersion (as it does at
/// least every 290 s when the watch times out). No event and no relist
/// follow, yet the sync time moves on; nothing else moved it before.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn a_quiet_watch_is_proven_in_sync_when_it_is_reopened() {
    let _serial = serial();
    let c = Cluster::start();
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));
    let url = &c.env["APISERVER_URL"];
    let upstream: SocketAddr = url.strip_prefix("https://").unwrap().parse().unwrap();
    let relay = Relay::start(upstream);
    let admin = std::fs::read_to_string(&c.env["ADMIN_KUBECONFIG"]).unwrap();
    assert!(admin.contains(url.as_str()), "{admin}");
    let kubeconfig = c.dir.path().join("relay.kubeconfig");
    std::fs::write(
        &kubeconfig,
        admin.replace(url.as_str(), &format!("https://{}", relay.addr)),
    )
    .unwrap();

    let mut m = Meshdns::spawn(None, &["--kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    m.wait_ready(Duration::from_secs(60));
    assert_eq!(m.addrs("httpbin.bar.global."), Ok(vec!["240.0.0.2".into()]));
    let events = |m: &Meshdns| -> f64 {
        let (_, body) = http_get(m.admin, "/metrics").unwrap();
        body.lines()
            .filter(|l| l.starts_with("meshdns_kube_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (events_before, relists_before) = (events(&m), m.metric("meshdns_kube_relists_total"));
    let synced = m.metric("meshdns_kube_last_sync_timestamp_seconds");
    assert!(synced > 0.0);

    // Quiet: nothing proves the watch again on its own within seconds.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(m.metric("meshdns_kube_last_sync_timestamp_seconds"), synced);

    let cut = relay.cut();
    assert!(cut >= 2, "no connection to cut");
    let took = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        m.metric("meshdns_kube_last_sync_timestamp_seconds") > synced + 1.0
    })
    .unwrap_or_else(|| panic!("the reopened watch did not move the sync time; log:\n{}", m.proc.log()));
    assert_eq!(events(&m), events_before, "no event arrived");
    assert_eq!(m.metric("meshdns_kube_relists_total"), relists_before, "no relist");
    assert_eq!(m.addrs("httpbin.bar.global."), Ok(vec!["240.0.0.2".into()]));
    println!(
        "watch connection cut ({cut} sockets): reopened and proven in sync after {took:?}, with no event and no relist \
         ({} watch errors)",
        m.metric("meshdns_kube_watch_errors_total")
    );
}
