//! Tier 2: the DNS server in-process on port 0, queried over real UDP and
//! TCP sockets with hand-built packets (hickory-proto encodes them), and
//! the malformed cases of `tests/malformed/cases.rs`.

#[path = "malformed/cases.rs"]
mod malformed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meshdns::admin::Readiness;
use meshdns::dns::metrics::DnsMetrics;
use meshdns::dns::slice::SliceMode;
use meshdns::dns::{Config, DnsServer, Handler, TcpLimits, Workers};
use meshdns::index::testing::{mk_entry, mk_host_entry, mk_index_with};
use meshdns::index::{Index, ZoneConfig, address_limit};
use meshdns::source::file;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/serviceentries.yaml");

struct Server {
    addr: SocketAddr,
    index: Arc<Index>,
    ready: Readiness,
    /// The server's metrics.
    registry: prometheus::Registry,
}

fn mk_index(ttl: u32, negative_ttl: u32) -> Arc<Index> {
    let config = ZoneConfig {
        ttl,
        negative_ttl,
        ..ZoneConfig::default()
    };
    Arc::new(mk_index_with(&["global"], config))
}

/// Serves the bundled example file on 127.0.0.1:0 from a background thread.
fn start() -> Server {
    start_with(mk_index(30, 5), synced())
}

fn synced() -> Readiness {
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    ready
}

/// `--workers auto`'s scheme with 2 standby readers, whatever the cores.
fn start_with(index: Arc<Index>, ready: Readiness) -> Server {
    start_configured(index, ready, Config::new(Workers::Auto { standby: 2 }))
}

fn start_configured(index: Arc<Index>, ready: Readiness, config: Config) -> Server {
    start_from(Path::new(EXAMPLE), index, ready, config)
}

/// Serves the manifests in `path` on 127.0.0.1:0 from a background thread.
fn start_from(path: &Path, index: Arc<Index>, ready: Readiness, config: Config) -> Server {
    let text = std::fs::read_to_string(path).unwrap();
    index.reset(&file::source_id(path), file::load(path, &text, &index).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let handler_index = index.clone();
    let handler_ready = ready.clone();
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = DnsServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                Handler::new(handler_index, handler_ready, metrics),
                config,
            )
            .unwrap();
            tx.send(server.local_addr()).unwrap();
            server.run().await.unwrap();
        });
    });
    Server {
        addr: rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        index,
        ready,
        registry,
    }
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

fn with_edns(mut m: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    m.set_edns(edns);
    m
}

impl Server {
    fn udp_raw(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        sock.send_to(packet, self.addr).unwrap();
        let mut buf = vec![0; 65535];
        let n = sock.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn udp(&self, m: &Message) -> Message {
        let bytes = self.udp_raw(&m.to_vec().unwrap()).expect("no UDP reply");
        Message::from_vec(&bytes).unwrap()
    }

    fn tcp(&self, m: &Message) -> Message {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let bytes = m.to_vec().unwrap();
        s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&bytes).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        Message::from_vec(&buf).unwrap()
    }

    fn ask(&self, name: &str, rtype: RecordType) -> Message {
        self.udp(&with_edns(query(name, rtype), 1232))
    }
}

fn rdata(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
        .collect()
}

fn assert_negative(r: &Message, rcode: ResponseCode, soa_ttl: u32) {
    assert_eq!(r.metadata.response_code, rcode);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty(), "{:?}", r.answers);
    assert_eq!(r.authorities.len(), 1);
    let soa = &r.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_string(), "global.");
    assert_eq!(soa.ttl, soa_ttl);
}

#[test]
fn known_name_is_an_authoritative_answer() {
    let s = start();
    let r = s.ask("httpbin.bar.global.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && !r.metadata.truncation && !r.metadata.recursion_available);
    assert!(r.metadata.recursion_desired, "RD is copied");
    assert_eq!(r.metadata.id, 4242);
    assert_eq!(rdata(&r.answers), ["httpbin.bar.global. 30 240.0.0.2"]);
    assert!(r.authorities.is_empty());
    // From Istio's status.addresses, and an IPv6 one.
    assert_eq!(
        rdata(&s.ask("details.bar.global.", RecordType::A).answers),
        ["details.bar.global. 30 240.240.0.5"]
    );
    assert_eq!(
        rdata(&s.ask("ratings.bar.global.", RecordType::AAAA).answers),
        ["ratings.bar.global. 30 2001:db8::7"]
    );
}

#[test]
fn existing_name_without_that_type_is_nodata() {
    let s = start();
    assert_negative(
        &s.ask("httpbin.bar.global.", RecordType::AAAA),
        ResponseCode::NoError,
        5,
    );
    assert_negative(&s.ask("ratings.bar.global.", RecordType::A), ResponseCode::NoError, 5);
    assert_negative(&s.ask("httpbin.bar.global.", RecordType::TXT), ResponseCode::NoError, 5);
    assert_negative(&s.ask("httpbin.bar.global.", RecordType::MX), ResponseCode::NoError, 5);
}

#[test]
fn unknown_name_is_nxdomain() {
    let s = start();
    assert_negative(&s.ask("nope.bar.global.", RecordType::A), ResponseCode::NXDomain, 5);
    assert_negative(&s.ask("nope.global.", RecordType::AAAA), ResponseCode::NXDomain, 5);
    assert_negative(
        &s.ask("x.httpbin.bar.global.", RecordType::A),
        ResponseCode::NXDomain,
        5,
    );
}

#[test]
fn empty_non_terminal_is_nodata() {
    let s = start();
    assert_negative(&s.ask("bar.global.", RecordType::A), ResponseCode::NoError, 5);
    assert_negative(&s.ask("baz.global.", RecordType::A), ResponseCode::NoError, 5);
}

#[test]
fn wildcards_answer_names_strictly_below() {
    let s = start();
    assert_eq!(
        rdata(&s.ask("x.baz.global.", RecordType::A).answers),
        ["x.baz.global. 30 240.0.0.3"]
    );
    assert_eq!(
        rdata(&s.ask("a.b.baz.global.", RecordType::A).answers),
        ["a.b.baz.global. 30 240.0.0.3"]
    );
    assert_negative(&s.ask("x.baz.global.", RecordType::AAAA), ResponseCode::NoError, 5);
}

#[test]
fn negative_ttl_is_min_of_soa_ttl_and_minimum() {
    let s = start_with(mk_index(3, 5), synced());
    assert_negative(&s.ask("nope.global.", RecordType::A), ResponseCode::NXDomain, 3);
    let r = s.ask("global.", RecordType::SOA);
    assert_eq!(r.answers[0].ttl, 3);
}

#[test]
fn apex_soa_and_ns() {
    let s = start();
    let r = s.ask("global.", RecordType::SOA);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1);
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("{:?}", r.answers)
    };
    assert_eq!(
        (soa.mname.to_string().as_str(), soa.rname.to_string().as_str()),
        ("localhost.", "nobody.invalid.")
    );
    assert_eq!((soa.refresh, soa.retry, soa.expire, soa.minimum), (3600, 600, 86400, 5));
    assert_eq!(
        rdata(&s.ask("global.", RecordType::NS).answers),
        ["global. 30 localhost."]
    );
    assert_negative(&s.ask("global.", RecordType::A), ResponseCode::NoError, 5);

    // The serial moves when the table changes.
    let serial = soa.serial;
    s.index
        .apply(mk_entry("ns/new", None, &[("new.global", &["240.0.0.9"])]));
    let r = s.ask("global.", RecordType::SOA);
    let RData::SOA(soa) = &r.answers[0].data else { panic!() };
    assert!(soa.serial > serial);
    assert_eq!(
        rdata(&s.ask("new.global.", RecordType::A).answers),
        ["new.global. 30 240.0.0.9"]
    );
}

