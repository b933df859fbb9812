//! Index micro-benchmarks: lookups and one-entry updates with 100k names.
//!
//! `lookup/map_*` times bare map lookups of the alternatives the design
//! considered: a persistent `imbl` map under `ArcSwap` (used until it
//! proved to cost ~220 bytes per name), a `DashMap` updated in place, and a
//! std `HashMap` snapshot (which would need an O(n) copy per update). The
//! table now uses `index::nodes`, measured through `lookup/table_*`;
//! `table_hit_scattered` visits every name, so it pays for cache misses.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::Name;
use meshdns::index::testing::{mk_host_entry, mk_index_with};
use meshdns::index::{Entry, Index, SourceId, ZoneConfig};

const N: u32 = 100_000;

fn entry(i: u32, last_octet: u32) -> Entry {
    let (namespace, name) = (format!("ns{}", i % 100), format!("svc{i}"));
    let host = format!("{name}.{namespace}.global");
    let addr = std::net::Ipv4Addr::from(0xf000_0000 | (i << 8) | last_octet);
    mk_host_entry(&namespace, &name, &host, [addr.into()])
}

fn index() -> Index {
    let config = ZoneConfig::default();
    let index = mk_index_with(&["global"], config);
    index.reset(&SourceId::Kube(None), (0..N).map(|i| entry(i, 1)).collect());
    index
}

fn lookups(c: &mut Criterion) {
    let index = index();
    let table = index.table();
    let hit = Name::from_ascii("Svc4242.ns42.Global.").unwrap();
    let miss = Name::from_ascii("nope.ns42.global.").unwrap();
    c.bench_function("lookup/table_hit", |b| {
        b.iter(|| black_box(table.lookup(black_box(&hit))).is_some_records())
    });
    c.bench_function("lookup/table_nxdomain", |b| {
        b.iter(|| black_box(table.lookup(black_box(&miss))).is_some_records())
    });
    // Every name in a scattered order: the caches hold little of the table,
    // as under real load.
    let names: Vec<Name> = (0..N)
        .map(|i| Name::from_ascii(format!("svc{}.ns{}.global.", i * 7919 % N, i * 7919 % N % 100)).unwrap())
        .collect();
    let mut next = names.iter().cycle();
    c.bench_function("lookup/table_hit_scattered", |b| {
        b.iter(|| black_box(table.lookup(next.next().unwrap())).is_some_records())
    });

    let keys: Vec<Arc<str>> = (0..N)
        .map(|i| Arc::from(format!("svc{i}.ns{}.global", i % 100)))
        .collect();
    let imbl_map: imbl::HashMap<Arc<str>, u32> = keys.iter().cloned().zip(0..).collect();
    let dash: dashmap::DashMap<Arc<str>, u32> = keys.iter().cloned().zip(0..).collect();
    let std_map: HashMap<Arc<str>, u32> = keys.iter().cloned().zip(0..).collect();
    let snapshot = arc_swap::ArcSwap::from_pointee(imbl_map);
    let key = "svc4242.ns42.global";
    c.bench_function("lookup/map_imbl_arcswap", |b| {
        b.iter(|| snapshot.load().get(black_box(key)).copied())
    });
    c.bench_function("lookup/map_dashmap", |b| {
        b.iter(|| dash.get(black_box(key)).map(|v| *v))
    });
    c.bench_function("lookup/map_std_hashmap", |b| {
        b.iter(|| std_map.get(black_box(key)).copied())
    });
}

fn updates(c: &mut Criterion) {
    let index = index();
    let mut flip = 0;
    c.bench_function("update/apply_one_of_100k", |b| {
        b.iter(|| {
            flip ^= 1;
            index.apply(entry(4242, 2 + flip));
        })
    });
}

trait IsSome {
    fn is_some_records(&self) -> bool;
}

impl IsSome for meshdns::index::Lookup<'_> {
    fn is_some_records(&self) -> bool {
        matches!(self, meshdns::index::Lookup::Records(..))
    }
}

criterion_group!(benches, lookups, updates);
criterion_main!(benches);
