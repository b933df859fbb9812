//! The kube-dns side: `{"Z": ["<ClusterIP>"]}` merged into the JSON object
//! in the ConfigMap's `stubDomains`, every other key kept, in its order.
//!
//! A key for the zone (compared without case or trailing dot) that maps to
//! the ClusterIP alone (`IP` or `IP:53`) is kept as it is; one that maps
//! elsewhere is replaced only with `--force`, the same rule as the Corefile.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

/// Why `stubDomains` is not edited.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stubDomains is not a JSON object: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// A key for one of our zones that maps elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub zone: String,
    pub key: String,
    /// The key's value, as JSON.
    pub value: String,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zone {}: stubDomains has {:?}: {}", self.zone, self.key, self.value)
    }
}

/// `stubDomains` after [`apply`]. `text` is `None` when nothing changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: Option<String>,
    /// One line per zone: kept, added or replaced.
    pub changes: Vec<String>,
    pub foreign: Vec<Foreign>,
}

/// Merges each zone (normalized) → `[ip]` into `stub_domains` (absent or
/// blank: `{}`). A key that maps to `previous` alone (the ClusterIP this
/// command last wrote) is updated; one that maps elsewhere is replaced only
/// with `force`.
pub fn apply(
    stub_domains: Option<&str>,
    zones: &[String],
    ip: IpAddr,
    previous: Option<IpAddr>,
    force: bool,
) -> Result<Edit, Error> {
    let original = stub_domains.unwrap_or("");
    let mut object = if original.trim().is_empty() {
        Ordered::default()
    } else {
        serde_json::from_str::<Ordered>(original)?
    };
    let ours = Value::from(vec![ip.to_string()]);
    let mut changed = false;
    let mut changes = Vec::new();
    let mut foreign = Vec::new();
    for zone in zones {
        let found: Vec<usize> = object
            .0
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| normalize(k) == *zone)
            .map(|(i, _)| i)
            .collect();
        let others: Vec<usize> = found
            .iter()
            .copied()
            .filter(|&i| !maps_only_to(&object.0[i].1, ip))
            .collect();
        if found.is_empty() {
            object.0.push((zone.clone(), ours.clone()));
            changes.push(format!("zone {zone}: added"));
            changed = true;
            continue;
        }
        if others.is_empty() {
            changes.push(format!("zone {zone}: already forwarded"));
            continue;
        }
        let reports: Vec<Foreign> = others
            .iter()
            .map(|&i| Foreign {
                zone: zone.clone(),
                key: object.0[i].0.clone(),
                value: object.0[i].1.to_string(),
            })
            .collect();
        let outdated = previous.filter(|&p| others.iter().all(|&i| maps_only_to(&object.0[i].1, p)));
        if !force && outdated.is_none() {
            foreign.extend(reports);
            continue;
        }
        // The first key for the zone gets our value; other keys for it go.
        let keep = found[0];
        object.0[keep].1 = ours.clone();
        let drop: Vec<usize> = found[1..].to_vec();
        let mut i = 0;
        object.0.retain(|_| {
            i += 1;
            !drop.contains(&(i - 1))
        });
        match outdated {
            Some(from) => changes.push(format!("zone {zone}: moved from the old ClusterIP {from}")),
            None => changes.extend(reports.iter().map(|f| format!("replaced: {f}"))),
        }
        changed = true;
    }
    let text = changed.then(|| {
        let mut text = serde_json::to_string(&object).expect("a JSON object serializes");
        if original.ends_with('\n') || original.trim().is_empty() {
            text.push('\n');
        }
        text
    });
    Ok(Edit { text, changes, foreign })
}

fn normalize(key: &str) -> String {
    key.strip_suffix('.').unwrap_or(key).to_ascii_lowercase()
}

fn maps_only_to(value: &Value, ip: IpAddr) -> bool {
    let Some(servers) = value.as_array() else {
        return false;
    };
    !servers.is_empty()
        && servers.iter().all(|s| {
            s.as_str().is_some_and(|s| {
                s.parse::<IpAddr>() == Ok(ip)
                    || s.parse::<SocketAddr>().is_ok_and(|sa| sa.ip() == ip && sa.port() == 53)
            })
        })
}

/// A JSON object with its keys in the order they came (serde_json's own
/// `Map` sorts them unless built with `preserve_order`).
#[derive(Debug, Default)]
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of domain → [servers]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(V)
    }
}

