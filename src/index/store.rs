//! The writer's memory of every entry: by source and (namespace, name) for
//! updates and resets, and by host name for merging a host that several
//! entries define. It holds one record per ServiceEntry, so it is kept
//! compact: an entry with one host and one address is one allocation, its
//! host name inline up to 24 bytes. Entries are moved in, not copied:
//! copies would leave the originals' memory behind as holes between them.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::quality::RandomState;
use hashbrown::HashTable;
use smallvec::SmallVec;

use super::convert::add_host;
use super::{Entry, EntryId, HostAddrs, Namespaces, PortSet, SourceId};

/// One stored entry.
#[derive(Debug)]
pub(super) struct Stored {
    source: Arc<SourceId>,
    /// Interned: one copy per namespace.
    namespace: Arc<str>,
    name: CompactString,
    created: Option<Arc<str>>,
    /// Distinct names, each with its addresses in the entry's order.
    pub hosts: SmallVec<[HostAddrs; 1]>,
    /// For SRV under the non-wildcard hosts; shared with the table.
    pub ports: Option<Arc<PortSet>>,
}

impl Stored {
    /// Conflict order: oldest first, then namespace/name, then source.
    pub fn order(&self) -> (Option<&str>, &str, &str, &SourceId) {
        (self.created.as_deref(), &self.namespace, &self.name, &self.source)
    }

    pub fn id(&self) -> EntryId {
        EntryId {
            source: (*self.source).clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether storing `entry` would change nothing.
    pub fn same(&self, entry: &Entry) -> bool {
        self.created == entry.created
            && self.ports == entry.ports
            && (self.hosts == entry.hosts || entry.hosts.len() > 1 && self.hosts == merged(entry.hosts.clone()))
    }
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `hosts` with each name once, as [`add_host`] makes them. Converted
/// entries already are; other callers may not be. Merged in place, so the
/// entry's memory is kept, not copied.
fn merged(mut hosts: SmallVec<[HostAddrs; 1]>) -> SmallVec<[HostAddrs; 1]> {
    let mut i = 1;
    while i < hosts.len() {
        if hosts[..i].iter().any(|h| h.name == hosts[i].name) {
            let repeat = hosts.remove(i);
            add_host(&mut hosts, repeat);
        } else {
            i += 1;
        }
    }
    hosts
}

/// An entry's place in its source's table: by (namespace, name).
fn key_hash(hasher: &RandomState, namespace: &str, name: &str) -> u64 {
    hasher.hash_one((namespace, name))
}

/// A host's place in `by_name`.
fn name_hash(hasher: &RandomState, name: &str) -> u64 {
    hasher.hash_one(name)
}

struct Source {
    id: Arc<SourceId>,
    /// Hashed by (namespace, name).
    entries: HashTable<Arc<Stored>>,
}

#[derive(Default)]
pub(super) struct Store {
    /// Keyed per index, like the table: names come from ServiceEntries.
    hasher: RandomState,
    sources: HashMap<SourceId, Source>,
    /// One slot per (entry, host): `entry.hosts[host]`, hashed by the host
    /// name. Thinner than a map from name to entries, whose key alone would
    /// cost a fat pointer per name.
    by_name: HashTable<(Arc<Stored>, u32)>,
    namespaces: Namespaces,
    count: usize,
}

impl Store {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn get(&self, id: &EntryId) -> Option<&Arc<Stored>> {
        let source = self.sources.get(&id.source)?;
        let hash = key_hash(&self.hasher, &id.namespace, &id.name);
        source
            .entries
            .find(hash, |e| *e.namespace == *id.namespace && e.name == *id.name)
    }

    /// Every entry of `source`.
    pub fn of(&self, source: &SourceId) -> impl Iterator<Item = &Arc<Stored>> {
        self.sources.get(source).into_iter().flat_map(|s| s.entries.iter())
    }

    /// The entries defining `name`, in conflict order.
    pub fn defining(&self, name: &str) -> SmallVec<[Arc<Stored>; 1]> {
        let mut list: SmallVec<[Arc<Stored>; 1]> = self.definers(name).cloned().collect();
        list.sort_by(|a, b| a.order().cmp(&b.order()));
        list
    }

    /// How many entries define `name`.
    pub fn defining_count(&self, name: &str) -> usize {
        self.definers(name).count()
    }

    /// The entries defining `name`, in no order.
    fn definers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Stored>> {
        self.by_name
            .iter_hash(name_hash(&self.hasher, name))
            .filter(move |(e, host)| *e.hosts[*host as usize].name == *name)
            .map(|(e, _)| e)
    }

    /// Every name some entry defines, with the entries defining it.
    pub fn names(&self) -> HashMap<&CompactString, Vec<&Arc<Stored>>> {
        let mut out: HashMap<&CompactString, Vec<&Arc<Stored>>> = HashMap::new();
        for (e, host) in &self.by_name {
            out.entry(&e.hosts[*host as usize].name).or_default().push(e);
        }
        out
    }

    /// Makes room for `additional` more entries of `source`, one host each.
    pub fn reserve(&mut self, source: &SourceId, additional: usize) {
        if additional == 0 {
            return;
        }
        let hasher = &self.hasher;
        self.sources
            .entry(source.clone())
            .or_insert_with(|| Source {
                id: Arc::new(source.clone()),
                entries: HashTable::new(),
            })
            .entries
            .reserve(additional, |e| key_hash(hasher, &e.namespace, &e.name));
        self.by_name
            .reserve(additional, |(e, h)| name_hash(hasher, &e.hosts[*h as usize].name));
    }

    /// Stores `entry` in place of any entry with its id; returns it as stored.
    pub fn insert(&mut self, entry: Entry) -> Arc<Stored> {
        self.remove(&entry.id);
        let namespace = self.namespaces.intern(&entry.id.namespace);
        let source = self.sources.entry(entry.id.source.clone()).or_insert_with(|| Source {
            id: Arc::new(entry.id.source),
            entries: HashTable::new(),
        });
        let stored = Arc::new(Stored {
            source: source.id.clone(),
            namespace,
            name: entry.id.name,
            created: entry.created,
            hosts: merged(entry.hosts),
            ports: entry.ports,
        });
        let hasher = &self.hasher;
        let hash = key_hash(hasher, &stored.namespace, &stored.name);
        source
            .entries
            .insert_unique(hash, stored.clone(), |e| key_hash(hasher, &e.namespace, &e.name));
        for (i, host) in stored.hosts.iter().enumerate() {
            self.by_name
                .insert_unique(name_hash(hasher, &host.name), (stored.clone(), i as u32), |(e, h)| {
                    name_hash(hasher, &e.hosts[*h as usize].name)
                });
        }
        self.count += 1;
        stored
    }

    pub fn remove(&mut self, id: &EntryId) -> Option<Arc<Stored>> {
        let hash = key_hash(&self.hasher, &id.namespace, &id.name);
        let source = self.sources.get_mut(&id.source)?;
        let old = source
            .entries
            .find_entry(hash, |e| *e.namespace == *id.namespace && e.name == *id.name)
            .ok()?
            .remove()
            .0;
        if source.entries.is_empty() {
            self.sources.remove(&id.source);
        }
        for (i, host) in old.hosts.iter().enumerate() {
            let hash = name_hash(&self.hasher, &host.name);
            if let Ok(slot) = self
                .by_name
                .find_entry(hash, |(e, h)| Arc::ptr_eq(e, &old) && *h as usize == i)
            {
                slot.remove();
            }
        }
        self.count -= 1;
        Some(old)
    }
}
