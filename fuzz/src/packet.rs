//! Fuzz target (a): one packet answered over UDP (the fast path first, then
//! the general path, chained as `src/dns/udp.rs` chains them) and over TCP,
//! after arbitrary table contents; every reply is checked against what the
//! server promises (see [`check_reply`]), and the fast path against the
//! general path byte for byte.
//!
//! Input: a byte `n`, then `n % 64` bytes that choose the table (zones,
//! name server, TTLs, readiness, entries: see [`Setup`]), then the packet.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use meshdns::admin::Readiness;
use meshdns::dns::answer::answer;
use meshdns::dns::edns::udp_limit_for;
use meshdns::dns::handler::{parse, unanswerable};
use meshdns::dns::metrics::{DnsMetrics, Proto};
use meshdns::dns::{Handler, fast};
use meshdns::index::testing::mk_index_with;
use meshdns::index::{Index, Lookup, SourceId, Table, ZoneConfig};
use meshdns::serviceentry::{Metadata, ServiceEntry, Spec};

use super::input::Input;

/// Every rcode meshdns may send.
const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];

/// Hosts an entry may define; the fuzzer may also spell its own.
const HOSTS: &[&str] = &[
    "httpbin.bar.global",
    "*.baz.global",
    "a.b.c.baz.global",
    "ratings.bar.global",
    "*.global",
    "x.mesh.local",
    "*.mesh.local",
    "bar.global",
    "ns.global",
    "in.sub.bar.global",
    // 16 labels (the fast path's most), and 17.
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.global",
    "z.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.global",
];

/// What the table holds and how the server is set up, from the input.
pub struct Setup {
    zones: Vec<&'static str>,
    config: ZoneConfig,
    synced: bool,
    entries: Vec<ServiceEntry>,
}

impl Setup {
    /// One flags byte, then per entry a host byte (an index into [`HOSTS`],
    /// a generated long name, or a name spelled out in the input) and an
    /// address byte; at most 8 entries.
    pub fn decode(mut input: Input<'_>) -> Self {
        let flags = input.u8();
        let nameserver = if flags & 1 != 0 { "ns.global." } else { "localhost." };
        let mut zones = vec!["global"];
        if flags & 2 != 0 {
            zones.push("mesh.local");
        }
        if flags & 4 != 0 {
            zones.push("bar.global");
        }
        let (ttl, negative_ttl) = [(30, 5), (0, 0), (300, 60), (1, 3600)][usize::from(flags >> 4 & 3)];
        let config = ZoneConfig {
            ttl,
            negative_ttl,
            nameserver: Name::from_str(nameserver).expect("valid name"),
            ..ZoneConfig::default()
        };
        let mut entries = Vec::new();
        while !input.is_empty() && entries.len() < 8 {
            let i = entries.len();
            let choice = usize::from(input.u8());
            let host = match choice {
                c if c < HOSTS.len() => HOSTS[c].to_string(),
                // A label of 63 octets; names of 255 octets and of 254.
                c if c < HOSTS.len() + 3 => {
                    let label = |b: char, n: usize| b.to_string().repeat(n);
                    match c - HOSTS.len() {
                        0 => format!("{}.bar.global", label('a', 63)),
                        long => format!(
                            "{}.{}.{}.{}.global",
                            label('a', 63),
                            label('b', 63),
                            label('c', 63),
                            label('d', 55 - long)
                        ),
                    }
                }
                c => {
                    let len = c % 64;
                    String::from_utf8_lossy(input.take(len)).into_owned()
                }
            };
            let shape = input.u8();
            entries.push(mk_se(i, host, shape));
        }
        Self {
            zones,
            config,
            synced: flags & 8 == 0,
            entries,
        }
    }

    fn index(&self) -> Arc<Index> {
        let index = Arc::new(mk_index_with(&self.zones, self.config.clone()));
        let source = SourceId::Kube(None);
        let entries = self.entries.iter().map(|se| index.convert(&source, se).0).collect();
        index.reset(&source, entries);
        index
    }
}

/// Entry `t/se<i>` for `host`, with addresses by `shape`: one or two of
/// each family, or enough of one to outgrow a UDP answer.
fn mk_se(i: usize, host: String, shape: u8) -> ServiceEntry {
    let (v4, v6) = match shape % 6 {
        0 => (1, 0),
        1 => (2, 1),
        2 => (40, 0),
        3 => (90, 0),
        4 => (0, 30),
        _ => (0, 0),
    };
    let v4 = (0..v4).map(|j: u32| IpAddr::V4(Ipv4Addr::from(0xf000_0000 | (i as u32) << 16 | j)));
    let v6 = (0..v6).map(|j: u128| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | (i as u128) << 32 | j)));
    ServiceEntry {
        metadata: Metadata {
            name: format!("se{i}"),
            namespace: Some("t".into()),
            creation_timestamp: None,
        },
        spec: Spec {
            hosts: vec![host],
            addresses: v4.chain(v6).map(|a| a.to_string()).collect(),
            resolution: Some("STATIC".into()),
            ..Spec::default()
        },
        status: None,
    }
}

