//! Fuzz target (b): ServiceEntries as YAML manifests (the file source's
//! parser) or JSON (as the Kubernetes watch delivers them), converted, and
//! applied, deleted and reset in any order. After every step the table
//! must equal one built from scratch from the entries that survive, node
//! for node (empty non-terminals and their counts included), with the same
//! statistics and the same per-name entry lists. Every YAML document the
//! fast reader takes must read the same through serde-saphyr.
//!
//! Input: a flags byte (a default address or none), then up to 16
//! operations, each an op byte and, for most, a body of `u16 % 4096` bytes
//! (see [`run`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use meshdns::index::testing::all_nodes;
use meshdns::index::{Entry, EntryId, Index, SourceId, ZoneConfig};
use meshdns::serviceentry::ServiceEntry;
use meshdns::source::{file, manifest};

use super::input::Input;

const ZONES: [&str; 3] = ["global", "mesh.local", "bar.global"];
const FILES: [&str; 2] = ["/fuzz/a.yaml", "/fuzz/b.yaml"];

fn mk_index(default_address: Option<IpAddr>) -> Index {
    let zones = ZONES.iter().map(|z| Arc::from(*z)).collect();
    Index::new(
        zones,
        ZoneConfig::default(),
        default_address,
        &prometheus::Registry::new(),
    )
    .expect("valid zones")
}

/// The YAML body's entries as the file source reads them, or none if it
/// does not parse. Every document the fast reader takes must read the same
/// through serde-saphyr.
fn load(index: &Index, file: &str, body: &[u8]) -> Option<Vec<Entry>> {
    let text = std::str::from_utf8(body).ok()?;
    if let Err(e) = manifest::check_fast_reader(text) {
        panic!("{e}");
    }
    file::load(Path::new(file), text, index).ok()
}

/// Ops: 0, 1 reset file A or B from a YAML body; 2 reset the Kubernetes
/// source from a YAML body (as a relist would); 3 apply each entry of a
/// YAML body as Kubernetes entries; 4 apply one JSON object; 5 delete the
/// `n`th surviving entry (or one that never was).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let default_address = (flags & 1 != 0).then_some(IpAddr::V4(Ipv4Addr::new(240, 0, 0, 1)));
    let index = mk_index(default_address);
    let kube = SourceId::Kube(None);
    // What survives, by id: the model the index must agree with.
    let mut model: BTreeMap<EntryId, Entry> = BTreeMap::new();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 6;
        let body = match op {
            5 => &[][..],
            _ => {
                let len = usize::from(input.u16()) % 4096;
                input.take(len)
            }
        };
        match op {
            0 | 1 => {
                let file = FILES[usize::from(op)];
                let source = file::source_id(Path::new(file));
                // A file that does not parse leaves its entries as they were.
                if let Some(entries) = load(&index, file, body) {
                    model.retain(|id, _| id.source != source);
                    model.extend(entries.iter().map(|e| (e.id.clone(), e.clone())));
                    index.reset(&source, entries);
                }
            }
            2 | 3 => {
                let Some(mut entries) = load(&index, FILES[0], body) else {
                    continue;
                };
                entries.iter_mut().for_each(|e| e.id.source = kube.clone());
                if op == 2 {
                    model.retain(|id, _| id.source != kube);
                    model.extend(entries.iter().map(|e| (e.id.clone(), e.clone())));
                    index.reset(&kube, entries);
                } else {
                    for entry in entries {
                        model.insert(entry.id.clone(), entry.clone());
                        index.apply(entry);
                    }
                }
            }
            4 => {
                let Ok(se) = serde_json::from_slice::<ServiceEntry>(body) else {
                    continue;
                };
                let (entry, _) = index.convert(&kube, &se);
                model.insert(entry.id.clone(), entry.clone());
                index.apply(entry);
            }
            _ => {
                let n = usize::from(input.u8());
                let id = match model.keys().nth(n % (model.len() + 1)) {
                    Some(id) => id.clone(),
                    None => EntryId {
                        source: kube.clone(),
                        namespace: "never".into(),
                        name: "was".into(),
                    },
                };
                model.remove(&id);
                index.delete(&id);
            }
        }
        check(&index, default_address, &model);
    }
}

/// The index against one built from scratch from `model`, applied in the
/// opposite order.
fn check(index: &Index, default_address: Option<IpAddr>, model: &BTreeMap<EntryId, Entry>) {
    let fresh = mk_index(default_address);
    for entry in model.values().rev() {
        fresh.apply(entry.clone());
    }
    let (got, want) = (index.table(), fresh.table());
    assert_eq!(got.stats.entries, model.len(), "entries");
    assert_eq!(got.stats, want.stats, "stats");
    assert_eq!(all_nodes(&got), all_nodes(&want), "nodes");
    let dump = |i: &Index| serde_json::to_string(&i.dump()).expect("serializable");
    assert_eq!(dump(index), dump(&fresh), "names and their entries");
}
