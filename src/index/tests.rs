//! Index rules: lookups, wildcards, empty non-terminals, conflicts, resets.

use std::collections::HashSet;
use std::str::FromStr;

use hickory_proto::rr::Name;

use super::*;

use super::testing::{mk_entry, mk_entry_in, mk_index, mk_index_with, resolve};

#[test]
fn exact_names_case_insensitive() {
    let index = mk_index();
    index.apply(mk_entry(
        "foo/a",
        None,
        &[("httpbin.bar.global", &["240.0.0.2", "2001:db8::2"])],
    ));
    assert_eq!(resolve(&index, "httpbin.bar.global."), "240.0.0.2,2001:db8::2");
    assert_eq!(resolve(&index, "HTTPBIN.Bar.GLOBAL."), "240.0.0.2,2001:db8::2");
    assert_eq!(resolve(&index, "nope.bar.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "x.httpbin.bar.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "global."), "APEX");
    assert_eq!(resolve(&index, "GLOBAL."), "APEX");
    assert_eq!(resolve(&index, "example.com."), "REFUSED");
    assert_eq!(resolve(&index, "."), "REFUSED");
    assert_eq!(resolve(&index, "xglobal."), "REFUSED");
}

#[test]
fn empty_non_terminals_exist() {
    let index = mk_index();
    index.apply(mk_entry("foo/a", None, &[("a.b.c.global", &["240.0.0.1"])]));
    assert_eq!(resolve(&index, "b.c.global."), "NODATA");
    assert_eq!(resolve(&index, "c.global."), "NODATA");
    index.delete(&mk_entry("foo/a", None, &[]).id);
    assert_eq!(resolve(&index, "c.global."), "NXDOMAIN");
    assert!(index.table().nodes.iter().next().is_none(), "no node left behind");
}

#[test]
fn wildcard_precedence() {
    let index = mk_index();
    index.apply(mk_entry("foo/w1", None, &[("*.global", &["240.0.0.1"])]));
    index.apply(mk_entry("foo/w2", None, &[("*.foo.global", &["240.0.0.2"])]));
    index.apply(mk_entry("foo/w3", None, &[("*.bar.foo.global", &["240.0.0.3"])]));
    index.apply(mk_entry("foo/e", None, &[("exact.foo.global", &["240.0.0.4"])]));
    assert_eq!(resolve(&index, "x.global."), "240.0.0.1");
    assert_eq!(resolve(&index, "x.y.z.global."), "240.0.0.1");
    assert_eq!(resolve(&index, "x.foo.global."), "240.0.0.2");
    assert_eq!(resolve(&index, "a.b.foo.global."), "240.0.0.2");
    assert_eq!(resolve(&index, "x.bar.foo.global."), "240.0.0.3");
    assert_eq!(resolve(&index, "deep.x.bar.foo.global."), "240.0.0.3");
    // Exact beats wildcard. Empty non-terminals below a wildcard's parent
    // are covered by it; the parent itself falls to the next wildcard up.
    assert_eq!(resolve(&index, "exact.foo.global."), "240.0.0.4");
    assert_eq!(resolve(&index, "foo.global."), "240.0.0.1");
    assert_eq!(resolve(&index, "bar.foo.global."), "240.0.0.2");
    // A name below an exact name still falls to the nearest wildcard.
    assert_eq!(resolve(&index, "sub.exact.foo.global."), "240.0.0.2");
    // The wildcard owner itself, asked for literally.
    assert_eq!(resolve(&index, "*.foo.global."), "240.0.0.2");
}

/// The fast path keys a name once, prefetches with the key and looks it up
/// with it: a lookup leaves the key as it found it, wildcard search included.
#[test]
fn a_name_key_outlasts_its_lookups() {
    let index = mk_index();
    index.apply(mk_entry("foo/w", None, &[("*.foo.global", &["240.0.0.2"])]));
    index.apply(mk_entry("foo/e", None, &[("exact.foo.global", &["240.0.0.4"])]));
    let table = index.table();
    for name in ["x.y.Foo.global", "EXACT.foo.global", "nope.global", "*.foo.global"] {
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        let mut key = NameKey::default();
        labels.iter().for_each(|l| key.push(l));
        let fresh = format!("{:?}", table.lookup_labels(&labels));
        table.prefetch_key(&mut key);
        table.prefetch_slots(&key);
        for _ in 0..2 {
            assert_eq!(format!("{:?}", table.lookup_keyed(&labels, &mut key)), fresh, "{name}");
        }
    }
    // Longer than any name: invalid for good, and NXDOMAIN in the zone.
    let mut key = NameKey::default();
    let long = [b'a'; 63];
    for _ in 0..4 {
        key.push(&long);
    }
    key.push(b"global");
    let labels: [&[u8]; 5] = [&long, &long, &long, &long, b"global"];
    assert!(matches!(table.lookup_keyed(&labels, &mut key), Lookup::NxDomain(_)));
}

