//! ServiceEntry → records: which hosts are served and with which addresses,
//! and which ports become SRV records under them. Pure; every host, address
//! or port left out comes back with its reason, so
//! `meshdns check`, the logs and the metrics all tell the same story.

use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use smallvec::SmallVec;

use super::name::{MAX_LABEL_LEN, NameError, in_zone, is_key_char, normalize_host};
use crate::serviceentry::ServiceEntry;

/// More hosts or addresses than any real entry carries; the rest is skipped
/// so one hostile object cannot blow up the table or an answer.
pub const MAX_HOSTS_PER_ENTRY: usize = 1000;
pub const MAX_ADDRESSES_PER_ENTRY: usize = 256;
/// Records (hosts × addresses) from one entry: `spec.addresses` apply to
/// every host, so the two limits above would multiply to 256,000.
pub const MAX_RECORDS_PER_ENTRY: usize = 4096;
/// Ports from one entry: each host's bare SRV answer carries them all.
pub const MAX_PORTS_PER_ENTRY: usize = 256;

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Normalized zone names (`global`).
    pub zones: Vec<Arc<str>>,
    /// For entries with neither `spec.addresses` nor `status.addresses`
    /// (istio-coredns-plugin's `--default-address`).
    pub default_address: Option<IpAddr>,
    /// Serve only entries exported to every namespace (`exportTo` unset or
    /// containing `*`): a DNS server cannot tell which namespace asks.
    pub exported_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversion {
    /// Each name once, even when the entry repeats a host.
    pub hosts: SmallVec<[HostAddrs; 1]>,
    /// The entry's ports, for SRV under each non-wildcard host; `None`
    /// when it has none that can be served.
    pub ports: Option<Arc<PortSet>>,
    pub skipped: Vec<Skipped>,
}

/// One port as SRV serves it: `_name._tcp|_udp.<host>. SRV 0 100 number
/// <host>.`. `name` is lower-case and a valid label after its `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SrvPort {
    pub name: compact_str::CompactString,
    pub number: u16,
    pub udp: bool,
}

impl SrvPort {
    /// `_tcp` or `_udp`.
    pub fn proto_label(&self) -> &'static str {
        if self.udp { "_udp" } else { "_tcp" }
    }

    /// Whether this port is the one `_name._proto` asks for (labels as
    /// they came on the wire, any case).
    pub fn matches(&self, name: &[u8], proto: &[u8]) -> bool {
        name.len() == self.name.len() + 1
            && name[0] == b'_'
            && name[1..].eq_ignore_ascii_case(self.name.as_bytes())
            && proto.eq_ignore_ascii_case(self.proto_label().as_bytes())
    }
}

/// Ports in order, without repeats: one entry's, or the union of the
/// entries sharing a host. Behind one thin `Arc` that every host of the
/// entry and the table's nodes share, so a name costs no more for them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortSet(pub Box<[SrvPort]>);

/// One served name and its addresses, in the entry's order, without repeats.
/// Inline for the common single address: the index keeps these.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostAddrs {
    pub name: CompactString,
    pub addrs: SmallVec<[IpAddr; 1]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The host or address left out, or `*` for the whole entry.
    pub item: String,
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SkipReason {
    #[error("resolution is NONE (Istio's default when unset); set resolution: DNS or STATIC to serve it")]
    ResolutionNone,
    #[error("exportTo does not include \"*\" (--exported-only serves only entries every namespace may see)")]
    NotExported,
    #[error("not under a served zone")]
    OutOfZone,
    #[error("is a zone apex; only names below it are served")]
    ZoneApex,
    #[error("invalid name: {0}")]
    InvalidName(NameError),
    #[error("not an IP address or CIDR")]
    InvalidAddress,
    #[error("CIDR /{0} is a range, not one host (only /32 and /128 are served)")]
    WideCidr(u8),
    #[error("no address: neither spec.addresses, status.addresses nor --default-address")]
    NoAddress,
    #[error("more than {MAX_HOSTS_PER_ENTRY} hosts in one entry")]
    TooManyHosts,
    #[error("more than {MAX_ADDRESSES_PER_ENTRY} addresses in one entry")]
    TooManyAddresses,
    #[error("more than {MAX_RECORDS_PER_ENTRY} records (hosts × addresses) in one entry")]
    TooManyRecords,
    #[error(
        "port name is not a valid DNS label after '_' (letters, digits, '-', '_'; at most 62 characters); no SRV for it"
    )]
    InvalidPortName,
    #[error("port name used by another port of the same entry; no SRV for it")]
    DuplicatePortName,
    #[error("port number is not in 1..=65535; no SRV for it")]
    InvalidPortNumber,
    #[error("more than {MAX_PORTS_PER_ENTRY} ports in one entry; no SRV for the rest")]
    TooManyPorts,
}

