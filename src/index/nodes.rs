//! The table's map, name → [`Node`]: persistent, so that publishing a new
//! table after a change copies only what the change touched, and compact,
//! because plain hash tables hold the names.
//!
//! A name's hash picks one of 64 × 64 small hash tables through two fixed
//! 64-way levels; every level is shared (`Arc`) between table versions until
//! written. A write copies one top array, one middle array (64 pointers
//! each) and one small table (about N/4096 names), whatever it changes.
//! A general HAMT (`imbl`) spent about 220 bytes per name on half-empty
//! leaf nodes at 100k names; this spends about 50.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;

use super::table::Node;

const FAN: usize = 64;
/// Keyed per table (`RandomState`): names come from ServiceEntries, which
/// must not be able to steer every name into one small table.
type Shard = HashTable<(CompactString, Node)>;
type Mid = [Arc<Shard>; FAN];

#[derive(Clone)]
pub struct Nodes {
    hasher: RandomState,
    top: Arc<[Arc<Mid>; FAN]>,
}

impl Default for Nodes {
    fn default() -> Self {
        let shard = Arc::new(Shard::new());
        let mid: Arc<Mid> = Arc::new(std::array::from_fn(|_| shard.clone()));
        Self {
            hasher: RandomState::new(),
            top: Arc::new(std::array::from_fn(|_| mid.clone())),
        }
    }
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The two level indexes (from the hash's top 12 bits) and the hash the
/// small table uses: remixed, since within one table those 12 bits are all
/// the same.
fn place(hash: u64) -> (usize, usize, u64) {
    let top = (hash >> 58) as usize;
    let mid = ((hash >> 52) & (FAN as u64 - 1)) as usize;
    (top, mid, hash.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Nodes {
    fn locate(&self, name: &str) -> (usize, usize, u64) {
        place(self.hasher.hash_one(name))
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        let (t, m, h) = self.locate(name);
        self.top[t][m].find(h, |(k, _)| k == name).map(|(_, node)| node)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.top
            .iter()
            .flat_map(|mid| mid.iter())
            .flat_map(|shard| shard.iter())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The small table holding `t`/`m`, copied first if another table
    /// version shares it.
    fn shard_mut(&mut self, t: usize, m: usize) -> &mut Shard {
        Arc::make_mut(&mut Arc::make_mut(&mut Arc::make_mut(&mut self.top)[t])[m])
    }

    pub fn insert(&mut self, name: &str, node: Node) {
        let (t, m, h) = self.locate(name);
        let hasher = self.hasher.clone();
        let shard = self.shard_mut(t, m);
        match shard.find_mut(h, |(k, _)| k == name) {
            Some(slot) => slot.1 = node,
            None => {
                shard.insert_unique(h, (name.into(), node), |(k, _)| place(hasher.hash_one(k.as_str())).2);
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        let (t, m, h) = self.locate(name);
        if self.top[t][m].find(h, |(k, _)| k == name).is_none() {
            return;
        }
        if let Ok(entry) = self.shard_mut(t, m).find_entry(h, |(k, _)| k == name) {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_node(i: u32) -> Node {
        Node::new(vec![std::net::Ipv4Addr::from(i)], vec![], 0)
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
