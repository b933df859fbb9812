//! The UDP fast path returns byte for byte what the general path returns,
//! over thousands of generated queries: mixed case, wildcards, empty
//! non-terminals, several and nested zones, missing and out-of-zone names, odd bytes, every EDNS
//! variant, header flags, and answers too big for the client; and
//! malformed ones (trailing bytes, compressed questions, stray records,
//! broken EDNS options), which it must leave to the general path's FORMERR.

#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use hickory_server::net::xfer::Protocol;
use meshdns::admin::Readiness;
use meshdns::dns::handler::parse;
use meshdns::dns::metrics::{DnsMetrics, Proto};
use meshdns::dns::{Handler, fast};
use meshdns::index::testing::{mk_host_entry, mk_index_with};
use meshdns::index::{Index, SourceId, ZoneConfig, reverse};
use meshdns::source::file;

fn index(nameserver: &str) -> Arc<Index> {
    let config = ZoneConfig {
        nameserver: Name::from_str(nameserver).unwrap(),
        ..ZoneConfig::default()
    };
    // Two forward zones, and two nested in `global`: one under the
    // `*.baz.global` wildcard, one with an empty non-terminal between.
    let zones = ["global", "mesh.local", "in.baz.global", "deep.mid.global"];
    // And reverse zones for the example's addresses (PTR is the general
    // path's; negative answers there may be the fast path's).
    let reverse = ["240.in-addr.arpa", "2001:db8::/32"].map(|z| reverse::parse_zone(z).unwrap());
    let index = Arc::new(mk_index_with(&zones, config).with_reverse_zones(&reverse).unwrap());
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/serviceentries.yaml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    index.reset(&file::source_id(path), file::load(path, &text, &index).unwrap());
    let mut extra = Vec::new();
    for (name, count, v6) in [
        ("big.bar.global", 40, false),
        ("huge.bar.global", 90, false),
        ("six.mesh.local", 30, true),
        ("a.in.baz.global", 1, false),
    ] {
        let addrs = (0..count)
            .map(|i: u32| match v6 {
                false => std::net::Ipv4Addr::from(0xf000_0100 + i).into(),
                true => std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)).into(),
            })
            .collect::<Vec<std::net::IpAddr>>();
        extra.push(mk_host_entry("t", name, name, addrs));
    }
    index.reset(&SourceId::Kube(None), extra);
    index
}

const NAMES: &[&str] = &[
    "httpbin.bar.global",
    "details.bar.global",
    "ratings.bar.global",
    "reviews.baz-team.global",
    "x.baz.global",
    "a.b.c.baz.global",
    "*.baz.global",
    "baz.global",
    "bar.global",
    "global",
    "nope.global",
    "nope.bar.global",
    "deeper.httpbin.bar.global",
    "big.bar.global",
    "huge.bar.global",
    "six.mesh.local",
    "mesh.local",
    "x.mesh.local",
    "in.baz.global",
    "a.in.baz.global",
    "x.in.baz.global",
    "mid.global",
    "x.mid.global",
    "deep.mid.global",
    "q.deep.mid.global",
    // SRV names from the example's ports (SRV answers come from the
    // general path; A/AAAA there are NODATA on both), `_T.H` non-terminals,
    // unknown ports, and an unknown one under the `*.baz.global` wildcard.
    "_http1._tcp.httpbin.bar.global",
    "_tcp.httpbin.bar.global",
    "_udp.httpbin.bar.global",
    "_nope._tcp.httpbin.bar.global",
    "_http._tcp.reviews.baz-team.global",
    "_http._tcp.x.baz.global",
    // Reverse names: PTR (httpbin, details, big), a non-terminal, an
    // unknown address, a non-canonical octet, the apexes, and outside.
    "2.0.0.240.in-addr.arpa",
    "5.0.240.240.in-addr.arpa",
    "0.1.0.240.in-addr.arpa",
    "0.240.in-addr.arpa",
    "9.9.9.240.in-addr.arpa",
    "02.0.0.240.in-addr.arpa",
    "240.in-addr.arpa",
    "in-addr.arpa",
    "2.0.0.10.in-addr.arpa",
    "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "8.b.d.0.1.0.0.2.ip6.arpa",
    "example.com",
    "com",
    "",
];