impl SkipReason {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ResolutionNone => "resolution_none",
            Self::NotExported => "not_exported",
            Self::OutOfZone => "out_of_zone",
            Self::ZoneApex => "zone_apex",
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidAddress => "invalid_address",
            Self::WideCidr(_) => "wide_cidr",
            Self::NoAddress => "no_address",
            Self::TooManyHosts => "too_many_hosts",
            Self::TooManyAddresses => "too_many_addresses",
            Self::TooManyRecords => "too_many_records",
            Self::InvalidPortName => "invalid_port_name",
            Self::DuplicatePortName => "duplicate_port_name",
            Self::InvalidPortNumber => "invalid_port_number",
            Self::TooManyPorts => "too_many_ports",
        }
    }
}

pub fn convert(se: &ServiceEntry, opts: &ConvertOptions) -> Conversion {
    let mut out = Conversion::default();
    let resolution = se.spec.resolution.as_deref().unwrap_or("NONE");
    if resolution.eq_ignore_ascii_case("NONE") {
        out.skip("*", SkipReason::ResolutionNone);
        return out;
    }
    if opts.exported_only && !se.exported_to_all() {
        out.skip("*", SkipReason::NotExported);
        return out;
    }

    let spec_addrs = parse_addresses(se.spec.addresses.iter().map(String::as_str), &mut out);
    let mut records = 0;
    for (i, host) in se.spec.hosts.iter().enumerate() {
        if i == MAX_HOSTS_PER_ENTRY {
            let rest = se.spec.hosts.len() - i;
            out.skip(&format!("{rest} more hosts"), SkipReason::TooManyHosts);
            break;
        }
        let name = match normalize_host(host) {
            Ok(name) => name,
            Err(e) => {
                out.skip(host, SkipReason::InvalidName(e));
                continue;
            }
        };
        let Some(zone) = opts.zones.iter().filter(|z| in_zone(&name, z)).max_by_key(|z| z.len()) else {
            out.skip(host, SkipReason::OutOfZone);
            continue;
        };
        if name == *zone {
            out.skip(host, SkipReason::ZoneApex);
            continue;
        }
        let addrs = if !se.spec.addresses.is_empty() {
            spec_addrs.clone()
        } else if let Some(status) = allocated(se, &name, &mut out) {
            status
        } else {
            opts.default_address.into_iter().collect()
        };
        if addrs.is_empty() {
            out.skip(host, SkipReason::NoAddress);
            continue;
        }
        records += addrs.len();
        if records > MAX_RECORDS_PER_ENTRY {
            let rest = se.spec.hosts.len() - i;
            out.skip(&format!("{rest} more hosts"), SkipReason::TooManyRecords);
            break;
        }
        add_host(&mut out.hosts, HostAddrs { name, addrs });
    }
    // Only for an entry that serves a host: there is nothing else to hang
    // SRV records on, and the skips would be noise.
    if !out.hosts.is_empty() {
        out.ports = ports(se, &mut out);
    }
    out
}

