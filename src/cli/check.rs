//! `meshdns check`: loads manifests through the same path as `serve` (file
//! source → [`Index::convert`] → [`Index::reset`]) and prints what the index
//! then serves, as a table or as zone files. Nothing is worked out twice:
//! merging, conflicts and address limits are the index's.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use crate::index::{self, EntryId, Index, NameRecords, name};
use crate::serviceentry::printable;
use crate::source::file;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Zone,
}

/// Loads `files` into `index` (fresh, with the zones to check against)
/// as `serve` loads them, and prints what the index then serves; fails
/// when a file is missing or invalid.
pub fn run(files: &[PathBuf], output: Output, index: Index) -> anyhow::Result<ExitCode> {
    let mut report = String::new();
    let mut invalid = 0;
    let mut skipped: Vec<String> = Vec::new();
    // Named twice (`check d d/a.yaml`): loaded once, as `serve` does.
    let mut loaded = HashSet::new();

    for path in files {
        let found = file::expand(path).with_context(|| format!("cannot read {}", path.display()))?;
        if found.is_empty() {
            writeln!(
                report,
                "error: {}: no such file, or no *.yaml/*.yml in it",
                path.display()
            )?;
            invalid += 1;
        }
        for f in found {
            if !loaded.insert(f.clone()) {
                continue;
            }
            let text = file::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
            let entries = file::load_each(&f, &text, &index, |entry, left_out| {
                let who = who(&entry.id);
                skipped.extend(left_out.iter().map(|s| format!("{who}  {}: {}", s.item, s.reason)));
            });
            match entries {
                Ok(entries) => index.reset(&file::source_id(&f), entries),
                Err(e) => {
                    writeln!(report, "error: {}: {e}", f.display())?;
                    invalid += 1;
                }
            }
        }
    }

    match output {
        Output::Zone => print!("{}", zone_file(&index.table())),
        Output::Text => print!("{}", text_report(&index.names(), &skipped, invalid)),
    }
    eprint!("{report}");
    Ok(if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `namespace/name`, control characters escaped as in the logs.
fn who(id: &EntryId) -> String {
    format!("{}/{}", printable(&id.namespace), printable(&id.name))
}

/// The served records, each with the first entry (in conflict order) that
/// lists it, then what was skipped, the conflicts and the names over the
/// address limit.
fn text_report(names: &[NameRecords], skipped: &[String], invalid: usize) -> String {
    let mut out = String::new();
    let mut records: Vec<(String, &'static str, String, String)> = Vec::new();
    for n in names {
        let served =
            n.a.iter()
                .map(|&a| IpAddr::V4(a))
                .chain(n.aaaa.iter().map(|&a| IpAddr::V6(a)));
        for addr in served {
            let rtype = if addr.is_ipv4() { "A" } else { "AAAA" };
            let first = n.entries.iter().find(|(_, addrs)| addrs.contains(&addr));
            let source = first.map(|(id, _)| who(id)).unwrap_or_default();
            records.push((format!("{}.", n.name), rtype, addr.to_string(), source));
        }
        for (owner, port, id) in srv_records(&n.name, n.ports.iter().map(|(p, id)| (p, id))) {
            let data = format!("0 100 {} {}.", port.number, n.name);
            records.push((owner, "SRV", data, who(id)));
        }
    }
    records.sort();
    let width = records.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:width$}  {:4}  {:39}  SOURCE", "NAME", "TYPE", "DATA");
    for (name, rtype, data, who) in &records {
        let _ = writeln!(out, "{name:width$}  {rtype:4}  {data:39}  {who}");
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nskipped:");
        skipped.iter().for_each(|s| _ = writeln!(out, "  {s}"));
    }
    let conflicts: Vec<&NameRecords> = names.iter().filter(|n| n.entries.len() > 1).collect();
    if !conflicts.is_empty() {
        let _ = writeln!(out, "\nconflicts (served as the union, oldest entry first):");
        for n in &conflicts {
            let by: Vec<String> = n.entries.iter().map(|(id, _)| who(id)).collect();
            let _ = writeln!(out, "  {}.  defined by {}", n.name, by.join(", "));
        }
    }
    // What the table serves, against what the entries list.
    let capped: Vec<(&NameRecords, usize, usize)> = names
        .iter()
        .map(|n| {
            let listed: HashSet<IpAddr> = n.entries.iter().flat_map(|(_, addrs)| addrs.iter().copied()).collect();
            (n, listed.len(), n.a.len() + n.aaaa.len())
        })
        .filter(|(_, listed, served)| served < listed)
        .collect();
    if !capped.is_empty() {
        let _ = writeln!(
            out,
            "\nover the addresses one name may have (the first ones are served):"
        );
        for (n, listed, served) in &capped {
            let _ = writeln!(out, "  {}.  {listed} addresses, {served} served", n.name);
        }
    }
    let _ = writeln!(
        out,
        "\n{} records, {} skipped, {} conflicts, {} names over the address limit, {} invalid files",
        records.len(),
        skipped.len(),
        conflicts.len(),
        capped.len(),
        invalid
    );
    out
}

/// The table as RFC 1035 master files, one per zone, SOA serial 1.
fn zone_file(table: &index::Table) -> String {
    let c = &table.config;
    let mut out = String::new();
    for zone in table.zones.iter() {
        let _ = writeln!(out, "$ORIGIN {}\n$TTL {}", zone.name, c.ttl);
        let _ = writeln!(
            out,
            "@ {} IN SOA {} {} 1 {} {} {} {}\n@ {} IN NS {}",
            c.ttl,
            c.nameserver,
            c.hostmaster,
            index::SOA_REFRESH,
            index::SOA_RETRY,
            index::SOA_EXPIRE,
            c.negative_ttl,
            c.ttl,
            c.nameserver
        );
        // A zone nested in this one, with no served zone between them, is
        // delegated to the same server: the names between are then empty
        // non-terminals here, as meshdns answers them.
        for inner in table
            .zones
            .iter()
            .filter(|z| closest_enclosing(&table.zones, z).is_some_and(|o| o.key == zone.key))
        {
            let _ = writeln!(out, "{}. {} IN NS {}", inner.key, c.ttl, c.nameserver);
        }
        if zone.reverse {
            // PTR of the addresses this zone (and no zone nested in it) holds.
            for (addr, hosts) in table.ptr_records() {
                let rev = index::reverse::reverse_name(*addr);
                let inner = |z: &index::Zone| z.key.len() > zone.key.len() && name::in_zone(&rev, &z.key);
                if name::in_zone(&rev, &zone.key) && !table.zones.iter().any(inner) {
                    hosts
                        .iter()
                        .for_each(|h| _ = writeln!(out, "{rev}. {} IN PTR {h}.", c.ttl));
                }
            }
            continue;
        }
        let own: Vec<_> = table
            .records()
            .into_iter()
            .filter(|(n, _)| {
                name::in_zone(n, &zone.key)
                    && !table
                        .zones
                        .iter()
                        .any(|z| z.key.len() > zone.key.len() && name::in_zone(n, &z.key))
            })
            .collect();
        for (n, node) in own {
            node.v4()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN A {a}", c.ttl));
            node.v6()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN AAAA {a}", c.ttl));
            for (owner, port, ()) in srv_records(n, node.ports().iter().map(|p| (p, ()))) {
                let _ = writeln!(out, "{owner} {} IN SRV 0 100 {} {n}.", c.ttl, port.number);
            }
        }
    }
    out
}

/// The SRV owners of `host`'s ports as meshdns answers them: the host
/// itself for each port (as CoreDNS answers a Service name), then
/// `_port._tcp|_udp.<host>`, each with its port and `tag`. An owner longer
/// than a name can be is left out: no query can ask for it.
fn srv_records<'p, T>(
    host: &str,
    ports: impl Iterator<Item = (&'p index::SrvPort, T)> + Clone,
) -> impl Iterator<Item = (String, &'p index::SrvPort, T)> {
    let bare = ports.clone().map(move |(p, t)| (format!("{host}."), p, t));
    let named = ports
        .map(move |(p, t)| (format!("_{}.{}.{host}.", p.name, p.proto_label()), p, t))
        .filter(|(owner, _, _)| owner.len() <= name::MAX_NAME_LEN + 1);
    bare.chain(named)
}

/// The most specific served zone that strictly contains `inner`.
fn closest_enclosing<'z>(zones: &'z [index::Zone], inner: &index::Zone) -> Option<&'z index::Zone> {
    zones
        .iter()
        .filter(|z| z.key != inner.key && name::in_zone(&inner.key, &z.key))
        .max_by_key(|z| z.key.len())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::index::testing::{mk_entry, mk_index, mk_index_with};

    /// `check`'s text for one file holding `text`.
    fn check_text(text: &str) -> String {
        let index = mk_index();
        let file = Path::new("/etc/meshdns/se.yaml");
        let mut skipped = Vec::new();
        let entries = file::load_each(file, text, &index, |entry, left_out| {
            skipped.extend(left_out.iter().map(|s| format!("{}  {}", who(&entry.id), s.item)));
        })
        .unwrap();
        index.reset(&file::source_id(file), entries);
        text_report(&index.names(), &skipped, 0)
    }

    fn mk_manifest(name: &str, host: &str, addr: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: foo}}\n\
             spec: {{hosts: [{host}], addresses: [{addr}], resolution: STATIC}}\n"
        )
    }

    #[test]
    fn an_object_twice_is_one_record_and_no_conflict() {
        let one = mk_manifest("a", "httpbin.bar.global", "240.0.0.1");
        let out = check_text(&format!("{one}---\n{one}"));
        assert_eq!(out.matches("240.0.0.1").count(), 1, "{out}");
        assert!(!out.contains("defined by"), "{out}");
        assert!(out.contains("1 records, 0 skipped, 0 conflicts"), "{out}");
    }

    #[test]
    fn two_entries_on_one_name_are_one_conflict_served_as_the_union() {
        let a = mk_manifest("a", "httpbin.bar.global", "240.0.0.1");
        let b = mk_manifest("b", "httpbin.bar.global", "240.0.0.2");
        let out = check_text(&format!("{a}---\n{b}"));
        assert!(out.contains("httpbin.bar.global.  defined by foo/a, foo/b"), "{out}");
        assert!(out.contains("2 records, 0 skipped, 1 conflicts"), "{out}");
        let sources: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("240.0.0."))
            .map(|l| l.split_whitespace().last().unwrap())
            .collect();
        assert_eq!(sources, ["foo/a", "foo/b"], "{out}");
    }

    #[test]
    fn zone_output_has_one_file_per_zone_and_delegates_nested_zones() {
        let index = mk_index_with(
            &["global", "mesh.internal", "in.global", "deep.in.global"],
            index::ZoneConfig::default(),
        );
        index.apply(mk_entry(
            "foo/a",
            None,
            &[
                ("a.global", &["240.0.0.1"]),
                ("a.mesh.internal", &["240.0.0.2"]),
                ("b.in.global", &["240.0.0.3"]),
                ("c.deep.in.global", &["240.0.0.4"]),
            ],
        ));
        let out = zone_file(&index.table());
        // Each zone's lines, by $ORIGIN.
        let zones: Vec<(&str, Vec<&str>)> = out
            .split("$ORIGIN ")
            .skip(1)
            .map(|z| {
                let mut lines = z.lines();
                let origin = lines.next().unwrap();
                (origin, lines.filter(|l| !l.starts_with(['$', '@'])).collect())
            })
            .collect();
        assert_eq!(
            zones,
            [
                ("deep.in.global.", vec!["c.deep.in.global. 30 IN A 240.0.0.4"]),
                (
                    "in.global.",
                    vec!["deep.in.global. 30 IN NS localhost.", "b.in.global. 30 IN A 240.0.0.3"]
                ),
                ("mesh.internal.", vec!["a.mesh.internal. 30 IN A 240.0.0.2"]),
                (
                    "global.",
                    vec!["in.global. 30 IN NS localhost.", "a.global. 30 IN A 240.0.0.1"]
                ),
            ],
            "{out}"
        );
    }

    #[test]
    fn srv_records_in_text_and_zone_output() {
        let manifest = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: foo}\n\
             spec: {hosts: [Web.bar.global, '*.w.global'], addresses: [240.0.0.1], resolution: STATIC, \
             ports: [{name: HTTP, number: 80, protocol: HTTP}, {name: dns, number: 53, protocol: UDP}, {name: a.b, number: 1}]}\n";
        let out = check_text(manifest);
        for line in [
            "_dns._udp.web.bar.global.   SRV   0 100 53 web.bar.global.",
            "_http._tcp.web.bar.global.  SRV   0 100 80 web.bar.global.",
            "web.bar.global.             SRV   0 100 80 web.bar.global.",
            "foo/a  port a.b",
            "6 records, 1 skipped",
        ] {
            assert!(out.contains(line), "no {line:?} in:\n{out}");
        }
        assert!(!out.contains("_http._tcp.*"), "no SRV for a wildcard host:\n{out}");

        let index = mk_index();
        let file = Path::new("/etc/meshdns/se.yaml");
        index.reset(&file::source_id(file), file::load(file, manifest, &index).unwrap());
        let zone = zone_file(&index.table());
        let srv: Vec<&str> = zone.lines().filter(|l| l.contains(" SRV ")).collect();
        assert_eq!(
            srv,
            [
                "web.bar.global. 30 IN SRV 0 100 80 web.bar.global.",
                "web.bar.global. 30 IN SRV 0 100 53 web.bar.global.",
                "_http._tcp.web.bar.global. 30 IN SRV 0 100 80 web.bar.global.",
                "_dns._udp.web.bar.global. 30 IN SRV 0 100 53 web.bar.global.",
            ],
            "{zone}"
        );
    }

    #[test]
    fn zone_output_writes_reverse_zones_with_ptr() {
        let zones = ["240.0.0.0/8", "0.240.in-addr.arpa", "fd00::/8"].map(|z| index::reverse::parse_zone(z).unwrap());
        let index = mk_index().with_reverse_zones(&zones).unwrap();
        index.apply(mk_entry(
            "foo/a",
            None,
            &[
                ("a.global", &["240.0.0.1", "240.1.0.1", "fd00::1"]),
                ("*.w.global", &["240.0.0.2"]),
            ],
        ));
        index.apply(mk_entry("foo/b", None, &[("b.global", &["240.0.0.1"])]));
        let out = zone_file(&index.table());
        let zones: Vec<(&str, Vec<&str>)> = out
            .split("$ORIGIN ")
            .skip(1)
            .map(|z| {
                let mut lines = z.lines();
                let origin = lines.next().unwrap();
                (
                    origin,
                    lines.filter(|l| l.contains(" PTR ") || l.contains(" NS ")).collect(),
                )
            })
            .collect();
        assert_eq!(
            zones,
            [
                (
                    "0.240.in-addr.arpa.",
                    vec![
                        "@ 30 IN NS localhost.",
                        "1.0.0.240.in-addr.arpa. 30 IN PTR a.global.",
                        "1.0.0.240.in-addr.arpa. 30 IN PTR b.global.",
                    ]
                ),
                (
                    "d.f.ip6.arpa.",
                    vec![
                        "@ 30 IN NS localhost.",
                        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR a.global.",
                    ]
                ),
                (
                    "240.in-addr.arpa.",
                    vec![
                        "@ 30 IN NS localhost.",
                        "0.240.in-addr.arpa. 30 IN NS localhost.",
                        "1.0.1.240.in-addr.arpa. 30 IN PTR a.global.",
                    ]
                ),
                ("global.", vec!["@ 30 IN NS localhost."]),
            ],
            "{out}"
        );
    }
}