fn labels_of(rng: &mut Rng) -> Vec<Vec<u8>> {
    let name = *rng.pick(NAMES);
    let mut labels: Vec<Vec<u8>> = name
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    match rng.below(10) {
        // Random case.
        0..=3 => labels.iter_mut().flatten().for_each(|b| {
            if rng.below(2) == 0 {
                b.make_ascii_uppercase()
            }
        }),
        // Odd bytes in a label.
        4 if !labels.is_empty() => {
            let odd = *rng.pick(&[b' ', b'.', 0xff, 0, b'*', b'\\']);
            let i = rng.below(labels.len());
            labels[i].push(odd);
        }
        // A long prefix, up to the 255-octet limit and past it.
        5 => {
            for _ in 0..rng.below(5) {
                labels.insert(0, vec![b'l'; 63]);
            }
        }
        6 => labels.insert(0, vec![b'x'; 1 + rng.below(63)]),
        _ => {}
    }
    labels
}

fn packet(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(rng.next() as u16).to_be_bytes());
    let rd = if rng.below(2) == 0 { 0x01 } else { 0 };
    let opcode = if rng.below(20) == 0 {
        *rng.pick(&[1u8, 2, 4, 5]) << 3
    } else {
        0
    };
    let tc = if rng.below(20) == 0 { 0x02 } else { 0 };
    let aa = if rng.below(20) == 0 { 0x04 } else { 0 };
    p.push(opcode | aa | rd | tc);
    // RA, Z, AD, CD and an rcode in random combinations.
    p.push(*rng.pick(&[0u8, 0x10, 0x20, 0x30, 0x40, 0x80, 0x05, 0x91]));
    let qdcount: u16 = if rng.below(30) == 0 { *rng.pick(&[0, 2]) } else { 1 };
    let edns = rng.below(4) != 0;
    // A record in the answer or authority section.
    let stray = if rng.below(40) == 0 { *rng.pick(&[6, 8]) } else { 0 };
    p.extend_from_slice(&qdcount.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&u16::from(edns).to_be_bytes());
    if stray != 0 {
        p[stray + 1] = 1;
    }
    for _ in 0..qdcount {
        if rng.below(40) == 0 {
            // A compression pointer: into the header, at itself, or ahead.
            p.extend_from_slice(&[0xc0, *rng.pick(&[4, 12, 40])]);
        } else {
            for label in labels_of(rng) {
                p.push(label.len() as u8);
                p.extend_from_slice(&label);
            }
            p.push(0);
        }
        let qtype: u16 = *rng.pick(&[1, 1, 1, 1, 28, 28, 28, 6, 2, 16, 15, 255, 33, 5, 0]);
        p.extend_from_slice(&qtype.to_be_bytes());
        let class: u16 = if rng.below(30) == 0 {
            *rng.pick(&[3, 255, 254])
        } else {
            1
        };
        p.extend_from_slice(&class.to_be_bytes());
    }
    if stray != 0 {
        // An A record whose owner points at the question.
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
    }
    if edns {
        let payload: u16 = *rng.pick(&[0, 100, 512, 600, 1232, 1400, 4096, 65535]);
        let version = if rng.below(15) == 0 { 1 } else { 0 };
        // Extended rcode bits, DO, and the other flag bits.
        let ext_rcode = if rng.below(15) == 0 { 1 } else { 0 };
        let flags: u8 = *rng.pick(&[0, 0, 0x80, 0x01, 0xc0]);
        let z = if rng.below(15) == 0 { 0x01 } else { 0 };
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[ext_rcode, version, flags, z]);
        match rng.below(30) {
            0..=4 => {
                // A client cookie.
                p.extend_from_slice(&12u16.to_be_bytes());
                p.extend_from_slice(&[0, 10, 0, 8]);
                p.extend_from_slice(&rng.next().to_be_bytes());
            }
            // An option longer than the record, or its header cut.
            5 => p.extend_from_slice(&[0, 8, 0, 10, 0, 8, 0, 2, 1, 1]),
            6 => p.extend_from_slice(&[0, 3, 0, 10, 0]),
            _ => p.extend_from_slice(&[0, 0]),
        }
    }
    if rng.below(30) == 0 {
        // Trailing garbage.
        for _ in 0..1 + rng.below(4) {
            p.push(rng.next() as u8);
        }
    }
    p
}

