//! Malformed and unusual queries, each with the reply meshdns gives, and
//! where Knot DNS answers otherwise, Knot's reply and why meshdns differs
//! (the README's "How it answers" says the same). `tests/dns.rs` sends them
//! to the server in-process, `tests/e2e.rs` to Knot and the release binary
//! on the same data; after each, a good query must still be answered.
//!
//! Replies are compared as [`summary`] writes them: rcode, opcode when not
//! QUERY, header flags, and the non-zero counts, e.g. `FORMERR rd qd=1`.

#![allow(dead_code)]

/// The good query sent after each case: `httpbin.bar.global A`, ID 0x4321.
pub const GOOD: &[u8] = &[
    0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'h', b't', b't', b'p', b'b', b'i', b'n', 3, b'b', b'a', b'r',
    6, b'g', b'l', b'o', b'b', b'a', b'l', 0, 0, 1, 0, 1,
];
/// [`summary`] of the answer to [`GOOD`].
pub const GOOD_ANSWER: &str = "NOERROR aa rd qd=1 an=1";

pub struct Case {
    pub name: &'static str,
    pub packet: Vec<u8>,
    /// meshdns's reply, as [`summary`] writes it.
    pub want: &'static str,
    pub knot: KnotDiffers,
}

/// Knot's reply where it differs from meshdns's, and why meshdns does not
/// match it.
pub type KnotDiffers = Option<(&'static str, &'static str)>;

pub const NO_QUESTION: &str = "the question does not parse, or there is not exactly one: meshdns answers FORMERR \
     (RFC 1035 §4.1.1) so that the client need not time out, a reply no larger than the query; Knot sends none";
pub const OPT_OWNER: &str = "RFC 6891 §6.1.2: the OPT owner MUST be the root; hickory-proto rejects the message, \
     Knot ignores the owner";
pub const CLIENT_SUBNET: &str = "hickory-proto parses EDNS Client Subnet and rejects a malformed one (RFC 7871 \
     §7.1.1: FORMERR); Knot, without ECS configured, ignores the option";
pub const CD_COPIED: &str = "RFC 4035 §3.1.6: the CD bit is copied into the response; Knot clears it";
pub const NO_NOTIFY_OR_UPDATE: &str = "meshdns has no secondaries and no dynamic zones: every opcode but QUERY \
     is NOTIMP; Knot checks NOTIFY and UPDATE against its ACLs";
pub const NO_TRANSFERS: &str = "zone transfers are never offered: REFUSED on any transport; Knot answers AXFR \
     over UDP NOTIMP, and IXFR it may not serve NOTAUTH";
pub const NO_TSIG: &str = "meshdns has no keys and serves public data: a signed query is answered unsigned; \
     Knot answers NOTAUTH (BADKEY)";

const RD: u16 = 0x0100;
const A: u16 = 1;
const IN: u16 = 1;

/// A message: header flags, the four counts, then `parts` in order. The
/// ID is set by [`cases`].
fn mk_message(flags: u16, counts: [u16; 4], parts: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0, 0];
    p.extend_from_slice(&flags.to_be_bytes());
    counts.iter().for_each(|c| p.extend_from_slice(&c.to_be_bytes()));
    parts.iter().for_each(|part| p.extend_from_slice(part));
    p
}

/// `name` as uncompressed labels.
fn mk_name(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p
}

fn mk_question(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut p = mk_name(name);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    p
}

/// A message with one question for `name`, `qtype`, class IN, and RD.
fn mk_ask(name: &str, qtype: u16) -> Vec<u8> {
    mk_message(RD, [1, 0, 0, 0], &[&mk_question(name, qtype, IN)])
}

/// A record: owner bytes, type, class, TTL, and RDATA with its length
/// (or `rdlen` when given, to lie about it).
fn mk_record(owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8], rdlen: Option<u16>) -> Vec<u8> {
    let mut p = owner.to_vec();
    p.extend_from_slice(&rtype.to_be_bytes());
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&ttl.to_be_bytes());
    p.extend_from_slice(&rdlen.unwrap_or(rdata.len() as u16).to_be_bytes());
    p.extend_from_slice(rdata);
    p
}

