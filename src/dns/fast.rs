//! The UDP fast path: the common query (one question, class IN, type A or
//! AAAA, at most an EDNS version 0 OPT) parsed by hand and answered straight
//! into bytes, with no allocation. It returns exactly the bytes the general
//! path (hickory-proto parse, [`super::answer`], hickory's encoder) returns,
//! a property `tests/differential.rs` checks over thousands of queries.
//! Anything else, or any doubt, returns `None` and takes the general path.
//!
//! A UDP reader parses a whole batch first ([`Lookahead`]): each query once,
//! its table key built in the same pass, and where the key lies in the table
//! prefetched in two stages over the batch (the small table, then its
//! slots), so that the batch's cache misses overlap before any is answered.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::edns::{EDNS_PAYLOAD, udp_limit_for};
use crate::index::{Lookup, NameKey, Table};
use crate::sys::mmsg::BATCH;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SOA: u16 = 6;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Labels the fast path takes; deeper names take the general path. Kept
/// small because the labels are laid out on the stack for every lookup.
const FAST_LABELS: usize = 16;

// A records are the smallest (16 bytes with a pointer owner): more than 120
// of them in one UDP answer would outrun hickory's compression limit.
const _: () = assert!((EDNS_PAYLOAD as usize) / 16 < 120);

/// What the fast path needs from a query: positions in its packet rather
/// than borrowed slices, so that a batch of them is a small array.
#[derive(Clone, Copy, Debug)]
struct Query {
    /// End of the question section.
    question_end: u16,
    /// Where each label's length octet sits in the packet.
    starts: [u16; FAST_LABELS],
    num_labels: u8,
    qtype: u16,
    /// `Some((payload size, DO bit))` when the query had an OPT record.
    edns: Option<(u16, bool)>,
}

impl Query {
    /// The name's labels as slices of `packet`, the one this was parsed
    /// from; `None` when it cannot be (another packet).
    fn labels<'p>(&self, packet: &'p [u8], out: &mut [&'p [u8]; FAST_LABELS]) -> Option<usize> {
        let n = usize::from(self.num_labels);
        for (label, &start) in out.iter_mut().zip(&self.starts[..n]) {
            let start = usize::from(start);
            let len = usize::from(*packet.get(start)?);
            *label = packet.get(start + 1..start + 1 + len)?;
        }
        Some(n)
    }
}

/// Answers `packet` into `out` if it is a query the fast path handles (the
/// caller has checked that the table is synced), returning the rcode and
/// query type; `None` leaves it to the general path.
pub fn respond(packet: &[u8], table: &Table, out: &mut Vec<u8>) -> Option<(ResponseCode, RecordType)> {
    let mut key = NameKey::default();
    let q = parse(packet, &mut key)?;
    answer(packet, &q, &mut key, table, out)
}

/// One UDP reader's fast-path scratch for a batch of datagrams: what
/// [`Lookahead::look_ahead`] parsed and keyed for each, which
/// [`Lookahead::respond`] answers as [`respond`] would.
pub struct Lookahead {
    slots: Box<[(Option<Query>, NameKey)]>,
}

impl Default for Lookahead {
    fn default() -> Self {
        Self {
            slots: vec![(None, NameKey::default()); BATCH].into_boxed_slice(),
        }
    }
}

impl Lookahead {
    /// Parses datagram `i` of a batch (below [`BATCH`]) and, if the fast
    /// path takes it, starts loading where in `table` its name will be
    /// found (the first prefetch stage, [`Table::prefetch_key`]).
    pub fn look_ahead(&mut self, i: usize, packet: &[u8], table: &Table) {
        let (query, key) = &mut self.slots[i];
        *query = parse(packet, key);
        if query.is_some() {
            table.prefetch_key(key);
        }
    }

    /// The second prefetch stage for datagram `i` ([`Table::prefetch_slots`]),
    /// best once every datagram of the batch has been looked ahead at.
    pub fn prefetch(&self, i: usize, table: &Table) {
        let (query, key) = &self.slots[i];
        if query.is_some() {
            table.prefetch_slots(key);
        }
    }

    /// [`respond`] for datagram `i`, `packet` as given to
    /// [`Lookahead::look_ahead`], and the same `table`.
    pub fn respond(
        &mut self,
        i: usize,
        packet: &[u8],
        table: &Table,
        out: &mut Vec<u8>,
    ) -> Option<(ResponseCode, RecordType)> {
        let (query, key) = &mut self.slots[i];
        answer(packet, query.as_ref()?, key, table, out)
    }
}

