//! The index owns the served table. Sources (files, Kubernetes) hand it
//! converted entries; it merges hosts defined by several entries, tracks
//! empty non-terminals and publishes an immutable [`Table`] after each
//! change. Mutations cannot fail: problems are logged and skipped.
//!
//! Writers take a mutex; readers load the current table through an
//! `ArcSwap` and never block. The table's map is persistent (`nodes`), so
//! publishing after a change copies, for each name the change touched, one
//! shard of about N/4096 names (and two arrays of 64 pointers), not the
//! whole table.

pub mod convert;
mod metrics;
pub mod name;
mod nodes;
pub mod reverse;
mod store;
mod table;
#[doc(hidden)]
pub mod testing;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use compact_str::CompactString;
use smallvec::SmallVec;
use tracing::{debug, error, info, warn};

pub use self::convert::{Conversion, ConvertOptions, HostAddrs, PortSet, SkipReason, Skipped, SrvPort};
use self::metrics::IndexMetrics;
pub use self::nodes::Node;
use self::nodes::Nodes;
use self::reverse::PtrMap;
use self::store::Store;
pub use self::table::{
    Lookup, MAX_LABELS, NameKey, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, Stats, Table, Zone, ZoneConfig,
};
use crate::serviceentry::ServiceEntry;

/// Most addresses one name can carry after merging entries; long names
/// get fewer (see [`address_limit`]).
pub const MAX_ADDRESSES_PER_NAME: usize = 1000;

/// Most addresses `name` can carry: [`MAX_ADDRESSES_PER_NAME`], or fewer
/// when even then its answer could outgrow one 64 KiB TCP message. The
/// bound assumes every record spells its owner name out in full, since
/// hickory stops compressing names after the first 120 in a message.
pub fn address_limit(name: &str) -> usize {
    // Wire length: one length octet per label plus the root; presentation
    // escapes only make `name` longer than that.
    let wire = (name.len() + 2).min(255);
    let fixed = 12 + (wire + 4) + 11; // header, question, OPT
    let per_record = wire + 10 + 16; // owner, type/class/TTL/length, AAAA
    ((usize::from(u16::MAX) - fixed) / per_record).min(MAX_ADDRESSES_PER_NAME)
}

/// Most SRV ports `name` can carry after merging entries: the bare host's
/// answer (one SRV record per port, the target spelled out in full, as
/// RFC 2782 forbids compressing it) must fit one 64 KiB TCP message.
/// Owners count in full too, since hickory stops compressing names after
/// the first 120 in a message. Additional records are dropped before
/// anything else, so they do not count.
pub fn port_limit(name: &str) -> usize {
    let wire = (name.len() + 2).min(255);
    let fixed = 12 + (wire + 4) + 11; // header, question, OPT
    let per_record = wire + 10 + 6 + wire; // owner, fixed fields, target
    ((usize::from(u16::MAX) - fixed) / per_record).min(convert::MAX_PORTS_PER_ENTRY)
}

/// Entries changed by one reset after which freed memory is handed back.
const TRIM_AFTER: usize = 1000;

/// Where an entry came from. Sources own disjoint sets of entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    /// One watch: all namespaces (`None`) or one namespace.
    Kube(Option<Arc<str>>),
    File(Arc<str>),
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kube(None) => f.write_str("kubernetes"),
            Self::Kube(Some(ns)) => write!(f, "kubernetes namespace {ns}"),
            Self::File(path) => f.write_str(path),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    pub source: SourceId,
    pub namespace: Arc<str>,
    /// Inline up to 24 bytes: the index keeps one per entry.
    pub name: CompactString,
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One copy of each namespace name, however many entries share it: the
/// index keeps its own, and sources building a big batch use one so the
/// batch does not hold a copy per entry until the index replaces it.
#[derive(Debug, Default)]
pub struct Namespaces(HashSet<Arc<str>, foldhash::quality::RandomState>);