/// An OPT record, payload 1232, with `version`, the DO bit and `options`.
fn mk_opt(version: u8, dnssec_ok: bool, options: &[u8]) -> Vec<u8> {
    let ttl = u32::from(version) << 16 | if dnssec_ok { 0x8000 } else { 0 };
    mk_record(&[0], 41, 1232, ttl, options, None)
}

/// A query for `httpbin.bar.global A` with header `flags` and `counts`,
/// and `extra` after the question.
fn mk_query(flags: u16, counts: [u16; 4], extra: &[&[u8]]) -> Vec<u8> {
    let q = mk_question("httpbin.bar.global", A, IN);
    let parts: Vec<&[u8]> = std::iter::once(&q[..]).chain(extra.iter().copied()).collect();
    mk_message(flags, counts, &parts)
}

/// Every case, in a fixed order; each ID is 0x1000 + its position.
pub fn cases() -> Vec<Case> {
    let q = mk_question;
    let httpbin = q("httpbin.bar.global", A, IN);
    let opt = mk_opt(0, false, &[]);
    let a_record = mk_record(&[0xc0, 12], A, IN, 30, &[1, 2, 3, 4], None);
    let tsig_rdata = [
        &mk_name("hmac-sha256")[..],
        &[0, 0, 0x60, 0, 0, 0, 0x01, 0x2c, 0, 32],
        &[1; 32],
        &[0, 0, 0, 0, 0, 0],
    ]
    .concat();
    let tsig = mk_record(&mk_name("key"), 250, 255, 0, &tsig_rdata, None);
    let long = |last: usize| format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(last));
    let query = |flags| mk_query(flags, [1, 0, 0, 0], &[]);
    let drops = Some(("no reply", NO_QUESTION));

    // (name, packet, meshdns's reply, Knot's where it differs)
    let table: Vec<(&'static str, Vec<u8>, &'static str, KnotDiffers)> = vec![
        // Too short, or not a query.
        (
            "11 bytes",
            mk_message(RD, [1, 0, 0, 0], &[])[..11].to_vec(),
            "no reply",
            None,
        ),
        ("QR set", query(0x8000 | RD), "no reply", None),
        (
            "header only, QDCOUNT 0",
            mk_message(RD, [0; 4], &[]),
            "FORMERR rd",
            None,
        ),
        (
            "header only, QDCOUNT 1",
            mk_message(RD, [1, 0, 0, 0], &[]),
            "FORMERR rd",
            drops,
        ),
        // Bytes after the last record.
        (
            "trailing byte",
            mk_query(RD, [1, 0, 0, 0], &[&[0]]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "trailing bytes after OPT",
            mk_query(RD, [1, 0, 0, 1], &[&opt, &[0xde, 0xad]]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "trailing byte, name that does not exist",
            mk_message(RD, [1, 0, 0, 0], &[&q("nope.bar.global", 28, IN), &[0]]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "trailing byte, upper-case name",
            mk_message(RD, [1, 0, 0, 0], &[&q("HttpBin.BAR.global", A, IN), &[0]]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "trailing byte, opcode 3",
            mk_query(3 << 11 | RD, [1, 0, 0, 0], &[&[0]]),
            "FORMERR op=3 rd qd=1",
            None,
        ),
        (
            "trailing byte, EDNS version 1",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(1, false, &[]), &[0]]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "trailing byte, QDCOUNT 0 and OPT",
            mk_message(RD, [0, 0, 0, 1], &[&opt, &[0]]),
            "FORMERR rd",
            None,
        ),
        (
            "trailing bytes, QDCOUNT 0",
            mk_message(RD, [0; 4], &[&[0, 0]]),
            "FORMERR rd",
            drops,
        ),
        (
            "trailing byte, every flag",
            mk_query(0x07f0, [1, 0, 0, 0], &[&[0]]),
            "FORMERR rd cd qd=1",
            Some(("FORMERR rd qd=1", CD_COPIED)),
        ),
        // QTYPE 0.
        ("QTYPE 0", mk_ask("httpbin.bar.global", 0), "NOTIMP rd qd=1", None),
        (
            "QTYPE 0, OPT with DO",
            mk_message(
                RD,
                [1, 0, 0, 1],
                &[&q("httpbin.bar.global", 0, IN), &mk_opt(0, true, &[])],
            ),
            "NOTIMP rd qd=1 ar=1",
            None,
        ),
        (
            "QTYPE 0, outside the zone",
            mk_ask("example.com", 0),
            "NOTIMP rd qd=1",
            None,
        ),
        (
            "QTYPE 0, class CH",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", 0, 3)]),
            "NOTIMP rd qd=1",
            None,
        ),
        (
            "QTYPE 0, class 0",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", 0, 0)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QTYPE 0, EDNS version 1",
            mk_message(
                RD,
                [1, 0, 0, 1],
                &[&q("httpbin.bar.global", 0, IN), &mk_opt(1, false, &[])],
            ),
            "BADVERS rd qd=1 ar=1",
            None,
        ),
        // Question count.
        (
            "QDCOUNT 2",
            mk_query(RD, [2, 0, 0, 0], &[&q("ratings.bar.global", A, IN)]),
            "FORMERR rd qd=2",
            drops,
        ),
        (
            "QDCOUNT 2 and OPT",
            mk_query(RD, [2, 0, 0, 1], &[&q("ratings.bar.global", A, IN), &opt]),
            "FORMERR rd qd=2 ar=1",
            drops,
        ),
        (
            "QDCOUNT 2, one question",
            mk_query(RD, [2, 0, 0, 0], &[]),
            "FORMERR rd",
            drops,
        ),
        (
            "QDCOUNT 0 and OPT",
            mk_message(RD, [0, 0, 0, 1], &[&opt]),
            "FORMERR rd ar=1",
            None,
        ),
        // A question that does not parse.
        (
            "ends inside the name",
            mk_message(RD, [1, 0, 0, 0], &[&httpbin[..6]]),
            "FORMERR rd",
            drops,
        ),
        (
            "ends inside QTYPE",
            mk_message(RD, [1, 0, 0, 0], &[&httpbin[..httpbin.len() - 3]]),
            "FORMERR rd",
            drops,
        ),
        (
            "ends inside QCLASS",
            mk_message(RD, [1, 0, 0, 0], &[&httpbin[..httpbin.len() - 1]]),
            "FORMERR rd",
            drops,
        ),
        (
            "question name points forward",
            mk_message(
                RD,
                [1, 0, 0, 0],
                &[&[0xc0, 18, 0, 1, 0, 1], &mk_name("httpbin.bar.global")],
            ),
            "FORMERR rd",
            drops,
        ),
        (
            "question name points at itself",
            mk_message(RD, [1, 0, 0, 0], &[&[0xc0, 12, 0, 1, 0, 1]]),
            "FORMERR rd",
            drops,
        ),
        (
            "question name points into the header",
            mk_message(RD, [1, 0, 0, 0], &[&[0xc0, 4, 0, 1, 0, 1]]),
            "FORMERR rd",
            drops,
        ),
        (
            "label length 64",
            mk_message(RD, [1, 0, 0, 0], &[&[64], &[b'a'; 64], &q("global", A, IN)]),
            "FORMERR rd",
            drops,
        ),
        (
            "label type 0x80",
            mk_message(RD, [1, 0, 0, 0], &[&[0x80], &[b'a'; 64], &q("global", A, IN)]),
            "FORMERR rd",
            drops,
        ),
        ("name of 256 octets", mk_ask(&long(62), A), "FORMERR rd", drops),
        ("name of 255 octets", mk_ask(&long(61), A), "REFUSED rd qd=1", None),
        ("root name", mk_ask(".", A), "REFUSED rd qd=1", None),
        // Records in a query.
        (
            "ANCOUNT 1, an A record",
            mk_query(RD, [1, 1, 0, 0], &[&a_record]),
            "NOERROR aa rd qd=1 an=1",
            None,
        ),
        (
            "NSCOUNT 1, an A record",
            mk_query(RD, [1, 0, 1, 0], &[&a_record]),
            "NOERROR aa rd qd=1 an=1",
            None,
        ),
        (
            "ARCOUNT 1, an A record",
            mk_query(RD, [1, 0, 0, 1], &[&a_record]),
            "NOERROR aa rd qd=1 an=1",
            None,
        ),
        (
            "ANCOUNT 1, no record",
            mk_query(RD, [1, 1, 0, 0], &[]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "NSCOUNT 1, no record",
            mk_query(RD, [1, 0, 1, 0], &[]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "ARCOUNT 1, no record",
            mk_query(RD, [1, 0, 0, 1], &[]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "record owner points forward",
            mk_query(
                RD,
                [1, 1, 0, 0],
                &[&mk_record(&[0xc0, 0x40], A, IN, 30, &[1, 2, 3, 4], None)],
            ),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "record owner points at itself",
            mk_query(
                RD,
                [1, 1, 0, 0],
                &[&mk_record(&[0xc0, 36], A, IN, 30, &[1, 2, 3, 4], None)],
            ),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "record RDATA cut short",
            mk_query(
                RD,
                [1, 1, 0, 0],
                &[&mk_record(&[0xc0, 12], A, IN, 30, &[1, 2], Some(4))],
            ),
            "FORMERR rd qd=1",
            None,
        ),
        // OPT.
        (
            "OPT owner not the root",
            mk_query(RD, [1, 0, 0, 1], &[&mk_record(&mk_name("x"), 41, 1232, 0, &[], None)]),
            "FORMERR rd qd=1",
            Some(("NOERROR aa rd qd=1 an=1 ar=1", OPT_OWNER)),
        ),
        (
            "OPT owner compressed",
            mk_query(RD, [1, 0, 0, 1], &[&mk_record(&[0xc0, 12], 41, 1232, 0, &[], None)]),
            "FORMERR rd qd=1",
            Some(("NOERROR aa rd qd=1 an=1 ar=1", OPT_OWNER)),
        ),
        (
            "two OPT records",
            mk_query(RD, [1, 0, 0, 2], &[&opt, &opt]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "OPT in the answer section",
            mk_query(RD, [1, 1, 0, 0], &[&opt]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "OPT RDLENGTH past the end",
            mk_query(RD, [1, 0, 0, 1], &[&mk_record(&[0], 41, 1232, 0, &[0, 10], Some(8))]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "OPT option longer than the RDATA",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(0, false, &[0, 10, 0, 8, 1, 1, 1, 1])]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "OPT option header cut",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(0, false, &[0, 10, 0])]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "OPT cookie of 5 octets",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(0, false, &[0, 10, 0, 5, 1, 1, 1, 1, 1])]),
            "NOERROR aa rd qd=1 an=1 ar=1",
            None,
        ),
        (
            "OPT unknown option",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(0, false, &[0xfd, 0xe9, 0, 2, b'a', b'b'])]),
            "NOERROR aa rd qd=1 an=1 ar=1",
            None,
        ),
        (
            "OPT client subnet too short",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(0, false, &[0, 8, 0, 2, 0, 1])]),
            "FORMERR rd qd=1",
            Some(("NOERROR aa rd qd=1 an=1 ar=1", CLIENT_SUBNET)),
        ),
        (
            "OPT extended rcode bits",
            mk_query(RD, [1, 0, 0, 1], &[&mk_record(&[0], 41, 1232, 0x0100_0000, &[], None)]),
            "NOERROR aa rd qd=1 an=1 ar=1",
            None,
        ),
        (
            "OPT payload 0 with DO",
            mk_query(RD, [1, 0, 0, 1], &[&mk_record(&[0], 41, 0, 0x8000, &[], None)]),
            "NOERROR aa rd qd=1 an=1 ar=1",
            None,
        ),
        (
            "OPT version 1",
            mk_query(RD, [1, 0, 0, 1], &[&mk_opt(1, false, &[])]),
            "BADVERS rd qd=1 ar=1",
            None,
        ),
        (
            "OPT version 1, opcode 3",
            mk_query(3 << 11 | RD, [1, 0, 0, 1], &[&mk_opt(1, false, &[])]),
            "BADVERS op=3 rd qd=1 ar=1",
            None,
        ),
        // TSIG.
        (
            "TSIG before OPT",
            mk_query(RD, [1, 0, 0, 2], &[&tsig, &opt]),
            "FORMERR rd qd=1",
            None,
        ),
        (
            "TSIG with a key nobody has",
            mk_query(RD, [1, 0, 0, 1], &[&tsig]),
            "NOERROR aa rd qd=1 an=1",
            Some(("NOTAUTH rd qd=1 ar=1", NO_TSIG)),
        ),
        // Opcodes.
        ("opcode 1 (IQUERY)", query(1 << 11 | RD), "NOTIMP op=1 rd qd=1", None),
        ("opcode 2 (STATUS)", query(2 << 11 | RD), "NOTIMP op=2 rd qd=1", None),
        ("opcode 3", query(3 << 11 | RD), "NOTIMP op=3 rd qd=1", None),
        (
            "opcode 3, QDCOUNT 0",
            mk_message(3 << 11 | RD, [0; 4], &[]),
            "NOTIMP op=3 rd",
            None,
        ),
        (
            "opcode 4 (NOTIFY)",
            query(4 << 11 | RD),
            "NOTIMP op=4 rd qd=1",
            Some(("NOTAUTH op=4 rd qd=1", NO_NOTIFY_OR_UPDATE)),
        ),
        (
            "opcode 5 (UPDATE)",
            query(5 << 11 | RD),
            "NOTIMP op=5 rd qd=1",
            Some(("FORMERR op=5 rd qd=1", NO_NOTIFY_OR_UPDATE)),
        ),
        ("opcode 6 (DSO)", query(6 << 11 | RD), "NOTIMP op=6 rd qd=1", None),
        ("opcode 15", query(15 << 11 | RD), "NOTIMP op=15 rd qd=1", None),
        // Meta and unassigned QTYPEs.
        (
            "QTYPE OPT",
            mk_ask("httpbin.bar.global", 41),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE 128",
            mk_ask("httpbin.bar.global", 128),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE TKEY",
            mk_ask("httpbin.bar.global", 249),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE TSIG",
            mk_ask("httpbin.bar.global", 250),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE MAILB",
            mk_ask("httpbin.bar.global", 253),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE MAILA",
            mk_ask("httpbin.bar.global", 254),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE 65535",
            mk_ask("httpbin.bar.global", 65535),
            "NOERROR aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE TSIG, no such name",
            mk_ask("nope.global", 250),
            "NXDOMAIN aa rd qd=1 ns=1",
            None,
        ),
        (
            "QTYPE 128, outside the zone",
            mk_ask("example.com", 128),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QTYPE AXFR over UDP",
            mk_ask("global", 252),
            "REFUSED rd qd=1",
            Some(("NOTIMP rd qd=1", NO_TRANSFERS)),
        ),
        (
            "QTYPE IXFR over UDP",
            mk_ask("global", 251),
            "REFUSED rd qd=1",
            Some(("NOTAUTH rd qd=1", NO_TRANSFERS)),
        ),
        // QCLASS.
        (
            "QCLASS 0",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 0)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QCLASS NONE",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 254)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QCLASS CS",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 2)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QCLASS CH",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 3)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QCLASS HS",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 4)]),
            "REFUSED rd qd=1",
            None,
        ),
        (
            "QCLASS ANY",
            mk_message(RD, [1, 0, 0, 0], &[&q("httpbin.bar.global", A, 255)]),
            "NOERROR aa rd qd=1 an=1",
            None,
        ),
        // Header bits a query does not set.
        ("TC set", query(0x0200 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("AA set", query(0x0400 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("RA set", query(0x0080 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("Z set", query(0x0040 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("AD set", query(0x0020 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("rcode 5 in the query", query(5 | RD), "NOERROR aa rd qd=1 an=1", None),
        ("RD clear", query(0), "NOERROR aa qd=1 an=1", None),
        (
            "CD set",
            query(0x0010 | RD),
            "NOERROR aa rd cd qd=1 an=1",
            Some(("NOERROR aa rd qd=1 an=1", CD_COPIED)),
        ),
    ];
    table
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut packet, want, knot))| {
            let id = (0x1000 + i as u16).to_be_bytes();
            packet[..2].copy_from_slice(&id);
            Case {
                name,
                packet,
                want,
                knot,
            }
        })
        .collect()
}

/// A reply as the table writes it: the rcode (extended by the OPT record),
/// `op=N` when the opcode is not QUERY, the header flags but QR (`noqr`
/// when QR is clear), then `qd=`, `an=`, `ns=`, `ar=` when not zero;
/// `no reply` for none.
pub fn summary(reply: Option<&[u8]>) -> String {
    let Some(r) = reply else {
        return "no reply".into();
    };
    if r.len() < 12 {
        return format!("short reply {r:02x?}");
    }
    let word = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
    let flags = word(2);
    let counts = [word(4), word(6), word(8), word(10)];
    let rcode = u16::from(opt_ttl(r, counts).map_or(0, |ttl| (ttl >> 24) as u8)) << 4 | flags & 0xf;
    let mut s = match rcode {
        0 => "NOERROR".to_string(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        9 => "NOTAUTH".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    };
    let opcode = flags >> 11 & 0xf;
    if opcode != 0 {
        s += &format!(" op={opcode}");
    }
    if flags & 0x8000 == 0 {
        s += " noqr";
    }
    for (bit, name) in [
        (0x0400, "aa"),
        (0x0200, "tc"),
        (0x0100, "rd"),
        (0x0080, "ra"),
        (0x0040, "z"),
        (0x0020, "ad"),
        (0x0010, "cd"),
    ] {
        if flags & bit != 0 {
            s += " ";
            s += name;
        }
    }
    for (count, name) in counts.iter().zip(["qd", "an", "ns", "ar"]) {
        if *count != 0 {
            s += &format!(" {name}={count}");
        }
    }
    s
}

/// The TTL field of the reply's OPT record, if it has one.
fn opt_ttl(r: &[u8], counts: [u16; 4]) -> Option<u32> {
    let mut i = 12;
    for _ in 0..counts[0] {
        i = name_end(r, i)? + 4;
    }
    let records = counts[1..].iter().map(|c| usize::from(*c)).sum::<usize>();
    for _ in 0..records {
        i = name_end(r, i)?;
        let fixed = r.get(i..i + 10)?;
        if fixed[..2] == [0, 41] {
            return Some(u32::from_be_bytes(fixed[4..8].try_into().unwrap()));
        }
        i += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    None
}

fn name_end(r: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *r.get(i)?;
        match len {
            0 => return Some(i + 1),
            0xc0.. => return Some(i + 2),
            _ => i += 1 + usize::from(len),
        }
    }
}

/// The question of `packet` as sent, when it has exactly one whole and
/// uncompressed question: what a reply must echo.
pub fn question(packet: &[u8]) -> Option<&[u8]> {
    if packet.get(4..6)? != [0, 1] {
        return None;
    }
    let mut i = 12;
    loop {
        match *packet.get(i)? {
            0 => break,
            len @ 1..=63 => i += 1 + usize::from(len),
            _ => return None,
        }
    }
    (i + 1 - 12 <= 255).then_some(())?;
    packet.get(12..i + 5)
}