/// Answers a parsed query; `key` is its name's, from [`parse`].
fn answer(
    packet: &[u8],
    q: &Query,
    key: &mut NameKey,
    table: &Table,
    out: &mut Vec<u8>,
) -> Option<(ResponseCode, RecordType)> {
    let mut labels: [&[u8]; FAST_LABELS] = [&[]; FAST_LABELS];
    let n = q.labels(packet, &mut labels)?;
    let (zone, node, exists) = match table.lookup_keyed(&labels[..n], key) {
        Lookup::Records(zone, node) => (zone, Some(node), true),
        Lookup::Apex(zone) | Lookup::NoData(zone) => (zone, None, true),
        Lookup::NxDomain(zone) => (zone, None, false),
        // PTR (any query type at an address with hosts) is the general
        // path's: the fast path only writes A, AAAA and SOA.
        Lookup::OutOfZone | Lookup::Ptr(..) => return None,
    };
    let ttl = table.config.ttl;
    out.clear();
    let rcode = match node {
        Some(node) if q.qtype == TYPE_A && !node.v4().is_empty() => {
            header(packet, q, out, node.v4().len() as u16, 0, ResponseCode::NoError);
            answers(out, ttl, TYPE_A, node.v4().iter().map(|a| a.octets()));
            ResponseCode::NoError
        }
        Some(node) if q.qtype == TYPE_AAAA && !node.v6().is_empty() => {
            header(packet, q, out, node.v6().len() as u16, 0, ResponseCode::NoError);
            answers(out, ttl, TYPE_AAAA, node.v6().iter().map(|a| a.octets()));
            ResponseCode::NoError
        }
        _ => {
            let soa = table.soa_wire.as_deref()?;
            let rcode = if exists {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            header(packet, q, out, 0, 1, rcode);
            // The SOA owner is the query's own zone suffix, case kept: a
            // pointer into the question, which sits where it did in the query.
            let zone_labels = zone.name.num_labels() as usize;
            let owner_start = q.starts[n - zone_labels];
            out.extend_from_slice(&(0xc000 | owner_start).to_be_bytes());
            out.extend_from_slice(&TYPE_SOA.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.min(table.config.negative_ttl).to_be_bytes());
            out.extend_from_slice(&(soa.len() as u16).to_be_bytes());
            out.extend_from_slice(soa);
            rcode
        }
    };
    if let Some((_, dnssec_ok)) = q.edns {
        // Root owner, OPT, our payload, no extended rcode, version 0, DO copied.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    // Too big for the client: the general path sends TC=1.
    let qtype = if q.qtype == TYPE_A {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    (out.len() <= udp_limit_for(q.edns.map(|e| e.0))).then_some((rcode, qtype))
}

fn header(p: &[u8], q: &Query, out: &mut Vec<u8>, answers: u16, authority: u16, rcode: ResponseCode) {
    out.extend_from_slice(&p[..2]); // ID
    out.push(0x80 | 0x04 | (p[2] & 0x01)); // QR, AA, RD copied
    out.push((p[3] & 0x10) | u16::from(rcode) as u8); // CD copied
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&authority.to_be_bytes());
    out.extend_from_slice(&u16::from(q.edns.is_some()).to_be_bytes());
    out.extend_from_slice(&p[12..usize::from(q.question_end)]); // the question as asked
}

/// Every owner points at the question's name (offset 12), as the general
/// path's encoder makes it (it stops compressing after 120 names, which an
/// answer within `EDNS_PAYLOAD` never reaches; see the assertion above).
fn answers<const N: usize>(out: &mut Vec<u8>, ttl: u32, rtype: u16, rdata: impl Iterator<Item = [u8; N]>) {
    for data in rdata {
        out.extend_from_slice(&0xc00cu16.to_be_bytes());
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(N as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
}

/// Parses a query the fast path takes, building its name's table key into
/// `key` on the way (left meaningless when it returns `None`).
fn parse(p: &[u8], key: &mut NameKey) -> Option<Query> {
    let u16_at = |i: usize| -> Option<u16> { Some(u16::from_be_bytes(p.get(i..i + 2)?.try_into().ok()?)) };
    // QR=0, opcode QUERY; one question, no answers or authority, at most
    // the OPT record.
    if p.len() < 12 || p[2] & 0xf8 != 0 || u16_at(4)? != 1 || u16_at(6)? != 0 || u16_at(8)? != 0 {
        return None;
    }
    let additional = u16_at(10)?;
    if additional > 1 {
        return None;
    }

    let mut q = Query {
        question_end: 0,
        starts: [0; FAST_LABELS],
        num_labels: 0,
        qtype: 0,
        edns: None,
    };
    key.clear();
    let mut i = 12;
    loop {
        let len = *p.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        // Compression pointers and extended label types: general path.
        if len > 63 || usize::from(q.num_labels) == FAST_LABELS || i + 1 + len - 12 > 255 {
            return None;
        }
        key.push(p.get(i + 1..i + 1 + len)?);
        q.starts[usize::from(q.num_labels)] = i as u16;
        q.num_labels += 1;
        i += 1 + len;
    }
    if i - 12 > 255 {
        return None;
    }
    q.qtype = u16_at(i)?;
    if !matches!(q.qtype, TYPE_A | TYPE_AAAA) || u16_at(i + 2)? != CLASS_IN {
        return None;
    }
    i += 4;
    q.question_end = i as u16;

    if additional == 1 {
        // Root owner, type OPT, version 0, well-formed options, nothing after.
        if *p.get(i)? != 0 || u16_at(i + 1)? != TYPE_OPT || *p.get(i + 6)? != 0 {
            return None;
        }
        let payload = u16_at(i + 3)?;
        let dnssec_ok = *p.get(i + 7)? & 0x80 != 0;
        // EDNS options (cookies, client subnet …) are hickory's to parse.
        if u16_at(i + 9)? != 0 || i + 11 != p.len() {
            return None;
        }
        q.edns = Some((payload, dnssec_ok));
    } else if i != p.len() {
        return None;
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    //! The guards that send a query to the general path, each at its limit
    //! and one past it, and what the fast path reports for the metrics.
    //! `tests/differential.rs` checks that the answers it does give match
    //! the general path's; the fuzz target `packet` checks both over
    //! arbitrary packets.

    use std::sync::Arc;

    use super::*;
    use crate::admin::Readiness;
    use crate::dns::Handler;
    use crate::dns::metrics::DnsMetrics;
    use crate::index::testing::{mk_entry, mk_index};
    use crate::index::{Index, MAX_LABELS};

    const OPT: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];

    /// Wire labels, then the root.
    fn mk_name(labels: &[&[u8]]) -> Vec<u8> {
        let mut p = Vec::new();
        for label in labels {
            p.push(label.len() as u8);
            p.extend_from_slice(label);
        }
        p.push(0);
        p
    }

    /// A query with name bytes `name` (taken as they are), `qtype` class IN,
    /// and `additional` records after the question.
    fn mk_query(name: &[u8], qtype: u16, additional: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&(additional.len() as u16).to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        additional.iter().for_each(|r| p.extend_from_slice(r));
        p
    }

    fn mk_table() -> Arc<Table> {
        let index = mk_index();
        index.apply(mk_entry(
            "foo/a",
            None,
            &[("httpbin.bar.global", &["240.0.0.2", "2001:db8::2"])],
        ));
        index.table()
    }

    /// Whether the fast path answers `packet` (parse and lookup both).
    fn taken(packet: &[u8]) -> bool {
        let table = mk_table();
        let taken = respond(packet, &table, &mut Vec::new()).is_some();
        assert_eq!(
            taken,
            parse(packet, &mut NameKey::default()).is_some(),
            "parse and respond disagree on {packet:02x?}"
        );
        taken
    }

    /// Owner names point at the question, as Knot's do: a plain A answer
    /// is the header, the question, 16 bytes per record and the OPT.
    #[test]
    fn owner_names_point_at_the_question() {
        let table = mk_table();
        let name = mk_name(&[b"HttpBin", b"bar", b"global"]);
        let query = mk_query(&name, TYPE_A, &[OPT]);
        let mut out = Vec::new();
        respond(&query, &table, &mut out).unwrap();
        assert_eq!(out.len(), 12 + name.len() + 4 + 16 + OPT.len());
        let answer = &out[12 + name.len() + 4..];
        assert_eq!(&answer[..2], &[0xc0, 12]);
        assert_eq!(&answer[12..16], &[240, 0, 0, 2]);
        // NXDOMAIN: the SOA's owner points at `global` inside the question.
        let name = mk_name(&[b"nope", b"bar", b"GLOBAL"]);
        respond(&mk_query(&name, TYPE_A, &[]), &table, &mut out).unwrap();
        let soa = &out[12 + name.len() + 4..];
        assert_eq!(&soa[..2], &[0xc0, 12 + 5 + 4]);
        assert_eq!(&out[12 + 5 + 4..12 + 5 + 4 + 7], b"\x06GLOBAL");
    }

    /// A UDP reader looks at its whole batch before answering any of it,
    /// in slots used by earlier batches: each answer is still exactly
    /// [`respond`]'s, and a packet the fast path declines stays declined.
    #[test]
    fn a_batch_looked_at_first_answers_as_one_query_does() {
        let table = mk_table();
        let names = [
            mk_name(&[b"HttpBin", b"bar", b"global"]),
            mk_name(&[b"nope", b"bar", b"global"]),
            mk_name(&[b"bar", b"global"]),
            mk_name(&[b"global"]),
            mk_name(&[b"example", b"com"]),
        ];
        let mut packets = Vec::new();
        for (i, name) in names.iter().enumerate() {
            for qtype in [TYPE_A, TYPE_AAAA, 16] {
                let opt: &[&[u8]] = if i % 2 == 0 { &[OPT] } else { &[] };
                packets.push(mk_query(name, qtype, opt));
            }
        }
        packets.push(vec![0; 11]);
        packets.push(mk_query(&[0xc0, 12], TYPE_A, &[]));
        assert!(packets.len() <= BATCH);
        let mut ahead = Lookahead::default();
        // Two batches, the second shorter and reversed, so that its slots
        // held other packets before.
        let second: Vec<_> = packets.iter().rev().take(packets.len() / 2).collect();
        for batch in [packets.iter().collect::<Vec<_>>(), second] {
            for (i, p) in batch.iter().enumerate() {
                ahead.look_ahead(i, p, &table);
            }
            (0..batch.len()).for_each(|i| ahead.prefetch(i, &table));
            for (i, p) in batch.iter().enumerate() {
                let (mut one, mut batched) = (Vec::new(), Vec::new());
                let want = respond(p, &table, &mut one);
                assert_eq!(ahead.respond(i, p, &table, &mut batched), want, "{p:02x?}");
                if want.is_some() {
                    assert_eq!(batched, one);
                }
            }
        }
    }

    #[test]
    fn labels_of_63_octets_are_taken_and_of_64_declined() {
        let l63 = [b'a'; 63];
        assert!(taken(&mk_query(&mk_name(&[&l63, b"bar", b"global"]), TYPE_A, &[])));
        // 0x40 is an extended label type (RFC 6891 §5), not a length.
        let l64 = [b'a'; 64];
        assert!(!taken(&mk_query(&mk_name(&[&l64, b"bar", b"global"]), TYPE_A, &[])));
    }

    #[test]
    fn names_of_255_octets_are_taken_and_of_256_declined() {
        let (a, b, c) = ([b'a'; 63], [b'b'; 63], [b'c'; 63]);
        let name_255 = mk_name(&[&a, &b, &c, &[b'd'; 54], b"global"]);
        assert_eq!(name_255.len(), 255);
        assert!(taken(&mk_query(&name_255, TYPE_A, &[])));
        let name_256 = mk_name(&[&a, &b, &c, &[b'd'; 55], b"global"]);
        assert_eq!(name_256.len(), 256);
        assert!(!taken(&mk_query(&name_256, TYPE_A, &[])));
        // Already past 255 octets before the root.
        let name_324 = mk_name(&[&a, &b, &c, &[b'd'; 63], &[b'e'; 63], b"global"]);
        assert!(!taken(&mk_query(&name_324, TYPE_A, &[])));
    }

    #[test]
    fn sixteen_labels_are_taken_and_seventeen_declined() {
        let mut labels: Vec<&[u8]> = vec![b"x"; FAST_LABELS - 1];
        labels.push(b"global");
        assert!(taken(&mk_query(&mk_name(&labels), TYPE_A, &[])));
        labels.insert(0, b"y");
        assert!(!taken(&mk_query(&mk_name(&labels), TYPE_A, &[])));
        // The most a 255-octet name can have (127 and the root), and one more.
        let mut labels: Vec<&[u8]> = vec![b"x"; MAX_LABELS - 2];
        labels.push(b"g");
        assert_eq!(mk_name(&labels).len(), 255);
        assert!(!taken(&mk_query(&mk_name(&labels), TYPE_A, &[])));
        labels.push(b"h");
        assert!(!taken(&mk_query(&mk_name(&labels), TYPE_A, &[])));
    }

    #[test]
    fn compression_pointers_in_the_question_are_declined() {
        assert!(!taken(&mk_query(&[0xc0, 12], TYPE_A, &[])));
        assert!(!taken(&mk_query(&[3, b'b', b'a', b'r', 0xc0, 12], TYPE_A, &[])));
        // A pointer followed by enough bytes to pass for a 192-octet label
        // of an in-zone name: only the label-type check declines it.
        let mut name = vec![0xc0, 12];
        name.extend_from_slice(&[b'x'; 191]);
        name.extend_from_slice(&mk_name(&[b"global"]));
        assert!(!taken(&mk_query(&name, TYPE_A, &[])));
        // The other reserved label types, 0x40 and 0x80, likewise.
        for first in [0x40, 0x80] {
            name[0] = first;
            assert!(!taken(&mk_query(&name, TYPE_A, &[])));
        }
    }

    #[test]
    fn a_second_opt_record_is_declined() {
        let name = mk_name(&[b"httpbin", b"bar", b"global"]);
        assert!(taken(&mk_query(&name, TYPE_A, &[OPT])));
        assert!(!taken(&mk_query(&name, TYPE_A, &[OPT, OPT])));
        // Counted twice, present once: the general path's FORMERR.
        let mut once = mk_query(&name, TYPE_A, &[OPT]);
        once[11] = 2;
        assert!(!taken(&once));
        // Counted, and not there at all.
        let mut none = mk_query(&name, TYPE_A, &[]);
        none[11] = 2;
        assert!(!taken(&none));
    }

    #[test]
    fn answers_report_their_query_type() {
        let table = mk_table();
        let name = mk_name(&[b"httpbin", b"bar", b"global"]);
        for (qtype, want) in [(TYPE_A, RecordType::A), (TYPE_AAAA, RecordType::AAAA)] {
            let got = respond(&mk_query(&name, qtype, &[]), &table, &mut Vec::new());
            assert_eq!(got, Some((ResponseCode::NoError, want)));
        }
        let nxdomain = mk_name(&[b"nope", b"global"]);
        let got = respond(&mk_query(&nxdomain, TYPE_AAAA, &[]), &table, &mut Vec::new());
        assert_eq!(got, Some((ResponseCode::NXDomain, RecordType::AAAA)));
    }

    /// `meshdns_dns_requests_total{proto="udp", type=…}` after the fast path
    /// answered one query of each type.
    #[test]
    fn fast_answers_are_counted_by_query_type() {
        let registry = prometheus::Registry::new();
        let ready = Readiness::register(&registry).unwrap();
        ready.set_synced();
        let index: Arc<Index> = Arc::new(mk_index());
        index.apply(mk_entry("foo/a", None, &[("httpbin.bar.global", &["240.0.0.2"])]));
        let handler = Handler::new(index, ready, DnsMetrics::register(&registry).unwrap());
        let name = mk_name(&[b"httpbin", b"bar", b"global"]);
        let mut recorder = handler.metrics().udp_recorder();
        for (qtype, n) in [(TYPE_A, 2), (TYPE_AAAA, 1)] {
            for _ in 0..n {
                assert!(handler.respond_fast(&mk_query(&name, qtype, &[]), &mut Vec::new(), &mut recorder));
            }
        }
        // A UDP reader flushes after each batch.
        recorder.flush();
        let count = |proto: &str, qtype: &str| -> f64 {
            let families = registry.gather();
            let family = families
                .iter()
                .find(|f| f.name() == "meshdns_dns_requests_total")
                .expect("registered");
            family
                .get_metric()
                .iter()
                .find(|m| {
                    let label = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_string())
                    };
                    label("proto").as_deref() == Some(proto) && label("type").as_deref() == Some(qtype)
                })
                .map_or(0.0, |m| m.get_counter().get_value())
        };
        assert_eq!(count("udp", "A"), 2.0);
        assert_eq!(count("udp", "AAAA"), 1.0);
        assert_eq!(count("udp", "other"), 0.0);
        assert_eq!(count("tcp", "A"), 0.0);
    }
}
