//! The table's map, name → [`Node`] (defined here too): persistent, so that publishing a new
//! table after a change copies only what the change touched, and compact,
//! because plain hash tables hold the names.
//!
//! A name's hash picks one of 64 × 64 small hash tables through two fixed
//! 64-way levels; every level is shared (`Arc`) between table versions until
//! written. A write copies one top array, one middle array (64 pointers
//! each) and one small table (about N/4096 names), whatever it changes.
//! A general HAMT (`imbl`) spent about 220 bytes per name on half-empty
//! leaf nodes at 100k names; this spends about 60.

use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::quality::RandomState;

use super::convert::{PortSet, SrvPort};

/// The records of one owner name. A node without addresses is an empty
/// non-terminal: it exists only because names below it do.
///
/// Kept small because the table holds one per name: a name with a single
/// IPv4 address and nothing below it, by far the commonest, is stored
/// inline, with its ports (for SRV) as one thin pointer to the set its
/// entry holds anyway; anything else in one shared allocation. SRV
/// records are made from the ports when asked, never stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node(Repr);

#[derive(Clone, Debug, Default, PartialEq)]
enum Repr {
    #[default]
    Empty,
    V4(Ipv4Addr),
    V4Ports(Ipv4Addr, Arc<PortSet>),
    Full(Arc<Full>),
}

#[derive(Debug, PartialEq)]
struct Full {
    v4: Box<[Ipv4Addr]>,
    v6: Box<[Ipv6Addr]>,
    ports: Option<Arc<PortSet>>,
    /// Names with records strictly below this one.
    below: u32,
}

impl Node {
    pub fn new(v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>, ports: Option<Arc<PortSet>>, below: u32) -> Self {
        Self(match (v4.as_slice(), v6.is_empty(), ports, below) {
            ([], true, None, 0) => Repr::Empty,
            ([a], true, None, 0) => Repr::V4(*a),
            ([a], true, Some(p), 0) => Repr::V4Ports(*a, p),
            (_, _, ports, _) => Repr::Full(Arc::new(Full {
                v4: v4.into(),
                v6: v6.into(),
                ports,
                below,
            })),
        })
    }

    pub fn v4(&self) -> &[Ipv4Addr] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::V4(a) | Repr::V4Ports(a, _) => std::slice::from_ref(a),
            Repr::Full(f) => &f.v4,
        }
    }

    pub fn v6(&self) -> &[Ipv6Addr] {
        match &self.0 {
            Repr::Full(f) => &f.v6,
            _ => &[],
        }
    }

    /// The ports SRV serves under this name (none for a wildcard).
    pub fn ports(&self) -> &[SrvPort] {
        self.port_set().map_or(&[], |p| &p.0)
    }

    pub(super) fn port_set(&self) -> Option<&Arc<PortSet>> {
        match &self.0 {
            Repr::V4Ports(_, p) => Some(p),
            Repr::Full(f) => f.ports.as_ref(),
            _ => None,
        }
    }

    /// Names with records strictly below this one.
    pub fn below(&self) -> u32 {
        match &self.0 {
            Repr::Full(f) => f.below,
            _ => 0,
        }
    }

    pub fn has_records(&self) -> bool {
        !self.v4().is_empty() || !self.v6().is_empty()
    }

    pub(super) fn with_below(&self, below: u32) -> Self {
        Self::new(self.v4().to_vec(), self.v6().to_vec(), self.port_set().cloned(), below)
    }
}

const FAN: usize = 64;
type Mid = [Shard; FAN];

/// One small open-addressing table (linear probing, at most 3/4 full), its
/// slots in the `Arc`'s own allocation: a lookup
/// goes from the middle array straight to the slot, whose key is inline for
/// names up to 24 bytes. Fewer dependent memory loads than a general hash
/// table, which matters because under load the kernel's network stack
/// keeps evicting the table from the caches.
#[derive(Clone, Default)]
struct Shard(Arc<[Slot]>);

#[derive(Clone, Default)]
struct Slot {
    /// Empty for a free slot: no name is empty.
    key: CompactString,
    node: Node,
}

