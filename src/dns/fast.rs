//! The UDP fast path: the common query (one question, class IN, type A or
//! AAAA, at most an EDNS version 0 OPT) parsed by hand and answered straight
//! into bytes, with no allocation. It returns exactly the bytes the general
//! path (hickory-proto parse, [`super::answer`], hickory's encoder) returns,
//! a property `tests/differential.rs` checks over thousands of queries.
//! Anything else, or any doubt, returns `None` and takes the general path.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::edns::{EDNS_PAYLOAD, udp_limit_for};
use crate::index::{Lookup, Table};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SOA: u16 = 6;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Labels the fast path takes; deeper names take the general path. Kept
/// small because the query is built on the stack for every packet.
const FAST_LABELS: usize = 16;

// A records are the smallest (16 bytes with a pointer owner): more than 120
// of them in one UDP answer would outrun hickory's compression limit.
const _: () = assert!((EDNS_PAYLOAD as usize) / 16 < 120);

/// What the fast path needs from a query.
struct Query<'p> {
    packet: &'p [u8],
    /// End of the question section.
    question_end: usize,
    labels: [&'p [u8]; FAST_LABELS],
    label_starts: [u16; FAST_LABELS],
    num_labels: usize,
    qtype: u16,
    /// `Some((payload size, DO bit))` when the query had an OPT record.
    edns: Option<(u16, bool)>,
}

/// Answers `packet` into `out` if it is a query the fast path handles (the
/// caller has checked that the table is synced), returning the rcode and
/// query type; `None` leaves it to the general path.
pub fn respond(packet: &[u8], table: &Table, out: &mut Vec<u8>) -> Option<(ResponseCode, RecordType)> {
    let q = parse(packet)?;
    let (zone, node, exists) = match table.lookup_labels(&q.labels[..q.num_labels]) {
        Lookup::Records(zone, node) => (zone, Some(node), true),
        Lookup::Apex(zone) | Lookup::NoData(zone) => (zone, None, true),
        Lookup::NxDomain(zone) => (zone, None, false),
        Lookup::OutOfZone => return None,
    };
    let ttl = table.config.ttl;
    out.clear();
    let rcode = match node {
        Some(node) if q.qtype == TYPE_A && !node.v4().is_empty() => {
            header(&q, out, node.v4().len() as u16, 0, ResponseCode::NoError);
            answers(&q, out, ttl, TYPE_A, node.v4().iter().map(|a| a.octets()));
            ResponseCode::NoError
        }
        Some(node) if q.qtype == TYPE_AAAA && !node.v6().is_empty() => {
            header(&q, out, node.v6().len() as u16, 0, ResponseCode::NoError);
            answers(&q, out, ttl, TYPE_AAAA, node.v6().iter().map(|a| a.octets()));
            ResponseCode::NoError
        }
        _ => {
            let soa = table.soa_wire.as_deref()?;
            let rcode = if exists {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            header(&q, out, 0, 1, rcode);
            // The SOA owner is the query's own zone suffix, case kept.
            let zone_labels = zone.name.num_labels() as usize;
            let owner_start = q.label_starts[q.num_labels - zone_labels] as usize;
            out.extend_from_slice(&packet[owner_start..q.question_end - 4]);
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

fn header(q: &Query<'_>, out: &mut Vec<u8>, answers: u16, authority: u16, rcode: ResponseCode) {
    let p = q.packet;
    out.extend_from_slice(&p[..2]); // ID
    out.push(0x80 | 0x04 | (p[2] & 0x01)); // QR, AA, RD copied
    out.push((p[3] & 0x10) | u16::from(rcode) as u8); // CD copied
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&authority.to_be_bytes());
    out.extend_from_slice(&u16::from(q.edns.is_some()).to_be_bytes());
    out.extend_from_slice(&p[12..q.question_end]); // the question as asked
}

/// The first owner is written out in the query's case; the others point at
/// it, as hickory's encoder does (it stops compressing after 120 names, which
/// an answer within `EDNS_PAYLOAD` never reaches; see the assertion above).
fn answers<const N: usize>(
    q: &Query<'_>,
    out: &mut Vec<u8>,
    ttl: u32,
    rtype: u16,
    rdata: impl Iterator<Item = [u8; N]>,
) {
    let first = out.len();
    for (i, data) in rdata.enumerate() {
        if i == 0 {
            out.extend_from_slice(&q.packet[12..q.question_end - 4]);
        } else {
            out.extend_from_slice(&(0xc000 | first as u16).to_be_bytes());
        }
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(N as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
}

fn parse(p: &[u8]) -> Option<Query<'_>> {
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
        packet: p,
        question_end: 0,
        labels: [&[]; FAST_LABELS],
        label_starts: [0; FAST_LABELS],
        num_labels: 0,
        qtype: 0,
        edns: None,
    };
    let mut i = 12;
    loop {
        let len = *p.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        // Compression pointers and extended label types: general path.
        if len > 63 || q.num_labels == FAST_LABELS || i + 1 + len - 12 > 255 {
            return None;
        }
        q.labels[q.num_labels] = p.get(i + 1..i + 1 + len)?;
        q.label_starts[q.num_labels] = i as u16;
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
    q.question_end = i;

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