#[test]
fn out_of_zone_is_refused_without_records() {
    let s = start();
    for (name, rtype) in [
        (".", RecordType::NS),
        ("example.com.", RecordType::A),
        ("xglobal.", RecordType::A),
    ] {
        let r = s.ask(name, rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
}

#[test]
fn names_echo_the_query_case() {
    let s = start();
    let r = s.ask("HtTpBiN.BaR.gLoBaL.", RecordType::A);
    assert_eq!(r.queries[0].name().to_string(), "HtTpBiN.BaR.gLoBaL.");
    assert_eq!(rdata(&r.answers), ["HtTpBiN.BaR.gLoBaL. 30 240.0.0.2"]);
    let r = s.ask("X.BAZ.Global.", RecordType::A);
    assert_eq!(rdata(&r.answers), ["X.BAZ.Global. 30 240.0.0.3"]);
    let r = s.ask("GLOBAL.", RecordType::NS);
    assert_eq!(rdata(&r.answers), ["GLOBAL. 30 localhost."]);
    // The SOA owner in negative answers is the query's zone suffix, as Knot's.
    let r = s.ask("Nope.GloBal.", RecordType::A);
    assert_eq!(r.authorities[0].name.to_string(), "GloBal.");
}

#[test]
fn edns_is_answered_with_our_payload() {
    let s = start();
    let r = s.ask("httpbin.bar.global.", RecordType::A);
    let edns = r.edns.as_ref().expect("OPT in reply");
    assert_eq!((edns.max_payload(), edns.version()), (1232, 0));
    // No OPT in, none out.
    assert!(s.udp(&query("httpbin.bar.global.", RecordType::A)).edns.is_none());
}

#[test]
fn edns_version_above_zero_is_badvers() {
    let s = start();
    let mut m = with_edns(query("httpbin.bar.global.", RecordType::A), 1232);
    m.edns.as_mut().unwrap().set_version(1);
    let r = s.udp(&m);
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    assert!(r.answers.is_empty());
}

#[test]
fn two_opt_records_are_formerr() {
    let s = start();
    let mut bytes = with_edns(query("httpbin.bar.global.", RecordType::A), 1232)
        .to_vec()
        .unwrap();
    // Append a second OPT (root name, type 41, class 1232, ttl 0, rdlen 0).
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    bytes[11] = 2;
    let r = Message::from_vec(&s.udp_raw(&bytes).expect("a reply")).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

/// An entry with `n` IPv4 addresses under `big.global`.
/// Serves `addrs` for `host` from an entry of its own, `ns/<entry>`.
fn add_host(s: &Server, entry: &str, host: &str, addrs: smallvec::SmallVec<[std::net::IpAddr; 1]>) {
    s.index.apply(mk_host_entry("ns", entry, host, addrs));
}

fn add_big(s: &Server, n: u32) {
    let addrs = (0..n)
        .map(|i| std::net::Ipv4Addr::from(0xf000_0000 | i).into())
        .collect();
    add_host(s, &format!("big{n}"), &format!("big{n}.global"), addrs);
}

#[test]
fn udp_truncation_never_splits_an_rrset() {
    let s = start();
    add_big(&s, 40); // 40 × 16 bytes: over 512, under 1232
    add_big(&s, 100); // over 1232

    let r = s.udp(&query("big40.global.", RecordType::A));
    assert!(r.metadata.truncation, "no EDNS: 512 bytes");
    assert!(r.answers.is_empty() && r.authorities.is_empty());
    assert_eq!(s.tcp(&query("big40.global.", RecordType::A)).answers.len(), 40);

    let r = s.udp(&with_edns(query("big40.global.", RecordType::A), 4096));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 40);

    let r = s.udp(&with_edns(query("big40.global.", RecordType::A), 600));
    assert!(r.metadata.truncation, "client's 600 bytes");

    let r = s.udp(&with_edns(query("big100.global.", RecordType::A), 4096));
    assert!(r.metadata.truncation, "our 1232 bytes cap the client's 4096");
    assert!(r.answers.is_empty());
    assert!(r.edns.is_some());
    let r = s.tcp(&with_edns(query("big100.global.", RecordType::A), 4096));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);

    // An advertised size under 512 counts as 512.
    add_big(&s, 25);
    assert!(
        !s.udp(&with_edns(query("big25.global.", RecordType::A), 100))
            .metadata
            .truncation
    );
}

#[test]
fn largest_answers_fit_one_tcp_message() {
    let s = start();
    // hickory stops compressing owner names after 120 of them, so 1000
    // AAAA on a 44-character name would not fit 64 KiB: the index serves
    // fewer, and TCP never sends part of an RRset with TC set.
    let names = [
        format!("{}.global", "r".repeat(37)),
        format!("{}.global", vec!["x".repeat(60); 4].join(".")),
    ];
    for (i, name) in names.iter().enumerate() {
        let addrs = (0..1000u128)
            .map(|j| std::net::Ipv6Addr::from((0xfd00 << 112) | j).into())
            .collect();
        add_host(&s, &format!("long{i}"), name, addrs);
        let r = s.tcp(&with_edns(query(&format!("{name}."), RecordType::AAAA), 1232));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(!r.metadata.truncation, "{name}");
        assert_eq!(r.answers.len(), address_limit(name), "{name}");
    }
}

#[test]
fn any_gets_one_rrset() {
    let s = start();
    let r = s.ask("reviews.baz-team.global.", RecordType::ANY);
    assert_eq!(rdata(&r.answers), ["reviews.baz-team.global. 30 240.0.0.4"]);
    let r = s.ask("ratings.bar.global.", RecordType::ANY);
    assert_eq!(rdata(&r.answers), ["ratings.bar.global. 30 2001:db8::7"]);
    let r = s.ask("global.", RecordType::ANY);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    assert_negative(&s.ask("nope.global.", RecordType::ANY), ResponseCode::NXDomain, 5);
}

#[test]
fn other_opcodes_are_notimp() {
    let s = start();
    for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut m = query("global.", RecordType::SOA);
        m.metadata.op_code = op;
        let r = s.udp(&m);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
    }
}