#[test]
fn empty_non_terminal_without_a_covering_wildcard_is_nodata() {
    let index = mk_index();
    index.apply(mk_entry("foo/w", None, &[("*.foo.global", &["240.0.0.2"])]));
    index.apply(mk_entry("foo/e", None, &[("a.b.foo.global", &["240.0.0.3"])]));
    assert_eq!(
        resolve(&index, "foo.global."),
        "NODATA",
        "a wildcard never covers its own parent"
    );
    assert_eq!(resolve(&index, "b.foo.global."), "240.0.0.2", "covered by *.foo.global");
    assert_eq!(resolve(&index, "x.b.foo.global."), "240.0.0.2");
}

#[test]
fn wildcard_matches_labels_with_unusual_bytes() {
    let index = mk_index();
    index.apply(mk_entry("foo/w", None, &[("*.foo.global", &["240.0.0.2"])]));
    let name = Name::from_labels(vec![&b"a b"[..], b"foo", b"global"]).unwrap();
    assert!(matches!(index.table().lookup(&name), Lookup::Records(..)));
    let name = Name::from_labels(vec![&b"a.b"[..], b"global"]).unwrap();
    assert!(matches!(index.table().lookup(&name), Lookup::NxDomain(_)));
}

#[test]
fn conflicts_union_in_creation_then_name_order() {
    let index = mk_index();
    index.apply(mk_entry(
        "ns2/b",
        Some("2024-01-02T00:00:00Z"),
        &[("svc.global", &["240.0.0.3", "240.0.0.1"])],
    ));
    index.apply(mk_entry(
        "ns1/z",
        Some("2024-01-01T00:00:00Z"),
        &[("svc.global", &["240.0.0.2"])],
    ));
    index.apply(mk_entry(
        "ns1/a",
        Some("2024-01-02T00:00:00Z"),
        &[("svc.global", &["240.0.0.1", "2001:db8::1"])],
    ));
    assert_eq!(
        resolve(&index, "svc.global."),
        "240.0.0.2,240.0.0.1,240.0.0.3,2001:db8::1"
    );
    assert_eq!(index.table().stats.conflicts, 1);
    index.delete(&mk_entry("ns1/z", None, &[]).id);
    index.delete(&mk_entry("ns1/a", None, &[]).id);
    assert_eq!(resolve(&index, "svc.global."), "240.0.0.3,240.0.0.1");
    assert_eq!(index.table().stats.conflicts, 0);
}

#[test]
fn a_reset_merges_a_shared_host_once() {
    // Many entries on one host: the union keeps entry order, drops repeats
    // (past the point where a set takes over) and counts one conflict.
    let index = mk_index();
    let addrs: Vec<String> = (0..40u32).map(|i| format!("240.0.0.{}", i % 30)).collect();
    let entries = (0..40)
        .map(|i| mk_entry(&format!("ns/e{i:02}"), None, &[("shared.global", &[addrs[i].as_str()])]))
        .collect();
    index.reset(&SourceId::Kube(None), entries);
    let want: Vec<String> = addrs[..30].to_vec();
    assert_eq!(resolve(&index, "shared.global."), want.join(","));
    assert_eq!(index.table().stats.conflicts, 1);
    assert_eq!(index.table().stats.a, 30);
    index.reset(
        &SourceId::Kube(None),
        vec![mk_entry("ns/e00", None, &[("shared.global", &["240.0.0.9"])])],
    );
    assert_eq!(resolve(&index, "shared.global."), "240.0.0.9");
    assert_eq!(index.table().stats.conflicts, 0);
}