/// What the UDP loop answers when the fast path declines: the parsed
/// request's answer, or FORMERR for one that does not parse.
fn general(handler: &Handler, packet: &[u8]) -> Result<Vec<u8>, String> {
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::new();
    match parse(packet, src, Protocol::Udp) {
        Ok(request) => {
            handler.respond_udp(&request, &mut out);
            Ok(out)
        }
        Err(error) => {
            assert!(handler.respond_malformed(Proto::Udp, packet, &mut out));
            Err(error)
        }
    }
}

fn compare(nameserver: &str, seed: u64, count: usize) -> usize {
    let index = index(nameserver);
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    let handler = Handler::new(
        index.clone(),
        ready,
        DnsMetrics::register(&prometheus::Registry::new()).unwrap(),
    );
    let mut rng = Rng(seed);
    let (mut fast_taken, mut malformed) = (0, 0);
    let mut out = Vec::new();
    for n in 0..count {
        let packet = packet(&mut rng);
        let general = general(&handler, &packet);
        malformed += usize::from(general.is_err());
        if fast::respond(&packet, &index.table(), &mut out).is_none() {
            continue;
        }
        fast_taken += 1;
        let general =
            general.unwrap_or_else(|e| panic!("#{n}: fast path answered a malformed query ({e}): {packet:02x?}"));
        assert_eq!(out, general, "#{n}: fast and general paths differ for {packet:02x?}");
    }
    println!("seed {seed:#x}: {malformed} of {count} generated queries malformed");
    assert!(malformed > count / 20, "too few malformed queries ({malformed})");
    fast_taken
}

#[test]
fn fast_path_matches_general_path() {
    let count = 20_000;
    let taken = compare("localhost.", 0x9e37_79b9_7f4a_7c15, count);
    println!("{taken} of {count} generated queries took the fast path; all byte-identical");
    assert!(taken > count / 5, "too few queries took the fast path ({taken})");
}

/// SRV (and any type but A/AAAA) is never the fast path's: it declines,
/// and the general path answers with the records.
#[test]
fn fast_path_hands_srv_to_the_general_path() {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;
    let index = index("localhost.");
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    let handler = Handler::new(
        index.clone(),
        ready,
        DnsMetrics::register(&prometheus::Registry::new()).unwrap(),
    );
    for (name, answers) in [
        ("_http1._tcp.httpbin.bar.global.", 1),
        ("httpbin.bar.global.", 1),
        ("_nope._tcp.httpbin.bar.global.", 0),
    ] {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::SRV));
        let packet = m.to_vec().unwrap();
        let mut out = Vec::new();
        assert!(fast::respond(&packet, &index.table(), &mut out).is_none(), "{name}");
        let reply = Message::from_vec(&general(&handler, &packet).unwrap()).unwrap();
        assert_eq!(reply.answers.len(), answers, "{name}");
    }
}

/// PTR is never the fast path's, whatever the query type at an address
/// with hosts: it declines, and the general path answers.
#[test]
fn fast_path_hands_ptr_to_the_general_path() {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;
    let index = index("localhost.");
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    let handler = Handler::new(
        index.clone(),
        ready,
        DnsMetrics::register(&prometheus::Registry::new()).unwrap(),
    );
    for (name, rtype, answers) in [
        ("2.0.0.240.in-addr.arpa.", RecordType::PTR, 1),
        ("2.0.0.240.IN-ADDR.arpa.", RecordType::A, 0),
        ("5.0.240.240.in-addr.arpa.", RecordType::AAAA, 0),
        ("9.9.9.240.in-addr.arpa.", RecordType::PTR, 0),
    ] {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        let packet = m.to_vec().unwrap();
        let mut out = Vec::new();
        let fast = fast::respond(&packet, &index.table(), &mut out);
        let reply = Message::from_vec(&general(&handler, &packet).unwrap()).unwrap();
        assert_eq!(reply.answers.len(), answers, "{name}");
        if rtype == RecordType::PTR || name.starts_with("2.") || name.starts_with("5.") {
            assert!(fast.is_none(), "{name} {rtype}");
        } else {
            assert_eq!(out, general(&handler, &packet).unwrap(), "{name}");
        }
    }
}

#[test]
fn fast_path_leaves_compressible_soa_to_the_general_path() {
    // An in-zone name server: hickory compresses the SOA, so negative
    // answers must come from the general path; positive ones still match.
    let taken = compare("ns.global.", 42, 5_000);
    assert!(taken > 0);
}
