//! End-to-end tests: the release `meshdns` binary against real DNS clients
//! (dig, kdig), real forwarders (dnsmasq as kube-dns stubDomains, unbound
//! stub-zone), a reference authoritative server (Knot DNS), and file edits.
//!
//! Everything listens on 127.0.0.1 only. A test that needs an outside tool
//! is `#[ignore = "needs <tool>"]`: `cargo test` lists it as ignored, and
//! `-- --include-ignored` runs it and fails if the tool is missing.
//! Run: `cargo test --release --test e2e -- --include-ignored --nocapture`.

#[path = "e2e/common.rs"]
mod common;
#[path = "malformed/cases.rs"]
mod malformed;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// TTLs from the contract: record TTL 30, negative TTL min(30, 5) = 5.
const TTL: u32 = 30;
const NEG_TTL: u32 = 5;

// ---------------------------------------------------------------------------
// 1. dig and kdig against the bundled example

/// One query and what meshdns must answer.
struct Case {
    name: &'static str,
    qtype: &'static str,
    tcp: bool,
    rcode: &'static str,
    /// (owner exactly as expected on the wire, type, rdata)
    answer: &'static [(&'static str, &'static str, &'static str)],
    /// SOA in authority (negative answers)
    soa: bool,
}

const fn case(
    name: &'static str,
    qtype: &'static str,
    rcode: &'static str,
    answer: &'static [(&'static str, &'static str, &'static str)],
    soa: bool,
) -> Case {
    Case {
        name,
        qtype,
        tcp: false,
        rcode,
        answer,
        soa,
    }
}

const fn tcp(c: Case) -> Case {
    Case { tcp: true, ..c }
}

const HTTPBIN_A: &[(&str, &str, &str)] = &[("httpbin.bar.global.", "A", "240.0.0.2")];

const CLIENT_CASES: &[Case] = &[
    case("httpbin.bar.global", "A", "NOERROR", HTTPBIN_A, false),
    // Case-insensitive match; the owner echoes the query's case.
    case(
        "HtTpBiN.BaR.GlObAl",
        "A",
        "NOERROR",
        &[("HtTpBiN.BaR.GlObAl.", "A", "240.0.0.2")],
        false,
    ),
    case("httpbin.bar.global", "AAAA", "NOERROR", &[], true),
    case("nope.bar.global", "A", "NXDOMAIN", &[], true),
    case("bar.global", "A", "NOERROR", &[], true),
    case(".", "NS", "REFUSED", &[], false),
    case(
        "foo.baz.global",
        "A",
        "NOERROR",
        &[("foo.baz.global.", "A", "240.0.0.3")],
        false,
    ),
    case(
        "ratings.bar.global",
        "AAAA",
        "NOERROR",
        &[("ratings.bar.global.", "AAAA", "2001:db8::7")],
        false,
    ),
    case(
        "details.bar.global",
        "A",
        "NOERROR",
        &[("details.bar.global.", "A", "240.240.0.5")],
        false,
    ),
    case(
        "reviews.baz-team.global",
        "AAAA",
        "NOERROR",
        &[("reviews.baz-team.global.", "AAAA", "2001:db8::4")],
        false,
    ),
    tcp(case("httpbin.bar.global", "A", "NOERROR", HTTPBIN_A, false)),
    tcp(case("nope.bar.global", "A", "NXDOMAIN", &[], true)),
];

/// Checks one reply against its case; returns a list of problems.
fn check_case(c: &Case, got: &Reply, owner_case_sensitive: bool) -> Vec<String> {
    let mut bad = Vec::new();
    if got.rcode != c.rcode {
        bad.push(format!("rcode {} (want {})", got.rcode, c.rcode));
    }
    let refused = c.rcode == "REFUSED";
    if got.aa() == refused {
        bad.push(format!("aa flag {} (want {})", got.aa(), !refused));
    }
    let norm = |s: &str| {
        if owner_case_sensitive {
            s.to_string()
        } else {
            s.to_ascii_lowercase()
        }
    };
    let mut want: Vec<String> = c
        .answer
        .iter()
        .map(|(n, t, d)| format!("{} {TTL} IN {t} {d}", norm(n)))
        .collect();
    let mut have: Vec<String> = got
        .answer
        .iter()
        .map(|r| format!("{} {} IN {} {}", norm(&r.name), r.ttl, r.rtype, r.rdata))
        .collect();
    want.sort();
    have.sort();
    if want != have {
        bad.push(format!("answer {have:?} (want {want:?})"));
    }
    if c.soa {
        let soa: Vec<&Rr> = got.authority.iter().filter(|r| r.rtype == "SOA").collect();
        let ok = soa.len() == 1 && {
            let s = soa[0];
            let f: Vec<&str> = s.rdata.split_whitespace().collect();
            s.name.eq_ignore_ascii_case("global.")
                && s.ttl == NEG_TTL
                && f.len() == 7
                && f[..2] == ["localhost.", "nobody.invalid."]
                && f[3..] == ["3600", "600", "86400", "5"]
        };
        if !ok || got.authority.len() != 1 {
            bad.push(format!(
                "authority {:?} (want only `global. {NEG_TTL} IN SOA localhost. nobody.invalid. N 3600 600 86400 5`)",
                got.authority.iter().map(Rr::to_string).collect::<Vec<_>>()
            ));
        }
    }
    if refused && !(got.answer.is_empty() && got.authority.is_empty()) {
        bad.push("REFUSED must carry no records".into());
    }
    bad
}

fn run_client_cases(client: &str, query: impl Fn(&Case) -> Reply, owner_case_sensitive: bool) {
    let mut failures = String::new();
    for c in CLIENT_CASES {
        let got = query(c);
        let proto = if c.tcp { "tcp" } else { "udp" };
        let bad = check_case(c, &got, owner_case_sensitive);
        let verdict = if bad.is_empty() { "ok" } else { "FAIL" };
        println!("{client} {proto} {} {}: {verdict}", c.name, c.qtype);
        if !bad.is_empty() {
            let _ = writeln!(
                failures,
                "{client} {proto} {} {}: {}\n{}",
                c.name,
                c.qtype,
                bad.join("; "),
                got.dump()
            );
        }
    }
    assert!(failures.is_empty(), "{client} mismatches:\n{failures}");
}

#[test]
#[ignore = "needs dig"]
fn dig_queries_example() {
    let dig_bin = require_tool("dig");
    let m = Meshdns::serve(&[&example_file()], &[]);
    let health = http_get(m.admin, "/healthz");
    assert!(health.as_ref().is_ok_and(|(c, _)| *c == 200), "/healthz: {health:?}");
    run_client_cases(
        "dig",
        |c| {
            let mut args = vec![c.name, c.qtype];
            if c.tcp {
                args.push("+tcp");
            }
            dig(&dig_bin, m.dns, &args)
        },
        true,
    );
}

#[test]
#[ignore = "needs kdig"]
fn kdig_queries_example() {
    let kdig_bin = require_tool("kdig");
    let m = Meshdns::serve(&[&example_file()], &[]);
    // kdig lower-cases the query name before sending, so owner case cannot
    // be checked with it (dig does that).
    run_client_cases(
        "kdig",
        |c| {
            let mut args = vec![c.name, c.qtype];
            if c.tcp {
                args.push("+tcp");
            }
            kdig(&kdig_bin, m.dns, &args)
        },
        false,
    );
}

/// --ttl sets record TTLs; --negative-ttl the SOA MINIMUM and so the TTL of
/// the SOA in negative answers (min(SOA TTL, MINIMUM)).
#[test]
fn ttl_flags() {
    let m = Meshdns::serve(&[&example_file()], &["--ttl", "60", "--negative-ttl", "10"]);
    let q = |name: &str, t| Reply::from_message(&query_udp(m.dns, name, t).unwrap(), true);
    let r = q("httpbin.bar.global.", RecordType::A);
    assert_eq!(
        r.answer.iter().map(|r| r.ttl).collect::<Vec<_>>(),
        [60],
        "record TTL with --ttl 60\n{}",
        r.dump()
    );
    for (name, t) in [
        ("nope.bar.global.", RecordType::A),
        ("httpbin.bar.global.", RecordType::AAAA),
    ] {
        let r = q(name, t);
        let soa = r.authority.iter().find(|r| r.rtype == "SOA");
        let soa = soa.unwrap_or_else(|| panic!("{name} {t}: no SOA\n{}", r.dump()));
        assert_eq!(soa.ttl, 10, "{name} {t}: negative TTL\n{}", r.dump());
        assert!(soa.rdata.ends_with(" 10"), "{name} {t}: SOA MINIMUM\n{}", r.dump());
    }
}