thread_local! {
    /// Registering metrics costs more than a query; one set serves every run.
    static METRICS: RefCell<Option<(DnsMetrics, Readiness, Readiness)>> = const { RefCell::new(None) };
}

fn handler(index: Arc<Index>, synced: bool) -> Handler {
    let (metrics, ready, not_ready) = METRICS.with(|m| {
        m.borrow_mut()
            .get_or_insert_with(|| {
                let registry = prometheus::Registry::new();
                let ready = Readiness::register(&registry).expect("fresh registry");
                ready.set_synced();
                let not_ready = Readiness::register(&prometheus::Registry::new()).expect("fresh registry");
                (
                    DnsMetrics::register(&registry).expect("fresh registry"),
                    ready,
                    not_ready,
                )
            })
            .clone()
    });
    Handler::new(index, if synced { ready } else { not_ready }, metrics)
}

fn src() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5300))
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let n = input.below(64);
    let setup = Setup::decode(Input::new(input.take(n)));
    let packet = input.rest();
    let index = setup.index();
    let handler = handler(index.clone(), setup.synced);
    check(&handler, &index.table(), setup.synced, packet);
}

/// Answers `packet` every way the server can and checks each reply.
pub fn check(handler: &Handler, table: &Table, synced: bool, packet: &[u8]) {
    let mut fast_out = Vec::new();
    let fast = fast::respond(packet, table, &mut fast_out);
    // A UDP reader's way: the batch looked at first (a slot used before by
    // another packet), then answered.
    let mut ahead = fast::Lookahead::default();
    ahead.look_ahead(
        1,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",
        table,
    );
    ahead.look_ahead(1, packet, table);
    ahead.prefetch(1, table);
    let mut batched = Vec::new();
    let batched_fast = ahead.respond(1, packet, table, &mut batched);
    assert_eq!(batched_fast, fast, "Lookahead against fast::respond");
    if fast.is_some() {
        assert_eq!(batched, fast_out);
    }
    let mut udp = Vec::new();
    let took_fast = handler.respond_fast(packet, &mut udp, &mut handler.metrics().udp_recorder());
    assert_eq!(
        took_fast,
        synced && fast.is_some(),
        "respond_fast against fast::respond"
    );
    if took_fast {
        assert_eq!(udp, fast_out);
    }

    // QR=1 or shorter than a header: no reply on any transport.
    if unanswerable(packet).is_some() {
        assert!(fast.is_none(), "fast path answered a response or runt");
        assert!(!took_fast);
        assert!(!handler.respond_malformed(Proto::Udp, packet, &mut udp));
        assert!(udp.is_empty());
        let mut tcp = vec![0];
        let keep_open = handler.respond_tcp(packet, src(), &mut tcp);
        assert!(tcp.is_empty(), "TCP answered a response or runt");
        assert_eq!(keep_open, packet.len() >= 12);
        assert!(
            meshdns::dns::grpc::query(handler, packet, src()).is_err(),
            "gRPC answered a response or runt"
        );
        return;
    }

    let request = parse(packet, src(), Protocol::Udp).ok();
    let mut general = Vec::new();
    match &request {
        Some(request) => handler.respond_udp(request, &mut general),
        None => assert!(handler.respond_malformed(Proto::Udp, packet, &mut general)),
    }
    if let Some((rcode, qtype)) = fast {
        assert!(request.is_some(), "fast path answered a malformed query");
        if synced {
            assert_eq!(fast_out, general, "fast and general paths differ");
        }
        let m = Message::from_vec(&fast_out).expect("fast reply parses");
        assert_eq!(
            u16::from(m.metadata.response_code),
            u16::from(rcode),
            "fast path's rcode"
        );
        assert_eq!(
            Some(qtype),
            m.queries.first().map(|q| q.query_type()),
            "fast path's qtype"
        );
    }
    if !took_fast {
        udp = general;
    }
    let udp_tc = check_reply(table, synced, packet, request.as_ref(), &udp, Proto::Udp);

    let mut tcp = Vec::new();
    assert!(handler.respond_tcp(packet, src(), &mut tcp));
    check_reply(table, synced, packet, request.as_ref(), &tcp, Proto::Tcp);
    if !udp_tc {
        assert_eq!(tcp, udp, "TCP and UDP replies differ for an answer that fits");
    }

    // gRPC answers through the same path as TCP, byte for byte.
    let grpc = meshdns::dns::grpc::query(handler, packet, src()).expect("a gRPC reply");
    assert_eq!(grpc.msg, tcp, "gRPC and TCP replies differ");
}