impl Namespaces {
    /// [`Self::intern`] from text: a new copy only for a namespace not seen
    /// yet.
    pub fn intern_str(&mut self, namespace: &str) -> Arc<str> {
        if let Some(ns) = self.0.get(namespace) {
            return ns.clone();
        }
        let ns: Arc<str> = Arc::from(namespace);
        self.0.insert(ns.clone());
        ns
    }

    pub fn intern(&mut self, namespace: &Arc<str>) -> Arc<str> {
        match self.0.get(namespace) {
            Some(ns) => ns.clone(),
            None => {
                self.0.insert(namespace.clone());
                namespace.clone()
            }
        }
    }
}

/// One name of the table: what it serves and which entries define it.
#[derive(Debug)]
pub struct NameRecords {
    pub name: Arc<str>,
    /// Served: merged, deduplicated, within [`address_limit`].
    pub a: Vec<std::net::Ipv4Addr>,
    pub aaaa: Vec<std::net::Ipv6Addr>,
    /// Served as SRV under `_<port>._tcp|_udp.<name>` and at the name
    /// itself, each with the first entry (in conflict order) listing it.
    pub ports: Vec<(SrvPort, EntryId)>,
    /// Each defining entry in conflict order (oldest first), with the
    /// addresses it lists for this name.
    pub entries: Vec<(EntryId, Vec<IpAddr>)>,
}

/// One name of the table as `/debug/records` shows it.
#[derive(Debug, serde::Serialize)]
pub struct NameDump {
    pub name: String,
    pub a: Vec<std::net::Ipv4Addr>,
    pub aaaa: Vec<std::net::Ipv6Addr>,
    /// `namespace/name (source)` of each defining entry, in conflict order.
    pub sources: Vec<String>,
    pub conflict: bool,
}

/// What a source hands the index for one ServiceEntry: its identity, its
/// place in the conflict order and the records it produced. Never the
/// object itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub created: Option<Arc<str>>,
    /// Each name once (as [`convert::convert`] makes them).
    pub hosts: SmallVec<[HostAddrs; 1]>,
    /// SRV ports for every non-wildcard host of the entry.
    pub ports: Option<Arc<PortSet>>,
}

pub struct Index {
    options: ConvertOptions,
    writer: Mutex<Writer>,
    table: ArcSwap<Table>,
    metrics: IndexMetrics,
}

/// The entries listing one address, each with the host it lists it for.
type Owners = SmallVec<[(Arc<store::Stored>, Arc<str>); 1]>;

struct Writer {
    entries: Store,
    nodes: Nodes,
    stats: Stats,
    serial: u32,
    /// Shared names whose entries changed since the last
    /// [`Writer::relink_touched`], with how many entries defined each before.
    touched: HashMap<CompactString, usize>,
    /// With reverse zones only: which entries list each address for which
    /// host (the writer's side of `ptr`, changed in place, never copied).
    owners: Option<HashMap<IpAddr, Owners>>,
    /// How many names with records each ancestor gained (or lost, if
    /// negative) since the last publish, applied by
    /// [`Writer::apply_below`].
    below_pending: HashMap<CompactString, i64, foldhash::quality::RandomState>,
    /// Not served PTR: shared by every entry without addresses.
    default_address: Option<IpAddr>,
    ptr: PtrMap,
    /// Addresses over [`reverse::MAX_PTR_PER_ADDRESS`], for the gauge.
    ptr_capped: HashSet<IpAddr>,
}