impl serde::Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_ip() -> IpAddr {
        "10.96.0.10".parse().unwrap()
    }

    fn mk_apply(stub: Option<&str>, zones: &[&str], force: bool) -> Edit {
        let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
        apply(stub, &zones, mk_ip(), None, force).unwrap()
    }

    #[test]
    fn merges_and_keeps_the_other_keys_in_order() {
        let edit = mk_apply(
            Some("{\"z.example\": [\"1.2.3.4\"], \"acme.local\": [\"5.6.7.8\"]}\n"),
            &["global"],
            false,
        );
        assert_eq!(
            edit.text.as_deref(),
            Some("{\"z.example\":[\"1.2.3.4\"],\"acme.local\":[\"5.6.7.8\"],\"global\":[\"10.96.0.10\"]}\n")
        );
        assert_eq!(edit.changes, ["zone global: added"]);
        assert_eq!(
            mk_apply(None, &["global", "240.in-addr.arpa"], false).text.as_deref(),
            Some("{\"global\":[\"10.96.0.10\"],\"240.in-addr.arpa\":[\"10.96.0.10\"]}\n")
        );
        assert_eq!(
            mk_apply(Some(" "), &["global"], false).text.as_deref(),
            Some("{\"global\":[\"10.96.0.10\"]}\n")
        );
    }

    #[test]
    fn the_documented_stub_domain_counts_as_done() {
        let shipped = include_str!("../../deploy/coredns/kube-dns-stubdomains.yaml");
        let line = shipped
            .lines()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap()
            .trim();
        for stub in [
            line.replace("MESHDNS_CLUSTER_IP", "10.96.0.10"),
            "{\"Global.\": [\"10.96.0.10:53\"]}".into(),
        ] {
            let edit = mk_apply(Some(&stub), &["global"], false);
            assert_eq!(edit.text, None, "{stub}");
            assert_eq!(edit.changes, ["zone global: already forwarded"]);
        }
    }

    #[test]
    fn a_foreign_key_needs_force() {
        let stub = "{\"a\": [\"1.1.1.1\"], \"global\": [\"10.0.0.9\"], \"GLOBAL.\": [\"10.96.0.10\"]}";
        let edit = mk_apply(Some(stub), &["global"], false);
        assert_eq!(edit.text, None);
        assert_eq!(
            edit.foreign,
            [Foreign {
                zone: "global".into(),
                key: "global".into(),
                value: "[\"10.0.0.9\"]".into()
            }]
        );
        let forced = mk_apply(Some(stub), &["global"], true);
        assert_eq!(
            forced.text.as_deref(),
            Some("{\"a\":[\"1.1.1.1\"],\"global\":[\"10.96.0.10\"]}")
        );
        for value in [
            "[]",
            "[\"10.96.0.10\", \"10.0.0.9\"]",
            "\"10.96.0.10\"",
            "[\"10.96.0.10:5353\"]",
        ] {
            let stub = format!("{{\"global\": {value}}}");
            assert_eq!(mk_apply(Some(&stub), &["global"], false).foreign.len(), 1, "{value}");
        }
    }

    #[test]
    fn the_previous_cluster_ip_moves_without_force() {
        let old: IpAddr = "10.96.0.9".parse().unwrap();
        let stub = "{\"a\": [\"1.1.1.1\"], \"global\": [\"10.96.0.9\"]}\n";
        let edit = apply(Some(stub), &["global".into()], mk_ip(), Some(old), false).unwrap();
        assert_eq!(
            edit.text.as_deref(),
            Some("{\"a\":[\"1.1.1.1\"],\"global\":[\"10.96.0.10\"]}\n")
        );
        assert_eq!(edit.changes, ["zone global: moved from the old ClusterIP 10.96.0.9"]);
        let other: IpAddr = "10.96.0.8".parse().unwrap();
        let edit = apply(Some(stub), &["global".into()], mk_ip(), Some(other), false).unwrap();
        assert_eq!(edit.foreign.len(), 1);
    }

    #[test]
    fn not_an_object_is_an_error() {
        for stub in ["[]", "{", "{\"a\": 1", "null"] {
            assert!(
                apply(Some(stub), &["global".into()], mk_ip(), None, true).is_err(),
                "{stub}"
            );
        }
    }
}