#[test]
fn responses_and_runts_get_no_reply() {
    let s = start();
    let mut m = query("httpbin.bar.global.", RecordType::A);
    m.metadata.message_type = MessageType::Response;
    assert!(s.udp_raw(&m.to_vec().unwrap()).is_none());
    assert!(s.udp_raw(&[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0]).is_none());
    assert!(s.udp_raw(&[]).is_none());
    // Still serving.
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
}

#[test]
fn malformed_packets_are_formerr_and_harmless() {
    let s = start();
    // Header says one question, the question is cut short.
    let r = s
        .udp_raw(&[0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'h', b't'])
        .expect("a reply");
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    // A compression pointer loop.
    let _ = s.udp_raw(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    // No question at all, and two questions.
    let mut m = query("httpbin.bar.global.", RecordType::A);
    m.queries.clear();
    assert_eq!(s.udp(&m).metadata.response_code, ResponseCode::FormErr);
    let mut m = query("httpbin.bar.global.", RecordType::A);
    m.add_query(Query::query(
        Name::from_str("ratings.bar.global.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(s.udp(&m).metadata.response_code, ResponseCode::FormErr);
    for _ in 0..200 {
        let garbage: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
        let _ = s.udp_raw(&garbage);
    }
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
}

/// Every case in `tests/malformed/cases.rs` gets the reply the table gives,
/// with the query's ID and its question as sent, and the good query after
/// it is answered.
#[test]
fn malformed_cases_then_a_good_query() {
    let s = start();
    let mut failures = String::new();
    let cases = malformed::cases();
    for case in &cases {
        let reply = s.udp_raw(&case.packet);
        let got = malformed::summary(reply.as_deref());
        let mut bad = Vec::new();
        if got != case.want {
            bad.push(format!("got `{got}`, want `{}`", case.want));
        }
        if let Some(r) = &reply {
            if r[..2] != case.packet[..2] {
                bad.push("ID not echoed".to_string());
            }
            let echoed = r.get(4..6) == Some(&[0, 1]);
            if let (true, Some(q)) = (echoed, malformed::question(&case.packet))
                && r.get(12..12 + q.len()) != Some(q)
            {
                bad.push("question not echoed as sent".to_string());
            }
        }
        let good = malformed::summary(s.udp_raw(malformed::GOOD).as_deref());
        if good != malformed::GOOD_ANSWER {
            bad.push(format!("then the good query got `{good}`"));
        }
        println!(
            "{:4} {:45} {got}",
            if bad.is_empty() { "ok" } else { "FAIL" },
            case.name
        );
        if !bad.is_empty() {
            failures += &format!("{}: {}\n", case.name, bad.join("; "));
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert!(cases.len() > 80, "{} cases", cases.len());
}

#[test]
fn oversized_datagrams_are_formerr() {
    let s = start();
    // A valid query padded past the 4096-byte receive slot.
    let mut packet = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();
    packet.resize(5000, 0);
    let r = s.udp_raw(&packet).expect("a reply");
    assert_eq!(&r[..2], &4242u16.to_be_bytes());
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
}

/// Queries sent back to back arrive in batches (`recvmmsg`); every one
/// gets its own reply, in a batch that also holds packets that get none.
#[test]
fn bursts_are_answered_query_by_query() {
    let s = start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let names = ["httpbin.bar.global.", "nope.bar.global.", "ratings.bar.global."];
    let mut buf = vec![0; 65535];
    // Bursts of 60: the client's default receive buffer holds that many.
    for burst in 0..5u16 {
        let mut want = std::collections::HashMap::new();
        for id in burst * 60..(burst + 1) * 60 {
            let name = names[id as usize % names.len()];
            let mut m = query(name, RecordType::A);
            m.metadata.id = id;
            sock.send_to(&m.to_vec().unwrap(), s.addr).unwrap();
            want.insert(id, name);
            if id % 10 == 0 {
                sock.send_to(&[1, 2, 3], s.addr).unwrap(); // a runt: no reply
            }
        }
        while !want.is_empty() {
            let n = sock.recv(&mut buf).expect("a reply for every query");
            let r = Message::from_vec(&buf[..n]).unwrap();
            let name = want.remove(&r.metadata.id).expect("one reply per ID");
            assert_eq!(r.queries[0].name().to_ascii(), name);
            let rcode = if name.starts_with("nope") {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            assert_eq!(r.metadata.response_code, rcode, "{name}");
        }
    }
}

#[test]
fn zone_transfers_are_refused() {
    let s = start();
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        let r = s.tcp(&query("global.", rtype));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{rtype}");
        assert!(r.answers.is_empty());
        assert_eq!(
            s.udp(&query("global.", rtype)).metadata.response_code,
            ResponseCode::Refused
        );
    }
}

#[test]
fn chaos_queries_disclose_nothing() {
    let s = start();
    for name in ["version.bind.", "hostname.bind.", "id.server."] {
        let mut q = Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        let mut m = query(name, RecordType::TXT);
        m.queries = vec![q];
        let r = s.udp(&m);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(r.answers.is_empty());
    }
}

#[test]
fn qclass_any_gets_the_in_data() {
    let s = start();
    let mut q = Query::query(Name::from_ascii("httpbin.bar.global.").unwrap(), RecordType::A);
    q.set_query_class(DNSClass::ANY);
    let mut m = query("httpbin.bar.global.", RecordType::A);
    m.queries = vec![q];
    let r = s.udp(&m);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&r.answers), ["httpbin.bar.global. 30 240.0.0.2"]);
    assert_eq!(r.answers[0].dns_class, DNSClass::IN);
}

#[test]
fn tcp_answers_like_udp() {
    let s = start();
    let r = s.tcp(&query("HTTPBIN.bar.global.", RecordType::A));
    assert_eq!(rdata(&r.answers), ["HTTPBIN.bar.global. 30 240.0.0.2"]);
    assert_negative(&s.tcp(&query("nope.global.", RecordType::A)), ResponseCode::NXDomain, 5);
}

#[test]
fn not_synced_is_servfail_never_nxdomain() {
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    let s = start_with(mk_index(30, 5), ready.clone());
    for name in ["httpbin.bar.global.", "nope.global."] {
        let r = s.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
    ready.set_synced();
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
    // Draining: not ready, still answering.
    s.ready.set_draining();
    assert!(!s.ready.is_ready());
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
}

// ---------------------------------------------------------------------------
// TCP limits

fn start_tcp(tcp: TcpLimits) -> Server {
    start_configured(
        mk_index(30, 5),
        synced(),
        Config {
            tcp,
            ..Config::new(Workers::Sockets(1))
        },
    )
}

/// A metric's value from the server's registry (0 when absent).
fn metric(s: &Server, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| label.is_none_or(|(k, v)| m.get_label().iter().any(|l| l.name() == k && l.value() == v)))
        // A family is either counters or gauges; the other reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn closed(s: &Server, reason: &str) -> f64 {
    metric(s, "meshdns_dns_tcp_connections_closed_total", Some(("reason", reason)))
}

fn framed(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec().unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

fn read_reply(s: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

/// How long until the server closes `s` (reads return 0), at most `limit`.
fn time_to_close(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

/// Polls `cond` every 10 ms for at most `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

#[test]
fn tcp_stalled_prefix_and_partial_message_close_within_the_stall_timeout() {
    let s = start_tcp(TcpLimits::default());
    let q = framed(&query("httpbin.bar.global.", RecordType::A));
    // One byte of the length prefix; then a whole prefix and half a message.
    for part in [&q[..1], &q[..q.len() / 2]] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(part).unwrap();
        let took = time_to_close(&mut c, Duration::from_secs(5));
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
            "closed after {took:?}"
        );
    }
    assert!(eventually(Duration::from_secs(1), || closed(&s, "stalled") == 2.0));
    // A message trickled in must still be whole within 1 s of its first byte.
    let mut c = TcpStream::connect(s.addr).unwrap();
    for b in &q[..q.len() - 1] {
        c.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        if c.peek(&mut [0]).is_ok_and(|n| n == 0) {
            break;
        }
    }
    let took = time_to_close(&mut c, Duration::from_secs(5));
    assert!(took < Duration::from_millis(1500));
    assert!(eventually(Duration::from_secs(1), || closed(&s, "stalled") == 3.0));
    // And the server still answers.
    assert_eq!(s.tcp(&query("httpbin.bar.global.", RecordType::A)).answers.len(), 1);
}

#[test]
fn tcp_idle_connections_close_after_the_idle_timeout() {
    let s = start_tcp(TcpLimits {
        idle_timeout: Duration::from_millis(400),
        ..TcpLimits::default()
    });
    let mut c = TcpStream::connect(s.addr).unwrap();
    let took = time_to_close(&mut c, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(1),
        "{took:?}"
    );
    // Between queries too.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(&framed(&query("httpbin.bar.global.", RecordType::A)))
        .unwrap();
    assert_eq!(read_reply(&mut c).answers.len(), 1);
    let took = time_to_close(&mut c, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(eventually(Duration::from_secs(1), || closed(&s, "idle") == 2.0));
}

#[test]
fn tcp_at_the_cap_the_quietest_connection_makes_room() {
    const CAP: usize = 50;
    let s = start_tcp(TcpLimits {
        max_connections: CAP,
        ..TcpLimits::default()
    });
    // Four times the cap, all idle; the oldest are reclaimed as new ones come.
    let mut idle: Vec<TcpStream> = (0..CAP * 4).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    assert!(eventually(Duration::from_secs(5), || closed(&s, "reclaimed") == (CAP * 3) as f64));
    assert_eq!(metric(&s, "meshdns_dns_tcp_connections", None), CAP as f64);
    // A new client is served at once.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(&framed(&query("httpbin.bar.global.", RecordType::A)))
        .unwrap();
    assert_eq!(read_reply(&mut c).answers.len(), 1);
    // It was admitted by closing the quietest: the oldest remaining idle one.
    let oldest = &mut idle[CAP * 3];
    assert!(time_to_close(oldest, Duration::from_secs(2)) < Duration::from_secs(2));
    // The newest idle connection is still open and served.
    let newest = idle.last_mut().unwrap();
    newest.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    newest
        .write_all(&framed(&query("httpbin.bar.global.", RecordType::A)))
        .unwrap();
    assert_eq!(read_reply(newest).answers.len(), 1);
    assert!(metric(&s, "meshdns_dns_tcp_connections", None) <= CAP as f64);
}

#[test]
fn tcp_query_cap_closes_after_that_many_answers() {
    let s = start_tcp(TcpLimits {
        max_queries: std::num::NonZeroU32::new(3),
        ..TcpLimits::default()
    });
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = framed(&query("httpbin.bar.global.", RecordType::A));
    // Pipelined: all five sent before any reply is read.
    c.write_all(&q.repeat(5)).unwrap();
    for _ in 0..3 {
        assert_eq!(read_reply(&mut c).answers.len(), 1);
    }
    assert!(time_to_close(&mut c, Duration::from_secs(2)) < Duration::from_secs(1));
    assert!(eventually(Duration::from_secs(1), || closed(&s, "query_limit") == 1.0));
}

#[test]
fn tcp_pipelined_queries_are_answered_in_order() {
    let s = start();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut batch = Vec::new();
    for i in 0..200u16 {
        let mut m = query("httpbin.bar.global.", RecordType::A);
        m.metadata.id = i;
        batch.extend(framed(&m));
    }
    c.write_all(&batch).unwrap();
    for i in 0..200u16 {
        let r = read_reply(&mut c);
        assert_eq!(r.metadata.id, i);
        assert_eq!(r.answers.len(), 1);
    }
}

#[test]
fn tcp_client_that_never_reads_is_closed_and_costs_nothing_else() {
    let s = start_tcp(TcpLimits::default());
    let mut hog = TcpStream::connect(s.addr).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let q = framed(&query("httpbin.bar.global.", RecordType::A));
    // Queries, never reading a reply, until the writes block: the server
    // has stopped reading because its replies do not leave. (Loopback
    // buffers grow to megabytes, so this takes tens of thousands.)
    let batch = q.repeat(1000);
    let mut sent = 0;
    for _ in 0..200 {
        if hog.write_all(&batch).is_err() {
            break;
        }
        sent += 1000;
    }
    assert!((20_000..200_000).contains(&sent), "sent {sent} without blocking");
    // Others are served meanwhile, over both transports.
    assert_eq!(s.tcp(&query("httpbin.bar.global.", RecordType::A)).answers.len(), 1);
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
    assert!(
        eventually(Duration::from_secs(5), || closed(&s, "write_stalled") == 1.0),
        "the hog was not closed"
    );
}

// ---------------------------------------------------------------------------
// UDP overload

#[test]
fn udp_overflow_is_dropped_by_the_kernel_counted_and_harmless() {
    // A tiny queue, so that a burst from one socket overflows it for sure.
    let s = start_configured(
        mk_index(30, 5),
        synced(),
        Config {
            udp_recv_buffer: 4096,
            ..Config::new(Workers::Sockets(1))
        },
    );
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let q = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();
    for _ in 0..20_000 {
        flood.send_to(&q, s.addr).unwrap();
    }
    let dropped = || metric(&s, "meshdns_dns_dropped_total", Some(("reason", "queue_full")));
    // Sampled from the kernel once a second.
    assert!(
        eventually(Duration::from_secs(3), || dropped() > 0.0),
        "no drops counted"
    );
    let answered = || metric(&s, "meshdns_dns_requests_total", None);
    assert!(
        eventually(Duration::from_secs(3), || answered() + dropped() == 20_000.0),
        "every datagram is either answered or counted as dropped: {} + {}",
        answered(),
        dropped()
    );
    assert!(answered() > 0.0);
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
    assert_eq!(wakeups(&s), 0.0, "--workers N has no standby readers");
}

/// `--udp-sched-slice`: with the kernel's slice (0), a short one, or
/// `auto` (the default), under `--workers auto` and `N` alike, the readers
/// answer the same, and the gauge says whether the slice is asked for.
#[test]
fn the_scheduler_slice_changes_nothing_but_scheduling() {
    let short = Duration::from_micros(100);
    for workers in [Workers::Auto { standby: 1 }, Workers::Sockets(2)] {
        for slice in [SliceMode::Kernel, SliceMode::Always(short), SliceMode::Auto(short)] {
            let s = start_configured(
                mk_index(30, 5),
                synced(),
                Config {
                    udp_sched_slice: slice,
                    ..Config::new(workers)
                },
            );
            let answers = s.ask("httpbin.bar.global.", RecordType::A).answers.len();
            assert_eq!(answers, 1, "{workers} {slice:?}");
            let gauge = metric(&s, "meshdns_dns_udp_short_slice", None);
            match slice {
                SliceMode::Kernel => assert_eq!(gauge, 0.0),
                SliceMode::Always(_) => assert_eq!(gauge, 1.0),
                SliceMode::Auto(_) => assert!(gauge == 0.0 || gauge == 1.0),
            }
        }
    }
}

fn wakeups(s: &Server) -> f64 {
    metric(s, "meshdns_dns_udp_standby_wakeups_total", None)
}

/// `--workers auto` under a burst: the one socket's backlog wakes standby
/// readers, every datagram is still answered or counted as dropped, and
/// the standbys park again once it is drained.
#[test]
fn udp_burst_wakes_standby_readers_and_each_datagram_is_answered_or_counted() {
    let s = start();
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let q = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();
    for _ in 0..20_000 {
        flood.send_to(&q, s.addr).unwrap();
    }
    let dropped = || metric(&s, "meshdns_dns_dropped_total", Some(("reason", "queue_full")));
    let answered = || metric(&s, "meshdns_dns_requests_total", None);
    // Drops are sampled from the kernel once a second.
    assert!(
        eventually(Duration::from_secs(5), || answered() + dropped() == 20_000.0),
        "every datagram is either answered or counted as dropped: {} + {}",
        answered(),
        dropped()
    );
    assert!(answered() > 0.0);
    assert!(wakeups(&s) > 0.0, "a burst of 20,000 woke no standby reader");
    let awake = || metric(&s, "meshdns_dns_udp_standby_awake", None);
    assert!(
        eventually(Duration::from_secs(3), || awake() == 0.0),
        "{} standby readers still awake after the burst",
        awake()
    );
    println!(
        "20,000 datagrams: {} answered, {} dropped, {} standby wake-ups",
        answered(),
        dropped(),
        wakeups(&s)
    );
    assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
}

/// `--workers auto` at a moderate rate: one query at a time never fills a
/// batch, so no standby reader ever runs and the cost is one thread's.
#[test]
fn udp_trickle_wakes_no_standby_reader() {
    let s = start();
    for _ in 0..200 {
        assert_eq!(s.ask("httpbin.bar.global.", RecordType::A).answers.len(), 1);
    }
    assert_eq!(metric(&s, "meshdns_dns_requests_total", None), 200.0);
    assert_eq!(wakeups(&s), 0.0);
    assert_eq!(metric(&s, "meshdns_dns_udp_standby_awake", None), 0.0);
}

/// The same table over TCP: each case on its own connection, followed on
/// that connection by the good query. A message too short for an ID closes
/// the connection; every other case leaves it usable.
#[test]
fn malformed_cases_over_tcp() {
    let s = start();
    let mut failures = String::new();
    for case in &malformed::cases() {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut sent = (case.packet.len() as u16).to_be_bytes().to_vec();
        sent.extend_from_slice(&case.packet);
        sent.extend_from_slice(&(malformed::GOOD.len() as u16).to_be_bytes());
        sent.extend_from_slice(malformed::GOOD);
        c.write_all(&sent).unwrap();
        let mut replies = Vec::new();
        while replies.len() < 2 {
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                break;
            }
            let mut buf = vec![0; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut buf).unwrap();
            let good = buf[..2] == malformed::GOOD[..2] && replies.len() == usize::from(case.want != "no reply");
            replies.push(buf);
            if good {
                break;
            }
        }
        let mut bad = Vec::new();
        let short = case.packet.len() < 12;
        let want_replies = usize::from(case.want != "no reply") + usize::from(!short);
        if replies.len() != want_replies {
            bad.push(format!("{} replies, want {want_replies}", replies.len()));
        } else if case.want != "no reply" {
            let got = malformed::summary(Some(&replies[0]));
            if got != case.want {
                bad.push(format!("got `{got}`, want `{}`", case.want));
            }
        }
        if !short && replies.last().map(|r| malformed::summary(Some(r))).as_deref() != Some(malformed::GOOD_ANSWER) {
            bad.push("the good query after it was not answered".into());
        }
        if !bad.is_empty() {
            failures += &format!("{}: {}\n", case.name, bad.join("; "));
        }
    }
    assert!(failures.is_empty(), "over TCP:\n{failures}");
    assert_eq!(s.tcp(&query("httpbin.bar.global.", RecordType::A)).answers.len(), 1);
}

// ---------------------------------------------------------------------------
// Several zones, and --exported-only

const ZONES_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/zones.yaml");
const EXPORT_TO_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/export-to.yaml");

/// `tests/e2e/zones.yaml` served for `global`, `mesh.internal` and the
/// nested `inner.west.global`.
fn start_zones() -> Server {
    let index = mk_index_with(&["global", "mesh.internal", "inner.west.global"], ZoneConfig::default());
    start_from(
        Path::new(ZONES_FILE),
        Arc::new(index),
        synced(),
        Config::new(Workers::Sockets(2)),
    )
}

/// The SOA in a negative answer: its owner, and the answer's rcode.
fn negative_soa(r: &Message) -> (ResponseCode, String) {
    assert!(r.metadata.authoritative && r.answers.is_empty(), "{r:?}");
    assert_eq!(r.authorities.len(), 1, "{r:?}");
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].ttl, 5);
    (r.metadata.response_code, r.authorities[0].name.to_string())
}

#[test]
fn two_zones_each_with_its_own_soa_and_ns() {
    let s = start_zones();
    for transport in ["udp", "tcp"] {
        let ask = |name: &str, rtype| match transport {
            "udp" => s.ask(name, rtype),
            _ => s.tcp(&with_edns(query(name, rtype), 1232)),
        };
        // One entry, a host in each zone.
        assert_eq!(
            rdata(&ask("svc.shop.global.", RecordType::A).answers),
            ["svc.shop.global. 30 240.1.0.1"]
        );
        assert_eq!(
            rdata(&ask("Svc.Shop.Mesh.Internal.", RecordType::AAAA).answers),
            ["Svc.Shop.Mesh.Internal. 30 2001:db8:1::1"]
        );
        for zone in ["global.", "mesh.internal.", "inner.west.global."] {
            let r = ask(zone, RecordType::SOA);
            assert!(r.metadata.authoritative, "{zone}");
            let soa: Vec<String> = r
                .answers
                .iter()
                .map(|r| format!("{} {}", r.name, r.record_type()))
                .collect();
            assert_eq!(soa, [format!("{zone} SOA")], "{transport} {zone}");
            assert_eq!(
                rdata(&ask(zone, RecordType::NS).answers),
                [format!("{zone} 30 localhost.")]
            );
            assert_eq!(
                negative_soa(&ask(zone, RecordType::A)),
                (ResponseCode::NoError, zone.into())
            );
        }
        // Negative answers carry the SOA of the zone they fall in, in the
        // query's case; A and AAAA take the UDP fast path, MX the general one.
        for (name, rtype, want) in [
            ("nope.global.", RecordType::A, (ResponseCode::NXDomain, "global.")),
            (
                "nope.mesh.internal.",
                RecordType::A,
                (ResponseCode::NXDomain, "mesh.internal."),
            ),
            (
                "Nope.MESH.Internal.",
                RecordType::MX,
                (ResponseCode::NXDomain, "MESH.Internal."),
            ),
            (
                "shop.mesh.internal.",
                RecordType::AAAA,
                (ResponseCode::NoError, "mesh.internal."),
            ),
            (
                "svc.shop.mesh.internal.",
                RecordType::MX,
                (ResponseCode::NoError, "mesh.internal."),
            ),
            (
                "wild.mesh.internal.",
                RecordType::A,
                (ResponseCode::NoError, "mesh.internal."),
            ),
            ("svc.shop.global.", RecordType::TXT, (ResponseCode::NoError, "global.")),
        ] {
            assert_eq!(
                negative_soa(&ask(name, rtype)),
                (want.0, want.1.to_string()),
                "{transport} {name} {rtype}"
            );
        }
        assert_eq!(
            rdata(&ask("a.b.wild.mesh.internal.", RecordType::A).answers),
            ["a.b.wild.mesh.internal. 30 240.1.0.3"]
        );
        for name in ["internal.", "svc.shop.mesh.", "mesh.internal.example."] {
            let r = ask(name, RecordType::A);
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        }
    }
}

#[test]
fn a_nested_zone_owns_its_names_and_the_outer_zone_sees_it_as_a_delegation() {
    let s = start_zones();
    assert_eq!(
        rdata(&s.ask("api.inner.west.global.", RecordType::A).answers),
        ["api.inner.west.global. 30 240.1.0.2"]
    );
    for (name, rtype, want) in [
        // Inside the nested zone: its own SOA.
        (
            "api.inner.west.global.",
            RecordType::AAAA,
            (ResponseCode::NoError, "inner.west.global."),
        ),
        (
            "nope.inner.west.global.",
            RecordType::A,
            (ResponseCode::NXDomain, "inner.west.global."),
        ),
        (
            "Nope.Inner.WEST.global.",
            RecordType::A,
            (ResponseCode::NXDomain, "Inner.WEST.global."),
        ),
        // Between the zones: an empty non-terminal of the outer zone.
        ("west.global.", RecordType::A, (ResponseCode::NoError, "global.")),
        ("West.Global.", RecordType::TXT, (ResponseCode::NoError, "Global.")),
        ("x.west.global.", RecordType::A, (ResponseCode::NXDomain, "global.")),
    ] {
        assert_eq!(
            negative_soa(&s.ask(name, rtype)),
            (want.0, want.1.to_string()),
            "{name} {rtype}"
        );
    }
}

/// `tests/e2e/export-to.yaml` served for `global`, with `--exported-only`
/// or without; the index's metrics in `registry`.
fn start_export_to(exported_only: bool, registry: &prometheus::Registry) -> Server {
    let index = Index::new(vec!["global".into()], ZoneConfig::default(), None, registry)
        .unwrap()
        .with_exported_only(exported_only);
    start_from(
        Path::new(EXPORT_TO_FILE),
        Arc::new(index),
        synced(),
        Config::new(Workers::Sockets(2)),
    )
}

#[test]
fn exported_only_serves_only_entries_every_namespace_sees() {
    let names = ["unset", "all", "mixed", "own", "hidden", "listed"];
    for exported_only in [false, true] {
        let registry = prometheus::Registry::new();
        let s = start_export_to(exported_only, &registry);
        for (i, name) in names.iter().enumerate() {
            let qname = format!("{name}.shop.global.");
            let served = !exported_only || i < 3;
            for r in [s.ask(&qname, RecordType::A), s.tcp(&query(&qname, RecordType::A))] {
                if served {
                    assert_eq!(rdata(&r.answers), [format!("{qname} 30 240.2.0.{}", i + 1)]);
                } else {
                    assert_negative(&r, ResponseCode::NXDomain, 5);
                }
            }
        }
        let skipped: f64 = registry
            .gather()
            .iter()
            .filter(|f| f.name() == "meshdns_skipped_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "not_exported"))
            .map(|m| m.get_counter().get_value())
            .sum();
        assert_eq!(skipped, if exported_only { 3.0 } else { 0.0 });
    }
}

// ---------------------------------------------------------------------------
// SRV from ServiceEntry ports (tests/e2e/srv.yaml)

const SRV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/srv.yaml");

fn start_srv(registry: &prometheus::Registry) -> Server {
    let index = Index::new(vec!["global".into()], ZoneConfig::default(), None, registry).unwrap();
    start_from(
        Path::new(SRV_FILE),
        Arc::new(index),
        synced(),
        Config::new(Workers::Sockets(2)),
    )
}

#[test]
fn srv_names_from_ports_with_the_target_addresses_as_additional_records() {
    let registry = prometheus::Registry::new();
    let s = start_srv(&registry);
    for r in [
        s.ask("_HTTP._tcp.Web.srv.global.", RecordType::SRV),
        s.tcp(&query("_HTTP._tcp.Web.srv.global.", RecordType::SRV)),
    ] {
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative && !r.metadata.truncation);
        // The owner keeps the query's case; the target is the host as the
        // entry wrote it, lower-cased.
        assert_eq!(
            rdata(&r.answers),
            ["_HTTP._tcp.Web.srv.global. 30 0 100 80 web.srv.global."]
        );
        assert!(r.authorities.is_empty());
        assert_eq!(
            rdata(&r.additionals),
            ["web.srv.global. 30 240.1.0.1", "web.srv.global. 30 2001:db8:1::1"]
        );
    }
    // UDP (any case), a port named with another protocol's label.
    assert_eq!(
        rdata(&s.ask("_dns._UDP.web.srv.global.", RecordType::SRV).answers),
        ["_dns._UDP.web.srv.global. 30 0 100 53 web.srv.global."]
    );
    // The bare host: every port, as CoreDNS answers a Service name.
    let r = s.ask("web.srv.global.", RecordType::SRV);
    assert_eq!(
        rdata(&r.answers),
        [
            "web.srv.global. 30 0 100 80 web.srv.global.",
            "web.srv.global. 30 0 100 53 web.srv.global.",
            "web.srv.global. 30 0 100 8080 web.srv.global."
        ]
    );
    assert_eq!(r.additionals.len(), 2);
    // A shared host: the union of both entries' ports, the older first,
    // repeats dropped; additional records carry both entries' addresses.
    let r = s.ask("api.srv.global.", RecordType::SRV);
    assert_eq!(
        rdata(&r.answers),
        [
            "api.srv.global. 30 0 100 80 api.srv.global.",
            "api.srv.global. 30 0 100 53 api.srv.global.",
            "api.srv.global. 30 0 100 8080 api.srv.global.",
            "api.srv.global. 30 0 100 9090 api.srv.global.",
            "api.srv.global. 30 0 100 5353 api.srv.global."
        ]
    );
    assert_eq!(
        rdata(&r.additionals),
        [
            "api.srv.global. 30 240.1.0.1",
            "api.srv.global. 30 240.1.0.2",
            "api.srv.global. 30 2001:db8:1::1"
        ]
    );
    assert_eq!(
        rdata(&s.ask("_dns._udp.api.srv.global.", RecordType::SRV).answers),
        [
            "_dns._udp.api.srv.global. 30 0 100 53 api.srv.global.",
            "_dns._udp.api.srv.global. 30 0 100 5353 api.srv.global."
        ]
    );
    // ANY at an SRV name: its one RRset.
    assert_eq!(s.ask("_http._tcp.web.srv.global.", RecordType::ANY).answers.len(), 1);
}

#[test]
fn srv_negative_answers_and_wildcards() {
    let registry = prometheus::Registry::new();
    let s = start_srv(&registry);
    for (name, rtype, rcode) in [
        // An SRV name has no other type.
        ("_http._tcp.web.srv.global.", RecordType::A, ResponseCode::NoError),
        ("_http._tcp.web.srv.global.", RecordType::TXT, ResponseCode::NoError),
        // `_T.H` is an empty non-terminal, for a protocol H has.
        ("_tcp.web.srv.global.", RecordType::SRV, ResponseCode::NoError),
        ("_udp.web.srv.global.", RecordType::A, ResponseCode::NoError),
        ("_udp.bad.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        // Unknown ports, the other protocol, names not under a host.
        ("_nope._tcp.web.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        ("_dns._tcp.web.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        ("_http._tcp.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        ("_http._tcp.nope.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        // Skipped ports serve nothing; the host's other ports still do.
        (
            "_not.a.label._tcp.bad.srv.global.",
            RecordType::SRV,
            ResponseCode::NXDomain,
        ),
        ("_zero._tcp.bad.srv.global.", RecordType::SRV, ResponseCode::NXDomain),
        // A host's other types, and a wildcard host's names: no SRV.
        ("x.wild.srv.global.", RecordType::SRV, ResponseCode::NoError),
        ("_http._tcp.x.wild.srv.global.", RecordType::SRV, ResponseCode::NoError),
        ("_x._tcp.h.wild.srv.global.", RecordType::SRV, ResponseCode::NoError),
    ] {
        assert_negative(&s.ask(name, rtype), rcode, 5);
    }
    assert_eq!(
        rdata(&s.ask("_ok._tcp.bad.srv.global.", RecordType::SRV).answers),
        ["_ok._tcp.bad.srv.global. 30 0 100 443 bad.srv.global."]
    );
    // The SRV name under a wildcard is exact and wins; an unknown one keeps
    // the wildcard's A (Istio's matching, as for any name under h).
    assert_eq!(
        rdata(&s.ask("_http._tcp.h.wild.srv.global.", RecordType::SRV).answers),
        ["_http._tcp.h.wild.srv.global. 30 0 100 80 h.wild.srv.global."]
    );
    assert_eq!(
        rdata(&s.ask("_x._tcp.h.wild.srv.global.", RecordType::A).answers),
        ["_x._tcp.h.wild.srv.global. 30 240.1.0.3"]
    );
    assert_eq!(
        rdata(&s.ask("_tcp.h.wild.srv.global.", RecordType::A).answers),
        ["_tcp.h.wild.srv.global. 30 240.1.0.3"]
    );
    // The skipped ports are counted.
    let skipped = |reason: &str| -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "meshdns_skipped_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
            .map(|m| m.get_counter().get_value())
            .sum()
    };
    assert_eq!(
        [
            skipped("invalid_port_name"),
            skipped("duplicate_port_name"),
            skipped("invalid_port_number")
        ],
        [1.0, 1.0, 1.0]
    );
}

#[test]
fn srv_additional_records_are_dropped_first_and_never_cause_tc() {
    let s = start_srv(&prometheus::Registry::new());
    // 20 AAAA in the additional section: over 512 bytes without EDNS, so
    // they are dropped and the answer goes out whole, TC clear.
    let q = query("_http._tcp.many.srv.global.", RecordType::SRV);
    let r = s.udp(&q);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
    assert!(r.additionals.is_empty(), "{:?}", r.additionals);
    let r = s.udp(&with_edns(q.clone(), 1232));
    assert_eq!((r.answers.len(), r.additionals.len()), (1, 20));
    assert_eq!(s.tcp(&q).additionals.len(), 20);
    // 25 SRV records do not fit 512 bytes: TC=1 with no records, even
    // though the additional section alone could have been dropped.
    let q = query("ports.srv.global.", RecordType::SRV);
    let r = s.udp(&q);
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
    let r = s.udp(&with_edns(q.clone(), 1232));
    assert!(!r.metadata.truncation);
    assert_eq!((r.answers.len(), r.additionals.len()), (25, 1));
    assert_eq!(s.tcp(&q).answers.len(), 25);
}

#[test]
fn srv_answers_of_the_longest_names_fit_one_tcp_message() {
    use meshdns::index::port_limit;
    use meshdns::index::testing::mk_with_ports;
    let s = start();
    let long = format!("{}.global", vec!["x".repeat(60); 4].join("."));
    let names: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    let ports: Vec<(&str, u16, &str)> = names.iter().map(|p| (p.as_str(), 80, "TCP")).collect();
    let addrs = (0..1000u128)
        .map(|j| std::net::Ipv6Addr::from((0xfd00 << 112) | j).to_string())
        .collect::<Vec<_>>();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    s.index.apply(mk_with_ports(
        mk_entry("ns/long", None, &[(long.as_str(), &addrs)]),
        &ports,
    ));
    let r = s.tcp(&with_edns(query(&format!("{long}."), RecordType::SRV), 1232));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), port_limit(&long));
    // The addresses did not fit beside them, and were dropped.
    assert!(r.additionals.is_empty());
}

/// The example served with reverse zones `240.in-addr.arpa` and
/// `2001:db8::/32`, plus a second host on httpbin's address.
fn start_reverse() -> Server {
    let zones = ["240.0.0.0/8", "2001:db8::/32"].map(|z| meshdns::index::reverse::parse_zone(z).unwrap());
    let index = Arc::new(
        mk_index_with(&["global"], ZoneConfig::default())
            .with_reverse_zones(&zones)
            .unwrap(),
    );
    let s = start_with(index.clone(), synced());
    // Younger than the example's entries (no timestamp sorts first).
    index.apply(mk_entry(
        "zz/shared",
        Some("2030-01-01T00:00:00Z"),
        &[("alias.zz.global", &["240.0.0.2"])],
    ));
    s
}

fn assert_negative_in(r: &Message, rcode: ResponseCode, zone: &str) {
    assert_eq!(r.metadata.response_code, rcode);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty(), "{:?}", r.answers);
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].name.to_string(), zone);
}

