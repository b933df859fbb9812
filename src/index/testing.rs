//! Builders for tests and benches, one set for all of them (`mk_*`): an
//! index with its metrics in a registry of its own, and entries as a
//! source would hand them over. Not part of the API.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Entry, EntryId, HostAddrs, Index, Lookup, Node, SourceId, Table, ZoneConfig};

/// An index for `zones` with `config`, its metrics registered nowhere else.
pub fn mk_index_with(zones: &[&str], config: ZoneConfig) -> Index {
    let zones = zones.iter().map(|z| Arc::from(*z)).collect();
    Index::new(zones, config, None, &prometheus::Registry::new()).expect("valid zones")
}

/// An index serving `global` with the `meshdns serve` defaults.
pub fn mk_index() -> Index {
    mk_index_with(&["global"], ZoneConfig::default())
}

/// Entry `namespace/name` of the Kubernetes source (all namespaces), with
/// each host's addresses written out, e.g. `("a.ns.global", &["240.0.0.1"])`.
pub fn mk_entry(name: &str, created: Option<&str>, hosts: &[(&str, &[&str])]) -> Entry {
    mk_entry_in(SourceId::Kube(None), name, created, hosts)
}

/// [`mk_entry`] from `source`.
pub fn mk_entry_in(source: SourceId, name: &str, created: Option<&str>, hosts: &[(&str, &[&str])]) -> Entry {
    let (namespace, name) = name.split_once('/').expect("namespace/name");
    Entry {
        id: EntryId {
            source,
            namespace: namespace.into(),
            name: name.into(),
        },
        created: created.map(Arc::from),
        hosts: hosts
            .iter()
            .map(|(h, addrs)| HostAddrs {
                name: (*h).into(),
                addrs: addrs.iter().map(|a| a.parse().expect("an IP address")).collect(),
            })
            .collect(),
        ports: None,
    }
}

/// Entry `namespace/name` of the Kubernetes source serving one `host` at
/// `addrs`: for entries made by the thousand, with nothing to parse.
pub fn mk_host_entry(namespace: &str, name: &str, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Entry {
    Entry {
        id: EntryId {
            source: SourceId::Kube(None),
            namespace: namespace.into(),
            name: name.into(),
        },
        created: None,
        hosts: smallvec::smallvec![HostAddrs {
            name: host.into(),
            addrs: addrs.into_iter().collect(),
        }],
        ports: None,
    }
}

/// `entry` with SRV `ports`, each `(name, number, protocol)` as a
/// ServiceEntry lists it (already valid: convert's checks are not run).
pub fn mk_with_ports(mut entry: Entry, ports: &[(&str, u16, &str)]) -> Entry {
    let ports: Vec<super::SrvPort> = ports
        .iter()
        .map(|(name, number, protocol)| super::SrvPort {
            name: name.to_ascii_lowercase().into(),
            number: *number,
            udp: protocol.eq_ignore_ascii_case("UDP"),
        })
        .collect();
    entry.ports = (!ports.is_empty()).then(|| Arc::new(super::PortSet(ports.into())));
    entry
}

/// Every node of `table`, empty non-terminals included, sorted by name:
/// two tables serve the same answers exactly when these are equal (and
/// their zones and config are). For tests that compare a table built step
/// by step with one built from scratch.
pub fn all_nodes(table: &Table) -> Vec<(String, Node)> {
    let mut nodes: Vec<_> = table.nodes.iter().map(|(k, n)| (k.to_string(), n.clone())).collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes
}

/// The addresses `qname` resolves to in `index` (comma-separated, IPv4
/// first), or the negative outcome: `REFUSED`, `APEX`, `NODATA`,
/// `NXDOMAIN`, or `PTR` and the hosts.
pub fn resolve(index: &Index, qname: &str) -> String {
    let table = index.table();
    match table.lookup(&hickory_proto::rr::Name::from_ascii(qname).unwrap()) {
        Lookup::OutOfZone => "REFUSED".into(),
        Lookup::Apex(_) => "APEX".into(),
        Lookup::NoData(_) => "NODATA".into(),
        Lookup::NxDomain(_) => "NXDOMAIN".into(),
        Lookup::Ptr(_, hosts) => format!("PTR {}", hosts.join(",")),
        Lookup::Records(_, node) => {
            let all: Vec<String> = node
                .v4()
                .iter()
                .map(|a| a.to_string())
                .chain(node.v6().iter().map(|a| a.to_string()))
                .collect();
            all.join(",")
        }
    }
}