// ---------------------------------------------------------------------------
// 2./3. Real forwarders in front of meshdns

/// Waits until `server` answers any query (a forwarder is up).
fn wait_dns_up(p: &mut Proc, server: SocketAddr) {
    let took = p.wait_ready(&format!("DNS on {server}"), || {
        query_udp_once(server, "localhost.", RecordType::A).is_ok()
    });
    println!("{} ready on {server} in {took:?}", p.name);
}

/// The queries both forwarder tests send through the forwarder with dig.
fn check_through_forwarder(dig_bin: &Path, fwd: SocketAddr, who: &str) {
    let r = dig(dig_bin, fwd, &["httpbin.bar.global", "A"]);
    println!("{who}: httpbin.bar.global A -> {}", r.dump().trim_end());
    assert_eq!(r.rcode, "NOERROR", "{who}: httpbin A\n{}", r.dump());
    assert_eq!(r.answers("A"), ["240.0.0.2"], "{who}: httpbin A\n{}", r.dump());

    let r = dig(dig_bin, fwd, &["nope.bar.global", "A"]);
    println!("{who}: nope.bar.global A -> {}", r.dump().trim_end());
    assert_eq!(r.rcode, "NXDOMAIN", "{who}: missing name\n{}", r.dump());
    assert!(r.answer.is_empty(), "{who}: missing name\n{}", r.dump());

    let r = dig(dig_bin, fwd, &["a.b.baz.global", "A"]);
    assert_eq!(r.answers("A"), ["240.0.0.3"], "{who}: wildcard\n{}", r.dump());

    let r = dig(dig_bin, fwd, &["ratings.bar.global", "AAAA"]);
    assert_eq!(r.answers("AAAA"), ["2001:db8::7"], "{who}: AAAA\n{}", r.dump());

    // NODATA must stay NOERROR through the forwarder, not become NXDOMAIN.
    let r = dig(dig_bin, fwd, &["ratings.bar.global", "A"]);
    assert_eq!(r.rcode, "NOERROR", "{who}: NODATA\n{}", r.dump());
    assert!(r.answer.is_empty(), "{who}: NODATA\n{}", r.dump());

    let r = dig(dig_bin, fwd, &["httpbin.bar.global", "A", "+tcp"]);
    assert_eq!(r.answers("A"), ["240.0.0.2"], "{who}: tcp\n{}", r.dump());
}

#[test]
#[ignore = "needs dnsmasq and dig"]
fn dnsmasq_stub_domain() {
    let (dnsmasq, dig_bin) = (require_tool("dnsmasq"), require_tool("dig"));
    let m = Meshdns::serve(&[&example_file()], &[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(dnsmasq);
    // What kube-dns renders for stubDomains {"global": ["<meshdns>"]}, plus
    // flags to run from a temp dir as whatever user we are.
    cmd.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--cache-size=0",
        "--log-queries",
        "--log-facility=-",
        "--user=root",
        "--group=root",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()))
    .arg(format!("--server=/global/127.0.0.1#{}", m.dns.port()));
    let mut p = Proc::spawn("dnsmasq", cmd, &dir.path().join("dnsmasq.log"));
    let fwd = loopback(port);
    wait_dns_up(&mut p, fwd);
    check_through_forwarder(&dig_bin, fwd, "dnsmasq");
    p.assert_alive();
}

#[test]
#[ignore = "needs unbound and dig"]
fn unbound_stub_zone() {
    let (unbound, dig_bin) = (require_tool("unbound"), require_tool("dig"));
    let m = Meshdns::serve(&[&example_file()], &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    // Own config only: no trust anchor, no remote control, no chroot or
    // privilege drop, loopback in and out, nothing needing the network.
    let conf = format!(
        r#"server:
    verbosity: 1
    interface: 127.0.0.1
    port: {port}
    outgoing-interface: 127.0.0.1
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    num-threads: 1
    so-reuseport: no
    chroot: ""
    username: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    logfile: ""
    use-syslog: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    domain-insecure: "global"
    module-config: "iterator"
    # 0x20: unbound randomises the query's case and drops replies that do
    # not echo it exactly.
    use-caps-for-id: yes
    harden-referral-path: no
    prefetch: no

remote-control:
    control-enable: no

stub-zone:
    name: "global"
    stub-addr: 127.0.0.1@{mport}
"#,
        mport = m.dns.port()
    );
    let conf_path = dir.path().join("unbound.conf");
    fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(unbound);
    cmd.arg("-d").arg("-c").arg(&conf_path);
    let mut p = Proc::spawn("unbound", cmd, &dir.path().join("unbound.log"));
    let fwd = loopback(port);
    wait_dns_up(&mut p, fwd);
    check_through_forwarder(&dig_bin, fwd, "unbound");
    p.assert_alive();
}

// ---------------------------------------------------------------------------
// 4. Knot DNS as reference

/// Queries compared between meshdns and Knot. ANY is left out on purpose:
/// meshdns returns a single RRset (RFC 8482), Knot does not.
fn knot_queries() -> Vec<(&'static str, RecordType)> {
    use RecordType::*;
    let mut q = Vec::new();
    let names = [
        "global.",
        "httpbin.bar.global.",
        "ratings.bar.global.",
        "details.bar.global.",
        "reviews.baz-team.global.",
        "HtTpBiN.BaR.GlObAl.",
        "REVIEWS.Baz-Team.GLOBAL.",
        "bar.global.",
        "baz.global.",
        "baz-team.global.",
        "x.baz.global.",
        "a.b.baz.global.",
        "X.BaZ.gLoBaL.",
        "*.baz.global.",
        "nope.global.",
        "nope.bar.global.",
        "deeper.httpbin.bar.global.",
    ];
    for n in names {
        q.push((n, A));
        q.push((n, AAAA));
    }
    q.extend([
        ("global.", SOA),
        ("global.", NS),
        ("GlObAl.", SOA),
        ("global.", TXT),
        ("httpbin.bar.global.", TXT),
        ("httpbin.bar.global.", MX),
        ("httpbin.bar.global.", SOA),
        ("httpbin.bar.global.", NS),
        ("bar.global.", NS),
        ("x.baz.global.", MX),
        ("x.baz.global.", TXT),
        ("nope.bar.global.", MX),
        ("example.com.", A),
        ("example.com.", NS),
        ("global.example.com.", A),
        (".", NS),
        (".", SOA),
    ]);
    // tests/e2e/edge-cases.yaml: truncation and wildcard closest encloser.
    q.extend([
        ("many.lots.global.", A),
        ("many.lots.global.", AAAA),
        ("lots.global.", A),
        ("wild.global.", A),
        ("*.wild.global.", A),
        ("x.wild.global.", A),
        ("x.wild.global.", AAAA),
        ("deep.x.wild.global.", A),
        ("api.wild.global.", A),
        ("api.wild.global.", AAAA),
        // Not ("x.api.wild.global.", A): Knot follows RFC 4592 (NXDOMAIN,
        // api.wild.global blocks the wildcard); meshdns answers from
        // *.wild.global as Istio matches hosts. See README and the index tests.
        // Not ("sub.wild.global.", A): an empty non-terminal that *.wild.global
        // covers for meshdns (Istio's matching), NODATA for Knot (RFC 4592).
        ("y.sub.wild.global.", A),
        ("Y.SUB.Wild.global.", A),
    ]);
    q
}

/// Field-by-field differences between two replies: (failures, notes).
/// Answer owners must match case-sensitively (both echo the query). In the
/// authority section only the owner's case may differ, reported as a note:
/// Knot echoes the query's case there too, which DNS does not require.
fn reply_diff(knot: &Reply, mesh: &Reply) -> (Vec<String>, Vec<String>) {
    let (mut d, mut notes) = (Vec::new(), Vec::new());
    if knot.rcode != mesh.rcode {
        d.push(format!("rcode knot={} meshdns={}", knot.rcode, mesh.rcode));
    }
    for flag in ["aa", "tc"] {
        let (k, m) = (knot.flags.contains(&flag.into()), mesh.flags.contains(&flag.into()));
        if k != m {
            d.push(format!("{flag} knot={k} meshdns={m}"));
        }
    }
    let sorted = |v: &[Rr], fold_case: bool| {
        let mut v: Vec<String> = v
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if fold_case {
                    r.name.make_ascii_lowercase();
                }
                r.to_string()
            })
            .collect();
        v.sort();
        v
    };
    if sorted(&knot.answer, false) != sorted(&mesh.answer, false) {
        let (k, m) = (sorted(&knot.answer, false), sorted(&mesh.answer, false));
        d.push(format!("answer knot={k:?} meshdns={m:?}"));
    }
    let (k, m) = (sorted(&knot.authority, false), sorted(&mesh.authority, false));
    if k != m {
        if sorted(&knot.authority, true) == sorted(&mesh.authority, true) {
            notes.push(format!("authority owner case: knot={k:?} meshdns={m:?}"));
        } else {
            d.push(format!("authority knot={k:?} meshdns={m:?}"));
        }
    }
    (d, notes)
}