/// Where `hash`'s probe run starts in `len` slots. Any length works, not
/// only powers of two, so that tables can grow in small steps: rounding
/// up to powers of two left them half empty on average.
fn home(hash: u64, len: usize) -> usize {
    ((u64::from(hash as u32) * len as u64) >> 32) as usize
}

/// The slot after `i`, cyclically.
fn next(i: usize, len: usize) -> usize {
    if i + 1 == len { 0 } else { i + 1 }
}

/// The first free slot of `hash`'s probe run; the table always has one.
fn vacant(slots: &[Slot], hash: u64) -> usize {
    let mut i = home(hash, slots.len());
    while !slots[i].key.is_empty() {
        i = next(i, slots.len());
    }
    i
}

impl Shard {
    fn find(&self, hash: u64, name: &[u8]) -> Option<usize> {
        let slots = &self.0;
        if slots.is_empty() {
            return None;
        }
        let mut i = home(hash, slots.len());
        // Ends: the table always has a free slot.
        loop {
            let key = &slots[i].key;
            if key.is_empty() {
                return None;
            }
            if key.as_bytes() == name {
                return Some(i);
            }
            i = next(i, slots.len());
        }
    }

    fn live(&self) -> usize {
        self.0.iter().filter(|s| !s.key.is_empty()).count()
    }

    /// Whether `len` slots hold `live` names at most 3/4 full.
    fn fits(live: usize, len: usize) -> bool {
        live == 0 || live * 4 <= len * 3 && live < len
    }

    /// Slots for a table rebuilt around `live` names: room for 1/8 more
    /// before the next rebuild, so that growing one name at a time rebuilds
    /// every few names, not at every one. About 70% full on average.
    fn capacity(live: usize) -> usize {
        if live == 0 {
            0
        } else {
            ((live + live / 8) * 4 / 3 + 1).max(4)
        }
    }

    /// A fresh table of `slots` (free ones skipped) sized for `names` names.
    fn rebuilt<'a>(slots: impl Iterator<Item = &'a Slot>, names: usize, hash: impl Fn(&str) -> u64) -> Self {
        let mut out = vec![Slot::default(); Self::capacity(names)];
        for slot in slots.filter(|s| !s.key.is_empty()) {
            let i = vacant(&out, hash(&slot.key));
            out[i] = slot.clone();
        }
        Self(out.into())
    }

    /// The slots to write: copied first if another table version shares
    /// them.
    fn slots_mut(&mut self) -> &mut [Slot] {
        if Arc::get_mut(&mut self.0).is_none() {
            self.0 = self.0.iter().cloned().collect();
        }
        Arc::get_mut(&mut self.0).expect("unique after the copy")
    }

    fn insert(&mut self, hash: u64, name: &str, node: Node, rehash: impl Fn(&str) -> u64) {
        if let Some(i) = self.find(hash, name.as_bytes()) {
            self.slots_mut()[i].node = node;
            return;
        }
        let live = self.live() + 1;
        if !Self::fits(live, self.0.len()) {
            *self = Self::rebuilt(self.0.iter(), live, &rehash);
        }
        let slots = self.slots_mut();
        slots[vacant(slots, hash)] = Slot { key: name.into(), node };
    }

    /// Room for `more` names beyond the live ones, so that inserting them
    /// rebuilds the table once here, not every few names on the way.
    fn reserve(&mut self, more: usize, rehash: impl Fn(&str) -> u64) {
        let live = self.live();
        if !Self::fits(live + more, self.0.len()) {
            *self = Self::rebuilt(self.0.iter(), live + more, &rehash);
        }
    }

    fn remove(&mut self, hash: u64, name: &str, rehash: impl Fn(&str) -> u64) {
        let Some(mut hole) = self.find(hash, name.as_bytes()) else {
            return;
        };
        let live = self.live() - 1;
        if Self::capacity(live) < self.0.len() / 2 {
            // Mostly empty now: shrink, leaving the removed name out.
            let keep = self.0.iter().enumerate().filter(|(i, _)| *i != hole).map(|(_, s)| s);
            *self = Self::rebuilt(keep, live, &rehash);
            return;
        }
        // Backward-shift deletion: pull later names of the same probe run
        // into the hole, so that no lookup stops early at it.
        let slots = self.slots_mut();
        let len = slots.len();
        let mut j = hole;
        loop {
            j = next(j, len);
            if slots[j].key.is_empty() {
                break;
            }
            let home = home(rehash(&slots[j].key), len);
            // Movable unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                slots[hole] = std::mem::take(&mut slots[j]);
                hole = j;
            }
        }
        slots[hole] = Slot::default();
    }
}