impl Index {
    /// `zones` must be normalized names (see [`name::normalize_host`]).
    /// The table metrics (`meshdns_serviceentries`, `meshdns_records`, …)
    /// are registered in `registry`.
    pub fn new(
        zones: Vec<Arc<str>>,
        config: ZoneConfig,
        default_address: Option<IpAddr>,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let mut parsed = zones
            .iter()
            .map(|z| Zone::new(z.clone()).map_err(|e| anyhow::anyhow!("invalid zone {z:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Most specific first; sorted by name within a length, so duplicates
        // are adjacent for dedup.
        parsed.sort_by(|a, b| {
            b.name
                .num_labels()
                .cmp(&a.name.num_labels())
                .then_with(|| a.key.cmp(&b.key))
        });
        parsed.dedup_by(|a, b| a.key == b.key);
        let serial = next_serial(0);
        let table = Table::new(
            Arc::new(config),
            parsed.into(),
            Nodes::default(),
            PtrMap::default(),
            serial,
            Stats::default(),
        );
        let writer = Writer {
            entries: Store::default(),
            nodes: Nodes::default(),
            stats: Stats::default(),
            serial,
            touched: HashMap::new(),
            below_pending: HashMap::default(),
            owners: None,
            default_address,
            ptr: PtrMap::default(),
            ptr_capped: HashSet::new(),
        };
        Ok(Self {
            options: ConvertOptions {
                zones,
                default_address,
                exported_only: false,
            },
            writer: Mutex::new(writer),
            table: ArcSwap::from_pointee(table),
            metrics: IndexMetrics::register(registry)?,
        })
    }

    /// Also serve PTR in `zones` (`--reverse-zone`, each as
    /// [`reverse::parse_zone`] makes it). Set before any source loads.
    pub fn with_reverse_zones(self, zones: &[Arc<str>]) -> anyhow::Result<Self> {
        if zones.is_empty() {
            return Ok(self);
        }
        let current = self.table.load_full();
        let mut all: Vec<Zone> = current.zones.to_vec();
        for z in zones {
            all.push(Zone::new_reverse(z.clone()).map_err(|e| anyhow::anyhow!("invalid reverse zone {z:?}: {e}"))?);
        }
        all.sort_by(|a, b| {
            b.name
                .num_labels()
                .cmp(&a.name.num_labels())
                .then_with(|| a.key.cmp(&b.key))
        });
        all.dedup_by(|a, b| a.key == b.key);
        let table = Table::new(
            current.config.clone(),
            all.into(),
            current.nodes.clone(),
            current.ptr.clone(),
            current.serial,
            current.stats,
        );
        self.table.store(Arc::new(table));
        self.lock().owners.get_or_insert_with(HashMap::new);
        Ok(self)
    }

    /// Serve only entries exported to every namespace (`--exported-only`,
    /// see [`ConvertOptions::exported_only`]). Set before any source loads.
    pub fn with_exported_only(mut self, on: bool) -> Self {
        self.options.exported_only = on;
        self
    }

    /// One ServiceEntry as a source hands it over: converted (see
    /// [`convert::convert`]), what it leaves out counted
    /// (`meshdns_skipped_total`) and logged, made an [`Entry`] of `source`.
    /// Every source converts through here; the skipped items are returned
    /// too, for `meshdns check` to list.
    pub fn convert(&self, source: &SourceId, se: &ServiceEntry) -> (Entry, Vec<Skipped>) {
        let mut conversion = convert::convert(se, &self.options);
        let skipped = std::mem::take(&mut conversion.skipped);
        if !skipped.is_empty() {
            let entry = se.display_name();
            for Skipped { item, reason } in &skipped {
                self.metrics.skipped(reason);
                match reason {
                    // Normal in a mixed mesh: not ours to serve.
                    SkipReason::ResolutionNone | SkipReason::OutOfZone | SkipReason::NotExported => {
                        debug!(%source, %entry, %item, %reason, "not served")
                    }
                    _ => warn!(%source, %entry, %item, %reason, "skipped"),
                }
            }
        }
        (Entry::new(source.clone(), se, conversion), skipped)
    }

    /// Counts an object a source could not read at all.
    pub fn count_malformed(&self) {
        self.metrics.skipped_other("malformed");
    }

    /// Every name with its served addresses and the entries defining it,
    /// sorted by name, for `/debug/records` and `meshdns check`. Takes the
    /// writer lock briefly.
    pub fn names(&self) -> Vec<NameRecords> {
        let w = self.lock();
        let mut out: Vec<NameRecords> = w
            .entries
            .names()
            .into_iter()
            .map(|(name, mut entries)| {
                entries.sort_by(|a, b| a.order().cmp(&b.order()));
                let node = w.nodes.get(name).cloned().unwrap_or_default();
                let listed = |e: &store::Stored| -> Vec<IpAddr> {
                    e.hosts
                        .iter()
                        .filter(|h| h.name == *name)
                        .flat_map(|h| h.addrs.iter().copied())
                        .collect()
                };
                NameRecords {
                    name: Arc::from(name.as_str()),
                    a: node.v4().to_vec(),
                    aaaa: node.v6().to_vec(),
                    ports: node
                        .ports()
                        .iter()
                        .filter_map(|p| {
                            let first = entries
                                .iter()
                                .find(|e| e.ports.as_ref().is_some_and(|s| s.0.contains(p)));
                            first.map(|e| (p.clone(), e.id()))
                        })
                        .collect(),
                    entries: entries.iter().map(|e| (e.id(), listed(e))).collect(),
                }
            })
            .collect();
        drop(w);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// [`Index::names`] as `/debug/records` shows them.
    pub fn dump(&self) -> Vec<NameDump> {
        self.names()
            .into_iter()
            .map(|n| NameDump {
                name: n.name.to_string(),
                conflict: n.entries.len() > 1,
                sources: n
                    .entries
                    .iter()
                    .map(|(id, _)| format!("{id} ({})", id.source))
                    .collect(),
                a: n.a,
                aaaa: n.aaaa,
            })
            .collect()
    }

    /// The current table; cheap, lock-free, never blocks on writers.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// The current table without touching its reference count, for the
    /// per-query path. Hold it briefly.
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Adds or replaces one entry.
    pub fn apply(&self, entry: Entry) {
        let mut w = self.lock();
        if w.upsert(entry) {
            w.relink_touched();
            self.publish(&mut w);
        }
    }

    pub fn delete(&self, id: &EntryId) {
        let mut w = self.lock();
        if w.remove(id) {
            w.relink_touched();
            self.publish(&mut w);
        }
    }

    /// Replaces everything `source` defined with `entries`, published as one
    /// new table: readers see the old set or the new one, never a mix.
    /// Unchanged entries cost nothing.
    pub fn reset(&self, source: &SourceId, entries: Vec<Entry>) {
        self.reset_keeping(source, entries, &HashSet::new());
    }

    /// [`Index::reset`], but the entries in `keep` stay as they are (a
    /// relist that could not read them must not drop their last good state).
    pub fn reset_keeping(&self, source: &SourceId, entries: Vec<Entry>, keep: &HashSet<EntryId>) {
        let mut w = self.lock();
        let stale: Vec<EntryId> = if w.entries.of(source).next().is_none() {
            // A first load: nothing to compare with, and room made at once.
            w.entries.reserve(source, entries.len());
            w.nodes
                .reserve(entries.iter().flat_map(|e| e.hosts.iter().map(|h| h.name.as_str())));
            Vec::new()
        } else {
            let listed: HashSet<(&str, &str)> = entries.iter().map(|e| (&*e.id.namespace, &*e.id.name)).collect();
            w.entries
                .of(source)
                .map(|e| e.id())
                .filter(|id| !listed.contains(&(&*id.namespace, &*id.name)) && !keep.contains(id))
                .collect()
        };
        let mut changed = 0;
        for id in &stale {
            changed += usize::from(w.remove(id));
        }
        for entry in entries {
            if entry.id.source != *source {
                warn!(entry = %entry.id, from = %entry.id.source, into = %source, "entry reset into the wrong source; skipped");
                continue;
            }
            changed += usize::from(w.upsert(entry));
        }
        if changed > 0 {
            w.relink_touched();
            self.publish(&mut w);
        }
        drop(w);
        // A big load leaves its parse garbage behind.
        if changed >= TRIM_AFTER {
            crate::sys::trim::release_free_memory();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves consistent data behind (each
        // step is complete or not started), so keep serving.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, w: &mut Writer) {
        w.apply_below();
        w.serial = next_serial(w.serial);
        w.stats.entries = w.entries.len();
        w.stats.ptr_capped = w.ptr_capped.len();
        let current = self.table.load();
        self.metrics.published(&w.stats);
        self.table.store(Arc::new(Table::new(
            current.config.clone(),
            current.zones.clone(),
            w.nodes.clone(),
            w.ptr.clone(),
            w.serial,
            w.stats,
        )));
    }
}

/// SOA serial: the Unix time, but always moving forward when the table
/// changes more than once a second.
fn next_serial(prev: u32) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    now.max(prev.wrapping_add(1))
}

impl Writer {
    /// Stores `entry`; returns whether anything changed.
    fn upsert(&mut self, entry: Entry) -> bool {
        let was = self.entries.get(&entry.id).cloned();
        if was.as_ref().is_some_and(|old| old.same(&entry)) {
            return false;
        }
        let old: SmallVec<[CompactString; 1]> = was
            .as_ref()
            .map(|old| old.hosts.iter().map(|h| h.name.clone()).collect())
            .unwrap_or_default();
        let new = || entry.hosts.iter().map(|h| &h.name);
        let gone = old.iter().filter(|n| !new().any(|m| m == *n));
        let mut now: SmallVec<[(CompactString, usize); 1]> = SmallVec::new();
        for name in new().chain(gone) {
            if let Some(before) = self.touch(name, old.contains(name)) {
                now.push((name.clone(), before));
            }
        }
        let is = self.entries.insert(entry);
        for (name, before) in now {
            self.relink(&name, before);
        }
        self.reindex_ptr(was.as_ref(), Some(&is));
        true
    }

    fn remove(&mut self, id: &EntryId) -> bool {
        let Some(names) = self.entries.get(id).map(|old| {
            old.hosts
                .iter()
                .map(|h| h.name.clone())
                .collect::<SmallVec<[CompactString; 1]>>()
        }) else {
            return false;
        };
        let now: SmallVec<[(CompactString, usize); 1]> = names
            .into_iter()
            .filter_map(|name| self.touch(&name, true).map(|before| (name, before)))
            .collect();
        let was = self.entries.remove(id);
        for (name, before) in now {
            self.relink(&name, before);
        }
        self.reindex_ptr(was.as_ref(), None);
        true
    }

    /// With reverse zones: moves the PTR of the addresses `old` and `new`
    /// (one entry before and after a change) list. Costs O(log N) per
    /// address of the entry, plus the other entries listing it.
    fn reindex_ptr(&mut self, old: Option<&Arc<store::Stored>>, new: Option<&Arc<store::Stored>>) {
        let Some(owners) = self.owners.as_mut() else {
            return;
        };
        let default = self.default_address;
        // Wildcards and the default address name no one host: no PTR.
        let pairs = |e: &Arc<store::Stored>| -> Vec<(IpAddr, Arc<str>)> {
            e.hosts
                .iter()
                .filter(|h| !h.name.starts_with("*."))
                .flat_map(|h| h.addrs.iter().map(|a| (*a, Arc::from(h.name.as_str()))))
                .filter(|(a, _)| Some(*a) != default)
                .collect()
        };
        let mut touched: SmallVec<[IpAddr; 4]> = SmallVec::new();
        if let Some(old) = old {
            for (addr, _) in pairs(old) {
                if let Some(list) = owners.get_mut(&addr) {
                    list.retain(|(e, _)| !Arc::ptr_eq(e, old));
                }
                touched.push(addr);
            }
        }
        if let Some(new) = new {
            for (addr, host) in pairs(new) {
                owners.entry(addr).or_default().push((new.clone(), host));
                touched.push(addr);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for addr in touched {
            let list = owners.get_mut(&addr);
            let hosts: Vec<Arc<str>> = match list {
                Some(list) if !list.is_empty() => {
                    // Stable: one entry's hosts keep the entry's order.
                    list.sort_by(|a, b| a.0.order().cmp(&b.0.order()));
                    let mut hosts: Vec<Arc<str>> = Vec::new();
                    let mut capped = false;
                    for (_, host) in list.iter() {
                        if !hosts.contains(host) {
                            if hosts.len() == reverse::MAX_PTR_PER_ADDRESS {
                                warn!(%addr, limit = hosts.len(), "too many hosts for one address; extra PTR records skipped");
                                capped = true;
                                break;
                            }
                            hosts.push(host.clone());
                        }
                    }
                    if capped {
                        self.ptr_capped.insert(addr);
                    } else {
                        self.ptr_capped.remove(&addr);
                    }
                    hosts
                }
                _ => Vec::new(),
            };
            let before = self.ptr.get(&addr).map_or(0, |h| h.len());
            self.stats.ptr = self.stats.ptr + hosts.len() - before;
            if hosts.is_empty() {
                owners.remove(&addr);
                self.ptr_capped.remove(&addr);
                self.ptr.remove(&addr);
            } else if self.ptr.get(&addr).is_none_or(|h| **h != *hosts) {
                self.ptr.insert(addr, hosts.into());
            }
        }
    }

    /// Before an entry that defines `name` (if `mine`) changes: how many
    /// entries define it now, for relinking it right after the change. A
    /// name other entries define too is instead relinked once at the end
    /// ([`Self::relink_touched`]), so a reset of many entries sharing a
    /// host does not merge them all again for each one.
    fn touch(&mut self, name: &CompactString, mine: bool) -> Option<usize> {
        if self.touched.contains_key(name) {
            return None;
        }
        let before = self.entries.defining_count(name);
        if before > usize::from(mine) {
            self.touched.insert(name.clone(), before);
            return None;
        }
        Some(before)
    }

    fn relink_touched(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let mut touched = std::mem::take(&mut self.touched);
        for (name, before) in touched.drain() {
            self.relink(&name, before);
        }
        // Kept for the next update, but not a whole reset's worth.
        touched.shrink_to(16);
        self.touched = touched;
    }

    /// Recomputes one name from the entries now defining it; `before` of
    /// them defined it before the change.
    fn relink(&mut self, name: &str, before: usize) {
        let list = self.entries.defining(name);
        let after = list.len();
        if before > 1 && after <= 1 {
            self.stats.conflicts -= 1;
        } else if before <= 1 && after > 1 {
            self.stats.conflicts += 1;
            let ids: Vec<String> = list.iter().take(10).map(|e| e.to_string()).collect();
            warn!(%name, entries = after, first = ?ids, "host defined by several ServiceEntries; serving the union of their addresses");
        }

        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut seen = HashSet::new();
        let limit = address_limit(name);
        let addrs = list
            .iter()
            .flat_map(|e| e.hosts.iter().filter(|h| *h.name == *name))
            .flat_map(|h| &h.addrs);
        for &addr in addrs {
            let count = v4.len() + v6.len();
            // Linear checks for the usual handful; a set once there are many.
            let fresh = if count < 16 {
                match addr {
                    IpAddr::V4(a) => !v4.contains(&a),
                    IpAddr::V6(a) => !v6.contains(&a),
                }
            } else {
                if seen.is_empty() {
                    seen.extend(
                        v4.iter()
                            .map(|&a| IpAddr::V4(a))
                            .chain(v6.iter().map(|&a| IpAddr::V6(a))),
                    );
                }
                seen.insert(addr)
            };
            if !fresh {
                continue;
            }
            if count == limit {
                warn!(%name, limit, "too many addresses for one name; extra ones skipped");
                break;
            }
            match addr {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        let ports = if name.starts_with("*.") {
            None
        } else {
            merged_ports(name, &list)
        };
        self.set_records(name, v4, v6, ports);
    }

    fn set_records(
        &mut self,
        name: &str,
        v4: Vec<std::net::Ipv4Addr>,
        v6: Vec<std::net::Ipv6Addr>,
        ports: Option<Arc<PortSet>>,
    ) {
        let old = self.nodes.get(name).cloned().unwrap_or_default();
        let had = old.has_records();
        let node = Node::new(v4, v6, ports, old.below());
        let has = node.has_records();
        self.stats.a = self.stats.a + node.v4().len() - old.v4().len();
        self.stats.aaaa = self.stats.aaaa + node.v6().len() - old.v6().len();
        match (had, has) {
            (false, true) => self.stats.names += 1,
            (true, false) => self.stats.names -= 1,
            _ => {}
        }
        self.store(name, node);
        if had != has {
            let delta = if has { 1 } else { -1 };
            for ancestor in name::ancestors(name) {
                match self.below_pending.get_mut(ancestor) {
                    Some(d) => *d += delta,
                    None => {
                        self.below_pending.insert(ancestor.into(), delta);
                    }
                }
            }
        }
    }

    /// Brings the ancestors' counts of names below them up to date, once
    /// per batch (before a publish) instead of once per name that gained or
    /// lost its records: a first load of 100k names under 100 namespaces
    /// rewrites 101 nodes here, not 200k. A node's stored count plus its
    /// pending change is its count, so a node rewritten meanwhile (its own
    /// records changed, or it was dropped as empty) comes out right.
    fn apply_below(&mut self) {
        for (name, delta) in std::mem::take(&mut self.below_pending) {
            if delta == 0 {
                continue;
            }
            let node = self.nodes.get(&name).cloned().unwrap_or_default();
            let below = i64::from(node.below()) + delta;
            let below = u32::try_from(below).unwrap_or_else(|_| {
                error!(%name, below, "names below a name counted wrong; taking 0");
                0
            });
            self.store(&name, node.with_below(below));
        }
    }

    fn store(&mut self, name: &str, node: Node) {
        if node.has_records() || node.below() > 0 {
            self.nodes.insert(name, node);
        } else {
            self.nodes.remove(name);
        }
    }
}

/// The SRV ports of a host defined by `list` (in conflict order): the
/// union of the entries' ports, oldest entry first, repeats removed, as
/// for addresses, at most [`port_limit`]. One entry's set is shared, not
/// copied.
fn merged_ports(name: &str, list: &[Arc<store::Stored>]) -> Option<Arc<PortSet>> {
    let limit = port_limit(name);
    let mut sets = list.iter().filter_map(|e| e.ports.as_ref());
    let first = sets.next()?;
    let mut rest = sets.peekable();
    if rest.peek().is_none() && first.0.len() <= limit {
        return Some(first.clone());
    }
    let mut ports: Vec<SrvPort> = Vec::new();
    let mut seen: HashSet<&SrvPort> = HashSet::new();
    for port in first.0.iter().chain(rest.flat_map(|s| s.0.iter())) {
        if !seen.insert(port) {
            continue;
        }
        if ports.len() == limit {
            warn!(%name, limit, "too many SRV ports for one name; extra ones skipped");
            break;
        }
        ports.push(port.clone());
    }
    Some(Arc::new(PortSet(ports.into())))
}

impl Entry {
    /// A copy that shares no memory with `self` but its id's source and
    /// namespace (which the caller interns): a source that converted it on
    /// a short-lived thread keeps nothing the index will hold in that
    /// thread's allocator arena.
    pub fn deep_copy(&self) -> Self {
        Self {
            id: self.id.clone(),
            created: self.created.as_deref().map(Arc::from),
            hosts: self.hosts.clone(),
            ports: self.ports.as_deref().map(|p| Arc::new(p.clone())),
        }
    }

    /// The entry for one converted ServiceEntry; sources get it from
    /// [`Index::convert`].
    fn new(source: SourceId, se: &ServiceEntry, conversion: Conversion) -> Self {
        Self {
            id: EntryId {
                source,
                namespace: se.namespace().into(),
                name: se.metadata.name.as_str().into(),
            },
            created: se.metadata.creation_timestamp.as_deref().map(Arc::from),
            hosts: conversion.hosts,
            ports: conversion.ports,
        }
    }
}

/// Logs the table's size, once the sources have loaded at start-up.
pub fn log_stats(stats: &Stats) {
    info!(
        entries = stats.entries,
        names = stats.names,
        a = stats.a,
        aaaa = stats.aaaa,
        conflicts = stats.conflicts,
        ptr = stats.ptr,
        "table updated"
    );
}

#[cfg(test)]
mod tests;