#[test]
fn ptr_for_served_ipv4_and_ipv6_addresses() {
    let s = start_reverse();
    let r = s.ask("5.0.240.240.in-addr.arpa.", RecordType::PTR);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(rdata(&r.answers), ["5.0.240.240.in-addr.arpa. 30 details.bar.global."]);
    let v6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        rdata(&s.ask(v6, RecordType::PTR).answers),
        [format!("{v6} 30 ratings.bar.global.")]
    );
    // The owner keeps the query's case, over TCP too.
    let r = s.tcp(&query("5.0.240.240.IN-ADDR.ARPA.", RecordType::PTR));
    assert_eq!(rdata(&r.answers), ["5.0.240.240.IN-ADDR.ARPA. 30 details.bar.global."]);
    // Other types at a PTR name: NODATA with the reverse zone's SOA.
    assert_negative_in(
        &s.ask("5.0.240.240.in-addr.arpa.", RecordType::A),
        ResponseCode::NoError,
        "240.in-addr.arpa.",
    );
}

#[test]
fn ptr_for_a_shared_address_lists_every_host_oldest_entry_first() {
    let s = start_reverse();
    assert_eq!(
        rdata(&s.ask("2.0.0.240.in-addr.arpa.", RecordType::PTR).answers),
        [
            "2.0.0.240.in-addr.arpa. 30 httpbin.bar.global.",
            "2.0.0.240.in-addr.arpa. 30 alias.zz.global.",
        ]
    );
}