#[test]
fn update_replaces_only_that_entry() {
    let index = mk_index();
    index.apply(mk_entry(
        "foo/a",
        None,
        &[("a.global", &["240.0.0.1"]), ("b.global", &["240.0.0.1"])],
    ));
    index.apply(mk_entry("foo/other", None, &[("c.global", &["240.0.0.9"])]));
    index.apply(mk_entry("foo/a", None, &[("b.global", &["240.0.0.2"])]));
    assert_eq!(resolve(&index, "a.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "b.global."), "240.0.0.2");
    assert_eq!(resolve(&index, "c.global."), "240.0.0.9");
    let stats = index.table().stats;
    assert_eq!((stats.entries, stats.names, stats.a, stats.aaaa), (2, 2, 2, 0));
}

#[test]
fn serial_moves_only_on_change() {
    let index = mk_index();
    let s0 = index.table().serial;
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.1"])]));
    let s1 = index.table().serial;
    assert!(s1 > s0);
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.1"])]));
    assert_eq!(index.table().serial, s1, "an identical apply is a no-op");
    index.delete(&mk_entry("foo/missing", None, &[]).id);
    assert_eq!(index.table().serial, s1);
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.2"])]));
    assert!(index.table().serial > s1);
}

#[test]
fn reset_swaps_one_source_atomically() {
    let index = mk_index();
    let file = SourceId::File("/etc/x.yaml".into());
    index.apply(mk_entry("foo/kube", None, &[("k.global", &["240.0.0.1"])]));
    index.reset(
        &file,
        vec![
            mk_entry_in(file.clone(), "foo/a", None, &[("a.global", &["240.0.0.2"])]),
            mk_entry_in(file.clone(), "foo/b", None, &[("b.global", &["240.0.0.3"])]),
        ],
    );
    let before = index.table();
    index.reset(
        &file,
        vec![mk_entry_in(
            file.clone(),
            "foo/b",
            None,
            &[("b.global", &["240.0.0.4"])],
        )],
    );
    // The old table is untouched; the new one has the whole change.
    assert!(matches!(
        before.lookup(&Name::from_str("a.global.").unwrap()),
        Lookup::Records(..)
    ));
    assert_eq!(resolve(&index, "a.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "b.global."), "240.0.0.4");
    assert_eq!(resolve(&index, "k.global."), "240.0.0.1", "other sources untouched");
    // Same id from two sources: both kept, merged by the conflict rule.
    index.reset(
        &file,
        vec![mk_entry_in(
            file.clone(),
            "foo/kube",
            None,
            &[("k.global", &["240.0.0.5"])],
        )],
    );
    assert_eq!(resolve(&index, "k.global."), "240.0.0.1,240.0.0.5");
    index.reset(&file, vec![]);
    assert_eq!(resolve(&index, "k.global."), "240.0.0.1");
    assert_eq!(index.table().stats.entries, 1);
}

#[test]
fn per_name_address_cap() {
    let index = mk_index();
    for i in 0..5u32 {
        let addrs: Vec<String> = (0..300u32)
            .map(|j| std::net::Ipv4Addr::from((240u32 << 24) | (i << 16) | j).to_string())
            .collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        index.apply(mk_entry(&format!("foo/e{i}"), None, &[("big.global", &refs)]));
    }
    let table = index.table();
    let Lookup::Records(_, node) = table.lookup(&Name::from_str("big.global.").unwrap()) else {
        panic!()
    };
    assert_eq!(node.v4().len(), MAX_ADDRESSES_PER_NAME);
}

#[test]
fn long_names_carry_fewer_addresses() {
    let long = format!("{}.global", vec!["x".repeat(60); 4].join("."));
    assert_eq!(address_limit("big.global"), MAX_ADDRESSES_PER_NAME);
    let limit = address_limit(&long);
    assert!(limit < 300, "{limit}");
    // Even with no name compression, the AAAA answer fits a TCP message.
    let wire = long.len() + 2;
    assert!(12 + wire + 4 + limit * (wire + 26) + 11 <= 65535);

    let index = mk_index();
    let addrs: Vec<String> = (0..256u32)
        .map(|j| std::net::Ipv4Addr::from((240u32 << 24) | j).to_string())
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    index.apply(mk_entry("foo/e1", None, &[(&long, &refs)]));
    let table = index.table();
    let Lookup::Records(_, node) = table.lookup(&Name::from_str(&format!("{long}.")).unwrap()) else {
        panic!()
    };
    assert_eq!(node.v4().len(), limit);
}

#[test]
fn most_specific_zone_wins() {
    let index = mk_index_with(&["global", "mesh.global"], ZoneConfig::default());
    assert!(
        matches!(index.table().lookup(&Name::from_str("mesh.global.").unwrap()), Lookup::Apex(z) if &*z.key == "mesh.global")
    );
    assert!(
        matches!(index.table().lookup(&Name::from_str("x.mesh.global.").unwrap()), Lookup::NxDomain(z) if &*z.key == "mesh.global")
    );
}

#[test]
fn reset_keeping_leaves_unreadable_entries_alone() {
    let index = mk_index();
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.1"])]));
    index.apply(mk_entry("foo/b", None, &[("b.global", &["240.0.0.2"])]));
    let keep: HashSet<EntryId> = [mk_entry("foo/b", None, &[]).id].into();
    index.reset_keeping(&SourceId::Kube(None), vec![], &keep);
    assert_eq!(resolve(&index, "a.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "b.global."), "240.0.0.2");
}

#[test]
fn an_entry_naming_a_host_twice_serves_it_once() {
    let index = mk_index();
    index.apply(mk_entry(
        "foo/a",
        None,
        &[("a.global", &["240.0.0.1"]), ("a.global", &["240.0.0.2", "240.0.0.1"])],
    ));
    assert_eq!(resolve(&index, "a.global."), "240.0.0.1,240.0.0.2");
    assert_eq!(index.table().stats.conflicts, 0);
    index.delete(&mk_entry("foo/a", None, &[]).id);
    assert_eq!(resolve(&index, "a.global."), "NXDOMAIN");
    assert!(index.dump().is_empty());
}

/// Random applies and deletes over a few names shared by many entries, from
/// two sources; after each step the index must match a from-scratch model.
#[test]
fn random_changes_match_a_model() {
    let index = mk_index();
    let mut model: std::collections::BTreeMap<(bool, u32), Entry> = Default::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n) as u32
    };
    for step in 0..3000 {
        let (file, e) = (next(2) == 0, next(40));
        let source = if file {
            SourceId::File("f.yaml".into())
        } else {
            SourceId::Kube(None)
        };
        if next(4) == 0 {
            let entry = mk_entry_in(source, &format!("ns/e{e}"), None, &[]);
            index.delete(&entry.id);
            model.remove(&(file, e));
        } else {
            let hosts: Vec<(String, Vec<String>)> = (0..next(4))
                .map(|_| {
                    let addrs = (0..1 + next(2)).map(|_| format!("240.0.0.{}", next(8))).collect();
                    (format!("h{}.global", next(12)), addrs)
                })
                .collect();
            let hosts: Vec<(&str, Vec<&str>)> = hosts
                .iter()
                .map(|(h, a)| (h.as_str(), a.iter().map(String::as_str).collect()))
                .collect();
            let hosts: Vec<(&str, &[&str])> = hosts.iter().map(|(h, a)| (*h, a.as_slice())).collect();
            let created = format!("2024-01-0{}T00:00:00Z", 1 + next(3));
            let entry = mk_entry_in(source, &format!("ns/e{e}"), Some(&created), &hosts);
            index.apply(entry.clone());
            model.insert((file, e), entry);
        }
        // The model: every name's entries in conflict order, then the union.
        let mut want: std::collections::BTreeMap<String, Vec<&Entry>> = Default::default();
        for entry in model.values() {
            let mut names: Vec<&str> = entry.hosts.iter().map(|h| &*h.name).collect();
            names.sort();
            names.dedup();
            for name in names {
                want.entry(name.into()).or_default().push(entry);
            }
        }
        let dump = index.dump();
        assert_eq!(dump.len(), want.len(), "step {step}");
        for (got, (name, mut entries)) in dump.iter().zip(want) {
            entries.sort_by_key(|e| {
                (
                    e.created.clone(),
                    e.id.namespace.clone(),
                    e.id.name.clone(),
                    e.id.source.clone(),
                )
            });
            let mut a: Vec<std::net::Ipv4Addr> = Vec::new();
            for addr in entries
                .iter()
                .flat_map(|e| e.hosts.iter().filter(|h| *h.name == *name))
                .flat_map(|h| &h.addrs)
            {
                if let IpAddr::V4(v4) = addr
                    && !a.contains(v4)
                {
                    a.push(*v4);
                }
            }
            let sources: Vec<String> = entries.iter().map(|e| format!("{} ({})", e.id, e.id.source)).collect();
            assert_eq!((&got.name, &got.a, &got.sources), (&name, &a, &sources), "step {step}");
            assert_eq!(
                resolve(&index, &format!("{name}.")),
                a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
            );
        }
        let conflicts = dump.iter().filter(|d| d.conflict).count();
        assert_eq!(index.table().stats.conflicts, conflicts, "step {step}");
        assert_eq!(index.table().stats.entries, model.len(), "step {step}");
    }
}

/// [`resolve`], with the zone that answered a negative or apex lookup.
fn resolve_in(index: &Index, qname: &str) -> String {
    let table = index.table();
    match table.lookup(&Name::from_ascii(qname).unwrap()) {
        Lookup::Apex(z) => format!("APEX@{}", z.key),
        Lookup::NoData(z) => format!("NODATA@{}", z.key),
        Lookup::NxDomain(z) => format!("NXDOMAIN@{}", z.key),
        Lookup::Records(z, _) | Lookup::Ptr(z, _) => format!("{}@{}", resolve(index, qname), z.key),
        Lookup::OutOfZone => "REFUSED".into(),
    }
}

#[test]
fn two_zones_each_answer_their_own_names() {
    let index = mk_index_with(&["global", "mesh.internal"], ZoneConfig::default());
    // One entry with hosts in both zones and one in neither.
    let se = convert::tests::mk_se(
        "foo",
        "both",
        &["svc.foo.global", "svc.foo.mesh.internal", "svc.foo.example.com"],
        &["240.0.0.1"],
    );
    let (entry, skipped) = index.convert(&SourceId::Kube(None), &se);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].reason, SkipReason::OutOfZone);
    index.apply(entry);
    assert_eq!(resolve_in(&index, "svc.foo.global."), "240.0.0.1@global");
    assert_eq!(resolve_in(&index, "SVC.Foo.Mesh.Internal."), "240.0.0.1@mesh.internal");
    assert_eq!(resolve_in(&index, "global."), "APEX@global");
    assert_eq!(resolve_in(&index, "mesh.internal."), "APEX@mesh.internal");
    // Negative answers fall in the zone of the name asked.
    assert_eq!(resolve_in(&index, "nope.global."), "NXDOMAIN@global");
    assert_eq!(resolve_in(&index, "nope.mesh.internal."), "NXDOMAIN@mesh.internal");
    assert_eq!(resolve_in(&index, "foo.mesh.internal."), "NODATA@mesh.internal");
    assert_eq!(resolve_in(&index, "internal."), "REFUSED");
    assert_eq!(resolve_in(&index, "svc.foo.example.com."), "REFUSED");
    assert_eq!(index.table().stats.names, 2);
}

#[test]
fn a_nested_zone_owns_its_names_entirely() {
    let index = mk_index_with(&["global", "in.global", "deep.mid.global"], ZoneConfig::default());
    index.apply(mk_entry(
        "foo/a",
        None,
        &[("x.in.global", &["240.0.0.2"]), ("y.deep.mid.global", &["240.0.0.3"])],
    ));
    assert_eq!(resolve_in(&index, "in.global."), "APEX@in.global");
    assert_eq!(resolve_in(&index, "x.in.global."), "240.0.0.2@in.global");
    assert_eq!(resolve_in(&index, "nope.in.global."), "NXDOMAIN@in.global");
    assert_eq!(resolve_in(&index, "deep.mid.global."), "APEX@deep.mid.global");
    assert_eq!(resolve_in(&index, "y.deep.mid.global."), "240.0.0.3@deep.mid.global");
    // Between the zones: an empty non-terminal of the outer zone, as if it
    // delegated the inner one, with or without names in the inner zone.
    assert_eq!(resolve_in(&index, "mid.global."), "NODATA@global");
    index.delete(&mk_entry("foo/a", None, &[]).id);
    assert_eq!(resolve_in(&index, "mid.global."), "NODATA@global");
    assert_eq!(resolve_in(&index, "x.mid.global."), "NXDOMAIN@global");
    assert_eq!(resolve_in(&index, "MID.Global."), "NODATA@global");

    // The outer zone's wildcards answer its own names, never the inner zone's.
    index.apply(mk_entry("foo/w", None, &[("*.global", &["240.0.0.1"])]));
    assert_eq!(resolve_in(&index, "z.global."), "240.0.0.1@global");
    assert_eq!(resolve_in(&index, "x.mid.global."), "240.0.0.1@global");
    assert_eq!(resolve_in(&index, "nope.in.global."), "NXDOMAIN@in.global");
    assert_eq!(resolve_in(&index, "a.b.in.global."), "NXDOMAIN@in.global");
    assert_eq!(resolve_in(&index, "in.global."), "APEX@in.global");
    assert_eq!(resolve_in(&index, "z.deep.mid.global."), "NXDOMAIN@deep.mid.global");
    // An inner wildcard answers below the inner apex only.
    index.apply(mk_entry("foo/iw", None, &[("*.in.global", &["240.0.0.4"])]));
    assert_eq!(resolve_in(&index, "a.b.in.global."), "240.0.0.4@in.global");
    assert_eq!(resolve_in(&index, "in.global."), "APEX@in.global");
}

#[test]
fn exported_only_skips_entries_scoped_to_some_namespaces() {
    let registry = prometheus::Registry::new();
    let index = Index::new(vec!["global".into()], ZoneConfig::default(), None, &registry)
        .unwrap()
        .with_exported_only(true);
    let mk = |name: &str, export_to: &[&str]| {
        let mut se = convert::tests::mk_se("foo", name, &[&format!("{name}.foo.global")], &["240.0.0.1"]);
        se.spec.export_to = export_to.iter().map(|s| s.to_string()).collect();
        se
    };
    let source = SourceId::Kube(None);
    for (se, served) in [
        (mk("unset", &[]), true),
        (mk("all", &["*"]), true),
        (mk("mixed", &[".", "*"]), true),
        (mk("own", &["."]), false),
        (mk("none", &["~"]), false),
        (mk("some", &["bar", "baz"]), false),
    ] {
        let (entry, skipped) = index.convert(&source, &se);
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.label()).collect();
        let want: &[&str] = if served { &[] } else { &["not_exported"] };
        assert_eq!(reasons, want, "{}", se.metadata.name);
        index.apply(entry);
    }
    for (name, want) in [
        ("unset", "240.0.0.1"),
        ("all", "240.0.0.1"),
        ("mixed", "240.0.0.1"),
        ("own", "NXDOMAIN"),
        ("none", "NXDOMAIN"),
        ("some", "NXDOMAIN"),
    ] {
        assert_eq!(resolve(&index, &format!("{name}.foo.global.")), want, "{name}");
    }
    let counted = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "meshdns_skipped_total")
        .and_then(|f| {
            f.get_metric()
                .iter()
                .find(|m| m.get_label().iter().any(|l| l.value() == "not_exported"))
                .map(|m| m.get_counter().get_value())
        });
    assert_eq!(counted, Some(3.0));
}