/// knotd serving `zones` (zone file text, one `$ORIGIN` per zone, as
/// `meshdns check --output zone` prints it; `global` among them) on a free
/// loopback port, with one UDP and one TCP worker; killed when dropped.
struct Knot {
    proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Knot {
    fn serve(zones: &str) -> Knot {
        let knotd = require_tool("knotd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // One file per zone: Knot refuses records outside a file's zone.
        let mut zone_conf = String::new();
        for text in zones.split("$ORIGIN ").filter(|t| !t.trim().is_empty()) {
            let origin = text.split_whitespace().next().unwrap();
            fs::write(dir.path().join(format!("{origin}zone")), format!("$ORIGIN {text}")).unwrap();
            let _ = write!(
                zone_conf,
                r#"
  - domain: {origin}
    storage: "{d}"
    file: "{origin}zone"
    semantic-checks: on
    journal-content: none
    zonefile-sync: -1
"#
            );
        }
        let port = free_port();
        let conf = format!(
            r#"server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: "{d}/db"
    journal-db-max-size: 64M
    kasp-db-max-size: 64M
    timer-db-max-size: 64M
    catalog-db-max-size: 64M

control:
    listen: "{d}/knot.sock"

zone:{zone_conf}"#
        );
        let conf_path = dir.path().join("knot.conf");
        fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(knotd);
        cmd.arg("-c").arg(&conf_path);
        let mut proc = Proc::spawn("knotd", cmd, &dir.path().join("knotd.log"));
        let addr = loopback(port);
        // Up and zones loaded: an authoritative SOA answer for each.
        let origins: Vec<&str> = zones.lines().filter_map(|l| l.strip_prefix("$ORIGIN ")).collect();
        let took = proc.wait_ready("zones loaded", || {
            origins.iter().all(|o| {
                query_udp_once(addr, o, RecordType::SOA).is_ok_and(|m| m.metadata.authoritative && m.answers.len() == 1)
            })
        });
        println!("knotd ready on {addr} in {took:?} with {origins:?}");
        Knot { proc, addr, _dir: dir }
    }
}

/// Asks Knot and meshdns each query over UDP and TCP and prints the table
/// of answers; returns the exchanges that differ (empty when none).
fn compare_with_knot(knot: SocketAddr, meshdns: SocketAddr, queries: &[(&str, RecordType)]) -> String {
    let mut table = String::new();
    let (mut mismatches, mut note_count) = (0, 0);
    let mut diffs = String::new();
    for ((name, rtype), proto) in queries.iter().flat_map(|q| [(q, "udp"), (q, "tcp")]) {
        let ask = |server| match proto {
            "udp" => query_udp(server, name, *rtype),
            _ => query_tcp(server, name, *rtype),
        };
        let k = ask(knot).unwrap_or_else(|e| panic!("knot {proto} {name} {rtype}: {e}"));
        let g = ask(meshdns).unwrap_or_else(|e| panic!("meshdns {proto} {name} {rtype}: {e}"));
        let (k_extra, g_extra) = (additional(&k), additional(&g));
        let (k, g) = (Reply::from_message(&k, true), Reply::from_message(&g, true));
        let (mut diff, notes) = reply_diff(&k, &g);
        if k_extra != g_extra {
            diff.push(format!("additional knot={k_extra:?} meshdns={g_extra:?}"));
        }
        // The same records never take more bytes than Knot's: owner names
        // point at the question as Knot's do.
        let tcp = proto == "tcp";
        let (k_len, g_len) = (
            reply_len(knot, name, *rtype, tcp).expect("knot size"),
            reply_len(meshdns, name, *rtype, tcp).expect("meshdns size"),
        );
        if g_len > k_len {
            diff.push(format!("{g_len} bytes, Knot's {k_len}"));
        }
        let verdict = match (diff.is_empty(), notes.is_empty()) {
            (false, _) => "DIFF",
            (true, false) => "note",
            (true, true) => "same",
        };
        let _ = writeln!(
            table,
            "{verdict:4} {proto} {name:28} {:5} knot={:8} meshdns={}",
            rtype.to_string(),
            k.rcode,
            g.rcode
        );
        mismatches += usize::from(!diff.is_empty());
        note_count += usize::from(!notes.is_empty());
        for line in diff.iter().chain(&notes) {
            let _ = writeln!(table, "       - {line}");
        }
        if !diff.is_empty() {
            let _ = writeln!(diffs, "{proto} {name} {rtype}:");
            for line in &diff {
                let _ = writeln!(diffs, "    - {line}");
            }
        }
    }
    println!("{table}");
    println!(
        "{} queries x UDP/TCP: {mismatches} of {} exchanges differ, {note_count} with notes",
        queries.len(),
        queries.len() * 2
    );
    diffs
}

/// The additional section but OPT (an SRV target's addresses), sorted,
/// each record once: Knot repeats a target's addresses for every SRV
/// record that names it, meshdns sends them once (RFC 2181 §5 makes them
/// one RRset).
fn additional(m: &hickory_proto::op::Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .additionals
        .iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The example and the edge cases as a zone file, as `meshdns check
/// --output zone` prints it; the data both servers answer from.
fn reference_zone() -> String {
    let example = example_file();
    let edge = repo_path("tests/e2e/edge-cases.yaml");
    let (code, zone, stderr) = meshdns_check(&["--output", "zone", example.to_str().unwrap(), edge.to_str().unwrap()]);
    assert_eq!(code, 0, "meshdns check --output zone failed:\n{stderr}\n{zone}");
    zone
}

#[test]
#[ignore = "needs knotd"]
fn knot_reference_comparison() {
    // The zone Knot serves is what `meshdns check --output zone` prints.
    let (example, edge) = (example_file(), repo_path("tests/e2e/edge-cases.yaml"));
    let zone = reference_zone();
    // Print the zone without the 60 records of many.lots.global.
    let many = zone.lines().filter(|l| l.starts_with("many.lots.")).count();
    println!("---- meshdns check --output zone (minus {many} many.lots.global. records) ----");
    for l in zone.lines().filter(|l| !l.starts_with("many.lots.")) {
        println!("{l}");
    }
    println!("----");
    let soa: Vec<&str> = zone
        .lines()
        .find(|l| l.split_whitespace().any(|t| t == "SOA"))
        .unwrap_or_else(|| panic!("no SOA in zone output:\n{zone}"))
        .split_whitespace()
        .skip_while(|t| *t != "SOA")
        .collect();
    assert_eq!(soa.get(3), Some(&"1"), "SOA serial of `check --output zone`");
    let mut knot = Knot::serve(&zone);
    let knot_addr = knot.addr;

    let m = Meshdns::serve(&[&example, &edge], &[]);
    let diffs = compare_with_knot(knot_addr, m.dns, &knot_queries());
    knot.proc.assert_alive();
    assert!(diffs.is_empty(), "meshdns differs from Knot DNS:\n{diffs}");
}

// ---------------------------------------------------------------------------
// SRV from ServiceEntry ports (tests/e2e/srv.yaml)

fn srv_file() -> std::path::PathBuf {
    repo_path("tests/e2e/srv.yaml")
}

const SRV_CASES: &[Case] = &[
    case(
        "_HTTP._tcp.Web.srv.global",
        "SRV",
        "NOERROR",
        &[("_HTTP._tcp.Web.srv.global.", "SRV", "0 100 80 web.srv.global.")],
        false,
    ),
    case(
        "_dns._udp.api.srv.global",
        "SRV",
        "NOERROR",
        &[
            ("_dns._udp.api.srv.global.", "SRV", "0 100 53 api.srv.global."),
            ("_dns._udp.api.srv.global.", "SRV", "0 100 5353 api.srv.global."),
        ],
        false,
    ),
    case(
        "web.srv.global",
        "SRV",
        "NOERROR",
        &[
            ("web.srv.global.", "SRV", "0 100 80 web.srv.global."),
            ("web.srv.global.", "SRV", "0 100 53 web.srv.global."),
            ("web.srv.global.", "SRV", "0 100 8080 web.srv.global."),
        ],
        false,
    ),
    case("_tcp.web.srv.global", "SRV", "NOERROR", &[], true),
    case("_http._tcp.web.srv.global", "A", "NOERROR", &[], true),
    case("_nope._tcp.web.srv.global", "SRV", "NXDOMAIN", &[], true),
    case("_http._tcp.x.wild.srv.global", "SRV", "NOERROR", &[], true),
    case(
        "_http._tcp.h.wild.srv.global",
        "SRV",
        "NOERROR",
        &[("_http._tcp.h.wild.srv.global.", "SRV", "0 100 80 h.wild.srv.global.")],
        false,
    ),
    case(
        "_x._tcp.h.wild.srv.global",
        "A",
        "NOERROR",
        &[("_x._tcp.h.wild.srv.global.", "A", "240.1.0.3")],
        false,
    ),
    tcp(case(
        "_http._tcp.api.srv.global",
        "SRV",
        "NOERROR",
        &[("_http._tcp.api.srv.global.", "SRV", "0 100 80 api.srv.global.")],
        false,
    )),
    tcp(case("_nope._tcp.web.srv.global", "SRV", "NXDOMAIN", &[], true)),
];

#[test]
#[ignore = "needs dig and kdig"]
fn dig_and_kdig_srv() {
    let (dig_bin, kdig_bin) = (require_tool("dig"), require_tool("kdig"));
    let m = Meshdns::serve(&[&srv_file()], &[]);
    let mut failures = String::new();
    for (client, case_sensitive) in [("dig", true), ("kdig", false)] {
        for c in SRV_CASES {
            let mut args = vec![c.name, c.qtype];
            if c.tcp {
                args.push("+tcp");
            }
            let got = match client {
                "dig" => dig(&dig_bin, m.dns, &args),
                _ => kdig(&kdig_bin, m.dns, &args),
            };
            let bad = check_case(c, &got, case_sensitive);
            println!(
                "{client} {} {} tcp={}: {}",
                c.name,
                c.qtype,
                c.tcp,
                if bad.is_empty() { "ok" } else { "FAIL" }
            );
            if !bad.is_empty() {
                let _ = writeln!(
                    failures,
                    "{client} {} {}: {}\n{}",
                    c.name,
                    c.qtype,
                    bad.join("; "),
                    got.dump()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
    // The additional section as dig shows it: the target's addresses over
    // EDNS; without EDNS (512 bytes) 20 AAAA do not fit and are dropped,
    // with the answer whole and TC clear.
    let additional = |args: &[&str]| {
        let mut cmd = Command::new(&dig_bin);
        cmd.arg(format!("@{}", m.dns.ip()))
            .args([
                "-p",
                &m.dns.port().to_string(),
                "+noall",
                "+comments",
                "+answer",
                "+additional",
            ])
            .args(["+time=2", "+tries=2", "+ignore"])
            .args(args);
        let out = String::from_utf8(run_bounded(cmd, Duration::from_secs(15)).stdout).unwrap();
        // One space between fields: dig pads owners with tabs.
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let out = additional(&["_http._tcp.web.srv.global", "SRV"]);
    for want in [
        "web.srv.global. 30 IN A 240.1.0.1",
        "web.srv.global. 30 IN AAAA 2001:db8:1::1",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let out = additional(&["_http._tcp.many.srv.global", "SRV"]);
    assert_eq!(out.matches("IN AAAA").count(), 20, "{out}");
    let out = additional(&["+noedns", "_http._tcp.many.srv.global", "SRV"]);
    assert!(
        !out.contains("IN AAAA") && out.contains("IN SRV") && !out.contains(" tc"),
        "{out}"
    );
    let out = additional(&["+noedns", "ports.srv.global", "SRV"]);
    assert!(out.contains(" tc") && !out.contains("IN SRV"), "{out}");
}

#[test]
#[ignore = "needs knotd"]
fn knot_reference_comparison_srv() {
    let file = srv_file();
    let (code, zone, stderr) = meshdns_check(&["--output", "zone", file.to_str().unwrap()]);
    assert_eq!(code, 0, "meshdns check --output zone failed:\n{stderr}\n{zone}");
    assert!(
        zone.contains("_http._tcp.web.srv.global. 30 IN SRV 0 100 80 web.srv.global."),
        "{zone}"
    );
    let mut knot = Knot::serve(&zone);
    let m = Meshdns::serve(&[&file], &[]);
    use RecordType::*;
    let mut queries = Vec::new();
    for name in [
        "_http._tcp.web.srv.global.",
        "_HTTP._TCP.Web.Srv.Global.",
        "_dns._udp.web.srv.global.",
        "_grpc-web._tcp.web.srv.global.",
        "_http._tcp.api.srv.global.",
        "_dns._udp.api.srv.global.",
        "_metrics._tcp.api.srv.global.",
        "web.srv.global.",
        "api.srv.global.",
        "Api.SRV.global.",
        "bad.srv.global.",
        "_ok._tcp.bad.srv.global.",
        "_tcp.web.srv.global.",
        "_udp.web.srv.global.",
        "_udp.bad.srv.global.",
        "_nope._tcp.web.srv.global.",
        "_dns._tcp.web.srv.global.",
        "_http._tcp.srv.global.",
        "_http._tcp.h.wild.srv.global.",
        "h.wild.srv.global.",
        "x.wild.srv.global.",
        "_http._tcp.many.srv.global.",
        "many.srv.global.",
        "ports.srv.global.",
        "_p7._tcp.ports.srv.global.",
        // Not `_x._tcp.h.wild.srv.global.` or `_tcp.h.wild.srv.global.`:
        // the wildcard answers them for meshdns (Istio's matching), Knot
        // follows RFC 4592 (NXDOMAIN, NODATA).
    ] {
        queries.extend([(name, SRV), (name, A), (name, AAAA)]);
    }
    queries.extend([("_http._tcp.web.srv.global.", ANY), ("_http._tcp.web.srv.global.", TXT)]);
    let diffs = compare_with_knot(knot.addr, m.dns, &queries);
    knot.proc.assert_alive();
    assert!(diffs.is_empty(), "meshdns differs from Knot DNS:\n{diffs}");
}

// ---------------------------------------------------------------------------
// Several zones at once, and --exported-only

const ZONE_FLAGS: &[&str] = &[
    "--zone",
    "global",
    "--zone",
    "mesh.internal",
    "--zone",
    "inner.west.global",
];

fn zones_file() -> std::path::PathBuf {
    repo_path("tests/e2e/zones.yaml")
}

/// A query against `tests/e2e/zones.yaml` served with [`ZONE_FLAGS`]: the
/// rcode, the answer as (owner, type, rdata prefix), and the owner of the
/// SOA a negative answer carries.
struct ZoneCase {
    name: &'static str,
    qtype: &'static str,
    rcode: &'static str,
    answer: &'static [(&'static str, &'static str, &'static str)],
    soa: Option<&'static str>,
}

const fn zc(
    name: &'static str,
    qtype: &'static str,
    rcode: &'static str,
    answer: &'static [(&'static str, &'static str, &'static str)],
    soa: Option<&'static str>,
) -> ZoneCase {
    ZoneCase {
        name,
        qtype,
        rcode,
        answer,
        soa,
    }
}

const SOA_RDATA: &str = "localhost. nobody.invalid. ";

const ZONE_CASES: &[ZoneCase] = &[
    // One entry, a host in each forward zone.
    zc(
        "svc.shop.global",
        "A",
        "NOERROR",
        &[("svc.shop.global.", "A", "240.1.0.1")],
        None,
    ),
    zc(
        "Svc.Shop.Mesh.Internal",
        "AAAA",
        "NOERROR",
        &[("Svc.Shop.Mesh.Internal.", "AAAA", "2001:db8:1::1")],
        None,
    ),
    // Each zone its own SOA and NS.
    zc("global", "SOA", "NOERROR", &[("global.", "SOA", SOA_RDATA)], None),
    zc(
        "mesh.internal",
        "SOA",
        "NOERROR",
        &[("mesh.internal.", "SOA", SOA_RDATA)],
        None,
    ),
    zc(
        "mesh.internal",
        "NS",
        "NOERROR",
        &[("mesh.internal.", "NS", "localhost.")],
        None,
    ),
    zc(
        "inner.west.global",
        "SOA",
        "NOERROR",
        &[("inner.west.global.", "SOA", SOA_RDATA)],
        None,
    ),
    zc(
        "inner.west.global",
        "NS",
        "NOERROR",
        &[("inner.west.global.", "NS", "localhost.")],
        None,
    ),
    // Negative answers carry the SOA of the zone they fall in.
    zc("nope.global", "A", "NXDOMAIN", &[], Some("global.")),
    zc("nope.mesh.internal", "A", "NXDOMAIN", &[], Some("mesh.internal.")),
    zc("Nope.Mesh.Internal", "AAAA", "NXDOMAIN", &[], Some("Mesh.Internal.")),
    zc("shop.mesh.internal", "A", "NOERROR", &[], Some("mesh.internal.")),
    zc("svc.shop.mesh.internal", "TXT", "NOERROR", &[], Some("mesh.internal.")),
    zc(
        "x.wild.mesh.internal",
        "A",
        "NOERROR",
        &[("x.wild.mesh.internal.", "A", "240.1.0.3")],
        None,
    ),
    // The nested zone owns its names; the name between is the outer zone's
    // empty non-terminal.
    zc(
        "api.inner.west.global",
        "A",
        "NOERROR",
        &[("api.inner.west.global.", "A", "240.1.0.2")],
        None,
    ),
    zc(
        "api.inner.west.global",
        "AAAA",
        "NOERROR",
        &[],
        Some("inner.west.global."),
    ),
    zc(
        "nope.inner.west.global",
        "A",
        "NXDOMAIN",
        &[],
        Some("inner.west.global."),
    ),
    zc("west.global", "A", "NOERROR", &[], Some("global.")),
    zc("x.west.global", "A", "NXDOMAIN", &[], Some("global.")),
    zc("internal", "A", "REFUSED", &[], None),
];

/// Problems with one reply to a [`ZoneCase`]; owners compared
/// case-insensitively unless `owner_case`.
fn check_zone_case(c: &ZoneCase, got: &Reply, owner_case: bool) -> Vec<String> {
    let same = |a: &str, b: &str| if owner_case { a == b } else { a.eq_ignore_ascii_case(b) };
    let mut bad = Vec::new();
    if got.rcode != c.rcode || got.aa() == (c.rcode == "REFUSED") {
        bad.push(format!("rcode {} aa {}", got.rcode, got.aa()));
    }
    let answer_ok = got.answer.len() == c.answer.len()
        && got.answer.iter().zip(c.answer).all(|(r, (owner, rtype, rdata))| {
            same(&r.name, owner) && r.rtype == *rtype && r.rdata.starts_with(rdata) && r.ttl == TTL
        });
    if !answer_ok {
        bad.push(format!("answer, want {:?}", c.answer));
    }
    let soa: Vec<&Rr> = got.authority.iter().filter(|r| r.rtype == "SOA").collect();
    let soa_ok = match c.soa {
        Some(owner) => {
            got.authority.len() == 1
                && soa.len() == 1
                && same(&soa[0].name, owner)
                && soa[0].ttl == NEG_TTL
                && soa[0].rdata.starts_with(SOA_RDATA)
        }
        None => got.authority.is_empty(),
    };
    if !soa_ok {
        bad.push(format!("authority, want the SOA of {:?}", c.soa));
    }
    bad
}

#[test]
#[ignore = "needs dig and kdig"]
fn dig_and_kdig_several_zones() {
    let (dig_bin, kdig_bin) = (require_tool("dig"), require_tool("kdig"));
    let m = Meshdns::serve(&[&zones_file()], ZONE_FLAGS);
    let mut failures = String::new();
    for c in ZONE_CASES {
        for (client, tcp) in [("dig", false), ("dig", true), ("kdig", false), ("kdig", true)] {
            let mut args = vec![c.name, c.qtype];
            if tcp {
                args.push("+tcp");
            }
            // kdig lower-cases the query name, so only dig shows the case kept.
            let got = match client {
                "dig" => dig(&dig_bin, m.dns, &args),
                _ => kdig(&kdig_bin, m.dns, &args),
            };
            let bad = check_zone_case(c, &got, client == "dig");
            let proto = if tcp { "tcp" } else { "udp" };
            println!(
                "{client} {proto} {} {}: {}",
                c.name,
                c.qtype,
                if bad.is_empty() { "ok" } else { "FAIL" }
            );
            if !bad.is_empty() {
                let _ = writeln!(
                    failures,
                    "{client} {proto} {} {}: {}\n{}",
                    c.name,
                    c.qtype,
                    bad.join("; "),
                    got.dump()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
#[ignore = "needs knotd"]
fn knot_reference_comparison_several_zones() {
    let file = zones_file();
    let mut args = vec!["--output", "zone"];
    args.extend(ZONE_FLAGS);
    args.push(file.to_str().unwrap());
    let (code, zones, stderr) = meshdns_check(&args);
    assert_eq!(code, 0, "meshdns check --output zone failed:\n{stderr}\n{zones}");
    println!("---- meshdns check --output zone ----\n{zones}----");
    // Knot serves each zone on its own, with the nested zone delegated in
    // `global`, as `check` writes it.
    assert!(
        zones.contains("inner.west.global. 30 IN NS localhost."),
        "no delegation of the nested zone:\n{zones}"
    );
    let mut knot = Knot::serve(&zones);
    let m = Meshdns::serve(&[&file], ZONE_FLAGS);
    use RecordType::*;
    let mut queries = Vec::new();
    for zone in ["global.", "mesh.internal.", "inner.west.global.", "Mesh.INTERNAL."] {
        queries.extend([(zone, SOA), (zone, NS), (zone, A), (zone, TXT)]);
    }
    for name in [
        "svc.shop.global.",
        "svc.shop.mesh.internal.",
        "SVC.shop.Mesh.Internal.",
        "shop.global.",
        "shop.mesh.internal.",
        "nope.global.",
        "nope.mesh.internal.",
        "Nope.Mesh.Internal.",
        "x.wild.mesh.internal.",
        "a.b.wild.mesh.internal.",
        "wild.mesh.internal.",
        "api.inner.west.global.",
        "nope.inner.west.global.",
        "a.b.inner.west.global.",
        "west.global.",
        "West.GLOBAL.",
        "x.west.global.",
        "internal.",
        "mesh.internal.example.",
    ] {
        queries.extend([(name, A), (name, AAAA)]);
    }
    queries.extend([("svc.shop.mesh.internal.", MX), ("api.inner.west.global.", TXT)]);
    let diffs = compare_with_knot(knot.addr, m.dns, &queries);
    knot.proc.assert_alive();
    assert!(diffs.is_empty(), "meshdns differs from Knot DNS:\n{diffs}");
}

// ---------------------------------------------------------------------------
// PTR in reverse zones (tests/e2e/zones.yaml with --reverse-zone)

const REVERSE_FLAGS: &[&str] = &[
    "--zone",
    "global",
    "--zone",
    "mesh.internal",
    "--zone",
    "inner.west.global",
    "--reverse-zone",
    "240.in-addr.arpa",
    "--reverse-zone",
    "2001:db8::/32",
];

/// `check --output zone` writes the forward and reverse zones; Knot
/// serving them answers as meshdns does: PTR for IPv4 and IPv6, an
/// address two hosts share, the reverse apexes, NXDOMAIN and NODATA with
/// the reverse zone's SOA, REFUSED outside every zone.
#[test]
#[ignore = "needs knotd"]
fn knot_reference_comparison_reverse_zones() {
    let file = zones_file();
    let mut args = vec!["--output", "zone"];
    args.extend(REVERSE_FLAGS);
    args.push(file.to_str().unwrap());
    let (code, zones, stderr) = meshdns_check(&args);
    assert_eq!(code, 0, "meshdns check --output zone failed:\n{stderr}\n{zones}");
    println!("---- meshdns check --output zone ----\n{zones}----");
    assert!(
        zones.contains("1.0.1.240.in-addr.arpa. 30 IN PTR svc.shop.global.")
            && zones.contains("$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa."),
        "{zones}"
    );
    let mut knot = Knot::serve(&zones);
    let m = Meshdns::serve(&[&file], REVERSE_FLAGS);
    use RecordType::*;
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let mut queries = Vec::new();
    for zone in ["240.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa.", "240.IN-ADDR.Arpa."] {
        queries.extend([(zone, SOA), (zone, NS), (zone, PTR), (zone, A)]);
    }
    for name in [
        // Shared by two hosts of one entry.
        "1.0.1.240.in-addr.arpa.",
        "1.0.1.240.IN-ADDR.ARPA.",
        "2.0.1.240.in-addr.arpa.",
        v6,
        // Wildcard hosts have none.
        "3.0.1.240.in-addr.arpa.",
        "9.0.1.240.in-addr.arpa.",
        "0.1.240.in-addr.arpa.",
        "1.240.in-addr.arpa.",
        "2.240.in-addr.arpa.",
        "1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        "0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        "2.0.1.10.in-addr.arpa.",
        "in-addr.arpa.",
    ] {
        queries.extend([(name, PTR), (name, A), (name, AAAA)]);
    }
    queries.extend([("1.0.1.240.in-addr.arpa.", ANY), ("1.0.1.240.in-addr.arpa.", TXT)]);
    // The forward zones still answer.
    queries.extend([("svc.shop.global.", A), ("svc.shop.mesh.internal.", AAAA)]);
    let diffs = compare_with_knot(knot.addr, m.dns, &queries);
    knot.proc.assert_alive();
    assert!(diffs.is_empty(), "meshdns differs from Knot DNS:\n{diffs}");
}

/// PTR through dig and kdig, UDP and TCP.
#[test]
#[ignore = "needs dig and kdig"]
fn dig_and_kdig_ptr() {
    let (dig_bin, kdig_bin) = (require_tool("dig"), require_tool("kdig"));
    let m = Meshdns::serve(&[&zones_file()], REVERSE_FLAGS);
    for tcp in [false, true] {
        let mut args = vec!["-x", "240.1.0.1"];
        if tcp {
            args.push("+tcp");
        }
        let r = dig(&dig_bin, m.dns, &args);
        assert_eq!(
            r.answers("PTR"),
            ["svc.shop.global.", "svc.shop.mesh.internal."],
            "{}",
            r.dump()
        );
        let r = kdig(&kdig_bin, m.dns, &args);
        assert_eq!(
            r.answers("PTR"),
            ["svc.shop.global.", "svc.shop.mesh.internal."],
            "{}",
            r.dump()
        );
        let mut args = vec!["-x", "2001:db8:1::1"];
        if tcp {
            args.push("+tcp");
        }
        let r = dig(&dig_bin, m.dns, &args);
        assert_eq!(
            r.answers("PTR"),
            ["svc.shop.global.", "svc.shop.mesh.internal."],
            "{}",
            r.dump()
        );
        let r = dig(&dig_bin, m.dns, &["-x", "240.1.0.9"]);
        assert!(r.rcode == "NXDOMAIN" && r.has_soa_authority(), "{}", r.dump());
        let r = dig(&dig_bin, m.dns, &["-x", "10.1.0.1"]);
        assert_eq!(r.rcode, "REFUSED", "{}", r.dump());
    }
}

#[test]
#[ignore = "needs dig"]
fn exported_only_end_to_end() {
    let dig_bin = require_tool("dig");
    let file = repo_path("tests/e2e/export-to.yaml");
    let names = ["unset", "all", "mixed", "own", "hidden", "listed"];
    for exported_only in [false, true] {
        let flags: &[&str] = if exported_only { &["--exported-only"] } else { &[] };
        let m = Meshdns::serve(&[&file], flags);
        for (i, name) in names.iter().enumerate() {
            let qname = format!("{name}.shop.global");
            let r = dig(&dig_bin, m.dns, &[&qname, "A"]);
            if !exported_only || i < 3 {
                assert_eq!(r.answers("A"), [format!("240.2.0.{}", i + 1)], "{qname}\n{}", r.dump());
            } else {
                assert!(r.rcode == "NXDOMAIN" && r.has_soa_authority(), "{qname}\n{}", r.dump());
            }
        }
        let (code, body) = http_get(m.admin, "/metrics").unwrap();
        assert_eq!(code, 200);
        let counted = body
            .lines()
            .find(|l| l.starts_with("meshdns_skipped_total{reason=\"not_exported\"}"));
        match exported_only {
            true => assert_eq!(counted.and_then(|l| l.split_whitespace().last()), Some("3"), "{body}"),
            false => assert_eq!(counted, None, "{body}"),
        }

        // `check` with the same flag lists what serve serves and why.
        let mut args = flags.to_vec();
        args.push(file.to_str().unwrap());
        let (code, out, stderr) = meshdns_check(&args);
        assert_eq!(code, 0, "{stderr}");
        println!("---- meshdns check {args:?} ----\n{out}");
        let skipped: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("exportTo does not include"))
            .collect();
        match exported_only {
            true => {
                assert_eq!(skipped.len(), 3, "{out}");
                for name in ["own", "hidden", "listed"] {
                    assert!(
                        skipped
                            .iter()
                            .any(|l| l.trim_start().starts_with(&format!("shop/{name}  *: "))),
                        "{out}"
                    );
                }
                assert!(out.contains("3 records, 3 skipped"), "{out}");
            }
            false => assert!(skipped.is_empty() && out.contains("6 records, 0 skipped"), "{out}"),
        }
    }
}

/// One datagram to `server` from a fresh socket; the reply, or `None`
/// after 700 ms.
fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    sock.send_to(packet, server).unwrap();
    let mut buf = vec![0; 65535];
    let n = sock.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Every case in `tests/malformed/cases.rs` to Knot and to the release
/// binary on the same data, each followed by a good query: both must give
/// the table's replies (rcode, opcode, header flags, section counts, or no
/// reply), so they agree except where the table says why they do not.
#[test]
#[ignore = "needs knotd"]
fn malformed_input_against_knot() {
    let mut knot = Knot::serve(&reference_zone());
    let mut m = Meshdns::serve(&[&example_file(), &repo_path("tests/e2e/edge-cases.yaml")], &[]);
    let (mut table, mut failures, mut differ) = (String::new(), String::new(), 0);
    let cases = malformed::cases();
    for case in &cases {
        let k = malformed::summary(udp_exchange(knot.addr, &case.packet).as_deref());
        let g = malformed::summary(udp_exchange(m.dns, &case.packet).as_deref());
        let (want_knot, why) = case.knot.unwrap_or((case.want, ""));
        let mut bad = Vec::new();
        if g != case.want {
            bad.push(format!("meshdns `{g}`, want `{}`", case.want));
        }
        if k != want_knot {
            bad.push(format!("knot `{k}`, the table says `{want_knot}`"));
        }
        for (who, server) in [("knot", knot.addr), ("meshdns", m.dns)] {
            let good = malformed::summary(udp_exchange(server, malformed::GOOD).as_deref());
            if good != malformed::GOOD_ANSWER {
                bad.push(format!("then {who} answered the good query `{good}`"));
            }
        }
        let verdict = match (bad.is_empty(), k == g) {
            (false, _) => "FAIL",
            (true, true) => "same",
            (true, false) => "doc",
        };
        differ += usize::from(k != g);
        let _ = writeln!(table, "{verdict:4} {:42} knot={k:32} meshdns={g}", case.name);
        if !why.is_empty() {
            let _ = writeln!(table, "       - {why}");
        }
        if !bad.is_empty() {
            let _ = writeln!(failures, "{}: {}", case.name, bad.join("; "));
        }
    }
    println!("{table}");
    println!(
        "{} cases: {differ} answered differently by Knot, each for the reason given",
        cases.len()
    );
    m.proc.assert_alive();
    knot.proc.assert_alive();
    assert!(failures.is_empty(), "{failures}");
}

// ---------------------------------------------------------------------------
// 5. Hot reload

/// Edits must be applied within this long (contract).
const RELOAD_DEADLINE: Duration = Duration::from_secs(1);
/// Poll this long before declaring an edit never applied.
const RELOAD_GIVE_UP: Duration = Duration::from_secs(5);

/// Records how long each edit took to show up.
struct Reload<'a> {
    dns: SocketAddr,
    latencies: Vec<(String, Duration)>,
    proc: &'a mut Proc,
}

impl Reload<'_> {
    /// A records of `name` now, or None for NXDOMAIN.
    fn lookup(&self, name: &str) -> Option<Option<Vec<String>>> {
        let m = query_udp_once(self.dns, name, RecordType::A).ok()?;
        let r = Reply::from_message(&m, false);
        match r.rcode.as_str() {
            "NXDOMAIN" => Some(None),
            "NOERROR" => Some(Some(r.answers("A"))),
            _ => None,
        }
    }

    /// Waits for `name` to resolve to `want` (None = NXDOMAIN) after `step`.
    fn expect(&mut self, step: &str, name: &str, want: Option<&str>) {
        let want: Option<Vec<String>> = want.map(|a| vec![a.to_string()]);
        let mut last = None;
        let took = poll_until(RELOAD_GIVE_UP, Duration::from_millis(10), || {
            last = self.lookup(name);
            last.as_ref() == Some(&want)
        });
        self.proc.assert_alive();
        let Some(took) = took else {
            panic!("{step}: {name} A never became {want:?} within {RELOAD_GIVE_UP:?}; last: {last:?}");
        };
        println!("reload: {step}: {name} -> {want:?} after {took:?}");
        self.latencies.push((step.to_string(), took));
    }

    /// Asserts `name` resolves to `want` right now and keeps doing so.
    fn steady(&mut self, step: &str, name: &str, want: Option<&str>) {
        let want: Option<Vec<String>> = want.map(|a| vec![a.to_string()]);
        for _ in 0..5 {
            let got = self.lookup(name);
            assert_eq!(got, Some(want.clone()), "{step}: {name} A");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.assert_alive();
    }

    fn finish(self) {
        let slow: Vec<String> = self
            .latencies
            .iter()
            .filter(|(_, d)| *d > RELOAD_DEADLINE)
            .map(|(s, d)| format!("{s}: {d:?}"))
            .collect();
        assert!(
            slow.is_empty(),
            "edits applied later than {RELOAD_DEADLINE:?}: {slow:?}"
        );
    }
}

/// Editor-style save: write a temp file next to it, then rename over it.
fn atomic_write(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn append(path: &Path, content: &str) {
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
}

#[test]
fn hot_reload_directory() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.yaml");
    let extra = dir.path().join("extra.yml");
    let alpha = |ip: &str| service_entry("alpha", &["alpha.hot.global"], &[ip]);
    let gamma = service_entry("gamma", &["gamma.hot.global"], &["240.1.0.3"]);
    fs::write(&svc, alpha("240.1.0.1")).unwrap();

    let dir_arg = dir.path();
    let mut m = Meshdns::serve(&[dir_arg], &[]);
    let mut r = Reload {
        dns: m.dns,
        latencies: Vec::new(),
        proc: &mut m.proc,
    };
    r.steady("initial", "alpha.hot.global", Some("240.1.0.1"));
    r.steady("initial", "beta.hot.global", None);

    // (a) add: a new file, then a document appended to the existing one.
    fs::write(&extra, service_entry("beta", &["beta.hot.global"], &["240.1.0.2"])).unwrap();
    r.expect("new file", "beta.hot.global", Some("240.1.0.2"));
    append(&svc, &format!("---\n{gamma}"));
    r.expect("append document", "gamma.hot.global", Some("240.1.0.3"));
    r.steady("append document", "alpha.hot.global", Some("240.1.0.1"));

    // (b) change an address: editor-style atomic replace, then in-place.
    atomic_write(&svc, &format!("{}---\n{gamma}", alpha("240.1.0.11")));
    r.expect("atomic replace", "alpha.hot.global", Some("240.1.0.11"));
    r.steady("atomic replace", "gamma.hot.global", Some("240.1.0.3"));
    fs::write(&extra, service_entry("beta", &["beta.hot.global"], &["240.1.0.12"])).unwrap();
    r.expect("in-place rewrite", "beta.hot.global", Some("240.1.0.12"));

    // (c) delete: a whole file, then one document of a file.
    fs::remove_file(&extra).unwrap();
    r.expect("delete file", "beta.hot.global", None);
    atomic_write(&svc, &alpha("240.1.0.11"));
    r.expect("remove document", "gamma.hot.global", None);

    // (d) invalid YAML: last good state stays, the error names file and line.
    let broken = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: alpha\n  namespace: test: broken\nspec:\n  hosts:\n  - alpha.hot.global\n  addresses:\n  - 240.1.0.99\n";
    let seen = r.proc.log().len();
    fs::write(&svc, broken).unwrap();
    // The first new error line naming the file after the write.
    let mut err_line = None;
    poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        let log = r.proc.log();
        err_line = log
            .get(seen..)
            .unwrap_or_default()
            .lines()
            .find(|l| {
                let lower = l.to_lowercase();
                l.contains("services.yaml") && (lower.contains("error") || lower.contains("invalid"))
            })
            .map(str::to_string);
        err_line.is_some()
    });
    let err_line = err_line.unwrap_or_else(|| {
        panic!(
            "no error log line naming services.yaml after invalid YAML:\n{}",
            r.proc.log()
        )
    });
    println!("reload: invalid YAML logged: {err_line}");
    assert!(
        ["line 5", "line=5", "line: 5", ":5:"]
            .iter()
            .any(|p| err_line.contains(p)),
        "error log line does not name line 5 of services.yaml: {err_line}"
    );
    std::thread::sleep(RELOAD_DEADLINE);
    r.steady("invalid YAML", "alpha.hot.global", Some("240.1.0.11"));
    assert!(
        http_get(m.admin, "/healthz").is_ok_and(|(c, _)| c == 200),
        "/healthz after invalid YAML"
    );

    // ...and the fixed file is picked up.
    atomic_write(&svc, &alpha("240.1.0.21"));
    r.expect("fix invalid YAML", "alpha.hot.global", Some("240.1.0.21"));
    r.finish();
}

/// `--file` naming a single file that an editor replaces by rename (a watch
/// on the old inode would miss it).
#[test]
fn hot_reload_single_file_rename() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("one.yaml");
    let one = |ip: &str| service_entry("one", &["one.hot.global"], &[ip]);
    fs::write(&svc, one("240.2.0.1")).unwrap();
    // A second --file: both sources are served side by side.
    let mut m = Meshdns::serve(&[&svc, &example_file()], &[]);
    let mut r = Reload {
        dns: m.dns,
        latencies: Vec::new(),
        proc: &mut m.proc,
    };
    r.steady("initial", "one.hot.global", Some("240.2.0.1"));
    for (i, ip) in ["240.2.0.2", "240.2.0.3", "240.2.0.4"].iter().enumerate() {
        atomic_write(&svc, &one(ip));
        r.expect(&format!("rename #{}", i + 1), "one.hot.global", Some(ip));
    }
    fs::write(&svc, one("240.2.0.5")).unwrap();
    r.expect("in-place after renames", "one.hot.global", Some("240.2.0.5"));
    r.steady("other --file", "httpbin.bar.global", Some("240.0.0.2"));
    r.finish();
}

/// A Kubernetes ConfigMap volume: kubelet never touches `services.yaml`; it
/// writes a new `..<timestamp>` dir and atomically swaps the `..data` symlink.
#[test]
fn hot_reload_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cm = |ip: &str| service_entry("cm", &["cm.hot.global"], &[ip]);
    let publish = |generation: u32, ip: &str| {
        let ts = root.join(format!("..2024_01_01_00_00_0{generation}.000"));
        fs::create_dir(&ts).unwrap();
        fs::write(ts.join("services.yaml"), cm(ip)).unwrap();
        let tmp = root.join("..data_tmp");
        symlink(ts.file_name().unwrap(), &tmp).unwrap();
        let old = fs::read_link(root.join("..data")).ok();
        fs::rename(&tmp, root.join("..data")).unwrap();
        if let Some(old) = old {
            fs::remove_dir_all(root.join(old)).unwrap();
        }
    };
    publish(1, "240.3.0.1");
    symlink("..data/services.yaml", root.join("services.yaml")).unwrap();

    let mut m = Meshdns::serve(&[root], &[]);
    let mut r = Reload {
        dns: m.dns,
        latencies: Vec::new(),
        proc: &mut m.proc,
    };
    r.steady("initial", "cm.hot.global", Some("240.3.0.1"));
    publish(2, "240.3.0.2");
    r.expect("configmap update #1", "cm.hot.global", Some("240.3.0.2"));
    publish(3, "240.3.0.3");
    r.expect("configmap update #2", "cm.hot.global", Some("240.3.0.3"));
    r.finish();
}

/// Watches follow paths, not the inodes seen at start-up: relative paths,
/// a directory deleted and made again, a retargeted directory symlink, a
/// file symlinked from elsewhere, and a rewrite that keeps size and mtime.
#[test]
fn hot_reload_follows_paths_not_inodes() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let se = |name: &str, ip: &str| service_entry(name, &[&format!("{name}.hot.global")], &[ip]);
    fs::write(root.join("entries.conf"), se("rel", "240.5.0.1")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/a.yaml"), se("redo", "240.5.1.1")).unwrap();
    for v in ["v1", "v2", "real", "etc"] {
        fs::create_dir(root.join(v)).unwrap();
    }
    fs::write(root.join("v1/s.yaml"), se("link", "240.5.2.1")).unwrap();
    symlink("v1", root.join("cur")).unwrap();
    fs::write(root.join("real/se.yaml"), se("far", "240.5.3.1")).unwrap();
    symlink(root.join("real/se.yaml"), root.join("etc/se.yaml")).unwrap();

    let files = ["entries.conf", "d", "cur", "etc/se.yaml"].map(Path::new);
    let mut m = Meshdns::serve_in(Some(root), &files, &[]);
    let mut r = Reload {
        dns: m.dns,
        latencies: Vec::new(),
        proc: &mut m.proc,
    };
    r.steady("initial", "rel.hot.global", Some("240.5.0.1"));

    fs::write(root.join("entries.conf"), se("rel", "240.5.0.2")).unwrap();
    r.expect("relative path, no .yaml", "rel.hot.global", Some("240.5.0.2"));

    fs::remove_dir_all(root.join("d")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/a.yaml"), se("redo", "240.5.1.2")).unwrap();
    r.expect("directory made again", "redo.hot.global", Some("240.5.1.2"));
    fs::write(root.join("d/a.yaml"), se("redo", "240.5.1.3")).unwrap();
    r.expect("edit in the new directory", "redo.hot.global", Some("240.5.1.3"));
    fs::rename(root.join("d"), root.join("d.old")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/a.yaml"), se("redo", "240.5.1.4")).unwrap();
    r.expect("directory moved away, made again", "redo.hot.global", Some("240.5.1.4"));
    fs::write(root.join("d/a.yaml"), se("redo", "240.5.1.5")).unwrap();
    r.expect("edit after the move", "redo.hot.global", Some("240.5.1.5"));

    fs::write(root.join("v2/s.yaml"), se("link", "240.5.2.2")).unwrap();
    symlink("v2", root.join("cur.tmp")).unwrap();
    fs::rename(root.join("cur.tmp"), root.join("cur")).unwrap();
    r.expect("directory symlink retargeted", "link.hot.global", Some("240.5.2.2"));
    fs::write(root.join("v2/s.yaml"), se("link", "240.5.2.3")).unwrap();
    r.expect("edit in the new target", "link.hot.global", Some("240.5.2.3"));

    fs::write(root.join("real/se.yaml"), se("far", "240.5.3.2")).unwrap();
    r.expect("symlinked file edited where it is", "far.hot.global", Some("240.5.3.2"));

    // Same size, and the mtime put back (cp -p, rsync -t): only ctime moves.
    let conf = root.join("entries.conf");
    let mtime = fs::metadata(&conf).unwrap().modified().unwrap();
    fs::write(&conf, se("rel", "240.5.0.3")).unwrap();
    fs::File::options()
        .write(true)
        .open(&conf)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    r.expect("same size and mtime", "rel.hot.global", Some("240.5.0.3"));
    r.finish();
}

/// Once an edit is applied the watcher must sleep until the next change
/// (inotify, no polling): the process should not keep waking up.
#[test]
fn file_watch_idle_after_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.yaml");
    let entry = |ip: &str| service_entry("idle", &["idle.hot.global"], &[ip]);
    fs::write(&file, entry("240.4.0.1")).unwrap();
    let mut m = Meshdns::serve(&[dir.path()], &[]);
    let pid = m.proc.pid();
    let window = Duration::from_secs(2);
    let wakeups = |what: &str| {
        let a = context_switches(pid).expect("/proc/<pid>/task/*/status");
        std::thread::sleep(window);
        let n = context_switches(pid).unwrap() - a;
        println!("idle: {n} context switches in {window:?} {what}");
        n
    };
    let before = wakeups("before any edit");

    fs::write(&file, entry("240.4.0.2")).unwrap();
    let mut r = Reload {
        dns: m.dns,
        latencies: Vec::new(),
        proc: &mut m.proc,
    };
    r.expect("edit", "idle.hot.global", Some("240.4.0.2"));
    r.finish();
    std::thread::sleep(Duration::from_millis(500));
    let after = wakeups("after the edit was applied");
    assert!(
        after <= before + 10,
        "meshdns keeps waking up with no file changes: {after} context switches in \
         {window:?} after one edit vs {before} before it (a rescan re-triggering itself?)"
    );

    // A busy log beside the watched directory wakes nothing.
    let neighbour = dir.path().with_extension("log");
    let a = context_switches(pid).unwrap();
    for i in 0..200 {
        fs::write(&neighbour, format!("line {i}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let busy = context_switches(pid).unwrap() - a;
    fs::remove_file(&neighbour).unwrap();
    println!("idle: {busy} context switches during 200 writes beside the directory");
    assert!(
        busy <= before + 10,
        "writes beside the watched directory wake meshdns: {busy} context switches vs {before} idle"
    );
}

// ---------------------------------------------------------------------------
// meshdns check

#[test]
fn check_exit_codes() {
    let example = example_file();
    let (code, out, err) = meshdns_check(&[example.to_str().unwrap()]);
    assert_eq!(code, 0, "check on the example:\n{out}\n{err}");
    assert!(out.contains("httpbin.bar.global"), "check output:\n{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "kind: ServiceEntry\nspec:\n  hosts: [a.bar.global\n").unwrap();
    let (code, out, err) = meshdns_check(&[example.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(code, 1, "check with an invalid manifest:\n{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("bad.yaml"),
        "check does not name the invalid file:\n{out}\n{err}"
    );

    // Names over the per-name address limit: check says what serve serves.
    let big = dir.path().join("big.yaml");
    let addrs: Vec<String> = (0..1200).map(|i| format!("240.7.{}.{}", i / 250, i % 250)).collect();
    let docs: Vec<String> = addrs
        .chunks(200)
        .enumerate()
        .map(|(i, chunk)| {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            service_entry(&format!("big{i}"), &["big.hot.global"], &refs)
        })
        .collect();
    fs::write(&big, docs.join("---\n")).unwrap();
    let (code, out, err) = meshdns_check(&[big.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("big.hot.global.  1200 addresses, 1000 served") && out.contains("1 names over the address limit"),
        "check output:\n{out}"
    );
}

/// `check` reports what `serve` serves: an object written twice in one file
/// is loaded once, so it is one record and no conflict.
#[test]
fn check_counts_an_object_written_twice_once() {
    let dir = tempfile::tempdir().unwrap();
    let twice = dir.path().join("twice.yaml");
    let one = service_entry("a", &["httpbin.twice.global"], &["240.9.0.1"]);
    fs::write(&twice, format!("{one}---\n{one}")).unwrap();
    let (code, out, err) = meshdns_check(&[twice.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("240.9.0.1").count(), 1, "check output:\n{out}");
    assert!(!out.contains("defined by"), "check output:\n{out}");
    // The A record and its port's two SRV records (the name and the host).
    assert!(
        out.contains("3 records, 0 skipped, 0 conflicts"),
        "check output:\n{out}"
    );
}

/// A writer that truncates first (`kubectl get … > file`) leaves an empty
/// file for a moment: the file's entries stay until real content arrives.
#[test]
fn truncated_file_keeps_its_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.yaml");
    fs::write(&svc, service_entry("alpha", &["alpha.trunc.global"], &["240.1.1.1"])).unwrap();
    let m = Meshdns::serve(&[dir.path()], &[]);
    let answer = |name: &str| query_udp(m.dns, name, RecordType::A).map(|r| Reply::from_message(&r, true).answers("A"));
    assert_eq!(answer("alpha.trunc.global.").unwrap(), ["240.1.1.1"]);

    fs::write(&svc, "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        answer("alpha.trunc.global.").unwrap(),
        ["240.1.1.1"],
        "empty file must not drop entries"
    );

    fs::write(&svc, service_entry("alpha", &["alpha.trunc.global"], &["240.1.1.2"])).unwrap();
    poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        answer("alpha.trunc.global.").is_ok_and(|a| a == ["240.1.1.2"])
    })
    .expect("new content served");
    fs::remove_file(&svc).unwrap();
    poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        query_udp(m.dns, "alpha.trunc.global.", RecordType::A)
            .is_ok_and(|r| r.metadata.response_code == ResponseCode::NXDomain)
    })
    .expect("deleting the file drops its entries");
}

/// At start-up there is no last good state: a broken file is an error, not
/// a ready server with an empty table.
#[test]
fn invalid_file_fails_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(
        &bad,
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: [oops\n",
    )
    .unwrap();
    let mut cmd = Command::new(MESHDNS);
    cmd.args([
        "serve",
        "--dns-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--file",
    ])
    .arg(&bad);
    let out = run_bounded(cmd, Duration::from_secs(10));
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "must not start: {stderr}");
    assert!(
        stderr.contains("invalid ServiceEntry manifests") && stderr.contains("bad.yaml: line "),
        "{stderr}"
    );
}