/// The entry's ports that SRV can serve, in its order; each one left out
/// is skipped with its reason (shown as `port <name>`).
fn ports(se: &ServiceEntry, out: &mut Conversion) -> Option<Arc<PortSet>> {
    let mut ports: Vec<SrvPort> = Vec::new();
    for (i, port) in se.spec.ports.iter().enumerate() {
        let item = format!("port {}", port.name);
        if i == MAX_PORTS_PER_ENTRY {
            out.skip(
                &format!("{} more ports", se.spec.ports.len() - i),
                SkipReason::TooManyPorts,
            );
            break;
        }
        let name = &port.name;
        if name.is_empty() || name.len() > MAX_LABEL_LEN - 1 || !name.chars().all(is_key_char) {
            out.skip(&item, SkipReason::InvalidPortName);
            continue;
        }
        let Some(number) = port.number.and_then(|n| u16::try_from(n).ok()).filter(|&n| n > 0) else {
            out.skip(&item, SkipReason::InvalidPortNumber);
            continue;
        };
        // Names are unique in an entry (Istio requires it), whatever the
        // protocol: a repeat is a mistake, so it is reported, not merged.
        if ports.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            out.skip(&item, SkipReason::DuplicatePortName);
            continue;
        }
        let udp = port.protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("UDP"));
        ports.push(SrvPort {
            name: name.to_ascii_lowercase().into(),
            number,
            udp,
        });
    }
    (!ports.is_empty()).then(|| Arc::new(PortSet(ports.into())))
}

/// Adds `host`, or, when its name is already there (`a.global` and
/// `A.global`), the addresses that name lacks: each name once, addresses in
/// order without repeats.
pub(super) fn add_host(hosts: &mut SmallVec<[HostAddrs; 1]>, host: HostAddrs) {
    match hosts.iter_mut().find(|h| h.name == host.name) {
        Some(same) => {
            for addr in host.addrs {
                if !same.addrs.contains(&addr) {
                    same.addrs.push(addr);
                }
            }
        }
        None => hosts.push(host),
    }
}

/// Istio's auto-allocated `status.addresses` for `host`; `None` when there
/// are none, so the caller falls back to `--default-address`.
fn allocated(se: &ServiceEntry, host: &str, out: &mut Conversion) -> Option<SmallVec<[IpAddr; 1]>> {
    let status = se.status.as_ref()?;
    let values = status
        .addresses
        .iter()
        .filter(|a| {
            a.host
                .as_deref()
                .is_none_or(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
        })
        .map(|a| a.value.as_str());
    let addrs = parse_addresses(values, out);
    (!addrs.is_empty()).then_some(addrs)
}

fn parse_addresses<'a>(values: impl Iterator<Item = &'a str>, out: &mut Conversion) -> SmallVec<[IpAddr; 1]> {
    let mut addrs = SmallVec::new();
    for (i, value) in values.enumerate() {
        if i == MAX_ADDRESSES_PER_ENTRY {
            out.skip(value, SkipReason::TooManyAddresses);
            break;
        }
        match parse_address(value) {
            Ok(ip) if !addrs.contains(&ip) => addrs.push(ip),
            Ok(_) => {}
            Err(reason) => out.skip(value, reason),
        }
    }
    addrs
}

/// An address, or a CIDR naming exactly one host (`/32`, `/128`).
pub fn parse_address(value: &str) -> Result<IpAddr, SkipReason> {
    let value = value.trim();
    let (ip, prefix) = match value.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (value, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| SkipReason::InvalidAddress)?;
    if let Some(prefix) = prefix {
        // Digits only: `u8::from_str` would also take `+32`.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SkipReason::InvalidAddress);
        }
        let prefix: u8 = prefix.parse().map_err(|_| SkipReason::InvalidAddress)?;
        let host_len = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > host_len {
            return Err(SkipReason::InvalidAddress);
        }
        if prefix != host_len {
            return Err(SkipReason::WideCidr(prefix));
        }
    }
    Ok(ip)
}