/// What a query name is for SRV: the ports it answers (`number/proto`),
/// or the outcome of [`resolve`] when it is no SRV name.
fn resolve_srv(index: &Index, qname: &str) -> String {
    let table = index.table();
    let name = Name::from_ascii(qname).unwrap();
    let ports = |node: &Node, filter: &dyn Fn(&SrvPort) -> bool| -> String {
        let all: Vec<String> = node
            .ports()
            .iter()
            .filter(|p| filter(p))
            .map(|p| format!("{}/{}", p.number, p.proto_label()))
            .collect();
        all.join(",")
    };
    match table.lookup(&name) {
        Lookup::NoData(zone) => match table.srv(&name, zone) {
            Some(host) => {
                let labels: Vec<&[u8]> = name.iter().take(2).collect();
                format!("SRV {}", ports(host, &|p| p.matches(labels[0], labels[1])))
            }
            None => "NODATA".into(),
        },
        Lookup::Records(_, node) if !node.ports().is_empty() => format!("host {}", ports(node, &|_| true)),
        _ => resolve(index, qname),
    }
}

#[test]
fn srv_names_come_from_the_ports_of_non_wildcard_hosts() {
    use super::testing::mk_with_ports;
    let index = mk_index();
    index.apply(mk_with_ports(
        mk_entry(
            "foo/a",
            None,
            &[
                ("httpbin.bar.global", &["240.0.0.2"]),
                ("*.foo.global", &["240.0.0.9"]),
                ("h.foo.global", &["240.0.0.3"]),
            ],
        ),
        &[("http", 80, "HTTP"), ("dns", 53, "udp"), ("Grpc", 9090, "GRPC")],
    ));
    assert_eq!(resolve_srv(&index, "_http._tcp.httpbin.bar.global."), "SRV 80/_tcp");
    assert_eq!(resolve_srv(&index, "_HTTP._TCP.HttpBin.bar.global."), "SRV 80/_tcp");
    assert_eq!(resolve_srv(&index, "_grpc._tcp.httpbin.bar.global."), "SRV 9090/_tcp");
    assert_eq!(resolve_srv(&index, "_dns._udp.httpbin.bar.global."), "SRV 53/_udp");
    // The bare host carries every port, as CoreDNS answers a Service name.
    assert_eq!(
        resolve_srv(&index, "httpbin.bar.global."),
        "host 80/_tcp,53/_udp,9090/_tcp"
    );
    // `_T.H`: an empty non-terminal when H has a port of that protocol.
    assert_eq!(resolve_srv(&index, "_tcp.httpbin.bar.global."), "NODATA");
    assert_eq!(resolve_srv(&index, "_udp.httpbin.bar.global."), "NODATA");
    // Unknown ports, the wrong protocol, anything else under H: NXDOMAIN.
    assert_eq!(resolve_srv(&index, "_x._tcp.httpbin.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "_dns._tcp.httpbin.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "http._tcp.httpbin.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "_sctp.httpbin.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "_a._http._tcp.httpbin.bar.global."), "NXDOMAIN");
    // Only under served hosts.
    assert_eq!(resolve_srv(&index, "_http._tcp.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "_tcp.bar.global."), "NXDOMAIN");
    assert_eq!(resolve_srv(&index, "_http._tcp.global."), "NXDOMAIN");
    // Wildcard hosts get none; their names keep the wildcard rule.
    assert_eq!(resolve_srv(&index, "x.foo.global."), "240.0.0.9");
    assert_eq!(resolve_srv(&index, "_http._tcp.x.foo.global."), "240.0.0.9");
    // Under a wildcard, SRV names are exact and win; other names under H
    // (the unknown port, the `_T.H` non-terminal) keep the wildcard rule.
    assert_eq!(resolve_srv(&index, "_http._tcp.h.foo.global."), "SRV 80/_tcp");
    assert_eq!(resolve_srv(&index, "_x._tcp.h.foo.global."), "240.0.0.9");
    assert_eq!(resolve_srv(&index, "_tcp.h.foo.global."), "240.0.0.9");
    assert_eq!(resolve(&index, "_http._tcp.h.foo.global."), "NODATA");
}

#[test]
fn srv_ports_of_a_shared_host_are_the_union_oldest_first() {
    use super::testing::mk_with_ports;
    let index = mk_index();
    let b = mk_with_ports(
        mk_entry("foo/b", Some("2024-02-01T00:00:00Z"), &[("h.global", &["240.0.0.2"])]),
        &[("grpc", 9090, "GRPC"), ("http", 80, "HTTP")],
    );
    let a = mk_with_ports(
        mk_entry("foo/a", Some("2024-01-01T00:00:00Z"), &[("h.global", &["240.0.0.1"])]),
        &[("http", 80, "HTTP"), ("http", 8080, "UDP")],
    );
    index.apply(b.clone());
    assert_eq!(resolve_srv(&index, "h.global."), "host 9090/_tcp,80/_tcp");
    index.apply(a.clone());
    assert_eq!(resolve_srv(&index, "h.global."), "host 80/_tcp,8080/_udp,9090/_tcp");
    assert_eq!(resolve_srv(&index, "_http._tcp.h.global."), "SRV 80/_tcp");
    assert_eq!(resolve_srv(&index, "_http._udp.h.global."), "SRV 8080/_udp");
    // A port change alone is a change, and a deleted entry's ports go.
    let serial = index.table().serial;
    index.apply(mk_with_ports(a.clone(), &[("http", 81, "HTTP")]));
    assert_ne!(index.table().serial, serial);
    assert_eq!(resolve_srv(&index, "_http._tcp.h.global."), "SRV 81/_tcp,80/_tcp");
    assert_eq!(resolve_srv(&index, "_http._udp.h.global."), "NXDOMAIN");
    index.delete(&b.id);
    assert_eq!(resolve_srv(&index, "h.global."), "host 81/_tcp");
    index.apply(mk_with_ports(a, &[]));
    assert_eq!(resolve_srv(&index, "h.global."), "240.0.0.1");
    assert_eq!(resolve_srv(&index, "_http._tcp.h.global."), "NXDOMAIN");
}

/// One entry's port set is shared by its hosts' nodes, not copied.
#[test]
fn one_entry_shares_its_ports_with_every_host() {
    use super::testing::mk_with_ports;
    let index = mk_index();
    index.apply(mk_with_ports(
        mk_entry(
            "foo/a",
            None,
            &[("a.global", &["240.0.0.1"]), ("b.global", &["240.0.0.1"])],
        ),
        &[("http", 80, "HTTP")],
    ));
    let table = index.table();
    let (a, b) = (
        table.nodes.get("a.global").unwrap(),
        table.nodes.get("b.global").unwrap(),
    );
    assert!(Arc::ptr_eq(a.port_set().unwrap(), b.port_set().unwrap()));
}

#[test]
fn srv_ports_per_name_are_capped_so_the_answer_fits_one_tcp_message() {
    use super::testing::mk_with_ports;
    let index = mk_index();
    let long = format!("{}.global", vec!["x".repeat(60); 4].join("."));
    let names: Vec<String> = (0..512).map(|i| format!("p{i}")).collect();
    for (n, half) in names.chunks(256).enumerate() {
        let ports: Vec<(&str, u16, &str)> = half.iter().map(|p| (p.as_str(), 80, "TCP")).collect();
        let entry = mk_entry(
            &format!("foo/e{n}"),
            None,
            &[(long.as_str(), &["240.0.0.1"]), ("short.global", &["240.0.0.2"])],
        );
        index.apply(mk_with_ports(entry, &ports));
    }
    let table = index.table();
    let limit = port_limit(&long);
    assert!(limit < 256, "{limit}");
    assert_eq!(table.nodes.get(&long).unwrap().ports().len(), limit);
    assert_eq!(table.nodes.get("short.global").unwrap().ports().len(), 256);
    assert_eq!(table.nodes.get("short.global").unwrap().ports()[255].name, "p255");
}

/// An index serving `global` with reverse zones `240.in-addr.arpa` and
/// `fd00::/8`, and `default` as `--default-address`.
fn mk_reverse_index(default: Option<&str>) -> Index {
    let index = Index::new(
        vec!["global".into()],
        ZoneConfig::default(),
        default.map(|d| d.parse().unwrap()),
        &prometheus::Registry::new(),
    )
    .unwrap();
    let zones = ["240.in-addr.arpa", "fd00::/8"].map(|z| reverse::parse_zone(z).unwrap());
    index.with_reverse_zones(&zones).unwrap()
}

#[test]
fn ptr_for_ipv4_and_ipv6_addresses() {
    let index = mk_reverse_index(None);
    index.apply(mk_entry(
        "foo/a",
        None,
        &[
            ("httpbin.bar.global", &["240.0.0.2", "fd00::2"]),
            ("*.w.global", &["240.0.0.9"]),
        ],
    ));
    assert_eq!(resolve(&index, "2.0.0.240.in-addr.arpa."), "PTR httpbin.bar.global");
    assert_eq!(resolve(&index, "2.0.0.240.IN-ADDR.ARPA."), "PTR httpbin.bar.global");
    let v6 = reverse::reverse_name("fd00::2".parse().unwrap());
    assert_eq!(resolve(&index, &format!("{v6}.")), "PTR httpbin.bar.global");
    // The apex, empty non-terminals, unknown addresses and other names.
    assert_eq!(resolve(&index, "240.in-addr.arpa."), "APEX");
    assert_eq!(resolve(&index, "d.f.ip6.arpa."), "APEX");
    assert_eq!(resolve(&index, "0.240.in-addr.arpa."), "NODATA");
    assert_eq!(resolve(&index, "0.0.240.in-addr.arpa."), "NODATA");
    assert_eq!(resolve(&index, "0.0.d.f.ip6.arpa."), "NODATA");
    assert_eq!(resolve(&index, "3.0.0.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "1.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "02.0.0.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "x.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "1.d.f.ip6.arpa."), "NXDOMAIN");
    // Wildcards name no one host.
    assert_eq!(resolve(&index, "9.0.0.240.in-addr.arpa."), "NXDOMAIN");
    // Outside every zone.
    assert_eq!(resolve(&index, "2.0.0.10.in-addr.arpa."), "REFUSED");
    assert_eq!(resolve(&index, "in-addr.arpa."), "REFUSED");
    // Forward answers are unchanged.
    assert_eq!(resolve(&index, "httpbin.bar.global."), "240.0.0.2,fd00::2");
}

#[test]
fn shared_address_gets_every_host_in_conflict_order() {
    let index = mk_reverse_index(None);
    index.apply(mk_entry(
        "z/new",
        Some("2024-02-01T00:00:00Z"),
        &[("b.global", &["240.0.0.1"])],
    ));
    index.apply(mk_entry(
        "y/old",
        Some("2024-01-01T00:00:00Z"),
        &[("c.global", &["240.0.0.1"]), ("a.global", &["240.0.0.1"])],
    ));
    index.apply(mk_entry(
        "x/newer",
        Some("2024-03-01T00:00:00Z"),
        &[("c.global", &["240.0.0.1"])],
    ));
    assert_eq!(
        resolve(&index, "1.0.0.240.in-addr.arpa."),
        "PTR c.global,a.global,b.global"
    );
    index.delete(&mk_entry("y/old", None, &[]).id);
    assert_eq!(resolve(&index, "1.0.0.240.in-addr.arpa."), "PTR b.global,c.global");
    // Moving an entry's address moves its PTR.
    index.apply(mk_entry(
        "z/new",
        Some("2024-02-01T00:00:00Z"),
        &[("b.global", &["240.0.1.1"])],
    ));
    assert_eq!(resolve(&index, "1.0.0.240.in-addr.arpa."), "PTR c.global");
    assert_eq!(resolve(&index, "1.1.0.240.in-addr.arpa."), "PTR b.global");
    index.delete(&mk_entry("x/newer", None, &[]).id);
    assert_eq!(resolve(&index, "1.0.0.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "0.0.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(resolve(&index, "1.0.240.in-addr.arpa."), "NODATA");
    // A reset that drops everything drops every PTR.
    index.reset(&SourceId::Kube(None), Vec::new());
    assert_eq!(resolve(&index, "1.1.0.240.in-addr.arpa."), "NXDOMAIN");
    assert_eq!(index.table().ptr_records().count(), 0);
}

#[test]
fn default_address_gets_no_ptr() {
    let index = mk_reverse_index(Some("240.0.0.100"));
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.100"])]));
    assert_eq!(resolve(&index, "a.global."), "240.0.0.100");
    assert_eq!(resolve(&index, "100.0.0.240.in-addr.arpa."), "NXDOMAIN");
}

#[test]
fn without_reverse_zones_no_ptr_is_kept() {
    let index = mk_index();
    index.apply(mk_entry("foo/a", None, &[("a.global", &["240.0.0.1"])]));
    assert_eq!(index.table().ptr_records().count(), 0);
    assert_eq!(resolve(&index, "1.0.0.240.in-addr.arpa."), "REFUSED");
}

#[test]
fn ptr_hosts_per_address_are_capped_and_the_cap_is_counted() {
    let index = mk_reverse_index(None);
    let names: Vec<String> = (0..=reverse::MAX_PTR_PER_ADDRESS)
        .map(|i| format!("h{i:03}.global"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let created = format!("2024-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
        index.apply(mk_entry(
            &format!("ns/e{i:03}"),
            Some(&created),
            &[(name, &["240.0.0.7"])],
        ));
    }
    let table = index.table();
    let (_, hosts) = table.ptr_records().next().unwrap();
    assert_eq!(hosts.len(), reverse::MAX_PTR_PER_ADDRESS);
    assert_eq!(&*hosts[0], "h000.global");
    assert_eq!(
        (table.stats.ptr, table.stats.ptr_capped),
        (reverse::MAX_PTR_PER_ADDRESS, 1)
    );
    // Every host still resolves forward.
    assert_eq!(resolve(&index, "h128.global."), "240.0.0.7");
    index.delete(&mk_entry("ns/e000", None, &[]).id);
    let table = index.table();
    let (_, hosts) = table.ptr_records().next().unwrap();
    assert_eq!((&*hosts[0], &*hosts[127]), ("h001.global", "h128.global"));
    assert_eq!(
        (table.stats.ptr, table.stats.ptr_capped),
        (reverse::MAX_PTR_PER_ADDRESS, 0)
    );
}

/// Every node's count of names with records strictly below it, recounted
/// from the published table, and no node that is neither a name with
/// records nor above one.
fn assert_below_counts(index: &Index) {
    let table = index.table();
    let with_records: Vec<&str> = table
        .nodes
        .iter()
        .filter(|(_, n)| n.has_records())
        .map(|(k, _)| k)
        .collect();
    for (name, node) in table.nodes.iter() {
        let below = with_records
            .iter()
            .filter(|r| name::ancestors(r).any(|a| a == name))
            .count();
        assert_eq!(node.below() as usize, below, "{name}");
        assert!(node.has_records() || below > 0, "{name} left behind");
    }
}

/// Ancestor counts are applied once per batch: a batch that gives a name
/// records and its parent records too, one that empties the parent while
/// its child stays, and one that moves the child away, all end with the
/// counts a recount gives.
#[test]
fn names_below_are_counted_across_batches() {
    let index = mk_index();
    let source = SourceId::Kube(None);
    let child = mk_entry("ns/child", None, &[("a.b.c.global", &["240.0.0.1"])]);
    let parent = mk_entry("ns/parent", None, &[("b.c.global", &["240.0.0.2"])]);
    index.reset(&source, vec![child.clone(), parent.clone()]);
    assert_below_counts(&index);
    assert_eq!(resolve(&index, "b.c.global."), "240.0.0.2");
    assert_eq!(resolve(&index, "c.global."), "NODATA");
    // The parent loses its records, the child stays.
    index.reset(&source, vec![child.clone()]);
    assert_below_counts(&index);
    assert_eq!(resolve(&index, "b.c.global."), "NODATA");
    // The child moves elsewhere and the parent comes back, in one batch.
    let moved = mk_entry("ns/child", None, &[("x.y.global", &["240.0.0.1"])]);
    index.reset(&source, vec![moved, parent]);
    assert_below_counts(&index);
    assert_eq!(resolve(&index, "a.b.c.global."), "NXDOMAIN");
    assert_eq!(resolve(&index, "b.c.global."), "240.0.0.2");
    assert_eq!(resolve(&index, "y.global."), "NODATA");
    index.reset(&source, Vec::new());
    assert_below_counts(&index);
    assert!(index.table().nodes.iter().next().is_none(), "no node left behind");
}
