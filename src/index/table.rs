//! The immutable table a DNS query reads: names → addresses, plus what the
//! negative answers need (empty non-terminals, wildcards, zones). A new table
//! is published for each change; readers never wait for writers.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::Name;

/// Zone-wide settings, fixed at start-up.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// TTL of every record we serve, the SOA included.
    pub ttl: u32,
    /// SOA MINIMUM: how long resolvers cache NXDOMAIN/NODATA.
    pub negative_ttl: u32,
    /// SOA MNAME and the apex NS target.
    pub nameserver: Name,
    /// SOA RNAME.
    pub hostmaster: Name,
}

#[derive(Clone, Debug)]
pub struct Zone {
    /// Normalized (`global`).
    pub key: Arc<str>,
    /// Lower-case, fully qualified (`global.`).
    pub name: Name,
    labels: Vec<Box<[u8]>>,
}

impl Zone {
    pub fn new(key: Arc<str>) -> Result<Self, hickory_proto::ProtoError> {
        let name = Name::from_ascii(&*key)?.to_lowercase();
        let mut name = name;
        name.set_fqdn(true);
        let labels = name.iter().map(Box::from).collect();
        Ok(Self { key, name, labels })
    }

    fn contains(&self, qname: &[&[u8]]) -> bool {
        qname.len() >= self.labels.len()
            && qname[qname.len() - self.labels.len()..]
                .iter()
                .zip(&self.labels)
                .all(|(q, z)| q.eq_ignore_ascii_case(z))
    }
}

/// The records of one owner name. A node without addresses is an empty
/// non-terminal: it exists only because names below it do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub v4: Arc<[Ipv4Addr]>,
    pub v6: Arc<[Ipv6Addr]>,
    /// Names with records strictly below this one.
    pub(super) below: u32,
}

impl Node {
    pub fn has_records(&self) -> bool {
        !self.v4.is_empty() || !self.v6.is_empty()
    }
}

pub(super) type Nodes = imbl::HashMap<Arc<str>, Node>;

/// What the table knows about a query name.
#[derive(Debug)]
pub enum Lookup<'t> {
    /// Not in any served zone: REFUSED.
    OutOfZone,
    Apex(&'t Zone),
    /// An exact name, or the most specific wildcard above the name.
    Records(&'t Zone, &'t Node),
    /// The name exists without records (empty non-terminal): NODATA.
    Empty(&'t Zone),
    NxDomain(&'t Zone),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub names: usize,
    pub a: usize,
    pub aaaa: usize,
    /// Names defined by more than one ServiceEntry.
    pub conflicts: usize,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub config: Arc<ZoneConfig>,
    pub zones: Arc<[Zone]>,
    pub(super) nodes: Nodes,
    pub serial: u32,
    pub stats: Stats,
}

impl Table {
    pub fn lookup(&self, qname: &Name) -> Lookup<'_> {
        let labels: Vec<&[u8]> = qname.iter().collect();
        // Zones are sorted most specific first.
        let Some(zone) = self.zones.iter().find(|z| z.contains(&labels)) else {
            return Lookup::OutOfZone;
        };
        let own = labels.len() - zone.labels.len();
        if own == 0 {
            return Lookup::Apex(zone);
        }

        // Bytes that cannot occur in a stored key become '?', so the exact
        // lookup misses while wildcards above that label still apply.
        let mut key = String::with_capacity(qname.len());
        let mut starts = Vec::with_capacity(own);
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                key.push('.');
            }
            starts.push(key.len());
            for &b in *label {
                let c = b.to_ascii_lowercase() as char;
                let keep = b.is_ascii() && (super::name::is_key_char(c) || (c == '*' && label.len() == 1 && i == 0));
                key.push(if keep { c } else { '?' });
            }
        }

        if let Some(node) = self.nodes.get(key.as_str()) {
            return if node.has_records() {
                Lookup::Records(zone, node)
            } else {
                Lookup::Empty(zone)
            };
        }
        let mut wildcard = String::with_capacity(key.len() + 2);
        for &start in &starts[1..=own] {
            wildcard.clear();
            wildcard.push_str("*.");
            wildcard.push_str(&key[start..]);
            if let Some(node) = self.nodes.get(wildcard.as_str()).filter(|n| n.has_records()) {
                return Lookup::Records(zone, node);
            }
        }
        Lookup::NxDomain(zone)
    }

    /// Every name with records, sorted, for `check` and debugging.
    pub fn records(&self) -> Vec<(&str, &Node)> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.has_records())
            .map(|(k, n)| (&**k, n))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// SOA RDATA of a zone for this table's serial.
    pub fn soa(&self) -> hickory_proto::rr::rdata::SOA {
        let c = &self.config;
        hickory_proto::rr::rdata::SOA::new(
            c.nameserver.clone(),
            c.hostmaster.clone(),
            self.serial,
            3600,
            600,
            86400,
            c.negative_ttl,
        )
    }
}