/// Checks one reply to `packet` (`request` when it parsed); returns its TC bit.
fn check_reply(
    table: &Table,
    synced: bool,
    packet: &[u8],
    request: Option<&Request>,
    reply: &[u8],
    proto: Proto,
) -> bool {
    let m = Message::from_vec(reply).unwrap_or_else(|e| panic!("{proto:?} reply does not parse ({e}): {reply:02x?}"));
    assert_eq!(reply[..2], packet[..2], "ID");
    assert_eq!(reply[2] & 0x78, packet[2] & 0x78, "opcode");
    assert_ne!(reply[2] & 0x80, 0, "QR");
    // By value: BADVERS and BADSIG share 16, and the parser picks BADSIG.
    let rcode = m.metadata.response_code;
    assert!(
        RCODES.iter().any(|r| u16::from(*r) == u16::from(rcode)),
        "rcode {rcode:?}"
    );
    if let Some(question) = whole_question(packet) {
        assert_eq!(reply[4..6], [0, 1], "one question");
        assert_eq!(&reply[12..12 + question.len()], question, "the question as asked");
    }
    // Only OPT, which the parser takes out, goes in the additional section.
    assert!(m.additionals.is_empty(), "additional records");
    assert!(m.signature.is_none());

    let tc = m.metadata.truncation;
    match proto {
        Proto::Udp => {
            let limit = udp_limit_for(request.and_then(|r| r.edns.as_ref()).map(|e| e.max_payload()));
            assert!(reply.len() <= limit, "{} bytes over UDP, limit {limit}", reply.len());
        }
        Proto::Tcp | Proto::Grpc => {
            assert!(!tc, "TC over a whole-message transport");
            assert!(reply.len() <= usize::from(u16::MAX));
        }
    }
    if tc {
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "TC with records");
    }
    let records = m.answers.len() + m.authorities.len();
    if rcode == ResponseCode::Refused {
        assert_eq!(records, 0, "REFUSED with records");
    }
    if m.metadata.authoritative {
        assert!(
            matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain),
            "AA with {rcode:?}"
        );
    }
    if records > 0 {
        assert!(m.metadata.authoritative, "records without AA");
    }

    let Some(request) = request.filter(|r| r.queries.len() == 1) else {
        assert!(!m.metadata.authoritative, "AA without one parsed question");
        assert_eq!(records, 0);
        return tc;
    };
    let query = request.queries.queries()[0].original();
    let qname = query.name();
    let lookup = table.lookup(qname);
    if matches!(lookup, Lookup::OutOfZone) {
        assert!(!m.metadata.authoritative, "AA outside the zones: {qname}");
        assert_eq!(records, 0, "records outside the zones");
        assert!(!matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain));
    }
    let negative = rcode == ResponseCode::NXDomain || (rcode == ResponseCode::NoError && m.answers.is_empty());
    if negative && !tc {
        assert!(m.answers.is_empty(), "NXDOMAIN with answers");
        assert_eq!(
            m.authorities.len(),
            1,
            "NXDOMAIN/NODATA with {} authority records",
            m.authorities.len()
        );
        let soa = &m.authorities[0];
        assert_eq!(soa.record_type(), RecordType::SOA);
        // The owner is the zone, spelled as the query spelled it.
        let zone = match lookup {
            Lookup::NxDomain(z) | Lookup::NoData(z) | Lookup::Apex(z) | Lookup::Records(z, _) | Lookup::Ptr(z, _) => z,
            Lookup::OutOfZone => unreachable!("checked above"),
        };
        let owner = qname.trim_to(zone.name.num_labels() as usize);
        assert_eq!(soa.name.to_ascii(), owner.to_ascii(), "SOA owner");
    }
    for record in &m.answers {
        assert_eq!(record.name.to_ascii(), qname.to_ascii(), "answer owner");
    }

    // What the answer should be, when the request is one the table answers.
    let answerable =
        synced && request.metadata.op_code == OpCode::Query && request.edns.as_ref().is_none_or(|e| e.version() == 0);
    if answerable {
        let want = answer(table, query);
        assert_eq!(u16::from(rcode), u16::from(want.rcode));
        assert_eq!(m.metadata.authoritative, want.authoritative);
        if !tc {
            assert_eq!(m.answers.len(), want.answers.len(), "a partial RRset");
            assert_eq!(m.authorities.len(), want.authority.len());
        }
    } else if !synced {
        assert!([2, 16, 4, 1].contains(&u16::from(rcode)), "{rcode:?} while not synced");
    }
    tc
}

/// The one question of `packet`, whole and uncompressed, as it came:
/// what every reply must echo.
fn whole_question(packet: &[u8]) -> Option<&[u8]> {
    if packet.get(4..6)? != [0, 1] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*packet.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        i += 1 + len;
        if i - 12 > 255 {
            return None;
        }
    }
    if i - 12 > 255 {
        return None;
    }
    packet.get(12..i + 4)
}
