//! What a request must be on the wire beyond what hickory-proto checks
//! when it parses one: the cases where Knot answers FORMERR and
//! hickory-proto would have us answer. Also the question of a request that
//! did not parse, for its FORMERR to echo. Pure, and never reads past the
//! packet.

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const TYPE_TSIG: u16 = 250;

/// Why a request that hickory-proto parsed must still get FORMERR, or
/// `None` when it need not.
pub fn problem(packet: &[u8]) -> Option<&'static str> {
    check(packet).err()
}

fn check(packet: &[u8]) -> Result<(), &'static str> {
    let counts = packet.get(4..HEADER).ok_or("shorter than a header")?;
    let count = |i: usize| usize::from(u16::from_be_bytes([counts[i], counts[i + 1]]));
    let (questions, answers, authority, additional) = (count(0), count(2), count(4), count(6));
    let records = answers + authority + additional;
    let mut i = HEADER;
    for _ in 0..questions {
        // No name precedes the first question for a pointer to point at.
        i = name_end(packet, i, false).ok_or("compressed or invalid question name")? + 4;
    }
    for n in 0..records {
        i = name_end(packet, i, true).ok_or("invalid owner name")?;
        let fixed = packet.get(i..i + 10).ok_or("record cut short")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdata_len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = packet.get(i + 10..i + 10 + rdata_len).ok_or("RDATA cut short")?;
        if rtype == TYPE_OPT && !options_fill(rdata) {
            return Err("EDNS options do not fill the OPT record");
        }
        // RFC 8945 §5.1: anywhere else, FORMERR.
        if rtype == TYPE_TSIG && (n + 1 != records || n < answers + authority) {
            return Err("TSIG is not the last additional record");
        }
        i += 10 + rdata_len;
    }
    match i.cmp(&packet.len()) {
        std::cmp::Ordering::Less => Err("bytes after the last record"),
        std::cmp::Ordering::Greater => Err("question cut short"),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// The question of a request with exactly one, whole and uncompressed, as
/// it came (its case included).
pub fn question(packet: &[u8]) -> Option<&[u8]> {
    if packet.get(4..6)? != [0, 1] {
        return None;
    }
    let end = name_end(packet, HEADER, false)? + 4;
    packet.get(HEADER..end)
}

/// Where the name at `start` ends: labels of up to 63 octets, 255 octets
/// in all, and with `pointers` a compression pointer as its end (hickory
/// follows it; here it only has to point back).
fn name_end(packet: &[u8], start: usize, pointers: bool) -> Option<usize> {
    let mut i = start;
    loop {
        let len = usize::from(*packet.get(i)?);
        match len {
            0 => return (i + 1 - start <= 255).then_some(i + 1),
            1..=63 => i += 1 + len,
            0xc0.. if pointers => {
                let target = (len & 0x3f) << 8 | usize::from(*packet.get(i + 1)?);
                return (target < i).then_some(i + 2);
            }
            // Extended and reserved label types (RFC 6891 §5).
            _ => return None,
        }
        if i - start > 255 {
            return None;
        }
    }
}

/// Whether EDNS options (code, length, data) fill `rdata` exactly.
fn options_fill(mut rdata: &[u8]) -> bool {
    while !rdata.is_empty() {
        let Some(len) = rdata.get(2..4) else {
            return false;
        };
        let end = 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(rest) = rdata.get(end..) else {
            return false;
        };
        rdata = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query header: ID 0x1234, RD, and the four counts.
    fn mk_header(counts: [u16; 4]) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00];
        counts.iter().for_each(|c| p.extend_from_slice(&c.to_be_bytes()));
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

    /// A question for `name`, type `qtype`, class IN.
    fn mk_question(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = mk_name(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p
    }

    /// A record with owner bytes `owner`, type `rtype` and `rdata`.
    fn mk_record(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut p = owner.to_vec();
        p.extend_from_slice(&rtype.to_be_bytes());
        p.extend_from_slice(&[0x04, 0xd0, 0, 0, 0, 0]); // class 1232, TTL 0
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(rdata);
        p
    }

    /// A query: header with `counts`, then `parts` in order.
    fn mk_packet(counts: [u16; 4], parts: &[&[u8]]) -> Vec<u8> {
        let mut p = mk_header(counts);
        parts.iter().for_each(|part| p.extend_from_slice(part));
        p
    }

    const OPT_EMPTY: &[u8] = &[];

    fn opt(rdata: &[u8]) -> Vec<u8> {
        mk_record(&[0], TYPE_OPT, rdata)
    }

    #[test]
    fn well_formed_queries_pass() {
        let q = mk_question("httpbin.bar.global", 1);
        assert_eq!(problem(&mk_packet([1, 0, 0, 0], &[&q])), None);
        assert_eq!(problem(&mk_packet([1, 0, 0, 1], &[&q, &opt(OPT_EMPTY)])), None);
        // A cookie, and an empty option.
        let options = [&[0, 10, 0, 8][..], &[7; 8], &[0xfd, 0xe9, 0, 0]].concat();
        assert_eq!(problem(&mk_packet([1, 0, 0, 1], &[&q, &opt(&options)])), None);
        assert_eq!(problem(&mk_packet([0, 0, 0, 0], &[])), None);
        // An answer whose owner points back at the question.
        let a = mk_record(&[0xc0, 12], 1, &[1, 2, 3, 4]);
        assert_eq!(problem(&mk_packet([1, 1, 0, 0], &[&q, &a])), None);
        // The longest name: 255 octets.
        let long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(problem(&mk_packet([1, 0, 0, 0], &[&mk_question(&long, 1)])), None);
    }

    #[test]
    fn trailing_bytes() {
        let q = mk_question("httpbin.bar.global", 1);
        let want = Some("bytes after the last record");
        assert_eq!(problem(&mk_packet([1, 0, 0, 0], &[&q, &[0]])), want);
        assert_eq!(
            problem(&mk_packet([1, 0, 0, 1], &[&q, &opt(OPT_EMPTY), &[0xde, 0xad]])),
            want
        );
        assert_eq!(problem(&mk_packet([0, 0, 0, 0], &[&[0, 0]])), want);
    }

    #[test]
    fn cut_short() {
        let q = mk_question("httpbin.bar.global", 1);
        assert!(problem(&q[..5]).is_some());
        assert!(problem(&mk_packet([1, 0, 0, 0], &[&q[..q.len() - 1]])).is_some());
        assert!(problem(&mk_packet([1, 0, 0, 1], &[&q])).is_some());
        let mut cut = opt(&[0, 10, 0, 0]);
        cut.truncate(cut.len() - 2);
        assert!(problem(&mk_packet([1, 0, 0, 1], &[&q, &cut])).is_some());
    }

    #[test]
    fn question_names_are_never_compressed() {
        let pointer = |target: u8| mk_packet([1, 0, 0, 0], &[&[0xc0, target, 0, 1, 0, 1]]);
        for target in [4, 12, 0x20] {
            assert_eq!(problem(&pointer(target)), Some("compressed or invalid question name"));
            assert_eq!(question(&pointer(target)), None);
        }
    }

    #[test]
    fn invalid_labels_and_names() {
        for first in [0x40, 0x41, 0x80] {
            let mut name = vec![first];
            name.extend_from_slice(&[b'a'; 64]);
            name.extend_from_slice(&mk_question("global", 1));
            let p = mk_packet([1, 0, 0, 0], &[&name]);
            assert!(problem(&p).is_some(), "label type {first:#x}");
            assert_eq!(question(&p), None);
        }
        let long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
        let p = mk_packet([1, 0, 0, 0], &[&mk_question(&long, 1)]);
        assert!(problem(&p).is_some(), "256 octets");
        assert_eq!(question(&p), None);
        // Owner pointers must point back.
        let q = mk_question("x.global", 1);
        let forward = mk_record(&[0xc0, 0x40], 1, &[1, 2, 3, 4]);
        assert!(problem(&mk_packet([1, 1, 0, 0], &[&q, &forward])).is_some());
        let own = mk_record(&[0xc0, 12 + q.len() as u8], 1, &[1, 2, 3, 4]);
        assert!(problem(&mk_packet([1, 1, 0, 0], &[&q, &own])).is_some());
    }

    #[test]
    fn edns_options_must_fill_the_opt_record() {
        let q = mk_question("httpbin.bar.global", 1);
        let want = Some("EDNS options do not fill the OPT record");
        for rdata in [&[0, 10, 0, 8, 1, 1, 1, 1][..], &[0, 10, 0], &[0, 10, 0, 0, 0]] {
            assert_eq!(problem(&mk_packet([1, 0, 0, 1], &[&q, &opt(rdata)])), want, "{rdata:?}");
        }
    }

    #[test]
    fn tsig_only_last() {
        let q = mk_question("httpbin.bar.global", 1);
        let tsig = mk_record(&mk_name("key"), TYPE_TSIG, &[0; 8]);
        let want = Some("TSIG is not the last additional record");
        assert_eq!(problem(&mk_packet([1, 0, 0, 1], &[&q, &tsig])), None);
        assert_eq!(problem(&mk_packet([1, 0, 0, 2], &[&q, &opt(OPT_EMPTY), &tsig])), None);
        assert_eq!(problem(&mk_packet([1, 0, 0, 2], &[&q, &tsig, &opt(OPT_EMPTY)])), want);
        assert_eq!(problem(&mk_packet([1, 1, 0, 0], &[&q, &tsig])), want);
        assert_eq!(problem(&mk_packet([1, 0, 0, 2], &[&q, &tsig, &tsig])), want);
    }

    #[test]
    fn question_is_echoed_only_when_alone_and_whole() {
        let q = mk_question("HttpBin.bar.global", 1);
        assert_eq!(question(&mk_packet([1, 0, 0, 0], &[&q, &[9, 9]])), Some(&q[..]));
        assert_eq!(question(&mk_packet([1, 0, 0, 1], &[&q])), Some(&q[..]));
        assert_eq!(question(&mk_packet([1, 0, 0, 0], &[&q[..q.len() - 1]])), None);
        assert_eq!(question(&mk_packet([2, 0, 0, 0], &[&q, &q])), None);
        assert_eq!(question(&mk_packet([0, 0, 0, 0], &[&q])), None);
        assert_eq!(question(&q[..4]), None);
    }
}
