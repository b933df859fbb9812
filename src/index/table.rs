//! The immutable table a DNS query reads: names → addresses and ports,
//! plus what the negative answers need (empty non-terminals, wildcards,
//! zones). SRV names (`_port._tcp|_udp.<host>`) are not stored: they are
//! recognised from the query name and the host's ports. A new table
//! is published for each change; readers never wait for writers.

use std::sync::Arc;

use hickory_proto::rr::Name;

use super::convert::SrvPort;
use super::name::KEY_BYTE;
use super::nodes::{Node, Nodes};
use super::reverse::{self, Named, PtrMap};

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

/// The `meshdns serve` defaults: TTL 30 s, negative TTL 5 s, `localhost.`
/// and `nobody.invalid.` in the SOA.
impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            ttl: 30,
            negative_ttl: 5,
            nameserver: Name::from_ascii("localhost.").expect("valid name"),
            hostmaster: Name::from_ascii("nobody.invalid.").expect("valid name"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Zone {
    /// Normalized (`global`).
    pub key: Arc<str>,
    /// Lower-case, fully qualified (`global.`).
    pub name: Name,
    labels: Vec<Box<[u8]>>,
    /// A reverse zone (`--reverse-zone`): its names are addresses, served
    /// PTR from the table's reverse map, never from the names.
    pub reverse: bool,
}

impl Zone {
    pub fn new(key: Arc<str>) -> Result<Self, hickory_proto::ProtoError> {
        let name = Name::from_ascii(&*key)?.to_lowercase();
        let mut name = name;
        name.set_fqdn(true);
        let labels = name.iter().map(Box::from).collect();
        Ok(Self {
            key,
            name,
            labels,
            reverse: false,
        })
    }

    /// A reverse zone; `key` as [`super::reverse::parse_zone`] makes it.
    pub fn new_reverse(key: Arc<str>) -> Result<Self, hickory_proto::ProtoError> {
        Ok(Self {
            reverse: true,
            ..Self::new(key)?
        })
    }

    fn contains(&self, qname: &[&[u8]]) -> bool {
        qname.len() >= self.labels.len()
            && qname[qname.len() - self.labels.len()..]
                .iter()
                .zip(&self.labels)
                .all(|(q, z)| q.eq_ignore_ascii_case(z))
    }

    /// True when this zone's apex lies strictly below `qname`.
    fn is_below(&self, qname: &[&[u8]]) -> bool {
        self.labels.len() > qname.len()
            && self.labels[self.labels.len() - qname.len()..]
                .iter()
                .zip(qname)
                .all(|(z, q)| q.eq_ignore_ascii_case(z))
    }
}

/// SOA timers; secondaries are never used, so these are conventional values.
pub const SOA_REFRESH: u32 = 3600;
pub const SOA_RETRY: u32 = 600;
pub const SOA_EXPIRE: u32 = 86400;

/// Most labels a 255-octet name can have.
pub const MAX_LABELS: usize = 128;

/// A query name's table key (lower-cased, dot-separated, as names are
/// stored), built once per query, label by label, and hashed at most once:
/// the fast path keys a query while parsing it, prefetches with the key,
/// then looks it up. Bytes that cannot occur in a stored key become '?', so
/// the exact lookup misses while wildcards above that label still apply.
#[derive(Clone)]
pub struct NameKey {
    buf: [u8; 256],
    /// `None` once the key outgrew any name.
    len: Option<usize>,
    /// The table's hash of the key, once taken.
    hash: Option<u64>,
}

impl Default for NameKey {
    fn default() -> Self {
        Self {
            buf: [0; 256],
            len: Some(0),
            hash: None,
        }
    }
}

impl NameKey {
    /// Starts a new key in the same buffer.
    pub fn clear(&mut self) {
        self.len = Some(0);
        self.hash = None;
    }

    /// Appends the next label (wire bytes, most specific first, no root).
    /// A key longer than any name stays invalid: its lookup is NXDOMAIN.
    pub fn push(&mut self, label: &[u8]) {
        let Some(mut len) = self.len else {
            return;
        };
        let dot = usize::from(len > 0);
        if len + dot + label.len() > self.buf.len() {
            self.len = None;
            return;
        }
        if dot == 1 {
            self.buf[len] = b'.';
            len += 1;
        }
        let out = &mut self.buf[len..len + label.len()];
        // A leading `*` is the wildcard's own; elsewhere it is '?'.
        if len == 0 && label == b"*" {
            out[0] = b'*';
        } else {
            for (o, &b) in out.iter_mut().zip(label) {
                *o = KEY_BYTE[usize::from(b)];
            }
        }
        self.len = Some(len + label.len());
    }

    fn of(labels: &[&[u8]]) -> Self {
        let mut key = Self::default();
        labels.iter().for_each(|l| key.push(l));
        key
    }

    /// The key's bytes, `None` when longer than any name.
    fn bytes(&self) -> Option<&[u8]> {
        self.len.map(|len| &self.buf[..len])
    }
}

/// `_tcp` or `_udp`, any case: the second label of an SRV name.
fn is_proto(label: &[u8]) -> bool {
    label.eq_ignore_ascii_case(b"_tcp") || label.eq_ignore_ascii_case(b"_udp")
}

/// What the table knows about a query name.
#[derive(Debug)]
pub enum Lookup<'t> {
    /// Not in any served zone: REFUSED.
    OutOfZone,
    Apex(&'t Zone),
    /// An exact name, or the most specific wildcard above the name.
    Records(&'t Zone, &'t Node),
    /// The name exists without records (an empty non-terminal: names or
    /// a nested served zone below it) and no wildcard covers it, or it is
    /// an SRV name (see [`Table::srv`]), which has no A or AAAA: NODATA.
    NoData(&'t Zone),
    NxDomain(&'t Zone),
    /// An address in a reverse zone: one PTR per host (never empty).
    Ptr(&'t Zone, &'t [Arc<str>]),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub names: usize,
    pub a: usize,
    pub aaaa: usize,
    /// Names defined by more than one ServiceEntry.
    pub conflicts: usize,
    /// PTR records, with reverse zones.
    pub ptr: usize,
    /// Addresses whose hosts exceed the PTR cap (the rest not served).
    pub ptr_capped: usize,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub config: Arc<ZoneConfig>,
    pub zones: Arc<[Zone]>,
    pub(super) nodes: Nodes,
    /// Address → hosts, for the reverse zones (empty without them).
    pub(super) ptr: PtrMap,
    pub serial: u32,
    pub stats: Stats,
    /// The SOA RDATA on the wire, when no name in it can be compressed
    /// against the zone apex (the DNS fast path needs position-free bytes).
    pub soa_wire: Option<Arc<[u8]>>,
}

impl Table {
    pub fn lookup(&self, qname: &Name) -> Lookup<'_> {
        let mut labels: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
        let mut n = 0;
        for label in qname.iter() {
            if n == MAX_LABELS {
                return Lookup::OutOfZone;
            }
            labels[n] = label;
            n += 1;
        }
        self.lookup_labels(&labels[..n])
    }

    /// [`Table::lookup`] for a name as wire labels (no root label), without
    /// allocating.
    pub fn lookup_labels(&self, labels: &[&[u8]]) -> Lookup<'_> {
        self.lookup_keyed(labels, &mut NameKey::of(labels))
    }

    /// [`Table::lookup_labels`] with the name's key already built from the
    /// same labels, as the DNS fast path does while parsing a query. Its hash
    /// is taken once, here or by [`Table::prefetch_key`], and kept in `key`.
    pub fn lookup_keyed(&self, labels: &[&[u8]], key: &mut NameKey) -> Lookup<'_> {
        // Zones are sorted most specific first: the longest zone that
        // matches owns the name entirely, so an outer zone's wildcards never
        // reach into a zone nested in it.
        let Some(zone) = self.zones.iter().find(|z| z.contains(labels)) else {
            return Lookup::OutOfZone;
        };
        let own = labels.len() - zone.labels.len();
        if own == 0 {
            return Lookup::Apex(zone);
        }
        if zone.reverse {
            return self.lookup_reverse(zone, labels);
        }

        let Some((len, hash)) = self.hashed(key) else {
            return Lookup::NxDomain(zone); // longer than any name can be
        };
        let buf = &mut key.buf;
        let exact = self.nodes.get_hashed(hash, &buf[..len]);
        if let Some(node) = exact.filter(|n| n.has_records()) {
            return Lookup::Records(zone, node);
        }
        // An SRV name is exact, so it beats the wildcards.
        if self.srv_host(labels, own, &buf[..len]).is_some() {
            return Lookup::NoData(zone);
        }
        // `_tcp.<host>` above an SRV name is an empty non-terminal, which a
        // wildcard covers as it covers the others.
        let srv_parent = exact.is_none() && own >= 2 && is_proto(labels[0]) && {
            let proto = |p: &SrvPort| p.proto_label().as_bytes().eq_ignore_ascii_case(labels[0]);
            self.nodes
                .get_key(&buf[labels[0].len() + 1..len])
                .is_some_and(|n| n.ports().iter().any(proto))
        };
        // `*.` + each proper suffix, most specific first: '*' written over
        // the last byte of the label before the suffix's dot, then put back.
        // A covering wildcard answers empty non-terminals too, as Istio
        // matches hosts.
        let mut start = 0;
        for label in &labels[..own] {
            start += label.len() + 1;
            let kept = std::mem::replace(&mut buf[start - 2], b'*');
            let wildcard = self.nodes.get_key(&buf[start - 2..len]).filter(|n| n.has_records());
            buf[start - 2] = kept;
            if let Some(node) = wildcard {
                return Lookup::Records(zone, node);
            }
        }
        match exact {
            Some(_) => Lookup::NoData(zone),
            None if srv_parent => Lookup::NoData(zone),
            // A zone nested below the name (`b.a.global` under `global`,
            // asked `a.global`) makes it an empty non-terminal of this one,
            // as a delegation would: NXDOMAIN would deny the inner zone
            // (RFC 8020). Only names that no node holds get here.
            None if self.zones.iter().any(|z| z.is_below(labels)) => Lookup::NoData(zone),
            None => Lookup::NxDomain(zone),
        }
    }

    /// Starts loading where [`Table::lookup_keyed`]`(_, key)` finds a name
    /// that exists, whatever its zone: a hint, nothing more, in two stages,
    /// each best done for a whole batch before the next. This one takes
    /// the key's hash (kept in `key` for the lookup) and loads the small
    /// table it falls in; [`Table::prefetch_slots`] then loads its slots.
    pub fn prefetch_key(&self, key: &mut NameKey) {
        if let Some((_, hash)) = self.hashed(key) {
            self.nodes.prefetch_shard(hash);
        }
    }

    /// The second stage of [`Table::prefetch_key`], for a key it hashed.
    pub fn prefetch_slots(&self, key: &NameKey) {
        if let (Some(_), Some(hash)) = (key.len, key.hash) {
            self.nodes.prefetch_slots(hash);
        }
    }

    /// `key`'s length and hash, the hash taken on first use and kept (every
    /// table of one index hashes alike); `None` when longer than any name.
    fn hashed(&self, key: &mut NameKey) -> Option<(usize, u64)> {
        let len = key.len?;
        Some((len, *key.hash.get_or_insert_with(|| self.nodes.hash(&key.buf[..len]))))
    }

    /// [`Table::lookup_labels`] below a reverse zone's apex: an address
    /// with hosts has PTR; a name above one (a range holding one) is an
    /// empty non-terminal, found by a range query rather than stored.
    fn lookup_reverse<'t>(&'t self, zone: &'t Zone, labels: &[&[u8]]) -> Lookup<'t> {
        let exists = match reverse::named(labels) {
            Named::Address(addr) => match self.ptr.get(&addr) {
                Some(hosts) => return Lookup::Ptr(zone, hosts),
                None => false,
            },
            Named::Range(lo, hi) => self.ptr.range(lo..=hi).next().is_some(),
            Named::Nothing => false,
        };
        if exists || self.zones.iter().any(|z| z.is_below(labels)) {
            Lookup::NoData(zone)
        } else {
            Lookup::NxDomain(zone)
        }
    }

    /// Every address with PTR, in address order, for `check`.
    pub fn ptr_records(&self) -> impl Iterator<Item = (&std::net::IpAddr, &Arc<[Arc<str>]>)> {
        self.ptr.iter()
    }

    /// The host whose port `qname` (`_port._tcp|_udp.<host>`, in `zone`,
    /// as [`Table::lookup`] found it) names: the SRV answer is made from
    /// its ports. `None` when `qname` is no SRV name.
    pub fn srv(&self, qname: &Name, zone: &Zone) -> Option<&Node> {
        let labels: Vec<&[u8]> = qname.iter().collect();
        let own = labels.len().checked_sub(zone.labels.len())?;
        self.srv_host(&labels, own, NameKey::of(&labels).bytes()?)
    }

    /// [`Table::srv`] for `labels`, `own` of them below the zone, keyed
    /// as `key`. SRV names are made from the host's ports, not stored.
    fn srv_host(&self, labels: &[&[u8]], own: usize, key_bytes: &[u8]) -> Option<&Node> {
        // Only a name three labels or more below the zone can be one.
        if own < 3 || !is_proto(labels[1]) || labels[0].first() != Some(&b'_') {
            return None;
        }
        let host = labels[0].len() + labels[1].len() + 2;
        self.nodes
            .get_key(&key_bytes[host..])
            .filter(|n| n.ports().iter().any(|p| p.matches(labels[0], labels[1])))
    }

    /// Every name with records, sorted, for `check` and debugging.
    pub fn records(&self) -> Vec<(&str, &Node)> {
        let mut out: Vec<_> = self.nodes.iter().filter(|(_, n)| n.has_records()).collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Builds a table; `soa_wire` is derived here.
    pub(super) fn new(
        config: Arc<ZoneConfig>,
        zones: Arc<[Zone]>,
        nodes: Nodes,
        ptr: PtrMap,
        serial: u32,
        stats: Stats,
    ) -> Self {
        let soa_wire = soa_wire(&config, &zones, serial);
        Self {
            config,
            zones,
            nodes,
            ptr,
            serial,
            stats,
            soa_wire,
        }
    }

    /// SOA RDATA of a zone for this table's serial.
    pub fn soa(&self) -> hickory_proto::rr::rdata::SOA {
        let c = &self.config;
        hickory_proto::rr::rdata::SOA::new(
            c.nameserver.clone(),
            c.hostmaster.clone(),
            self.serial,
            SOA_REFRESH as i32,
            SOA_RETRY as i32,
            SOA_EXPIRE as i32,
            c.negative_ttl,
        )
    }
}

/// Uncompressed SOA RDATA, or `None` when an encoder could compress one of
/// its names (a last label shared with a zone apex or with each other).
fn soa_wire(config: &ZoneConfig, zones: &[Zone], serial: u32) -> Option<Arc<[u8]>> {
    let last = |n: &Name| n.iter().next_back().map(|l| l.to_ascii_lowercase());
    let (mname, rname) = (last(&config.nameserver), last(&config.hostmaster));
    if mname == rname
        || zones.iter().any(|z| {
            z.labels.last().map(|l| l.to_ascii_lowercase()) == mname
                || z.labels.last().map(|l| l.to_ascii_lowercase()) == rname
        })
    {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    for name in [&config.nameserver, &config.hostmaster] {
        for label in name.iter() {
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
    }
    for field in [serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, config.negative_ttl] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    Some(out.into())
}