#[derive(Clone)]
pub struct Nodes {
    /// Keyed per index (every table it publishes is a copy of its
    /// writer's map): names come from ServiceEntries, which must not be
    /// able to steer every name into one small table.
    hasher: RandomState,
    top: Arc<[Arc<Mid>; FAN]>,
}

impl Default for Nodes {
    fn default() -> Self {
        let mid: Arc<Mid> = Arc::new(std::array::from_fn(|_| Shard::default()));
        Self {
            hasher: RandomState::default(),
            top: Arc::new(std::array::from_fn(|_| mid.clone())),
        }
    }
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Cache lines [`Nodes::prefetch_slots`] loads from the home slot.
const PROBE_LINES: usize = 3;

/// The two level indexes, from the hash's top 12 bits; the small table
/// uses the low bits.
fn place(hash: u64) -> (usize, usize) {
    ((hash >> 58) as usize, ((hash >> 52) & (FAN as u64 - 1)) as usize)
}

impl Nodes {
    /// Every name is hashed as bytes, whether it came as a key or a `&str`.
    pub(super) fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        self.get_key(name.as_bytes())
    }

    /// [`Nodes::get`] for a key built from a query name, which is ASCII
    /// but never checked as UTF-8.
    pub fn get_key(&self, name: &[u8]) -> Option<&Node> {
        self.get_hashed(self.hash(name), name)
    }

    /// [`Nodes::get_key`] with `hash` already taken ([`Nodes::hash`]).
    pub(super) fn get_hashed(&self, hash: u64, name: &[u8]) -> Option<&Node> {
        let (t, m) = place(hash);
        let shard = &self.top[t][m];
        shard.find(hash, name).map(|i| &shard.0[i].node)
    }

    /// First of two prefetch stages for a lookup of `hash`: starts loading
    /// the small table's header (where its slots are), so that a batch's
    /// misses on the middle level overlap.
    pub(super) fn prefetch_shard(&self, hash: u64) {
        let (t, m) = place(hash);
        crate::sys::prefetch::prefetch(&self.top[t][m]);
    }

