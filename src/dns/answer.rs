//! Authoritative answers from the table: which rcode, which records, in
//! which section. Pure: no I/O, no EDNS, no size limits (see `handler`).
//! SRV records are made here from a host's ports (`_port._proto.<host>`
//! and the bare host), with the host's addresses as additional records.

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::index::{Lookup, Node, SrvPort, Table, Zone};

#[derive(Debug, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// The SRV target's A and AAAA; the first thing dropped when the
    /// reply is too big for the client (never a cause of TC).
    pub additional: Vec<Record>,
}

impl Reply {
    pub fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }
}

pub fn answer(table: &Table, query: &Query) -> Reply {
    let qtype = query.query_type();
    // QTYPE 0 is reserved (RFC 6895 §3.1): NOTIMP, in the classes Knot
    // serves (so CHAOS too, as Knot does); other classes are refused.
    if qtype == RecordType::ZERO && matches!(query.query_class(), DNSClass::IN | DNSClass::ANY | DNSClass::CH) {
        return Reply {
            rcode: ResponseCode::NotImp,
            ..Reply::refused()
        };
    }
    // CHAOS (version.bind, hostname.bind) and other classes: disclose
    // nothing. QCLASS * matches IN (RFC 1035 §3.2.5), as in Knot and NSD.
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return Reply::refused();
    }
    // Zone transfers are never offered.
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Reply::refused();
    }
    let qname = query.name();
    let ttl = table.config.ttl;
    let records = |data: Vec<RData>| -> Vec<Record> {
        data.into_iter()
            .map(|d| Record::from_rdata(qname.clone(), ttl, d))
            .collect()
    };

    match table.lookup(qname) {
        Lookup::OutOfZone => Reply::refused(),
        Lookup::NxDomain(zone) => negative(table, qname, zone, ResponseCode::NXDomain),
        Lookup::NoData(zone) => match table.srv(qname, zone) {
            Some(host) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                // `_port._proto.<host>`: the host's ports of that name and protocol.
                let labels: Vec<&[u8]> = qname.iter().take(2).collect();
                let target = qname.base_name().base_name().to_lowercase();
                let ports = host.ports().iter().filter(|p| p.matches(labels[0], labels[1]));
                srv(table, qname, &target, host, ports)
            }
            _ => negative(table, qname, zone, ResponseCode::NoError),
        },
        Lookup::Ptr(zone, hosts) => match qtype {
            // The target is the host as the entry wrote it, lower-cased (its
            // index key); the owner keeps the query's case.
            RecordType::PTR | RecordType::ANY => positive(records(
                hosts
                    .iter()
                    .filter_map(|h| Name::from_ascii(h).ok())
                    .map(|mut n| {
                        n.set_fqdn(true);
                        RData::PTR(PTR(n))
                    })
                    .collect(),
            )),
            _ => negative(table, qname, zone, ResponseCode::NoError),
        },
        Lookup::Apex(zone) => match qtype {
            // RFC 8482: ANY gets one RRset, never the whole name.
            RecordType::SOA | RecordType::ANY => positive(records(vec![RData::SOA(table.soa())])),
            RecordType::NS => positive(records(vec![RData::NS(NS(table.config.nameserver.clone()))])),
            _ => negative(table, qname, zone, ResponseCode::NoError),
        },
        Lookup::Records(zone, node) => {
            let v4 = || node.v4().iter().map(|a| RData::A(A(*a))).collect::<Vec<_>>();
            let v6 = || node.v6().iter().map(|a| RData::AAAA(AAAA(*a))).collect::<Vec<_>>();
            match qtype {
                RecordType::A if !node.v4().is_empty() => positive(records(v4())),
                RecordType::AAAA if !node.v6().is_empty() => positive(records(v6())),
                RecordType::ANY if !node.v4().is_empty() => positive(records(v4())),
                RecordType::ANY => positive(records(v6())),
                // The bare host, as CoreDNS answers SRV for a Service name:
                // every port. Wildcard nodes have none.
                RecordType::SRV if !node.ports().is_empty() => {
                    srv(table, qname, &qname.to_lowercase(), node, node.ports().iter())
                }
                _ => negative(table, qname, zone, ResponseCode::NoError),
            }
        }
    }
}

fn positive(answers: Vec<Record>) -> Reply {
    Reply {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        authority: Vec::new(),
        additional: Vec::new(),
    }
}

/// `SRV 0 100 <port> <target>.` at `qname` for each of `ports`, with the
/// target's (`host`'s) addresses as additional records. The target is the
/// host as the entry wrote it, lower-cased: that is its index key.
fn srv<'a>(table: &Table, qname: &Name, target: &Name, host: &Node, ports: impl Iterator<Item = &'a SrvPort>) -> Reply {
    let ttl = table.config.ttl;
    let answers = ports
        .map(|p| {
            Record::from_rdata(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(0, 100, p.number, target.clone())),
            )
        })
        .collect();
    let additional = host
        .v4()
        .iter()
        .map(|a| RData::A(A(*a)))
        .chain(host.v6().iter().map(|a| RData::AAAA(AAAA(*a))))
        .map(|d| Record::from_rdata(target.clone(), ttl, d))
        .collect();
    Reply {
        additional,
        ..positive(answers)
    }
}

/// NXDOMAIN or NODATA with the zone's SOA, whose TTL caps the negative
/// cache time (RFC 2308 §5: min(SOA TTL, MINIMUM)).
/// The SOA owner is the query name's own zone suffix, so it keeps the
/// query's case as Knot's (compressed) answers do.
fn negative(table: &Table, qname: &Name, zone: &Zone, rcode: ResponseCode) -> Reply {
    let ttl = table.config.ttl.min(table.config.negative_ttl);
    let owner = qname.trim_to(zone.name.num_labels() as usize);
    Reply {
        rcode,
        authoritative: true,
        answers: Vec::new(),
        authority: vec![Record::from_rdata(owner, ttl, RData::SOA(table.soa()))],
        additional: Vec::new(),
    }
}