#[test]
fn reverse_apex_nxdomain_nodata_and_refused() {
    let s = start_reverse();
    let r = s.ask("240.in-addr.arpa.", RecordType::SOA);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    assert_eq!(
        rdata(&s.ask("8.b.d.0.1.0.0.2.ip6.arpa.", RecordType::NS).answers),
        ["8.b.d.0.1.0.0.2.ip6.arpa. 30 localhost."]
    );
    assert_negative_in(
        &s.ask("9.9.9.240.in-addr.arpa.", RecordType::PTR),
        ResponseCode::NXDomain,
        "240.in-addr.arpa.",
    );
    assert_negative_in(
        &s.ask("1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", RecordType::PTR),
        ResponseCode::NXDomain,
        "8.b.d.0.1.0.0.2.ip6.arpa.",
    );
    // Empty non-terminals above a served address.
    assert_negative_in(
        &s.ask("0.240.in-addr.arpa.", RecordType::PTR),
        ResponseCode::NoError,
        "240.in-addr.arpa.",
    );
    assert_negative_in(
        &s.ask("0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", RecordType::PTR),
        ResponseCode::NoError,
        "8.b.d.0.1.0.0.2.ip6.arpa.",
    );
    for name in ["2.0.0.10.in-addr.arpa.", "in-addr.arpa.", "arpa."] {
        let r = s.ask(name, RecordType::PTR);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
}