impl Conversion {
    fn skip(&mut self, item: &str, reason: SkipReason) {
        self.skipped.push(Skipped {
            item: crate::serviceentry::printable(item).into_owned(),
            reason,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::serviceentry::{Metadata, Spec, Status, StatusAddress};

    pub fn mk_se(ns: &str, name: &str, hosts: &[&str], addrs: &[&str]) -> ServiceEntry {
        ServiceEntry {
            metadata: Metadata {
                name: name.into(),
                namespace: Some(ns.into()),
                creation_timestamp: None,
            },
            spec: Spec {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                addresses: addrs.iter().map(|a| a.to_string()).collect(),
                resolution: Some("DNS".into()),
                export_to: Vec::new(),
                ports: Vec::new(),
            },
            status: None,
        }
    }

    pub fn mk_opts() -> ConvertOptions {
        ConvertOptions {
            zones: vec!["global".into()],
            default_address: None,
            exported_only: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reasons(c: &Conversion) -> Vec<(&str, &str)> {
        c.skipped.iter().map(|s| (s.item.as_str(), s.reason.label())).collect()
    }

    #[test]
    fn v4_and_v6_addresses_and_host_cidrs() {
        let se = mk_se(
            "foo",
            "a",
            &["httpbin.bar.global"],
            &["240.0.0.2", "2001:db8::2/128", "240.0.0.3/32"],
        );
        let c = convert(&se, &mk_opts());
        assert_eq!(
            c.hosts[..],
            [HostAddrs {
                name: "httpbin.bar.global".into(),
                addrs: smallvec::smallvec![ip("240.0.0.2"), ip("2001:db8::2"), ip("240.0.0.3")],
            }]
        );
        assert!(c.skipped.is_empty());
    }

    #[test]
    fn wide_cidrs_and_garbage_are_skipped_rest_served() {
        let se = mk_se(
            "foo",
            "a",
            &["a.global"],
            &[
                "10.0.0.0/24",
                "2001:db8::/64",
                "nope",
                "1.2.3.4/33",
                "1.2.3.5/+32",
                "1.2.3.6/",
                "240.0.0.9",
            ],
        );
        let c = convert(&se, &mk_opts());
        assert_eq!(c.hosts[0].addrs[..], [ip("240.0.0.9")]);
        assert_eq!(
            reasons(&c),
            [
                ("10.0.0.0/24", "wide_cidr"),
                ("2001:db8::/64", "wide_cidr"),
                ("nope", "invalid_address"),
                ("1.2.3.4/33", "invalid_address"),
                ("1.2.3.5/+32", "invalid_address"),
                ("1.2.3.6/", "invalid_address")
            ]
        );
    }

    #[test]
    fn hosts_outside_zones_and_invalid_hosts_are_skipped() {
        let long = format!("{}.global", "x".repeat(64));
        let se = mk_se(
            "foo",
            "a",
            &[
                "ok.global",
                "api.example.com",
                "global",
                &long,
                "bad host.global",
                "Mixed.Global.",
            ],
            &["240.0.0.1"],
        );
        let c = convert(&se, &mk_opts());
        let names: Vec<_> = c.hosts.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["ok.global", "mixed.global"]);
        assert_eq!(
            reasons(&c).iter().map(|r| r.1).collect::<Vec<_>>(),
            ["out_of_zone", "zone_apex", "invalid_name", "invalid_name"]
        );
    }

    #[test]
    fn most_specific_zone_wins_for_apex_check() {
        let opts = ConvertOptions {
            zones: vec!["global".into(), "mesh.global".into()],
            ..mk_opts()
        };
        let c = convert(
            &mk_se("foo", "a", &["mesh.global", "x.mesh.global"], &["240.0.0.1"]),
            &opts,
        );
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(reasons(&c), [("mesh.global", "zone_apex")]);
    }

    #[test]
    fn resolution_none_or_unset_is_not_served() {
        let mut se = mk_se("foo", "a", &["a.global"], &["240.0.0.1"]);
        se.spec.resolution = Some("NONE".into());
        assert_eq!(reasons(&convert(&se, &mk_opts())), [("*", "resolution_none")]);
        se.spec.resolution = None;
        assert!(convert(&se, &mk_opts()).hosts.is_empty());
        se.spec.resolution = Some("STATIC".into());
        assert_eq!(convert(&se, &mk_opts()).hosts.len(), 1);
    }

    #[test]
    fn exported_only_serves_entries_every_namespace_sees() {
        let exported = ConvertOptions {
            exported_only: true,
            ..mk_opts()
        };
        let mut se = mk_se("foo", "a", &["a.global"], &["240.0.0.1"]);
        for (export_to, served) in [
            (&[][..], true),
            (&["*"][..], true),
            (&[".", "*"][..], true),
            (&["bar", "*"][..], true),
            (&["."][..], false),
            (&["~"][..], false),
            (&["foo"][..], false),
            (&["foo", "bar"][..], false),
            (&["*.foo"][..], false),
        ] {
            se.spec.export_to = export_to.iter().map(|s| s.to_string()).collect();
            let c = convert(&se, &exported);
            assert_eq!(c.hosts.len(), usize::from(served), "{export_to:?}");
            let want: &[(&str, &str)] = if served { &[] } else { &[("*", "not_exported")] };
            assert_eq!(reasons(&c), want, "{export_to:?}");
            // Without --exported-only, exportTo changes nothing.
            let c = convert(&se, &mk_opts());
            assert!(c.hosts.len() == 1 && c.skipped.is_empty(), "{export_to:?}");
        }
    }

    #[test]
    fn a_repeated_host_is_served_once() {
        let se = mk_se("foo", "a", &["a.global", "b.global", "A.Global."], &["240.0.0.1"]);
        let c = convert(&se, &mk_opts());
        let got: Vec<(&str, &[IpAddr])> = c.hosts.iter().map(|h| (&*h.name, &h.addrs[..])).collect();
        let one = [ip("240.0.0.1")];
        assert_eq!(got, [("a.global", &one[..]), ("b.global", &one[..])]);
    }

    #[test]
    fn status_addresses_then_default_address() {
        let mut se = mk_se("foo", "a", &["a.global", "b.global", "c.global"], &[]);
        se.status = Some(Status {
            addresses: vec![
                StatusAddress {
                    value: "240.240.0.1".into(),
                    host: Some("A.global".into()),
                },
                StatusAddress {
                    value: "2001:db8::1".into(),
                    host: Some("a.global".into()),
                },
                StatusAddress {
                    value: "240.240.0.2".into(),
                    host: Some("b.global".into()),
                },
            ],
        });
        let c = convert(&se, &mk_opts());
        assert_eq!(c.hosts[0].addrs[..], [ip("240.240.0.1"), ip("2001:db8::1")]);
        assert_eq!(c.hosts[1].addrs[..], [ip("240.240.0.2")]);
        assert_eq!(reasons(&c), [("c.global", "no_address")]);

        let opts = ConvertOptions {
            default_address: Some(ip("240.0.0.100")),
            ..mk_opts()
        };
        let c = convert(&se, &opts);
        assert_eq!(c.hosts[2].addrs[..], [ip("240.0.0.100")]);
        // spec.addresses, when present, win over both.
        se.spec.addresses = vec!["240.0.0.7".into()];
        assert!(
            convert(&se, &opts)
                .hosts
                .iter()
                .all(|h| h.addrs[..] == [ip("240.0.0.7")])
        );
    }

    fn mk_big_se(hosts: usize, addrs: usize) -> ServiceEntry {
        let hosts: Vec<String> = (0..hosts).map(|i| format!("h{i}.global")).collect();
        let addrs: Vec<String> = (0..addrs).map(|i| format!("240.0.{}.{}", i / 256, i % 256)).collect();
        mk_se(
            "foo",
            "a",
            &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
            &addrs.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn absurd_counts_are_capped_not_fatal() {
        let c = convert(&mk_big_se(MAX_HOSTS_PER_ENTRY + 5, 1), &mk_opts());
        assert_eq!(c.hosts.len(), MAX_HOSTS_PER_ENTRY);
        assert_eq!(reasons(&c), [("5 more hosts", "too_many_hosts")]);

        let c = convert(&mk_big_se(3, MAX_ADDRESSES_PER_ENTRY + 5), &mk_opts());
        assert_eq!(c.hosts[0].addrs.len(), MAX_ADDRESSES_PER_ENTRY);
        assert_eq!(
            reasons(&c).iter().map(|r| r.1).collect::<Vec<_>>(),
            ["too_many_addresses"]
        );
    }

    #[test]
    fn hosts_times_addresses_is_capped() {
        // 1000 hosts sharing 256 addresses: a 20 KB object, 256,000 records uncapped.
        let c = convert(&mk_big_se(MAX_HOSTS_PER_ENTRY, MAX_ADDRESSES_PER_ENTRY), &mk_opts());
        let served = MAX_RECORDS_PER_ENTRY / MAX_ADDRESSES_PER_ENTRY;
        assert_eq!(c.hosts.len(), served);
        assert_eq!(
            c.hosts.iter().map(|h| h.addrs.len()).sum::<usize>(),
            MAX_RECORDS_PER_ENTRY
        );
        let rest = format!("{} more hosts", MAX_HOSTS_PER_ENTRY - served);
        assert_eq!(reasons(&c), [(rest.as_str(), "too_many_records")]);
    }

    #[test]
    fn duplicate_addresses_collapse() {
        let c = convert(
            &mk_se("foo", "a", &["a.global"], &["240.0.0.1", "240.0.0.1/32", "240.0.0.1"]),
            &mk_opts(),
        );
        assert_eq!(c.hosts[0].addrs[..], [ip("240.0.0.1")]);
    }

    #[test]
    fn ports_become_srv_ports_and_bad_ones_are_skipped() {
        use crate::serviceentry::Port;
        let mut se = mk_se("foo", "a", &["a.global", "*.b.global"], &["240.0.0.1"]);
        let port = |name: &str, number: Option<i64>, protocol: Option<&str>| Port {
            name: name.into(),
            number,
            protocol: protocol.map(Into::into),
        };
        se.spec.ports = vec![
            port("HTTP", Some(80), Some("HTTP")),
            port("dns", Some(53), Some("uDp")),
            port("plain", Some(1), None),
            port("http", Some(81), Some("UDP")),
            port("a.b", Some(1), None),
            port("", Some(1), None),
            port(&"x".repeat(63), Some(1), None),
            port(&"x".repeat(62), Some(65535), None),
            port("zero", Some(0), None),
            port("big", Some(65536), None),
            port("none", None, None),
        ];
        let c = convert(&se, &mk_opts());
        let got: Vec<(String, u16, bool)> = c
            .ports
            .as_ref()
            .unwrap()
            .0
            .iter()
            .map(|p| (p.name.to_string(), p.number, p.udp))
            .collect();
        assert_eq!(
            got,
            [
                ("http".into(), 80, false),
                ("dns".into(), 53, true),
                ("plain".into(), 1, false),
                ("x".repeat(62), 65535, false)
            ]
        );
        let long = format!("port {}", "x".repeat(63));
        assert_eq!(
            reasons(&c),
            [
                ("port http", "duplicate_port_name"),
                ("port a.b", "invalid_port_name"),
                ("port ", "invalid_port_name"),
                (long.as_str(), "invalid_port_name"),
                ("port zero", "invalid_port_number"),
                ("port big", "invalid_port_number"),
                ("port none", "invalid_port_number"),
            ]
        );
        // No served host, no ports and no port skips.
        se.spec.hosts = vec!["a.elsewhere".into()];
        let c = convert(&se, &mk_opts());
        assert_eq!((&c.ports, reasons(&c)), (&None, vec![("a.elsewhere", "out_of_zone")]));
    }

    #[test]
    fn a_port_number_that_is_not_a_number_is_skipped_not_the_entry() {
        let yaml = "spec: {hosts: [a.global], addresses: [240.0.0.1], resolution: STATIC, \
                    ports: [{name: a, number: \"80\"}, {name: b, number: 8080, protocol: TCP}, {name: c, number: 1.5}]}";
        let se: ServiceEntry = serde_saphyr::from_str(yaml).unwrap();
        let c = convert(&se, &mk_opts());
        assert_eq!(c.ports.as_ref().unwrap().0.len(), 1);
        assert_eq!(
            reasons(&c),
            [("port a", "invalid_port_number"), ("port c", "invalid_port_number")]
        );
    }
}