    /// Second stage, best after [`Nodes::prefetch_shard`] for the whole
    /// batch: starts loading the slots [`Nodes::get_hashed`]`(hash, _)`
    /// probes first: [`PROBE_LINES`] lines from the home slot's, which
    /// hold it and at least two more 40-byte slots; a hit probes about two
    /// at these loads (at most 3/4 full).
    pub(super) fn prefetch_slots(&self, hash: u64) {
        let (t, m) = place(hash);
        let slots = &self.top[t][m].0;
        if !slots.is_empty() {
            crate::sys::prefetch::prefetch_lines(&slots[home(hash, slots.len())], PROBE_LINES);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.top
            .iter()
            .flat_map(|mid| mid.iter())
            .flat_map(|shard| shard.0.iter())
            .filter(|s| !s.key.is_empty())
            .map(|s| (s.key.as_str(), &s.node))
    }

    /// The small table at `t`/`m`, its levels copied first if another
    /// table version shares them.
    fn shard_mut(&mut self, t: usize, m: usize) -> &mut Shard {
        &mut Arc::make_mut(&mut Arc::make_mut(&mut self.top)[t])[m]
    }

    pub fn insert(&mut self, name: &str, node: Node) {
        let hash = self.hash(name.as_bytes());
        let (t, m) = place(hash);
        let hasher = self.hasher.clone();
        self.shard_mut(t, m)
            .insert(hash, name, node, |k| hasher.hash_one(k.as_bytes()));
    }

    /// Makes room for `names` before they are inserted (a bulk load): each
    /// small table grows once to its final size instead of being rebuilt
    /// every few names. A name already present or listed twice counts as a
    /// new one: at worst its table is a little roomier.
    pub fn reserve<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        let mut counts = vec![0usize; FAN * FAN];
        for name in names {
            let (t, m) = place(self.hash(name.as_bytes()));
            counts[t * FAN + m] += 1;
        }
        let hasher = self.hasher.clone();
        for (i, &more) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            self.shard_mut(i / FAN, i % FAN)
                .reserve(more, |k| hasher.hash_one(k.as_bytes()));
        }
    }

    pub fn remove(&mut self, name: &str) {
        let hash = self.hash(name.as_bytes());
        let (t, m) = place(hash);
        if self.top[t][m].find(hash, name.as_bytes()).is_none() {
            return;
        }
        let hasher = self.hasher.clone();
        self.shard_mut(t, m)
            .remove(hash, name, |k| hasher.hash_one(k.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_node(i: u32) -> Node {
        Node::new(vec![std::net::Ipv4Addr::from(i)], vec![], None, 0)
    }

    fn mk_shard_lens(nodes: &Nodes) -> Vec<usize> {
        nodes.top.iter().flat_map(|mid| mid.iter()).map(|s| s.0.len()).collect()
    }

    /// After `reserve`, inserting the names it was given (one listed twice,
    /// one already present) rebuilds no small table.
    #[test]
    fn reserved_names_go_in_without_a_rebuild() {
        let mut nodes = Nodes::default();
        nodes.insert("svc0.global", mk_node(0));
        let names: Vec<String> = (0..50_000).map(|i| format!("svc{i}.global")).collect();
        nodes.reserve(names.iter().chain(&names[..10]).map(String::as_str));
        let reserved = mk_shard_lens(&nodes);
        for (i, name) in names.iter().enumerate() {
            nodes.insert(name, mk_node(i as u32));
        }
        let grown = mk_shard_lens(&nodes)
            .iter()
            .zip(&reserved)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(grown, 0, "small tables rebuilt after the reserve");
        assert_eq!(nodes.iter().count(), names.len());
        for (i, name) in names.iter().enumerate() {
            assert_eq!(nodes.get(name), Some(&mk_node(i as u32)), "{name}");
        }
    }

    /// Random inserts and removes over few names, so that shards fill,
    /// grow, shrink and shift; checked against a std map at every step.
    #[test]
    fn matches_a_hash_map() {
        let mut nodes = Nodes::default();
        let mut model = std::collections::HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..200_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let name = format!("svc{}.global", seed % 20_000);
            let snapshot = (step % 1000 == 0).then(|| nodes.clone());
            if seed.is_multiple_of(3) {
                nodes.remove(&name);
                model.remove(&name);
            } else {
                nodes.insert(&name, mk_node(step));
                model.insert(name.clone(), mk_node(step));
            }
            assert_eq!(nodes.get(&name), model.get(&name), "step {step}");
            drop(snapshot);
        }
        assert_eq!(nodes.iter().count(), model.len());
        for (name, node) in &model {
            assert_eq!(nodes.get(name), Some(node));
        }
        for i in 0..20_000 {
            let name = format!("svc{i}.global");
            assert_eq!(nodes.get(&name), model.get(&name));
        }
    }

    /// The table holds one per name: ports must not make it bigger.
    #[test]
    fn node_is_two_words() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn versions_are_independent() {
        let mut a = Nodes::default();
        for i in 0..10_000u32 {
            a.insert(&format!("svc{i}.global"), mk_node(i));
        }
        let snapshot = a.clone();
        a.insert("svc1.global", mk_node(7));
        a.remove("svc2.global");
        a.remove("absent.global");
        assert_eq!((a.iter().count(), snapshot.iter().count()), (9_999, 10_000));
        assert_eq!(a.get("svc1.global"), Some(&mk_node(7)));
        assert_eq!(snapshot.get("svc1.global"), Some(&mk_node(1)));
        assert_eq!(a.get("svc2.global"), None);
        assert_eq!(snapshot.get("svc2.global"), Some(&mk_node(2)));
        for i in 3..10_000u32 {
            assert_eq!(a.get(&format!("svc{i}.global")), Some(&mk_node(i)));
        }
    }
}
